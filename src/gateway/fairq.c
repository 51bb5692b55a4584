/* This module implements the gateway's fair queue (fairq.h): per model and
 * tier, a list of the users who wait, each with its own FIFO of waiters;
 * weighted fair queueing between users, each weighted by its tier. */
#include "gateway/fairq.h"

#include <stdlib.h>
#include <string.h>

struct gh_fairq_user {
    uint64_t user_id;
    unsigned model, tier;
    unsigned active, waiting;
    double tag;                 /* virtual start of its next call (valid in epoch) */
    uint64_t epoch;             /* the model queue's epoch the tag belongs to */
    struct gh_list waiters;     /* its gh_fairq_waiter nodes, arrival order */
    struct gh_list wnode;       /* in its model's tier list while waiting */
    struct gh_fairq_user *next; /* hash chain, or the free list */
};

struct model_q {
    struct gh_list users[GH_TIER_COUNT]; /* users with waiters */
    unsigned waiting[GH_TIER_COUNT];
    double v;       /* virtual time: the start tag of the last dispatch */
    uint64_t epoch; /* + 1 each time the queue empties: older tags are void */
    double hold_ms;          /* mean slot hold time (moving average), 0 = none yet */
};

struct gh_fairq {
    pthread_mutex_t mu;
    struct gh_fairq_config cfg;
    struct model_q models[GH_FAIRQ_MODELS];
    struct gh_fairq_user *pool, *free;
    struct gh_fairq_user **buckets;
    unsigned mask;
    unsigned total_waiting;
    uint64_t seq;
    struct gh_fairq_tier_stats stats[GH_TIER_COUNT];
};

/* The most one call is charged, in mean calls (gh_fairq_done_locked). */
#define MAX_COST 16.0

/* A call's length in virtual time for a user of tier: 1 / the tier's
 * weight, so a user of weight 8 has 8 calls served for one of a user of
 * weight 1 while both wait. */
static double step(const struct gh_fairq *q, unsigned tier)
{
    return 1.0 / q->cfg.weights[tier];
}

const char *gh_fairq_tier_name(unsigned tier)
{
    static const char *const names[] = {"priority", "established", "new"};
    return tier < GH_TIER_COUNT ? names[tier] : "?";
}

struct gh_fairq *gh_fairq_new(const struct gh_fairq_config *cfg)
{
    struct gh_fairq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->cfg = *cfg;
    if (!q->cfg.users)
        q->cfg.users = 1;
    unsigned nb = 16;
    while (nb < q->cfg.users && nb < (1u << 24))
        nb <<= 1;
    q->mask = nb - 1;
    q->pool = calloc(q->cfg.users, sizeof *q->pool);
    q->buckets = calloc(nb, sizeof *q->buckets);
    if (!q->pool || !q->buckets) {
        free(q->pool);
        free(q->buckets);
        free(q);
        return NULL;
    }
    for (unsigned i = q->cfg.users; i-- > 0;) {
        q->pool[i].next = q->free;
        q->free = &q->pool[i];
    }
    for (unsigned m = 0; m < GH_FAIRQ_MODELS; m++)
        for (unsigned t = 0; t < GH_TIER_COUNT; t++)
            gh_list_init(&q->models[m].users[t]);
    for (unsigned t = 0; t < GH_TIER_COUNT; t++)
        if (!q->cfg.weights[t])
            q->cfg.weights[t] = 1;
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

void gh_fairq_free(struct gh_fairq *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    free(q->pool);
    free(q->buckets);
    free(q);
}

void gh_fairq_lock(struct gh_fairq *q)
{
    pthread_mutex_lock(&q->mu);
}

void gh_fairq_unlock(struct gh_fairq *q)
{
    pthread_mutex_unlock(&q->mu);
}

static unsigned bucket_of(const struct gh_fairq *q, uint64_t user_id, unsigned model, unsigned tier)
{
    uint64_t h = (user_id * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)model << 8 | tier);
    h ^= h >> 29;
    return (unsigned)(h * 0xbf58476d1ce4e5b9ull >> 40) & q->mask;
}

/* The entry of (user_id, model, tier); created when create is set and the
 * pool has one left. */
