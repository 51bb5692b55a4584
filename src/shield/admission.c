/* This module implements the priority queues and the shedding policy of
 * admission.h. */
#include "shield/admission.h"

#include <stdlib.h>
#include <string.h>

int gh_admission_init(struct gh_admission *a, const struct gh_admission_config *cfg,
                      gh_admission_drop_fn drop, void *ctx)
{
    memset(a, 0, sizeof *a);
    a->cfg = *cfg;
    if (a->cfg.capacity == 0)
        a->cfg.capacity = 1;
    a->drop = drop;
    a->drop_ctx = ctx;
    for (int c = 0; c < GH_NCLASSES; c++) {
        a->q[c].items = calloc(a->cfg.capacity, sizeof(struct gh_admission_item));
        if (!a->q[c].items) {
            gh_admission_dispose(a);
            return GH_ENOMEM;
        }
    }
    pthread_mutex_init(&a->mu, NULL);
    return 0;
}

void gh_admission_dispose(struct gh_admission *a)
{
    for (int c = 0; c < GH_NCLASSES; c++) {
        free(a->q[c].items);
        a->q[c].items = NULL;
    }
    if (a->cfg.capacity)
        pthread_mutex_destroy(&a->mu);
    a->cfg.capacity = 0;
}

static struct gh_admission_item *at(struct gh_admission *a, int c, unsigned i)
{
    return &a->q[c].items[(a->q[c].head + i) % a->cfg.capacity];
}

static void remove_head_locked(struct gh_admission *a, int c, uint64_t now)
{
    struct gh_admission_ring *r = &a->q[c];
    r->head = (r->head + 1) % a->cfg.capacity;
    r->n--;
    a->total--;
    if (r->n == 0)
        r->last_empty_ms = now;
}

static void remove_tail_locked(struct gh_admission *a, int c, uint64_t now)
{
    struct gh_admission_ring *r = &a->q[c];
    r->n--;
    a->total--;
    if (r->n == 0)
        r->last_empty_ms = now;
}

/* Slots class c may not use: the unused reserves of more important classes. */
static unsigned blocked_for(const struct gh_admission *a, int c)
{
    unsigned b = 0;
    for (int k = 0; k < c; k++)
        if (a->cfg.reserved[k] > a->q[k].n)
            b += a->cfg.reserved[k] - a->q[k].n;
    return b;
}

int gh_admission_push(struct gh_admission *a, enum gh_class cls, void *data, uint64_t deadline_ms,
                      uint64_t now_ms)
{
    int c = (int)cls;
    if (c < 0 || c >= GH_NCLASSES)
        return GH_EINVAL;
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    if (a->total + 1 + blocked_for(a, c) > a->cfg.capacity) {
        /* full for us: make room by evicting the newest of the least
         * important class below ours, if there is one */
        int victim = -1;
        for (int k = GH_NCLASSES - 1; k > c; k--)
            if (a->q[k].n) {
                victim = k;
                break;
            }
        if (victim < 0 || a->total + blocked_for(a, c) > a->cfg.capacity) {
            a->counts[c].refused++;
            rc = GH_EBUSY;
            goto out;
        }
        void *gone = at(a, victim, a->q[victim].n - 1)->data;
        remove_tail_locked(a, victim, now_ms);
        a->counts[victim].evicted++;
        if (a->drop)
            a->drop(gone, true, a->drop_ctx);
    }
    struct gh_admission_ring *r = &a->q[c];
    if (r->n == 0)
        r->last_empty_ms = now_ms; /* it was empty until now */
    struct gh_admission_item *it = &r->items[(r->head + r->n) % a->cfg.capacity];
    it->data = data;
    it->enq_ms = now_ms;
    it->deadline_ms = deadline_ms;
    r->n++;
    a->total++;
    a->counts[c].pushed++;
out:
    pthread_mutex_unlock(&a->mu);
    return rc;
}

