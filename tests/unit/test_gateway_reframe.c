/* Unit tests of the relay's re-framing (gateway/reframe.h): one compact
 * JSON object per event, the public model name, no system_fingerprint,
 * and everything that is not one JSON object refused; with the SSE parser
 * (gateway/sse.h), the multi-line data attack of issue 10 item 14. */
#include "test_util.h"

#include "gateway/reframe.h"
#include "gateway/sse.h"

static void expect(const char *in, const char *model, const char *want)
{
    struct gh_buf b;
    gh_buf_init(&b, 1u << 16);
    gh_buf_append_str(&b, "X");
    int rc = gh_reframe_json(in, strlen(in), model, &b);
    if (!want) {
        if (rc != GH_EINVAL)
            fail_msg("accepted %s as %s", in, b.data);
        assert_string_equal(b.data, "X"); /* untouched */
    } else {
        if (rc)
            fail_msg("refused %s (%d)", in, rc);
        assert_string_equal(b.data + 1, want);
    }
    gh_buf_dispose(&b);
}

static void compact_and_rewrite(void **state)
{
    (void)state;
    expect(" {\n  \"a\" : [ 1 , -2.5e+3, true,false ,null, {} , [] ],\r\n \"b\":\"x y\\n\" } ",
           NULL, "{\"a\":[1,-2.5e+3,true,false,null,{},[]],\"b\":\"x y\\n\"}");
    expect("{\"id\":\"c\",\"model\":\"deepseek-ai/DeepSeek-V3\",\"system_fingerprint\":\"fp_1\","
           "\"choices\":[{\"model\":\"inner\"}]}",
           "chat", "{\"id\":\"c\",\"model\":\"chat\",\"choices\":[{\"model\":\"inner\"}]}");
    /* system_fingerprint first, last, alone, twice; model not a string */
    expect("{\"system_fingerprint\":null,\"a\":1}", "m", "{\"a\":1}");
    expect("{\"a\":1,\"system_fingerprint\":{\"x\":[1]}}", "m", "{\"a\":1}");
    expect("{\"system_fingerprint\":1}", "m", "{}");
    expect("{\"system_fingerprint\":1,\"system_fingerprint\":2,\"b\":2}", "m", "{\"b\":2}");
    expect("{\"model\":7,\"model\":[\"x\"]}", "a\"b",
           "{\"model\":\"a\\\"b\",\"model\":\"a\\\"b\"}");
    /* an escaped key is read as the client would read it */
    expect("{\"mod\\u0065l\":\"secret\",\"system\\u005ffingerprint\":1}", "m",
           "{\"mod\\u0065l\":\"m\"}");
    expect("{\"\\u00e9\":1,\"model\\u0000\":2}", "m", "{\"\\u00e9\":1,\"model\\u0000\":2}");
    /* UTF-8 passes as it is */
    expect("{\"t\":\"\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\"}", "m",
           "{\"t\":\"\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\"}");
}

/* An upstream's error is found wherever its member stands (the relay
 * replaces the whole event with its own words). */
static void error_member(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"{\"error\":{\"message\":\"x\"}}", "1"},
        {"{\"id\":\"c\",\"error\":{\"message\":\"gpu-node-17\"}}", "1"},
        {"{\"id\":\"c\",\"err\\u006fr\":1}", "1"},
        {"{\"choices\":[{\"error\":1}],\"errors\":1}", "0"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        struct gh_buf b;
        gh_buf_init(&b, 1024);
        bool error = true;
        assert_int_equal(gh_reframe_event(cases[i][0], strlen(cases[i][0]), "m", &b, &error), 0);
        assert_int_equal(error, cases[i][1][0] == '1');
        gh_buf_dispose(&b);
    }
}

