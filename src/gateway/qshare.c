/* This module implements the chat API's quotas shared by a cluster's
 * nodes (gw.h's gw_quota_*): with [redis] url set, a call's rpm, tpm, tpd
 * and concurrency, its API key's and its user's, are checked and taken in
 * Redis in one round trip (gh_redis_quota_send), settled there when the
 * call ends, and its concurrency leases renewed while it runs; while Redis
 * is unreachable, [redis] quota_mode decides (local: this process's table
 * with 1/nodes of each limit). Without [redis], this process's table. */
#include "gateway/gw.h"

#include "core/log.h"
#include "shield/shield.h"

#include <stdlib.h>
#include <string.h>

/* A concurrency slot's lease in Redis: a node that dies holding one frees
 * it within this; a live call renews it every third of it. */
#define LEASE_MS       60000
#define CLOSED_RETRY_S 5

/* Spare slots. With only a concurrency limit on the user (the default,
 * gateway.user_concurrency), a call's whole cost in Redis is taking its
 * slot and giving it back, two round trips that cost a cluster node more
 * than the chat itself. So a finished call's slot stays in Redis for
 * SPARE_MS, and the same user's next call on this worker takes it without
 * asking. The count in Redis never falls below what runs: the limit holds
 * exactly across the cluster; what a spare costs is a slot that another
 * node cannot have for at most SPARE_MS, so spares are kept only while
 * the user's slots were at most half its limit at the take (the Redis
 * answer says), at most half its limit and SPARES_PER_USER per user on a
 * worker, GW_SPARES per worker. A spare is reused only while its lease
 * was taken or renewed within the last third of its life: the renewals
 * go to running calls, and a chain of short calls on one slot, idle at
 * each renewal, would otherwise outlive its lease in Redis and run
 * uncounted. A node that stops leaves its spares to their leases. */
#define SPARE_MS        50
#define SPARES_PER_USER 8

static void args_of(const struct gw_call *c, enum gh_redis_quota_op op, unsigned actual,
                    struct gh_redis_quota_args *a)
{
    *a = (struct gh_redis_quota_args){.op = op,
                                      .user = c->quota_user,
                                      .key = c->who.key_id ? c->quota_key : NULL,
                                      .lease = c->lease,
                                      .est = c->est,
                                      .actual = actual,
                                      .day = c->quota_day,
                                      .lease_ms = LEASE_MS};
    const struct gh_quota_limits *l[2] = {&c->user_limits, &c->key_limits};
    for (int e = 0; e < 2; e++) {
        a->limits[e][0] = l[e]->rpm;
        a->limits[e][1] = l[e]->tpm;
        a->limits[e][2] = l[e]->tpd;
        a->limits[e][3] = l[e]->concurrency;
    }
}

static bool unlimited(const struct gh_quota_limits *l)
{
    return !l->rpm && !l->tpm && !l->tpd && !l->concurrency;
}

/* Whether c's only quota is its user's concurrency: its slot may be a
 * spare, or become one. */
static bool spare_kind(const struct gw_call *c)
{
    const struct gh_quota_limits *u = &c->user_limits;
    return u->concurrency && !u->rpm && !u->tpm && !u->tpd && unlimited(&c->key_limits);
}

static void spare_release(struct gw_worker *ww, const struct gw_spare *sp)
{
    struct gh_redis_quota_args a = {
        .op = GH_REDIS_QUOTA_SETTLE, .user = sp->user, .lease = sp->lease, .lease_ms = LEASE_MS};
    a.limits[0][3] = sp->limit;
    gh_redis_quota_send(ww->gw->redis, ww->w, &a, NULL, NULL);
}

static void on_spare_timer(uv_timer_t *t)
{
    struct gw_worker *ww = t->data;
    uint64_t now = uv_now(&ww->w->loop), next = 0;
    unsigned kept = 0;
    for (unsigned i = 0; i < ww->nspares; i++) {
        struct gw_spare *sp = &ww->spares[i];
        if (sp->until_ms <= now) {
            spare_release(ww, sp);
            continue;
        }
        if (!next || sp->until_ms < next)
            next = sp->until_ms;
        ww->spares[kept++] = *sp;
    }
    ww->nspares = kept;
    if (kept)
        uv_timer_start(t, on_spare_timer, next - now, 0);
}