bool gh_admission_pop(struct gh_admission *a, uint64_t now_ms, void **data, enum gh_class *cls,
                      uint64_t *waited_ms)
{
    bool found = false;
    pthread_mutex_lock(&a->mu);
    for (int c = 0; c < GH_NCLASSES && !found; c++) {
        struct gh_admission_ring *r = &a->q[c];
        bool overloaded = a->cfg.codel_target_ms && r->n &&
                          now_ms - r->last_empty_ms > a->cfg.codel_interval_ms;
        /* expire from the old end: past the deadline, or (overloaded) past
         * the short target */
        while (r->n) {
            struct gh_admission_item *h = at(a, c, 0);
            bool late = now_ms >= h->deadline_ms ||
                        (overloaded && now_ms - h->enq_ms > a->cfg.codel_target_ms);
            if (!late)
                break;
            void *gone = h->data;
            remove_head_locked(a, c, now_ms);
            a->counts[c].expired++;
            if (a->drop)
                a->drop(gone, false, a->drop_ctx);
        }
        if (!r->n)
            continue;
        struct gh_admission_item it;
        if (overloaded) { /* newest first */
            it = *at(a, c, r->n - 1);
            remove_tail_locked(a, c, now_ms);
        } else {
            it = *at(a, c, 0);
            remove_head_locked(a, c, now_ms);
        }
        *data = it.data;
        if (cls)
            *cls = (enum gh_class)c;
        if (waited_ms)
            *waited_ms = now_ms - it.enq_ms;
        a->counts[c].served++;
        found = true;
    }
    pthread_mutex_unlock(&a->mu);
    return found;
}

unsigned gh_admission_len(struct gh_admission *a, enum gh_class cls)
{
    pthread_mutex_lock(&a->mu);
    unsigned n = (unsigned)cls < GH_NCLASSES ? a->q[cls].n : 0;
    pthread_mutex_unlock(&a->mu);
    return n;
}

uint64_t gh_admission_delay_ms(struct gh_admission *a, uint64_t now_ms)
{
    uint64_t oldest = 0;
    pthread_mutex_lock(&a->mu);
    for (int c = 0; c < GH_NCLASSES; c++)
        if (a->q[c].n) {
            uint64_t w = now_ms - GH_MIN(at(a, c, 0)->enq_ms, now_ms);
            oldest = GH_MAX(oldest, w);
        }
    pthread_mutex_unlock(&a->mu);
    return oldest;
}

void gh_admission_stats(struct gh_admission *a, struct gh_admission_counts out[GH_NCLASSES])
{
    pthread_mutex_lock(&a->mu);
    memcpy(out, a->counts, sizeof a->counts);
    pthread_mutex_unlock(&a->mu);
}

/* ---- shedding ---- */

void gh_shed_config_default(struct gh_shed_config *c)
{
    c->queue_delay_ms = 100;
    c->loop_lag_ms = 50;
    c->conns_fraction = 0.8;
    c->shed_at[0] = 1.0;
    c->shed_at[1] = 1.5;
    c->shed_at[2] = 2.5;
    c->shed_at[3] = 4.0;
    c->idle_min_factor = 2.0 / 60.0;
}

void gh_shed_evaluate(const struct gh_shed_config *c, const struct gh_shed_input *in,
                      struct gh_shed_state *out)
{
    double p = 0;
    if (c->queue_delay_ms > 0)
        p = GH_MAX(p, in->queue_delay_ms / c->queue_delay_ms);
    if (c->loop_lag_ms > 0)
        p = GH_MAX(p, in->loop_lag_ms / c->loop_lag_ms);
    if (c->conns_fraction > 0 && in->max_conns)
        p = GH_MAX(p, (double)in->conns / ((double)in->max_conns * c->conns_fraction));
    out->pressure = p;
    out->shed_levels = 0;
    for (int i = 0; i < 4; i++)
        if (c->shed_at[i] > 0 && p >= c->shed_at[i])
            out->shed_levels = (unsigned)i + 1;
    /* keep-alive shrinks from half the first shedding pressure on, to its
     * minimum where login starts being shed */
    double lo = c->shed_at[0] * 0.5, hi = c->shed_at[2] > lo ? c->shed_at[2] : lo + 1;
    double minf = c->idle_min_factor > 0 && c->idle_min_factor <= 1 ? c->idle_min_factor : 1;
    if (p <= lo)
        out->idle_factor = 1;
    else if (p >= hi)
        out->idle_factor = minf;
    else
        out->idle_factor = 1 - (1 - minf) * (p - lo) / (hi - lo);
}

bool gh_shed_refuses(const struct gh_shed_state *s, enum gh_class cls)
{
    /* anon is refused from level 1, register from 2, login from 3, user from 4 */
    switch (cls) {
    case GH_CLASS_ANON:
        return s->shed_levels >= 1;
    case GH_CLASS_REGISTER:
        return s->shed_levels >= 2;
    case GH_CLASS_LOGIN:
        return s->shed_levels >= 3;
    case GH_CLASS_USER:
        return s->shed_levels >= 4;
    case GH_CLASS_OPS:
        return false;
    }
    return false;
}
