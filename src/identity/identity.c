/* This module implements the identity subsystem of identity.h: the routes
 * of docs/API.md for accounts, sessions, API keys and the registration
 * policy. Handlers run on their worker's loop; database work goes to the
 * store threads, password hashing to the password pool, and every result
 * comes back to the same worker (gh_worker_post) to answer. */
#include "identity/identity.h"

#include "core/log.h"
#include "http/jsonbody.h"
#include "identity/audit.h"
#include "identity/auth.h"
#include "identity/backoff.h"
#include "identity/kvtab.h"
#include "identity/password.h"
#include "identity/phone.h"
#include "identity/policy.h"
#include "identity/pwpool.h"
#include "identity/sms.h"
#include "identity/smssend.h"
#include "identity/tokens.h"
#include "shield/shield.h"
#include "status/status.h"
#include "store/store.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <fcntl.h>

#define HOUR_MS (3600ull * 1000)

/* The subsystem's state: one per process (the admin routes' ctx must be
 * the server, and auth.h takes no context). */
static struct identity {
    struct gh_server *srv;
    struct gh_store *store;
    struct gh_pwpool *pool;
    struct gh_sms *sms;
    struct gh_smssend *sender;
    struct gh_kvtab *fails; /* login failures per phone and per address */
    struct gh_kvtab *sources; /* per /24 (/48): unresolved logins, last success */
    bool ready;
    _Atomic uint64_t reg_tat_ns; /* GCRA of the registration cap (level preset) */
    uv_timer_t policy_timer;     /* on the admin worker: pin expiry */
    bool timer_on;
    _Atomic uint64_t *m_policy_changes[4];
    _Atomic uint64_t *m_reg_capped;
    _Atomic uint64_t *m_reloads; /* credential cache misses looked up in the store */
} ids;

/* ---- small helpers ---- */

static void phone_hash(const char *e164, uint8_t out[32])
{
    char buf[40];
    int n = snprintf(buf, sizeof buf, "phone:%s", e164);
    gh_token_hash(buf, (size_t)n, out);
}

static uint64_t ceil_s(uint64_t ms)
{
    return ms ? (ms + 999) / 1000 : 1;
}

/* Gets string field name (required) of at most max bytes. false after
 * answering 400. */
static bool field_str(struct gh_http_req *req, json_t *o, const char *name, size_t max,
                      const char **s, size_t *len)
{
    json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v)) {
        gh_http_respond_error(req, 400, "invalid_request", "%s: required", name);
        return false;
    }
    if (!json_is_string(v)) {
        gh_http_respond_error(req, 400, "invalid_request", "%s: expected a string", name);
        return false;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    if (*len > max) {
        gh_http_respond_error(req, 400, "invalid_request", "%s: too long (at most %zu bytes)", name,
                              max);
        return false;
    }
    return true;
}

static bool field_phone(struct gh_http_req *req, json_t *o, struct gh_phone *p)
{
    json_t *v = json_object_get(o, "phone");
    if (!v || json_is_null(v)) {
        gh_http_respond_error(req, 400, "invalid_request", "phone: required");
        return false;
    }
    if (!json_is_string(v)) {
        gh_http_respond_error(req, 400, "invalid_phone", "phone: expected a string");
        return false;
    }
    const char *why = NULL;
    if (gh_phone_parse(json_string_value(v), json_string_length(v), req->cfg->identity.allow_voip,
                       p, &why)) {
        gh_http_respond_error(req, 400, "invalid_phone", "%s", why);
        return false;
    }
    return true;
}

/* The code field: 6 ASCII digits. */
static bool field_code(struct gh_http_req *req, json_t *o, const char **code, size_t *len)
{
    if (!field_str(req, o, "code", 64, code, len))
        return false;
    bool ok = *len == 6;
    for (size_t i = 0; ok && i < 6; i++)
        ok = (*code)[i] >= '0' && (*code)[i] <= '9';
    if (!ok) {
        gh_http_respond_error(req, 400, "invalid_request", "code: expected 6 digits");
        return false;
    }
    return true;
}

static bool field_password(struct gh_http_req *req, json_t *o, const char **pw, size_t *len)
{
    if (!field_str(req, o, "password", 4096, pw, len))
        return false;
    const char *why = NULL;
    if (gh_password_acceptable(*pw, *len, &why)) {
        gh_http_respond_error_param(req, 422, "invalid_parameter", "password", why);
        return false;
    }
    return true;
}

/* Refuses registration (and its codes) by the policy; false after
 * answering. */
static bool policy_allows(struct gh_http_req *req, const struct gh_phone *p)
{
    const struct gh_policy *pol = gh_policy_current();
    if (!pol)
        return true;
    switch (pol->mode) {
    case GH_POLICY_OPEN:
        return true;
    case GH_POLICY_CLOSED:
        gh_http_respond_error(req, 403, "registration_closed", "%s", pol->msg_en);
        return false;
    case GH_POLICY_BUSY:
        gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)pol->retry_after_s);
        gh_http_respond_error(req, 503, "busy", "%s", pol->msg_en);
        return false;
    case GH_POLICY_RESTRICTED:
        if (p && gh_policy_region_allowed(pol, p->region))
            return true;
        gh_http_respond_error(req, 403, "registration_restricted", "%s", pol->msg_en);
        return false;
    }
    return true;
}

static void respond_busy(struct gh_http_req *req, const char *what)
{
    uint64_t s = ceil_s(req->cfg->identity.busy_retry_ms);
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)s);
    gh_http_respond_error(req, 503, "busy", "%s is busy, please retry later", what);
}

/* Proof of work: when bits > 0, the body's "pow":{"challenge","nonce"}
 * must solve a challenge of scope issued to this client's network. false
 * after answering 403 pow_required with how to get one. */
static bool pow_ok(struct gh_http_req *req, json_t *o, enum gh_pow_scope scope, unsigned bits)
{
    if (!bits)
        return true;
    json_t *pw = json_object_get(o, "pow");
    const char *ch = NULL, *nonce = NULL;
    char nbuf[32];
    if (json_is_object(pw)) {
        ch = json_string_value(json_object_get(pw, "challenge"));
        json_t *n = json_object_get(pw, "nonce");
        if (json_is_integer(n) && json_integer_value(n) >= 0) {
            snprintf(nbuf, sizeof nbuf, "%lld", (long long)json_integer_value(n));
            nonce = nbuf;
        } else {
            nonce = json_string_value(n);
        }
    }
    enum gh_pow_result r = GH_POW_MALFORMED;
    if (ch && nonce)
        r = gh_shield_pow_verify(req, scope, bits, ch, strlen(ch), nonce, strlen(nonce));
    if (r == GH_POW_OK)
        return true;
    const char *sn = gh_pow_scope_name(scope);
    char msg[400];
    if (!pw || json_is_null(pw))
        snprintf(msg, sizeof msg,
                 "proof of work required (%u bits): GET /api/pow/challenge?scope=%s, find a "
                 "decimal nonce such that SHA-256(challenge \":\" nonce) starts with %u zero "
                 "bits, and send \"pow\":{\"challenge\":…,\"nonce\":…} with this request",
                 bits, sn, bits);
    else
        snprintf(msg, sizeof msg,
                 "proof of work refused (%s): get a new challenge with GET "
                 "/api/pow/challenge?scope=%s and solve it (%u bits)",
                 gh_pow_result_name(r), sn, bits);
    gh_http_respond_error_param(req, 403, "pow_required", "pow", msg);
    return false;
}

/* The shield's rules keyed on the phone number, its prefix and calling
 * code (none by default: identity's SMS budgets already cover what codes
 * cost; operators add e.g. login:phone:10/1m). false after answering 429. */
static bool limit_phone(struct gh_http_req *req, enum gh_class cls, const struct gh_phone *p)
{
    char cc[12];
    snprintf(cc, sizeof cc, "%u", p->calling_code);
    return gh_shield_limit_phone(req, cls, p->e164, cc);
}

/* The registration cap of the policy (a level preset): one GCRA over the
 * whole process, burst a tenth of a minute. false after answering 503. */
static bool register_cap_ok(struct gh_http_req *req, const struct gh_policy *pol)
{
    unsigned per_min = pol ? pol->register_per_minute : 0;
    if (!per_min)
        return true;
    uint64_t t = 60000000000ull / per_min, tau = t * GH_MAX(per_min / 10, 1u);
    uint64_t now = gh_now_ns(), tat = atomic_load(&ids.reg_tat_ns);
    for (;;) {
        uint64_t base = GH_MAX(tat, now);
        if (base + t - now > tau) {
            if (ids.m_reg_capped)
                atomic_fetch_add_explicit(ids.m_reg_capped, 1, memory_order_relaxed);
            uint64_t wait = base + t - now - tau;
            gh_http_add_header(req, "Retry-After", "%llu",
                               (unsigned long long)GH_MAX((wait + 999999999ull) / 1000000000ull,
                                                          1ull));
            gh_http_respond_error(req, 503, "busy", "%s", req->cfg->identity.msg_busy_en);
            return false;
        }
        if (atomic_compare_exchange_weak(&ids.reg_tat_ns, &tat, base + t))
            return true;
    }
}

static void respond_json_buf(struct gh_http_req *req, int status, struct gh_buf *b)
{
    gh_http_respond_json(req, status, b->data ? b->data : "{}", b->data ? b->len : 2);
}

static int user_json(const struct gh_user *u, struct gh_buf *b)
{
    char ts[40], ll[40];
    int rc = gh_buf_printf(b, "{\"id\":%llu,\"phone\":\"", (unsigned long long)u->id);
    rc = rc ? rc : gh_buf_append_json_str(b, u->phone, strlen(u->phone));
    rc = rc ? rc
            : gh_buf_printf(b,
                            "\",\"region\":\"%s\",\"calling_code\":%u,\"created_at\":\"%s\","
                            "\"last_login_at\":%s%s%s}",
                            u->region, u->calling_code, gh_time_rfc3339(u->created_ms, ts, sizeof ts),
                            u->last_login_ms ? "\"" : "",
                            u->last_login_ms ? gh_time_rfc3339(u->last_login_ms, ll, sizeof ll)
                                             : "null",
                            u->last_login_ms ? "\"" : "");
    return rc;
}

static void audit_detail(char *out, size_t outlen, const char *e164, const char *region,
                         const char *extra)
{
    char masked[32];
    gh_audit_mask_phone(e164, masked, sizeof masked);
    snprintf(out, outlen, "{\"phone\":\"%s\",\"region\":\"%s\"%s%s}", masked, region,
             extra && *extra ? "," : "", extra ? extra : "");
}

/* ---- credential cache misses ---- */

/* The request whose handler runs again after a store look-up (its second
 * miss is final). Loop threads only. */
static _Thread_local const struct gh_http_req *reloading;

struct reload_job {
    struct gh_http_req *req;
    uint8_t hash[GH_TOKEN_HASH_BYTES];
    bool key;
    bool found;
    uint64_t idle_ms;
    struct gh_cred cred;
};

static int reload_fn(struct gh_store_conn *c, void *arg)
{
    struct reload_job *j = arg;
    int rc;
    if (j->key) {
        struct gh_store_key k;
        rc = gh_store_key_by_hash(c, j->hash, &k);
        if (!rc)
            j->cred = (struct gh_cred){.kind = GH_CRED_KEY, .user_id = k.user_id, .id = k.id};
    } else {
        struct gh_store_session s;
        rc = gh_store_session_by_hash(c, j->hash, gh_wall_ms(), &s);
        /* the idle clock restarts here: the cache alone keeps last use */
        if (!rc)
            j->cred = (struct gh_cred){.kind = GH_CRED_SESSION, .user_id = s.user_id,
                                       .id = s.id, .expires_ms = s.expires_ms,
                                       .idle_ms = j->idle_ms};
    }
    j->found = rc == 0;
    memcpy(j->cred.hash, j->hash, sizeof j->hash);
    return rc == GH_ENOTFOUND ? 0 : rc;
}

/* Caches what a reload_fn found, never over a marker set meanwhile
 * (logout, reset, deletion). */
static void reload_keep(const struct reload_job *j, int rc)
{
    struct gh_cred seen;
    if (!rc && j->found && gh_tokens_peek(j->hash, &seen) == GH_ENOTFOUND)
        gh_tokens_put(&j->cred);
}

static void reload_done(struct gh_worker *w, void *arg, int rc)
{
    struct reload_job *j = arg;
    struct gh_http_req *req = j->req;
    reload_keep(j, rc);
    free(j);
    if (!w)
        return;
    if (rc) {
        respond_busy(req, "sign-in");
        return;
    }
    reloading = req;
    req->route->handler(req);
    reloading = NULL;
}

