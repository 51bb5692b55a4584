/* This module implements the chat request validation and the gateway's own
 * JSON output (chat.h). */
#include "gateway/chat.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(struct gh_chat_error *err, int status, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct gh_chat_error *err, int status, const char *code, const char *param,
                const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return GH_EINVAL;
}

unsigned gh_chat_estimate_tokens(const char *s, size_t len)
{
    (void)s;
    if (!len)
        return 0;
    size_t t = (len + 3) / 4;
    return t > UINT32_MAX ? UINT32_MAX : (unsigned)t;
}

static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};

/* How an allowed top-level field is checked; F_DONE: by gh_chat_parse. */
enum field_kind { F_DONE, F_BOOL, F_INT, F_STRING, F_OBJECT, F_ARRAY, F_STR_OR_OBJ, F_STOP };

struct field {
    const char *name;
    enum field_kind kind;
};

/* The request fields forwarded to model servers: OpenAI's chat fields and
 * DeepSeek's (thinking, reasoning_effort). Anything else (vLLM's best_of,
 * min_tokens, ignore_eos, llama.cpp's n_predict …) could lift the caps or
 * reach a backend feature nobody reviewed, so it never leaves. */
static const struct field fields[] = {
    {"model", F_DONE},
    {"messages", F_DONE},
    {"stream", F_DONE},
    {"stream_options", F_DONE},
    {"max_tokens", F_DONE},
    {"max_completion_tokens", F_DONE},
    {"temperature", F_DONE},
    {"top_p", F_DONE},
    {"n", F_DONE},
    {"presence_penalty", F_DONE},
    {"frequency_penalty", F_DONE},
    {"user", F_DONE},
    {"stop", F_STOP},
    {"logprobs", F_BOOL},
    {"top_logprobs", F_INT},
    {"response_format", F_OBJECT},
    {"tools", F_ARRAY},
    {"tool_choice", F_STR_OR_OBJ},
    {"parallel_tool_calls", F_BOOL},
    {"seed", F_INT},
    {"logit_bias", F_OBJECT},
    {"functions", F_ARRAY},
    {"function_call", F_STR_OR_OBJ},
    {"thinking", F_OBJECT},
    {"reasoning_effort", F_STRING},
};

/* The members a message may carry (OpenAI's and DeepSeek's prefix and
 * reasoning_content). */
static const char *const message_fields[] = {
    "role",          "content", "name",  "tool_calls",        "tool_call_id",
    "function_call", "refusal", "audio", "reasoning_content", "prefix",
};

/* The fields of POST /beta/completions (DeepSeek's fill-in-the-middle):
 * prompt and suffix instead of messages, logprobs an integer, echo. */
static const struct field fim_fields[] = {
    {"model", F_DONE},
    {"prompt", F_DONE},
    {"suffix", F_DONE},
    {"stream", F_DONE},
    {"stream_options", F_DONE},
    {"max_tokens", F_DONE},
    {"temperature", F_DONE},
    {"top_p", F_DONE},
    {"presence_penalty", F_DONE},
    {"frequency_penalty", F_DONE},
    {"user", F_DONE},
    {"echo", F_BOOL},
    {"logprobs", F_INT},
    {"stop", F_STOP},
    {"seed", F_INT},
};

/* One allow-list: fields or fim_fields. */
struct field_table {
    const struct field *f;
    size_t n;
};

static const struct field_table chat_table = {fields, GH_ARRAY_LEN(fields)};
static const struct field_table fim_table = {fim_fields, GH_ARRAY_LEN(fim_fields)};

static const struct field *find_field(const struct field_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->f[i].name) == len && !memcmp(t->f[i].name, name, len))
            return &t->f[i];
    return NULL;
}

static const struct field *field_of(const char *name, size_t len)
{
    return find_field(&chat_table, name, len);
}

bool gh_chat_field_allowed(const char *name, size_t len)
{
    return field_of(name, len) != NULL;
}

