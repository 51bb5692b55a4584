/* Unit tests of the gateway's request validation, token rule, duration
 * format and its own JSON (gateway/chat.h), and of the SSE parser that
 * reads upstream streams (gateway/sse.h). */
#include "test_util.h"

#include "gateway/chat.h"
#include "gateway/sse.h"

#include <jansson.h>

static int parse(const char *body, struct gh_chat_req *r, struct gh_chat_error *e)
{
    return gh_chat_parse(body, strlen(body), 1000, false, r, e);
}

static void expect_error(const char *body, int status, const char *code, const char *param,
                         const char *msg_part)
{
    struct gh_chat_req r;
    struct gh_chat_error e;
    assert_int_equal(parse(body, &r, &e), GH_EINVAL);
    assert_int_equal(e.status, status);
    assert_string_equal(e.code, code);
    if (param)
        assert_string_equal(e.param, param);
    else
        assert_null(e.param);
    if (msg_part && !strstr(e.message, msg_part))
        fail_msg("message '%s' lacks '%s'", e.message, msg_part);
    gh_chat_req_dispose(&r);
}

static void valid_request(void **state)
{
    struct gh_chat_req r;
    struct gh_chat_error e;
    const char *body = "{\"model\":\"echo\",\"stream\":true,\"max_tokens\":5,"
                       "\"stream_options\":{\"include_usage\":true},\"messages\":["
                       "{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":\"first\"},"
                       "{\"role\":\"assistant\",\"content\":\"ok\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello there\"}]}]}";
    assert_int_equal(parse(body, &r, &e), 0);
    assert_string_equal(r.model, "echo");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_int_equal(r.max_tokens, 5);
    assert_int_equal(r.nmessages, 4);
    assert_int_equal(r.last_user_len, 11);
    assert_memory_equal(r.last_user, "hello there", 11);
    /* 8+5+2+11 = 26 bytes -> 7 tokens, + 4 per message */
    assert_int_equal(r.prompt_tokens, 7 + 16);
    gh_chat_req_dispose(&r);
}

static void bad_requests(void **state)
{
    expect_error("", 400, "invalid_json", NULL, "empty");
    expect_error("{\"model\":", 400, "invalid_json", NULL, "not valid JSON");
    expect_error("[1,2]", 400, "invalid_request", NULL, "JSON object");
    expect_error("{\"messages\":[]}", 400, "invalid_request", "model", "model is required");
    expect_error("{\"model\":7,\"messages\":[]}", 400, "invalid_request", "model", NULL);
    expect_error("{\"model\":\"echo\"}", 400, "invalid_request", "messages", "required");
    expect_error("{\"model\":\"echo\",\"messages\":[]}", 400, "invalid_request", "messages",
                 "non-empty");
    expect_error("{\"model\":\"echo\",\"messages\":\"hi\"}", 400, "invalid_request", "messages",
                 NULL);
    expect_error("{\"model\":\"echo\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400,
                 "invalid_request", "messages", "messages[0].role");
    expect_error("{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                 "{\"role\":\"user\",\"content\":5}]}",
                 400, "invalid_request", "messages", "messages[1].content");
    expect_error("{\"model\":\"echo\",\"messages\":[{\"role\":\"user\"}]}", 400, "invalid_request",
                 "messages", "content is required");
    expect_error("{\"model\":\"echo\",\"stream\":\"yes\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 400, "invalid_request", "stream", NULL);
    expect_error("{\"model\":\"echo\",\"max_tokens\":\"5\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 400, "invalid_request", "max_tokens", "integer");
    expect_error("{\"model\":\"echo\",\"max_tokens\":1001,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 422, "invalid_parameter", "max_tokens", "between 1 and 1000");
    expect_error("{\"model\":\"echo\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 422, "invalid_parameter", "max_tokens", NULL);
    expect_error("{\"model\":\"echo\",\"temperature\":3,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 422, "invalid_parameter", "temperature", NULL);
    expect_error("{\"model\":\"echo\",\"n\":2,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 422, "invalid_parameter", "n", NULL);
    expect_error("{\"model\":\"echo\",\"model\":\"x\",\"messages\":[]}", 400, "invalid_json", NULL,
                 NULL);
}

static void token_rule(void **state)
{
    assert_int_equal(gh_chat_estimate_tokens("", 0), 0);
    assert_int_equal(gh_chat_estimate_tokens("a", 1), 1);
    assert_int_equal(gh_chat_estimate_tokens("abcd", 4), 1);
    assert_int_equal(gh_chat_estimate_tokens("abcde", 5), 2);
}

static void durations(void **state)
{
    char d[32];
    struct {
        uint64_t ms;
        const char *want;
    } cases[] = {{0, "0s"},       {12, "12ms"},     {999, "999ms"},       {1000, "1s"},
                 {1500, "1.5s"},  {20000, "20s"},   {360000, "6m0s"},     {61250, "1m1.25s"},
                 {3723000, "1h2m3s"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gh_chat_format_duration(cases[i].ms, d, sizeof d);
        assert_string_equal(d, cases[i].want);
    }
}

/* Every event of an SSE text must be a JSON object (or [DONE]). */
static void sse_framing(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 1 << 16);
    assert_int_equal(gh_chat_sse_chunk(&b, "chatcmpl-1", 1700000000, "echo", "assistant", "", 0,
                                       NULL, true),
                     0);
    assert_int_equal(gh_chat_sse_chunk(&b, "chatcmpl-1", 1700000000, "echo", NULL, "a \"q\"\n", 6,
                                       NULL, false),
                     0);
    assert_int_equal(
        gh_chat_sse_chunk(&b, "chatcmpl-1", 1700000000, "echo", NULL, NULL, 0, "stop", true), 0);
    assert_int_equal(gh_chat_sse_usage(&b, "chatcmpl-1", 1700000000, "echo", 3, 4), 0);
    assert_int_equal(gh_chat_sse_error(&b, "broke \"off\"", "server_error", "upstream_error"), 0);
    assert_int_equal(gh_chat_sse_done(&b), 0);
    const char *p = b.data;
    int n = 0;
    while (*p) {
        assert_memory_equal(p, "data: ", 6);
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        const char *data = p + 6;
        size_t len = (size_t)(end - data);
        if (len == 6 && !memcmp(data, "[DONE]", 6)) {
            assert_string_equal(end + 2, "");
        } else {
            json_error_t je;
            json_t *j = json_loadb(data, len, 0, &je);
            if (!j)
                fail_msg("event %d is not JSON: %s", n, je.text);
            if (n < 4) {
                assert_string_equal(json_string_value(json_object_get(j, "object")),
                                    "chat.completion.chunk");
                assert_string_equal(json_string_value(json_object_get(j, "id")), "chatcmpl-1");
            }
            if (n == 0) {
                json_t *u = json_object_get(j, "usage");
                assert_true(u && json_is_null(u));
            }
            if (n == 1) {
                json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                                                "delta");
                assert_string_equal(json_string_value(json_object_get(delta, "content")),
                                    "a \"q\"\n");
                assert_null(json_object_get(j, "usage"));
            }
            if (n == 3) {
                assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
                assert_int_equal(
                    json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")),
                    7);
            }
            if (n == 4)
                assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"),
                                                                      "code")),
                                    "upstream_error");
            json_decref(j);
        }
        n++;
        p = end + 2;
    }
    assert_int_equal(n, 6);
    gh_buf_dispose(&b);
}

static void completion_json(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 1 << 16);
    assert_int_equal(
        gh_chat_completion(&b, "chatcmpl-2", 1, "echo", "Echo: hi", 8, "length", 5, 2), 0);
    json_t *j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "Echo: hi");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 5);
    json_decref(j);
    gh_buf_dispose(&b);
}

