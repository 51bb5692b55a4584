/* This module implements the identity subsystem of identity.h: its state,
 * the helpers its route files share (internal.h), credential cache misses
 * (auth.h gh_auth_reload, gh_auth_prefetch), account operations and gone
 * markers, the policy and attack-level listeners, and start and stop. The
 * routes of docs/API.md live in signup.c, login.c, account.c and
 * policy_routes.c. Handlers run on their worker's loop; database work goes
 * to the store threads, password hashing to the password pool, and every
 * result comes back to the same worker (gh_worker_post) to answer. */
#include "http/server.h"
#include "identity/identity.h"

#include "identity/internal.h"

#include <fcntl.h>
#include <unistd.h>

struct identity ids;

/* ---- small helpers ---- */

void id_phone_hash(const char *e164, uint8_t out[32])
{
    char buf[40];
    int n = snprintf(buf, sizeof buf, "phone:%s", e164);
    gh_token_hash(buf, (size_t)n, out);
}

uint64_t id_ceil_s(uint64_t ms)
{
    return ms ? (ms + 999) / 1000 : 1;
}

/* Gets string field name (required) of at most max bytes. false after
 * answering 400. */
bool id_field_str(struct gh_http_req *req, json_t *o, const char *name, size_t max,
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

bool id_field_phone(struct gh_http_req *req, json_t *o, struct gh_phone *p)
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
bool id_field_code(struct gh_http_req *req, json_t *o, const char **code, size_t *len)
{
    if (!id_field_str(req, o, "code", 64, code, len))
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

bool id_field_password(struct gh_http_req *req, json_t *o, const char **pw, size_t *len)
{
    if (!id_field_str(req, o, "password", 4096, pw, len))
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
bool id_policy_allows(struct gh_http_req *req, const struct gh_phone *p)
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

void id_respond_busy(struct gh_http_req *req, const char *what)
{
    uint64_t s = id_ceil_s(req->cfg->identity.busy_retry_ms);
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)s);
    gh_http_respond_error(req, 503, "busy", "%s is busy, please retry later", what);
}

/* Proof of work: when bits > 0, the body's "pow":{"challenge","nonce"}
 * must solve a challenge of scope issued to this client's network. false
 * after answering 403 pow_required with how to get one. */
bool id_pow_ok(struct gh_http_req *req, json_t *o, enum gh_pow_scope scope, unsigned bits)
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
bool id_limit_phone(struct gh_http_req *req, enum gh_class cls, const struct gh_phone *p)
{
    char cc[12];
    snprintf(cc, sizeof cc, "%u", p->calling_code);
    return gh_shield_limit_phone(req, cls, p->e164, cc);
}

/* The registration cap of the policy (a level preset): one GCRA over the
 * whole process, burst a tenth of a minute. false after answering 503. */
bool id_register_cap_ok(struct gh_http_req *req, const struct gh_policy *pol)
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

void id_respond_json_buf(struct gh_http_req *req, int status, struct gh_buf *b)
{
    gh_http_respond_json(req, status, b->data ? b->data : "{}", b->data ? b->len : 2);
}

int id_user_json(const struct gh_user *u, struct gh_buf *b)
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

void id_audit_detail(char *out, size_t outlen, const char *e164, const char *region,
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
        id_respond_busy(req, "sign-in");
        return;
    }
    reloading = req;
    req->route->handler(req);
    reloading = NULL;
}

/* The credential of req that the store may hold and the cache does not:
 * fills j's hash and kind. false when req carries none, a malformed one,
 * one the cache answers (live or gone), or, on a store no other node
 * writes, when the cache never evicted (a miss is then final). */
static bool reload_target(const struct gh_http_req *req, struct reload_job *j)
{
    if (!ids.ready || (!ids.shared_store && !gh_tokens_evictions()))
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
        id_respond_busy(req, "sign-in");
        return true;
    }
    *job = j;
    if (ids.m_reloads)
        atomic_fetch_add_explicit(ids.m_reloads, 1, memory_order_relaxed);
    if (gh_store_read(ids.store, reload_fn, job, req->worker, reload_done)) {
        free(job);
        id_respond_busy(req, "sign-in");
    }
    return true;
}

