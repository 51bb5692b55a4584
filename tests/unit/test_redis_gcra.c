/* Unit tests of the shared limits' GCRA script (shield/redis.h,
 * gh_redis_gcra_lua) against a throwaway redis-server on a loopback port:
 * its answers match gh_limit_gcra's (limiter.c) step by step, a refusal's
 * retry and reset times, a cost that can never pass, the refund that gives
 * a unit back, the key's expiry, an account's failed sign-ins and their
 * back-off, and the Redis URL parser. The script runs
 * on Redis's clock, so the rates are slow (one unit an hour): the seconds a
 * test takes change nothing. Skipped when redis-server is not installed. */
#include "test_util.h"

#include "core/redisurl.h"
#include "shield/limiter.h"
#include "shield/redis.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOUR_US 3600000000ull

static pid_t server;
static redisContext *rc;

static int start(void **state)
{
    (void)state;
    if (system("command -v redis-server >/dev/null 2>&1") != 0)
        return 0;
    int port = 20000 + (int)(getpid() % 20000);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    server = fork();
    if (server == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !rc; i++) {
        usleep(50000);
        redisContext *c = redisConnect("127.0.0.1", port);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok) {
                rc = c;
                break;
            }
        }
        redisFree(c);
    }
    return 0;
}

static int stop(void **state)
{
    (void)state;
    if (rc)
        redisFree(rc);
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
    }
    return 0;
}

/* One step of the script: {allowed, remaining, retry_us, reset_us}. */
static void step(const char *key, uint64_t t_us, uint64_t tau_us, unsigned cost, bool refund,
                 long long out[4])
{
    char a[4][24];
    snprintf(a[0], sizeof a[0], "%llu", (unsigned long long)t_us);
    snprintf(a[1], sizeof a[1], "%llu", (unsigned long long)tau_us);
    snprintf(a[2], sizeof a[2], "%u", cost);
    snprintf(a[3], sizeof a[3], "%d", refund ? 1 : 0);
    const char *argv[] = {"EVAL", gh_redis_gcra_lua, "1", key, a[0], a[1], a[2], a[3]};
    redisReply *r = redisCommandArgv(rc, 8, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    for (int i = 0; i < 4; i++)
        out[i] = r->element[i]->integer;
    freeReplyObject(r);
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!rc) {                                                                                 \
            printf("redis-server not found: skipped (apt-get install redis-server)\n");            \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* 3 an hour, burst 3: the script and gh_limit_gcra agree at each step. */
static void matches_local_gcra(void **state)
{
    (void)state;
    NEED_REDIS();
    struct gh_limit lim = {.period_ns = 3 * HOUR_US * 1000, .count = 3, .burst = 3};
    struct gh_limit_decision d;
    uint64_t tat = 0, now = 1000ull * HOUR_US * 1000;
    long long v[4];
    for (int i = 0; i < 4; i++) {
        tat = gh_limit_gcra(tat, &lim, 1, now, false, &d);
        step("gh:{t1}", HOUR_US, 3 * HOUR_US, 1, false, v);
        assert_int_equal(v[0], d.allowed ? 1 : 0);
        assert_int_equal(v[1], d.remaining);
    }
    /* the 4th was refused: it passes in one emission interval (an hour,
     * less the instants this test took) and the allowance is full in 3 */
    assert_true(v[2] > (long long)(HOUR_US - 5000000) && v[2] <= (long long)HOUR_US);
    assert_true(v[3] > (long long)(3 * HOUR_US - 5000000) && v[3] <= (long long)(3 * HOUR_US));
    redisReply *r = redisCommand(rc, "PTTL gh:{t1}");
    assert_true(r->integer > (long long)(3 * HOUR_US / 1000 - 5000));
    freeReplyObject(r);
}

static void impossible_and_refund(void **state)
{
    (void)state;
    NEED_REDIS();
    long long v[4];
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 3, false, v); /* cost 3 > burst 2 */
    assert_int_equal(v[0], 0);
    assert_int_equal(v[2], -1);
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 1, false, v);
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 1, false, v);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 0);
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 1, false, v);
    assert_int_equal(v[0], 0);
    /* a unit given back (the request was refused by another rule) passes again */
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 1, true, v);
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 1, false, v);
    assert_int_equal(v[0], 1);
    /* giving back everything deletes the key: nothing left to remember */
    step("gh:{t2}", HOUR_US, 2 * HOUR_US, 2, true, v);
    redisReply *r = redisCommand(rc, "EXISTS gh:{t2}");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

/* An account's failed sign-ins: the count, the floor from the store, the
 * doubling back-off with its cap (gh_backoff_ms), clear. */
static void failed_sign_ins(void **state)
{
    (void)state;
    NEED_REDIS();
    const char *fail[] = {"EVAL",  gh_redis_fails_lua, "1",       "gh:{t3}", "fail", "0",
                          "60000", "200000",           "86400000"};
    const char *get[] = {"EVAL", gh_redis_fails_lua, "1", "gh:{t3}", "get", "0", "0", "1", "1"};
    const char *clear[] = {"EVAL", gh_redis_fails_lua, "1", "gh:{t3}", "clear", "0", "0", "1", "1"};
    long long want[][2] = {{0, 0}, {1, 60000}, {2, 120000}, {3, 200000}};
    for (int i = 0; i < 4; i++) {
        redisReply *r = redisCommandArgv(rc, 9, i ? fail : get, NULL);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->element[0]->integer, want[i][0]);
        /* the back-off left: its length less the instants the test took */
        assert_true(r->element[1]->integer <= want[i][1] &&
                    r->element[1]->integer > want[i][1] - 5000);
        freeReplyObject(r);
    }
    /* the store knew of 9 failures: the next is the 10th */
    fail[5] = "9";
    redisReply *r = redisCommandArgv(rc, 9, fail, NULL);
    assert_int_equal(r->element[0]->integer, 10);
    freeReplyObject(r);
    freeReplyObject(redisCommandArgv(rc, 9, clear, NULL));
    r = redisCommandArgv(rc, 9, get, NULL);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[1]->integer, 0);
    freeReplyObject(r);
}

static void url_parse(void **state)
{
    (void)state;
    struct gh_redis_url u;
    assert_int_equal(gh_redis_url_parse("redis://10.0.0.5", 16, &u, NULL), 0);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    const char *v6 = "redis://[::1]:7000/3";
    assert_int_equal(gh_redis_url_parse(v6, strlen(v6), &u, NULL), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    const char *bad[] = {"http://x",        "redis://",     "redis://:pw@h", "redis://h:0",
                         "redis://h:65536", "redis://h/16", "redis://h/x",   "redis://[::1",
                         "redis://a b",     "redis://::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gh_buf err;
        gh_buf_init(&err, 512);
        assert_int_equal(gh_redis_url_parse(bad[i], strlen(bad[i]), &u, &err), GH_EINVAL);
        assert_true(err.len > 0);
        gh_buf_dispose(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_local_gcra),
        cmocka_unit_test(impossible_and_refund),
        cmocka_unit_test(failed_sign_ins),
        cmocka_unit_test(url_parse),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
