/* This module implements the identity subsystem's sign-in: the login
 * failure tiers kept in memory (per phone, per address, per source
 * network), POST /api/auth/login, POST /api/auth/password-reset,
 * POST /api/me/password and POST /api/auth/logout. */
#include "identity/internal.h"

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
bool id_source_vouched(const struct gh_http_req *req, const uint8_t phone_hash[32])
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
void id_source_success(const struct gh_http_req *req, const uint8_t phone_hash[32])
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
/* The account's failed sign-ins as the cluster's Redis holds them (every
 * node's), when known. */
struct shared_fails {
    bool known;
    unsigned n;
    uint64_t wait_ms;
};

static bool login_allowed(struct op *op, const struct shared_fails *shared, bool *sms_only,
                          bool *had_failures)
{
    struct gh_http_req *req = op->req;
    uint8_t kp[16], ka[16];
    fail_keys(op, kp, ka);
    uint64_t now = gh_now_ms(), wait = 0;
    gh_kvtab_lock(ids.fails);
    struct gh_kv *p = gh_kvtab_find_locked(ids.fails, kp, now, false, 0);
    struct gh_kv *a = gh_kvtab_find_locked(ids.fails, ka, now, false, 0);
    uint64_t pn = p ? p->v[0] : 0;
    if (p && p->v[1] > now)
        wait = p->v[1] - now;
    if (shared->known) {
        pn = shared->n;
        wait = shared->wait_ms;
    }
    *sms_only = pn >= req->cfg->identity.sms_only_after;
    *had_failures = pn > 0 || (a && a->v[0] > 0);
    bool addr_over = a && a->v[0] >= req->cfg->identity.login_fail_per_addr;
    if (addr_over && a->expires_ms - now > wait)
        wait = a->expires_ms - now;
    uint64_t addr_fails = a ? a->v[0] : 0;
    gh_kvtab_unlock(ids.fails);
    bool tiers = req->cfg->identity.login_tiers;
    op->prio = tiers ? login_tier(req, addr_fails) : GH_PW_LOGIN;
    if (tiers && op->prio == GH_PW_LOGIN && addr_fails == 0 &&
        id_source_vouched(req, op->phone_hash)) {
        *had_failures = false;
        if (!addr_over)
            wait = 0;
    }
    if (wait) {
        gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)id_ceil_s(wait));
        gh_http_respond_error(req, 429, "rate_limited",
                              "too many failed sign-ins; retry in %llu s",
                              (unsigned long long)id_ceil_s(wait));
        return false;
    }
    return true;
}

/* Counts a failed sign-in here and, with [redis], for every node: then
 * done(…, arg) runs once Redis has it (or cannot be reached), and 0 is
 * returned; without [redis], GH_ENOTFOUND (done is not called). */
static int login_failed_mem(struct op *op, gh_shield_fails_cb done, void *arg)
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
    /* and for every node */
    return gh_shield_cluster_fails(op->req->worker, GH_SHIELD_FAILS_ADD, kp,
                                   (unsigned)GH_MIN(op->user.failed_logins, 1000000u),
                                   cfg->identity.backoff_base_ms, cfg->identity.backoff_max_ms,
                                   done, arg);
}

static void login_succeeded_mem(struct op *op)
{
    uint8_t kp[16], ka[16];
    fail_keys(op, kp, ka);
    gh_kvtab_lock(ids.fails);
    gh_kvtab_del_locked(ids.fails, kp);
    gh_kvtab_unlock(ids.fails);
    gh_shield_cluster_fails(op->req->worker, GH_SHIELD_FAILS_CLEAR, kp, 0, 0, 0, NULL, NULL);
    id_source_success(op->req, op->phone_hash);
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
    rc = id_sessions_cap(c, op->user.id, op->sessions_max, &op->gone);
    if (rc)
        return rc;
    char d[200];
    id_audit_detail(d, sizeof d, op->phone.e164, op->phone.region,
                 op->kind == OP_LOGIN_CODE ? "\"method\":\"sms_code\"" : "\"method\":\"password\"");
    return gh_audit_row(c, "login", op->user.id, d);
}