/* The credential of req that the store may hold and the cache does not:
 * fills j's hash and kind. false when req carries none, a malformed one,
 * one the cache answers (live or gone), or the cache never evicted. */
static bool reload_target(const struct gh_http_req *req, struct reload_job *j)
{
    if (!ids.ready || !gh_tokens_evictions())
        return false;
    size_t len = 0;
    const char *h = NULL;
    if (gh_http_header_get(req, "authorization", NULL)) {
        if (!gh_auth_bearer(req, &h, &len) || !gh_token_api_key_wellformed(h, len))
            return false;
        gh_token_hash(h, len, j->hash);
        j->key = true;
    } else {
        char tok[GH_TOKEN_B64_LEN + 8];
        if (gh_auth_session_token(req, tok, sizeof tok) ||
            !gh_token_session_wellformed(tok, strlen(tok)))
            return false;
        gh_token_hash(tok, strlen(tok), j->hash);
        sodium_memzero(tok, sizeof tok);
    }
    struct gh_cred seen;
    return gh_tokens_peek(j->hash, &seen) == GH_ENOTFOUND;
}

/* A look-up ahead of the handler: held by the store until prefetch_done
 * and by the waiter until its wake runs or it cancels, freed by the last. */
struct prefetch {
    struct reload_job j; /* first: reload_fn takes it */
    atomic_int refs;
    void (*wake)(void *arg); /* NULL once cancelled or woken; loop thread only */
    void *arg;
};

static void prefetch_unref(struct prefetch *pf)
{
    if (atomic_fetch_sub_explicit(&pf->refs, 1, memory_order_acq_rel) == 1)
        free(pf);
}

static void prefetch_done(struct gh_worker *w, void *arg, int rc)
{
    struct prefetch *pf = arg;
    reload_keep(&pf->j, rc);
    /* w NULL: not on the waiter's loop (shutting down); it cancels instead */
    if (w && pf->wake) {
        void (*wake)(void *) = pf->wake;
        pf->wake = NULL;
        wake(pf->arg);
        prefetch_unref(pf); /* the waiter's hold */
    }
    prefetch_unref(pf); /* the store's */
}

int gh_auth_prefetch(const struct gh_http_req *req, void (*wake)(void *arg), void *arg,
                     void **job)
{
    struct prefetch *pf = calloc(1, sizeof *pf);
    if (!pf)
        return GH_ENOMEM;
    pf->j.idle_ms = req->cfg->identity.session_idle_ms;
    if (!reload_target(req, &pf->j)) {
        free(pf);
        return GH_ENOTFOUND;
    }
    atomic_init(&pf->refs, 2);
    pf->wake = wake;
    pf->arg = arg;
    if (ids.m_reloads)
        atomic_fetch_add_explicit(ids.m_reloads, 1, memory_order_relaxed);
    if (gh_store_read(ids.store, reload_fn, pf, req->worker, prefetch_done)) {
        free(pf);
        return GH_EBUSY;
    }
    *job = pf;
    return 0;
}

void gh_auth_prefetch_cancel(void *job)
{
    struct prefetch *pf = job;
    pf->wake = NULL;
    prefetch_unref(pf);
}

bool gh_auth_may_reload(const struct gh_http_req *req)
{
    struct reload_job j = {0};
    return reload_target(req, &j);
}

bool gh_auth_reload(struct gh_http_req *req)
{
    struct reload_job j = {.req = req, .idle_ms = req->cfg->identity.session_idle_ms};
    if (req == reloading || !req->route || !reload_target(req, &j))
        return false;
    struct reload_job *job = malloc(sizeof *job);
    if (!job) {
        respond_busy(req, "sign-in");
        return true;
    }
    *job = j;
    if (ids.m_reloads)
        atomic_fetch_add_explicit(ids.m_reloads, 1, memory_order_relaxed);
    if (gh_store_read(ids.store, reload_fn, job, req->worker, reload_done)) {
        free(job);
        respond_busy(req, "sign-in");
    }
    return true;
}

/* Authenticates an account request by its session cookie (with the CSRF
 * header when need_csrf). API keys never reach account routes (auth.h's
 * scope): a Bearer header alone is answered 401 naming that. false after
 * answering 401/403. */
static bool authed(struct gh_http_req *req, bool need_csrf, struct gh_principal *pr)
{
    int rc = gh_auth_session(req, need_csrf, pr);
    if (rc == GH_EINVAL) {
        gh_http_respond_error(req, 403, "forbidden",
                              "X-CSRF-Token header missing or wrong (send the gh_csrf cookie's "
                              "value)");
        return false;
    }
    if (rc && gh_auth_reload(req))
        return false; /* the handler runs again once the store answered */
    if (rc && gh_http_header_get(req, "authorization", NULL)) {
        gh_http_respond_error(req, 401, "unauthorized",
                              "API keys reach only /v1/*, /api/usage, /user/balance and /beta/*; "
                              "%s needs a signed-in session",
                              req->route ? req->route->pattern : "this route");
        return false;
    }
    if (rc) {
        gh_http_respond_error(req, 401, "unauthorized", "sign in first");
        return false;
    }
    return true;
}

/* ---- sessions ---- */

static void set_session_cookies(struct gh_http_req *req, const char *tok)
{
    gh_auth_set_cookies(req, tok, req->cfg->identity.session_max_ms / 1000);
}

static void clear_session_cookies(struct gh_http_req *req)
{
    gh_auth_clear_cookies(req);
}

/* ---- the state of one asynchronous account operation ---- */

enum op_kind { OP_REGISTER, OP_LOGIN_PW, OP_LOGIN_CODE, OP_RESET };

struct op {
    struct gh_http_req *req;
    enum op_kind kind;
    struct gh_phone phone;
    uint8_t phone_hash[32];
    char password[GH_PASSWORD_MAX * 4 + 1];
    size_t pwlen;
    char pw_hash[GH_PWHASH_STR_MAX];
    struct gh_user user;
    bool found;
    bool verified;
    int rc;
    /* the new session */
    char token[GH_TOKEN_B64_LEN + 1];
    struct gh_store_session sess;
    uint64_t session_max_ms, session_idle_ms;
    unsigned sms_only_after;
    enum gh_pw_prio prio; /* password login: the source's tier in the pool */
    bool revoke_keys;     /* password reset: revoke every API key too */
    int keys_revoked;     /* how many the reset revoked */
    unsigned sessions_max; /* login: live sessions kept per account */
    struct gone *gone;     /* credentials the write deleted (store thread fills) */
};

static void op_free(struct op *op)
{
    free(op->gone);
    sodium_memzero(op->password, sizeof op->password);
    sodium_memzero(op->token, sizeof op->token);
    free(op);
}

static struct op *op_new(struct gh_http_req *req, enum op_kind kind, const struct gh_phone *p)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->req = req;
    op->kind = kind;
    op->phone = *p;
    phone_hash(p->e164, op->phone_hash);
    op->session_max_ms = req->cfg->identity.session_max_ms;
    op->session_idle_ms = req->cfg->identity.session_idle_ms;
    op->sms_only_after = req->cfg->identity.sms_only_after;
    op->sessions_max = req->cfg->identity.sessions_per_user;
    return op;
}

static void op_new_session(struct op *op)
{
    gh_token_new_session(op->token);
    gh_token_hash(op->token, strlen(op->token), op->sess.hash);
    op->sess.created_ms = gh_wall_ms();
    op->sess.expires_ms = op->sess.created_ms + op->session_max_ms;
}

/* After the session row is durable: cache it, set the cookies, answer. */
static void op_finish_session(struct op *op, int status)
{
    struct gh_http_req *req = op->req;
    struct gh_cred c = {.kind = GH_CRED_SESSION,
                        .user_id = op->user.id,
                        .id = op->sess.id,
                        .expires_ms = op->sess.expires_ms,
                        .idle_ms = op->session_idle_ms};
    memcpy(c.hash, op->sess.hash, sizeof c.hash);
    if (gh_tokens_put(&c)) {
        respond_busy(req, "sign-in");
        return;
    }
    set_session_cookies(req, op->token);
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    gh_buf_append_str(&b, "{\"user\":");
    user_json(&op->user, &b);
    gh_buf_append_str(&b, "}");
    respond_json_buf(req, status, &b);
    gh_buf_dispose(&b);
}

/* ---- credentials that left the store ---- */

#define GONE_MAX 512 /* markers set per write; more are only deleted */

/* Hashes of sessions (and keys) a write deleted, collected on the store
 * thread and marked GH_CRED_GONE in the cache once the write is durable,
 * so that neither a cached copy nor a store look-up racing the write (a
 * reader's snapshot from before it) brings them back. */
struct gone {
    uint64_t user_id;
    unsigned n;
    unsigned total; /* seen, of which the first n are kept */
    struct {
        uint8_t hash[32];
        uint64_t expires_ms; /* 0: a key (the marker lives until evicted) */
    } e[GONE_MAX];
};

static void gone_add(struct gone *g, const uint8_t hash[32], uint64_t expires_ms)
{
    if (g->n < GONE_MAX) {
        memcpy(g->e[g->n].hash, hash, 32);
        g->e[g->n].expires_ms = expires_ms;
        g->n++;
    }
    g->total++;
}

static void gone_session(const struct gh_store_session *s, void *arg)
{
    gone_add(arg, s->hash, s->expires_ms);
}

static void gone_key(const struct gh_store_key *k, void *arg)
{
    gone_add(arg, k->hash, 0);
}

/* Collects the sessions of user_id (and its live keys when keys) into a
 * new *out, oldest first. Store thread. 0, GH_ENOMEM or GH_EIO. */
static int gone_collect(struct gh_store_conn *c, uint64_t user_id, bool keys, struct gone **out)
{
    struct gone *g = calloc(1, sizeof *g);
    if (!g)
        return GH_ENOMEM;
    g->user_id = user_id;
    int rc = gh_store_sessions_each(c, user_id, 0, gone_session, g);
    if (!rc && keys)
        rc = gh_store_keys_each(c, user_id, false, gone_key, g);
    free(*out);
    *out = g;
    return rc;
}

/* Marks every collected credential gone in the cache. Any thread. */
static void gone_bury(const struct gone *g)
{
    for (unsigned i = 0; g && i < g->n; i++)
        gh_tokens_bury(g->e[i].hash, g->user_id, g->e[i].expires_ms);
}

/* Deletes the oldest sessions of user_id past max (the newest, just
 * inserted, stays); *out gets them, to leave the cache. Store thread. A
 * flood of sign-ins to one account then holds at most max sessions of
 * the store and of the cache, and ends its own oldest ones. */
static int sessions_cap(struct gh_store_conn *c, uint64_t user_id, unsigned max,
                        struct gone **out)
{
    int rc = gone_collect(c, user_id, false, out);
    if (rc)
        return rc;
    struct gone *g = *out;
    unsigned excess = g->total > max ? g->total - max : 0;
    g->n = GH_MIN(g->n, excess); /* sessions_each is oldest first */
    for (unsigned i = 0; i < g->n; i++) {
        rc = gh_store_session_delete(c, g->e[i].hash);
        if (rc && rc != GH_ENOTFOUND)
            return rc;
    }
    return 0;
}

/* Successful sign-ins per account and hour (identity.logins_per_user_hour),
 * counted after the password or code was verified, so only someone who
 * can sign in to the account spends it. false after answering 429. */
static bool account_login_rate_ok(struct op *op)
{
    struct gh_http_req *req = op->req;
    uint8_t k[16];
    gh_kvtab_key(k, "lu", op->phone_hash, 32);
    uint64_t now = gh_now_ms(), wait = 0;
    unsigned cap = req->cfg->identity.logins_per_user_hour;
    gh_kvtab_lock(ids.fails);
    struct gh_kv *e = gh_kvtab_find_locked(ids.fails, k, now, true, HOUR_MS);
    if (e) {
        if (!e->v[2] || now >= e->v[0] + HOUR_MS) {
            e->v[0] = now;
            e->v[1] = 0;
            e->v[2] = 1;
            e->expires_ms = now + HOUR_MS;
        }
        if (e->v[1] >= cap)
            wait = e->v[0] + HOUR_MS - now;
        else
            e->v[1]++;
    }
    gh_kvtab_unlock(ids.fails);
    if (!wait)
        return true;
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)ceil_s(wait));
    gh_http_respond_error(req, 429, "rate_limited",
                          "too many sign-ins to this account; retry in %llu s",
                          (unsigned long long)ceil_s(wait));
    return false;
}

