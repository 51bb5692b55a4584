/* This module implements the cluster's Redis client (redis.h): a hiredis
 * asynchronous context per worker loop, the commands in flight with their
 * deadline, reconnection with back-off, the GCRA script, and the
 * reachable/unreachable state with its log lines and metrics. */
#include "shield/redis.h"

#include "core/list.h"
#include "core/log.h"
#include "core/redisurl.h"
#include "obs/metrics.h"

#include "shield/redis_uv.h"
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* KEYS[1] the limit's key; ARGV: emission interval T and tolerance tau in
 * microseconds, the cost, and "1" to give back an earlier step's cost.
 * Redis's own clock (TIME, allowed in scripts since effects are
 * replicated), in microseconds: 2^53 µs is 285 years, so Lua's doubles
 * hold it exactly. Answers {allowed, remaining, retry_after_us, reset_us};
 * retry_after_us -1 when the cost can never pass. The same arithmetic as
 * gh_limit_gcra (limiter.c). The key lives as long as its backlog. */
const char gh_redis_gcra_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T, tau, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local inc = T * cost\n"
    "if ARGV[4] == '1' then\n"
    "  local nt = tat - inc\n"
    "  if nt > now then\n"
    "    redis.call('SET', KEYS[1], string.format('%.0f', nt), 'PX', math.ceil((nt - now) / "
    "1000))\n"
    "  elseif tat > 0 then\n"
    "    redis.call('DEL', KEYS[1])\n"
    "  end\n"
    "  return {1, 0, 0, 0}\n"
    "end\n"
    "local backlog = math.max(tat, now) - now\n"
    "if inc <= tau and backlog + inc <= tau then\n"
    "  local nb = backlog + inc\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', now + nb), 'PX', math.ceil(nb / 1000) + "
    "1)\n"
    "  return {1, math.floor((tau - nb) / T), 0, nb}\n"
    "end\n"
    "local rem = 0\n"
    "if backlog < tau then rem = math.floor((tau - backlog) / T) end\n"
    "if inc > tau then return {0, rem, -1, backlog} end\n"
    "return {0, rem, backlog - (tau - inc), backlog}\n";

/* KEYS[1] a fixed window's counter; ARGV: the window in ms, the cap, and
 * "1" to give back an earlier charge. Answers {1, 0} when charged, {0,
 * ms until the window ends} when the cap is reached (nothing charged). */
const char gh_redis_window_lua[] =
    "if ARGV[3] == '1' then\n"
    "  if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end\n"
    "  return {1, 0}\n"
    "end\n"
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if v >= tonumber(ARGV[2]) then\n"
    "  local ttl = redis.call('PTTL', KEYS[1])\n"
    "  if ttl < 0 then ttl = tonumber(ARGV[1]) end\n"
    "  return {0, ttl}\n"
    "end\n"
    "if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
    "return {1, 0}\n";

/* KEYS[1] an account's failed sign-ins {n, u = back-off until, ms on
 * Redis's clock}; ARGV: "get", "fail" or "clear"; for "fail" the count
 * the store holds (the floor), the back-off base and cap in ms, and how
 * long the key lives. A failure makes n = max(n, floor) + 1 and the
 * back-off base x 2^(n-1) capped (gh_backoff_ms). Answers {n, ms left}. */
const char gh_redis_fails_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if ARGV[1] == 'clear' then redis.call('DEL', KEYS[1]) return {0, 0} end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')\n"
    "local u = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')\n"
    "if ARGV[1] == 'fail' then\n"
    "  n = math.max(n, tonumber(ARGV[2])) + 1\n"
    "  local base, mx, w = tonumber(ARGV[3]), tonumber(ARGV[4]), 0\n"
    "  if base > 0 then\n"
    "    w = base\n"
    "    for i = 2, n do if w >= mx then break end w = w * 2 end\n"
    "    if w > mx then w = mx end\n"
    "  end\n"
    "  u = now + w\n"
    "  redis.call('HSET', KEYS[1], 'n', n, 'u', string.format('%.0f', u))\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "end\n"
    "local left = 0\n"
    "if u > now then left = u - now end\n"
    "return {n, left}\n";

enum script { S_GCRA, S_WINDOW, S_FAILS, S_QUOTA, S_COUNT };
static const char *const scripts[S_COUNT] = {gh_redis_gcra_lua, gh_redis_window_lua,
                                             gh_redis_fails_lua, gh_redis_quota_lua};
static const unsigned script_answers[S_COUNT] = {4, 2, 2, 15};
/* S_QUOTA's keys and arguments are its command's own (cmd.xargv) */
static const unsigned script_args[S_COUNT] = {4, 3, 5, 0};
/* the most words of a command: EVALSHA, the SHA-1 and S_QUOTA's */
#define ARGV_MAX 24

enum cmd_kind { CMD_SCRIPT, CMD_CLAIM, CMD_SETUP, CMD_INTS };

/* One command in flight, in its worker's list, oldest first. */
struct cmd {
    struct gh_list node;
    struct rworker *rw;
    enum cmd_kind kind;
    enum script script; /* CMD_SCRIPT's; CMD_SETUP "load": the one it loads */
    uint64_t sent_ms;
    bool eval; /* sent as EVAL (the SHA-1 was unknown, or NOSCRIPT) */
    union {
        gh_redis_gcra_cb gcra;
        gh_redis_window_cb window;
        gh_redis_fails_cb fails;
        gh_redis_claim_cb claim;
        gh_redis_ints_cb ints;
        gh_redis_quota_cb quota;
    } cb;
    void *arg;
    /* kept to resend as EVAL after NOSCRIPT */
    char key[GH_REDIS_KEY_MAX];
    char a[5][24];
    /* a script with several keys (S_QUOTA): what follows the script, from
     * numkeys on, in memory allocated with the command */
    const char **xargv;
    int xargc;
};

