/* libFuzzer harness for the chat request body (gateway/chat.h): the first
 * byte picks the mode (bit 0: unknown_fields = drop, bit 1: stream, bits
 * 2-3: the max_tokens cap, bit 4: the body of POST /beta/completions
 * instead), the rest is the body of POST /v1/chat/completions. A refusal
 * is a 400/422 with a message. For an accepted body, the body sent
 * upstream (the byte splice, and the jansson build it falls back to) is
 * one JSON object holding only allowed fields, the upstream model,
 * max_tokens = min(requested, cap), stream_options exactly when
 * streaming, n at most 1; and the splice equals the JSON re-serialisation
 * of the accepted fields. The echo model's answer to it (gateway/echo.h)
 * is "Echo: …", the object {"echo": the last user text}, or a tool call
 * of a named tool of the request with a JSON object for arguments. A FIM
 * body's upstream body has a string prompt and no chat-only field. */
#include "gateway/chat.h"
#include "gateway/echo.h"

#include "invariant.h"

#include <string.h>

static const unsigned caps[] = {1, 16, 4096, 10000000};

/* The invariants of an upstream body, parsed back. */
static json_t *check_upstream(const struct gh_buf *b, const struct gh_chat_req *r, bool stream)
{
    json_error_t e;
    json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &e);
    FUZZ_CHECK(json_is_object(j));
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        FUZZ_CHECK(gh_chat_field_allowed(key, strlen(key)));
        FUZZ_CHECK(strcmp(key, "max_completion_tokens"));
    }
    FUZZ_CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "up/model"));
    FUZZ_CHECK(json_integer_value(json_object_get(j, "max_tokens")) ==
               (json_int_t)r->upstream_max_tokens);
    json_t *so = json_object_get(j, "stream_options");
    FUZZ_CHECK(stream
                   ? json_object_size(so) == 1 && json_is_true(json_object_get(so, "include_usage"))
                   : so == NULL);
    json_t *n = json_object_get(j, "n");
    FUZZ_CHECK(!n || json_is_null(n) || json_integer_value(n) == 1);
    return j;
}

/* The echo model's answer to an accepted chat request r. */
static void check_echo(const struct gh_chat_req *r)
{
    struct gh_echo_plan plan;
    struct gh_buf text;
    gh_buf_init(&text, 16u << 20);
    FUZZ_CHECK(!gh_echo_plan(r->root, r->last_user, r->last_user_len, &plan, &text));
    json_t *j = NULL;
    switch (plan.kind) {
    case GH_ECHO_WORDS:
        FUZZ_CHECK(text.len >= 6 && !memcmp(text.data, "Echo: ", 6));
        break;
    case GH_ECHO_JSON:
        j = json_loadb(text.data, text.len, JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(json_object_size(j) == 1);
        FUZZ_CHECK(json_string_length(json_object_get(j, "echo")) == r->last_user_len);
        FUZZ_CHECK(
            !memcmp(json_string_value(json_object_get(j, "echo")), r->last_user, r->last_user_len));
        break;
    case GH_ECHO_TOOL: {
        j = json_loadb(text.data, text.len, JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(json_is_object(j) && json_object_size(j) <= GH_ECHO_PARAMS_MAX);
        FUZZ_CHECK(plan.tool[0]);
        bool named = false;
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(r->root, "tools"), i, t)
        {
            const char *name =
                json_string_value(json_object_get(json_object_get(t, "function"), "name"));
            named = named || (name && !strcmp(name, plan.tool));
        }
        FUZZ_CHECK(named);
        break;
    }
    }
    json_decref(j);
    gh_buf_dispose(&text);
}

/* A FIM body: parsed, and its upstream body. */
static int check_fim(const char *body, size_t len, unsigned cap, bool drop, bool stream)
{
    struct gh_chat_req r;
    struct gh_chat_error err;
    if (gh_fim_parse(body, len, cap, drop, &r, &err)) {
        FUZZ_CHECK(err.status == 400 || err.status == 422);
        FUZZ_CHECK(err.message[0] && err.code);
        gh_chat_req_dispose(&r);
        return 0;
    }
    FUZZ_CHECK(r.fim && r.model && *r.model);
    FUZZ_CHECK(r.upstream_max_tokens >= 1 && r.upstream_max_tokens <= cap);
    struct gh_buf b;
    gh_buf_init(&b, 4u << 20);
    FUZZ_CHECK(!gh_fim_upstream_body(r.root, "up/model", stream, r.upstream_max_tokens, &b));
    json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(j) && json_is_string(json_object_get(j, "prompt")));
    FUZZ_CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "up/model"));
    FUZZ_CHECK(!json_object_get(j, "messages") && !json_object_get(j, "tools"));
    FUZZ_CHECK(json_integer_value(json_object_get(j, "max_tokens")) ==
               (json_int_t)r.upstream_max_tokens);
    FUZZ_CHECK(stream == (json_object_get(j, "stream_options") != NULL));
    json_decref(j);
    gh_buf_dispose(&b);
    gh_chat_req_dispose(&r);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    bool drop = data[0] & 1, stream = data[0] & 2;
    unsigned cap = caps[(data[0] >> 2) & 3];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 16)
        return check_fim(body, len, cap, drop, stream);

    struct gh_chat_req r;
    struct gh_chat_error err;
    if (gh_chat_parse(body, len, cap, drop, &r, &err)) {
        FUZZ_CHECK(err.status == 400 || err.status == 422);
        FUZZ_CHECK(err.message[0] && err.code);
        FUZZ_CHECK(!err.param || strlen(err.param) < sizeof err.param_buf);
        gh_chat_req_dispose(&r);
        return 0;
    }
    FUZZ_CHECK(r.upstream_max_tokens >= 1 && r.upstream_max_tokens <= cap);
    FUZZ_CHECK(!r.max_tokens || r.upstream_max_tokens == r.max_tokens);
    FUZZ_CHECK(r.model && *r.model && r.nmessages > 0);

    struct gh_buf tree, splice;
    gh_buf_init(&tree, 4u << 20);
    gh_buf_init(&splice, 4u << 20);
    FUZZ_CHECK(
        !gh_chat_upstream_body_tree(r.root, "up/model", stream, r.upstream_max_tokens, &tree));
    json_t *jt = check_upstream(&tree, &r, stream);
    int rc = gh_chat_upstream_body(body, len, "up/model", stream, r.upstream_max_tokens, &splice);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (!rc && !r.pruned) {
        json_t *js = check_upstream(&splice, &r, stream);
        FUZZ_CHECK(json_equal(js, jt));
        json_decref(js);
    }
    json_decref(jt);
    check_echo(&r);
    gh_buf_dispose(&tree);
    gh_buf_dispose(&splice);
    gh_chat_req_dispose(&r);
    return 0;
}