/* ---- login failures (memory): per phone and per address ---- */

static void fail_keys(const struct op *op, uint8_t kp[16], uint8_t ka[16])
{
    gh_kvtab_key(kp, "lf", op->phone_hash, 32);
    const struct gh_addr *a = &op->req->client;
    gh_kvtab_key(ka, "la", a->bytes, a->family == AF_INET ? 4 : 16);
}

#define TRUST_MS (7 * 24 * HOUR_MS) /* a success vouches for its address this long */

/* The client's /24 (IPv4) or /48 (IPv6), and its address, in the sources
 * table. */
static void source_key(const struct gh_http_req *req, uint8_t ks[16])
{
    const struct gh_addr *a = &req->client;
    gh_kvtab_key(ks, "ls", a->bytes, a->family == AF_INET ? 3 : 6);
}

static void source_addr_key(const struct gh_http_req *req, uint8_t ka[16])
{
    const struct gh_addr *a = &req->client;
    gh_kvtab_key(ka, "lk", a->bytes, a->family == AF_INET ? 4 : 16);
}

/* The client's address together with one account (its phone hash): what a
 * success vouches for. A success on one account never vouches for the
 * address's guesses at another. */
static void source_pair_key(const struct gh_http_req *req, const uint8_t phone_hash[32],
                            uint8_t kv[16])
{
    const struct gh_addr *a = &req->client;
    uint8_t b[16 + 32];
    size_t n = a->family == AF_INET ? 4 : 16;
    memcpy(b, a->bytes, n);
    memcpy(b + n, phone_hash, 32);
    gh_kvtab_key(kv, "lv", b, n + 32);
}

/* True when the client's address signed in to (or registered) the account
 * of phone_hash within TRUST_MS. */
static bool source_vouched(const struct gh_http_req *req, const uint8_t phone_hash[32])
{
    uint8_t kv[16];
    source_pair_key(req, phone_hash, kv);
    uint64_t now = gh_now_ms();
    gh_kvtab_lock(ids.sources);
    struct gh_kv *k = gh_kvtab_find_locked(ids.sources, kv, now, false, 0);
    bool vouched = k && k->v[1] && now - k->v[1] < TRUST_MS;
    gh_kvtab_unlock(ids.sources);
    return vouched;
}


/* The tier of a password login in the pool, from the source alone (never
 * from the account: a known and an unknown number wait in the same queue,
 * and an attacker cannot lower a user's tier without their /24):
 *  - LOGIN: the address signed in or registered within TRUST_MS, its /24
 *    (/48) has fewer than 4 × suspect_after password logins not followed
 *    by a success this hour, and the address failed at most once;
 *  - LOGIN_NEW: no such success, fewer than suspect_after unresolved
 *    logins in the /24, the address failed at most once;
 *  - LOGIN_SUSPECT: the rest (a spray from a /24 gets suspect_after clean
 *    tries before its failures are even known). */
static enum gh_pw_prio login_tier(const struct gh_http_req *req, uint64_t addr_fails)
{
    uint8_t ks[16], ka[16];
    source_key(req, ks);
    source_addr_key(req, ka);
    uint64_t now = gh_now_ms(), unresolved = 0;
    bool known = false;
    gh_kvtab_lock(ids.sources);
    struct gh_kv *s = gh_kvtab_find_locked(ids.sources, ks, now, false, 0);
    if (s)
        unresolved = s->v[0];
    struct gh_kv *k = gh_kvtab_find_locked(ids.sources, ka, now, false, 0);
    known = k && k->v[1] && now - k->v[1] < TRUST_MS;
    gh_kvtab_unlock(ids.sources);
    unsigned after = req->cfg->identity.login_suspect_after;
    if (addr_fails >= 2 || unresolved >= (known ? 4ull * after : after))
        return GH_PW_LOGIN_SUSPECT;
    return known ? GH_PW_LOGIN : GH_PW_LOGIN_NEW;
}

/* A password login from the client's /24 (/48) begins: unresolved until a
 * success from there. */
static void source_attempt(const struct gh_http_req *req)
{
    uint8_t ks[16];
    source_key(req, ks);
    uint64_t now = gh_now_ms();
    gh_kvtab_lock(ids.sources);
    struct gh_kv *s = gh_kvtab_find_locked(ids.sources, ks, now, true, HOUR_MS);
    if (s) {
        s->v[0]++;
        s->expires_ms = GH_MAX(s->expires_ms, now + HOUR_MS);
    }
    gh_kvtab_unlock(ids.sources);
}

/* A sign-in or registration from the client to the account of phone_hash
 * succeeded: its address is known for TRUST_MS (the pool tier), the pair
 * (address, account) is vouched for as long, and one unresolved login of
 * its /24 (/48) is resolved. */
static void source_success(const struct gh_http_req *req, const uint8_t phone_hash[32])
{
    uint8_t ks[16], ka[16], kv[16];
    source_key(req, ks);
    source_addr_key(req, ka);
    source_pair_key(req, phone_hash, kv);
    uint64_t now = gh_now_ms();
    gh_kvtab_lock(ids.sources);
    struct gh_kv *s = gh_kvtab_find_locked(ids.sources, ks, now, false, 0);
    if (s && s->v[0])
        s->v[0]--;
    const uint8_t *keys[2] = {ka, kv};
    for (int i = 0; i < 2; i++) {
        struct gh_kv *k = gh_kvtab_find_locked(ids.sources, keys[i], now, true, TRUST_MS);
        if (k) {
            k->v[1] = now ? now : 1;
            k->expires_ms = now + TRUST_MS;
        }
    }
    gh_kvtab_unlock(ids.sources);
}

/* Refuses when the account waits out a back-off or the address failed too
 * often. false after answering 429. sms_only: the account's failures
 * passed the limit. Sets op->prio (login_tier). had_failures: the account
 * or the address failed recently — except for a vouched source (an address
 * that signed in to this very account within TRUST_MS, tier `login`, no
 * failure of the address this hour), which also skips the account's
 * back-off: a flood against a user's number from elsewhere neither locks
 * the user out nor makes them solve proof of work at home. Vouching is per
 * (address, account): addresses that signed in to an attacker's own
 * account get the victim's back-off like any other. */
static bool login_allowed(struct op *op, bool *sms_only, bool *had_failures)
{
    struct gh_http_req *req = op->req;
    uint8_t kp[16], ka[16];
    fail_keys(op, kp, ka);
    uint64_t now = gh_now_ms(), wait = 0;
    gh_kvtab_lock(ids.fails);
    struct gh_kv *p = gh_kvtab_find_locked(ids.fails, kp, now, false, 0);
    struct gh_kv *a = gh_kvtab_find_locked(ids.fails, ka, now, false, 0);
    if (p && p->v[1] > now)
        wait = p->v[1] - now;
    *sms_only = p && p->v[0] >= req->cfg->identity.sms_only_after;
    *had_failures = (p && p->v[0] > 0) || (a && a->v[0] > 0);
    bool addr_over = a && a->v[0] >= req->cfg->identity.login_fail_per_addr;
    if (addr_over && a->expires_ms - now > wait)
        wait = a->expires_ms - now;
    uint64_t addr_fails = a ? a->v[0] : 0;
    gh_kvtab_unlock(ids.fails);
    bool tiers = req->cfg->identity.login_tiers;
    op->prio = tiers ? login_tier(req, addr_fails) : GH_PW_LOGIN;
    if (tiers && op->prio == GH_PW_LOGIN && addr_fails == 0 &&
        source_vouched(req, op->phone_hash)) {
        *had_failures = false;
        if (!addr_over)
            wait = 0;
    }
    if (wait) {
        gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)ceil_s(wait));
        gh_http_respond_error(req, 429, "rate_limited",
                              "too many failed sign-ins; retry in %llu s",
                              (unsigned long long)ceil_s(wait));
        return false;
    }
    return true;
}

static void login_failed_mem(struct op *op)
{
    const struct gh_config *cfg = op->req->cfg;
    uint8_t kp[16], ka[16];
    fail_keys(op, kp, ka);
    uint64_t now = gh_now_ms();
    gh_kvtab_lock(ids.fails);
    /* the account's entry lives a day past its last failure */
    struct gh_kv *p = gh_kvtab_find_locked(ids.fails, kp, now, true, 24 * HOUR_MS);
    if (p) {
        p->v[0] = GH_MAX(p->v[0], (uint64_t)op->user.failed_logins) + 1;
        p->v[1] = now + gh_backoff_ms((unsigned)GH_MIN(p->v[0], 64ull), cfg->identity.backoff_base_ms,
                                   cfg->identity.backoff_max_ms);
        p->expires_ms = now + 24 * HOUR_MS;
    }
    struct gh_kv *a = gh_kvtab_find_locked(ids.fails, ka, now, true, HOUR_MS);
    if (a)
        a->v[0]++;
    gh_kvtab_unlock(ids.fails);
}

static void login_succeeded_mem(struct op *op)
{
    uint8_t kp[16], ka[16];
    fail_keys(op, kp, ka);
    gh_kvtab_lock(ids.fails);
    gh_kvtab_del_locked(ids.fails, kp);
    gh_kvtab_unlock(ids.fails);
    source_success(op->req, op->phone_hash);
}

/* ---- POST /api/auth/sms-code ---- */

struct sms_job {
    struct gh_phone phone;
    uint8_t phone_hash[32];
    enum gh_sms_purpose purpose;
    struct gh_addr client;
    bool owner; /* the client signed in to the number's account recently */
    bool exists;
    bool disabled; /* the account was disabled by an operator */
    uint64_t ttl_ms;
};

static int sms_lookup_fn(struct gh_store_conn *c, void *arg)
{
    struct sms_job *j = arg;
    struct gh_user u;
    int rc = gh_store_user_by_phone(c, j->phone_hash, &u);
    j->exists = rc == 0;
    j->disabled = rc == 0 && u.disabled_ms;
    sodium_memzero(&u, sizeof u);
    return rc == GH_ENOTFOUND ? 0 : rc;
}

static void sms_lookup_done(struct gh_worker *w, void *arg, int rc)
{
    struct sms_job *j = arg;
    if (rc || !ids.sms || !ids.sender)
        goto out;
    /* login and reset codes go only to numbers with an account: nobody
     * pays for texts to numbers that cannot use them; a disabled account
     * cannot sign in or reset, so it gets none either (the 202 was the
     * same bytes already) */
    if (j->purpose != GH_SMS_REGISTER && (!j->exists || j->disabled))
        goto out;
    /* the number's budgets are charged only now, when a text is sent: a
     * flood of requests for numbers without an account spends nobody's
     * budget, and an owner's codes have budgets outsiders cannot spend.
     * Over budget: no text (the 202 was the same bytes already). */
    if (j->purpose != GH_SMS_REGISTER) {
        struct gh_sms_req sr = {.e164 = j->phone.e164,
                                .prefix = j->phone.prefix,
                                .calling_code = j->phone.calling_code,
                                .client = j->client,
                                .purpose = j->purpose,
                                .owner = j->owner};
        uint64_t wait;
        const char *which;
        if (gh_sms_budget_send(ids.sms, &sr, gh_now_ms(), &wait, &which))
            goto out;
    }
    char code[7];
    if (gh_sms_code_issue(ids.sms, j->phone.e164, j->purpose, gh_now_ms(), code))
        goto out;
    char text[400];
    unsigned mins = (unsigned)GH_MAX(j->ttl_ms / 60000, 1ull);
    if (j->purpose == GH_SMS_REGISTER && j->exists)
        snprintf(text, sizeof text,
                 "gatehouse: someone asked to register this number, which already has an "
                 "account. If it was you, sign in or reset your password instead. Code %s "
                 "(%u min).",
                 code, mins);
    else if (j->purpose == GH_SMS_REGISTER)
        snprintf(text, sizeof text,
                 "gatehouse: your registration code is %s. It expires in %u min. Never share it.",
                 code, mins);
    else if (j->purpose == GH_SMS_LOGIN)
        snprintf(text, sizeof text,
                 "gatehouse: your sign-in code is %s. It expires in %u min. Never share it.", code,
                 mins);
    else
        snprintf(text, sizeof text,
                 "gatehouse: your password reset code is %s. It expires in %u min. Never share "
                 "it.",
                 code, mins);
    gh_smssend_send(ids.sender, j->phone.e164, gh_sms_purpose_name(j->purpose), code, text);
    sodium_memzero(code, sizeof code);
out:
    free(j);
}

