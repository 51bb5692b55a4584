/* Unit tests of the browser-facing request checks (http/websec.h,
 * core/origin.h): origin comparison against the Host header and against
 * server.public_origin, the Content-Type test, and the public_origin
 * setting's validation. */
#include "test_util.h"

#include "core/origin.h"
#include "http/websec.h"

static bool ok_host(const char *origin, const char *host)
{
    return gh_websec_origin_ok(origin, strlen(origin), host, strlen(host), "");
}

static bool ok_conf(const char *origin, const char *public_origin)
{
    return gh_websec_origin_ok(origin, strlen(origin), "ignored:1", 9, public_origin);
}

static void origin_against_host(void **state)
{
    (void)state;
    assert_true(ok_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
    assert_true(ok_host("https://chat.example.com", "chat.example.com"));
    assert_true(ok_host("https://chat.example.com", "chat.example.com:443"));
    assert_true(ok_host("http://chat.example.com:80", "chat.example.com"));
    assert_true(ok_host("HTTPS://Chat.Example.COM", "chat.example.com"));
    assert_true(ok_host("http://[::1]:8080", "[::1]:8080"));
    /* another host, port or a look-alike */
    assert_false(ok_host("http://127.0.0.1:8081", "127.0.0.1:8080"));
    assert_false(ok_host("https://evil.example", "chat.example.com"));
    assert_false(ok_host("https://chat.example.com.evil.example", "chat.example.com"));
    assert_false(ok_host("https://chat.example.com:8443", "chat.example.com"));
    assert_false(ok_host("http://chat.example.com", "chat.example.com:443"));
    assert_false(ok_host("http://[::1]:8080", "[::2]:8080"));
}

static void origin_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {"null",        "",           "file://",       "x.example",
                                      "http://",     "http://a b", "http://x/",     "http://x?y",
                                      "http://u@x",  "http://x:",  "http://x:99999", "http://x:8o",
                                      "http://[::1", "http://[]",  "ftp://x",        "http://x#"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(ok_host(bad[i], "x"));
        assert_false(gh_origin_setting_ok(bad[i]) && bad[i][0]);
    }
    /* no Host header: nothing to compare with */
    assert_false(gh_websec_origin_ok("http://x", 8, NULL, 0, ""));
    /* over-long values are refused, not truncated into a match */
    char longo[600];
    memset(longo, 'a', sizeof longo);
    memcpy(longo, "http://", 7);
    assert_false(gh_websec_origin_ok(longo, sizeof longo, longo + 7, sizeof longo - 7, ""));
}

static void origin_against_setting(void **state)
{
    (void)state;
    const char *site = "https://chat.example.com";
    assert_true(ok_conf("https://chat.example.com", site));
    assert_true(ok_conf("https://chat.example.com:443", site));
    assert_true(ok_conf("https://CHAT.example.com", site));
    assert_false(ok_conf("http://chat.example.com", site));
    assert_false(ok_conf("https://chat.example.com:8443", site));
    assert_false(ok_conf("https://ignored:1", site)); /* the Host does not matter */
    assert_true(ok_conf("http://10.0.0.5:8080", "http://10.0.0.5:8080"));
    assert_true(gh_origin_setting_ok(""));
    assert_true(gh_origin_setting_ok(site));
    assert_true(gh_origin_setting_ok("http://[2001:db8::1]:8080"));
    assert_false(gh_origin_setting_ok("https://chat.example.com/"));
    assert_false(gh_origin_setting_ok("chat.example.com"));
}

static void content_type(void **state)
{
    (void)state;
    static const char *const yes[] = {"application/json", "Application/JSON",
                                      "application/json; charset=utf-8",
                                      " application/json ;charset=UTF-8", "application/json;"};
    static const char *const no[] = {"",
                                     "text/plain",
                                     "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x",
                                     "application/jsonp",
                                     "application/json-seq",
                                     "text/plain; application/json",
                                     "application/jso"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(gh_websec_is_json(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(gh_websec_is_json(no[i], strlen(no[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(origin_against_host),
        cmocka_unit_test(origin_malformed),
        cmocka_unit_test(origin_against_setting),
        cmocka_unit_test(content_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
