/* This module implements the shield's limits shared through Redis
 * (cluster.h, shield.h's gh_shield_cluster_*): which rules are shared, the
 * asynchronous gate that asks Redis for a request's shared rules and
 * proof-of-work claim in one pipeline, and the failure modes (local share,
 * open, closed) while Redis is unreachable. */
#include "shield/cluster.h"

#include "core/log.h"
#include "obs/metrics.h"
#include "shield/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define GATE_MAX       8 /* shared rules of one request, at most */
#define LISTENERS_MAX  4
#define CLOSED_RETRY_S 5

enum mode { MODE_LOCAL, MODE_OPEN, MODE_CLOSED, MODE_COUNT };
_Static_assert((int)MODE_LOCAL == (int)GH_SHIELD_MODE_LOCAL &&
                   (int)MODE_OPEN == (int)GH_SHIELD_MODE_OPEN &&
                   (int)MODE_CLOSED == (int)GH_SHIELD_MODE_CLOSED,
               "cluster.c's modes are shield.h's");
static const char *const mode_names[MODE_COUNT] = {"local", "open", "closed"};

struct gh_cluster {
    struct gh_redis *redis;
    unsigned nodes;
    uint64_t pow_ttl_ms;
    atomic_int register_mode;
    atomic_int sms_mode;
    atomic_int login_mode;
    atomic_int anon_mode;
    struct {
        void (*fn)(bool up, void *data);
        void *data;
    } listeners[LISTENERS_MAX];
    unsigned nlisteners;
    _Atomic uint64_t *m_fallbacks[MODE_COUNT];
    _Atomic uint64_t *m_replayed;
};

/* The process's shared limits: set by init (before the workers run),
 * cleared by dispose (after they stopped), like the_shield. */
static struct gh_cluster *the_cluster;

static enum mode parse_mode(const char *s)
{
    for (int m = 0; m < MODE_COUNT; m++)
        if (!strcmp(s, mode_names[m]))
            return (enum mode)m;
    return MODE_CLOSED;
}

enum gh_shield_mode gh_shield_mode_parse(const char *s)
{
    return (enum gh_shield_mode)parse_mode(s);
}

static void on_change(bool up, void *data)
{
    struct gh_cluster *cl = data;
    for (unsigned i = 0; i < cl->nlisteners; i++)
        cl->listeners[i].fn(up, cl->listeners[i].data);
}

int gh_cluster_init(struct gh_server *srv, const struct gh_config *cfg, struct gh_buf *err)
{
    if (!*cfg->redis.url)
        return 0;
    struct gh_cluster *cl = calloc(1, sizeof *cl);
    if (!cl)
        return GH_ENOMEM;
    int rc = gh_redis_new(srv, cfg, on_change, cl, &cl->redis, err);
    if (rc) {
        free(cl);
        return rc;
    }
    cl->nodes = cfg->redis.nodes;
    cl->pow_ttl_ms = cfg->shield.pow_ttl_ms;
    atomic_init(&cl->register_mode, (int)parse_mode(cfg->redis.register_mode));
    atomic_init(&cl->sms_mode, (int)parse_mode(cfg->redis.sms_mode));
    atomic_init(&cl->login_mode, (int)parse_mode(cfg->redis.login_mode));
    atomic_init(&cl->anon_mode, (int)parse_mode(cfg->redis.anon_mode));
    for (int m = 0; m < MODE_COUNT; m++) {
        char labels[32];
        snprintf(labels, sizeof labels, "mode=\"%s\"", mode_names[m]);
        cl->m_fallbacks[m] = gh_metrics_counter(
            "gatehouse_redis_fallbacks_total", labels,
            "requests whose shared limits were decided without Redis, by failure mode");
    }
    cl->m_replayed = gh_metrics_counter(
        "gatehouse_redis_pow_replayed_total", "",
        "proof-of-work solutions refused because another node (or this one) had taken them");
    the_cluster = cl;
    return 0;
}

