/* Unit tests of the capped buffer (core/buf.h): appends within and at the
 * cap, consume, steal, JSON and HTML escaping. */
#include "test_util.h"

#include "core/buf.h"

static void append_within_cap(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 64);
    assert_null(b.data); /* init allocates nothing */
    assert_int_equal(gh_buf_append(&b, "hello", 5), 0);
    assert_int_equal(gh_buf_append_str(&b, ", world"), 0);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.data, "hello, world"); /* always NUL-terminated */
    assert_int_equal(gh_buf_printf(&b, " %d+%s", 42, "x"), 0);
    assert_string_equal(b.data, "hello, world 42+x");
    assert_int_equal(b.len, strlen("hello, world 42+x"));
    assert_true(b.alloc <= b.cap + 1);
    gh_buf_dispose(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void append_toobig_at_exact_cap(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 10);
    assert_int_equal(gh_buf_append(&b, "0123456789", 10), 0); /* exactly cap: fine */
    assert_int_equal(b.len, 10);
    assert_int_equal(gh_buf_append(&b, "x", 1), GH_ETOOBIG); /* one past: refused */
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(gh_buf_append(&b, "", 0), 0); /* nothing more is still fine */
    assert_int_equal(gh_buf_reserve(&b, 0), 0);
    assert_int_equal(gh_buf_reserve(&b, 1), GH_ETOOBIG);
    gh_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(gh_buf_append(&b, "01234567890", 11), GH_ETOOBIG); /* too big at once */
    assert_int_equal(b.len, 0);
    assert_int_equal(gh_buf_append(&b, "abc", 3), 0);
    assert_int_equal(gh_buf_append(&b, "defghijk", 8), GH_ETOOBIG); /* 3 + 8 = 11 */
    assert_string_equal(b.data, "abc");
    assert_int_equal(gh_buf_append(&b, "defghij", 7), 0); /* 3 + 7 = 10 */
    assert_string_equal(b.data, "abcdefghij");
    /* a huge n must not wrap the check around */
    assert_int_equal(gh_buf_append(&b, "x", SIZE_MAX), GH_ETOOBIG);
    assert_int_equal(gh_buf_reserve(&b, SIZE_MAX - 5), GH_ETOOBIG);
    assert_string_equal(b.data, "abcdefghij");
    gh_buf_dispose(&b);
}

static void printf_toobig_at_exact_cap(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 8);
    assert_int_equal(gh_buf_printf(&b, "%d", 1234567), 0);    /* 7 */
    assert_int_equal(gh_buf_printf(&b, "%s", "ab"), GH_ETOOBIG); /* 9: never truncates */
    assert_int_equal(b.len, 7);
    assert_string_equal(b.data, "1234567");
    assert_int_equal(gh_buf_printf(&b, "%c", 'z'), 0); /* 8 = cap */
    assert_string_equal(b.data, "1234567z");
    assert_int_equal(gh_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(gh_buf_printf(&b, "%c", 'q'), GH_ETOOBIG);
    assert_string_equal(b.data, "1234567z");
    gh_buf_dispose(&b);

    /* growth across several reallocations keeps the content */
    gh_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(gh_buf_printf(&b, "%04d", i % 10000), 0);
    assert_int_equal(b.len, 40000);
    assert_memory_equal(b.data + 4 * 1234, "1234", 4);
    assert_memory_equal(b.data + 4 * 9999, "9999", 4);
    gh_buf_dispose(&b);
}

static void zero_cap(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 0);
    assert_int_equal(gh_buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    assert_int_equal(gh_buf_append(&b, "a", 1), GH_ETOOBIG);
    assert_int_equal(gh_buf_printf(&b, "x"), GH_ETOOBIG);
    gh_buf_dispose(&b);
}

static void consume(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 64);
    assert_int_equal(gh_buf_append_str(&b, "GET / HTTP/1.1\r\n"), 0);
    gh_buf_consume(&b, 4);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.data, "/ HTTP/1.1\r\n");
    gh_buf_consume(&b, 0);
    assert_string_equal(b.data, "/ HTTP/1.1\r\n");
    gh_buf_consume(&b, 12);
    assert_int_equal(b.len, 0);
    /* the freed room is usable up to the cap again */
    char big[64];
    memset(big, 'q', sizeof big);
    assert_int_equal(gh_buf_append(&b, big, 64), 0);
    gh_buf_consume(&b, 60);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "qqqq", 4);
    assert_int_equal(gh_buf_append(&b, big, 60), 0);
    assert_int_equal(gh_buf_append(&b, "z", 1), GH_ETOOBIG);
    gh_buf_dispose(&b);
}