/* Gives c a spare slot of its user's: true, c->lease set. */
static bool spare_take(struct gw_call *c)
{
    struct gw_worker *ww = c->ww;
    uint64_t now = uv_now(&ww->w->loop);
    for (unsigned i = ww->nspares; i-- > 0;) {
        struct gw_spare *sp = &ww->spares[i];
        /* a lease renewed within a third of its life: Redis keeps it two
         * thirds more, and the call's own renewals start within a third */
        if (sp->user_id != c->who.user_id || sp->limit != c->user_limits.concurrency ||
            sp->until_ms <= now || now - sp->lease_ms >= LEASE_MS / 3)
            continue;
        memcpy(c->lease, sp->lease, sizeof c->lease);
        c->lease_ms = sp->lease_ms;
        ww->spares[i] = ww->spares[--ww->nspares];
        return true;
    }
    return false;
}

/* Keeps finished c's slot as a spare: true, or false (settle it). */
static bool spare_put(struct gw_call *c)
{
    struct gw_worker *ww = c->ww;
    if (!c->roomy || !spare_kind(c) || ww->nspares == GW_SPARES)
        return false;
    unsigned mine = 0;
    for (unsigned i = 0; i < ww->nspares; i++)
        mine += ww->spares[i].user_id == c->who.user_id;
    if (mine >= GH_MIN(SPARES_PER_USER, c->user_limits.concurrency / 2))
        return false;
    struct gw_spare *sp = &ww->spares[ww->nspares++];
    sp->user_id = c->who.user_id;
    sp->limit = c->user_limits.concurrency;
    sp->until_ms = uv_now(&ww->w->loop) + SPARE_MS;
    sp->lease_ms = c->lease_ms;
    memcpy(sp->user, c->quota_user, sizeof sp->user);
    memcpy(sp->lease, c->lease, sizeof sp->lease);
    if (!uv_is_active((uv_handle_t *)&ww->spare_timer))
        uv_timer_start(&ww->spare_timer, on_spare_timer, SPARE_MS, 0);
    return true;
}

/* c's limits are filled (gw_quota_limits) */
static void admit_local(struct gw_call *c)
{
    if (gw_quota_admit_local(c))
        gw_call_admitted(c);
    else
        gw_call_drop(c);
}

/* Redis could not answer for c: [redis] quota_mode decides, counted. */
static void fallback(struct gw_call *c)
{
    struct gh_http_req *req = c->req;
    enum gh_shield_mode m = gh_shield_mode_parse(req->cfg->redis.quota_mode);
    gh_shield_cluster_count_fallback(m);
    switch (m) {
    case GH_SHIELD_MODE_LOCAL:
        gw_quota_limits(c, req->cfg->redis.nodes ? req->cfg->redis.nodes : 1);
        admit_local(c);
        return;
    case GH_SHIELD_MODE_OPEN:
        c->quota_by = GW_QUOTA_NONE;
        gw_call_admitted(c);
        return;
    default:
        gh_http_add_header(req, "Retry-After", "%u", CLOSED_RETRY_S);
        gh_http_respond_error(req, 503, "busy",
                              "chat requests are paused: the quotas this service's nodes share "
                              "(Redis) cannot be reached; please retry in %u seconds",
                              CLOSED_RETRY_S);
        gw_call_drop(c);
        return;
    }
}

/* The x-ratelimit-* numbers of one entity from Redis's answer. */
static void info_of(const struct gh_quota_limits *l, const struct gh_redis_quota *q, int e,
                    bool rates, struct gh_quota_info *out)
{
    memset(out, 0, sizeof *out);
    if (!rates)
        return;
    out->has_requests = l->rpm > 0;
    out->limit_requests = l->rpm;
    out->remaining_requests = q->e[e].remaining_requests;
    out->reset_requests_ms = q->e[e].reset_requests_ms;
    out->has_tokens = l->tpm > 0;
    out->limit_tokens = l->tpm;
    out->remaining_tokens = q->e[e].remaining_tokens;
    out->reset_tokens_ms = q->e[e].reset_tokens_ms;
}

