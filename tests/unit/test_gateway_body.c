/* Unit tests of the body the gateway sends upstream (gh_chat_upstream_body
 * in gateway/chat.h: a splice of the client's JSON, checked against what
 * jansson reads back) and of the SSE parser's in-place path for whole
 * events (gateway/sse.h). */
#include "test_util.h"

#include "gateway/chat.h"
#include "gateway/sse.h"

#include <jansson.h>

/* The upstream body of in, parsed back (NULL when the splice refused). */
static json_t *rewrite(const char *in, const char *model, bool stream, int *rc)
{
    struct gh_buf b;
    gh_buf_init(&b, 1u << 20);
    *rc = gh_chat_upstream_body(in, strlen(in), model, stream, &b);
    json_t *j = NULL;
    if (!*rc) {
        json_error_t e;
        j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &e);
        if (!j)
            fail_msg("not JSON: %.*s (%s)", (int)b.len, b.data, e.text);
    }
    gh_buf_dispose(&b);
    return j;
}

static void body_splice(void **state)
{
    (void)state;
    int rc;
    /* non-streamed: model replaced, stream_options dropped, the rest kept */
    json_t *j = rewrite(" {\"model\" : \"m\", \"messages\":[{\"role\":\"user\",\"content\":\"a,}\\\"b\"}],"
                        "\"stream_options\":{\"include_usage\":false},\"temperature\":0.5,"
                        "\"stop\":[\"}\",\"]\"]} ",
                        "up/\"q\"", false, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "up/\"q\"");
    assert_null(json_object_get(j, "stream_options"));
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

    /* streamed with stream_options: include_usage forced, other members kept */
    j = rewrite("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false,"
                "\"extra\":{\"a\":[1,2]}}}",
                "x", true, &rc);
    assert_int_equal(rc, 0);
    json_t *so = json_object_get(j, "stream_options");
    assert_true(json_is_true(json_object_get(so, "include_usage")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(so, "extra"), "a")), 2);
    json_decref(j);

    /* stream_options null; an empty object */
    j = rewrite("{\"model\":\"m\",\"stream_options\":null}", "x", true, &rc);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);
    j = rewrite("{}", "x", true, &rc);
    assert_int_equal(rc, 0);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);

    /* an escaped top-level key: refused (the caller uses jansson) */
    j = rewrite("{\"mod\\u0065l\":\"m\"}", "x", false, &rc);
    assert_int_equal(rc, GH_EINVAL);
    assert_null(j);
    j = rewrite("[1]", "x", false, &rc);
    assert_int_equal(rc, GH_EINVAL);
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
        cmocka_unit_test(sse_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