static struct gh_fairq_user *user_get(struct gh_fairq *q, uint64_t user_id, unsigned model,
                                      unsigned tier, bool create)
{
    unsigned b = bucket_of(q, user_id, model, tier);
    for (struct gh_fairq_user *u = q->buckets[b]; u; u = u->next)
        if (u->user_id == user_id && u->model == model && u->tier == tier)
            return u;
    if (!create || !q->free)
        return NULL;
    struct gh_fairq_user *u = q->free;
    q->free = u->next;
    memset(u, 0, sizeof *u);
    u->user_id = user_id;
    u->model = model;
    u->tier = tier;
    gh_list_init(&u->waiters);
    gh_list_init(&u->wnode);
    u->next = q->buckets[b];
    q->buckets[b] = u;
    return u;
}

/* Gives u back to the pool once it neither waits nor holds a slot. */
static void user_put(struct gh_fairq *q, struct gh_fairq_user *u)
{
    if (u->active || u->waiting)
        return;
    struct gh_fairq_user **p = &q->buckets[bucket_of(q, u->user_id, u->model, u->tier)];
    while (*p && *p != u)
        p = &(*p)->next;
    GH_ASSERT(*p == u);
    if (*p)
        *p = u->next;
    u->next = q->free;
    q->free = u;
}

struct gh_fairq_user *gh_fairq_start_locked(struct gh_fairq *q, uint64_t user_id, unsigned model,
                                            unsigned tier)
{
    GH_ASSERT(model < GH_FAIRQ_MODELS && tier < GH_TIER_COUNT);
    q->stats[tier].served++;
    struct gh_fairq_user *u = user_get(q, user_id, model, tier, true);
    if (u)
        u->active++;
    return u;
}

void gh_fairq_done_locked(struct gh_fairq *q, struct gh_fairq_user *u, unsigned model,
                          uint64_t hold_ms)
{
    struct model_q *m = &q->models[model < GH_FAIRQ_MODELS ? model : 0];
    /* What a slot gives is time, and answers' lengths are unknown until
     * they end: a dispatch charged the user one step, a mean call; now
     * that the call's hold is known, the charge becomes its length in mean
     * calls (so a user of long answers has fewer of them served, one of
     * short answers more, and the capacity splits by slot time, as
     * start-time fair queueing charges a packet's real length). At most
     * MAX_COST steps for one call (a stuck stream does not push its user's
     * turn past that), and never below the last dispatch: no credit. */
    if (u && m->hold_ms > 0 && u->epoch == m->epoch) {
        double cost = GH_MIN((double)hold_ms / m->hold_ms, MAX_COST);
        u->tag += step(q, u->tier) * (cost - 1.0);
        if (u->tag < m->v)
            u->tag = m->v;
    }
    /* a moving average over about the last 8 calls: recent, not jumpy;
     * one call counts at most MAX_COST means (one stuck stream does not
     * turn every wait estimate into a refusal) */
    m->hold_ms = m->hold_ms > 0
                     ? m->hold_ms * 0.875 + GH_MIN((double)hold_ms, m->hold_ms * MAX_COST) * 0.125
                     : (double)(hold_ms ? hold_ms : 1);
    if (!u)
        return;
    GH_ASSERT(u->active > 0);
    if (u->active)
        u->active--;
    user_put(q, u);
}

int gh_fairq_push_locked(struct gh_fairq *q, struct gh_fairq_waiter *w, uint64_t user_id,
                         unsigned model, unsigned tier, uint64_t now_ms)
{
    GH_ASSERT(model < GH_FAIRQ_MODELS && tier < GH_TIER_COUNT && !w->queued);
    if (q->total_waiting >= q->cfg.queue_max)
        return GH_EBUSY;
    struct gh_fairq_user *u = user_get(q, user_id, model, tier, true);
    if (!u)
        return GH_ETOOBIG;
    if (u->waiting >= q->cfg.per_user) {
        user_put(q, u);
        return GH_ETOOBIG;
    }
    struct model_q *m = &q->models[model];
    if (!u->waiting) {
        /* joins no earlier than the last dispatch (no credit banked while
         * it did not wait), and behind it by the calls it holds already:
         * a user with 4 in flight comes after those with none */
        double tag = u->epoch == m->epoch ? u->tag : 0;
        double floor = m->v + u->active * step(q, tier);
        u->tag = tag > floor ? tag : floor;
        u->epoch = m->epoch;
        gh_list_push_back(&m->users[tier], &u->wnode);
    }
    u->waiting++;
    m->waiting[tier]++;
    q->total_waiting++;
    w->user = u;
    w->model = model;
    w->tier = tier;
    w->seq = ++q->seq;
    w->since_ms = now_ms;
    w->queued = true;
    gh_list_push_back(&u->waiters, &w->node);
    return 0;
}