static void on_take(void *arg, int status, const struct gh_redis_quota *res)
{
    static const enum gh_quota_verdict verdicts[] = {
        GH_QUOTA_OK, GH_QUOTA_REQUESTS, GH_QUOTA_TOKENS, GH_QUOTA_CONCURRENCY, GH_QUOTA_BALANCE};
    struct gw_call *c = arg;
    struct gh_gateway *gw = c->gw;
    if (!status)
        c->quota_day = res->day;
    if (!c->req->conn) {
        /* the client left while Redis answered: give back what was taken */
        if (!status && !res->verdict) {
            struct gh_redis_quota_args a;
            args_of(c, GH_REDIS_QUOTA_SETTLE, 0, &a);
            gh_redis_quota_send(gw->redis, c->ww->w, &a, NULL, NULL);
        }
        gh_http_respond_error(c->req, 503, "busy", "the client has gone"); /* frees it */
        gw_call_drop(c);
        return;
    }
    if (status) {
        fallback(c);
        return;
    }
    c->quota_by = GW_QUOTA_REDIS;
    c->roomy = res->user_leases && res->user_leases * 2 <= c->user_limits.concurrency;
    c->lease_ms = uv_now(&c->ww->w->loop);
    enum gh_quota_verdict v =
        res->verdict < GH_ARRAY_LEN(verdicts) ? verdicts[res->verdict] : GH_QUOTA_FULL;
    bool user_refused = v != GH_QUOTA_OK && res->who == 2;
    bool rate_refusal = v == GH_QUOTA_REQUESTS || v == GH_QUOTA_TOKENS;
    /* whose rates the script looked at: the key's first, then the user's */
    bool key_rates = v == GH_QUOTA_OK || user_refused || rate_refusal;
    bool user_rates = v == GH_QUOTA_OK || (user_refused && rate_refusal);
    struct gh_quota_info ki, ui;
    info_of(&c->key_limits, res, 1, key_rates && c->who.key_id, &ki);
    info_of(&c->user_limits, res, 0, user_rates, &ui);
    (user_refused ? &ui : &ki)->retry_after_ms = res->retry_ms;
    if (!gw_quota_answer(c, v, user_refused, &ki, &ui)) {
        gw_call_drop(c);
        return;
    }
    if (c->user_limits.concurrency || c->key_limits.concurrency)
        gh_list_push_back(&c->ww->leases, &c->lease_node);
    gw_call_admitted(c);
}

void gw_quota_admit(struct gw_call *c)
{
    struct gh_gateway *gw = c->gw;
    c->day = gh_usage_today();
    gw_quota_limits(c, 1);
    if (!gw->redis) {
        admit_local(c);
        return;
    }
    if (unlimited(&c->user_limits) && unlimited(&c->key_limits)) {
        c->quota_by = GW_QUOTA_NONE; /* nothing to count anywhere */
        gw_call_admitted(c);
        return;
    }
    /* the key's counters live under the user's hash tag (one slot) */
    gh_redis_key(gw->redis, "quota_user", &c->who.user_id, sizeof c->who.user_id, c->quota_user);
    if (c->who.key_id)
        gh_redis_key(gw->redis, "quota_key", &c->who.key_id, sizeof c->who.key_id, c->quota_key);
    if (spare_kind(c) && spare_take(c)) {
        c->quota_by = GW_QUOTA_REDIS;
        c->roomy = true;
        gh_list_push_back(&c->ww->leases, &c->lease_node);
        gw_call_admitted(c);
        return;
    }
    snprintf(c->lease, sizeof c->lease, "%s", c->id);
    struct gh_redis_quota_args a;
    args_of(c, GH_REDIS_QUOTA_TAKE, 0, &a);
    if (gh_redis_quota_send(gw->redis, c->ww->w, &a, on_take, c))
        fallback(c);
}

