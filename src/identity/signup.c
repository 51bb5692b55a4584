/* This module implements the identity subsystem's sign-up routes:
 * POST /api/auth/sms-code (codes for registration, login and reset, with
 * their budgets, policy and proof of work) and POST /api/auth/register. */
#include "identity/internal.h"

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
    struct gh_sms_req sr;    /* what the budgets charge (points into phone) */
    struct gh_http_req *req; /* waiting for the number's budgets; NULL after the 202 */
    struct gh_worker *worker;
    void (*charged)(struct sms_job *j, int rc, uint64_t wait_ms, const char *which);
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

/* The number's budgets without the cluster's Redis, each cap divided by
 * share (gh_shield_local_budget_fn). */
static int local_number_budgets(void *arg, unsigned share, uint64_t *wait_ms, const char **which)
{
    struct sms_job *j = arg;
    return gh_sms_budget_send_share(ids.sms, &j->sr, gh_now_ms(), share, wait_ms, which);
}

static void number_budgets_done(int rc, uint64_t wait_ms, const char *which, void *arg)
{
    struct sms_job *j = arg;
    j->charged(j, rc, wait_ms, which);
}

/* Charges the number's budgets of j (cooldown, per number, prefix,
 * calling code, global): in the cluster's Redis when there is one, so
 * that every node spends the same budgets, else here; then j->charged
 * runs on j->worker (GH_EIO: Redis unreachable and [redis] sms_mode
 * closed). */
static void number_budgets(struct sms_job *j)
{
    struct gh_sms_window win[GH_SMS_WINDOWS_MAX];
    struct gh_shield_window sw[GH_SMS_WINDOWS_MAX];
    unsigned n = gh_sms_send_windows(ids.sms, &j->sr, win);
    for (unsigned i = 0; i < n; i++)
        sw[i] = (struct gh_shield_window){win[i].name, win[i].key, sizeof win[i].key,
                                          win[i].period_ms, win[i].cap};
    int rc =
        gh_shield_cluster_windows(j->worker, sw, n, local_number_budgets, number_budgets_done, j);
    if (rc == GH_ENOTFOUND) {
        uint64_t wait = 0;
        const char *which = NULL;
        rc = gh_sms_budget_send(ids.sms, &j->sr, gh_now_ms(), &wait, &which);
        j->charged(j, rc, wait, which);
    } else if (rc) {
        j->charged(j, GH_EIO, 0, NULL);
    }
}

/* The text of code for j into text (GH_SMSSEND_TEXT_MAX bytes). */
static void sms_text(const struct sms_job *j, const char *code, char *text)
{
    unsigned mins = (unsigned)GH_MAX(j->ttl_ms / 60000, 1ull);
    if (j->purpose == GH_SMS_REGISTER && j->exists)
        snprintf(text, GH_SMSSEND_TEXT_MAX,
                 "gatehouse: someone asked to register this number, which already has an "
                 "account. If it was you, sign in or reset your password instead. Code %s "
                 "(%u min).",
                 code, mins);
    else if (j->purpose == GH_SMS_REGISTER)
        snprintf(text, GH_SMSSEND_TEXT_MAX,
                 "gatehouse: your registration code is %s. It expires in %u min. Never share it.",
                 code, mins);
    else if (j->purpose == GH_SMS_LOGIN)
        snprintf(text, GH_SMSSEND_TEXT_MAX,
                 "gatehouse: your sign-in code is %s. It expires in %u min. Never share it.", code,
                 mins);
    else
        snprintf(text, GH_SMSSEND_TEXT_MAX,
                 "gatehouse: your password reset code is %s. It expires in %u min. Never share "
                 "it.",
                 code, mins);
}

/* The 202 of a code request. */
static void sms_accepted(struct gh_http_req *req)
{
    gh_shield_signal(req, GH_SIGNAL_SMS_SENT);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"sent\":true,\"retry_after\":%llu}",
                     (unsigned long long)(req->cfg->sms.cooldown_ms / 1000));
    gh_http_respond_json(req, 202, body, (size_t)n);
}

/* Frees j, answering first when its request waits for the message to be
 * in the SMS outbox (a registration code on a shared store): 202 when it
 * is (rc 0), else 503; w NULL (the worker stopped): no answer. */