static void h_sms_code(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gh_phone p;
    const char *ps;
    size_t plen;
    if (!field_phone(req, o, &p) || !field_str(req, o, "purpose", 32, &ps, &plen))
        goto out;
    int purpose = gh_sms_purpose_parse(ps, plen);
    if (purpose < 0) {
        gh_http_respond_error(req, 400, "invalid_request",
                              "purpose: expected register, login or reset");
        goto out;
    }
    if (purpose == GH_SMS_REGISTER &&
        (!policy_allows(req, &p) || !pow_ok(req, o, GH_POW_SMS, gh_shield_pow_bits(GH_POW_SMS))))
        goto out;
    if (!limit_phone(req, req->route->cls, &p))
        goto out;
    uint8_t ph[32];
    phone_hash(p.e164, ph);
    struct gh_sms_req sr = {.e164 = p.e164,
                            .prefix = p.prefix,
                            .calling_code = p.calling_code,
                            .client = req->client,
                            .purpose = (enum gh_sms_purpose)purpose,
                            .owner = source_vouched(req, ph)};
    uint64_t wait = 0;
    const char *which = NULL;
    /* the requester's budgets now; the number's too for a registration
     * code, which is sent whether or not the number has an account (so
     * refusing it now tells nothing); login and reset codes are charged to
     * the number only when one is sent (sms_lookup_done) */
    int brc = purpose == GH_SMS_REGISTER
                  ? gh_sms_budget(ids.sms, &sr, gh_now_ms(), &wait, &which)
                  : gh_sms_budget_requester(ids.sms, &sr, gh_now_ms(), &wait, &which);
    if (brc) {
        gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)ceil_s(wait));
        gh_http_respond_error(req, 429, "rate_limited",
                              "too many codes requested (%s); retry in %llu s", which,
                              (unsigned long long)ceil_s(wait));
        goto out;
    }
    struct sms_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the SMS service");
        goto out;
    }
    j->phone = p;
    memcpy(j->phone_hash, ph, sizeof ph);
    j->purpose = (enum gh_sms_purpose)purpose;
    j->client = req->client;
    j->owner = sr.owner;
    j->ttl_ms = req->cfg->identity.code_ttl_ms;
    /* the answer does not wait for the look-up: same bytes, same time,
     * whether or not the number has an account */
    if (gh_store_read(ids.store, sms_lookup_fn, j, req->worker, sms_lookup_done)) {
        free(j);
        respond_busy(req, "the SMS service");
        goto out;
    }
    gh_shield_signal(req, GH_SIGNAL_SMS_SENT);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"sent\":true,\"retry_after\":%llu}",
                     (unsigned long long)(req->cfg->sms.cooldown_ms / 1000));
    gh_http_respond_json(req, 202, body, (size_t)n);
out:
    json_decref(o);
}

/* ---- POST /api/auth/register ---- */

static int register_write_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    struct gh_user *u = &op->user;
    memset(u, 0, sizeof *u);
    memcpy(u->phone_hash, op->phone_hash, 32);
    snprintf(u->phone, sizeof u->phone, "%s", op->phone.e164);
    snprintf(u->region, sizeof u->region, "%s", op->phone.region);
    u->calling_code = op->phone.calling_code;
    snprintf(u->pw_hash, sizeof u->pw_hash, "%s", op->pw_hash);
    u->created_ms = gh_wall_ms();
    u->last_login_ms = u->created_ms;
    int rc = gh_store_user_insert(c, u);
    if (rc)
        return rc;
    gh_store_user_login_result(c, u->id, true, u->created_ms);
    op->sess.user_id = u->id;
    rc = gh_store_session_insert(c, &op->sess);
    if (rc)
        return rc;
    char d[160];
    audit_detail(d, sizeof d, op->phone.e164, op->phone.region, NULL);
    return gh_audit_row(c, "register", u->id, d);
}

static void register_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w)
        goto out;
    if (rc == GH_EEXIST)
        gh_http_respond_error(op->req, 409, "account_exists",
                              "phone: this number already has an account; sign in or reset the "
                              "password");
    else if (rc)
        respond_busy(op->req, "registration");
    else {
        gh_shield_signal(op->req, GH_SIGNAL_REGISTERED);
        source_success(op->req, op->phone_hash);
        op_finish_session(op, 201);
    }
out:
    op_free(op);
}

static void hash_fn(void *arg)
{
    struct op *op = arg;
    op->rc = gh_password_hash(op->password, op->pwlen, op->pw_hash);
    sodium_memzero(op->password, sizeof op->password);
}

static void register_hash_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w)
        goto fail;
    if (rc || op->rc) {
        respond_busy(op->req, "registration");
        goto fail;
    }
    op_new_session(op);
    if (gh_store_write(ids.store, register_write_fn, op, w, register_write_done)) {
        respond_busy(op->req, "registration");
        goto fail;
    }
    return;
fail:
    op_free(op);
}

/* The one answer to a code that does not sign in: the same bytes whether
 * the code was wrong, expired, used up, or never sent (the number has no
 * account), so these paths cannot tell registered numbers from others. */
static void respond_bad_code(struct gh_http_req *req)
{
    gh_http_respond_error_param(req, 400, "invalid_code", "code",
                                "code: wrong or expired code; check the SMS or request a new "
                                "code");
}

static bool check_code(struct gh_http_req *req, const char *e164, enum gh_sms_purpose p,
                       const char *code, size_t len)
{
    int rc = gh_sms_code_check(ids.sms, e164, p, code, len, gh_now_ms());
    gh_shield_signal(req, rc == 0 ? GH_SIGNAL_VERIFY_OK : GH_SIGNAL_VERIFY_FAIL);
    if (rc == 0)
        return true;
    respond_bad_code(req);
    return false;
}

static void h_register(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gh_phone p;
    const char *code, *pw;
    size_t clen, pwlen;
    if (!field_phone(req, o, &p) || !field_code(req, o, &code, &clen) ||
        !field_password(req, o, &pw, &pwlen))
        goto out;
    /* cheapest refusals first, and all of them before the code is spent:
     * policy, proof of work, phone-keyed rules, the level's registration
     * cap, admission to the password pool */
    if (!policy_allows(req, &p) ||
        !pow_ok(req, o, GH_POW_REGISTER, gh_shield_pow_bits(GH_POW_REGISTER)) ||
        !limit_phone(req, GH_CLASS_REGISTER, &p) ||
        !register_cap_ok(req, gh_policy_current()) || !gh_shield_admit(req, GH_CLASS_REGISTER))
        goto out;
    if (!check_code(req, p.e164, GH_SMS_REGISTER, code, clen))
        goto out;
    struct op *op = op_new(req, OP_REGISTER, &p);
    if (!op) {
        respond_busy(req, "registration");
        goto out;
    }
    memcpy(op->password, pw, pwlen);
    op->pwlen = pwlen;
    if (gh_pwpool_submit(ids.pool, GH_PW_REGISTER, hash_fn, op, req->worker,
                         register_hash_done)) {
        op_free(op);
        respond_busy(req, "registration");
    }
out:
    json_decref(o);
}

/* ---- POST /api/auth/login ---- */

static int login_read_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    int rc = gh_store_user_by_phone(c, op->phone_hash, &op->user);
    /* a disabled account signs in like an unknown number: the same dummy
     * verification, the same generic failure (no enumeration) */
    op->found = rc == 0 && !op->user.disabled_ms;
    return rc == GH_ENOTFOUND ? 0 : rc;
}

static void verify_fn(void *arg)
{
    struct op *op = arg;
    /* unknown numbers cost one verification too (against a dummy hash) */
    op->verified = gh_password_verify(op->found ? op->user.pw_hash : NULL, op->password,
                                      op->pwlen) == 0 &&
                   op->found;
    sodium_memzero(op->password, sizeof op->password);
}

static int login_ok_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    uint64_t now = gh_wall_ms();
    gh_store_user_login_result(c, op->user.id, true, now);
    op->user.last_login_ms = now;
    op->user.failed_logins = 0;
    op->sess.user_id = op->user.id;
    int rc = gh_store_session_insert(c, &op->sess);
    if (rc)
        return rc;
    rc = sessions_cap(c, op->user.id, op->sessions_max, &op->gone);
    if (rc)
        return rc;
    char d[200];
    audit_detail(d, sizeof d, op->phone.e164, op->phone.region,
                 op->kind == OP_LOGIN_CODE ? "\"method\":\"sms_code\"" : "\"method\":\"password\"");
    return gh_audit_row(c, "login", op->user.id, d);
}

static int login_fail_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    if (op->found)
        gh_store_user_login_result(c, op->user.id, false, 0);
    char d[200];
    audit_detail(d, sizeof d, op->phone.e164, op->phone.region,
                 op->found ? "\"account\":true" : "\"account\":false");
    return gh_audit_row(c, "login_failure", op->found ? op->user.id : 0, d);
}

static void login_ok_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    /* sessions past the account's cap leave the cache (no marker: a
     * flood of sign-ins must not fill the cache with them either) */
    for (unsigned i = 0; !rc && op->gone && i < op->gone->n; i++)
        gh_tokens_del(op->gone->e[i].hash);
    if (w) {
        if (rc)
            respond_busy(op->req, "sign-in");
        else
            op_finish_session(op, 200);
    }
    op_free(op);
}

static void login_fail_answer(struct gh_http_req *req, bool sms_only)
{
    if (sms_only)
        gh_http_respond_error(req, 401, "unauthorized",
                              "too many failed attempts: sign in with an SMS code (purpose "
                              "login) or reset the password");
    else
        gh_http_respond_error(req, 401, "unauthorized", "wrong phone number or password");
}

static void op_free_done(struct gh_worker *w, void *arg, int rc)
{
    op_free(arg);
}

static void login_failed(struct op *op)
{
    gh_shield_signal(op->req, GH_SIGNAL_LOGIN_FAIL);
    login_failed_mem(op);
    login_fail_answer(op->req, false);
    op->req = NULL; /* answered: the write below only records the failure */
    if (gh_store_write(ids.store, login_fail_fn, op, NULL, op_free_done))
        op_free(op);
}

static void login_succeeded(struct gh_worker *w, struct op *op)
{
    if (!account_login_rate_ok(op)) {
        op_free(op);
        return;
    }
    gh_shield_signal(op->req, GH_SIGNAL_LOGIN_OK);
    login_succeeded_mem(op);
    op_new_session(op);
    if (gh_store_write(ids.store, login_ok_fn, op, w, login_ok_done)) {
        respond_busy(op->req, "sign-in");
        op_free(op);
    }
}

static void verify_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w) {
        op_free(op);
        return;
    }
    if (rc) {
        if (rc == GH_EBUSY)
            gh_shield_signal(op->req, GH_SIGNAL_LOGIN_REFUSED);
        respond_busy(op->req, "sign-in");
        op_free(op);
        return;
    }
    if (op->verified)
        login_succeeded(w, op);
    else
        login_failed(op);
}

static void login_read_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w) {
        op_free(op);
        return;
    }
    if (rc) {
        respond_busy(op->req, "sign-in");
        op_free(op);
        return;
    }
    if (op->kind == OP_LOGIN_CODE) {
        if (op->found)
            login_succeeded(w, op);
        else
            login_failed(op);
        return;
    }
    if (op->found && op->user.failed_logins >= op->sms_only_after) {
        login_fail_answer(op->req, true);
        op_free(op);
        return;
    }
    if (gh_pwpool_submit(ids.pool, op->prio, verify_fn, op, w, verify_done)) {
        gh_shield_signal(op->req, GH_SIGNAL_LOGIN_REFUSED);
        respond_busy(op->req, "sign-in");
        op_free(op);
    }
}

