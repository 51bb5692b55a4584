/* The cluster's shared limits in Redis: one asynchronous hiredis
 * connection per worker loop (libuv adapter), never a blocking call on a
 * loop. It owns the connections, the commands in flight and the state
 * that says whether Redis is reachable; the shield (shield.c) decides what
 * to ask and what a failure means for a rule.
 *
 * Commands:
 *  - GCRA on one key, in a Lua script loaded once per connection (EVAL the
 *    first time, EVALSHA once the script's SHA-1 is known, EVAL again on
 *    NOSCRIPT, which also reloads it), with Redis's own clock (TIME), so
 *    nodes whose clocks differ still agree;
 *  - fixed windows (identity's SMS budgets) and an account's failed
 *    sign-ins with their back-off, two more scripts loaded the same way;
 *  - a single-use claim: SET key 1 NX PX ttl (the proof-of-work replay
 *    cache).
 * Keys are "gh:{…}": each is its own hash tag, so every command touches one
 * slot and works on Redis Cluster (the data is a keyed hash, never an
 * address or a number). Commands of one worker go down its connection
 * back to back and their answers come back in order (pipelined).
 *
 * Failures: a command is answered GH_EIO (no callback) when the worker's
 * connection is down, or when pending_max commands are already in flight;
 * a command in flight gets its callback with GH_EIO when the connection
 * fails or when the oldest command has waited timeout_ms (the connection
 * is then dropped: every command on it fails at once). A worker whose
 * connection failed reconnects with back-off (100 ms doubling to 2 s). The
 * first failure after a success logs once and sets gatehouse_redis_up to
 * 0; the first success after a failure logs the recovery once.
 *
 * Threads: gh_redis_new/free on the main thread (before the workers run,
 * after they stop); gh_redis_gcra and gh_redis_claim on a worker's loop
 * thread, callbacks on the same loop; gh_redis_up from any thread. */
#pragma once

#include "core/server.h"

struct gh_redis;

/* Makes the client from cfg's [redis] (NULL in *out when url is empty:
 * the feature is off) and registers its worker hooks and metrics on srv.
 * on_change(up, data) runs on a worker thread at each switch between
 * reachable and unreachable. 0, GH_EINVAL (err says why) or GH_ENOMEM. */
int gh_redis_new(struct gh_server *srv, const struct gh_config *cfg,
                 void (*on_change)(bool up, void *data), void *data, struct gh_redis **out,
                 struct gh_buf *err);
void gh_redis_free(struct gh_redis *r);

/* True while Redis answers (the last command or connection succeeded). */
bool gh_redis_up(const struct gh_redis *r);

/* What a GCRA step answered: the same fields as gh_limit_decision. */
struct gh_redis_gcra {
    bool allowed;
    bool impossible;
    uint32_t remaining;
    uint64_t retry_after_us;
    uint64_t reset_us;
};

/* status 0 with *res, or GH_EIO (unreachable, timed out, or an error
 * reply; res is then NULL). */
typedef void (*gh_redis_gcra_cb)(void *arg, int status, const struct gh_redis_gcra *res);
/* status 0 with claimed (true: first use), or GH_EIO. */
typedef void (*gh_redis_claim_cb)(void *arg, int status, bool claimed);

/* The key "gh:{HEX}" for (name, data): a keyed hash of both under a key
 * derived from the cluster's hmac key, so every node names a limit alike
 * and Redis holds no address or number. out: at least GH_REDIS_KEY_MAX. */
#define GH_REDIS_KEY_MAX 48
void gh_redis_key(const struct gh_redis *r, const char *name, const void *data, size_t len,
                  char out[GH_REDIS_KEY_MAX]);

/* Runs one GCRA step on key for w: emission interval t_us, tolerance
 * tau_us (both microseconds), cost units. With refund, gives back cost
 * units taken by an earlier step (a request refused by another rule);
 * cb may be NULL then. 0 (cb runs later on w's loop) or GH_EIO at once
 * (no callback). */
int gh_redis_gcra_send(struct gh_redis *r, struct gh_worker *w, const char *key, uint64_t t_us,
                       uint64_t tau_us, uint32_t cost, bool refund, gh_redis_gcra_cb cb, void *arg);

/* status 0 with charged (false: the cap is reached, nothing charged;
 * wait_ms until the window ends), or GH_EIO. */
typedef void (*gh_redis_window_cb)(void *arg, int status, bool charged, uint64_t wait_ms);
/* Charges one unit to the fixed window key of period_ms, capped at cap
 * (a second script: INCR, PEXPIRE when new); with refund, gives back an
 * earlier charge (cb may be NULL). 0 (cb later) or GH_EIO at once. */
int gh_redis_window_send(struct gh_redis *r, struct gh_worker *w, const char *key,
                         uint64_t period_ms, unsigned cap, bool refund, gh_redis_window_cb cb,
                         void *arg);