static void sms_job_end(struct sms_job *j, struct gh_worker *w, int rc)
{
    if (w && j->req) {
        if (rc)
            id_respond_busy(j->req, "the SMS service");
        else
            sms_accepted(j->req);
    }
    free(j);
}

/* A code kept in the cluster's shared store: what the write job stores
 * (the code's hashes and its message in the SMS outbox, one transaction). */
struct code_put {
    struct sms_job *j;
    struct gh_smssend_msg msg;
    uint8_t key[32], hash[32];
    uint64_t expires_ms;
    unsigned tries;
    uint64_t row; /* the outbox row */
};

static void code_put_free(struct code_put *cp, struct gh_worker *w, int rc)
{
    sms_job_end(cp->j, w, rc);
    sodium_memzero(cp, sizeof *cp);
    free(cp);
}

static int code_put_fn(struct gh_store_conn *c, void *arg)
{
    struct code_put *cp = arg;
    int rc = gh_store_sms_code_put(c, cp->key, cp->hash, cp->expires_ms, cp->tries);
    return rc ? rc : id_outbox_add(c, &cp->msg, &cp->row);
}

/* The code and its message are in the store (committed): any node can
 * check the code, and the message is sent even if this node dies now. */
static void code_put_done(struct gh_worker *w, void *arg, int rc)
{
    struct code_put *cp = arg;
    if (w && !rc)
        id_outbox_send(cp->row, &cp->msg);
    code_put_free(cp, w, rc);
}

/* Issues the code and hands the text to the sender; frees j. With a shared
 * store the code goes there first, so that every node can check it. */
static void sms_issue_send(struct sms_job *j)
{
    if (ids.shared_store) {
        struct code_put *cp = calloc(1, sizeof *cp);
        if (!cp) {
            sms_job_end(j, j->worker, GH_ENOMEM);
            return;
        }
        cp->j = j;
        uint64_t ttl;
        struct gh_smssend_msg *m = &cp->msg;
        gh_sms_code_new(ids.sms, m->code, &ttl, &cp->tries);
        gh_sms_code_hashes(ids.sms, j->phone.e164, j->purpose, m->code, 6, cp->key, cp->hash);
        cp->expires_ms = gh_wall_ms() + ttl;
        snprintf(m->to, sizeof m->to, "%s", j->phone.e164);
        snprintf(m->purpose, sizeof m->purpose, "%s", gh_sms_purpose_name(j->purpose));
        sms_text(j, m->code, m->text);
        if (gh_store_write(ids.store, code_put_fn, cp, j->worker, code_put_done))
            code_put_free(cp, j->worker, GH_EBUSY);
        return;
    }
    char code[7], text[GH_SMSSEND_TEXT_MAX];
    if (!gh_sms_code_issue(ids.sms, j->phone.e164, j->purpose, gh_now_ms(), code)) {
        sms_text(j, code, text);
        gh_smssend_send(ids.sender, j->phone.e164, gh_sms_purpose_name(j->purpose), code, text);
        sodium_memzero(text, sizeof text);
    }
    sodium_memzero(code, sizeof code);
    free(j);
}

/* A login or reset code's number budgets, charged after the 202: over
 * budget (or Redis away in closed mode) sends nothing. */
static void lookup_charged(struct sms_job *j, int rc, uint64_t wait_ms, const char *which)
{
    (void)wait_ms, (void)which;
    if (rc)
        free(j);
    else
        sms_issue_send(j);
}

static void sms_lookup_done(struct gh_worker *w, void *arg, int rc)
{
    struct sms_job *j = arg;
    if (rc || !ids.sms || !ids.sender)
        goto drop;
    /* login and reset codes go only to numbers with an account: nobody
     * pays for texts to numbers that cannot use them; a disabled account
     * cannot sign in or reset, so it gets none either (the 202 was the
     * same bytes already) */
    if (j->purpose != GH_SMS_REGISTER && (!j->exists || j->disabled))
        goto drop;
    /* the number's budgets are charged only now, when a text is sent: a
     * flood of requests for numbers without an account spends nobody's
     * budget, and an owner's codes have budgets outsiders cannot spend.
     * Over budget: no text (the 202 was the same bytes already). */
    if (j->purpose != GH_SMS_REGISTER) {
        j->worker = w;
        j->charged = lookup_charged;
        number_budgets(j);
        return;
    }
    sms_issue_send(j);
    return;
drop:
    sms_job_end(j, w, GH_EIO);
}