static int login_fail_fn(struct gh_store_conn *c, void *arg)
{
    struct op *op = arg;
    if (op->found)
        gh_store_user_login_result(c, op->user.id, false, 0);
    char d[200];
    id_audit_detail(d, sizeof d, op->phone.e164, op->phone.region,
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
    gh_mecache_drop(op->user.id); /* its last_login_at changed */
    if (w) {
        if (rc)
            id_respond_busy(op->req, "sign-in");
        else
            id_op_finish_session(op, 200);
    }
    id_op_free(op);
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
    id_op_free(arg);
}

static void login_failed_answer(struct op *op)
{
    login_fail_answer(op->req, false);
    op->req = NULL; /* answered: the write below only records the failure */
    if (gh_store_write(ids.store, login_fail_fn, op, NULL, op_free_done))
        id_op_free(op);
}

static void login_failure_shared(int rc, unsigned n, uint64_t wait_ms, void *arg)
{
    login_failed_answer(arg);
}

/* The 401 goes out only once the failure counts on every node (Redis has
 * it, or cannot be reached): a client that sends its next guess to
 * another node the moment it reads the answer meets the back-off there. */
static void login_failed(struct op *op)
{
    gh_shield_signal(op->req, GH_SIGNAL_LOGIN_FAIL);
    if (login_failed_mem(op, login_failure_shared, op) != 0)
        login_failed_answer(op);
}

static void login_succeeded(struct gh_worker *w, struct op *op)
{
    if (!id_account_login_rate_ok(op)) {
        id_op_free(op);
        return;
    }
    gh_shield_signal(op->req, GH_SIGNAL_LOGIN_OK);
    login_succeeded_mem(op);
    id_op_new_session(op);
    if (gh_store_write(ids.store, login_ok_fn, op, w, login_ok_done)) {
        id_respond_busy(op->req, "sign-in");
        id_op_free(op);
    }
}

static void verify_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w) {
        id_op_free(op);
        return;
    }
    if (rc) {
        if (rc == GH_EBUSY)
            gh_shield_signal(op->req, GH_SIGNAL_LOGIN_REFUSED);
        id_respond_busy(op->req, "sign-in");
        id_op_free(op);
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
        id_op_free(op);
        return;
    }
    if (rc) {
        id_respond_busy(op->req, "sign-in");
        id_op_free(op);
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
        id_op_free(op);
        return;
    }
    if (gh_pwpool_submit(ids.pool, op->prio, verify_fn, op, w, verify_done)) {
        gh_shield_signal(op->req, GH_SIGNAL_LOGIN_REFUSED);
        id_respond_busy(op->req, "sign-in");
        id_op_free(op);
    }
}

/* A sign-in waiting for the account's failed sign-ins from the cluster's
 * Redis: its parsed body, kept alive until they are known. */
struct login_wait {
    struct op *op;
    json_t *o;
    bool by_code;
    const char *code, *pw;
    size_t clen, pwlen;
};

static void login_wait_free(struct login_wait *lw)
{
    if (lw->op) /* NULL once handed on (the password pool owns it) */
        id_op_free(lw->op);
    json_decref(lw->o);
    free(lw);
}

/* Reads the account of op (the pool or the answer owns op after). */
static void login_read(struct gh_http_req *req, struct op *op)
{
    if (gh_store_read(ids.store, login_read_fn, op, req->worker, login_read_done)) {
        id_respond_busy(req, "sign-in");
        id_op_free(op);
    }
}

static void login_code_checked(struct gh_http_req *req, bool ok, void *arg)
{
    struct login_wait *lw = arg;
    if (ok) {
        login_read(req, lw->op);
        lw->op = NULL;
    }
    login_wait_free(lw);
}

static void login_go(struct login_wait *lw, const struct shared_fails *shared)
{
    struct op *op = lw->op;
    struct gh_http_req *req = op->req;
    json_t *o = lw->o;
    bool sms_only = false;
    bool had_failures = false;
    if (!login_allowed(op, shared, &sms_only, &had_failures)) {
        gh_shield_signal(req, GH_SIGNAL_LOGIN_REFUSED);
        id_op_free(op);
        goto out;
    }
    /* proof of work (scope login) when the attack level's preset asks for
     * it: after recent failures of the account or the address, from a
     * suspect source (login_tier), and under attack from any source
     * without a recent success; then phone-keyed shield rules, then
     * admission to the password pool. All before any hashing. */
    bool pow_needed = had_failures || op->prio == GH_PW_LOGIN_SUSPECT ||
                      (op->prio == GH_PW_LOGIN_NEW && gh_shield_level() == GH_LEVEL_UNDER_ATTACK);
    if ((pow_needed && !id_pow_ok(req, o, GH_POW_LOGIN, gh_shield_pow_bits(GH_POW_LOGIN))) ||
        !id_limit_phone(req, GH_CLASS_LOGIN, &op->phone) ||
        (!lw->by_code && !gh_shield_admit(req, GH_CLASS_LOGIN))) {
        gh_shield_signal(req, GH_SIGNAL_LOGIN_REFUSED);
        id_op_free(op);
        goto out;
    }
    if (lw->by_code) {
        id_check_code(req, op->phone.e164, GH_SMS_LOGIN, lw->code, lw->clen, login_code_checked,
                      lw);
        return;
    }
    if (sms_only) {
        login_fail_answer(req, true);
        id_op_free(op);
        goto out;
    }
    memcpy(op->password, lw->pw, lw->pwlen);
    op->pwlen = lw->pwlen;
    source_attempt(req);
    lw->op = NULL;
    login_read(req, op);
out:
    json_decref(o);
    free(lw);
}