/* Out of the queue; the entry stays (the caller counts it or puts it). */
static void unlink_waiter(struct gh_fairq *q, struct gh_fairq_waiter *w)
{
    struct gh_fairq_user *u = w->user;
    struct model_q *m = &q->models[w->model];
    gh_list_remove(&w->node);
    w->queued = false;
    u->waiting--;
    m->waiting[w->tier]--;
    q->total_waiting--;
    if (!u->waiting)
        gh_list_remove(&u->wnode);
    if (!gh_fairq_waiting_locked(q, w->model)) {
        m->epoch++; /* no contention left to remember */
        m->v = 0;
    }
}

void gh_fairq_remove_locked(struct gh_fairq *q, struct gh_fairq_waiter *w, bool timed_out)
{
    if (!w->queued)
        return;
    unlink_waiter(q, w);
    if (timed_out)
        q->stats[w->tier].timed_out++;
    user_put(q, w->user);
    w->user = NULL;
}

/* Whether the call finishing (virtually) at fa of tier ta, whose user's
 * head arrived as seqa, goes before the one at fb, tb, seqb: the earlier
 * finish, then the better tier, then the earlier arrival. */
static bool before(double fa, unsigned ta, uint64_t seqa, double fb, unsigned tb, uint64_t seqb)
{
    if (fa != fb)
        return fa < fb;
    if (ta != tb)
        return ta < tb;
    return seqa < seqb;
}

static uint64_t head_seq(struct gh_fairq_user *u)
{
    return GH_CONTAINER_OF(gh_list_first(&u->waiters), struct gh_fairq_waiter, node)->seq;
}

struct gh_fairq_waiter *gh_fairq_next_locked(struct gh_fairq *q, unsigned model)
{
    if (model >= GH_FAIRQ_MODELS)
        return NULL;
    struct model_q *m = &q->models[model];
    struct gh_fairq_user *best = NULL;
    double best_finish = 0;
    for (unsigned t = 0; t < GH_TIER_COUNT; t++) {
        for (struct gh_list *n = m->users[t].next; n != &m->users[t]; n = n->next) {
            struct gh_fairq_user *u = GH_CONTAINER_OF(n, struct gh_fairq_user, wnode);
            double f = u->tag + step(q, t);
            if (!best || before(f, t, head_seq(u), best_finish, best->tier, head_seq(best))) {
                best = u;
                best_finish = f;
            }
        }
    }
    return best ? GH_CONTAINER_OF(gh_list_first(&best->waiters), struct gh_fairq_waiter, node)
                : NULL;
}

struct gh_fairq_user *gh_fairq_grant_locked(struct gh_fairq *q, struct gh_fairq_waiter *w)
{
    GH_ASSERT(w->queued);
    struct gh_fairq_user *u = w->user;
    struct model_q *m = &q->models[w->model];
    m->v = u->tag;
    u->tag += step(q, w->tier);
    unlink_waiter(q, w);
    u->active++;
    q->stats[w->tier].served++;
    q->stats[w->tier].dispatched++;
    w->user = NULL;
    return u;
}

unsigned gh_fairq_waiting_locked(struct gh_fairq *q, unsigned model)
{
    if (model >= GH_FAIRQ_MODELS)
        return 0;
    unsigned n = 0;
    for (unsigned t = 0; t < GH_TIER_COUNT; t++)
        n += q->models[model].waiting[t];
    return n;
}

/* The waiters of model that go before a call finishing (virtually) at
 * mine, of tier, whose user's head arrived as my_seq; me's own are not
 * counted. */
static unsigned count_before(struct gh_fairq *q, struct model_q *m,
                             const struct gh_fairq_user *me, double mine, unsigned tier,
                             uint64_t my_seq)
{
    unsigned n = 0;
    for (unsigned t = 0; t < GH_TIER_COUNT; t++) {
        for (struct gh_list *l = m->users[t].next; l != &m->users[t]; l = l->next) {
            struct gh_fairq_user *u = GH_CONTAINER_OF(l, struct gh_fairq_user, wnode);
            if (u == me)
                continue;
            uint64_t head = head_seq(u);
            double st = step(q, t);
            for (unsigned k = 0; k < u->waiting; k++) {
                if (!before(u->tag + (k + 1) * st, t, head, mine, tier, my_seq))
                    break;
                n++;
            }
        }
    }
    return n;
}