enum rw_state { RW_DOWN, RW_CONNECTING, RW_READY };

/* One worker's connection. */
struct rworker {
    struct gh_redis *r;
    struct gh_worker *w;
    redisAsyncContext *ac;
    enum rw_state state;
    bool closing;
    bool timer_on;
    uv_timer_t timer;
    struct gh_list cmds;
    unsigned ncmds;
    uint64_t state_ms; /* when the state was entered */
    uint64_t retry_ms; /* down: when to connect again */
    uint64_t backoff_ms;
};

struct gh_redis {
    char ip[INET6_ADDRSTRLEN];
    unsigned port, db;
    char password[256];
    uint64_t timeout_ms;
    unsigned pending_max;
    unsigned char key[crypto_generichash_KEYBYTES];
    struct rworker *workers; /* one per public worker, by id */
    unsigned nworkers;
    char sha[S_COUNT][41]; /* each script's SHA-1 once a SCRIPT LOAD answered; then read-only */
    atomic_bool sha_known[S_COUNT];
    atomic_int up; /* 1 reachable, 0 not, -1 not yet known */
    void (*on_change)(bool up, void *data);
    void *change_data;
    _Atomic uint64_t *m_fail_connect, *m_fail_timeout, *m_fail_pending, *m_fail_error;
    _Atomic uint64_t *m_commands;
};

static void rw_schedule(struct rworker *rw, uint64_t now);
static void rw_connect(struct rworker *rw, uint64_t now);
static void quota_finish(struct cmd *c, int status, const redisReply *rep);

/* ---- reachable or not ---- */

static void went(struct gh_redis *r, bool up, const char *why)
{
    int want = up ? 1 : 0, was = atomic_load(&r->up);
    while (was != want && !atomic_compare_exchange_weak(&r->up, &was, want))
        ;
    if (was == want)
        return;
    if (up && was < 0) /* the first connection: nothing to recover from */
        gh_log(GH_LOG_INFO, "redis_ready", "Redis at %s:%u answers: limits are shared", r->ip,
               r->port);
    else if (up)
        gh_log(GH_LOG_INFO, "redis_up", "Redis at %s:%u answers again: shared limits resume", r->ip,
               r->port);
    else
        gh_log(GH_LOG_WARN, "redis_down",
               "Redis at %s:%u is unreachable (%s): shared limits follow their failure modes "
               "until it answers",
               r->ip, r->port, why);
    if (r->on_change)
        r->on_change(up, r->change_data);
}

static void failed(struct gh_redis *r, _Atomic uint64_t *counter, const char *why)
{
    if (counter)
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    went(r, false, why);
}

bool gh_redis_up(const struct gh_redis *r)
{
    return r && atomic_load_explicit(&r->up, memory_order_relaxed) == 1;
}

static double up_gauge(void *data)
{
    return gh_redis_up(data) ? 1 : 0;
}

/* ---- commands ---- */

static void ints_finish(struct cmd *c, int status, const redisReply *rep);
static bool ints_reply_ok(const redisReply *rep);

static void cmd_finish(struct cmd *c, int status, const redisReply *rep)
{
    if (gh_list_linked(&c->node)) {
        gh_list_remove(&c->node);
        c->rw->ncmds--;
    }
    if (c->kind == CMD_SCRIPT && c->script == S_QUOTA) {
        quota_finish(c, status, rep);
    } else if (c->kind == CMD_SCRIPT && c->script == S_FAILS) {
        if (c->cb.fails) {
            long long n = status ? 0 : rep->element[0]->integer;
            long long left = status ? 0 : rep->element[1]->integer;
            c->cb.fails(c->arg, status, n > 0 ? (unsigned)GH_MIN(n, 1000000ll) : 0,
                        left > 0 ? (uint64_t)left : 0);
        }
    } else if (c->kind == CMD_SCRIPT && c->script == S_WINDOW && c->cb.window) {
        long long wait = status ? 0 : rep->element[1]->integer;
        c->cb.window(c->arg, status, !status && rep->element[0]->integer == 1,
                     wait > 0 ? (uint64_t)wait : 0);
    } else if (c->kind == CMD_SCRIPT && c->cb.gcra) {
        struct gh_redis_gcra g = {0};
        if (!status) {
            long long v[4];
            for (int i = 0; i < 4; i++)
                v[i] = rep->element[i]->integer;
            g.allowed = v[0] == 1;
            g.remaining = v[1] < 0 ? 0 : (uint32_t)GH_MIN(v[1], (long long)UINT32_MAX);
            g.impossible = v[2] < 0;
            g.retry_after_us = v[2] < 0 ? 0 : (uint64_t)v[2];
            g.reset_us = v[3] < 0 ? 0 : (uint64_t)v[3];
        }
        c->cb.gcra(c->arg, status, status ? NULL : &g);
    } else if (c->kind == CMD_CLAIM && c->cb.claim) {
        c->cb.claim(c->arg, status, !status && rep->type == REDIS_REPLY_STATUS);
    } else if (c->kind == CMD_INTS && c->cb.ints) {
        ints_finish(c, status, rep);
    }
    free(c);
}