/* The account's failed sign-ins from Redis; unreachable: [redis]
 * login_mode (local: this node's own count, open: none, closed: 503). */
static void login_fails_known(int rc, unsigned n, uint64_t wait_ms, void *arg)
{
    struct login_wait *lw = arg;
    struct shared_fails shared = {rc == 0, n, wait_ms};
    if (rc) {
        enum gh_shield_mode m = gh_shield_cluster_login_fallback();
        if (m == GH_SHIELD_MODE_OPEN)
            shared = (struct shared_fails){true, 0, 0};
        if (m == GH_SHIELD_MODE_CLOSED) {
            struct gh_http_req *req = lw->op->req;
            gh_http_add_header(req, "Retry-After", "5");
            gh_http_respond_error(req, 503, "busy",
                                  "sign-in by password is paused: the counts this service's "
                                  "nodes share (Redis) cannot be reached; please retry in 5 "
                                  "seconds");
            login_wait_free(lw);
            return;
        }
    }
    login_go(lw, &shared);
}

/* The sign-in class's rules shared by the cluster (its aggregates, in
 * Redis), then next (at once without them). Takes lw. */
static void login_gate(struct gh_http_req *req, struct login_wait *lw, gh_shield_gate_cb next)
{
    char cc[12];
    snprintf(cc, sizeof cc, "%u", lw->op->phone.calling_code);
    int rc = gh_shield_cluster_gate(req, GH_CLASS_LOGIN, lw->op->phone.e164, cc, NULL, next, lw);
    if (rc == GH_ENOTFOUND) {
        next(req, true, lw);
    } else if (rc) {
        id_respond_busy(req, "sign-in");
        login_wait_free(lw);
    }
}

/* Past the shared rules: in a cluster the account's failures are every
 * node's (Redis), then login_go. */
static void login_gated(struct gh_http_req *req, bool go_on, void *arg)
{
    struct login_wait *lw = arg;
    if (!go_on) {
        gh_shield_signal(req, GH_SIGNAL_LOGIN_REFUSED);
        login_wait_free(lw);
        return;
    }
    uint8_t kp[16], ka[16];
    fail_keys(lw->op, kp, ka);
    if (gh_shield_cluster_fails(req->worker, GH_SHIELD_FAILS_GET, kp, 0, 0, 0, login_fails_known,
                                lw) == 0)
        return;
    static const struct shared_fails unknown;
    login_go(lw, &unknown);
}

void id_h_login(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct login_wait *lw = calloc(1, sizeof *lw);
    struct gh_phone p;
    if (!lw) {
        id_respond_busy(req, "sign-in");
        goto out;
    }
    if (!id_field_phone(req, o, &p))
        goto out;
    lw->by_code = json_object_get(o, "code") != NULL;
    bool by_pw = json_object_get(o, "password") != NULL;
    if (lw->by_code == by_pw) {
        gh_http_respond_error(req, 400, "invalid_request",
                              "password or code: send exactly one of them");
        goto out;
    }
    if (lw->by_code && !id_field_code(req, o, &lw->code, &lw->clen))
        goto out;
    if (by_pw && !id_field_str(req, o, "password", GH_PASSWORD_MAX * 4, &lw->pw, &lw->pwlen))
        goto out;
    lw->op = id_op_new(req, lw->by_code ? OP_LOGIN_CODE : OP_LOGIN_PW, &p);
    if (!lw->op) {
        id_respond_busy(req, "sign-in");
        goto out;
    }
    lw->o = o;
    login_gate(req, lw, login_gated);
    return;
out:
    free(lw);
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
    rc = id_gone_collect(c, op->user.id, op->revoke_keys, &op->gone);
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
    id_audit_detail(d, sizeof d, op->phone.e164, op->phone.region, extra);
    return gh_audit_row(c, "password_reset", op->user.id, d);
}

static void reset_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (w) {
        if (rc == GH_ENOTFOUND) {
            id_respond_bad_code(op->req);
        } else if (rc) {
            id_respond_busy(op->req, "password reset");
        } else {
            gh_tokens_del_user(op->user.id, op->revoke_keys ? 0 : GH_CRED_SESSION);
            id_gone_bury(op->gone);
            login_succeeded_mem(op);
            id_clear_session_cookies(op->req);
            char body[64];
            int n = op->revoke_keys ? snprintf(body, sizeof body,
                                               "{\"reset\":true,\"keys_revoked\":%d}",
                                               op->keys_revoked)
                                    : snprintf(body, sizeof body, "{\"reset\":true}");
            gh_http_respond_json(op->req, 200, body, (size_t)n);
        }
    }
    id_op_free(op);
}