static void respond_too_many_codes(struct gh_http_req *req, uint64_t wait, const char *which)
{
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)id_ceil_s(wait));
    gh_http_respond_error(req, 429, "rate_limited",
                          "too many codes requested (%s); retry in %llu s", which,
                          (unsigned long long)id_ceil_s(wait));
}

/* Every budget allowed: the number is looked up (the answer does not wait
 * for it: the same bytes, at the same time, whether or not it has an
 * account) and the client told 202. Takes j. On a shared store a
 * registration code's 202 waits until its message is in the SMS outbox
 * (committed: it is delivered even if this node dies): a registration code
 * is sent whether or not the number has an account, so waiting tells
 * nothing. Login and reset codes are answered first, as on one node. */
static void sms_code_accept(struct gh_http_req *req, struct sms_job *j)
{
    bool wait = ids.shared_store && j->purpose == GH_SMS_REGISTER;
    j->req = wait ? req : NULL;
    if (gh_store_read(ids.store, sms_lookup_fn, j, req->worker, sms_lookup_done)) {
        free(j);
        id_respond_busy(req, "the SMS service");
        return;
    }
    if (!wait)
        sms_accepted(req);
}

/* A registration code's number budgets, charged in the cluster's Redis
 * while the request waits. */
static void register_code_charged(struct sms_job *j, int rc, uint64_t wait_ms, const char *which)
{
    struct gh_http_req *req = j->req;
    if (rc == GH_EIO) {
        gh_http_add_header(req, "Retry-After", "5");
        gh_http_respond_error(req, 503, "busy",
                              "SMS codes are paused: the budgets this service's nodes share "
                              "(Redis) cannot be reached; please retry in 5 seconds");
    } else if (rc) {
        respond_too_many_codes(req, wait_ms, which);
    } else {
        sms_code_accept(req, j);
        return;
    }
    free(j);
}

/* A request waiting for the cluster's shared limits (gh_shield_cluster_gate):
 * its parsed body, kept alive until the gate decides. */
struct gated {
    json_t *o;
    struct gh_phone p;
    int purpose;
    const char *code, *pw;
    size_t clen, pwlen;
};

/* The proof-of-work challenge to claim cluster-wide: the one the body
 * carried when bits are required (gh_shield_pow_verify took it locally). */
static const char *pow_claim(json_t *o, unsigned bits)
{
    return bits ? json_string_value(json_object_get(json_object_get(o, "pow"), "challenge")) : NULL;
}

/* Asks the shared limits for req, then runs next (at once without them).
 * Takes g (and its reference to the body) in every case. */
static void gate_then(struct gh_http_req *req, struct gated *g, unsigned pow_bits,
                      gh_shield_gate_cb next)
{
    char cc[12];
    snprintf(cc, sizeof cc, "%u", g->p.calling_code);
    int rc = gh_shield_cluster_gate(req, GH_CLASS_REGISTER, g->p.e164, cc,
                                    pow_claim(g->o, pow_bits), next, g);
    if (rc == GH_ENOTFOUND) {
        next(req, true, g);
    } else if (rc) {
        id_respond_busy(req, "registration");
        json_decref(g->o);
        free(g);
    }
}