static bool script_reply_ok(const redisReply *rep, enum script sc)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != script_answers[sc])
        return false;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    return true;
}

static int send_script(struct rworker *rw, struct cmd *c);

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct cmd *c = privdata;
    struct rworker *rw = c->rw;
    struct gh_redis *r = rw->r;
    const redisReply *rep = reply;
    if (!rep) { /* the connection failed or was dropped: it said why already */
        cmd_finish(c, GH_EIO, NULL);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR && c->kind == CMD_SCRIPT && !c->eval &&
        !strncmp(rep->str, "NOSCRIPT", 8)) {
        /* the script cache was flushed: EVAL loads it again */
        gh_list_remove(&c->node);
        rw->ncmds--;
        c->eval = true;
        if (send_script(rw, c))
            cmd_finish(c, GH_EIO, NULL);
        return;
    }
    bool ok =
        rep->type != REDIS_REPLY_ERROR &&
        (c->kind != CMD_SCRIPT || script_reply_ok(rep, c->script)) &&
        (c->kind != CMD_CLAIM || rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_NIL) &&
        (c->kind != CMD_INTS || ints_reply_ok(rep));
    if (c->kind == CMD_SETUP) {
        if (!ok) {
            gh_log(GH_LOG_ERROR, "redis_error", "Redis refused the connection's setup: %.200s",
                   rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected answer");
            failed(r, r->m_fail_error, "setup refused");
        } else if (!strcmp(c->a[0], "load") && rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
                   !atomic_load(&r->sha_known[c->script])) {
            /* every worker loads the same scripts: the first answer names one */
            memcpy(r->sha[c->script], rep->str, 40);
            r->sha[c->script][40] = '\0';
            atomic_store(&r->sha_known[c->script], true);
        }
        if (ok && !strcmp(c->a[0], "load") && c->script == S_COUNT - 1) {
            rw->state = RW_READY;
            rw->backoff_ms = 0;
            went(r, true, NULL);
        }
        cmd_finish(c, ok ? 0 : GH_EIO, rep);
        return;
    }
    if (!ok) {
        gh_log(GH_LOG_ERROR, "redis_error", "Redis answered an error: %.200s",
               rep->type == REDIS_REPLY_ERROR ? rep->str : "an answer of the wrong shape");
        failed(r, r->m_fail_error, "an error answer");
        cmd_finish(c, GH_EIO, NULL);
        return;
    }
    went(r, true, NULL);
    cmd_finish(c, 0, rep);
}

/* Queues c on rw's connection (argv built from c). 0 or GH_EIO. */
static int send_argv(struct rworker *rw, struct cmd *c, int argc, const char **argv)
{
    size_t lens[ARGV_MAX];
    GH_ASSERT(argc <= ARGV_MAX);
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(rw->ac, on_reply, c, argc, argv, lens) != REDIS_OK)
        return GH_EIO;
    c->sent_ms = gh_now_ms();
    gh_list_push_back(&rw->cmds, &c->node);
    rw->ncmds++;
    if (rw->r->m_commands)
        atomic_fetch_add_explicit(rw->r->m_commands, 1, memory_order_relaxed);
    return 0;
}

/* EVALSHA c's script, or EVAL it while its SHA-1 is unknown (and after
 * NOSCRIPT): the key and the arguments the script takes. */
static int send_script(struct rworker *rw, struct cmd *c)
{
    struct gh_redis *r = rw->r;
    if (!c->eval && !atomic_load_explicit(&r->sha_known[c->script], memory_order_acquire))
        c->eval = true;
    if (c->xargv) {
        const char *argv[ARGV_MAX] = {c->eval ? "EVAL" : "EVALSHA",
                                      c->eval ? scripts[c->script] : r->sha[c->script]};
        for (int i = 0; i < c->xargc && i + 2 < ARGV_MAX; i++)
            argv[i + 2] = c->xargv[i];
        return send_argv(rw, c, 2 + c->xargc, argv);
    }
    const char *argv[9] = {c->eval ? "EVAL" : "EVALSHA",
                           c->eval ? scripts[c->script] : r->sha[c->script],
                           "1",
                           c->key,
                           c->a[0],
                           c->a[1],
                           c->a[2],
                           c->a[3],
                           c->a[4]};
    return send_argv(rw, c, 4 + (int)script_args[c->script], argv);
}

/* The worker's connection, or NULL when commands must fail now: down,
 * connecting after a failure, or pending_max commands in flight. */
static struct rworker *usable(struct gh_redis *r, struct gh_worker *w)
{
    if (!r || !w || w->id >= r->nworkers)
        return NULL;
    struct rworker *rw = &r->workers[w->id];
    if (rw->closing)
        return NULL;
    /* another worker reached Redis again: this one need not wait out its
     * back-off (the command queues while it connects) */
    if (rw->state == RW_DOWN && gh_redis_up(r))
        rw_connect(rw, gh_now_ms());
    if (!rw->ac)
        return NULL;
    /* while connecting, commands wait for the connection only when Redis
     * was answering: during an outage a reconnect attempt must not hold
     * requests up to the timeout */
    if (rw->state == RW_DOWN || (rw->state == RW_CONNECTING && !gh_redis_up(r)))
        return NULL;
    if (rw->ncmds >= r->pending_max) {
        /* unreachable for this request, not for everyone: counted, not
         * logged (it would flap with the load) */
        if (r->m_fail_pending)
            atomic_fetch_add_explicit(r->m_fail_pending, 1, memory_order_relaxed);
        return NULL;
    }
    return rw;
}