static bool message_field_allowed(const char *name)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(message_fields); i++)
        if (!strcmp(message_fields[i], name))
            return true;
    return false;
}

/* Names a field of the request in err->param (cut to fit). */
static const char *param_name(struct gh_chat_error *err, const char *prefix, const char *name)
{
    snprintf(err->param_buf, sizeof err->param_buf, "%s%.64s", prefix, name);
    return err->param_buf;
}

/* Checks one message; adds its text bytes to *bytes. Remembers the text of
 * a user message in out. Members outside message_fields are refused, or
 * removed when drop. */
static int check_message(json_t *m, size_t i, bool drop, struct gh_chat_req *out, size_t *bytes,
                         struct gh_chat_error *err)
{
    if (!json_is_object(m))
        return fail(err, 400, "invalid_request", "messages", "messages[%zu] must be an object", i);
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(m, tmp, key, v)
    {
        if (message_field_allowed(key))
            continue;
        if (!drop)
            return fail(err, 400, "unknown_parameter", "messages",
                        "messages[%zu].%.64s is not a supported field", i, key);
        json_object_del(m, key);
        out->pruned = true;
    }
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role)
        return fail(err, 400, "invalid_request", "messages",
                    "messages[%zu].role is required and must be a string", i);
    bool known = false;
    for (size_t k = 0; k < GH_ARRAY_LEN(roles); k++)
        known = known || !strcmp(role, roles[k]);
    if (!known)
        return fail(err, 400, "invalid_request", "messages",
                    "messages[%zu].role must be one of system, user, assistant, tool, "
                    "developer",
                    i);
    json_t *content = json_object_get(m, "content");
    bool is_user = !strcmp(role, "user");
    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        *bytes += n;
        if (is_user) {
            out->last_user = json_string_value(content);
            out->last_user_len = n;
        }
    } else if (json_is_array(content)) {
        size_t j;
        json_t *part;
        bool first_text = true;
        json_array_foreach(content, j, part)
        {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!json_is_object(part) || !type)
                return fail(err, 400, "invalid_request", "messages",
                            "messages[%zu].content[%zu] must be an object with a type", i, j);
            json_t *text = json_object_get(part, "text");
            if (!strcmp(type, "text")) {
                if (!json_is_string(text))
                    return fail(err, 400, "invalid_request", "messages",
                                "messages[%zu].content[%zu].text must be a string", i, j);
                *bytes += json_string_length(text);
                if (is_user && first_text) {
                    out->last_user = json_string_value(text);
                    out->last_user_len = json_string_length(text);
                    first_text = false;
                }
            } else {
                *bytes += 1024; /* images and audio: a flat estimate */
            }
        }
    } else if (json_is_null(content) || !content) {
        /* an assistant turn holding only tool calls */
        if (strcmp(role, "assistant"))
            return fail(err, 400, "invalid_request", "messages",
                        "messages[%zu].content is required for role %s", i, role);
        if (is_user) {
            out->last_user = "";
            out->last_user_len = 0;
        }
    } else {
        return fail(err, 400, "invalid_request", "messages",
                    "messages[%zu].content must be a string or an array of parts", i);
    }
    return 0;
}

/* An optional number within [lo, hi]; 400 when not a number, 422 outside. */
static int check_number(json_t *root, const char *name, double lo, double hi,
                        struct gh_chat_error *err)
{
    json_t *v = json_object_get(root, name);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, 400, "invalid_request", name, "%s must be a number", name);
    double d = json_number_value(v);
    if (d < lo || d > hi)
        return fail(err, 422, "invalid_parameter", name, "%s must be between %g and %g", name, lo,
                    hi);
    return 0;
}

/* Checks the shape of an allowed field that gh_chat_parse does not check
 * itself (null is accepted for every optional field). */
