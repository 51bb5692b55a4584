/* Unit tests of the SMS senders (identity/smssend.h): the webhook
 * signature (a fixed vector, and that it depends on key, time and body),
 * the retry back-off arithmetic and which failures are retried, the log
 * sender's outbox lines, retries against a refusing port, and the bounded
 * queue with a receiver that never answers. Delivery to a real receiver
 * is tested end to end in tests/e2e/sms-webhook.test.mjs. */
#include "test_util.h"

#include "identity/smssend.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

static uint8_t key[32];

static void fill_key(void)
{
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
}

static void sign_vector(void **state)
{
    (void)state;
    fill_key();
    const char *body = "{\"to\":\"+8613800138000\"}\n";
    char sig[GH_SMSSEND_SIG_MAX];
    assert_int_equal(gh_smssend_sign(key, 1700000000, body, strlen(body), sig, sizeof sig), 0);
    /* HMAC-SHA256(key = 00 01 … 1f, "1700000000." + body), from Python's hmac */
    assert_string_equal(
        sig, "t=1700000000,v1=56fa1dea77553832e1d5a0e9ada8a57509658ca43f4442843d7676383877e0ac");
}

static void sign_depends_on_everything(void **state)
{
    (void)state;
    fill_key();
    const char *body = "{\"code\":\"123456\"}\n";
    char a[GH_SMSSEND_SIG_MAX], b[GH_SMSSEND_SIG_MAX];
    assert_int_equal(gh_smssend_sign(key, 100, body, strlen(body), a, sizeof a), 0);
    assert_int_equal(gh_smssend_sign(key, 100, body, strlen(body), b, sizeof b), 0);
    assert_string_equal(a, b);
    const char *v1a = strstr(a, ",v1=");
    assert_non_null(v1a);
    assert_int_equal(strlen(v1a + 4), 64);
    /* another time */
    assert_int_equal(gh_smssend_sign(key, 101, body, strlen(body), b, sizeof b), 0);
    assert_string_not_equal(strstr(a, ",v1="), strstr(b, ",v1="));
    /* another body (one byte) */
    const char *body2 = "{\"code\":\"123457\"}\n";
    assert_int_equal(gh_smssend_sign(key, 100, body2, strlen(body2), b, sizeof b), 0);
    assert_string_not_equal(a, b);
    /* another key (one bit) */
    uint8_t k2[32];
    memcpy(k2, key, 32);
    k2[31] ^= 1;
    assert_int_equal(gh_smssend_sign(k2, 100, body, strlen(body), b, sizeof b), 0);
    assert_string_not_equal(a, b);
    /* too small a buffer */
    assert_int_equal(gh_smssend_sign(key, 100, body, strlen(body), b, 40), GH_ETOOBIG);
}

static void backoff_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(gh_smssend_backoff_ms(0, 500), 0);
    assert_int_equal(gh_smssend_backoff_ms(1, 500), 500);
    assert_int_equal(gh_smssend_backoff_ms(2, 500), 1000);
    assert_int_equal(gh_smssend_backoff_ms(3, 500), 2000);
    assert_int_equal(gh_smssend_backoff_ms(6, 500), 16000);
    assert_int_equal(gh_smssend_backoff_ms(7, 500), GH_SMSSEND_BACKOFF_MAX_MS);
    assert_int_equal(gh_smssend_backoff_ms(20, 500), GH_SMSSEND_BACKOFF_MAX_MS);
    /* no overflow for absurd attempts or bases */
    assert_int_equal(gh_smssend_backoff_ms(4000000000u, 500), GH_SMSSEND_BACKOFF_MAX_MS);
    assert_int_equal(gh_smssend_backoff_ms(3, UINT64_MAX / 2), GH_SMSSEND_BACKOFF_MAX_MS);
    assert_int_equal(gh_smssend_backoff_ms(1, 10), 10);
    assert_int_equal(gh_smssend_backoff_ms(5, 10), 160);
}

static void what_is_retried(void **state)
{
    (void)state;
    assert_false(gh_smssend_retryable(CURLE_OK, 200));
    assert_false(gh_smssend_retryable(CURLE_OK, 204));
    assert_false(gh_smssend_retryable(CURLE_OK, 400));
    assert_false(gh_smssend_retryable(CURLE_OK, 401));
    assert_false(gh_smssend_retryable(CURLE_OK, 404));
    assert_false(gh_smssend_retryable(CURLE_OK, 301));
    assert_true(gh_smssend_retryable(CURLE_OK, 429));
    assert_true(gh_smssend_retryable(CURLE_OK, 500));
    assert_true(gh_smssend_retryable(CURLE_OK, 503));
    assert_true(gh_smssend_retryable(CURLE_OK, 599));
    assert_true(gh_smssend_retryable(CURLE_COULDNT_CONNECT, 0));
    assert_true(gh_smssend_retryable(CURLE_COULDNT_RESOLVE_HOST, 0));
    assert_true(gh_smssend_retryable(CURLE_OPERATION_TIMEDOUT, 0));
    assert_true(gh_smssend_retryable(CURLE_GOT_NOTHING, 0));
    assert_true(gh_smssend_retryable(CURLE_RECV_ERROR, 0));
    assert_false(gh_smssend_retryable(CURLE_URL_MALFORMAT, 0));
    assert_false(gh_smssend_retryable(CURLE_UNSUPPORTED_PROTOCOL, 0));
}