static struct cmd *cmd_new(struct rworker *rw, enum cmd_kind kind, const char *key, void *arg)
{
    struct cmd *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rw = rw;
    c->kind = kind;
    c->arg = arg;
    if (key)
        snprintf(c->key, sizeof c->key, "%s", key);
    return c;
}

/* A script command for w's connection with its key; NULL when Redis is
 * unusable for w now (or out of memory). */
static struct cmd *script_cmd(struct gh_redis *r, struct gh_worker *w, enum script sc,
                              const char *key, void *arg)
{
    struct rworker *rw = usable(r, w);
    struct cmd *c = rw ? cmd_new(rw, CMD_SCRIPT, key, arg) : NULL;
    if (c)
        c->script = sc;
    return c;
}

static int script_send(struct cmd *c)
{
    if (send_script(c->rw, c)) {
        free(c);
        return GH_EIO;
    }
    return 0;
}

int gh_redis_gcra_send(struct gh_redis *r, struct gh_worker *w, const char *key, uint64_t t_us,
                       uint64_t tau_us, uint32_t cost, bool refund, gh_redis_gcra_cb cb, void *arg)
{
    struct cmd *c = script_cmd(r, w, S_GCRA, key, arg);
    if (!c)
        return GH_EIO;
    c->cb.gcra = cb;
    snprintf(c->a[0], sizeof c->a[0], "%llu", (unsigned long long)GH_MAX(t_us, 1ull));
    snprintf(c->a[1], sizeof c->a[1], "%llu", (unsigned long long)tau_us);
    snprintf(c->a[2], sizeof c->a[2], "%u", cost);
    snprintf(c->a[3], sizeof c->a[3], "%d", refund ? 1 : 0);
    return script_send(c);
}

int gh_redis_window_send(struct gh_redis *r, struct gh_worker *w, const char *key,
                         uint64_t period_ms, unsigned cap, bool refund, gh_redis_window_cb cb,
                         void *arg)
{
    struct cmd *c = script_cmd(r, w, S_WINDOW, key, arg);
    if (!c)
        return GH_EIO;
    c->cb.window = cb;
    snprintf(c->a[0], sizeof c->a[0], "%llu", (unsigned long long)GH_MAX(period_ms, 1ull));
    snprintf(c->a[1], sizeof c->a[1], "%u", cap);
    snprintf(c->a[2], sizeof c->a[2], "%d", refund ? 1 : 0);
    return script_send(c);
}

int gh_redis_fails_send(struct gh_redis *r, struct gh_worker *w, const char *key,
                        enum gh_redis_fails_op op, unsigned floor, uint64_t base_ms,
                        uint64_t max_ms, uint64_t ttl_ms, gh_redis_fails_cb cb, void *arg)
{
    static const char *const ops[] = {"get", "fail", "clear"};
    struct cmd *c = script_cmd(r, w, S_FAILS, key, arg);
    if (!c)
        return GH_EIO;
    c->cb.fails = cb;
    snprintf(c->a[0], sizeof c->a[0], "%s", ops[op]);
    snprintf(c->a[1], sizeof c->a[1], "%u", floor);
    snprintf(c->a[2], sizeof c->a[2], "%llu", (unsigned long long)base_ms);
    snprintf(c->a[3], sizeof c->a[3], "%llu", (unsigned long long)GH_MAX(max_ms, 1ull));
    snprintf(c->a[4], sizeof c->a[4], "%llu", (unsigned long long)GH_MAX(ttl_ms, 1ull));
    return script_send(c);
}

int gh_redis_claim_send(struct gh_redis *r, struct gh_worker *w, const char *key, uint64_t ttl_ms,
                        gh_redis_claim_cb cb, void *arg)
{
    struct rworker *rw = usable(r, w);
    struct cmd *c = rw ? cmd_new(rw, CMD_CLAIM, key, arg) : NULL;
    if (!c)
        return GH_EIO;
    c->cb.claim = cb;
    snprintf(c->a[0], sizeof c->a[0], "%llu", (unsigned long long)GH_MAX(ttl_ms, 1ull));
    const char *argv[6] = {"SET", c->key, "1", "NX", "PX", c->a[0]};
    if (send_argv(rw, c, 6, argv)) {
        free(c);
        return GH_EIO;
    }
    return 0;
}

void gh_redis_key(const struct gh_redis *r, const char *name, const void *data, size_t len,
                  char out[GH_REDIS_KEY_MAX])
{
    unsigned char h[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, r->key, sizeof r->key, sizeof h);
    crypto_generichash_update(&st, (const unsigned char *)name, strlen(name) + 1);
    crypto_generichash_update(&st, data, len);
    crypto_generichash_final(&st, h, sizeof h);
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, GH_REDIS_KEY_MAX, "gh:{%s}", hex);
}

/* ---- connections ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rworker *rw = ac->data;
    if (!rw || rw->ac != ac || status == REDIS_OK)
        return;
    /* hiredis frees ac after this (its commands fail with no reply) */
    rw->ac = NULL;
    rw->state = RW_DOWN;
    failed(rw->r, rw->r->m_fail_connect, ac->errstr[0] ? ac->errstr : "connect failed");
    rw_schedule(rw, gh_now_ms());
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rworker *rw = ac->data;
    if (!rw || rw->ac != ac)
        return; /* dropped by us: said already */
    (void)status;
    rw->ac = NULL;
    rw->state = RW_DOWN;
    failed(rw->r, rw->r->m_fail_connect, ac->errstr[0] ? ac->errstr : "connection closed");
    rw_schedule(rw, gh_now_ms());
}