static void sms_code_gated(struct gh_http_req *req, bool go_on, void *arg)
{
    struct gated *g = arg;
    struct sms_job *j = NULL;
    if (!go_on || !id_limit_phone(req, req->route->cls, &g->p))
        goto out;
    j = calloc(1, sizeof *j);
    if (!j) {
        id_respond_busy(req, "the SMS service");
        goto out;
    }
    j->phone = g->p;
    id_phone_hash(j->phone.e164, j->phone_hash);
    j->purpose = (enum gh_sms_purpose)g->purpose;
    j->client = req->client;
    j->owner = id_source_vouched(req, j->phone_hash);
    j->ttl_ms = req->cfg->identity.code_ttl_ms;
    j->sr = (struct gh_sms_req){.e164 = j->phone.e164,
                                .prefix = j->phone.prefix,
                                .calling_code = j->phone.calling_code,
                                .client = j->client,
                                .purpose = j->purpose,
                                .owner = j->owner};
    j->req = req;
    j->worker = req->worker;
    uint64_t wait = 0;
    const char *which = NULL;
    /* the requester's budgets now; the number's too for a registration
     * code, which is sent whether or not the number has an account (so
     * refusing it now tells nothing); login and reset codes are charged to
     * the number only when one is sent (sms_lookup_done). In a cluster
     * the number's budgets are in Redis (number_budgets): every node
     * spends the same ones */
    bool shared = gh_shield_cluster_state() >= 0;
    int brc = j->purpose == GH_SMS_REGISTER && !shared
                  ? gh_sms_budget(ids.sms, &j->sr, gh_now_ms(), &wait, &which)
                  : gh_sms_budget_requester(ids.sms, &j->sr, gh_now_ms(), &wait, &which);
    if (brc) {
        respond_too_many_codes(req, wait, which);
        free(j);
        goto out;
    }
    if (j->purpose == GH_SMS_REGISTER && shared) {
        j->charged = register_code_charged;
        number_budgets(j);
    } else {
        sms_code_accept(req, j);
    }
out:
    json_decref(g->o);
    free(g);
}

void id_h_sms_code(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gh_phone p;
    const char *ps;
    size_t plen;
    if (!id_field_phone(req, o, &p) || !id_field_str(req, o, "purpose", 32, &ps, &plen))
        goto out;
    int purpose = gh_sms_purpose_parse(ps, plen);
    if (purpose < 0) {
        gh_http_respond_error(req, 400, "invalid_request",
                              "purpose: expected register, login or reset");
        goto out;
    }
    unsigned bits = purpose == GH_SMS_REGISTER ? gh_shield_pow_bits(GH_POW_SMS) : 0;
    if (purpose == GH_SMS_REGISTER &&
        (!id_policy_allows(req, &p) || !id_pow_ok(req, o, GH_POW_SMS, bits)))
        goto out;
    struct gated *g = calloc(1, sizeof *g);
    if (!g) {
        id_respond_busy(req, "the SMS service");
        goto out;
    }
    g->o = o;
    g->p = p;
    g->purpose = purpose;
    gate_then(req, g, bits, sms_code_gated);
    return;
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
    id_audit_detail(d, sizeof d, op->phone.e164, op->phone.region, NULL);
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
        id_respond_busy(op->req, "registration");
    else {
        gh_shield_signal(op->req, GH_SIGNAL_REGISTERED);
        id_source_success(op->req, op->phone_hash);
        id_op_finish_session(op, 201);
    }
out:
    id_op_free(op);
}

void id_hash_fn(void *arg)
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
        id_respond_busy(op->req, "registration");
        goto fail;
    }
    id_op_new_session(op);
    if (gh_store_write(ids.store, register_write_fn, op, w, register_write_done)) {
        id_respond_busy(op->req, "registration");
        goto fail;
    }
    return;
fail:
    id_op_free(op);
}

/* The one answer to a code that does not sign in: the same bytes whether
 * the code was wrong, expired, used up, or never sent (the number has no
 * account), so these paths cannot tell registered numbers from others. */
void id_respond_bad_code(struct gh_http_req *req)
{
    gh_http_respond_error_param(req, 400, "invalid_code", "code",
                                "code: wrong or expired code; check the SMS or request a new "
                                "code");
}

/* A code checked in the cluster's shared store. */
struct code_check {
    struct gh_http_req *req;
    enum gh_sms_purpose purpose;
    uint8_t key[32], hash[32];
    uint64_t now_ms;
    int result;
    id_code_fn then;
    void *arg;
};

static int code_check_fn(struct gh_store_conn *c, void *arg)
{
    struct code_check *cc = arg;
    return gh_store_sms_code_check(c, cc->key, cc->hash, cc->now_ms, &cc->result);
}