static void wait_stats(struct gh_smssend *s, struct gh_smssend_stats *st,
                       bool (*ok)(const struct gh_smssend_stats *))
{
    for (int i = 0; i < 1000; i++) {
        gh_smssend_stats(s, st);
        if (ok(st))
            return;
        usleep(10000);
    }
    fail_msg("sender statistics never got there");
}

static bool two_sent(const struct gh_smssend_stats *st)
{
    return st->sent == 2;
}

static void log_sender_lines(void **state)
{
    (void)state;
    fill_key();
    char dir[512], path[600];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sms-outbox.jsonl", dir);
    struct gh_smssend_options o = {.kind = "log", .outbox_path = path, .hmac_key = key};
    struct gh_smssend *s;
    assert_int_equal(gh_smssend_new(&o, &s), 0);
    assert_int_equal(gh_smssend_send(s, "+8613800138000", "register", "123456", "code \"x\""), 0);
    assert_int_equal(gh_smssend_send(s, "+14155550100", "login", "654321", "y"), 0);
    struct gh_smssend_stats st;
    wait_stats(s, &st, two_sent);
    gh_smssend_free(s);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char l1[1024], l2[1024], l3[16];
    assert_non_null(fgets(l1, sizeof l1, f));
    assert_non_null(fgets(l2, sizeof l2, f));
    assert_null(fgets(l3, sizeof l3, f));
    fclose(f);
    assert_int_equal(strncmp(l1, "{\"ts\":\"", 7), 0);
    assert_non_null(strstr(l1, "\",\"to\":\"+8613800138000\",\"purpose\":\"register\",\"code\":"
                               "\"123456\",\"text\":\"code \\\"x\\\"\"}\n"));
    assert_non_null(
        strstr(l2, "\"to\":\"+14155550100\",\"purpose\":\"login\",\"code\":\"654321\""));
    tu_rmtree(dir);
}

static void unknown_kind_and_missing_url(void **state)
{
    (void)state;
    struct gh_smssend *s;
    struct gh_smssend_options o = {.kind = "carrier-pigeon", .hmac_key = key};
    assert_int_equal(gh_smssend_new(&o, &s), GH_EINVAL);
    o.kind = "webhook";
    assert_int_equal(gh_smssend_new(&o, &s), GH_EINVAL);
    o.url = "";
    assert_int_equal(gh_smssend_new(&o, &s), GH_EINVAL);
}

/* A loopback port with a socket bound to it: listening (connections are
 * accepted by the kernel and then never answered) or not (refused). */
static int bound_port(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    if (listening)
        assert_int_equal(listen(fd, 16), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static bool one_failed(const struct gh_smssend_stats *st)
{
    return st->failed == 1 && st->inflight == 0;
}

static void retries_then_gives_up(void **state)
{
    (void)state;
    fill_key();
    int port;
    int fd = bound_port(false, &port); /* bound, not listening: refused */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sms", port);
    struct gh_smssend_options o = {.kind = "webhook",
                                   .url = url,
                                   .timeout_ms = 1000,
                                   .retries = 2,
                                   .hmac_key = key,
                                   .backoff_base_ms = 10};
    struct gh_smssend *s;
    assert_int_equal(gh_smssend_new(&o, &s), 0);
    assert_int_equal(gh_smssend_send(s, "+8613800138000", "login", "123456", "t"), 0);
    struct gh_smssend_stats st;
    wait_stats(s, &st, one_failed);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.dropped, 0);
    gh_smssend_free(s);
    close(fd);
}

static bool one_inflight(const struct gh_smssend_stats *st)
{
    return st->inflight == 1 && st->queued == 0;
}

static void bounded_queue_and_drain(void **state)
{
    (void)state;
    fill_key();
    int port;
    int fd = bound_port(true, &port); /* listening, never answering */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sms", port);
    struct gh_smssend_options o = {.kind = "webhook",
                                   .url = url,
                                   .timeout_ms = 800,
                                   .retries = 0,
                                   .hmac_key = key,
                                   .queue_max = 1,
                                   .max_inflight = 1};
    struct gh_smssend *s;
    assert_int_equal(gh_smssend_new(&o, &s), 0);
    assert_int_equal(gh_smssend_send(s, "+8613800138000", "login", "111111", "a"), 0);
    struct gh_smssend_stats st;
    wait_stats(s, &st, one_inflight);
    assert_int_equal(gh_smssend_send(s, "+8613800138000", "login", "222222", "b"), 0);
    assert_int_equal(gh_smssend_send(s, "+8613800138000", "login", "333333", "c"), GH_EBUSY);
    gh_smssend_stats(s, &st);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.queued, 1);
    uint64_t t0 = gh_now_ms();
    gh_smssend_free(s); /* drains within the timeout: both fail */
    uint64_t took = gh_now_ms() - t0;
    assert_true(took < 3000);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sign_vector),           cmocka_unit_test(sign_depends_on_everything),
        cmocka_unit_test(backoff_arithmetic),    cmocka_unit_test(what_is_retried),
        cmocka_unit_test(log_sender_lines),      cmocka_unit_test(unknown_kind_and_missing_url),
        cmocka_unit_test(retries_then_gives_up), cmocka_unit_test(bounded_queue_and_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