static void setup_cmd(struct rworker *rw, const char *what, enum script sc, int argc,
                      const char **argv)
{
    struct cmd *c = cmd_new(rw, CMD_SETUP, NULL, NULL);
    if (!c)
        return;
    c->script = sc;
    snprintf(c->a[0], sizeof c->a[0], "%s", what);
    if (send_argv(rw, c, argc, argv))
        free(c);
}

static void rw_connect(struct rworker *rw, uint64_t now)
{
    struct gh_redis *r = rw->r;
    redisAsyncContext *ac = redisAsyncConnect(r->ip, (int)r->port);
    rw->state_ms = now;
    if (!ac || ac->err || gh_redis_uv_attach(ac, &rw->w->loop) != REDIS_OK) {
        failed(r, r->m_fail_connect, ac && ac->err ? ac->errstr : "cannot start a connection");
        if (ac)
            redisAsyncFree(ac);
        rw->state = RW_DOWN;
        rw_schedule(rw, now);
        return;
    }
    ac->data = rw;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rw->ac = ac;
    rw->state = RW_CONNECTING;
    /* queued now, written once connected, answered in this order */
    if (r->password[0]) {
        const char *argv[2] = {"AUTH", r->password};
        setup_cmd(rw, "auth", S_GCRA, 2, argv);
    }
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->db);
        const char *argv[2] = {"SELECT", db};
        setup_cmd(rw, "select", S_GCRA, 2, argv);
    }
    for (int sc = 0; sc < S_COUNT; sc++) {
        const char *argv[3] = {"SCRIPT", "LOAD", scripts[sc]};
        setup_cmd(rw, "load", (enum script)sc, 3, argv);
    }
}

/* Drops rw's connection now: every command on it fails (GH_EIO). */
static void rw_drop(struct rworker *rw)
{
    redisAsyncContext *ac = rw->ac;
    rw->ac = NULL;
    rw->state = RW_DOWN;
    if (ac)
        redisAsyncFree(ac);
}

static void rw_schedule(struct rworker *rw, uint64_t now)
{
    rw->backoff_ms =
        rw->backoff_ms ? GH_MIN(rw->backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    rw->retry_ms = now + rw->backoff_ms;
}

/* Every timeout/4: a command (or a connection attempt) past its deadline
 * drops the connection; a connection down for its back-off is tried
 * again. */
static void on_tick(uv_timer_t *t)
{
    struct rworker *rw = t->data;
    struct gh_redis *r = rw->r;
    uint64_t now = gh_now_ms();
    if (rw->closing)
        return;
    if (rw->state == RW_DOWN) {
        if (now >= rw->retry_ms || gh_redis_up(r))
            rw_connect(rw, now);
        return;
    }
    uint64_t oldest = rw->state == RW_CONNECTING ? rw->state_ms : now;
    if (!gh_list_empty(&rw->cmds))
        oldest =
            GH_MIN(oldest, GH_CONTAINER_OF(gh_list_first(&rw->cmds), struct cmd, node)->sent_ms);
    /* connecting gets ten commands' time: a handshake is several round trips */
    uint64_t limit = rw->state == RW_CONNECTING ? r->timeout_ms * 10 : r->timeout_ms;
    if (now - oldest <= limit)
        return;
    failed(r, r->m_fail_timeout,
           rw->state == RW_CONNECTING ? "connect timed out" : "a command timed out");
    rw_drop(rw);
    rw_schedule(rw, now);
}

static int worker_init(struct gh_worker *w, void *data)
{
    struct gh_redis *r = data;
    if (w->admin || w->id >= r->nworkers)
        return 0;
    struct rworker *rw = &r->workers[w->id];
    rw->r = r;
    rw->w = w;
    gh_list_init(&rw->cmds);
    if (uv_timer_init(&w->loop, &rw->timer))
        return GH_EIO;
    rw->timer.data = rw;
    uint64_t every = GH_MAX(r->timeout_ms / 4, 5ull);
    if (uv_timer_start(&rw->timer, on_tick, every, every)) {
        uv_close((uv_handle_t *)&rw->timer, NULL);
        return GH_EIO;
    }
    rw->timer_on = true;
    rw_connect(rw, gh_now_ms());
    return 0;
}

static void worker_dispose(struct gh_worker *w, void *data)
{
    struct gh_redis *r = data;
    if (w->admin || w->id >= r->nworkers)
        return;
    struct rworker *rw = &r->workers[w->id];
    rw->closing = true;
    rw_drop(rw);
    if (rw->timer_on) {
        uv_close((uv_handle_t *)&rw->timer, NULL);
        rw->timer_on = false;
    }
}

/* host into r->ip: resolved once here (the main thread, at start), since
 * hiredis would resolve a name on the loop at every reconnect. */
static int resolve(struct gh_redis *r, const char *host, struct gh_buf *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc || !res) {
        gh_buf_printf(err, "[redis] url: cannot resolve '%.100s': %s", host, gai_strerror(rc));
        return GH_EINVAL;
    }
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, r->ip, sizeof r->ip);
    freeaddrinfo(res);
    return 0;
}