static const char *const code_busy_what[GH_SMS_NPURPOSE] = {
    [GH_SMS_REGISTER] = "registration",
    [GH_SMS_LOGIN] = "sign-in",
    [GH_SMS_RESET] = "password reset",
};

static void code_check_done(struct gh_worker *w, void *arg, int rc)
{
    struct code_check *cc = arg;
    bool ok = false;
    if (w && rc) {
        id_respond_busy(cc->req, code_busy_what[cc->purpose]);
    } else if (w) {
        ok = cc->result == 0;
        gh_shield_signal(cc->req, ok ? GH_SIGNAL_VERIFY_OK : GH_SIGNAL_VERIFY_FAIL);
        if (!ok)
            id_respond_bad_code(cc->req);
    }
    /* w NULL (the worker stopped): then only frees what it owns */
    cc->then(w ? cc->req : NULL, ok, cc->arg);
    free(cc);
}

void id_check_code(struct gh_http_req *req, const char *e164, enum gh_sms_purpose p,
                   const char *code, size_t len, id_code_fn then, void *arg)
{
    if (ids.shared_store) {
        struct code_check *cc = calloc(1, sizeof *cc);
        if (!cc) {
            id_respond_busy(req, code_busy_what[p]);
            then(req, false, arg);
            return;
        }
        *cc = (struct code_check){
            .req = req, .purpose = p, .now_ms = gh_wall_ms(), .then = then, .arg = arg};
        gh_sms_code_hashes(ids.sms, e164, p, code, len, cc->key, cc->hash);
        if (gh_store_write(ids.store, code_check_fn, cc, req->worker, code_check_done)) {
            free(cc);
            id_respond_busy(req, code_busy_what[p]);
            then(req, false, arg);
        }
        return;
    }
    int rc = gh_sms_code_check(ids.sms, e164, p, code, len, gh_now_ms());
    gh_shield_signal(req, rc == 0 ? GH_SIGNAL_VERIFY_OK : GH_SIGNAL_VERIFY_FAIL);
    if (rc)
        id_respond_bad_code(req);
    then(req, rc == 0, arg);
}

static void register_code_checked(struct gh_http_req *req, bool ok, void *arg)
{
    struct gated *g = arg;
    if (!ok)
        goto out;
    struct op *op = id_op_new(req, OP_REGISTER, &g->p);
    if (!op) {
        id_respond_busy(req, "registration");
        goto out;
    }
    memcpy(op->password, g->pw, g->pwlen);
    op->pwlen = g->pwlen;
    if (gh_pwpool_submit(ids.pool, GH_PW_REGISTER, id_hash_fn, op, req->worker,
                         register_hash_done)) {
        id_op_free(op);
        id_respond_busy(req, "registration");
    }
out:
    json_decref(g->o);
    free(g);
}

static void register_gated(struct gh_http_req *req, bool go_on, void *arg)
{
    struct gated *g = arg;
    if (!go_on || !id_limit_phone(req, GH_CLASS_REGISTER, &g->p) ||
        !id_register_cap_ok(req, gh_policy_current()) || !gh_shield_admit(req, GH_CLASS_REGISTER)) {
        json_decref(g->o);
        free(g);
        return;
    }
    id_check_code(req, g->p.e164, GH_SMS_REGISTER, g->code, g->clen, register_code_checked, g);
}

void id_h_register(struct gh_http_req *req)
{
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    struct gated *g = calloc(1, sizeof *g);
    if (!g) {
        id_respond_busy(req, "registration");
        goto out;
    }
    if (!id_field_phone(req, o, &g->p) || !id_field_code(req, o, &g->code, &g->clen) ||
        !id_field_password(req, o, &g->pw, &g->pwlen))
        goto out;
    /* cheapest refusals first, and all of them before the code is spent:
     * policy, proof of work, the cluster's shared limits (and its claim of
     * the proof of work), phone-keyed rules, the level's registration cap,
     * admission to the password pool */
    unsigned bits = gh_shield_pow_bits(GH_POW_REGISTER);
    if (!id_policy_allows(req, &g->p) || !id_pow_ok(req, o, GH_POW_REGISTER, bits))
        goto out;
    g->o = o;
    gate_then(req, g, bits, register_gated);
    return;
out:
    free(g);
    json_decref(o);
}
