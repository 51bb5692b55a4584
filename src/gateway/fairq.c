/* This module implements the gateway's fair queue (fairq.h): per model and
 * tier, a list of the users who wait, each with its own FIFO of waiters;
 * stride scheduling between tiers, start-time fair queueing between users. */
#include "gateway/fairq.h"

#include <stdlib.h>
#include <string.h>

struct gh_fairq_user {
    uint64_t user_id;
    unsigned model, tier;
    unsigned active, waiting;
    double tag;                 /* start tag of its next call (valid in epoch) */
    uint64_t epoch;             /* the model queue's epoch the tag belongs to */
    struct gh_list waiters;     /* its gh_fairq_waiter nodes, arrival order */
    struct gh_list wnode;       /* in its model's tier list while waiting */
    struct gh_fairq_user *next; /* hash chain, or the free list */
};

struct model_q {
    struct gh_list users[GH_TIER_COUNT]; /* users with waiters */
    unsigned waiting[GH_TIER_COUNT];
    double pass[GH_TIER_COUNT];
    double vt;               /* the pass of the last dispatch */
    double v[GH_TIER_COUNT]; /* per tier: the tag of the last dispatch */
    uint64_t epoch;          /* + 1 each time the queue empties: older tags are void */
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
    /* a moving average over about the last 8 calls: recent, not jumpy */
    m->hold_ms = m->hold_ms > 0 ? m->hold_ms * 0.875 + (double)hold_ms * 0.125
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
    if (!gh_fairq_waiting_locked(q, model)) {
        /* the queue was empty: no contention to remember, every tier even */
        memset(m->pass, 0, sizeof m->pass);
        m->vt = 0;
    } else if (!m->waiting[tier] && m->pass[tier] < m->vt) {
        m->pass[tier] = m->vt; /* joins at the current pass: no credit banked while idle */
    }
    if (!u->waiting) {
        /* joins no earlier than the last dispatch, and behind it by the
         * calls it holds already: a user with 4 in flight comes after
         * those with none */
        double tag = u->epoch == m->epoch ? u->tag : 0;
        double floor = m->v[tier] + u->active;
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
        memset(m->v, 0, sizeof m->v);
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

struct gh_fairq_waiter *gh_fairq_next_locked(struct gh_fairq *q, unsigned model)
{
    if (model >= GH_FAIRQ_MODELS)
        return NULL;
    struct model_q *m = &q->models[model];
    int tier = -1;
    for (unsigned t = 0; t < GH_TIER_COUNT; t++)
        if (m->waiting[t] && (tier < 0 || m->pass[t] < m->pass[tier]))
            tier = (int)t;
    if (tier < 0)
        return NULL;
    /* the user with the lowest start tag, then the earliest head */
    struct gh_fairq_waiter *best = NULL;
    double best_tag = 0;
    for (struct gh_list *n = m->users[tier].next; n != &m->users[tier]; n = n->next) {
        struct gh_fairq_user *u = GH_CONTAINER_OF(n, struct gh_fairq_user, wnode);
        struct gh_fairq_waiter *h =
            GH_CONTAINER_OF(gh_list_first(&u->waiters), struct gh_fairq_waiter, node);
        if (!best || u->tag < best_tag || (u->tag == best_tag && h->seq < best->seq)) {
            best = h;
            best_tag = u->tag;
        }
    }
    return best;
}

struct gh_fairq_user *gh_fairq_grant_locked(struct gh_fairq *q, struct gh_fairq_waiter *w)
{
    GH_ASSERT(w->queued);
    struct gh_fairq_user *u = w->user;
    struct model_q *m = &q->models[w->model];
    m->vt = m->pass[w->tier];
    m->pass[w->tier] += 1.0 / q->cfg.weights[w->tier];
    /* start-time fair queueing between the tier's users: one call each */
    m->v[w->tier] = u->tag;
    u->tag += 1;
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

unsigned gh_fairq_ahead_locked(struct gh_fairq *q, uint64_t user_id, unsigned model, unsigned tier)
{
    if (model >= GH_FAIRQ_MODELS || tier >= GH_TIER_COUNT)
        return 0;
    struct model_q *m = &q->models[model];
    unsigned n = 0;
    for (unsigned t = 0; t < tier; t++)
        n += m->waiting[t];
    struct gh_fairq_user *me = user_get(q, user_id, model, tier, false);
    unsigned mine = me ? me->waiting : 0;
    for (struct gh_list *l = m->users[tier].next; l != &m->users[tier]; l = l->next) {
        struct gh_fairq_user *u = GH_CONTAINER_OF(l, struct gh_fairq_user, wnode);
        n += u == me ? u->waiting : GH_MIN(u->waiting, mine + 1);
    }
    return n;
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
    /* its start tag, as gh_fairq_next_locked will see it: the user's tag
     * grows by one per dispatch; a tie goes to the earlier head */
    double mine = me->tag + rank - 1;
    uint64_t my_head =
        GH_CONTAINER_OF(gh_list_first(&me->waiters), struct gh_fairq_waiter, node)->seq;
    unsigned n = rank;
    for (unsigned t = 0; t < w->tier; t++)
        n += m->waiting[t];
    for (struct gh_list *l = m->users[w->tier].next; l != &m->users[w->tier]; l = l->next) {
        struct gh_fairq_user *u = GH_CONTAINER_OF(l, struct gh_fairq_user, wnode);
        if (u == me)
            continue;
        uint64_t head =
            GH_CONTAINER_OF(gh_list_first(&u->waiters), struct gh_fairq_waiter, node)->seq;
        for (unsigned k = 0; k < u->waiting; k++) {
            double tag = u->tag + k;
            if (tag > mine || (tag == mine && head > my_head))
                break;
            n++;
        }
    }
    return n;
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