int gh_redis_new(struct gh_server *srv, const struct gh_config *cfg,
                 void (*on_change)(bool up, void *data), void *data, struct gh_redis **out,
                 struct gh_buf *err)
{
    *out = NULL;
    if (!cfg->redis.url || !*cfg->redis.url)
        return 0;
    struct gh_redis_url u;
    if (gh_redis_url_parse(cfg->redis.url, strlen(cfg->redis.url), &u, err))
        return GH_EINVAL;
    struct gh_redis *r = calloc(1, sizeof *r);
    if (!r)
        return GH_ENOMEM;
    int rc = resolve(r, u.host, err);
    if (rc)
        goto fail;
    r->port = u.port;
    r->db = u.db;
    const char *pw = getenv("GATEHOUSE_REDIS_PASSWORD");
    if (pw && strlen(pw) >= sizeof r->password) {
        gh_buf_printf(err, "GATEHOUSE_REDIS_PASSWORD is longer than %zu bytes",
                      sizeof r->password - 1);
        rc = GH_EINVAL;
        goto fail;
    }
    snprintf(r->password, sizeof r->password, "%s", pw ? pw : "");
    r->timeout_ms = cfg->redis.timeout_ms;
    r->pending_max = cfg->redis.pending_max;
    r->on_change = on_change;
    r->change_data = data;
    atomic_init(&r->up, -1);
    /* the limits' key names: the same on every node sharing the hmac key */
    crypto_generichash(r->key, sizeof r->key, (const unsigned char *)"gatehouse redis keys", 20,
                       srv->secrets.hmac_key, sizeof srv->secrets.hmac_key);
    /* the workers are made when the server runs, as many as this says */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    r->nworkers = cfg->server.workers ? cfg->server.workers : cores > 0 ? (unsigned)cores : 1;
    r->workers = calloc(r->nworkers ? r->nworkers : 1, sizeof *r->workers);
    rc = GH_ENOMEM;
    if (!r->workers)
        goto fail;
    static const char fh[] = "Redis failures by kind (each switches the shared limits to their "
                             "failure modes until Redis answers)";
    r->m_fail_connect =
        gh_metrics_counter("gatehouse_redis_failures_total", "kind=\"connect\"", fh);
    r->m_fail_timeout =
        gh_metrics_counter("gatehouse_redis_failures_total", "kind=\"timeout\"", fh);
    r->m_fail_pending =
        gh_metrics_counter("gatehouse_redis_failures_total", "kind=\"pending_cap\"", fh);
    r->m_fail_error = gh_metrics_counter("gatehouse_redis_failures_total", "kind=\"error\"", fh);
    r->m_commands = gh_metrics_counter("gatehouse_redis_commands_total", "",
                                       "commands sent to Redis (limits, claims, setup)");
    gh_metrics_gauge_func("gatehouse_redis_up", "",
                          "1 while Redis answers, 0 while the shared limits are in their failure "
                          "modes",
                          up_gauge, r);
    rc = GH_ETOOBIG;
    if (gh_server_add_worker_hook(srv, worker_init, worker_dispose, r))
        goto fail;
    gh_log(GH_LOG_INFO, "redis", "shared limits in Redis at %s:%u (db %u, timeout %llu ms)", r->ip,
           r->port, r->db, (unsigned long long)r->timeout_ms);
    *out = r;
    return 0;
fail:
    gh_redis_free(r);
    return rc;
}

void gh_redis_free(struct gh_redis *r)
{
    if (!r)
        return;
    sodium_memzero(r->password, sizeof r->password);
    free(r->workers);
    free(r);
}

/* ---- scripts sent whole, answering integers (the attack level's sums) ---- */

static bool ints_reply_ok(const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements > GH_REDIS_INTS_MAX)
        return false;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    return true;
}

static void ints_finish(struct cmd *c, int status, const redisReply *rep)
{
    long long v[GH_REDIS_INTS_MAX];
    size_t n = status ? 0 : rep->elements;
    for (size_t i = 0; i < n; i++)
        v[i] = rep->element[i]->integer;
    c->cb.ints(c->arg, status, status ? NULL : v, n);
}

int gh_redis_eval_send(struct gh_redis *r, struct gh_worker *w, const char *script, const char *key,
                       unsigned nargs, const char *const *args, gh_redis_ints_cb cb, void *arg)
{
    struct rworker *rw = usable(r, w);
    if (!rw || nargs > 5)
        return GH_EIO;
    struct cmd *c = cmd_new(rw, CMD_INTS, key, arg);
    if (!c)
        return GH_EIO;
    c->cb.ints = cb;
    const char *argv[9] = {"EVAL", script, "1", c->key};
    for (unsigned i = 0; i < nargs; i++)
        argv[4 + i] = args[i];
    /* hiredis copies the command into its output buffer: args may go now */
    if (send_argv(rw, c, 4 + (int)nargs, argv)) {
        free(c);
        return GH_EIO;
    }
    return 0;
}

/* ---- the chat API's quotas (redis.h, gh_redis_quota_send) ---- */