static int check_field(const struct field *f, const char *name, json_t *v,
                       struct gh_chat_error *err)
{
    if (json_is_null(v))
        return 0;
    const char *p = param_name(err, "", name);
    switch (f->kind) {
    case F_BOOL:
        if (!json_is_boolean(v))
            return fail(err, 400, "invalid_request", p, "%s must be true or false", name);
        break;
    case F_INT:
        if (!json_is_integer(v))
            return fail(err, 400, "invalid_request", p, "%s must be an integer", name);
        /* chat's logprobs is a boolean (F_BOOL): only FIM's reaches here */
        if ((!strcmp(name, "top_logprobs") || !strcmp(name, "logprobs")) &&
            (json_integer_value(v) < 0 || json_integer_value(v) > 20))
            return fail(err, 422, "invalid_parameter", p, "%s must be between 0 and 20", name);
        break;
    case F_STRING:
        if (!json_is_string(v) || json_string_length(v) > 64)
            return fail(err, 400, "invalid_request", p, "%s must be a string of at most 64 bytes",
                        name);
        break;
    case F_OBJECT:
        if (!json_is_object(v))
            return fail(err, 400, "invalid_request", p, "%s must be an object", name);
        break;
    case F_ARRAY:
        if (!json_is_array(v))
            return fail(err, 400, "invalid_request", p, "%s must be an array", name);
        break;
    case F_STR_OR_OBJ:
        if (!json_is_string(v) && !json_is_object(v))
            return fail(err, 400, "invalid_request", p, "%s must be a string or an object", name);
        break;
    case F_STOP: {
        if (json_is_string(v))
            break;
        size_t i;
        json_t *s;
        bool ok = json_is_array(v) && json_array_size(v) <= 16;
        json_array_foreach(v, i, s) ok = ok && json_is_string(s);
        if (!ok)
            return fail(err, 400, "invalid_request", p,
                        "stop must be a string or an array of at most 16 strings");
        break;
    }
    case F_DONE:
        break;
    }
    return 0;
}

/* Refuses (or, with drop, removes) the top-level fields outside the
 * allow-list, then checks the shape of the allowed ones. */
static int check_fields(json_t *root, const struct field_table *t, bool drop,
                        struct gh_chat_error *err)
{
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(root, tmp, key, v)
    {
        const struct field *f = find_field(t, key, strlen(key));
        if (!f && !drop)
            return fail(err, 400, "unknown_parameter", param_name(err, "", key),
                        "Unrecognized request argument supplied: %.64s (docs/API.md lists the "
                        "fields this API accepts)",
                        key);
        if (!f) {
            json_object_del(root, key);
            continue;
        }
        if (check_field(f, key, v, err))
            return GH_EINVAL;
    }
    json_t *so = json_object_get(root, "stream_options");
    if (!json_is_object(so))
        return 0;
    json_object_foreach_safe(so, tmp, key, v)
    {
        if (!strcmp(key, "include_usage"))
            continue;
        if (!drop)
            return fail(err, 400, "unknown_parameter", param_name(err, "stream_options.", key),
                        "stream_options.%.64s is not a supported field", key);
        json_object_del(so, key);
    }
    return 0;
}

/* Reads body into out->root, which must be a JSON object whose fields are
 * in t (or dropped), with a model name. */
static int load_request(const char *body, size_t len, const struct field_table *t, bool drop,
                        struct gh_chat_req *out, struct gh_chat_error *err)
{
    memset(out, 0, sizeof *out);
    out->last_user = "";
    if (!len)
        return fail(err, 400, "invalid_json", NULL, "the request body is empty: send a JSON object");
    json_error_t je;
    out->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!out->root)
        return fail(err, 400, "invalid_json", NULL,
                    "the request body is not valid JSON (line %d, column %d): %.120s", je.line,
                    je.column, je.text);
    json_t *root = out->root;
    if (!json_is_object(root))
        return fail(err, 400, "invalid_request", NULL, "the request body must be a JSON object");

    if (check_fields(root, t, drop, err))
        return GH_EINVAL;

    json_t *model = json_object_get(root, "model");
    if (!model)
        return fail(err, 400, "invalid_request", "model", "model is required");
    if (!json_is_string(model) || !json_string_length(model) || json_string_length(model) > 256)
        return fail(err, 400, "invalid_request", "model",
                    "model must be a non-empty string of at most 256 bytes");
    out->model = json_string_value(model);
    return 0;
}