static void refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "[1]",
        "\"x\"",
        "{",
        "{}}",
        "{}{}",
        "{} x",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":tru}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"line\nbreak\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\xc0\xaf\"}",         /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}",     /* a surrogate */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* beyond U+10FFFF */
        "{\"a\":\"\xe4\xbd\"}",         /* cut */
        "{a:1}",
        "{\"a\":[1 2]}",
        "{\ndata: [DONE]\n}",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++)
        expect(bad[i], "m", NULL);
    /* nesting is capped */
    char deep[400];
    size_t o = 0;
    deep[o++] = '{';
    deep[o++] = '"';
    deep[o++] = 'a';
    deep[o++] = '"';
    deep[o++] = ':';
    for (int i = 0; i < 100; i++)
        deep[o++] = '[';
    for (int i = 0; i < 100; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = 0;
    expect(deep, NULL, NULL);
    /* the cap of the buffer holds, and leaves it intact */
    struct gh_buf b;
    gh_buf_init(&b, 8);
    assert_int_equal(gh_reframe_json("{\"abcdefgh\":1}", 14, NULL, &b), GH_ETOOBIG);
    assert_int_equal(b.len, 0);
    gh_buf_dispose(&b);
}

struct collected {
    struct gh_buf out;
    int events;
    int rc;
};

static int reframe_cb(const char *data, size_t len, void *ud)
{
    struct collected *c = ud;
    c->events++;
    return gh_reframe_event(data, len, "public", &c->out, NULL);
}

/* Issue 10 item 14: "data: {\ndata:\ndata: data: [DONE]\ndata: }\n\n" once
 * reached the client as two events, "{" and an early [DONE]. */
/* A public name longer than the upstream's makes the output grow while
 * it is written: the block is reallocated mid-object and the bytes already
 * written must survive it (a fresh buffer's NUL once landed on the '{'). */
static void model_grows_buffer(void **state)
{
    (void)state;
    const char *model = "deepseek-reasoner-with-a-much-longer-public-name";
    for (size_t pad = 0; pad < 600; pad++) {
        char in[1024], want[1200];
        char fill[601];
        memset(fill, 'x', pad);
        fill[pad] = 0;
        snprintf(in, sizeof in, "{\"model\":\"r\",\"t\":\"%s\"}", fill);
        snprintf(want, sizeof want, "{\"model\":\"%s\",\"t\":\"%s\"}", model, fill);
        struct gh_buf b;
        gh_buf_init(&b, 1u << 16);
        assert_int_equal(gh_reframe_json(in, strlen(in), model, &b), 0);
        assert_string_equal(b.data, want);
        gh_buf_dispose(&b);
        /* and after "data: " in an event */
        gh_buf_init(&b, 1u << 16);
        assert_int_equal(gh_reframe_event(in, strlen(in), model, &b, NULL), 0);
        assert_int_equal(memcmp(b.data, "data: {", 7), 0);
        gh_buf_dispose(&b);
    }
}

static void multiline_attack(void **state)
{
    (void)state;
    const char *attack = "data: {\"a\":1}\n\ndata: {\ndata:\ndata: data: [DONE]\ndata: }\n\n";
    struct gh_sse_parser p;
    gh_sse_init(&p, 1u << 16);
    struct collected c = {0};
    gh_buf_init(&c.out, 1u << 16);
    assert_int_equal(gh_sse_feed(&p, attack, strlen(attack), reframe_cb, &c), GH_EINVAL);
    assert_int_equal(c.events, 2);
    assert_string_equal(c.out.data, "data: {\"a\":1}\n\n");
    gh_sse_dispose(&p);

    /* a pretty-printed event is one event, one line */
    const char *pretty = "data: {\ndata:   \"model\": \"internal\",\ndata:   \"x\": [\ndata: "
                         "1]\ndata: }\n\ndata: [DONE]\n\n";
    gh_sse_init(&p, 1u << 16);
    gh_buf_reset(&c.out);
    c.events = 0;
    assert_int_equal(gh_sse_feed(&p, pretty, strlen(pretty), reframe_cb, &c), 0);
    assert_int_equal(c.events, 2);
    assert_string_equal(c.out.data, "data: {\"model\":\"public\",\"x\":[1]}\n\ndata: [DONE]\n\n");
    gh_sse_dispose(&p);
    gh_buf_dispose(&c.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(compact_and_rewrite),
        cmocka_unit_test(error_member),
        cmocka_unit_test(refused),
        cmocka_unit_test(multiline_attack),
        cmocka_unit_test(model_grows_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
