/* Unit tests of the body the gateway sends upstream (gh_chat_upstream_body
 * in gateway/chat.h: a splice of the client's JSON, checked against what
 * jansson reads back) and of the SSE parser's in-place path for whole
 * events (gateway/sse.h). */
#include "test_util.h"

#include "gateway/chat.h"
#include "gateway/sse.h"

#include <jansson.h>

/* The upstream body of in, parsed back (NULL when the splice refused);
 * checked against the jansson build of the same request. */
static json_t *rewrite(const char *in, const char *model, bool stream, int *rc)
{
    struct gh_buf b;
    gh_buf_init(&b, 1u << 20);
    *rc = gh_chat_upstream_body(in, strlen(in), model, stream, 77, &b);
    json_t *j = NULL;
    if (!*rc) {
        json_error_t e;
        j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &e);
        if (!j)
            fail_msg("not JSON: %.*s (%s)", (int)b.len, b.data, e.text);
        json_t *root = json_loads(in, 0, NULL);
        struct gh_buf t;
        gh_buf_init(&t, 1u << 20);
        assert_int_equal(gh_chat_upstream_body_tree(root, model, stream, 77, &t), 0);
        json_t *jt = json_loadb(t.data, t.len, 0, NULL);
        if (!json_equal(j, jt))
            fail_msg("splice %.*s != tree %.*s", (int)b.len, b.data, (int)t.len, t.data);
        json_decref(jt);
        json_decref(root);
        gh_buf_dispose(&t);
    }
    gh_buf_dispose(&b);
    return j;
}

static void body_splice(void **state)
{
    (void)state;
    int rc;
    /* non-streamed: model replaced, stream_options dropped, max_tokens set,
     * the rest kept */
    json_t *j = rewrite(" {\"model\" : \"m\", \"messages\":[{\"role\":\"user\",\"content\":\"a,}\\\"b\"}],"
                        "\"stream_options\":{\"include_usage\":false},\"temperature\":0.5,"
                        "\"stop\":[\"}\",\"]\"]} ",
                        "up/\"q\"", false, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "up/\"q\"");
    assert_null(json_object_get(j, "stream_options"));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 77);
    assert_true(json_number_value(json_object_get(j, "temperature")) == 0.5);
    json_t *m0 = json_array_get(json_object_get(j, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "content")), "a,}\"b");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stop"), 1)), "]");
    json_decref(j);

    /* streamed without stream_options: it is added */
    j = rewrite("{\"messages\":[],\"model\":\"m\",\"stream\":true}", "x", true, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "x");
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    assert_true(json_is_true(json_object_get(j, "stream")));
    json_decref(j);

    /* streamed with stream_options: only include_usage, forced */
    j = rewrite("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false,"
                "\"extra\":{\"a\":[1,2]}}}",
                "x", true, &rc);
    assert_int_equal(rc, 0);
    json_t *so = json_object_get(j, "stream_options");
    assert_true(json_is_true(json_object_get(so, "include_usage")));
    assert_int_equal(json_object_size(so), 1);
    json_decref(j);

    /* stream_options null; an empty object */
    j = rewrite("{\"model\":\"m\",\"stream_options\":null}", "x", true, &rc);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);
    j = rewrite("{}", "x", true, &rc);
    assert_int_equal(rc, 0);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 77);
    json_decref(j);

    /* an escaped top-level key: refused (the caller uses jansson) */
    j = rewrite("{\"mod\\u0065l\":\"m\"}", "x", false, &rc);
    assert_int_equal(rc, GH_EINVAL);
    assert_null(j);
    j = rewrite("[1]", "x", false, &rc);
    assert_int_equal(rc, GH_EINVAL);
}

/* The attack of issue 10 item 13: backend fields that lift the caps never
 * leave, and max_tokens is always sent as min(requested, cap). */