/* The fields chat and FIM share: stream, stream_options, max_tokens (and
 * chat's max_completion_tokens), the sampling numbers, n, user. */
static int check_common(json_t *root, unsigned max_tokens_cap, struct gh_chat_req *out,
                        struct gh_chat_error *err)
{
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream) && !json_is_boolean(stream))
        return fail(err, 400, "invalid_request", "stream", "stream must be true or false");
    out->stream = json_is_true(stream);

    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return fail(err, 400, "invalid_request", "stream_options",
                        "stream_options must be an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu) && !json_is_boolean(iu))
            return fail(err, 400, "invalid_request", "stream_options.include_usage",
                        "stream_options.include_usage must be true or false");
        out->include_usage = json_is_true(iu);
    }

    static const char *const mt_names[] = {"max_tokens", "max_completion_tokens"};
    for (size_t k = 0; k < GH_ARRAY_LEN(mt_names); k++) {
        json_t *mt = json_object_get(root, mt_names[k]);
        if (!mt || json_is_null(mt))
            continue;
        if (!json_is_integer(mt))
            return fail(err, 400, "invalid_request", mt_names[k], "%s must be an integer",
                        mt_names[k]);
        json_int_t v = json_integer_value(mt);
        if (v < 1 || (uint64_t)v > max_tokens_cap)
            return fail(err, 422, "invalid_parameter", mt_names[k],
                        "%s must be between 1 and %u", mt_names[k], max_tokens_cap);
        if (!out->max_tokens || (unsigned)v < out->max_tokens)
            out->max_tokens = (unsigned)v;
    }
    /* the upstream always gets a bound, whatever its own default */
    out->upstream_max_tokens =
        out->max_tokens ? GH_MIN(out->max_tokens, max_tokens_cap) : max_tokens_cap;

    if (check_number(root, "temperature", 0, 2, err) || check_number(root, "top_p", 0, 1, err) ||
        check_number(root, "presence_penalty", -2, 2, err) ||
        check_number(root, "frequency_penalty", -2, 2, err))
        return GH_EINVAL;
    json_t *n = json_object_get(root, "n");
    if (n && !json_is_null(n)) {
        if (!json_is_integer(n))
            return fail(err, 400, "invalid_request", "n", "n must be an integer");
        if (json_integer_value(n) != 1)
            return fail(err, 422, "invalid_parameter", "n", "only n = 1 is supported");
    }
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user) && (!json_is_string(user) || json_string_length(user) > 512))
        return fail(err, 400, "invalid_request", "user",
                    "user must be a string of at most 512 bytes");
    return 0;
}

int gh_chat_parse(const char *body, size_t len, unsigned max_tokens_cap, bool drop_unknown,
                  struct gh_chat_req *out, struct gh_chat_error *err)
{
    if (load_request(body, len, &chat_table, drop_unknown, out, err))
        return GH_EINVAL;
    json_t *root = out->root;
    json_t *messages = json_object_get(root, "messages");
    if (!messages)
        return fail(err, 400, "invalid_request", "messages", "messages is required");
    if (!json_is_array(messages) || !json_array_size(messages))
        return fail(err, 400, "invalid_request", "messages",
                    "messages must be a non-empty array of {role, content}");
    size_t i;
    json_t *m;
    size_t bytes = 0;
    json_array_foreach(messages, i, m)
    {
        if (check_message(m, i, drop_unknown, out, &bytes, err))
            return GH_EINVAL;
    }
    out->nmessages = (unsigned)json_array_size(messages);
    size_t est = gh_chat_estimate_tokens(NULL, bytes) + 4u * out->nmessages;
    out->prompt_tokens = est > UINT32_MAX ? UINT32_MAX : (unsigned)est;
    return check_common(root, max_tokens_cap, out, err);
}