/* KEYS: the user's state and leases, then the API key's two. A state is
 * one string of four little-endian doubles (struct.pack "<dddd"): tr, tt
 * (GCRA times in µs on Redis's clock), d (the UTC day of dt) and dt
 * (tokens of that day, spent and reserved, counted while a tpd is set),
 * read for both entities with one MGET (both are under the user's hash
 * tag) and written with one SET PX each: Redis 7 charges about 0.5 µs a
 * redis.call and 0.3 µs a string.format, which the hash with its PEXPIRE
 * and decimal fields spent three times over. Leases: a sorted set, call id
 * -> expiry in ms. ARGV: the op (take, settle, renew, peek), the call's
 * id, its estimate, its actual tokens, the day of its take, the lease in
 * ms, the user's and the key's rpm, tpm, tpd and concurrency. Rates are
 * GCRA over a minute with the whole minute as burst, as gh_quota_check
 * (gateway/quota.c) has them; the key is checked first, then the user, and
 * nothing is taken unless both pass. Answers {verdict, who, retry_ms, day,
 * then for the user and the key: remaining requests, their reset ms,
 * remaining tokens, their reset ms, tokens of today; then, for a take
 * that added a lease to the user's, the user's leases with it}. */
const char gh_redis_quota_lua[] =
    "local t = redis.call('TIME')\n"
    "local sec = tonumber(t[1])\n"
    "local now = sec * 1000000 + tonumber(t[2])\n"
    "local nowms = math.floor(now / 1000)\n"
    "local day = math.floor(sec / 86400)\n"
    "local eod = (86400 - sec % 86400) * 1000\n"
    "local P = 60000000\n"
    "local op, member = ARGV[1], ARGV[2]\n"
    "local est, actual = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local tday, lease = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local out = {0, 0, 0, day, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}\n"
    "local S = {}\n"
    "local any = false\n"
    "for e = 1, 2 do\n"
    "  local l = {}\n"
    "  for i = 1, 4 do l[i] = tonumber(ARGV[6 + 4 * (e - 1) + i]) end\n"
    "  local rated = l[1] + l[2] + l[3] > 0\n"
    "  any = any or rated\n"
    "  S[e] = {l = l, tr = 0, tt = 0, dt = 0, held = 0, rated = rated}\n"
    "end\n"
    "if any then\n"
    "  local v = redis.call('MGET', KEYS[1], KEYS[3])\n"
    "  for e = 1, 2 do\n"
    "    local s, x = S[e], v[e]\n"
    "    if s.rated and x and #x == 32 then\n"
    "      local d, dt\n"
    "      s.tr, s.tt, d, dt = struct.unpack('<dddd', x)\n"
    "      if d == day then s.dt = dt end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function save(e)\n"
    "  local s = S[e]\n"
    "  local ttl = math.max(s.tr - now, s.tt - now, 0) / 1000\n"
    "  if s.dt > 0 then ttl = math.max(ttl, eod) end\n"
    "  redis.call('SET', KEYS[2 * e - 1], struct.pack('<dddd', s.tr, s.tt, day, s.dt), 'PX',\n"
    "    math.ceil(ttl) + 1000)\n"
    "end\n"
    "local function gcra(tat, lim, cost, commit)\n"
    "  local T = math.max(math.floor(P / lim), 1)\n"
    "  if cost > lim then cost = lim end\n"
    "  local base = math.max(tat, now)\n"
    "  local nxt = base + T * cost\n"
    "  local ok = nxt - now <= P\n"
    "  local cur = base\n"
    "  if ok and commit then cur = nxt end\n"
    "  local room, rem, retry = P - (cur - now), 0, 0\n"
    "  if room > 0 then rem = math.min(lim, math.floor(room / T)) end\n"
    "  if not ok then retry = math.ceil((nxt - now - P) / 1000) end\n"
    "  return ok, cur, rem, math.ceil((cur - now) / 1000), retry\n"
    "end\n"
    "local function rates(e, commit)\n"
    "  local s, o = S[e], 5 * e\n"
    "  local okr, okt, rr, rt, cur = true, true, 0, 0, 0\n"
    "  if s.l[1] > 0 then\n"
    "    okr, cur, out[o], out[o + 1], rr = gcra(s.tr, s.l[1], 1, commit)\n"
    "    if commit then s.tr = cur end\n"
    "  end\n"
    "  if s.l[2] > 0 then\n"
    "    okt, cur, out[o + 2], out[o + 3], rt = gcra(s.tt, s.l[2], math.max(est, 1), commit)\n"
    "    if commit then s.tt = cur end\n"
    "  end\n"
    "  if not okr then return 1, math.max(rr, rt) end\n"
    "  if not okt then return 2, math.max(rr, rt) end\n"
    "  return 0, 0\n"
    "end\n"
    "local function check(e)\n"
    "  local s = S[e]\n"
    "  if s.l[4] > 0 then\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[2 * e], '-inf', nowms)\n"
    "    s.held = redis.call('ZCARD', KEYS[2 * e])\n"
    "    if s.held >= s.l[4] then return 3, 1000 end\n"
    "  end\n"
    "  if s.l[3] > 0 and s.dt >= s.l[3] then return 4, eod end\n"
    "  return rates(e, false)\n"
    "end\n"
    "if op == 'take' then\n"
    "  for _, e in ipairs({2, 1}) do\n"
    "    local v, retry = check(e)\n"
    "    if v > 0 then\n"
    "      out[1], out[2], out[3] = v, 3 - e, retry\n"
    "      return out\n"
    "    end\n"
    "  end\n"
    "  for e = 1, 2 do\n"
    "    local s = S[e]\n"
    "    if s.l[4] > 0 then\n"
    "      if redis.call('ZADD', KEYS[2 * e], nowms + lease, member) > 0 and e == 1 then\n"
    "        out[15] = S[1].held + 1\n"
    "      end\n"
    "      redis.call('PEXPIRE', KEYS[2 * e], lease + 1000)\n"
    "    end\n"
    "    if s.rated then\n"
    "      rates(e, true)\n"
    "      if s.l[3] > 0 then s.dt = s.dt + est end\n"
    "      save(e)\n"
    "    end\n"
    "  end\n"
    "elseif op == 'settle' or op == 'renew' then\n"
    "  for e = 1, 2 do\n"
    "    local s = S[e]\n"
    "    if s.l[4] > 0 and op == 'renew' then\n"
    "      redis.call('ZADD', KEYS[2 * e], 'XX', nowms + lease, member)\n"
    "      redis.call('PEXPIRE', KEYS[2 * e], lease + 1000)\n"
    "    elseif s.l[4] > 0 then\n"
    "      redis.call('ZREM', KEYS[2 * e], member)\n"
    "    end\n"
    "    if s.l[2] + s.l[3] > 0 and op == 'settle' then\n"
    "      if s.l[3] > 0 and tday == day then s.dt = math.max(s.dt - est, 0) end\n"
    "      if s.l[3] > 0 then s.dt = s.dt + actual end\n"
    "      if s.l[2] > 0 then\n"
    "        local T = math.max(math.floor(P / s.l[2]), 1)\n"
    "        local charged = math.min(math.max(est, 1), s.l[2])\n"
    "        s.tt = s.tt + math.min((actual - charged) * T, P)\n"
    "      end\n"
    "      save(e)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "out[9], out[14] = S[1].dt, S[2].dt\n"
    "return out\n";