static void backend_fields(void **state)
{
    (void)state;
    const char *attack = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                         "\"min_tokens\":100000,\"ignore_eos\":true,\"n_predict\":-1,"
                         "\"best_of\":50}";
    struct gh_chat_req r;
    struct gh_chat_error e;
    assert_int_equal(gh_chat_parse(attack, strlen(attack), 4096, false, &r, &e), GH_EINVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "unknown_parameter");
    assert_non_null(e.param);
    assert_true(strstr(e.message, e.param) != NULL);
    gh_chat_req_dispose(&r);

    /* drop mode: accepted, and the body sent upstream carries none of them */
    assert_int_equal(gh_chat_parse(attack, strlen(attack), 4096, true, &r, &e), 0);
    assert_int_equal(r.max_tokens, 0);
    assert_int_equal(r.upstream_max_tokens, 4096);
    struct gh_buf b;
    gh_buf_init(&b, 1u << 16);
    assert_int_equal(
        gh_chat_upstream_body(attack, strlen(attack), "up", false, r.upstream_max_tokens, &b), 0);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    assert_int_equal(json_object_size(j), 3); /* model, messages, max_tokens */
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 4096);
    json_decref(j);
    gh_buf_dispose(&b);
    gh_chat_req_dispose(&r);

    /* both limits given: the smaller one, under its own name */
    const char *both = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"max_completion_tokens\":9,\"max_tokens\":300}";
    assert_int_equal(gh_chat_parse(both, strlen(both), 4096, false, &r, &e), 0);
    assert_int_equal(r.upstream_max_tokens, 9);
    gh_chat_req_dispose(&r);

    /* members of a message and of stream_options have their allow-lists */
    const char *nested = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\","
                         "\"chat_template_kwargs\":{}}]}";
    assert_int_equal(gh_chat_parse(nested, strlen(nested), 4096, false, &r, &e), GH_EINVAL);
    assert_true(strstr(e.message, "messages[0].chat_template_kwargs") != NULL);
    gh_chat_req_dispose(&r);
    assert_int_equal(gh_chat_parse(nested, strlen(nested), 4096, true, &r, &e), 0);
    assert_true(r.pruned);
    gh_buf_init(&b, 1u << 16);
    assert_int_equal(gh_chat_upstream_body_tree(r.root, "up", false, 10, &b), 0);
    assert_null(strstr(b.data, "chat_template_kwargs"));
    gh_buf_dispose(&b);
    gh_chat_req_dispose(&r);
    const char *so = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                     "\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}}";
    assert_int_equal(gh_chat_parse(so, strlen(so), 4096, false, &r, &e), GH_EINVAL);
    assert_string_equal(e.param, "stream_options.continuous_usage_stats");
    gh_chat_req_dispose(&r);

    /* the DeepSeek and OpenAI fields pass, checked for shape */
    const char *ok = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                     "\"thinking\":{\"type\":\"enabled\"},\"reasoning_effort\":\"high\","
                     "\"response_format\":{\"type\":\"json_object\"},\"tools\":[],"
                     "\"tool_choice\":\"auto\",\"stop\":[\"x\"],\"logprobs\":true,"
                     "\"top_logprobs\":3,\"seed\":1,\"user\":\"u\",\"parallel_tool_calls\":null}";
    assert_int_equal(gh_chat_parse(ok, strlen(ok), 4096, false, &r, &e), 0);
    gh_chat_req_dispose(&r);
    const char *bad = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                      "\"top_logprobs\":99}";
    assert_int_equal(gh_chat_parse(bad, strlen(bad), 4096, false, &r, &e), GH_EINVAL);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.param, "top_logprobs");
    gh_chat_req_dispose(&r);
}

struct events {
    int n;
    char got[8][64];
};

static int on_event(const char *data, size_t len, void *ud)
{
    struct events *ev = ud;
    if (ev->n < 8)
        snprintf(ev->got[ev->n++], sizeof ev->got[0], "%.*s", (int)len, data);
    return 0;
}

static void sse_in_place(void **state)
{
    (void)state;
    /* whole events, then one cut in the middle and one cut between its
     * two newlines, then CRLF */
    const char *a = "data: {\"a\":1}\n\ndata:{\"b\":2}\n\ndata: {\"c\"";
    const char *b = ":3}\n\ndata: {\"d\":4}\n";
    const char *c = "\ndata: {\"e\":5}\r\n\r\n";
    struct gh_sse_parser p;
    gh_sse_init(&p, 1024);
    struct events ev = {0};
    assert_int_equal(gh_sse_feed(&p, a, strlen(a), on_event, &ev), 0);
    assert_int_equal(ev.n, 2);
    assert_true(gh_sse_pending(&p));
    assert_int_equal(gh_sse_feed(&p, b, strlen(b), on_event, &ev), 0);
    assert_int_equal(gh_sse_feed(&p, c, strlen(c), on_event, &ev), 0);
    assert_int_equal(ev.n, 5);
    assert_string_equal(ev.got[0], "{\"a\":1}");
    assert_string_equal(ev.got[1], "{\"b\":2}");
    assert_string_equal(ev.got[2], "{\"c\":3}");
    assert_string_equal(ev.got[3], "{\"d\":4}");
    assert_string_equal(ev.got[4], "{\"e\":5}");
    assert_false(gh_sse_pending(&p));
    gh_sse_dispose(&p);

    /* the cap holds on the in-place path too */
    gh_sse_init(&p, 8);
    assert_int_equal(gh_sse_feed(&p, "data: 123456789\n\n", 17, on_event, &ev), GH_ETOOBIG);
    gh_sse_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(body_splice),
        cmocka_unit_test(backend_fields),
        cmocka_unit_test(sse_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