int gh_fim_parse(const char *body, size_t len, unsigned max_tokens_cap, bool drop_unknown,
                 struct gh_chat_req *out, struct gh_chat_error *err)
{
    if (load_request(body, len, &fim_table, drop_unknown, out, err))
        return GH_EINVAL;
    out->fim = true;
    json_t *prompt = json_object_get(out->root, "prompt");
    if (!json_is_string(prompt))
        return fail(err, 400, "invalid_request", "prompt",
                    "prompt is required and must be a string (the text before the gap)");
    json_t *suffix = json_object_get(out->root, "suffix");
    if (suffix && !json_is_null(suffix) && !json_is_string(suffix))
        return fail(err, 400, "invalid_request", "suffix",
                    "suffix must be a string (the text after the gap) or null");
    size_t bytes = json_string_length(prompt) + (suffix ? json_string_length(suffix) : 0);
    size_t est = gh_chat_estimate_tokens(NULL, bytes) + 4u;
    out->prompt_tokens = est > UINT32_MAX ? UINT32_MAX : (unsigned)est;
    return check_common(out->root, max_tokens_cap, out, err);
}

void gh_chat_req_dispose(struct gh_chat_req *r)
{
    json_decref(r->root);
    r->root = NULL;
}

void gh_chat_format_duration(uint64_t ms, char *out, size_t outlen)
{
    if (ms < 1000) {
        snprintf(out, outlen, ms ? "%llums" : "0s", (unsigned long long)ms);
        return;
    }
    uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char sec[24];
    if (frac) {
        /* Go's format: trailing zeros of the fraction dropped */
        char f[8];
        snprintf(f, sizeof f, "%03llu", (unsigned long long)frac);
        size_t fl = strlen(f);
        while (fl && f[fl - 1] == '0')
            f[--fl] = 0;
        snprintf(sec, sizeof sec, "%llu.%ss", (unsigned long long)s, f);
    } else {
        snprintf(sec, sizeof sec, "%llus", (unsigned long long)s);
    }
    if (h)
        snprintf(out, outlen, "%lluh%llum%s", (unsigned long long)h, (unsigned long long)m, sec);
    else if (m)
        snprintf(out, outlen, "%llum%s", (unsigned long long)m, sec);
    else
        snprintf(out, outlen, "%s", sec);
}

static int head(struct gh_buf *b, const char *object, const char *id, uint64_t created,
                const char *model)
{
    int rc = gh_buf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%llu,\"model\":\"", id,
                           object, (unsigned long long)created);
    rc = rc ? rc : gh_buf_append_json_str(b, model, strlen(model));
    return rc ? rc : gh_buf_append_str(b, "\",\"system_fingerprint\":null,");
}

int gh_chat_sse_chunk(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                      const char *role, const char *content, size_t content_len,
                      const char *finish, bool with_usage)
{
    int rc = gh_buf_append_str(b, "data: ");
    rc = rc ? rc : head(b, "chat.completion.chunk", id, created, model);
    rc = rc ? rc : gh_buf_append_str(b, "\"choices\":[{\"index\":0,\"delta\":{");
    if (!rc && role)
        rc = gh_buf_printf(b, "\"role\":\"%s\"%s", role, content ? "," : "");
    if (!rc && content) {
        rc = gh_buf_append_str(b, "\"content\":\"");
        rc = rc ? rc : gh_buf_append_json_str(b, content, content_len);
        rc = rc ? rc : gh_buf_append_str(b, "\"");
    }
    if (!rc && finish)
        rc = gh_buf_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}]", finish);
    else if (!rc)
        rc = gh_buf_append_str(b, "},\"logprobs\":null,\"finish_reason\":null}]");
    if (!rc && with_usage)
        rc = gh_buf_append_str(b, ",\"usage\":null");
    return rc ? rc : gh_buf_append_str(b, "}\n\n");
}

