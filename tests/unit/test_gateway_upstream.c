/* Unit tests of the upstream pool (gateway/upstream.h): the upstreams
 * file, least outstanding requests per weight with slots and tokens, the 429 cool-down, out of
 * rotation after 401, and the circuit breaker with its half-open probe. */
#include "test_util.h"

#include "gateway/upstream.h"

static char dir[256], path[300];

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char conf[] = "; two servers for one model\n"
                           "[upstream a]\nmodel = m\nbase_url = http://127.0.0.1:1/v1/\n"
                           "api_key_env = TEST_KEY\nmax_concurrent = 1\nweight = 3\n"
                           "connect_timeout = 2s\ntimeout = 1m\n"
                           "[upstream b]\nmodel = m\nbase_url = http://127.0.0.1:2/v1\n"
                           "upstream_model = real-name\n";

static void load(void **state)
{
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/upstreams.ini", dir);
    write_file(conf);
    char *env[] = {"TEST_KEY=sk-secret", NULL};
    struct gh_upstreams u;
    char err[512];
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.ups[0].base_url, "http://127.0.0.1:1/v1");
    assert_string_equal(u.ups[0].api_key, "sk-secret");
    assert_string_equal(u.ups[0].upstream_model, "m");
    assert_string_equal(u.ups[1].upstream_model, "real-name");
    assert_int_equal(u.ups[0].weight, 3);
    assert_int_equal(u.ups[0].connect_timeout_ms, 2000);
    assert_int_equal(u.ups[1].max_concurrent, 64);
    assert_true(gh_upstreams_has_model(&u, "m"));
    assert_false(gh_upstreams_has_model(&u, "x"));
    gh_upstreams_dispose(&u);

    /* errors name the file and line */
    write_file("[upstream a]\nmodel = m\nbase_url = ftp://x\n");
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), GH_EINVAL);
    assert_non_null(strstr(err, "upstreams.ini:3:"));
    assert_non_null(strstr(err, "base_url"));
    write_file("[upstream a]\nmodel = m\nbase_url = http://x\napi_key_env = NOPE\n");
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), GH_EINVAL);
    assert_non_null(strstr(err, "NOPE"));
    write_file("[upstream a]\nmodel = m\n");
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), GH_EINVAL);
    assert_non_null(strstr(err, "required"));
    write_file("[models]\nx = y\n");
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), GH_EINVAL);
    assert_int_equal(gh_upstreams_load("", env, &u, err, sizeof err), 0);
    assert_int_equal(u.n, 0);
    tu_rmtree(dir);
}

static struct gh_upstreams pool(void)
{
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/upstreams.ini", dir);
    write_file(conf);
    char *env[] = {"TEST_KEY=k", NULL};
    struct gh_upstreams u;
    char err[512];
    assert_int_equal(gh_upstreams_load(path, env, &u, err, sizeof err), 0);
    tu_rmtree(dir);
    return u;
}

static const struct gh_breaker br = {.failures = 3, .window_ms = 10000, .open_ms = 5000,
                                     .cooldown_ms = 2000};

static void slots_and_tried(void **state)
{
    struct gh_upstreams u = pool();
    /* a has one slot */
    int first = gh_upstream_acquire(&u, "m", 0, 1000, 0, 0); /* the least loaded per weight: a */
    assert_int_equal(first, 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 0, 1000, 0, 0), 1); /* a is full: b */
    /* with b tried, a full: wait */
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 0), GH_EBUSY);
    assert_int_equal(gh_upstream_acquire(&u, "x", 0, 1000, 0, 0), GH_ENOTFOUND);
    gh_upstream_release(&u.ups[0], &br, GH_UP_SUCCESS, 0, 1000, 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 0), 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 3, 1000, 0, 0), GH_ENOTFOUND);
    gh_upstreams_dispose(&u);
}

static void cooldown_and_auth(void **state)
{
    struct gh_upstreams u = pool();
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 0), 0);
    gh_upstream_release(&u.ups[0], &br, GH_UP_RATE_LIMITED, 0, 1000, 0);
    assert_string_equal(gh_upstream_state(&u.ups[0], 1500), "cooling_down");
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1500, 0, 0), GH_ENOTFOUND);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 3000, 0, 0), 0);
    /* the upstream's Retry-After wins over the default */
    gh_upstream_release(&u.ups[0], &br, GH_UP_RATE_LIMITED, 30000, 3000, 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 20000, 0, 0), GH_ENOTFOUND);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 33001, 0, 0), 0);
    gh_upstream_release(&u.ups[0], &br, GH_UP_AUTH, 0, 34000, 0);
    assert_string_equal(gh_upstream_state(&u.ups[0], 1000000), "disabled");
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000000, 0, 0), GH_ENOTFOUND);
    gh_upstreams_dispose(&u);
}

