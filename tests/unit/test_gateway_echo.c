/* Unit tests of the API surface's pure parts: what the echo model answers
 * (gateway/echo.h), the FIM body of POST /beta/completions and its
 * upstream body, and the tool-call JSON the gateway writes (chat.h). */
#include "test_util.h"

#include "gateway/chat.h"
#include "gateway/echo.h"

#include <jansson.h>

/* The plan for a chat body, its text in out (>= 512 bytes). */
static enum gh_echo_kind plan_of(const char *body, char *tool, char *out, size_t outlen)
{
    struct gh_chat_req r;
    struct gh_chat_error e;
    if (gh_chat_parse(body, strlen(body), 1000, false, &r, &e))
        fail_msg("refused %s: %s", body, e.message);
    struct gh_echo_plan p;
    struct gh_buf b;
    gh_buf_init(&b, 1u << 16);
    assert_int_equal(gh_echo_plan(r.root, r.last_user, r.last_user_len, &p, &b), 0);
    snprintf(out, outlen, "%s", b.data);
    snprintf(tool, 65, "%s", p.tool);
    gh_buf_dispose(&b);
    gh_chat_req_dispose(&r);
    return p.kind;
}

#define WEATHER                                                                                    \
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"      \
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"      \
    "\"ok\":{\"type\":\"boolean\"},\"u\":{\"enum\":[\"c\",\"f\"]},\"opt\":{\"type\":\"string\"}}," \
    "\"required\":[\"city\",\"n\",\"ok\",\"u\"]}}}"
#define CLOCK "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}"

