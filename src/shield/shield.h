/* The shield wired into the server: it owns the limiter table and rules,
 * the block and allow lists, the trusted-proxy list, the proof-of-work
 * verifier, the attack-level machine and its signals. It installs
 *  - srv->http->accept_filter: allow list passes, block list is closed at accept;
 *  - srv->http->router.filter: every routed public request gets a class (the
 *    route's, raised to `user` by a valid API key or session; invalid
 *    credentials never raise it), the client address from X-Forwarded-For
 *    when the peer is a trusted proxy, and the limiter rules of its class
 *    (429 rate_limited with Retry-After and X-RateLimit-*);
 *  - srv->http->credentials: the same credential check, asked by the connection
 *    before a body is read (a route's large body cap is for valid
 *    credentials only) and remembered in req->cred for the class;
 *  - GET /api/pow/challenge; the admin routes /admin/v1/level,
 *    /admin/v1/lists, /admin/v1/lists/block, /admin/v1/pow/verify;
 *  - a timer on the admin worker that feeds the attack level every
 *    shield.level_interval, and a reload hook (SIGHUP: lists, rules,
 *    trusted proxies, thresholds);
 *  - load shedding: every 50 ms at most, the pressure (watched queues'
 *    delay, the workers' loop lag, the connection count) decides which
 *    classes are refused 503 busy (anon, then register, login, user) and
 *    the keep-alive idle factor (srv->http->idle_factor_milli);
 *  - the attack level reported to the status page (gh_status_attack_level)
 *    at each change and once when the admin worker starts.
 *
 * There is one shield per process (like the logger and the metrics
 * registry): gh_shield_init makes it on the main thread before the server
 * runs, gh_shield_dispose frees it after gh_server_run has returned. The
 * gh_shield_* functions below may be called from any thread in between
 * (they do nothing useful before init or after dispose). */
#pragma once

#include "core/server.h"
#include "shield/admission.h"
#include "shield/level.h"
#include "shield/pow.h"

/* Makes the shield from srv's configuration and registers its hooks and
 * routes. 0, or GH_EINVAL (a bad rule, list or threshold: the message, naming
 * the key, is in err) or GH_ENOMEM. */
int gh_shield_init(struct gh_server *srv, struct gh_buf *err);
void gh_shield_dispose(void);

/* Signals that other subsystems report for the attack level, each from
 * the request's client (counted under its /24 or /48: one source's share
 * is capped and a signal needs many prefixes, shield/level.h). */
enum gh_shield_signal {
    GH_SIGNAL_SMS_SENT,     /* an SMS code was requested */
    GH_SIGNAL_VERIFY_OK,    /* an SMS code was right */
    GH_SIGNAL_VERIFY_FAIL,  /* an SMS code was wrong */
    GH_SIGNAL_LOGIN_OK,
    GH_SIGNAL_LOGIN_FAIL,
    GH_SIGNAL_REGISTERED, /* an account was created (not attack evidence) */
    GH_SIGNAL_LOGIN_REFUSED, /* a password login refused before its verdict (back-off,
                                proof of work, shed, pool busy): the service's own
                                answer, never attack evidence, so ignored by the level */
    GH_SIGNAL_COUNT
};
void gh_shield_signal(const struct gh_http_req *req, enum gh_shield_signal s);

/* The attack level now, and the registration preset it asks for. */
enum gh_level gh_shield_level(void);
void gh_shield_level_policy(enum gh_level level, struct gh_level_policy *out);
/* Subscribes to attack-level changes (before the server runs). 0 or
 * GH_ETOOBIG. */
int gh_shield_subscribe_level(gh_level_listener_fn fn, void *data);

/* ---- what the accounts subsystem tells the shield (callbacks, so that
 * the shield depends on no subsystem above it) ---- */

/* The credential checks the shield classifies with (identity registers
 * them at init). Each may be called on any loop thread, often, and must
 * answer from memory:
 *  - lookup: true when req's headers carry a valid API key or session,
 *    with the account's id in *user_id and the key's in *key_id (0 for a
 *    session); invalid credentials answer false;
 *  - may_reload: true when lookup's miss for req may not be final (the
 *    credential may live in the store; auth.h gh_auth_may_reload);
 *  - prefetch, prefetch_cancel: the server's credentials_fetch and
 *    credentials_cancel (auth.h gh_auth_prefetch). */