static void h_login(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gh_phone p;
    if (!field_phone(req, o, &p))
        goto out;
    bool by_code = json_object_get(o, "code") != NULL;
    bool by_pw = json_object_get(o, "password") != NULL;
    if (by_code == by_pw) {
        gh_http_respond_error(req, 400, "invalid_request",
                              "password or code: send exactly one of them");
        goto out;
    }
    const char *code = NULL, *pw = NULL;
    size_t clen = 0, pwlen = 0;
    if (by_code && !field_code(req, o, &code, &clen))
        goto out;
    if (by_pw && !field_str(req, o, "password", GH_PASSWORD_MAX * 4, &pw, &pwlen))
        goto out;
    struct op *op = op_new(req, by_code ? OP_LOGIN_CODE : OP_LOGIN_PW, &p);
    if (!op) {
        respond_busy(req, "sign-in");
        goto out;
    }
    bool sms_only = false;
    bool had_failures = false;
    if (!login_allowed(op, &sms_only, &had_failures)) {
        gh_shield_signal(req, GH_SIGNAL_LOGIN_REFUSED);
        op_free(op);
        goto out;
    }
    /* proof of work (scope login) when the attack level's preset asks for
     * it: after recent failures of the account or the address, from a
     * suspect source (login_tier), and under attack from any source
     * without a recent success; then phone-keyed shield rules, then
     * admission to the password pool. All before any hashing. */
    bool pow_needed = had_failures || op->prio == GH_PW_LOGIN_SUSPECT ||
                      (op->prio == GH_PW_LOGIN_NEW && gh_shield_level() == GH_LEVEL_UNDER_ATTACK);
    if ((pow_needed && !pow_ok(req, o, GH_POW_LOGIN, gh_shield_pow_bits(GH_POW_LOGIN))) ||
        !limit_phone(req, GH_CLASS_LOGIN, &p) ||
        (!by_code && !gh_shield_admit(req, GH_CLASS_LOGIN))) {
        gh_shield_signal(req, GH_SIGNAL_LOGIN_REFUSED);
        op_free(op);
        goto out;
    }
    if (by_code) {
        if (!check_code(req, p.e164, GH_SMS_LOGIN, code, clen)) {
            op_free(op);
            goto out;
        }
    } else {
        if (sms_only) {
            login_fail_answer(req, true);
            op_free(op);
            goto out;
        }
        memcpy(op->password, pw, pwlen);
        op->pwlen = pwlen;
        source_attempt(req);
    }
    if (gh_store_read(ids.store, login_read_fn, op, req->worker, login_read_done)) {
        respond_busy(req, "sign-in");
        op_free(op);
    }
out:
    json_decref(o);
}

/* ---- POST /api/auth/password-reset ---- */

static int reset_write_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    int rc = gh_store_user_by_phone(c, op->phone_hash, &op->user);
    if (rc)
        return rc;
    rc = gh_store_user_set_password(c, op->user.id, op->pw_hash);
    if (rc)
        return rc;
    /* a reset signs out every session: whoever knew the old password */
    rc = gone_collect(c, op->user.id, op->revoke_keys, &op->gone);
    rc = rc ? rc : gh_store_sessions_delete_user(c, op->user.id);
    if (rc < 0)
        return rc;
    /* and, when asked, every API key: whoever read them while signed in */
    op->keys_revoked = op->revoke_keys ? gh_store_keys_revoke_user(c, op->user.id, gh_wall_ms())
                                       : 0;
    if (op->keys_revoked < 0)
        return op->keys_revoked;
    char d[200], extra[40] = "";
    if (op->revoke_keys)
        snprintf(extra, sizeof extra, "\"keys_revoked\":%d", op->keys_revoked);
    audit_detail(d, sizeof d, op->phone.e164, op->phone.region, extra);
    return gh_audit_row(c, "password_reset", op->user.id, d);
}

static void reset_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (w) {
        if (rc == GH_ENOTFOUND) {
            respond_bad_code(op->req);
        } else if (rc) {
            respond_busy(op->req, "password reset");
        } else {
            gh_tokens_del_user(op->user.id, op->revoke_keys ? 0 : GH_CRED_SESSION);
            gone_bury(op->gone);
            login_succeeded_mem(op);
            clear_session_cookies(op->req);
            char body[64];
            int n = op->revoke_keys ? snprintf(body, sizeof body,
                                               "{\"reset\":true,\"keys_revoked\":%d}",
                                               op->keys_revoked)
                                    : snprintf(body, sizeof body, "{\"reset\":true}");
            gh_http_respond_json(op->req, 200, body, (size_t)n);
        }
    }
    op_free(op);
}

static void reset_hash_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w)
        goto fail;
    if (rc || op->rc) {
        respond_busy(op->req, "password reset");
        goto fail;
    }
    if (gh_store_write(ids.store, reset_write_fn, op, w, reset_write_done)) {
        respond_busy(op->req, "password reset");
        goto fail;
    }
    return;
fail:
    op_free(op);
}

static void h_reset(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gh_phone p;
    const char *code, *pw;
    size_t clen, pwlen;
    if (!field_phone(req, o, &p) || !field_code(req, o, &code, &clen) ||
        !field_password(req, o, &pw, &pwlen))
        goto out;
    json_t *rk = json_object_get(o, "revoke_keys");
    if (rk && !json_is_boolean(rk)) {
        gh_http_respond_error(req, 400, "invalid_request", "revoke_keys: must be true or false");
        goto out;
    }
    if (!limit_phone(req, GH_CLASS_LOGIN, &p) ||
        !gh_shield_admit(req, GH_CLASS_LOGIN))
        goto out;
    if (!check_code(req, p.e164, GH_SMS_RESET, code, clen))
        goto out;
    struct op *op = op_new(req, OP_RESET, &p);
    if (!op) {
        respond_busy(req, "password reset");
        goto out;
    }
    memcpy(op->password, pw, pwlen);
    op->pwlen = pwlen;
    op->revoke_keys = json_is_true(rk);
    if (gh_pwpool_submit(ids.pool, GH_PW_LOGIN, hash_fn, op, req->worker, reset_hash_done)) {
        op_free(op);
        respond_busy(req, "password reset");
    }
out:
    json_decref(o);
}

/* ---- POST /api/me/password ---- */

/* A signed-in user's password change: the current password, checked like a
 * sign-in (a wrong one counts as a failed sign-in of the account, and past
 * identity.sms_only_after only a reset by SMS code is left), then the new
 * one. Every other session of the account ends; with revoke_keys, every
 * API key too. The session that asked stays signed in. */
struct pwchange {
    struct gh_http_req *req;
    uint64_t user_id;
    uint8_t keep[GH_TOKEN_HASH_BYTES]; /* this session */
    char current[GH_PASSWORD_MAX * 4 + 1], password[GH_PASSWORD_MAX * 4 + 1];
    size_t curlen, pwlen;
    char pw_hash[GH_PWHASH_STR_MAX];
    struct gh_user user;
    unsigned sms_only_after;
    bool verified, revoke_keys;
    int rc, keys_revoked;
    unsigned sessions_ended;
    bool overflow; /* more sessions than GONE_MAX markers */
    struct gone *gone;
};

static void pwchange_free(struct pwchange *j)
{
    free(j->gone);
    sodium_memzero(j, sizeof *j);
    free(j);
}

static void pwchange_free_done(struct gh_worker *w, void *arg, int rc)
{
    pwchange_free(arg);
}

static int pwchange_read_fn(struct gh_store_conn *c, void *arg)
{
    struct pwchange *j = arg;
    return gh_store_user_by_id(c, j->user_id, &j->user);
}

static void pwchange_hash_fn(void *arg)
{
    struct pwchange *j = arg;
    j->verified = gh_password_verify(j->user.pw_hash, j->current, j->curlen) == 0;
    j->rc = j->verified ? gh_password_hash(j->password, j->pwlen, j->pw_hash) : 0;
    sodium_memzero(j->current, sizeof j->current);
    sodium_memzero(j->password, sizeof j->password);
}

static int pwchange_fail_fn(struct gh_store_conn *c, void *arg)
{
    struct pwchange *j = arg;
    gh_store_user_login_result(c, j->user_id, false, 0);
    return gh_audit_row(c, "password_change_failure", j->user_id, NULL);
}

/* Deletes every session of the account but j->keep; the first GONE_MAX
 * of them (and the keys, when revoked) stay in j->gone for the cache. */
static int pwchange_sessions(struct gh_store_conn *c, struct pwchange *j)
{
    for (bool first = true;; first = false) {
        struct gone *g = NULL;
        int rc = gone_collect(c, j->user_id, first && j->revoke_keys, &g);
        unsigned deleted = 0, kept = 0;
        for (unsigned i = 0; !rc && i < g->n; i++) {
            if (!memcmp(g->e[i].hash, j->keep, sizeof j->keep))
                continue;
            if (g->e[i].expires_ms) { /* a session (keys have none) */
                rc = gh_store_session_delete(c, g->e[i].hash);
                rc = rc == GH_ENOTFOUND ? 0 : rc;
                deleted++;
            }
            g->e[kept++] = g->e[i];
        }
        g->n = kept;
        j->sessions_ended += deleted;
        if (first) {
            j->gone = g;
            j->overflow = g->total > GONE_MAX;
        } else {
            free(g);
        }
        if (rc || !deleted || !j->overflow)
            return rc;
    }
}

static int pwchange_write_fn(struct gh_store_conn *c, void *arg)
{
    struct pwchange *j = arg;
    int rc = gh_store_user_set_password(c, j->user_id, j->pw_hash);
    rc = rc ? rc : pwchange_sessions(c, j);
    if (rc)
        return rc;
    j->keys_revoked = j->revoke_keys ? gh_store_keys_revoke_user(c, j->user_id, gh_wall_ms()) : 0;
    if (j->keys_revoked < 0)
        return j->keys_revoked;
    char d[96];
    int n = snprintf(d, sizeof d, "{\"sessions_ended\":%u", j->sessions_ended);
    if (j->revoke_keys)
        n += snprintf(d + n, sizeof d - (size_t)n, ",\"keys_revoked\":%d", j->keys_revoked);
    snprintf(d + n, sizeof d - (size_t)n, "}");
    return gh_audit_row(c, "password_changed", j->user_id, d);
}

static void pwchange_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct pwchange *j = arg;
    if (!rc) {
        /* the other sessions (and the keys) stop working on every worker */
        gone_bury(j->gone);
        if (j->revoke_keys)
            gh_tokens_del_user(j->user_id, GH_CRED_KEY);
        if (j->overflow) { /* more sessions than markers: drop all, keep ours */
            struct gh_cred mine;
            bool cached = gh_tokens_peek(j->keep, &mine) == 0 && mine.kind == GH_CRED_SESSION;
            gh_tokens_del_user(j->user_id, GH_CRED_SESSION);
            if (cached)
                gh_tokens_put(&mine);
        }
    }
    if (w) {
        if (rc == GH_ENOTFOUND) {
            gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        } else if (rc) {
            respond_busy(j->req, "password change");
        } else {
            char body[96];
            int n = snprintf(body, sizeof body, "{\"changed\":true,\"sessions_ended\":%u",
                             j->sessions_ended);
            if (j->revoke_keys)
                n += snprintf(body + n, sizeof body - (size_t)n, ",\"keys_revoked\":%d",
                              j->keys_revoked);
            n += snprintf(body + n, sizeof body - (size_t)n, "}");
            gh_http_respond_json(j->req, 200, body, (size_t)n);
        }
    }
    pwchange_free(j);
}

static void pwchange_hash_done(struct gh_worker *w, void *arg, int rc)
{
    struct pwchange *j = arg;
    if (!w) {
        pwchange_free(j);
        return;
    }
    if (rc || j->rc) {
        respond_busy(j->req, "password change");
        pwchange_free(j);
        return;
    }
    if (!j->verified) {
        gh_shield_signal(j->req, GH_SIGNAL_LOGIN_FAIL);
        gh_http_respond_error_param(j->req, 403, "wrong_password", "current_password",
                                    "current_password: wrong password");
        j->req = NULL; /* answered: the write only records the failure */
        if (gh_store_write(ids.store, pwchange_fail_fn, j, NULL, pwchange_free_done))
            pwchange_free(j);
        return;
    }
    if (gh_store_write(ids.store, pwchange_write_fn, j, w, pwchange_write_done)) {
        respond_busy(j->req, "password change");
        pwchange_free(j);
    }
}

static void pwchange_read_done(struct gh_worker *w, void *arg, int rc)
{
    struct pwchange *j = arg;
    if (!w)
        goto fail;
    if (rc == GH_ENOTFOUND || (!rc && j->user.disabled_ms)) {
        gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        goto fail;
    }
    if (rc) {
        respond_busy(j->req, "password change");
        goto fail;
    }
    if (j->user.failed_logins >= j->sms_only_after) {
        gh_http_respond_error(j->req, 403, "wrong_password",
                              "current_password: too many failed attempts; reset the password "
                              "with an SMS code (/reset-password)");
        goto fail;
    }
    if (gh_pwpool_submit(ids.pool, GH_PW_LOGIN, pwchange_hash_fn, j, w, pwchange_hash_done)) {
        respond_busy(j->req, "password change");
        goto fail;
    }
    return;
fail:
    pwchange_free(j);
}