static int usage_obj(struct gh_buf *b, unsigned prompt, unsigned completion)
{
    return gh_buf_printf(b,
                         "\"usage\":{\"prompt_tokens\":%u,\"completion_tokens\":%u,"
                         "\"total_tokens\":%llu}",
                         prompt, completion, (unsigned long long)prompt + completion);
}

int gh_chat_sse_usage(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                      unsigned prompt, unsigned completion)
{
    int rc = gh_buf_append_str(b, "data: ");
    rc = rc ? rc : head(b, "chat.completion.chunk", id, created, model);
    rc = rc ? rc : gh_buf_append_str(b, "\"choices\":[],");
    rc = rc ? rc : usage_obj(b, prompt, completion);
    return rc ? rc : gh_buf_append_str(b, "}\n\n");
}

int gh_chat_sse_done(struct gh_buf *b)
{
    return gh_buf_append_str(b, "data: [DONE]\n\n");
}

int gh_chat_sse_error(struct gh_buf *b, const char *message, const char *type, const char *code)
{
    int rc = gh_buf_append_str(b, "data: {\"error\":{\"message\":\"");
    rc = rc ? rc : gh_buf_append_json_str(b, message, strlen(message));
    rc = rc ? rc : gh_buf_printf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n",
                                 type, code);
    return rc;
}

/* The end of a whole completion: the message's end, finish_reason, usage. */
static int completion_tail(struct gh_buf *b, const char *finish, unsigned prompt,
                           unsigned completion)
{
    int rc = gh_buf_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],", finish);
    rc = rc ? rc : usage_obj(b, prompt, completion);
    return rc ? rc : gh_buf_append_str(b, "}\n");
}

int gh_chat_completion(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                       const char *content, size_t content_len, const char *finish,
                       unsigned prompt, unsigned completion)
{
    int rc = head(b, "chat.completion", id, created, model);
    rc = rc ? rc
            : gh_buf_append_str(b, "\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                   "\"assistant\",\"content\":\"");
    rc = rc ? rc : gh_buf_append_json_str(b, content, content_len);
    rc = rc ? rc : gh_buf_append(b, "\"", 1);
    return rc ? rc : completion_tail(b, finish, prompt, completion);
}

/* One tool call object: with index (a stream's delta) or without (a whole
 * message); the id, type and name when call_id is set (a stream's first
 * delta of the call, or a whole message), else only an arguments piece. */
static int tool_call(struct gh_buf *b, bool indexed, const char *call_id, const char *name,
                     const char *args, size_t args_len)
{
    int rc = gh_buf_append_str(b, indexed ? "{\"index\":0," : "{");
    if (!rc && call_id) {
        rc = gh_buf_printf(b, "\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"",
                           call_id);
        rc = rc ? rc : gh_buf_append_json_str(b, name, strlen(name));
        rc = rc ? rc : gh_buf_append_str(b, "\",\"arguments\":\"");
    } else if (!rc) {
        rc = gh_buf_append_str(b, "\"function\":{\"arguments\":\"");
    }
    rc = rc ? rc : gh_buf_append_json_str(b, args, args_len);
    return rc ? rc : gh_buf_append_str(b, "\"}}");
}