/* A quota command with its keys and arguments (one allocation). */
struct qcmd {
    struct cmd c; /* first: freeing it frees the whole */
    const char *argv[19];
    char keys[4][GH_REDIS_KEY_MAX + 48];
    char lease[64];
    char a[12][24];
};

static void quota_finish(struct cmd *c, int status, const redisReply *rep)
{
    if (!c->cb.quota)
        return;
    struct gh_redis_quota q = {0};
    if (!status) {
        long long v[15];
        for (int i = 0; i < 15; i++)
            v[i] = rep->element[i]->integer > 0 ? rep->element[i]->integer : 0;
        q.verdict = (unsigned)GH_MIN(v[0], 99ll);
        q.who = (unsigned)GH_MIN(v[1], 2ll);
        q.retry_ms = (uint64_t)v[2];
        q.day = (uint32_t)GH_MIN(v[3], (long long)UINT32_MAX);
        for (int e = 0; e < 2; e++) {
            const long long *x = v + 4 + 5 * e;
            q.e[e].remaining_requests = (uint32_t)GH_MIN(x[0], (long long)UINT32_MAX);
            q.e[e].reset_requests_ms = (uint64_t)x[1];
            q.e[e].remaining_tokens = (uint32_t)GH_MIN(x[2], (long long)UINT32_MAX);
            q.e[e].reset_tokens_ms = (uint64_t)x[3];
            q.e[e].spent = (uint64_t)x[4];
        }
        q.user_leases = (unsigned)GH_MIN(v[14], (long long)UINT_MAX);
    }
    c->cb.quota(c->arg, status, status ? NULL : &q);
}

int gh_redis_quota_send(struct gh_redis *r, struct gh_worker *w,
                        const struct gh_redis_quota_args *a, gh_redis_quota_cb cb, void *arg)
{
    static const char *const ops[] = {"take", "settle", "renew", "peek"};
    struct rworker *rw = usable(r, w);
    struct qcmd *q = rw ? calloc(1, sizeof *q) : NULL;
    if (!q)
        return GH_EIO;
    struct cmd *c = &q->c;
    c->rw = rw;
    c->kind = CMD_SCRIPT;
    c->script = S_QUOTA;
    c->cb.quota = cb;
    c->arg = arg;
    /* the key's names under the user's hash tag: "gh:{U}:k" and K's hex */
    const char *kh = a->key && strlen(a->key) > 5 ? a->key + 4 : "";
    int khl = *kh ? (int)strlen(kh) - 1 : 0;
    snprintf(q->keys[0], sizeof q->keys[0], "%s:q", a->user);
    snprintf(q->keys[1], sizeof q->keys[1], "%s:uc", a->user);
    snprintf(q->keys[2], sizeof q->keys[2], "%s:kq%.*s", a->user, khl, kh);
    snprintf(q->keys[3], sizeof q->keys[3], "%s:kc%.*s", a->user, khl, kh);
    snprintf(q->lease, sizeof q->lease, "%s", a->lease ? a->lease : "");
    snprintf(q->a[0], sizeof q->a[0], "%u", a->est);
    snprintf(q->a[1], sizeof q->a[1], "%u", a->actual);
    snprintf(q->a[2], sizeof q->a[2], "%u", a->day);
    snprintf(q->a[3], sizeof q->a[3], "%llu", (unsigned long long)GH_MAX(a->lease_ms, 1ull));
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 4; i++)
            snprintf(q->a[4 + 4 * e + i], sizeof q->a[0], "%u", a->limits[e][i]);
    const char **v = q->argv;
    int n = 0;
    v[n++] = "4";
    for (int i = 0; i < 4; i++)
        v[n++] = q->keys[i];
    v[n++] = ops[a->op];
    v[n++] = q->lease;
    for (int i = 0; i < 12; i++)
        v[n++] = q->a[i];
    c->xargv = q->argv;
    c->xargc = n;
    return script_send(c);
}