void gh_cluster_dispose(void)
{
    struct gh_cluster *cl = the_cluster;
    the_cluster = NULL;
    if (!cl)
        return;
    gh_redis_free(cl->redis);
    free(cl);
}

void gh_cluster_reload(const struct gh_config *cfg)
{
    if (!the_cluster)
        return;
    atomic_store(&the_cluster->register_mode, (int)parse_mode(cfg->redis.register_mode));
    atomic_store(&the_cluster->sms_mode, (int)parse_mode(cfg->redis.sms_mode));
    atomic_store(&the_cluster->login_mode, (int)parse_mode(cfg->redis.login_mode));
    atomic_store(&the_cluster->anon_mode, (int)parse_mode(cfg->redis.anon_mode));
}

bool gh_cluster_owns(const struct gh_limit_rule *r)
{
    if (!the_cluster ||
        (r->cls != GH_CLASS_REGISTER && r->cls != GH_CLASS_LOGIN && r->cls != GH_CLASS_ANON))
        return false;
    /* anon's per-address rule stays local (the hot path's: docs/internals/shield.md) */
    switch (r->kind) {
    case GH_LKEY_PREFIX:
    case GH_LKEY_PREFIX48:
    case GH_LKEY_GLOBAL:
    case GH_LKEY_PHONE_PREFIX:
    case GH_LKEY_CALLING_CODE:
        return true;
    default:
        return false;
    }
}

/* ---- shield.h's side ---- */

int gh_shield_cluster_state(void)
{
    return the_cluster ? (gh_redis_up(the_cluster->redis) ? 1 : 0) : -1;
}

struct gh_redis *gh_shield_cluster_redis(void)
{
    return the_cluster ? the_cluster->redis : NULL;
}

/* The failure mode of cls's shared rules: registration's, sign-in's or
 * anonymous traffic's. */
static enum mode class_mode(struct gh_cluster *cl, enum gh_class cls)
{
    return (enum mode)atomic_load(cls == GH_CLASS_LOGIN  ? &cl->login_mode
                                  : cls == GH_CLASS_ANON ? &cl->anon_mode
                                                         : &cl->register_mode);
}

bool gh_shield_cluster_closed(enum gh_class cls)
{
    struct gh_cluster *cl = the_cluster;
    return cl && (cls == GH_CLASS_REGISTER || cls == GH_CLASS_LOGIN) &&
           !gh_redis_up(cl->redis) && class_mode(cl, cls) == MODE_CLOSED;
}

int gh_shield_subscribe_cluster(void (*fn)(bool up, void *data), void *data)
{
    struct gh_cluster *cl = the_cluster;
    if (!cl)
        return 0; /* nothing will ever change */
    if (cl->nlisteners == LISTENERS_MAX)
        return GH_ETOOBIG;
    cl->listeners[cl->nlisteners].fn = fn;
    cl->listeners[cl->nlisteners].data = data;
    cl->nlisteners++;
    return 0;
}

/* ---- the gate ---- */

struct gate {
    struct gh_cluster *cl;
    struct gh_http_req *req;
    enum gh_class cls;
    gh_shield_gate_cb cb;
    void *arg;
    uint64_t now_ns;
    unsigned outstanding; /* answers still to come */
    bool sending;         /* the sends are not all out yet */
    unsigned n;
    struct {
        const struct gh_limit_rule *r;
        uint64_t lkey; /* the local table's key: the header filter's memo, the local share */
        char key[GH_REDIS_KEY_MAX];
        int status; /* 0 answered, GH_EIO unreachable */
        struct gh_redis_gcra g;
    } e[GATE_MAX];
    bool has_claim;
    int claim_status;
    bool claimed;
    char claim_key[GH_REDIS_KEY_MAX];
};

/* Sends entry i's GCRA step (or, with refund, gives its unit back): the
 * rule's rate in microseconds, as gh_limit_gcra has it in nanoseconds. */