static void breaker(void **state)
{
    struct gh_upstreams u = pool();
    uint64_t now = 100000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gh_upstream_acquire(&u, "m", 2, now, 0, 0), 0);
        gh_upstream_release(&u.ups[0], &br, GH_UP_FAILURE, 0, now, 0);
    }
    assert_string_equal(gh_upstream_state(&u.ups[0], now), "circuit_open");
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, now + 4999, 0, 0), GH_ENOTFOUND);
    /* half-open: one probe only */
    u.ups[0].max_concurrent = 5;
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, now + 5000, 0, 0), 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, now + 5001, 0, 0), GH_ENOTFOUND);
    /* the probe fails: open again */
    gh_upstream_release(&u.ups[0], &br, GH_UP_FAILURE, 0, now + 5002, 0);
    assert_string_equal(gh_upstream_state(&u.ups[0], now + 5003), "circuit_open");
    /* the next probe succeeds: closed */
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, now + 10003, 0, 0), 0);
    gh_upstream_release(&u.ups[0], &br, GH_UP_SUCCESS, 0, now + 10004, 0);
    assert_string_equal(gh_upstream_state(&u.ups[0], now + 10005), "up");
    /* failures spread over more than the window do not open it */
    now = 200000;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(gh_upstream_acquire(&u, "m", 2, now, 0, 0), 0);
        gh_upstream_release(&u.ups[0], &br, GH_UP_FAILURE, 0, now, 0);
        now += 6000;
    }
    assert_string_equal(gh_upstream_state(&u.ups[0], now), "up");
    gh_upstreams_dispose(&u);
}

static uint64_t retry_after(const char *v, uint64_t now_s, int want_rc)
{
    uint64_t ms = 12345;
    assert_int_equal(gh_upstream_retry_after(v, strlen(v), now_s, &ms), want_rc);
    return ms;
}

static void retry_after_values(void **state)
{
    (void)state;
    assert_int_equal(retry_after(" 5\r\n", 0, 0), 5000);
    assert_int_equal(retry_after("0", 0, 0), 0);
    assert_int_equal(retry_after("86401", 0, 0), 86400000);
    assert_int_equal(retry_after("99999999999999999999999999", 0, 0), 86400000);
    /* 784111777 = Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example) */
    assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 30, 0), 30000);
    assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 30, 0), 0);
    assert_int_equal(retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800 - 1, 0), 1000);
    const char *bad[] = {"",
                         " ",
                         "5s",
                         "-1",
                         "1.5",
                         "12 34",
                         "0x10",
                         "Mon, 06 Nov 1994 08:49:37 GMT", /* the wrong weekday */
                         "Sunday, 06-Nov-94 08:49:37 GMT",
                         "Sun Nov  6 08:49:37 1994",
                         "Sun, 31 Nov 1994 08:49:37 GMT",
                         "Wed, 29 Feb 2023 00:00:00 GMT",
                         "Sun, 06 Nov 1994 24:00:00 GMT"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++)
        assert_int_equal(retry_after(bad[i], 0, GH_EINVAL), 0);
}

/* Least outstanding requests per weight, and admission by tokens. */
static void least_outstanding_and_tokens(void **state)
{
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/upstreams.ini", dir);
    write_file("[upstream a]\nmodel = m\nbase_url = http://127.0.0.1:1/v1\nweight = 2\n"
               "max_tokens_in_flight = 1000\npriority_field = vllm\n"
               "[upstream b]\nmodel = m\nbase_url = http://127.0.0.1:2/v1\n");
    struct gh_upstreams u;
    char err[512];
    assert_int_equal(gh_upstreams_load(path, NULL, &u, err, sizeof err), 0);
    assert_true(u.ups[0].priority_vllm);
    assert_false(u.ups[1].priority_vllm);
    assert_int_equal(u.ups[0].max_tokens_in_flight, 1000);
    assert_int_equal(gh_upstreams_model_index(&u, "m"), 0);
    assert_int_equal(gh_upstreams_model_index(&u, "x"), -1);
    assert_int_equal(gh_upstreams_slots(&u, "m", 1000), 128);
    /* weight 2 against 1: six calls spread 4 to a, 2 to b */
    int order[6];
    for (int i = 0; i < 6; i++)
        order[i] = gh_upstream_acquire(&u, "m", 0, 1000, (uint32_t)i * 7919u, 100);
    unsigned na = 0;
    for (int i = 0; i < 6; i++)
        na += order[i] == 0;
    assert_int_equal(na, 4);
    assert_int_equal(atomic_load(&u.ups[0].tokens_in_flight), 400);
    /* a 700-token call does not fit a's 1000 beside 400: b takes it */
    assert_int_equal(gh_upstream_acquire(&u, "m", 0, 1000, 0, 700), 1);
    gh_upstream_release(&u.ups[1], &br, GH_UP_SUCCESS, 0, 1000, 700);
    /* with b tried, a is full for it: wait */
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 700), GH_EBUSY);
    for (int i = 0; i < 4; i++)
        gh_upstream_release(&u.ups[0], &br, GH_UP_SUCCESS, 0, 1000, 100);
    assert_int_equal(atomic_load(&u.ups[0].tokens_in_flight), 0);
    /* an idle upstream takes a call larger than its cap: it runs alone */
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 5000), 0);
    assert_int_equal(gh_upstream_acquire(&u, "m", 2, 1000, 0, 1), GH_EBUSY);
    gh_upstream_release(&u.ups[0], &br, GH_UP_SUCCESS, 0, 1000, 5000);
    gh_upstreams_dispose(&u);
    write_file("[upstream a]\nmodel = m\nbase_url = http://x\npriority_field = sglang\n");
    assert_int_equal(gh_upstreams_load(path, NULL, &u, err, sizeof err), GH_EINVAL);
    assert_non_null(strstr(err, "priority_field"));
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(load),
        cmocka_unit_test(slots_and_tried),
        cmocka_unit_test(cooldown_and_auth),
        cmocka_unit_test(breaker),
        cmocka_unit_test(retry_after_values),
        cmocka_unit_test(least_outstanding_and_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