int gh_chat_sse_tool_chunk(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                           const char *call_id, const char *name, const char *args, size_t args_len,
                           bool with_usage)
{
    int rc = gh_buf_append_str(b, "data: ");
    rc = rc ? rc : head(b, "chat.completion.chunk", id, created, model);
    rc = rc ? rc : gh_buf_append_str(b, "\"choices\":[{\"index\":0,\"delta\":{");
    if (!rc && call_id)
        rc = gh_buf_append_str(b, "\"role\":\"assistant\",\"content\":null,");
    rc = rc ? rc : gh_buf_append_str(b, "\"tool_calls\":[");
    rc = rc ? rc : tool_call(b, true, call_id, name, args, args_len);
    rc = rc ? rc : gh_buf_append_str(b, "]},\"logprobs\":null,\"finish_reason\":null}]");
    if (!rc && with_usage)
        rc = gh_buf_append_str(b, ",\"usage\":null");
    return rc ? rc : gh_buf_append_str(b, "}\n\n");
}

int gh_chat_completion_tool(struct gh_buf *b, const char *id, uint64_t created, const char *model,
                            const char *call_id, const char *name, const char *args,
                            size_t args_len, const char *finish, unsigned prompt,
                            unsigned completion)
{
    int rc = head(b, "chat.completion", id, created, model);
    rc = rc ? rc
            : gh_buf_append_str(b, "\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                   "\"assistant\",\"content\":null,\"tool_calls\":[");
    rc = rc ? rc : tool_call(b, false, call_id, name, args, args_len);
    rc = rc ? rc : gh_buf_append(b, "]", 1);
    return rc ? rc : completion_tail(b, finish, prompt, completion);
}

void gh_chat_new_id(char *out, size_t outlen)
{
    unsigned char r[12];
    randombytes_buf(r, sizeof r);
    char hex[25];
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    snprintf(out, outlen, "chatcmpl-%s", hex);
}

/* ---- the upstream's body: a splice of the client's ---- */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"': the index after the closing quote; *esc when it holds a
 * backslash. n on a broken string. */
static size_t skip_string(const char *s, size_t i, size_t n, bool *esc)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\') {
            *esc = true;
            i++;
        } else if (s[i] == '"') {
            return i + 1;
        }
    }
    return n;
}