struct gh_shield_principals {
    bool (*lookup)(const struct gh_http_req *req, uint64_t *user_id, uint64_t *key_id, void *data);
    bool (*may_reload)(const struct gh_http_req *req, void *data);
    int (*prefetch)(const struct gh_http_req *req, void (*wake)(void *arg), void *arg, void **job,
                    void *data);
    void (*prefetch_cancel)(void *job);
    void *data;
};
/* Installs the credential checks (copied; NULL removes them: then no
 * request carries valid credentials). Main thread, while the server is
 * not running. GH_EINVAL without a shield. */
int gh_shield_set_principal_lookup(const struct gh_shield_principals *p);

/* Sharing with the other nodes of a cluster (identity stores it, on a
 * store they share): the block list's run-time entries and the level pin
 * an operator set, as a JSON document. fn(doc, data) runs after each such
 * change made here (the admin listener's thread); apply installs another
 * node's (any thread). 0, GH_EINVAL or GH_ENOMEM. */
void gh_shield_share(void (*fn)(const char *doc, void *data), void *data);
int gh_shield_apply_shared(const char *doc);

/* The registration policy's proof-of-work difficulty for registrations and
 * their SMS codes, pushed by identity at start and at every change of the
 * effective policy; -1 (the start) when there is no policy: the level's
 * preset applies. Any thread. */
void gh_shield_set_pow(int register_bits);

/* The proof-of-work difficulty required now for scope (0 = none): the
 * level's preset; for registrations and SMS codes, the registration
 * policy's pow_bits when one was pushed (gh_shield_set_pow). */
unsigned gh_shield_pow_bits(enum gh_pow_scope scope);
/* Verifies a solution sent with req (from the JSON "pow" object the caller
 * parsed) for scope, needing min_bits; bound to req->client's prefix. */
enum gh_pow_result gh_shield_pow_verify(const struct gh_http_req *req, enum gh_pow_scope scope,
                                        unsigned min_bits, const char *challenge, size_t clen,
                                        const char *nonce, size_t nlen);

/* Applies the rules of class cls keyed on a phone number (phone,
 * phone_prefix, calling_code), which only the caller knows once it has
 * parsed and normalised the number. Returns true when allowed; otherwise
 * it has answered 429 itself and the caller must stop. */
bool gh_shield_limit_phone(struct gh_http_req *req, enum gh_class cls, const char *e164,
                           const char *calling_code);

/* ---- limits shared by a cluster's nodes ([redis], shield/cluster.c) ---- */

/* What a gate decided: go_on true to continue the request; false after
 * the gate answered it (429 of a shared rule, 503 busy while Redis is
 * unreachable and the class's mode is closed, 403 of a proof-of-work
 * solution another node took). Runs on req's worker. */
typedef void (*gh_shield_gate_cb)(struct gh_http_req *req, bool go_on, void *arg);
/* Applies the shared rules of class cls to req (its address's prefixes,
 * and, given e164 and calling_code, the number's prefix and calling code)
 * and claims pow_challenge (NULL: none) once cluster-wide, all in one
 * pipeline to Redis; the request waits for the answers on its worker, the
 * loop never does. GH_ENOTFOUND when there is nothing to ask (no [redis],
 * the shield off, an allow-listed client, no shared rule): the caller
 * goes on at once, cb is not called. Otherwise 0 and cb runs exactly once,
 * perhaps before this returns (Redis known unreachable); GH_ENOMEM when it
 * could not start (cb not called). Worker thread. */
int gh_shield_cluster_gate(struct gh_http_req *req, enum gh_class cls, const char *e164,
                           const char *calling_code, const char *pow_challenge,
                           gh_shield_gate_cb cb, void *arg);
/* A fixed-window budget kept in Redis (identity's SMS budgets): a unit is
 * charged per call, at most cap per period. */
struct gh_shield_window {
    const char *name; /* named in the refusal ("global", "cooldown" …) */
    const uint8_t *key;
    size_t keylen;
    uint64_t period_ms;
    unsigned cap;
};
/* What the caller's own budgets decide without Redis, with each cap
 * divided by share (a node's share of the cluster's): 0 charged, or
 * GH_EBUSY with *wait_ms and *which. */
typedef int (*gh_shield_local_budget_fn)(void *arg, unsigned share, uint64_t *wait_ms,
                                         const char **which);
/* rc 0: every window charged; GH_EBUSY: one was full (nothing charged;
 * which names it, wait_ms until it allows); GH_EIO: Redis unreachable and
 * the SMS mode ([redis] sms_mode) is closed: answer 503 busy. In mode
 * local, local(arg, nodes, …) decided instead; in mode open, 0. */