static void echo_kinds(void **state)
{
    (void)state;
    char tool[65], out[1024];
    assert_int_equal(plan_of("{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"a  b\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_WORDS);
    assert_string_equal(out, "Echo: a  b");
    assert_int_equal(plan_of("{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_WORDS);
    assert_string_equal(out, "Echo: (nothing)");
    assert_int_equal(plan_of("{\"model\":\"echo\",\"response_format\":{\"type\":\"json_object\"},"
                             "\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"hi\\\"\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_JSON);
    assert_string_equal(out, "{\"echo\":\"say \\\"hi\\\"\"}");
    /* a tool named in the last user message: the required parameters */
    assert_int_equal(plan_of("{\"model\":\"echo\",\"tools\":[" CLOCK "," WEATHER "],"
                             "\"messages\":[{\"role\":\"user\",\"content\":\"get_weather x\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_TOOL);
    assert_string_equal(tool, "get_weather");
    assert_string_equal(out, "{\"city\":\"get_weather x\",\"n\":0,\"ok\":false,\"u\":\"c\"}");
    /* required: the first tool; its schema has no parameters */
    assert_int_equal(plan_of("{\"model\":\"echo\",\"tools\":[" CLOCK "," WEATHER "],"
                             "\"tool_choice\":\"required\",\"messages\":[{\"role\":\"user\","
                             "\"content\":\"hi\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_TOOL);
    assert_string_equal(tool, "get_time");
    assert_string_equal(out, "{}");
    /* a named function wins over the text */
    assert_int_equal(plan_of("{\"model\":\"echo\",\"tools\":[" CLOCK "," WEATHER "],"
                             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
                             "\"get_time\"}},\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"get_weather\"}]}",
                             tool, out, sizeof out),
                     GH_ECHO_TOOL);
    assert_string_equal(tool, "get_time");
    /* a long message: each string argument is cut on a character boundary */
    char body[8192], big[4097];
    for (size_t i = 0; i < 4096; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[4096] = 0;
    snprintf(body, sizeof body,
             "{\"model\":\"echo\",\"tools\":[" CLOCK "],\"tool_choice\":\"required\","
             "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
             big);
    char args[8192];
    assert_int_equal(plan_of(body, tool, args, sizeof args), GH_ECHO_TOOL);
    assert_string_equal(args, "{}");
    snprintf(body, sizeof body,
             "{\"model\":\"echo\",\"tools\":[{\"type\":\"function\",\"function\":{"
             "\"name\":\"f\",\"parameters\":{\"properties\":{\"a\":{},\"b\":{}}}}}],"
             "\"tool_choice\":\"required\",\"messages\":[{\"role\":\"user\",\"content\":"
             "\"%s\"}]}",
             big);
    assert_int_equal(plan_of(body, tool, args, sizeof args), GH_ECHO_TOOL);
    json_t *j = json_loads(args, 0, NULL);
    assert_int_equal(json_string_length(json_object_get(j, "a")), GH_ECHO_ARG_MAX);
    assert_int_equal(json_string_length(json_object_get(j, "b")), GH_ECHO_ARG_MAX);
    json_decref(j);

    /* none, no name in the text, or a tool's result last: words */
    const char *words[] = {
        "{\"model\":\"echo\",\"tools\":[" WEATHER "],\"tool_choice\":\"none\",\"messages\":[{"
        "\"role\":\"user\",\"content\":\"get_weather\"}]}",
        "{\"model\":\"echo\",\"tools\":[" WEATHER "],\"messages\":[{\"role\":\"user\","
        "\"content\":\"weather?\"}]}",
        "{\"model\":\"echo\",\"tools\":[" WEATHER "],\"messages\":[{\"role\":\"user\","
        "\"content\":\"get_weather\"},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":"
        "\"sunny\"}]}",
        /* a tool without a name is never called */
        ("{\"model\":\"echo\",\"tools\":[{\"type\":\"function\"}],\"tool_choice\":\"required\","
         "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"),
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(words); i++)
        assert_int_equal(plan_of(words[i], tool, out, sizeof out), GH_ECHO_WORDS);
}

static void fim_body(void **state)
{
    (void)state;
    struct gh_chat_req r;
    struct gh_chat_error e;
    const char *body = "{\"model\":\"coder\",\"prompt\":\"def f(\",\"suffix\":\"return 1\","
                       "\"max_tokens\":64,\"logprobs\":3,\"echo\":false,\"stream\":true}";
    assert_int_equal(gh_fim_parse(body, strlen(body), 1000, false, &r, &e), 0);
    assert_true(r.fim && r.stream);
    assert_int_equal(r.upstream_max_tokens, 64);
    assert_int_equal(r.prompt_tokens, 4 + 4); /* 14 bytes -> 4, + 4 */
    struct gh_buf b;
    gh_buf_init(&b, 1u << 16);
    assert_int_equal(gh_fim_upstream_body(r.root, "up", true, 64, &b), 0);
    json_t *j = json_loads(b.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "up");
    assert_string_equal(json_string_value(json_object_get(j, "suffix")), "return 1");
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);
    gh_buf_dispose(&b);
    gh_chat_req_dispose(&r);

    const char *bad[][3] = {
        {"{\"model\":\"coder\"}", "prompt", "invalid_request"},
        {"{\"model\":\"coder\",\"prompt\":1}", "prompt", "invalid_request"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"suffix\":[]}", "suffix", "invalid_request"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"messages\":[]}", "messages", "unknown_parameter"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"n\":1}", "n", "unknown_parameter"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"logprobs\":true}", "logprobs", "invalid_request"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"logprobs\":21}", "logprobs", "invalid_parameter"},
        {"{\"model\":\"coder\",\"prompt\":\"x\",\"max_tokens\":1001}", "max_tokens",
         "invalid_parameter"},
        {"{\"prompt\":\"x\"}", "model", "invalid_request"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        if (!gh_fim_parse(bad[i][0], strlen(bad[i][0]), 1000, false, &r, &e))
            fail_msg("accepted %s", bad[i][0]);
        assert_string_equal(e.param, bad[i][1]);
        assert_string_equal(e.code, bad[i][2]);
        gh_chat_req_dispose(&r);
    }
    /* drop mode removes what reject refuses */
    const char *drop = "{\"model\":\"coder\",\"prompt\":\"x\",\"best_of\":4}";
    assert_int_equal(gh_fim_parse(drop, strlen(drop), 1000, true, &r, &e), 0);
    assert_null(json_object_get(r.root, "best_of"));
    gh_chat_req_dispose(&r);
}

static void tool_json(void **state)
{
    (void)state;
    struct gh_buf b;
    gh_buf_init(&b, 1u << 16);
    assert_int_equal(
        gh_chat_sse_tool_chunk(&b, "chatcmpl-1", 7, "echo", "call_1", "f", "", 0, false), 0);
    assert_int_equal(
        gh_chat_sse_tool_chunk(&b, "chatcmpl-1", 7, "echo", NULL, NULL, "{\"a\"", 4, true), 0);
    assert_string_equal(
        b.data,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":"
        "\"echo\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":"
        "\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"logprobs\":null,"
        "\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":"
        "\"echo\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
        "[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n");
    gh_buf_reset(&b);
    assert_int_equal(gh_chat_completion_tool(&b, "chatcmpl-1", 7, "echo", "call_1", "f", "{}", 2,
                                             "tool_calls", 3, 2),
                     0);
    json_t *j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    assert_true(json_is_null(json_object_get(m, "content")));
    json_t *call = json_array_get(json_object_get(m, "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(call, "id")), "call_1");
    assert_null(json_object_get(call, "index"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(call, "function"), "arguments")), "{}");
    json_decref(j);
    gh_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_kinds),
        cmocka_unit_test(fim_body),
        cmocka_unit_test(tool_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