static int rule_send(struct gate *g, unsigned i, bool refund, gh_redis_gcra_cb cb, void *arg)
{
    const struct gh_limit *lim = &g->e[i].r->lim;
    uint32_t count = lim->count ? lim->count : 1;
    uint64_t t_us = GH_MAX(lim->period_ns / count / 1000, 1ull);
    uint64_t tau_us = t_us * (lim->burst ? lim->burst : count);
    return gh_redis_gcra_send(g->cl->redis, g->req->worker, g->e[i].key, t_us, tau_us, 1, refund,
                              cb, arg);
}

/* Gives back what the rules that passed in Redis took, all but skip's
 * (a request refused by one rule must not spend the others). */
static void refund(struct gate *g, int skip)
{
    for (unsigned i = 0; i < g->n; i++)
        if ((int)i != skip && g->e[i].status == 0 && g->e[i].g.allowed && !g->e[i].r->dry_run)
            rule_send(g, i, true, NULL, NULL);
}

/* The local share of rule r while Redis is away: 1/nodes of its rate and
 * burst, at least 1, in this process's table under the rule's own key. */
static void local_share(struct gate *g, unsigned i, struct gh_limit_decision *d)
{
    const struct gh_limit_rule *r = g->e[i].r;
    struct gh_limit lim = r->lim;
    unsigned nodes = g->cl->nodes ? g->cl->nodes : 1;
    uint32_t burst = lim.burst ? lim.burst : lim.count;
    lim.count = GH_MAX(lim.count / nodes, 1u);
    lim.burst = GH_MAX(burst / nodes, 1u);
    gh_limiter_check(gh_shield_limiter(), g->e[i].lkey, &lim, 1, g->now_ns, r->dry_run, d);
}

static void from_redis(const struct gh_redis_gcra *x, const struct gh_limit_rule *r,
                       struct gh_limit_decision *d)
{
    memset(d, 0, sizeof *d);
    d->limited = !x->allowed;
    d->allowed = x->allowed || r->dry_run;
    d->impossible = x->impossible;
    d->limit = r->lim.burst ? r->lim.burst : r->lim.count;
    d->remaining = x->remaining;
    d->reset_ns = x->reset_us * 1000;
    d->retry_after_ns = x->impossible ? r->lim.period_ns : x->retry_after_us * 1000;
}

static void closed_answer(struct gh_http_req *req, enum gh_class cls)
{
    gh_http_add_header(req, "Retry-After", "%u", CLOSED_RETRY_S);
    gh_http_respond_error(req, 503, "busy",
                          "%s is paused: the limits this service's nodes share (Redis) cannot "
                          "be reached; please retry in %u seconds",
                          cls == GH_CLASS_LOGIN  ? "sign-in"
                          : cls == GH_CLASS_ANON ? "anonymous access"
                                                 : "registration",
                          CLOSED_RETRY_S);
}

static void gate_finish(struct gate *g)
{
    struct gh_cluster *cl = g->cl;
    struct gh_http_req *req = g->req;
    enum mode mode = class_mode(cl, g->cls);
    bool fell = g->has_claim && g->claim_status;
    for (unsigned i = 0; i < g->n; i++)
        fell |= g->e[i].status != 0;
    bool go_on = false;
    if (fell && cl->m_fallbacks[mode])
        atomic_fetch_add_explicit(cl->m_fallbacks[mode], 1, memory_order_relaxed);
    if (fell && mode == MODE_CLOSED) {
        refund(g, -1);
        closed_answer(req, g->cls);
        goto out;
    }
    for (unsigned i = 0; i < g->n; i++) {
        struct gh_limit_decision d = {.allowed = true, .limit = 1};
        if (g->e[i].status == 0)
            from_redis(&g->e[i].g, g->e[i].r, &d);
        else if (mode == MODE_LOCAL)
            local_share(g, i, &d);
        if (!gh_shield_rule_decided(req, g->cls, g->e[i].r, g->e[i].lkey, g->now_ns, &d)) {
            refund(g, (int)i);
            goto out;
        }
    }
    /* the local replay cache took it already (gh_shield_pow_verify): this
     * asks whether any other node did */
    if (g->has_claim && g->claim_status == 0 && !g->claimed) {
        if (cl->m_replayed)
            atomic_fetch_add_explicit(cl->m_replayed, 1, memory_order_relaxed);
        refund(g, -1);
        gh_http_respond_error_param(req, 403, "pow_required", "pow",
                                    "proof of work refused (replayed): this challenge was used "
                                    "already; get a new one with GET /api/pow/challenge and solve "
                                    "it");
        goto out;
    }
    go_on = true;
out:
    g->cb(req, go_on, g->arg);
    free(g);
}