static void steal(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 32);
    assert_int_equal(gh_buf_append_str(&b, "owned"), 0);
    size_t len = 0;
    char *p = gh_buf_steal(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 5);
    assert_string_equal(p, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.cap, 32); /* the cap survives */
    /* the buffer is reusable and does not touch the stolen block */
    assert_int_equal(gh_buf_append_str(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    assert_ptr_not_equal(b.data, p);
    assert_string_equal(p, "owned");
    free(p);
    p = gh_buf_steal(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
    /* stealing an empty, never-grown buffer gives NULL */
    assert_null(gh_buf_steal(&b, &len));
    assert_int_equal(len, 0);
    gh_buf_dispose(&b);
}

static void json_expect(const char *in, size_t n, const char *want)
{
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    assert_int_equal(gh_buf_append_json_str(&b, in, n), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    gh_buf_dispose(&b);
}

#define JSON(lit, want) json_expect(lit, sizeof(lit) - 1, want)

static void json_escaping(void **state)
{
    JSON("plain text", "plain text");
    JSON("", "");
    JSON("say \"hi\"", "say \\\"hi\\\"");
    JSON("C:\\path\\", "C:\\\\path\\\\");
    JSON("a\nb\rc\td", "a\\nb\\rc\\td");
    JSON("\x01\x1f", "\\u0001\\u001f");
    JSON("\b\f", "\\u0008\\u000c");
    JSON("nul\0byte", "nul\\u0000byte"); /* n counts, not strlen */
    JSON("/ < > & '", "/ < > & '");      /* nothing else changes */
}

static void json_utf8(void **state)
{
    /* valid multi-byte sequences are kept as they are */
    JSON("caf\xc3\xa9", "caf\xc3\xa9");                          /* é, 2 bytes */
    JSON("\xe2\x82\xac" "5", "\xe2\x82\xac" "5");                /* €, 3 bytes */
    JSON("\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!");              /* emoji, 4 bytes */
    JSON("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");                /* U+10FFFF */
    JSON("\xef\xbf\xbd", "\xef\xbf\xbd");                        /* U+FFFD itself */
    /* invalid bytes become \ufffd, one per byte, and the rest is kept */
    JSON("\xff", "\\ufffd");
    JSON("a\x80z", "a\\ufffdz");                                  /* lone continuation */
    JSON("\xc0\xaf", "\\ufffd\\ufffd");                           /* overlong '/' */
    JSON("\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd");                /* overlong, 3 bytes */
    JSON("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");                /* surrogate D800 */
    JSON("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");     /* > U+10FFFF */
    JSON("\xf5\x80", "\\ufffd\\ufffd");
    JSON("\xe2\x82", "\\ufffd\\ufffd");                           /* truncated at the end */
    JSON("\xe2\x82x", "\\ufffd\\ufffdx");                         /* truncated mid-string */
    JSON("\xc3" "\"", "\\ufffd\\\"");                             /* lead byte, then quote */
    /* the length given is respected: a sequence cut by n is invalid */
    json_expect("\xc3\xa9", 1, "\\ufffd");
}

static void json_toobig(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 6);
    assert_int_equal(gh_buf_append_json_str(&b, "\x01", 1), 0); /* \u0001 = 6 */
    assert_string_equal(b.data, "\\u0001");
    assert_int_equal(gh_buf_append_json_str(&b, "a", 1), GH_ETOOBIG);
    gh_buf_dispose(&b);
    gh_buf_init(&b, 5);
    assert_int_equal(gh_buf_append_json_str(&b, "\xff", 1), GH_ETOOBIG); /* \ufffd = 6 */
    assert_true(b.len <= b.cap);
    gh_buf_dispose(&b);
}

static void html_escaping(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 256);
    const char in[] = "<a href=\"x\" title='y'>Tom & Jerry</a>";
    assert_int_equal(gh_buf_append_html(&b, in, sizeof in - 1), 0);
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; "
                                "Jerry&lt;/a&gt;");
    gh_buf_reset(&b);
    assert_int_equal(gh_buf_append_html(&b, "caf\xc3\xa9 ok", 8), 0);
    assert_string_equal(b.data, "caf\xc3\xa9 ok");
    gh_buf_reset(&b);
    assert_int_equal(gh_buf_append_html(&b, "&<", 1), 0); /* n respected */
    assert_string_equal(b.data, "&amp;");
    gh_buf_dispose(&b);

    gh_buf_init(&b, 4);
    assert_int_equal(gh_buf_append_html(&b, "<", 1), 0); /* "&lt;" = 4 */
    assert_int_equal(gh_buf_append_html(&b, "a", 1), GH_ETOOBIG);
    assert_string_equal(b.data, "&lt;");
    gh_buf_dispose(&b);
}

static void reset_keeps_block(void **state)
{
    struct gh_buf b;
    gh_buf_init(&b, 1000);
    assert_int_equal(gh_buf_append_str(&b, "something"), 0);
    char *block = b.data;
    size_t alloc = b.alloc;
    gh_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, block);
    assert_int_equal(b.alloc, alloc);
    assert_int_equal(gh_buf_append_str(&b, "x"), 0);
    assert_string_equal(b.data, "x");
    gh_buf_dispose(&b);
    /* a disposed buffer is reusable */
    assert_int_equal(gh_buf_append_str(&b, "y"), 0);
    assert_string_equal(b.data, "y");
    gh_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_within_cap),  cmocka_unit_test(append_toobig_at_exact_cap),
        cmocka_unit_test(printf_toobig_at_exact_cap), cmocka_unit_test(zero_cap),
        cmocka_unit_test(consume),            cmocka_unit_test(steal),
        cmocka_unit_test(json_escaping),      cmocka_unit_test(json_utf8),
        cmocka_unit_test(json_toobig),        cmocka_unit_test(html_escaping),
        cmocka_unit_test(reset_keeps_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