/* Authenticates an account request by its session cookie (with the CSRF
 * header when need_csrf). API keys never reach account routes (auth.h's
 * scope): a Bearer header alone is answered 401 naming that. false after
 * answering 401/403. */
bool id_authed(struct gh_http_req *req, bool need_csrf, struct gh_principal *pr)
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

void id_clear_session_cookies(struct gh_http_req *req)
{
    gh_auth_clear_cookies(req);
}

/* ---- the state of one asynchronous account operation ---- */

void id_op_free(struct op *op)
{
    free(op->gone);
    sodium_memzero(op->password, sizeof op->password);
    sodium_memzero(op->token, sizeof op->token);
    free(op);
}

struct op *id_op_new(struct gh_http_req *req, enum op_kind kind, const struct gh_phone *p)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->req = req;
    op->kind = kind;
    op->phone = *p;
    id_phone_hash(p->e164, op->phone_hash);
    op->session_max_ms = req->cfg->identity.session_max_ms;
    op->session_idle_ms = req->cfg->identity.session_idle_ms;
    op->sms_only_after = req->cfg->identity.sms_only_after;
    op->sessions_max = req->cfg->identity.sessions_per_user;
    return op;
}

void id_op_new_session(struct op *op)
{
    gh_token_new_session(op->token);
    gh_token_hash(op->token, strlen(op->token), op->sess.hash);
    op->sess.created_ms = gh_wall_ms();
    op->sess.expires_ms = op->sess.created_ms + op->session_max_ms;
}

/* After the session row is durable: cache it, set the cookies, answer. */
void id_op_finish_session(struct op *op, int status)
{
    struct gh_http_req *req = op->req;
    struct gh_cred c = {.kind = GH_CRED_SESSION,
                        .user_id = op->user.id,
                        .id = op->sess.id,
                        .expires_ms = op->sess.expires_ms,
                        .idle_ms = op->session_idle_ms};
    memcpy(c.hash, op->sess.hash, sizeof c.hash);
    if (gh_tokens_put(&c)) {
        id_respond_busy(req, "sign-in");
        return;
    }
    set_session_cookies(req, op->token);
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    gh_buf_append_str(&b, "{\"user\":");
    id_user_json(&op->user, &b);
    gh_buf_append_str(&b, "}");
    id_respond_json_buf(req, status, &b);
    gh_buf_dispose(&b);
}

/* ---- credentials that left the store ---- */

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
int id_gone_collect(struct gh_store_conn *c, uint64_t user_id, bool keys, struct gone **out)
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
void id_gone_bury(const struct gone *g)
{
    for (unsigned i = 0; g && i < g->n; i++)
        gh_tokens_bury(g->e[i].hash, g->user_id, g->e[i].expires_ms);
}

/* Deletes the oldest sessions of user_id past max (the newest, just
 * inserted, stays); *out gets them, to leave the cache. Store thread. A
 * flood of sign-ins to one account then holds at most max sessions of
 * the store and of the cache, and ends its own oldest ones. */
int id_sessions_cap(struct gh_store_conn *c, uint64_t user_id, unsigned max,
                    struct gone **out)
{
    int rc = id_gone_collect(c, user_id, false, out);
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
bool id_account_login_rate_ok(struct op *op)
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
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)id_ceil_s(wait));
    gh_http_respond_error(req, 429, "rate_limited",
                          "too many sign-ins to this account; retry in %llu s",
                          (unsigned long long)id_ceil_s(wait));
    return false;
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

/* The Registration component: the policy's state, or worse while the
 * cluster's shared limits (Redis) are unreachable: a major outage when
 * registration's mode is closed, degraded while it runs on local shares. */
static void report_component(const struct gh_policy *p)
{
    char reason[120];
    enum gh_component_status st = reg_component(p->mode);
    snprintf(reason, sizeof reason, "registration policy %s (%s)", gh_policy_mode_name(p->mode),
             p->source);
    if (gh_shield_cluster_state() == 0) {
        bool closed = gh_shield_cluster_closed(GH_CLASS_REGISTER);
        enum gh_component_status cs =
            closed ? GH_STATUS_MAJOR_OUTAGE : GH_STATUS_DEGRADED_PERFORMANCE;
        if (cs > st) {
            st = cs;
            snprintf(reason, sizeof reason, "shared limits (Redis) unreachable: registration %s",
                     closed ? "refused (closed)" : "on each node's local share");
        }
    }
    gh_status_component_auto("registration", st, reason);
}