static void gate_step(struct gate *g)
{
    if (--g->outstanding == 0 && !g->sending)
        gate_finish(g);
}

/* A small record per command: the gate and the entry it answers. */
struct ticket {
    struct gate *g;
    int idx; /* -1: the claim */
};

static void on_gcra_ticket(void *arg, int status, const struct gh_redis_gcra *res)
{
    struct ticket *t = arg;
    struct gate *g = t->g;
    g->e[t->idx].status = status;
    if (!status)
        g->e[t->idx].g = *res;
    free(t);
    gate_step(g);
}

static void on_claim_ticket(void *arg, int status, bool claimed)
{
    struct ticket *t = arg;
    struct gate *g = t->g;
    g->claim_status = status;
    g->claimed = claimed;
    free(t);
    gate_step(g);
}

static struct ticket *ticket(struct gate *g, int idx)
{
    struct ticket *t = malloc(sizeof *t);
    if (t) {
        t->g = g;
        t->idx = idx;
    }
    return t;
}

/* The data a shared rule keys on (the local table's key data, less the
 * addresses of addr rules, which are never shared): the prefix bytes, the
 * number's prefix or calling code, nothing for global. */
static size_t key_data(const struct gh_limit_rule *r, const struct gh_addr *a, const char *e164,
                       const char *cc, unsigned char *out)
{
    size_t n = 0;
    switch (r->kind) {
    case GH_LKEY_PREFIX:
    case GH_LKEY_PREFIX48: {
        bool v4 = a->family == AF_INET;
        size_t keep = v4 ? 3 : r->kind == GH_LKEY_PREFIX ? 8 : 6;
        out[n++] = v4 ? 4 : 6;
        memcpy(out + n, a->bytes, keep);
        return n + keep;
    }
    case GH_LKEY_PHONE_PREFIX: {
        size_t len = strlen(e164);
        len = len > 4 ? len - 4 : 0;
        len = GH_MIN(len, (size_t)32);
        memcpy(out, e164, len);
        return len;
    }
    case GH_LKEY_CALLING_CODE: {
        size_t len = GH_MIN(strlen(cc), (size_t)32);
        memcpy(out, cc, len);
        return len;
    }
    default:
        return 0;
    }
}