typedef void (*gh_shield_windows_cb)(int rc, uint64_t wait_ms, const char *which, void *arg);
/* Charges windows w[0..n) in Redis, all or none (a full one refuses, and
 * the others' charges are given back), on worker's connection.
 * GH_ENOTFOUND without [redis] (cb not called: the caller charges its
 * own); otherwise 0 and cb runs exactly once on worker, perhaps before
 * this returns; GH_ENOMEM (cb not called). */
int gh_shield_cluster_windows(struct gh_worker *worker, const struct gh_shield_window *w,
                              unsigned n, gh_shield_local_budget_fn local, gh_shield_windows_cb cb,
                              void *arg);
/* An account's failed sign-ins kept in Redis, so that its back-off holds
 * on every node: read them (GH_SHIELD_FAILS_GET), add one after a wrong
 * password (n = max(n, floor) + 1, back-off base_ms x 2^(n-1) up to
 * max_ms; floor: the count the store holds), or clear them after a
 * success. key: the account's 16-byte key. cb(rc, n, ms of back-off
 * left, arg): rc 0, or GH_EIO when Redis is unreachable (nothing known:
 * the caller follows [redis] login_mode, gh_shield_cluster_login_mode).
 * GH_ENOTFOUND without [redis] (cb not called); otherwise 0 and cb runs
 * once on worker, perhaps before this returns (cb may be NULL). */
enum gh_shield_fails_op { GH_SHIELD_FAILS_GET, GH_SHIELD_FAILS_ADD, GH_SHIELD_FAILS_CLEAR };
typedef void (*gh_shield_fails_cb)(int rc, unsigned n, uint64_t wait_ms, void *arg);
int gh_shield_cluster_fails(struct gh_worker *worker, enum gh_shield_fails_op op,
                            const uint8_t key[16], unsigned floor, uint64_t base_ms,
                            uint64_t max_ms, gh_shield_fails_cb cb, void *arg);
/* What an unreachable Redis means for a rule or a counter. */
enum gh_shield_mode { GH_SHIELD_MODE_LOCAL, GH_SHIELD_MODE_OPEN, GH_SHIELD_MODE_CLOSED };
/* A [redis] *_mode value ("local", "open", "closed"; the configuration
 * has validated it). Any thread. */
enum gh_shield_mode gh_shield_mode_parse(const char *s);
/* Counts one request whose shared limits were decided without Redis, in
 * mode m (gatehouse_redis_fallbacks_total{mode}); nothing without
 * [redis]. Any thread. */
void gh_shield_cluster_count_fallback(enum gh_shield_mode m);
/* [redis] login_mode (local without [redis]); counts a fallback. */
enum gh_shield_mode gh_shield_cluster_login_fallback(void);
/* -1 without [redis], 0 while Redis is unreachable, 1 while it answers. */
int gh_shield_cluster_state(void);
/* The cluster's Redis client (shield/redis.h) for other subsystems' shared
 * counters (the gateway's quotas), or NULL without [redis]. */
struct gh_redis;
struct gh_redis *gh_shield_cluster_redis(void);
/* True while Redis is unreachable and cls's shared rules refuse (closed). */
bool gh_shield_cluster_closed(enum gh_class cls);
/* Hears each switch between reachable and unreachable (on a worker
 * thread). Main thread, before the server runs. 0 or GH_ETOOBIG. */
int gh_shield_subscribe_cluster(void (*fn)(bool up, void *data), void *data);
/* True when req's client is on the allow list (never limited). */
bool gh_shield_allowed(const struct gh_http_req *req);

/* ---- admission and shedding ---- */

/* How long the oldest waiting item of class cls has waited in a queue of
 * expensive work (ms; 0 when none or when the queue does not serve cls). */
typedef uint64_t (*gh_shield_queue_delay_fn)(enum gh_class cls, void *data);
/* Watches a queue (the identity password pool). Main thread, before the
 * server runs. 0, GH_EINVAL (no shield) or GH_ETOOBIG. */
int gh_shield_watch_queue(gh_shield_queue_delay_fn fn, void *data);
/* Admission of expensive work of class cls for req (before it queues):
 * true to go on; false after answering 503 busy with Retry-After because
 * the shield sheds that class now. Under pressure the delay of the user
 * and login queues counts against every class; a class's own queue delay
 * counts only against that class (a registration flood backs up the
 * register queue and sheds registrations, never logins). Worker thread. */
bool gh_shield_admit(struct gh_http_req *req, enum gh_class cls);
/* The shedding state now: pressure, shed levels, idle factor (any thread;
 * re-evaluated at most every 50 ms). */
void gh_shield_shed_state(struct gh_shed_state *out);