struct events {
    char got[8][64];
    int n;
};

static int on_event(const char *data, size_t len, void *ud)
{
    struct events *ev = ud;
    if (ev->n >= 8)
        return GH_ETOOBIG;
    snprintf(ev->got[ev->n++], 64, "%.*s", (int)len, data);
    return 0;
}

static void sse_parser(void **state)
{
    const char *text = ": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:{\"b\":2}\n\n"
                       "data: line1\ndata: line2\n\nid: 4\n\ndata: [DONE]\n\n";
    /* fed whole, and byte by byte: the same events */
    for (int mode = 0; mode < 2; mode++) {
        struct gh_sse_parser p;
        gh_sse_init(&p, 1024);
        struct events ev = {0};
        size_t len = strlen(text);
        if (mode == 0) {
            assert_int_equal(gh_sse_feed(&p, text, len, on_event, &ev), 0);
        } else {
            for (size_t i = 0; i < len; i++)
                assert_int_equal(gh_sse_feed(&p, text + i, 1, on_event, &ev), 0);
        }
        assert_int_equal(ev.n, 4);
        assert_string_equal(ev.got[0], "{\"a\":1}");
        assert_string_equal(ev.got[1], "{\"b\":2}");
        assert_string_equal(ev.got[2], "line1\nline2");
        assert_string_equal(ev.got[3], "[DONE]");
        assert_false(gh_sse_pending(&p));
        gh_sse_dispose(&p);
    }
}

static void sse_parser_caps(void **state)
{
    struct gh_sse_parser p;
    gh_sse_init(&p, 16);
    struct events ev = {0};
    char big[64];
    memset(big, 'x', sizeof big);
    assert_int_equal(gh_sse_feed(&p, "data: ", 6, on_event, &ev), 0);
    assert_int_equal(gh_sse_feed(&p, big, sizeof big, on_event, &ev), GH_ETOOBIG);
    gh_sse_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_request), cmocka_unit_test(bad_requests),
        cmocka_unit_test(token_rule),    cmocka_unit_test(durations),
        cmocka_unit_test(sse_framing),   cmocka_unit_test(completion_json),
        cmocka_unit_test(sse_parser),    cmocka_unit_test(sse_parser_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