int gh_shield_cluster_gate(struct gh_http_req *req, enum gh_class cls, const char *e164,
                           const char *calling_code, const char *pow_challenge,
                           gh_shield_gate_cb cb, void *arg)
{
    struct gh_cluster *cl = the_cluster;
    if (!cl || !req->cfg->shield.enabled || gh_shield_allowed(req))
        return GH_ENOTFOUND;
    struct gate *g = calloc(1, sizeof *g);
    if (!g)
        return GH_ENOMEM;
    g->cl = cl;
    g->req = req;
    g->cls = cls;
    g->cb = cb;
    g->arg = arg;
    g->now_ns = req->start_ns ? req->start_ns : gh_now_ns();
    const struct gh_limit_rules *rs = gh_shield_rules_now();
    struct gh_limit_subject subj = {
        .addr = &req->client, .phone = e164, .calling_code = calling_code};
    for (unsigned i = 0; i < rs->n && g->n < GATE_MAX; i++) {
        const struct gh_limit_rule *r = &rs->rules[i];
        uint64_t lkey;
        if (r->cls != cls || !gh_cluster_owns(r) ||
            !gh_limit_rule_key(gh_shield_limiter(), r, &subj, &lkey))
            continue;
        unsigned char data[40];
        size_t dl = key_data(r, &req->client, e164, calling_code, data);
        g->e[g->n].r = r;
        g->e[g->n].lkey = lkey;
        gh_redis_key(cl->redis, r->name, data, dl, g->e[g->n].key);
        g->n++;
    }
    if (pow_challenge && *pow_challenge) {
        g->has_claim = true;
        gh_redis_key(cl->redis, "pow", pow_challenge, strlen(pow_challenge), g->claim_key);
    }
    if (!g->n && !g->has_claim) {
        free(g);
        return GH_ENOTFOUND;
    }
    /* one pipeline: every command goes out before the first answer is read */
    g->sending = true;
    for (unsigned i = 0; i < g->n; i++) {
        struct ticket *t = ticket(g, (int)i);
        g->e[i].status = GH_EIO;
        if (t && !rule_send(g, i, false, on_gcra_ticket, t))
            g->outstanding++;
        else
            free(t);
    }
    if (g->has_claim) {
        struct ticket *t = ticket(g, -1);
        g->claim_status = GH_EIO;
        if (t && !gh_redis_claim_send(cl->redis, req->worker, g->claim_key, cl->pow_ttl_ms,
                                      on_claim_ticket, t))
            g->outstanding++;
        else
            free(t);
    }
    g->sending = false;
    if (g->outstanding == 0)
        gate_finish(g); /* every send failed at once: decided now */
    return 0;
}

/* ---- fixed windows (identity's SMS budgets) ---- */

#define WINDOWS_MAX 8

struct windows {
    struct gh_cluster *cl;
    struct gh_worker *worker;
    gh_shield_local_budget_fn local;
    gh_shield_windows_cb cb;
    void *arg;
    unsigned n, outstanding;
    bool sending;
    struct {
        const char *name;
        char key[GH_REDIS_KEY_MAX];
        uint64_t period_ms;
        unsigned cap;
        int status;
        bool charged;
        uint64_t wait_ms;
    } e[WINDOWS_MAX];
};

struct wticket {
    struct windows *ws;
    unsigned idx;
};

static void windows_finish(struct windows *ws)
{
    int rc = 0;
    uint64_t wait = 0;
    const char *which = NULL;
    bool fell = false, full = false;
    for (unsigned i = 0; i < ws->n; i++) {
        fell |= ws->e[i].status != 0;
        if (ws->e[i].status == 0 && !ws->e[i].charged) {
            full = true;
            if (!which || ws->e[i].wait_ms > wait) {
                wait = ws->e[i].wait_ms;
                which = ws->e[i].name;
            }
        }
    }
    /* all or none: a full window, or one unanswered, takes back the rest */
    if (full || fell)
        for (unsigned i = 0; i < ws->n; i++)
            if (ws->e[i].status == 0 && ws->e[i].charged)
                gh_redis_window_send(ws->cl->redis, ws->worker, ws->e[i].key, ws->e[i].period_ms,
                                     ws->e[i].cap, true, NULL, NULL);
    if (full) {
        rc = GH_EBUSY;
    } else if (fell) {
        enum mode mode = (enum mode)atomic_load(&ws->cl->sms_mode);
        if (ws->cl->m_fallbacks[mode])
            atomic_fetch_add_explicit(ws->cl->m_fallbacks[mode], 1, memory_order_relaxed);
        rc = mode == MODE_CLOSED ? GH_EIO
             : mode == MODE_LOCAL
                 ? ws->local(ws->arg, ws->cl->nodes ? ws->cl->nodes : 1, &wait, &which)
                 : 0;
    }
    ws->cb(rc, wait, which, ws->arg);
    free(ws);
}

static void on_window(void *arg, int status, bool charged, uint64_t wait_ms)
{
    struct wticket *t = arg;
    struct windows *ws = t->ws;
    ws->e[t->idx].status = status;
    ws->e[t->idx].charged = charged;
    ws->e[t->idx].wait_ms = wait_ms;
    free(t);
    if (--ws->outstanding == 0 && !ws->sending)
        windows_finish(ws);
}