static void reset_hash_done(struct gh_worker *w, void *arg, int rc)
{
    struct op *op = arg;
    if (!w)
        goto fail;
    if (rc || op->rc) {
        id_respond_busy(op->req, "password reset");
        goto fail;
    }
    if (gh_store_write(ids.store, reset_write_fn, op, w, reset_write_done)) {
        id_respond_busy(op->req, "password reset");
        goto fail;
    }
    return;
fail:
    id_op_free(op);
}

static void reset_code_checked(struct gh_http_req *req, bool ok, void *arg)
{
    struct login_wait *lw = arg;
    struct op *op = lw->op;
    if (!ok)
        goto fail;
    memcpy(op->password, lw->pw, lw->pwlen);
    op->pwlen = lw->pwlen;
    op->revoke_keys = json_is_true(json_object_get(lw->o, "revoke_keys"));
    if (gh_pwpool_submit(ids.pool, GH_PW_LOGIN, id_hash_fn, op, req->worker, reset_hash_done)) {
        id_respond_busy(req, "password reset");
        goto fail;
    }
    lw->op = NULL; /* the pool's now */
fail:
    login_wait_free(lw);
}

static void reset_gated(struct gh_http_req *req, bool go_on, void *arg)
{
    struct login_wait *lw = arg;
    struct op *op = lw->op;
    if (!go_on || !id_limit_phone(req, GH_CLASS_LOGIN, &op->phone) ||
        !gh_shield_admit(req, GH_CLASS_LOGIN)) {
        login_wait_free(lw);
        return;
    }
    id_check_code(req, op->phone.e164, GH_SMS_RESET, lw->code, lw->clen, reset_code_checked, lw);
}

void id_h_reset(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct login_wait *lw = calloc(1, sizeof *lw);
    struct gh_phone p;
    if (!lw) {
        id_respond_busy(req, "password reset");
        goto out;
    }
    if (!id_field_phone(req, o, &p) || !id_field_code(req, o, &lw->code, &lw->clen) ||
        !id_field_password(req, o, &lw->pw, &lw->pwlen))
        goto out;
    json_t *rk = json_object_get(o, "revoke_keys");
    if (rk && !json_is_boolean(rk)) {
        gh_http_respond_error(req, 400, "invalid_request", "revoke_keys: must be true or false");
        goto out;
    }
    lw->op = id_op_new(req, OP_RESET, &p);
    if (!lw->op) {
        id_respond_busy(req, "password reset");
        goto out;
    }
    lw->o = o;
    login_gate(req, lw, reset_gated);
    return;
out:
    free(lw);
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
        int rc = id_gone_collect(c, j->user_id, first && j->revoke_keys, &g);
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
        id_gone_bury(j->gone);
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
            id_respond_busy(j->req, "password change");
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
        id_respond_busy(j->req, "password change");
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
        id_respond_busy(j->req, "password change");
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
        id_respond_busy(j->req, "password change");
        goto fail;
    }
    if (j->user.failed_logins >= j->sms_only_after) {
        gh_http_respond_error(j->req, 403, "wrong_password",
                              "current_password: too many failed attempts; reset the password "
                              "with an SMS code (/reset-password)");
        goto fail;
    }
    if (gh_pwpool_submit(ids.pool, GH_PW_LOGIN, pwchange_hash_fn, j, w, pwchange_hash_done)) {
        id_respond_busy(j->req, "password change");
        goto fail;
    }
    return;
fail:
    pwchange_free(j);
}

void id_h_password_change(struct gh_http_req *req)
{
    struct gh_principal pr;
    char tok[GH_TOKEN_B64_LEN + 8];
    if (!id_authed(req, true, &pr))
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    const char *cur, *pw;
    size_t curlen, pwlen;
    if (!id_field_str(req, o, "current_password", GH_PASSWORD_MAX * 4, &cur, &curlen) ||
        !id_field_password(req, o, &pw, &pwlen))
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
        id_respond_busy(req, "password change");
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
        id_respond_busy(req, "password change");
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

void id_h_logout(struct gh_http_req *req)
{
    char tok[GH_TOKEN_B64_LEN + 8];
    struct gh_principal pr;
    int rc = gh_auth_session(req, true, &pr);
    if (rc == GH_EINVAL) {
        gh_http_respond_error(req, 403, "forbidden", "X-CSRF-Token header missing or wrong");
        return;
    }
    /* a session the cache evicted, or holds past its TTL: read it back
     * first, so that it is deleted from the store, not only forgotten */
    if (rc == GH_ENOTFOUND && gh_auth_reload(req))
        return;
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
    id_clear_session_cookies(req);
    gh_http_respond(req, 204, NULL, NULL, 0);
}