void gw_quota_settle(struct gw_call *c)
{
    struct gh_gateway *gw = c->gw;
    unsigned actual = c->prompt_tokens + c->completion_tokens;
    if (gh_list_linked(&c->lease_node))
        gh_list_remove(&c->lease_node);
    /* rpm alone needs no settle: the request was counted at its take */
    bool settles = c->user_limits.tpm || c->user_limits.tpd || c->user_limits.concurrency ||
                   c->key_limits.tpm || c->key_limits.tpd || c->key_limits.concurrency;
    if (c->quota_by == GW_QUOTA_REDIS) {
        /* a slot kept as a spare is settled when it expires unused;
         * unanswered (Redis gone): the lease expires by itself and the
         * estimate stays charged to the day */
        if (settles && !spare_put(c)) {
            struct gh_redis_quota_args a;
            args_of(c, GH_REDIS_QUOTA_SETTLE, actual, &a);
            gh_redis_quota_send(gw->redis, c->ww->w, &a, NULL, NULL);
        }
    } else if (c->quota_by == GW_QUOTA_LOCAL) {
        int64_t now = (int64_t)gh_now_ns();
        gh_quota_release(gw->quotas, GH_QUOTA_USER, c->who.user_id, &c->user_limits, now, c->day,
                         c->est, actual);
        if (c->who.key_id)
            gh_quota_release(gw->quotas, GH_QUOTA_KEY, c->who.key_id, &c->key_limits, now, c->day,
                             c->est, actual);
    }
}

static void on_lease_timer(uv_timer_t *t)
{
    struct gw_worker *ww = t->data;
    for (struct gh_list *n = ww->leases.next; n != &ww->leases; n = n->next) {
        struct gw_call *c = GH_CONTAINER_OF(n, struct gw_call, lease_node);
        struct gh_redis_quota_args a;
        args_of(c, GH_REDIS_QUOTA_RENEW, 0, &a);
        if (!gh_redis_quota_send(ww->gw->redis, ww->w, &a, NULL, NULL))
            c->lease_ms = uv_now(&ww->w->loop);
    }
}

void gw_quota_start_renewal(struct gw_worker *ww)
{
    if (ww->gw->redis)
        uv_timer_start(&ww->lease_timer, on_lease_timer, LEASE_MS / 3, LEASE_MS / 3);
}

/* ---- GET /user/balance ---- */

struct peek {
    struct gh_gateway *gw;
    struct gh_http_req *req;
    struct gh_principal who;
    unsigned tpd[2];
};

static void on_peek(void *arg, int status, const struct gh_redis_quota *res)
{
    struct peek *p = arg;
    if (status) {
        gw_balance_local(p->gw, p->req, &p->who, p->tpd);
    } else {
        uint64_t spent[2] = {res->e[0].spent, res->e[1].spent};
        gw_balance_respond(p->req, p->tpd, spent);
    }
    free(p);
}

void gw_quota_balance(struct gh_gateway *gw, struct gh_http_req *req,
                      const struct gh_principal *who, const unsigned tpd[2])
{
    struct peek *p = gw->redis ? calloc(1, sizeof *p) : NULL;
    if (!p) {
        gw_balance_local(gw, req, who, tpd);
        return;
    }
    *p = (struct peek){.gw = gw, .req = req, .who = *who, .tpd = {tpd[0], tpd[1]}};
    /* only the day's counts are read; a limit field above 0 says "look" */
    struct gh_redis_quota_args a = {.op = GH_REDIS_QUOTA_PEEK,
                                    .user = NULL,
                                    .lease = "",
                                    .limits = {{0, 0, tpd[0], 0}, {0, 0, tpd[1], 0}}};
    char user[GH_REDIS_KEY_MAX], key[GH_REDIS_KEY_MAX];
    gh_redis_key(gw->redis, "quota_user", &who->user_id, sizeof who->user_id, user);
    a.user = user;
    if (who->key_id) {
        gh_redis_key(gw->redis, "quota_key", &who->key_id, sizeof who->key_id, key);
        a.key = key;
    }
    if (gh_redis_quota_send(gw->redis, req->worker, &a, on_peek, p)) {
        free(p);
        gw_balance_local(gw, req, who, tpd);
    }
}