/* The index after the value starting at s[i]. */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    bool esc;
    if (i >= n)
        return n;
    if (s[i] == '"')
        return skip_string(s, i, n, &esc);
    if (s[i] != '{' && s[i] != '[') {
        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
               s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            i++;
        return i;
    }
    unsigned depth = 0;
    while (i < n) {
        char ch = s[i];
        if (ch == '"') {
            i = skip_string(s, i, n, &esc);
            continue;
        }
        if (ch == '{' || ch == '[')
            depth++;
        else if ((ch == '}' || ch == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return n;
}

/* One member of an object: key [k0, k1) (quotes included), value [v0, v1). */
struct member {
    size_t k0, k1, v0, v1;
    bool esc;
};

/* The member at s[*i] (after '{' or ','); *i moves past its ',' or the
 * closing '}'. Returns 1 for a member, 0 at the end, GH_EINVAL when the
 * text is not what a validated object looks like. */
static int next_member(const char *s, size_t n, size_t *i, struct member *m)
{
    size_t p = skip_ws(s, *i, n);
    if (p < n && s[p] == '}') {
        *i = p + 1;
        return 0;
    }
    if (p >= n || s[p] != '"')
        return GH_EINVAL;
    m->esc = false;
    m->k0 = p;
    m->k1 = skip_string(s, p, n, &m->esc);
    p = skip_ws(s, m->k1, n);
    if (p >= n || s[p] != ':')
        return GH_EINVAL;
    m->v0 = skip_ws(s, p + 1, n);
    m->v1 = skip_value(s, m->v0, n);
    if (m->v1 <= m->v0)
        return GH_EINVAL;
    p = skip_ws(s, m->v1, n);
    if (p < n && s[p] == ',')
        p++;
    else if (p >= n || s[p] != '}')
        return GH_EINVAL;
    *i = p;
    return 1;
}

static bool key_is(const char *s, const struct member *m, const char *name)
{
    size_t l = strlen(name);
    return m->k1 - m->k0 == l + 2 && !memcmp(s + m->k0 + 1, name, l);
}

/* The members the gateway writes itself rather than copies. */
static bool key_rewritten(const char *s, const struct member *m)
{
    return key_is(s, m, "model") || key_is(s, m, "stream_options") || key_is(s, m, "max_tokens") ||
           key_is(s, m, "max_completion_tokens");
}

/* The members every upstream body ends with (model when the body had
 * none: gh_chat_parse requires one, the tree build adds it anyway). */
static int append_tail(struct gh_buf *out, bool first, const char *model, bool stream,
                       unsigned max_tokens)
{
    int rc = 0;
    if (model) {
        rc = gh_buf_append_str(out, first ? "\"model\":\"" : ",\"model\":\"");
        rc = rc ? rc : gh_buf_append_json_str(out, model, strlen(model));
        rc = rc ? rc : gh_buf_append(out, "\"", 1);
        first = false;
    }
    rc = rc ? rc : gh_buf_printf(out, "%s\"max_tokens\":%u", first ? "" : ",", max_tokens);
    if (!rc && stream)
        rc = gh_buf_append_str(out, ",\"stream_options\":{\"include_usage\":true}");
    return rc ? rc : gh_buf_append(out, "}", 1);
}

int gh_chat_upstream_body(const char *body, size_t len, const char *model, bool stream,
                          unsigned max_tokens, struct gh_buf *out)
{
    size_t i = skip_ws(body, 0, len);
    if (i >= len || body[i] != '{')
        return GH_EINVAL;
    i++;
    int rc = gh_buf_reserve(out, len + strlen(model) * 6 + 128);
    if (rc)
        return rc;
    bool first = true;
    struct member m;
    gh_buf_append(out, "{", 1);
    while ((rc = next_member(body, len, &i, &m)) == 1) {
        rc = 0;
        if (m.esc)
            return GH_EINVAL; /* an escaped key might spell a name we rewrite */
        if (!gh_chat_field_allowed(body + m.k0 + 1, m.k1 - m.k0 - 2))
            continue; /* dropped (gh_chat_parse refused it unless told to drop) */
        if (key_rewritten(body, &m)) {
            continue; /* written by append_tail */
        } else {
            rc = first ? 0 : gh_buf_append(out, ",", 1);
            rc = rc ? rc : gh_buf_append(out, body + m.k0, m.v1 - m.k0);
        }
        first = false;
        if (rc)
            return rc;
    }
    if (rc < 0)
        return rc;
    return append_tail(out, first, model, stream, max_tokens);
}

/* The upstream body from a tree: the members of root in t, with model,
 * max_tokens and stream_options written by the gateway. */
static int body_tree(json_t *root, const struct field_table *t, const char *model, bool stream,
                     unsigned max_tokens, struct gh_buf *out)
{
    json_t *o = json_object();
    if (!o)
        return GH_ENOMEM;
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v)
    {
        if (!find_field(t, key, strlen(key)) || !strcmp(key, "stream_options") ||
            !strcmp(key, "max_completion_tokens"))
            continue;
        rc = rc ? rc : json_object_set(o, key, v);
    }
    rc = rc ? rc : json_object_set_new(o, "model", json_string(model));
    rc = rc ? rc : json_object_set_new(o, "max_tokens", json_integer(max_tokens));
    if (!rc && stream)
        rc = json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *text = rc ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    rc = text ? gh_buf_append_str(out, text) : GH_ENOMEM;
    free(text);
    return rc;
}

int gh_chat_upstream_body_tree(json_t *root, const char *model, bool stream, unsigned max_tokens,
                               struct gh_buf *out)
{
    return body_tree(root, &chat_table, model, stream, max_tokens, out);
}

int gh_fim_upstream_body(json_t *root, const char *model, bool stream, unsigned max_tokens,
                         struct gh_buf *out)
{
    return body_tree(root, &fim_table, model, stream, max_tokens, out);
}