static void h_password_change(struct gh_http_req *req)
{
    struct gh_principal pr;
    char tok[GH_TOKEN_B64_LEN + 8];
    if (!authed(req, true, &pr))
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    const char *cur, *pw;
    size_t curlen, pwlen;
    if (!field_str(req, o, "current_password", GH_PASSWORD_MAX * 4, &cur, &curlen) ||
        !field_password(req, o, &pw, &pwlen))
        goto out;
    json_t *rk = json_object_get(o, "revoke_keys");
    if (rk && !json_is_boolean(rk)) {
        gh_http_respond_error(req, 400, "invalid_request", "revoke_keys: must be true or false");
        goto out;
    }
    if (!gh_shield_admit(req, GH_CLASS_LOGIN))
        goto out;
    struct pwchange *j = calloc(1, sizeof *j);
    if (!j || gh_auth_session_token(req, tok, sizeof tok)) {
        free(j);
        respond_busy(req, "password change");
        goto out;
    }
    j->req = req;
    j->user_id = pr.user_id;
    gh_token_hash(tok, strlen(tok), j->keep);
    sodium_memzero(tok, sizeof tok);
    memcpy(j->current, cur, curlen);
    j->curlen = curlen;
    memcpy(j->password, pw, pwlen);
    j->pwlen = pwlen;
    j->revoke_keys = json_is_true(rk);
    j->sms_only_after = req->cfg->identity.sms_only_after;
    if (gh_store_read(ids.store, pwchange_read_fn, j, req->worker, pwchange_read_done)) {
        pwchange_free(j);
        respond_busy(req, "password change");
    }
out:
    json_decref(o);
}

/* ---- POST /api/auth/logout ---- */

static int drop_session_fn(struct gh_store_conn *c, void *arg)
{
    int rc = gh_store_session_delete(c, arg);
    return rc == GH_ENOTFOUND ? 0 : rc;
}

static void free_done(struct gh_worker *w, void *arg, int rc)
{
    free(arg);
}

static void h_logout(struct gh_http_req *req)
{
    char tok[GH_TOKEN_B64_LEN + 8];
    struct gh_principal pr;
    int rc = gh_auth_session(req, true, &pr);
    if (rc == GH_EINVAL) {
        gh_http_respond_error(req, 403, "forbidden", "X-CSRF-Token header missing or wrong");
        return;
    }
    if (rc == 0 && gh_auth_session_token(req, tok, sizeof tok) == 0) {
        uint8_t *h = malloc(GH_TOKEN_HASH_BYTES);
        if (h) {
            gh_token_hash(tok, strlen(tok), h);
            /* every worker stops accepting it now, and no look-up in the
             * store (after an eviction) can bring it back */
            gh_tokens_bury(h, pr.user_id, gh_wall_ms() + req->cfg->identity.session_max_ms);
            if (gh_store_write(ids.store, drop_session_fn, h, NULL, free_done))
                free(h);
        }
        gh_audit_queue(ids.store, "logout", pr.user_id, NULL);
    }
    clear_session_cookies(req);
    gh_http_respond(req, 204, NULL, NULL, 0);
}

/* ---- GET /api/me, GET /api/me/export, DELETE /api/me ---- */

struct me_job {
    struct gh_http_req *req;
    uint64_t user_id;
    struct gone *gone; /* delete: the account's credentials */
    bool export;
    struct gh_buf out;
    int rc;
};

static void export_session(const struct gh_store_session *s, void *arg)
{
    struct gh_buf *b = arg;
    char c[40], e[40];
    gh_buf_printf(b, "%s{\"id\":%llu,\"created_at\":\"%s\",\"expires_at\":\"%s\"}",
                  b->data[b->len - 1] == '[' ? "" : ",", (unsigned long long)s->id,
                  gh_time_rfc3339(s->created_ms, c, sizeof c),
                  gh_time_rfc3339(s->expires_ms, e, sizeof e));
}

static void key_json(const struct gh_store_key *k, struct gh_buf *b, uint64_t last_used)
{
    char c[40], l[40], r[40];
    uint64_t lu = GH_MAX(k->last_used_ms, last_used);
    gh_buf_printf(b, "%s{\"id\":%llu,\"name\":\"", b->data[b->len - 1] == '[' ? "" : ",",
                  (unsigned long long)k->id);
    gh_buf_append_json_str(b, k->name, strlen(k->name));
    gh_buf_printf(b, "\",\"prefix\":\"%s\",\"created_at\":\"%s\",\"last_used_at\":%s%s%s", k->prefix,
                  gh_time_rfc3339(k->created_ms, c, sizeof c), lu ? "\"" : "",
                  lu ? gh_time_rfc3339(lu, l, sizeof l) : "null", lu ? "\"" : "");
    if (k->revoked_ms)
        gh_buf_printf(b, ",\"revoked_at\":\"%s\"", gh_time_rfc3339(k->revoked_ms, r, sizeof r));
    gh_buf_append_str(b, "}");
}

static void export_key(const struct gh_store_key *k, void *arg)
{
    struct gh_cred c;
    uint64_t lu = !k->revoked_ms && gh_tokens_peek(k->hash, &c) == 0 ? c.last_seen_ms : 0;
    key_json(k, arg, lu);
}

static void export_audit(const struct gh_store_audit *a, void *arg)
{
    struct gh_buf *b = arg;
    char t[40];
    gh_buf_printf(b, "%s{\"at\":\"%s\",\"event\":\"", b->data[b->len - 1] == '[' ? "" : ",",
                  gh_time_rfc3339(a->ts_ms, t, sizeof t));
    gh_buf_append_json_str(b, a->event, strlen(a->event));
    gh_buf_printf(b, "\",\"detail\":%s}", a->detail[0] ? a->detail : "{}");
}

static int me_read_fn(struct gh_store_conn *c, void *arg)
{
    struct me_job *j = arg;
    struct gh_user u;
    int rc = gh_store_user_by_id(c, j->user_id, &u);
    if (rc)
        return rc;
    struct gh_buf *b = &j->out;
    gh_buf_append_str(b, "{\"user\":");
    user_json(&u, b);
    if (j->export) {
        char now[40];
        gh_buf_printf(b, ",\"exported_at\":\"%s\",\"sessions\":[",
                      gh_time_rfc3339(gh_wall_ms(), now, sizeof now));
        gh_store_sessions_each(c, j->user_id, 0, export_session, b);
        gh_buf_append_str(b, "],\"api_keys\":[");
        gh_store_keys_each(c, j->user_id, true, export_key, b);
        gh_buf_append_str(b, "],\"audit\":[");
        gh_store_audit_each(c, j->user_id, 1000, export_audit, b);
        gh_buf_append_str(b, "]");
    }
    sodium_memzero(&u, sizeof u);
    return gh_buf_append_str(b, "}");
}

static void me_done(struct gh_worker *w, void *arg, int rc)
{
    struct me_job *j = arg;
    if (w) {
        if (rc == GH_ENOTFOUND)
            gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        else if (rc)
            respond_busy(j->req, "the account service");
        else {
            if (j->export) {
                gh_http_add_header(j->req, "Content-Disposition",
                                   "attachment; filename=\"gatehouse-export.json\"");
                gh_audit_queue(ids.store, "export", j->user_id, NULL);
            }
            gh_http_add_header(j->req, "Cache-Control", "no-store");
            respond_json_buf(j->req, 200, &j->out);
        }
    }
    gh_buf_dispose(&j->out);
    free(j);
}

static void me_common(struct gh_http_req *req, bool export)
{
    struct gh_principal pr;
    if (!authed(req, false, &pr))
        return;
    struct me_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the account service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    j->export = export;
    gh_buf_init(&j->out, 16u << 20);
    if (gh_store_read(ids.store, me_read_fn, j, req->worker, me_done)) {
        gh_buf_dispose(&j->out);
        free(j);
        respond_busy(req, "the account service");
    }
}

static void h_me(struct gh_http_req *req)
{
    me_common(req, false);
}

static void h_export(struct gh_http_req *req)
{
    me_common(req, true);
}

static int delete_fn(struct gh_store_conn *c, void *arg)
{
    struct me_job *j = arg;
    int rc = gone_collect(c, j->user_id, true, &j->gone);
    rc = rc ? rc : gh_store_user_delete(c, j->user_id);
    if (rc)
        return rc;
    return gh_audit_row(c, "account_deleted", j->user_id, NULL);
}

static void delete_done(struct gh_worker *w, void *arg, int rc)
{
    struct me_job *j = arg;
    /* again after the write: a login that raced the deletion; then every
     * credential of the account answers 401 from memory, never from the
     * store (however busy it is) */
    gh_tokens_del_user(j->user_id, 0);
    if (!rc)
        gone_bury(j->gone);
    free(j->gone);
    j->gone = NULL;
    if (w) {
        if (rc && rc != GH_ENOTFOUND) {
            respond_busy(j->req, "the account service");
        } else {
            clear_session_cookies(j->req);
            gh_http_respond(j->req, 204, NULL, NULL, 0);
        }
    }
    free(j);
}

static void h_delete_me(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!authed(req, true, &pr))
        return;
    struct me_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the account service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    /* sessions and keys stop working on every worker now */
    gh_tokens_del_user(pr.user_id, 0);
    if (gh_store_write(ids.store, delete_fn, j, req->worker, delete_done)) {
        free(j);
        respond_busy(req, "the account service");
    }
}

/* ---- API keys ---- */

struct key_job {
    struct gh_http_req *req;
    uint64_t user_id;
    unsigned max;
    char token[GH_API_KEY_LEN + 1];
    struct gh_store_key key;
    struct gh_buf out;
};

static void key_job_free(struct key_job *j)
{
    sodium_memzero(j->token, sizeof j->token);
    gh_buf_dispose(&j->out);
    free(j);
}

static int key_create_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    if (gh_store_keys_live_count(c, j->user_id) >= j->max)
        return GH_ETOOBIG;
    struct gh_user u;
    if (gh_store_user_by_id(c, j->user_id, &u))
        return GH_ENOTFOUND;
    int rc = gh_store_key_insert(c, &j->key);
    if (rc)
        return rc;
    char d[128];
    snprintf(d, sizeof d, "{\"key_id\":%llu,\"prefix\":\"%s\"}", (unsigned long long)j->key.id,
             j->key.prefix);
    return gh_audit_row(c, "key_created", j->user_id, d);
}

static void key_create_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (!w)
        goto out;
    if (rc == GH_ETOOBIG) {
        gh_http_respond_error(j->req, 422, "invalid_parameter",
                              "name: you already have the maximum number of keys (%u); revoke one",
                              j->max);
        goto out;
    }
    if (rc == GH_ENOTFOUND) {
        gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        goto out;
    }
    struct gh_cred c = {.kind = GH_CRED_KEY, .user_id = j->user_id, .id = j->key.id};
    memcpy(c.hash, j->key.hash, 32);
    if (rc || gh_tokens_put(&c)) {
        respond_busy(j->req, "the key service");
        goto out;
    }
    char ts[40];
    gh_buf_printf(&j->out, "{\"id\":%llu,\"key\":\"%s\",\"prefix\":\"%s\",\"name\":\"",
                  (unsigned long long)j->key.id, j->token, j->key.prefix);
    gh_buf_append_json_str(&j->out, j->key.name, strlen(j->key.name));
    gh_buf_printf(&j->out, "\",\"created_at\":\"%s\"}",
                  gh_time_rfc3339(j->key.created_ms, ts, sizeof ts));
    gh_http_add_header(j->req, "Cache-Control", "no-store");
    respond_json_buf(j->req, 201, &j->out);
out:
    key_job_free(j);
}

static void h_key_create(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!authed(req, true, &pr))
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    const char *name;
    size_t nlen;
    if (!field_str(req, o, "name", GH_KEY_NAME_MAX, &name, &nlen))
        goto out;
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            gh_http_respond_error(req, 400, "invalid_request", "name: no control characters");
            goto out;
        }
    if (!nlen) {
        gh_http_respond_error(req, 400, "invalid_request", "name: must not be empty");
        goto out;
    }
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the key service");
        goto out;
    }
    j->req = req;
    j->user_id = pr.user_id;
    j->max = req->cfg->identity.keys_per_user;
    gh_buf_init(&j->out, 4096);
    gh_token_new_api_key(j->token);
    gh_token_hash(j->token, GH_API_KEY_LEN, j->key.hash);
    memcpy(j->key.prefix, j->token, GH_API_KEY_PREFIX_LEN);
    memcpy(j->key.name, name, nlen);
    j->key.user_id = pr.user_id;
    j->key.created_ms = gh_wall_ms();
    if (gh_store_write(ids.store, key_create_fn, j, req->worker, key_create_done)) {
        key_job_free(j);
        respond_busy(req, "the key service");
    }