int gh_shield_cluster_windows(struct gh_worker *worker, const struct gh_shield_window *w,
                              unsigned n, gh_shield_local_budget_fn local, gh_shield_windows_cb cb,
                              void *arg)
{
    struct gh_cluster *cl = the_cluster;
    if (!cl)
        return GH_ENOTFOUND;
    struct windows *ws = calloc(1, sizeof *ws);
    if (!ws)
        return GH_ENOMEM;
    *ws = (struct windows){.cl = cl,
                           .worker = worker,
                           .local = local,
                           .cb = cb,
                           .arg = arg,
                           .n = GH_MIN(n, (unsigned)WINDOWS_MAX),
                           .sending = true};
    for (unsigned i = 0; i < ws->n; i++) {
        ws->e[i].name = w[i].name;
        ws->e[i].period_ms = w[i].period_ms;
        ws->e[i].cap = w[i].cap;
        ws->e[i].status = GH_EIO;
        gh_redis_key(cl->redis, "sms", w[i].key, w[i].keylen, ws->e[i].key);
        struct wticket *t = malloc(sizeof *t);
        if (t) {
            t->ws = ws;
            t->idx = i;
        }
        if (t && !gh_redis_window_send(cl->redis, worker, ws->e[i].key, w[i].period_ms, w[i].cap,
                                       false, on_window, t))
            ws->outstanding++;
        else
            free(t);
    }
    ws->sending = false;
    if (ws->outstanding == 0)
        windows_finish(ws);
    return 0;
}

/* ---- an account's failed sign-ins ---- */

struct fails_req {
    gh_shield_fails_cb cb;
    void *arg;
};

static void on_fails(void *arg, int status, unsigned n, uint64_t wait_ms)
{
    struct fails_req *f = arg;
    f->cb(status, n, wait_ms, f->arg);
    free(f);
}

int gh_shield_cluster_fails(struct gh_worker *worker, enum gh_shield_fails_op op,
                            const uint8_t key[16], unsigned floor, uint64_t base_ms,
                            uint64_t max_ms, gh_shield_fails_cb cb, void *arg)
{
    static const enum gh_redis_fails_op ops[] = {GH_REDIS_FAILS_GET, GH_REDIS_FAILS_ADD,
                                                 GH_REDIS_FAILS_CLEAR};
    struct gh_cluster *cl = the_cluster;
    if (!cl)
        return GH_ENOTFOUND;
    char rkey[GH_REDIS_KEY_MAX];
    gh_redis_key(cl->redis, "login_fails", key, 16, rkey);
    struct fails_req *f = cb ? malloc(sizeof *f) : NULL;
    if (cb && !f)
        return GH_ENOMEM;
    if (f)
        *f = (struct fails_req){cb, arg};
    /* the account's entry lives a day past its last failure, as in memory */
    if (gh_redis_fails_send(cl->redis, worker, rkey, ops[op], floor, base_ms, max_ms,
                            24ull * 3600 * 1000, f ? on_fails : NULL, f)) {
        free(f);
        if (cb)
            cb(GH_EIO, 0, 0, arg);
    }
    return 0;
}

void gh_shield_cluster_count_fallback(enum gh_shield_mode m)
{
    struct gh_cluster *cl = the_cluster;
    if (cl && (int)m >= 0 && (int)m < MODE_COUNT && cl->m_fallbacks[m])
        atomic_fetch_add_explicit(cl->m_fallbacks[m], 1, memory_order_relaxed);
}

enum gh_shield_mode gh_shield_cluster_login_fallback(void)
{
    struct gh_cluster *cl = the_cluster;
    if (!cl)
        return GH_SHIELD_MODE_LOCAL;
    enum gh_shield_mode m = (enum gh_shield_mode)atomic_load(&cl->login_mode);
    gh_shield_cluster_count_fallback(m);
    return m;
}
