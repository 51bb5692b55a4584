/* Unit tests of the shared limits' GCRA script (shield/redis.h,
 * gh_redis_gcra_lua) against a throwaway redis-server on a loopback port:
 * its answers match gh_limit_gcra's (limiter.c) step by step, a refusal's
 * retry and reset times, a cost that can never pass, the refund that gives
 * a unit back, the key's expiry, an account's failed sign-ins and their
 * back-off, the chat quotas' script (rates as gh_quota_check has them, all
 * or nothing, leases that expire or are renewed, the day's tokens reserved
 * and settled), the loop adapter (shield/redis_uv.h: a turn's commands,
 * one that overfills the socket, a refused connect, nothing left on the
 * loop), and the Redis URL parser. The scripts run
 * on Redis's clock, so the rates are slow (one unit an hour): the seconds a
 * test takes change nothing. Skipped when redis-server is not installed. */
#include "test_util.h"

#include "core/redisurl.h"
#include "gateway/quota.h"
#include "shield/limiter.h"
#include "shield/redis.h"
#include "shield/redis_uv.h"

#include <hiredis/async.h>
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
static int port;

static int start(void **state)
{
    (void)state;
    if (system("command -v redis-server >/dev/null 2>&1") != 0)
        return 0;
    port = 20000 + (int)(getpid() % 20000);
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

/* ---- the chat API's quotas (gh_redis_quota_lua) ---- */

/* One run of the quota script on user u's and key k's keys (as
 * gh_redis_quota_send names them): lim = the user's then the key's rpm,
 * tpm, tpd, concurrency. out: its 15 numbers. */
static void quota(const char *op, const char *u, const char *k, const char *lease, unsigned est,
                  unsigned actual, long long day, unsigned lease_ms, const unsigned lim[8],
                  long long out[15])
{
    char keys[4][64], a[12][24];
    snprintf(keys[0], sizeof keys[0], "gh:{%s}:q", u);
    snprintf(keys[1], sizeof keys[1], "gh:{%s}:uc", u);
    snprintf(keys[2], sizeof keys[2], "gh:{%s}:kq%s", u, k);
    snprintf(keys[3], sizeof keys[3], "gh:{%s}:kc%s", u, k);
    snprintf(a[0], sizeof a[0], "%u", est);
    snprintf(a[1], sizeof a[1], "%u", actual);
    snprintf(a[2], sizeof a[2], "%lld", day);
    snprintf(a[3], sizeof a[3], "%u", lease_ms);
    for (int i = 0; i < 8; i++)
        snprintf(a[4 + i], sizeof a[4 + i], "%u", lim[i]);
    const char *argv[21] = {"EVAL", gh_redis_quota_lua, "4", keys[0], keys[1], keys[2], keys[3], op,
                            lease};
    for (int i = 0; i < 12; i++)
        argv[9 + i] = a[i];
    redisReply *r = redisCommandArgv(rc, 21, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 15);
    for (int i = 0; i < 15; i++)
        out[i] = r->element[i]->integer;
    freeReplyObject(r);
}

/* rpm 3 on the key: the script and gh_quota_check (gateway/quota.c) agree
 * at each step, remaining and Retry-After; a refusal takes nothing. */
static void quota_rates_match_local(void **state)
{
    (void)state;
    NEED_REDIS();
    const unsigned lim[8] = {0, 0, 0, 0, 3, 0, 0, 0};
    struct gh_quota_limits l = {.rpm = 3};
    struct gh_quota_state st = {0};
    struct gh_quota_info info;
    long long v[15];
    for (int i = 0; i < 4; i++) {
        enum gh_quota_verdict want = gh_quota_check(&st, &l, 0, 1, 5, true, &info);
        quota("take", "q1", "k", "c1", 5, 0, 0, 60000, lim, v);
        assert_int_equal(v[0], want == GH_QUOTA_OK ? 0 : 1);
        if (want == GH_QUOTA_OK) {
            assert_int_equal(v[9], info.remaining_requests);
        } else {
            assert_int_equal(v[1], 1); /* the key refused */
            /* 20 s of the minute, less the instants the test took */
            assert_true(v[2] > 19000 && v[2] <= 20000);
        }
    }
    /* all or nothing: the user (rpm 2) passed, the key (rpm 1) refused:
     * the user's allowance is untouched by the refusal */
    const unsigned both[8] = {2, 0, 0, 0, 1, 0, 0, 0};
    quota("take", "q2", "k", "c1", 5, 0, 0, 60000, both, v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[4], 1);
    quota("take", "q2", "k", "c2", 5, 0, 0, 60000, both, v);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 1);
    const unsigned other[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    quota("take", "q2", "other", "c3", 5, 0, 0, 60000, other, v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[4], 0);
    /* every key of the call is under the user's hash tag: one slot */
    redisReply *r = redisCommand(rc, "KEYS *q2*");
    for (size_t i = 0; i < r->elements; i++)
        assert_memory_equal(r->element[i]->str, "gh:{q2}:", 8);
    assert_true(r->elements >= 2);
    freeReplyObject(r);
}

/* Concurrency 1 on the user: a second call waits for the first's settle,
 * or for its lease to expire (a node that died holding it). */
static void quota_concurrency_leases(void **state)
{
    (void)state;
    NEED_REDIS();
    const unsigned lim[8] = {0, 0, 0, 1, 0, 0, 0, 0};
    long long v[15];
    quota("take", "q3", "", "a", 5, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    quota("take", "q3", "", "b", 5, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], 2);
    quota("settle", "q3", "", "a", 5, 5, v[3], 60000, lim, v);
    quota("take", "q3", "", "b", 5, 0, 0, 200, lim, v);
    assert_int_equal(v[0], 0);
    /* renewed, b outlives its first lease */
    usleep(100000);
    quota("renew", "q3", "", "b", 5, 0, 0, 60000, lim, v);
    usleep(200000);
    quota("take", "q3", "", "c", 5, 0, 0, 100, lim, v);
    assert_int_equal(v[0], 3);
    quota("settle", "q3", "", "b", 5, 5, v[3], 60000, lim, v);
    /* c's lease runs out unsettled: the slot frees by itself */
    quota("take", "q3", "", "c", 5, 0, 0, 100, lim, v);
    assert_int_equal(v[0], 0);
    usleep(250000);
    quota("take", "q3", "", "d", 5, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    /* a take answers the user's leases with its own (the gateway keeps a
     * spare slot only while they are few); a refusal, a renew: 0 */
    const unsigned four[8] = {0, 0, 0, 4, 0, 0, 0, 0};
    quota("take", "q7", "", "a", 5, 0, 0, 60000, four, v);
    assert_int_equal(v[14], 1);
    quota("take", "q7", "", "b", 5, 0, 0, 60000, four, v);
    assert_int_equal(v[14], 2);
    quota("renew", "q7", "", "b", 5, 0, 0, 60000, four, v);
    assert_int_equal(v[14], 0);
    quota("settle", "q7", "", "a", 5, 5, v[3], 60000, four, v);
    quota("take", "q7", "", "c", 5, 0, 0, 60000, four, v);
    assert_int_equal(v[14], 2);
    quota("take", "q7", "", "c", 5, 0, 0, 60000, four, v); /* the same id again */
    assert_int_equal(v[14], 0);
}

/* tpd 10 on the user: estimates are reserved at take, the real count
 * replaces them at settle; spent, the day is refused until it renews. */
static void quota_day_tokens(void **state)
{
    (void)state;
    NEED_REDIS();
    const unsigned lim[8] = {0, 0, 10, 0, 0, 0, 0, 0};
    long long v[15], day;
    quota("take", "q4", "", "a", 8, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[8], 8);
    day = v[3];
    quota("take", "q4", "", "b", 8, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[8], 16);
    quota("take", "q4", "", "c", 8, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 4);
    assert_true(v[2] > 0 && v[2] <= 86400000);
    quota("settle", "q4", "", "a", 8, 3, day, 60000, lim, v);
    assert_int_equal(v[8], 11);
    quota("settle", "q4", "", "b", 8, 3, day, 60000, lim, v);
    assert_int_equal(v[8], 6);
    quota("peek", "q4", "", "", 0, 0, 0, 60000, lim, v);
    assert_int_equal(v[8], 6);
    quota("take", "q4", "", "c", 8, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    /* tpm 100: an estimate of 90 leaves no room for 20 until its settle
     * gives back what was not used */
    const unsigned tpm[8] = {0, 100, 0, 0, 0, 0, 0, 0};
    quota("take", "q5", "", "a", 90, 0, 0, 60000, tpm, v);
    assert_int_equal(v[0], 0);
    quota("take", "q5", "", "b", 20, 0, 0, 60000, tpm, v);
    assert_int_equal(v[0], 2);
    quota("settle", "q5", "", "a", 90, 10, v[3], 60000, tpm, v);
    quota("take", "q5", "", "b", 20, 0, 0, 60000, tpm, v);
    assert_int_equal(v[0], 0);
}

/* A state is 32 bytes of four doubles: a value of any other length under
 * a state's name (a foreign writer, a truncated copy) reads as no state,
 * and the take writes a good one over it; the state's expiry follows the
 * backlog (rpm 60: one take holds 1 s of it, plus a second). */
static void quota_state_format(void **state)
{
    (void)state;
    NEED_REDIS();
    const unsigned lim[8] = {60, 0, 0, 0, 0, 0, 0, 0};
    long long v[15];
    redisReply *r = redisCommand(rc, "SET gh:{q6}:q %s", "not a state");
    freeReplyObject(r);
    quota("take", "q6", "", "a", 5, 0, 0, 60000, lim, v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[4], 59);
    r = redisCommand(rc, "STRLEN gh:{q6}:q");
    assert_int_equal(r->integer, 32);
    freeReplyObject(r);
    r = redisCommand(rc, "PTTL gh:{q6}:q");
    assert_true(r->integer > 1000 && r->integer <= 2000);
    freeReplyObject(r);
    quota("take", "q6", "", "b", 5, 0, 0, 60000, lim, v);
    assert_int_equal(v[4], 58);
}

/* ---- the loop adapter (redis_uv.c) ---- */

#define ADAPTER_CMDS 200
#define BIG_VALUE    (32u << 20) /* far more than a loopback socket takes at once */

struct adapter_run {
    int replies, in_order, connected, disconnected;
    size_t big_len;
};

static void on_adapter_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct adapter_run *run = ac->data;
    redisReply *rep = r;
    intptr_t i = (intptr_t)priv;
    if (!rep)
        return;
    if (i == run->replies)
        run->in_order++;
    run->replies++;
    if (i == ADAPTER_CMDS + 1 && rep->type == REDIS_REPLY_STRING)
        run->big_len = rep->len;
    if (run->replies == ADAPTER_CMDS + 2)
        redisAsyncDisconnect(ac);
}

/* Queues the test's commands: from a reply's callback, so they go out
 * at the turn's end (the prepare), where the big one fills the socket
 * and the rest waits for room (the poll). */
static void adapter_send(redisAsyncContext *ac)
{
    char *big = malloc(BIG_VALUE);
    assert_non_null(big);
    memset(big, 'x', BIG_VALUE);
    for (intptr_t i = 0; i < ADAPTER_CMDS; i++)
        assert_int_equal(
            redisAsyncCommand(ac, on_adapter_reply, (void *)i, "SET gh:ad:%d %d", (int)i, (int)i),
            REDIS_OK);
    assert_int_equal(redisAsyncCommand(ac, on_adapter_reply, (void *)(intptr_t)ADAPTER_CMDS,
                                       "SET gh:ad:big %b", big, (size_t)BIG_VALUE),
                     REDIS_OK);
    free(big);
    assert_int_equal(redisAsyncCommand(ac, on_adapter_reply, (void *)(intptr_t)(ADAPTER_CMDS + 1),
                                       "GET gh:ad:big"),
                     REDIS_OK);
}

static void on_adapter_pong(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    if (r)
        adapter_send(ac);
}

/* The batch goes after a first answer: from a read callback, not from
 * the connect's write (which writes whatever is queued itself). */
static void on_adapter_connect(const redisAsyncContext *ac, int status)
{
    struct adapter_run *run = ac->data;
    run->connected = status == REDIS_OK ? 1 : -1;
    if (status == REDIS_OK)
        redisAsyncCommand((redisAsyncContext *)ac, on_adapter_pong, NULL, "PING");
}

static void on_adapter_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    ((struct adapter_run *)ac->data)->disconnected++;
}

/* A turn's commands, written together, answered in order; a value that
 * overfills the socket's buffer (the write that waits for room); the
 * disconnect closes the adapter's handles: the loop closes empty. */
static void loop_adapter(void **state)
{
    (void)state;
    NEED_REDIS();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct adapter_run run = {0};
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", port);
    assert_non_null(ac);
    assert_int_equal(ac->err, 0);
    assert_int_equal(gh_redis_uv_attach(ac, &loop), REDIS_OK);
    assert_int_equal(gh_redis_uv_attach(ac, &loop), REDIS_ERR); /* once */
    ac->data = &run;
    redisAsyncSetConnectCallback(ac, on_adapter_connect);
    redisAsyncSetDisconnectCallback(ac, on_adapter_disconnect);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once nothing is left on the loop */
    assert_int_equal(run.connected, 1);
    assert_int_equal(run.replies, ADAPTER_CMDS + 2);
    assert_int_equal(run.in_order, ADAPTER_CMDS + 2);
    assert_int_equal(run.big_len, BIG_VALUE);
    assert_int_equal(run.disconnected, 1);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* a refused connect: reported, and the handles close all the same */
    assert_int_equal(uv_loop_init(&loop), 0);
    struct adapter_run none = {0};
    ac = redisAsyncConnect("127.0.0.1", 1);
    assert_non_null(ac);
    assert_int_equal(gh_redis_uv_attach(ac, &loop), REDIS_OK);
    ac->data = &none;
    redisAsyncSetConnectCallback(ac, on_adapter_connect);
    redisAsyncSetDisconnectCallback(ac, on_adapter_disconnect);
    redisAsyncCommand(ac, on_adapter_reply, (void *)0, "PING");
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(none.connected, -1);
    assert_int_equal(none.replies, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
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
        cmocka_unit_test(quota_rates_match_local),
        cmocka_unit_test(quota_concurrency_leases),
        cmocka_unit_test(quota_day_tokens),
        cmocka_unit_test(quota_state_format),
        cmocka_unit_test(loop_adapter),
        cmocka_unit_test(url_parse),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