unsigned gh_fairq_ahead_locked(struct gh_fairq *q, uint64_t user_id, unsigned model, unsigned tier)
{
    if (model >= GH_FAIRQ_MODELS || tier >= GH_TIER_COUNT)
        return 0;
    struct model_q *m = &q->models[model];
    struct gh_fairq_user *me = user_get(q, user_id, model, tier, false);
    double st = step(q, tier), start;
    unsigned mine = 0;
    if (me && me->waiting) {
        mine = me->waiting;
        start = me->tag + mine * st;
    } else {
        /* as gh_fairq_push_locked would place it */
        double tag = me && me->epoch == m->epoch ? me->tag : 0;
        double floor = m->v + (me ? me->active : 0) * st;
        start = tag > floor ? tag : floor;
    }
    /* a new call arrives last: ties in its tier count ahead */
    return mine + count_before(q, m, me, start + st, tier, UINT64_MAX);
}

unsigned gh_fairq_position_locked(struct gh_fairq *q, const struct gh_fairq_waiter *w)
{
    if (!w->queued || !w->user || w->model >= GH_FAIRQ_MODELS || w->tier >= GH_TIER_COUNT)
        return 0;
    struct model_q *m = &q->models[w->model];
    struct gh_fairq_user *me = w->user;
    unsigned rank = 1; /* among its user's waiters (at most queue_per_user) */
    for (const struct gh_list *l = me->waiters.next; l != &me->waiters && l != &w->node;
         l = l->next)
        rank++;
    /* its virtual finish, as gh_fairq_next_locked will see it: the user's
     * tag grows by a step per dispatch */
    double mine = me->tag + rank * step(q, w->tier);
    return rank + count_before(q, m, me, mine, w->tier, head_seq(me));
}

uint64_t gh_fairq_estimate_locked(struct gh_fairq *q, unsigned model, unsigned ahead,
                                  unsigned slots)
{
    if (model >= GH_FAIRQ_MODELS || !slots || q->models[model].hold_ms <= 0)
        return 0;
    return (uint64_t)((double)(ahead + 1) * q->models[model].hold_ms / slots);
}

void gh_fairq_refused_locked(struct gh_fairq *q, unsigned tier, bool full)
{
    if (tier >= GH_TIER_COUNT)
        return;
    if (full)
        q->stats[tier].refused_full++;
    else
        q->stats[tier].refused_wait++;
}

void gh_fairq_stats(struct gh_fairq *q, unsigned tier, struct gh_fairq_tier_stats *out)
{
    memset(out, 0, sizeof *out);
    if (tier >= GH_TIER_COUNT)
        return;
    gh_fairq_lock(q);
    *out = q->stats[tier];
    out->waiting = 0;
    out->oldest_since_ms = 0;
    for (unsigned i = 0; i < GH_FAIRQ_MODELS; i++) {
        struct model_q *m = &q->models[i];
        out->waiting += m->waiting[tier];
        for (struct gh_list *l = m->users[tier].next; l != &m->users[tier]; l = l->next) {
            struct gh_fairq_user *u = GH_CONTAINER_OF(l, struct gh_fairq_user, wnode);
            struct gh_fairq_waiter *h =
                GH_CONTAINER_OF(gh_list_first(&u->waiters), struct gh_fairq_waiter, node);
            if (!out->oldest_since_ms || h->since_ms < out->oldest_since_ms)
                out->oldest_since_ms = h->since_ms;
        }
    }
    gh_fairq_unlock(q);
}

int gh_fairq_parse_timeout(const char *v, size_t n, uint64_t *ms)
{
    *ms = 0;
    if (!n || n > 16)
        return GH_EINVAL;
    uint64_t whole = 0, frac = 0;
    unsigned nwhole = 0, nfrac = 0;
    bool point = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '.' && !point) {
            point = true;
        } else if (v[i] < '0' || v[i] > '9') {
            return GH_EINVAL;
        } else if (!point) {
            if (++nwhole > 9)
                return GH_EINVAL;
            whole = whole * 10 + (uint64_t)(v[i] - '0');
        } else if (++nfrac <= 3) {
            frac = frac * 10 + (uint64_t)(v[i] - '0');
        }
    }
    if (!nwhole && !nfrac)
        return GH_EINVAL; /* "." */
    for (unsigned k = nfrac; k < 3; k++)
        frac *= 10;
    uint64_t t = whole * 1000 + frac;
    if (!t)
        return GH_EINVAL;
    *ms = t;
    return 0;
}