out:
    json_decref(o);
}

static void list_key(const struct gh_store_key *k, void *arg)
{
    struct gh_cred c;
    uint64_t lu = gh_tokens_peek(k->hash, &c) == 0 ? c.last_seen_ms : 0;
    key_json(k, arg, lu);
}

static int key_list_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    gh_buf_append_str(&j->out, "{\"object\":\"list\",\"data\":[");
    int rc = gh_store_keys_each(c, j->user_id, false, list_key, &j->out);
    return rc ? rc : gh_buf_append_str(&j->out, "]}");
}

static void key_list_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (w) {
        if (rc)
            respond_busy(j->req, "the key service");
        else
            respond_json_buf(j->req, 200, &j->out);
    }
    key_job_free(j);
}

static void h_key_list(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!authed(req, false, &pr))
        return;
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the key service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    gh_buf_init(&j->out, 1u << 20);
    if (gh_store_read(ids.store, key_list_fn, j, req->worker, key_list_done)) {
        key_job_free(j);
        respond_busy(req, "the key service");
    }
}

static int key_revoke_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    int rc = gh_store_key_revoke(c, j->user_id, j->key.id, gh_wall_ms(), &j->key);
    if (rc)
        return rc;
    char d[128];
    snprintf(d, sizeof d, "{\"key_id\":%llu,\"prefix\":\"%s\"}", (unsigned long long)j->key.id,
             j->key.prefix);
    return gh_audit_row(c, "key_revoked", j->user_id, d);
}

static void key_revoke_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (!rc)
        gh_tokens_del(j->key.hash);
    if (w) {
        if (rc == GH_ENOTFOUND)
            gh_http_respond_error(j->req, 404, "not_found", "no such key");
        else if (rc)
            respond_busy(j->req, "the key service");
        else
            gh_http_respond(j->req, 204, NULL, NULL, 0);
    }
    key_job_free(j);
}

static void h_key_delete(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!authed(req, true, &pr))
        return;
    uint64_t id = 0;
    if (req->nparams < 1 || gh_parse_uint(req->params[0], UINT32_MAX * 1024ull, &id) || !id) {
        gh_http_respond_error(req, 404, "not_found", "no such key");
        return;
    }
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_busy(req, "the key service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    j->key.id = id;
    gh_buf_init(&j->out, 64);
    if (gh_store_write(ids.store, key_revoke_fn, j, req->worker, key_revoke_done)) {
        key_job_free(j);
        respond_busy(req, "the key service");
    }
}

/* ---- policy ---- */

static void h_policy(struct gh_http_req *req)
{
    const struct gh_policy *p = gh_policy_current();
    struct gh_buf b;
    gh_buf_init(&b, 8192);
    gh_policy_render(p, false, &b);
    gh_http_add_header(req, "Cache-Control", "no-cache");
    respond_json_buf(req, 200, &b);
    gh_buf_dispose(&b);
}

static void h_admin_policy_get(struct gh_http_req *req)
{
    struct gh_buf b;
    gh_buf_init(&b, 16384);
    gh_policy_render(gh_policy_current(), true, &b);
    respond_json_buf(req, 200, &b);
    gh_buf_dispose(&b);
}

struct policy_job {
    struct gh_http_req *req;
    char *json;     /* the stored form */
    char *answer;   /* the admin answer */
    char detail[256];
};

static int policy_write_fn(struct gh_store_conn *c, void *arg)
{
    struct policy_job *j = arg;
    int rc = gh_store_setting_put(c, "policy", j->json);
    return rc ? rc : gh_audit_row(c, "policy_changed", 0, j->detail);
}

static void policy_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct policy_job *j = arg;
    if (w) {
        if (rc)
            gh_http_respond_error(j->req, 500, "store_error",
                                  "the policy is in force but could not be saved");
        else
            gh_http_respond_json(j->req, 200, j->answer, strlen(j->answer));
    }
    free(j->json);
    free(j->answer);
    free(j);
}

static void h_admin_policy_put(struct gh_http_req *req)
{
    struct gh_policy *p = NULL;
    const char *why = NULL;
    int rc = gh_policy_parse(req->body.data ? req->body.data : "", req->body.len, req->cfg, &p,
                             &why);
    if (rc) {
        gh_http_respond_error(req, 400, rc == GH_EINVAL ? "invalid_request" : "server_error", "%s",
                              why ? why : "cannot build the policy");
        return;
    }
    struct policy_job *j = calloc(1, sizeof *j);
    if (!j) {
        gh_policy_free(p);
        respond_busy(req, "the policy service");
        return;
    }
    j->req = req;
    enum gh_policy_mode mode = p->mode;
    unsigned bits = p->pow_bits;
    uint64_t until = p->until_ms;
    gh_policy_install(p); /* in force on every worker from the next request */
    struct gh_buf b;
    gh_buf_init(&b, 16384);
    gh_policy_render(p, true, &b);
    j->json = gh_buf_steal(&b, NULL);
    j->answer = j->json ? strdup(j->json) : NULL;
    snprintf(j->detail, sizeof j->detail, "{\"mode\":\"%s\",\"pow_bits\":%u,\"until_ms\":%llu}",
             gh_policy_mode_name(mode), bits, (unsigned long long)until);
    if (!j->json || !j->answer ||
        gh_store_write(ids.store, policy_write_fn, j, req->worker, policy_write_done)) {
        free(j->json);
        free(j->answer);
        free(j);
        gh_http_respond_error(req, 500, "store_error",
                              "the policy is in force but could not be saved");
    }
}

/* ---- the attack level, the effective policy and who hears of it ---- */

static enum gh_component_status reg_component(enum gh_policy_mode m)
{
    switch (m) {
    case GH_POLICY_OPEN:
        return GH_STATUS_OPERATIONAL;
    case GH_POLICY_RESTRICTED:
        return GH_STATUS_DEGRADED_PERFORMANCE;
    case GH_POLICY_BUSY:
        return GH_STATUS_PARTIAL_OUTAGE;
    case GH_POLICY_CLOSED:
        return GH_STATUS_MAJOR_OUTAGE;
    }
    return GH_STATUS_OPERATIONAL;
}

static void report_component(const struct gh_policy *p)
{
    char reason[96];
    snprintf(reason, sizeof reason, "registration policy %s (%s)", gh_policy_mode_name(p->mode),
             p->source);
    gh_status_component_auto("registration", reg_component(p->mode), reason);
}

static const char *const change_whys[] = {"operator", "operator (temporary)", "level", "expired"};

/* Every change of the effective policy: status page, metrics, log, and
 * the audit trail (operator changes are audited by their handler, in the
 * same transaction as the stored policy). */
static void on_policy(const struct gh_policy *eff, const char *why, void *data)
{
    (void)data;
    if (!eff)
        return;
    report_component(eff);
    gh_shield_set_pow((int)eff->pow_bits);
    for (size_t i = 0; i < GH_ARRAY_LEN(change_whys); i++)
        if (!strcmp(why, change_whys[i]) && ids.m_policy_changes[i])
            atomic_fetch_add_explicit(ids.m_policy_changes[i], 1, memory_order_relaxed);
    gh_log(GH_LOG_WARN, "policy_changed",
           "registration policy now %s, pow %u bits, cap %u/min, source %s (%s)",
           gh_policy_mode_name(eff->mode), eff->pow_bits, eff->register_per_minute, eff->source,
           why);
    if (strncmp(why, "operator", 8) != 0 && ids.store) {
        char d[256];
        snprintf(d, sizeof d,
                 "{\"mode\":\"%s\",\"pow_bits\":%u,\"register_per_minute\":%u,\"source\":\"%s\","
                 "\"why\":\"%s\"}",
                 gh_policy_mode_name(eff->mode), eff->pow_bits, eff->register_per_minute,
                 eff->source, why);
        gh_audit_queue(ids.store, "policy_changed", 0, d);
    }
}

/* The preset of level as the policy's overlay. */
static void level_overlay(enum gh_level lv)
{
    struct gh_level_policy lp;
    gh_shield_level_policy(lv, &lp);
    struct gh_policy_overlay o;
    memset(&o, 0, sizeof o);
    o.mode = lp.mode == GH_REG_RESTRICTED ? GH_POLICY_RESTRICTED
             : lp.mode == GH_REG_BUSY     ? GH_POLICY_BUSY
             : lp.mode == GH_REG_CLOSED   ? GH_POLICY_CLOSED
                                          : GH_POLICY_OPEN;
    snprintf(o.regions, sizeof o.regions, "%s", lp.regions ? lp.regions : "");
    o.pow_bits = lp.pow_bits;
    o.register_per_minute = lp.register_per_minute;
    snprintf(o.level, sizeof o.level, "%s", gh_level_name(lv));
    gh_policy_set_overlay(&o);
}

static void on_level(enum gh_level from, enum gh_level to, const char *reason, void *data)
{
    (void)data;
    level_overlay(to);
    if (!ids.store)
        return;
    struct gh_buf d;
    gh_buf_init(&d, 512);
    gh_buf_printf(&d, "{\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"", gh_level_name(from),
                  gh_level_name(to));
    gh_buf_append_json_str(&d, reason ? reason : "", reason ? strlen(reason) : 0);
    gh_buf_append_str(&d, "\"}");
    gh_audit_queue(ids.store, "attack_level", 0, d.data);
    gh_buf_dispose(&d);
}

static uint64_t pool_delay(enum gh_class cls, void *data)
{
    (void)data;
    if (!ids.pool)
        return 0;
    /* logins from known sources only: a spray that backs up the new and
     * suspect tiers sheds nobody else */
    if (cls == GH_CLASS_LOGIN)
        return gh_pwpool_delay_ms(ids.pool, GH_PW_LOGIN, gh_now_ms());
    if (cls == GH_CLASS_REGISTER)
        return gh_pwpool_delay_ms(ids.pool, GH_PW_REGISTER, gh_now_ms());
    return 0;
}

/* The shield's principal look-up: a Bearer API key, else the session
 * cookie (either name, auth.h; no CSRF: classifying changes nothing). */
static bool principal_lookup(const struct gh_http_req *req, uint64_t *user_id, uint64_t *key_id,
                             void *data)
{
    (void)data;
    struct gh_principal p;
    bool valid = false;
    size_t len = 0;
    const char *auth = gh_http_header_get(req, "authorization", &len);
    if (auth && len > 7 && !strncasecmp(auth, "Bearer ", 7))
        valid = gh_auth_api_key(auth + 7, len - 7, &p) == 0;
    else
        valid = gh_auth_session(req, false, &p) == 0;
    if (valid) {
        *user_id = p.user_id;
        *key_id = p.key_id;
    }
    return valid;
}

static bool principal_may_reload(const struct gh_http_req *req, void *data)
{
    (void)data;
    return gh_auth_may_reload(req);
}

static int principal_prefetch(const struct gh_http_req *req, void (*wake)(void *arg), void *arg,
                              void **job, void *data)
{
    (void)data;
    return gh_auth_prefetch(req, wake, arg, job);
}

static void on_policy_timer(uv_timer_t *t)
{
    (void)t;
    gh_policy_tick();
}

static int id_worker_init(struct gh_worker *w, void *data)
{
    (void)data;
    if (!w->admin)
        return 0;
    /* every subsystem is up: the status page hears the policy once */
    const struct gh_policy *p = gh_policy_current();
    if (p)
        report_component(p);
    int rc = uv_timer_init(&w->loop, &ids.policy_timer);
    if (!rc)
        rc = uv_timer_start(&ids.policy_timer, on_policy_timer, 1000, 1000);
    ids.timer_on = rc == 0;
    return rc ? GH_EIO : 0; /* hooks answer GH_E* codes, not libuv's */
}

static void id_worker_dispose(struct gh_worker *w, void *data)
{
    (void)data;
    if (w->admin && ids.timer_on) {
        uv_close((uv_handle_t *)&ids.policy_timer, NULL);
        ids.timer_on = false;
    }
}

/* ---- start and stop ---- */

static void load_session(const struct gh_store_session *s, void *arg)
{
    struct gh_cred c = {.kind = GH_CRED_SESSION,
                        .user_id = s->user_id,
                        .id = s->id,
                        .expires_ms = s->expires_ms,
                        .idle_ms = *(const uint64_t *)arg};
    memcpy(c.hash, s->hash, 32);
    gh_tokens_put(&c);
}