/* An account's failed sign-ins (a third script): read them, add one
 * (n = max(n, floor) + 1, back-off base_ms x 2^(n-1) up to max_ms, the key
 * kept ttl_ms), or clear them. cb(arg, 0, n, ms of back-off left), or
 * GH_EIO; cb may be NULL. 0 (cb later) or GH_EIO at once. */
enum gh_redis_fails_op { GH_REDIS_FAILS_GET, GH_REDIS_FAILS_ADD, GH_REDIS_FAILS_CLEAR };
typedef void (*gh_redis_fails_cb)(void *arg, int status, unsigned n, uint64_t wait_ms);
int gh_redis_fails_send(struct gh_redis *r, struct gh_worker *w, const char *key,
                        enum gh_redis_fails_op op, unsigned floor, uint64_t base_ms,
                        uint64_t max_ms, uint64_t ttl_ms, gh_redis_fails_cb cb, void *arg);

/* Claims key once cluster-wide for ttl_ms (SET NX PX). 0 (cb later) or
 * GH_EIO at once. */
int gh_redis_claim_send(struct gh_redis *r, struct gh_worker *w, const char *key, uint64_t ttl_ms,
                        gh_redis_claim_cb cb, void *arg);

/* The chat API's quotas of one call, its user's and its API key's
 * (rpm, tpm, tpd, concurrency), in a fourth script that checks and takes
 * them all at once: both GCRA rates per minute (the whole minute as
 * burst), the tokens of Redis's UTC day (the estimate reserved at take,
 * corrected to the real count at settle) and the concurrent calls, each a
 * lease that expires by itself (a node that dies holding one frees it
 * within lease_ms). The four keys share the user's hash tag: one slot,
 * one round trip, atomic. Limits 0 are unlimited; an entity whose
 * limits are all 0 is neither read nor written. */
enum gh_redis_quota_op {
    GH_REDIS_QUOTA_TAKE,   /* check every limit, take all or nothing */
    GH_REDIS_QUOTA_SETTLE, /* the call ended: actual tokens, free its lease */
    GH_REDIS_QUOTA_RENEW,  /* the call goes on: its leases last lease_ms more */
    GH_REDIS_QUOTA_PEEK    /* the tokens spent today (and reserved), nothing taken */
};
struct gh_redis_quota_args {
    enum gh_redis_quota_op op;
    const char *user;  /* gh_redis_key of the user: the hash tag */
    const char *key;   /* gh_redis_key of the API key, or NULL (limits then 0) */
    const char *lease; /* the call's unique id (at most 63 bytes) */
    unsigned est, actual;
    uint32_t day; /* settle: the day the take answered */
    uint64_t lease_ms;
    unsigned limits[2][4]; /* [0] the user's, [1] the key's: rpm, tpm, tpd, concurrency */
};
/* What the script answered (every op): the verdict of a take (0 taken;
 * 1 requests per minute, 2 tokens per minute, 3 concurrency, 4 tokens of
 * the day: nothing taken), who refused (1 the key, 2 the user), the wait
 * before a retry, Redis's UTC day (days since the epoch), and for [0] the
 * user and [1] the key the x-ratelimit-* numbers and today's tokens
 * (spent and reserved); for a take that added a lease to the user's
 * concurrency, the user's leases with it (else 0). */
struct gh_redis_quota {
    unsigned verdict, who;
    uint64_t retry_ms;
    uint32_t day;
    struct {
        uint32_t remaining_requests, remaining_tokens;
        uint64_t reset_requests_ms, reset_tokens_ms;
        uint64_t spent;
    } e[2];
    unsigned user_leases;
};
typedef void (*gh_redis_quota_cb)(void *arg, int status, const struct gh_redis_quota *res);
/* Runs op on a's quotas on w's connection. 0 (cb, which may be NULL, runs
 * later on w's loop with status 0 and *res, or GH_EIO and NULL) or GH_EIO
 * at once (no callback). */
int gh_redis_quota_send(struct gh_redis *r, struct gh_worker *w,
                        const struct gh_redis_quota_args *a, gh_redis_quota_cb cb, void *arg);

/* The scripts' texts (for tests that run them against a redis-server). */
extern const char gh_redis_gcra_lua[];
extern const char gh_redis_window_lua[];
extern const char gh_redis_fails_lua[];

/* A script sent whole (EVAL: Redis keeps it compiled under its SHA-1, so
 * only the text travels again) on one key with up to 5 arguments (copied
 * before this returns), answering an array of at most GH_REDIS_INTS_MAX
 * integers: cb(arg, 0, v, n), or cb(arg, GH_EIO, NULL, 0) when Redis
 * failed or answered another shape. For the few commands a node sends on
 * its own (the attack level's, level_redis.c), not per request. 0 (cb
 * later on w's loop) or GH_EIO at once (no callback). */
#define GH_REDIS_INTS_MAX 32
typedef void (*gh_redis_ints_cb)(void *arg, int status, const long long *v, size_t n);
int gh_redis_eval_send(struct gh_redis *r, struct gh_worker *w, const char *script, const char *key,
                       unsigned nargs, const char *const *args, gh_redis_ints_cb cb, void *arg);
extern const char gh_redis_quota_lua[];