static void on_cluster(bool up, void *data)
{
    (void)data;
    const struct gh_policy *p = gh_policy_current();
    if (p)
        report_component(p);
    /* sign-in: refused (closed) or on each node's share (local, open) */
    bool closed = gh_shield_cluster_closed(GH_CLASS_LOGIN);
    enum gh_component_status st = GH_STATUS_OPERATIONAL;
    const char *why = "shared limits (Redis) answer";
    if (!up) {
        st = closed ? GH_STATUS_MAJOR_OUTAGE : GH_STATUS_DEGRADED_PERFORMANCE;
        why = closed ? "shared limits (Redis) unreachable: sign-in refused (closed)"
                     : "shared limits (Redis) unreachable: each node's share";
    }
    gh_status_component_auto("login", st, why);
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
    gh_policy_tick();
    id_outbox_sweep(t->data);
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
    ids.policy_timer.data = w; /* the outbox's sweeps answer there */
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

/* Another node ended a credential (store.h messages; the listener
 * thread): it leaves this node's cache at once. A session or key becomes a
 * marker, so that a store read racing the message cannot bring it back;
 * an account's credentials are dropped and read again on their next use
 * (the store answers for a deleted or disabled account, and for a reset's
 * new session). */
static void on_cred_msg(const struct gh_store_msg *m, void *arg)
{
    (void)arg;
    if (m->kind == GH_STORE_MSG_SESSION || m->kind == GH_STORE_MSG_KEY)
        gh_tokens_forget(m->hash);
    else if (m->kind == GH_STORE_MSG_USER)
        gh_tokens_del_user(m->user_id, 0);
    if (ids.m_cred_msgs)
        atomic_fetch_add_explicit(ids.m_cred_msgs, 1, memory_order_relaxed);
}

/* A cached credential past [store] cache_ttl (tokens.h; any thread, under
 * no lock): read again in the background while the cache keeps answering
 * with it, so no request waits, and a frozen store stops no signed-in
 * user. The store's answer replaces it, or removes it when the store has
 * it no more (a message this node missed); a store that cannot answer
 * leaves it trusted until the next TTL. */
static void recheck_done(struct gh_worker *w, void *arg, int rc)
{
    (void)w; /* none: it runs on the store thread */
    struct reload_job *j = arg;
    if (!rc)
        gh_tokens_refresh(j->hash, j->found ? &j->cred : NULL);
    free(j);
}

static void recheck(const struct gh_cred *c)
{
    if (!ids.store)
        return;
    struct reload_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    memcpy(j->hash, c->hash, sizeof j->hash);
    j->key = c->kind == GH_CRED_KEY;
    j->idle_ms = c->idle_ms;
    if (ids.m_rechecks)
        atomic_fetch_add_explicit(ids.m_rechecks, 1, memory_order_relaxed);
    if (gh_store_read(ids.store, reload_fn, j, NULL, recheck_done))
        free(j);
}

static struct route_def {
    const char *method, *path;
    gh_http_handler fn;
    enum gh_class cls;
    size_t body_max;
} routes[] = {
    {"GET", "/api/policy", id_h_policy, GH_CLASS_ANON, 0},
    {"POST", "/api/auth/sms-code", id_h_sms_code, GH_CLASS_REGISTER, 4096},
    {"POST", "/api/auth/register", id_h_register, GH_CLASS_REGISTER, 16384},
    {"POST", "/api/auth/login", id_h_login, GH_CLASS_LOGIN, 16384},
    {"POST", "/api/auth/logout", id_h_logout, GH_CLASS_USER, 4096},
    {"POST", "/api/auth/password-reset", id_h_reset, GH_CLASS_LOGIN, 16384},
    {"GET", "/api/me", id_h_me, GH_CLASS_USER, 0},
    {"GET", "/api/me/export", id_h_export, GH_CLASS_USER, 0},
    {"DELETE", "/api/me", id_h_delete_me, GH_CLASS_USER, 4096},
    {"POST", "/api/me/password", id_h_password_change, GH_CLASS_LOGIN, 16384},
    {"POST", "/api/keys", id_h_key_create, GH_CLASS_USER, 4096},
    {"GET", "/api/keys", id_h_key_list, GH_CLASS_USER, 0},
    {"DELETE", "/api/keys/{id}", id_h_key_delete, GH_CLASS_USER, 4096},
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
    rc = rc ? rc : gh_mecache_init();
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
                                  .hmac_key = srv->secrets.hmac_key,
                                  .queue_max = cfg->identity.store_queue_max,
                                  .readers = cfg->store.readers,
                                  .listen = cfg->store.listen};
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
    if (la.policy.data)
        id_doc_note(&id_policy_doc, la.policy.data);
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
    static const char *const me_from[] = {"cache", "store", "refresh"};
    for (size_t i = 0; i < GH_ARRAY_LEN(me_from); i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "from=\"%s\"", me_from[i]);
        ids.m_me_reads[i] = gh_metrics_counter(
            "gatehouse_identity_me_reads_total", labels,
            "GET /api/me: answers from memory (cache), answers that waited for the store "
            "(store), and store reads behind a cached answer that refresh it (refresh)");
    }
    ids.m_reg_capped =
        gh_metrics_counter("gatehouse_identity_register_capped_total", "",
                           "registrations refused 503 by the attack level's registration cap");
    ids.m_reloads =
        gh_metrics_counter("gatehouse_identity_credential_lookups_total", "",
                           "credential cache misses looked up in the store (after evictions, or "
                           "on a shared store)");
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
                                     .queue_max = 10000,
                                     .done = id_outbox_done};
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
            gh_router_add(&srv->http->router, routes[i].method, routes[i].path, routes[i].fn, &ids);
        if (!r) {
            gh_buf_printf(err, "identity: route table full");
            return GH_ETOOBIG;
        }
        r->cls = routes[i].cls;
        r->body_max = routes[i].body_max;
    }
    struct gh_route *a1 =
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/policy", id_h_admin_policy_get, srv);
    struct gh_route *a2 =
        gh_router_add(&srv->http->admin_router, "PUT", "/admin/v1/policy", id_h_admin_policy_put, srv);
    if (!a1 || !a2) {
        gh_buf_printf(err, "identity: admin route table full");
        return GH_ETOOBIG;
    }
    a1->cls = a2->cls = GH_CLASS_OPS;
    a2->body_max = 16384;
    /* the shield: level changes become policy presets, the pool's queue
     * delay feeds the shedding (both absent when the shield is not up) */
    gh_shield_subscribe_level(on_level, NULL);
    gh_shield_subscribe_cluster(on_cluster, NULL);
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
    ids.shared_store = gh_store_shared(ids.store);
    if (ids.shared_store) {
        id_outbox_init(cfg);
        gh_tokens_set_ttl(cfg->store.cache_ttl_ms, recheck);
        ids.m_rechecks = gh_metrics_counter(
            "gatehouse_identity_credential_rechecks_total", "",
            "cached sessions and keys read again from the store past [store] cache_ttl");
        ids.m_cred_msgs = gh_metrics_counter(
            "gatehouse_identity_credential_messages_total", "",
            "sessions, keys and accounts ended on another node and dropped from this node's "
            "credential cache");
        gh_store_on_credentials(ids.store, on_cred_msg, NULL);
        id_doc_subscribe(&id_policy_doc);
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
    /* the sender before the store: what it delivers while it drains is
     * deleted from the SMS outbox (id_outbox_done queues store jobs) */
    gh_smssend_free(ids.sender);
    ids.sender = NULL;
    gh_store_close(ids.store);
    ids.store = NULL;
    gh_sms_free(ids.sms);
    ids.sms = NULL;
    gh_kvtab_free(ids.fails);
    ids.fails = NULL;
    gh_kvtab_free(ids.sources);
    ids.sources = NULL;
    gh_policy_dispose();
    id_docs_dispose();
    gh_password_dispose();
    gh_mecache_free();
    gh_tokens_dispose();
    ids.ready = false;
}
