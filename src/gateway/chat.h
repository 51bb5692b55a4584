/* The chat completion request as the gateway sees it: parsing and
 * validating the body of POST /v1/chat/completions (before any upstream
 * work), the token estimate used by quotas, and the JSON the gateway writes
 * itself (completions, chunks, errors). Pure functions on caller memory:
 * any thread may call them; nothing here touches the network or a loop.
 * A parsed request owns its jansson tree until gh_chat_req_dispose. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

#include <jansson.h>

/* A validated request. Strings point into root and live as long as it. */
struct gh_chat_req {
    json_t *root;
    const char *model;
    bool stream;
    bool include_usage;      /* stream_options.include_usage */
    unsigned max_tokens;     /* 0 = not given (the smaller of max_tokens and
                                max_completion_tokens when both are) */
    unsigned upstream_max_tokens; /* what the upstream gets: min(max_tokens, cap),
                                     the cap when not given */
    bool pruned;                  /* drop mode removed members below the top level
                                     from root: build the upstream body from root */
    bool fim;                     /* POST /beta/completions (gh_fim_parse) */
    unsigned nmessages;
    const char *last_user;   /* text of the last user message ("" if none) */
    size_t last_user_len;
    unsigned prompt_tokens;  /* estimate, see gh_chat_estimate_tokens */
};

/* What a refused request gets: the status, OpenAI's `code` and `param`. */
struct gh_chat_error {
    int status;
    const char *code;
    const char *param; /* NULL, a static string or param_buf */
    char param_buf[80];
    char message[256];
};

/* Parses and validates body (len bytes). On success fills *out (dispose
 * it) and returns 0; on failure fills *err and returns GH_EINVAL. The model
 * name is checked for shape only; whether it exists is the caller's
 * question. max_tokens_cap bounds max_tokens (422 above). Only the fields
 * of the allow-list (gh_chat_field_allowed; members of messages and of
 * stream_options have their own) are accepted: another one is refused
 * with 400 naming it, or, with drop_unknown, removed from root (and never
 * sent upstream). */
int gh_chat_parse(const char *body, size_t len, unsigned max_tokens_cap, bool drop_unknown,
                  struct gh_chat_req *out, struct gh_chat_error *err);
void gh_chat_req_dispose(struct gh_chat_req *r);

/* The same for the body of POST /beta/completions (DeepSeek's
 * fill-in-the-middle): model, prompt (required string), suffix (string or
 * null), max_tokens, stream, stream_options, temperature, top_p,
 * penalties, logprobs (0-20), echo, stop, seed, user; anything else is
 * refused (or dropped) as for chat. Sets out->fim; the prompt estimate is
 * the token rule over prompt + suffix, + 4. */
int gh_fim_parse(const char *body, size_t len, unsigned max_tokens_cap, bool drop_unknown,
                 struct gh_chat_req *out, struct gh_chat_error *err);

/* The gateway's token rule, used for estimates and for the echo model:
 * ceil(bytes / 4) of a text (at least 1 for a non-empty text). The prompt
 * estimate is the sum over the messages' text plus 4 per message. */
unsigned gh_chat_estimate_tokens(const char *s, size_t len);

/* Formats a duration the way OpenAI's x-ratelimit-reset-* headers do:
 * "0s", "12ms", "1.5s", "20s", "6m0s", "1h2m3s". out: at least 32 bytes. */
void gh_chat_format_duration(uint64_t ms, char *out, size_t outlen);

/* Builders of the gateway's own JSON, appended to b (0 or GH_ETOOBIG /
 * GH_ENOMEM). id is "chatcmpl-…", created is Unix seconds. */

/* One stream event "data: {chunk}\n\n". role may be NULL (no role in the
 * delta), content may be NULL (no content), finish NULL (null). When
 * with_usage the chunk carries "usage":null (the client asked for usage). */
int gh_chat_sse_chunk(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                      const char *role, const char *content, size_t content_len,
                      const char *finish, bool with_usage);
/* The usage event: "choices":[] and the whole request's usage. */
int gh_chat_sse_usage(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                      unsigned prompt, unsigned completion);
/* "data: [DONE]\n\n". */
int gh_chat_sse_done(struct gh_buf *b);
/* One error event: "data: {"error":{message,type,param:null,code}}\n\n". */
int gh_chat_sse_error(struct gh_buf *b, const char *message, const char *type, const char *code);
/* A whole non-streamed chat.completion. */
int gh_chat_completion(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                       const char *content, size_t content_len, const char *finish,
                       unsigned prompt, unsigned completion);

/* A chunk whose delta holds tool call 0: its head when call_id is set
 * (role, content null, id, type, the function's name, arguments ""),
 * else a piece of its arguments (args, args_len bytes). */
int gh_chat_sse_tool_chunk(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                           const char *call_id, const char *name, const char *args, size_t args_len,
                           bool with_usage);
/* A whole chat.completion whose message is one call of function name with
 * the arguments args (a JSON text, sent as a string), content null. */
int gh_chat_completion_tool(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                            const char *call_id, const char *name, const char *args,
                            size_t args_len, const char *finish, unsigned prompt,
                            unsigned completion);

/* True when name (len bytes) is a top-level request field the gateway
 * forwards: the OpenAI chat fields and DeepSeek's (docs/API.md). */
bool gh_chat_field_allowed(const char *name, size_t len);

/* The body sent to an upstream, appended to out: the allowed members of
 * the client's body (a JSON object that gh_chat_parse accepted; other
 * members are left out) with "model" set to model, "max_tokens" set to
 * max_tokens (max_completion_tokens left out) and, when stream,
 * "stream_options":{"include_usage":true}; without stream, no
 * stream_options. Members are copied byte for byte (whitespace between
 * them dropped): nothing is parsed into a tree nor re-serialized.
 * GH_EINVAL when the text is not as expected (e.g. a top-level key with
 * escapes): then use gh_chat_upstream_body_tree. */
int gh_chat_upstream_body(const char *body, size_t len, const char *model, bool stream,
                          unsigned max_tokens, struct gh_buf *out);
/* The same body built from a parsed request's tree (root, not modified)
 * with jansson: the fallback of the splice, and its reference. */
int gh_chat_upstream_body_tree(json_t *root, const char *model, bool stream, unsigned max_tokens,
                               struct gh_buf *out);

/* The body of a FIM call sent upstream (base_url/completions): root's
 * allowed members, "model", "max_tokens" and, when stream,
 * "stream_options":{"include_usage":true}, built with jansson. */
int gh_fim_upstream_body(json_t *root, const char *model, bool stream, unsigned max_tokens,
                         struct gh_buf *out);

/* A fresh completion id "chatcmpl-" + 24 random hex digits into out (>= 40). */
void gh_chat_new_id(char *out, size_t outlen);