static void load_key(const struct gh_store_key *k, void *arg)
{
    struct gh_cred c = {.kind = GH_CRED_KEY, .user_id = k->user_id, .id = k->id};
    memcpy(c.hash, k->hash, 32);
    gh_tokens_put(&c);
}

struct load_arg {
    uint64_t idle_ms;
    struct gh_buf policy;
};

static int load_fn(struct gh_store_conn *c, void *arg)
{
    struct load_arg *la = arg;
    int rc = gh_store_sessions_each(c, 0, gh_wall_ms(), load_session, &la->idle_ms);
    rc = rc ? rc : gh_store_keys_each(c, 0, false, load_key, NULL);
    if (!rc && gh_store_setting_get(c, "policy", &la->policy) == GH_EIO)
        rc = GH_EIO;
    return rc;
}

static struct route_def {
    const char *method, *path;
    gh_http_handler fn;
    enum gh_class cls;
    size_t body_max;
} routes[] = {
    {"GET", "/api/policy", h_policy, GH_CLASS_ANON, 0},
    {"POST", "/api/auth/sms-code", h_sms_code, GH_CLASS_REGISTER, 4096},
    {"POST", "/api/auth/register", h_register, GH_CLASS_REGISTER, 16384},
    {"POST", "/api/auth/login", h_login, GH_CLASS_LOGIN, 16384},
    {"POST", "/api/auth/logout", h_logout, GH_CLASS_USER, 4096},
    {"POST", "/api/auth/password-reset", h_reset, GH_CLASS_LOGIN, 16384},
    {"GET", "/api/me", h_me, GH_CLASS_USER, 0},
    {"GET", "/api/me/export", h_export, GH_CLASS_USER, 0},
    {"DELETE", "/api/me", h_delete_me, GH_CLASS_USER, 4096},
    {"POST", "/api/me/password", h_password_change, GH_CLASS_LOGIN, 16384},
    {"POST", "/api/keys", h_key_create, GH_CLASS_USER, 4096},
    {"GET", "/api/keys", h_key_list, GH_CLASS_USER, 0},
    {"DELETE", "/api/keys/{id}", h_key_delete, GH_CLASS_USER, 4096},
};

static double cache_size(void *data)
{
    (void)data;
    return (double)gh_tokens_count();
}

static uint64_t cache_evictions(void *data)
{
    (void)data;
    return gh_tokens_evictions();
}

int gh_identity_init(struct gh_server *srv, struct gh_buf *err)
{
    const struct gh_config *cfg = srv->cfg;
    ids.srv = srv;
    gh_phone_init();
    int rc = gh_tokens_init(srv->secrets.hmac_key, cfg->identity.cache_max);
    if (rc) {
        gh_buf_printf(err, "identity: out of memory for the credential cache");
        return rc;
    }
    rc = gh_password_init(cfg->identity.argon2_ops, cfg->identity.argon2_mem);
    if (rc) {
        gh_buf_printf(err, "identity: cannot set up password hashing");
        return rc;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/gatehouse.db", cfg->server.data_dir);
    struct gh_store_options so = {.backend = cfg->store.backend,
                                  .path = path,
                                  .url = cfg->store.url,
                                  .connect_timeout_ms = cfg->store.connect_timeout_ms,
                                  .statement_timeout_ms = cfg->store.statement_timeout_ms,
                                  .enc_key = srv->secrets.enc_key,
                                  .queue_max = cfg->identity.store_queue_max,
                                  .readers = cfg->store.readers};
    rc = gh_store_open(&so, &ids.store, err);
    if (rc)
        return rc;
    struct load_arg la = {.idle_ms = cfg->identity.session_idle_ms};
    gh_buf_init(&la.policy, 1u << 20);
    rc = gh_store_read_now(ids.store, load_fn, &la);
    if (rc) {
        gh_buf_dispose(&la.policy);
        gh_buf_printf(err, "identity: cannot load sessions and keys from the %s store",
                      cfg->store.backend);
        return rc;
    }
    rc = gh_policy_init(cfg, la.policy.data);
    gh_buf_dispose(&la.policy);
    if (rc)
        return rc;
    /* the attack level's preset over the standing policy, then every
     * change from here on is heard */
    level_overlay(gh_shield_level());
    gh_policy_set_listener(on_policy, NULL);
    gh_shield_set_pow((int)gh_policy_current()->pow_bits); /* the listener pushes changes */
    for (size_t i = 0; i < GH_ARRAY_LEN(change_whys); i++) {
        static const char *const label[] = {"operator", "operator_temporary", "level",
                                            "expired"};
        char labels[64];
        snprintf(labels, sizeof labels, "why=\"%s\"", label[i]);
        ids.m_policy_changes[i] =
            gh_metrics_counter("gatehouse_identity_policy_changes_total", labels,
                               "changes of the effective registration policy, by cause");
    }
    ids.m_reg_capped =
        gh_metrics_counter("gatehouse_identity_register_capped_total", "",
                           "registrations refused 503 by the attack level's registration cap");
    ids.m_reloads =
        gh_metrics_counter("gatehouse_identity_credential_lookups_total", "",
                           "credential cache misses looked up in the store (after evictions)");
    gh_metrics_gauge_func("gatehouse_identity_credentials_cached", "",
                          "sessions and API keys in the credential cache (gone markers too)",
                          cache_size, NULL);
    gh_metrics_counter_func("gatehouse_identity_credential_evictions_total", "",
                            "live credentials evicted from a full credential cache",
                            cache_evictions, NULL);
    gh_log(GH_LOG_INFO, "identity_loaded", "%u sessions and keys cached; policy %s",
           gh_tokens_count(), gh_policy_mode_name(gh_policy_current()->mode));
    rc = gh_pwpool_new(cfg->identity.hash_threads, cfg->identity.hash_queue_max,
                       cfg->identity.hash_deadline_ms, &ids.pool);
    /* without tiers, one login queue before registrations, as any
     * application has */
    if (!rc)
        rc = gh_pwpool_set_queue(ids.pool, GH_PW_REGISTER, cfg->identity.hash_queue_max,
                                 cfg->identity.hash_deadline_ms, cfg->identity.login_tiers);
    if (!rc)
        rc = gh_pwpool_set_queue(
            ids.pool, GH_PW_LOGIN_SUSPECT,
            GH_MIN(cfg->identity.suspect_queue_max, cfg->identity.hash_queue_max),
            GH_MIN(cfg->identity.suspect_deadline_ms, cfg->identity.hash_deadline_ms), true);
    if (rc) {
        gh_buf_printf(err, "identity: cannot start the password pool");
        return rc;
    }
    struct gh_sms_limits lim = {.code_ttl_ms = cfg->identity.code_ttl_ms,
                                .code_tries = cfg->identity.code_tries,
                                .cooldown_ms = cfg->sms.cooldown_ms,
                                .per_number_day = cfg->sms.per_number_day,
                                .per_addr_hour = cfg->sms.per_addr_hour,
                                .per_net_hour = cfg->sms.per_net_hour,
                                .per_prefix_hour = cfg->sms.per_prefix_hour,
                                .per_cc_hour = cfg->sms.per_cc_hour,
                                .global_hour = cfg->sms.global_hour};
    uint8_t smskey[32];
    crypto_generichash(smskey, sizeof smskey, (const unsigned char *)"sms codes", 9,
                       srv->secrets.hmac_key, sizeof srv->secrets.hmac_key);
    rc = gh_sms_new(&lim, smskey, 1u << 16, &ids.sms);
    sodium_memzero(smskey, sizeof smskey);
    if (rc || gh_kvtab_new(1u << 18, &ids.fails) || gh_kvtab_new(1u << 17, &ids.sources)) {
        gh_buf_printf(err, "identity: out of memory");
        return GH_ENOMEM;
    }
    char outbox[4200];
    snprintf(outbox, sizeof outbox, "%s/sms-outbox.jsonl", cfg->server.data_dir);
    /* the webhook is signed with a key derived from the server's HMAC key,
     * never the key itself: an SMS provider holding it learns nothing that
     * keys phone hashes, API keys or proof of work. It is written to
     * <data>/sms-webhook.key (0600) for the operator to hand over. */
    uint8_t hookkey[32];
    crypto_generichash(hookkey, sizeof hookkey, (const unsigned char *)"sms webhook v1", 14,
                       srv->secrets.hmac_key, sizeof srv->secrets.hmac_key);
    if (!strcmp(cfg->sms.sender, "webhook")) {
        char kpath[4200], hex[65];
        snprintf(kpath, sizeof kpath, "%s/sms-webhook.key", cfg->server.data_dir);
        sodium_bin2hex(hex, sizeof hex, hookkey, sizeof hookkey);
        hex[64] = '\n';
        int kfd = open(kpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        bool written = kfd >= 0 && write(kfd, hex, 65) == 65;
        if (kfd >= 0)
            close(kfd);
        sodium_memzero(hex, sizeof hex);
        if (!written) {
            gh_buf_printf(err, "[sms] cannot write the webhook key to %s", kpath);
            sodium_memzero(hookkey, sizeof hookkey);
            return GH_EIO;
        }
    }
    struct gh_smssend_options sso = {.kind = cfg->sms.sender,
                                     .outbox_path = outbox,
                                     .url = cfg->sms.webhook_url,
                                     .timeout_ms = cfg->sms.webhook_timeout_ms,
                                     .retries = cfg->sms.webhook_retries,
                                     .hmac_key = hookkey,
                                     .queue_max = 10000};
    rc = gh_smssend_new(&sso, &ids.sender);
    sodium_memzero(hookkey, sizeof hookkey);
    if (rc) {
        gh_buf_printf(err,
                      "[sms] sender: '%s' cannot start (expected log, or webhook with "
                      "webhook_url)",
                      cfg->sms.sender);
        return rc;
    }
    for (size_t i = 0; i < GH_ARRAY_LEN(routes); i++) {
        struct gh_route *r =
            gh_router_add(&srv->router, routes[i].method, routes[i].path, routes[i].fn, &ids);
        if (!r) {
            gh_buf_printf(err, "identity: route table full");
            return GH_ETOOBIG;
        }
        r->cls = routes[i].cls;
        r->body_max = routes[i].body_max;
    }
    struct gh_route *a1 =
        gh_router_add(&srv->admin_router, "GET", "/admin/v1/policy", h_admin_policy_get, srv);
    struct gh_route *a2 =
        gh_router_add(&srv->admin_router, "PUT", "/admin/v1/policy", h_admin_policy_put, srv);
    if (!a1 || !a2) {
        gh_buf_printf(err, "identity: admin route table full");
        return GH_ETOOBIG;
    }
    a1->cls = a2->cls = GH_CLASS_OPS;
    a2->body_max = 16384;
    /* the shield: level changes become policy presets, the pool's queue
     * delay feeds the shedding (both absent when the shield is not up) */
    gh_shield_subscribe_level(on_level, NULL);
    gh_shield_watch_queue(pool_delay, NULL);
    static const struct gh_shield_principals principals = {
        .lookup = principal_lookup,
        .may_reload = principal_may_reload,
        .prefetch = principal_prefetch,
        .prefetch_cancel = gh_auth_prefetch_cancel,
    };
    gh_shield_set_principal_lookup(&principals);
    if (gh_server_add_worker_hook(srv, id_worker_init, id_worker_dispose, NULL)) {
        gh_buf_printf(err, "identity: too many worker hooks");
        return GH_ETOOBIG;
    }
    ids.ready = true;
    return 0;
}

struct gh_store *gh_identity_store(void)
{
    return ids.store;
}

struct gh_pwpool *gh_identity_pwpool(void)
{
    return ids.pool;
}

void gh_identity_dispose(void)
{
    /* the shield outlives identity: it forgets the credential checks and
     * the policy's proof of work */
    gh_shield_set_principal_lookup(NULL);
    gh_shield_set_pow(-1);
    /* the password pool first: its jobs post into the store */
    gh_pwpool_free(ids.pool);
    ids.pool = NULL;
    gh_store_close(ids.store);
    ids.store = NULL;
    gh_smssend_free(ids.sender);
    ids.sender = NULL;
    gh_sms_free(ids.sms);
    ids.sms = NULL;
    gh_kvtab_free(ids.fails);
    ids.fails = NULL;
    gh_kvtab_free(ids.sources);
    ids.sources = NULL;
    gh_policy_dispose();
    gh_password_dispose();
    gh_tokens_dispose();
    ids.ready = false;
}
