/* Admission: bounded priority queues with deadlines in front of expensive
 * work (password hashing, database writes, SMS sends, model calls), and
 * the shedding policy that decides under pressure which classes are
 * refused before they queue.
 *
 * Queues: one ring per class (ops > user > login > register > anon),
 * sharing one capacity, of which a part is reserved for user and login:
 * a class may not take the reserved slots of a more important class that
 * it does not use, so a flood of registrations can never fill the queue
 * in front of logins. When the queue is full, a push from a class more
 * important than the least important one waiting evicts that class's
 * newest item. Pop serves the most important class first; items past
 * their deadline are expired, never served. A class queue that has not
 * been empty for `codel_interval_ms` is overloaded: its items that waited
 * more than `codel_target_ms` expire and it serves newest first (adaptive
 * LIFO, as Facebook's queues), so the waiting time stays short for those
 * who are still there.
 *
 * Threads: a gh_admission holds a mutex: any thread may push and pop; the
 * caller owns the struct (init/dispose) and the items. Callbacks run
 * under the mutex and must only hand the item on (post it to its worker).
 * The shedding policy is a pure function. Time is a parameter (ms). */
#pragma once

#include "core/common.h"
#include "http/router.h"

#include <pthread.h>

#define GH_NCLASSES 5

struct gh_admission_config {
    unsigned capacity;                 /* items waiting, all classes */
    unsigned reserved[GH_NCLASSES];    /* kept free for that class (user, login) */
    uint64_t codel_target_ms;          /* 0 = no adaptive LIFO */
    uint64_t codel_interval_ms;
};

struct gh_admission_item {
    void *data;
    uint64_t enq_ms, deadline_ms;
};

struct gh_admission_ring {
    struct gh_admission_item *items; /* capacity slots */
    unsigned head, n;
    uint64_t last_empty_ms;
};

/* Counters per class (read under the mutex with gh_admission_stats). */
struct gh_admission_counts {
    uint64_t pushed, served, refused, evicted, expired;
};

/* Called for an item that leaves without being served (expired or
 * evicted), under the mutex. */
typedef void (*gh_admission_drop_fn)(void *data, bool evicted, void *ctx);

struct gh_admission {
    pthread_mutex_t mu;
    struct gh_admission_config cfg;
    struct gh_admission_ring q[GH_NCLASSES];
    unsigned total;
    gh_admission_drop_fn drop;
    void *drop_ctx;
    struct gh_admission_counts counts[GH_NCLASSES];
};

/* 0 or GH_ENOMEM. drop may be NULL. */
int gh_admission_init(struct gh_admission *a, const struct gh_admission_config *cfg,
                      gh_admission_drop_fn drop, void *ctx);
/* Frees the rings; items still waiting are not dropped (the caller drains
 * first with gh_admission_pop). */
void gh_admission_dispose(struct gh_admission *a);

/* Queues data for class cls until deadline_ms. 0, or GH_EBUSY when there
 * is no room for that class (the caller answers 503 busy). */
int gh_admission_push(struct gh_admission *a, enum gh_class cls, void *data, uint64_t deadline_ms,
                      uint64_t now_ms);
/* Takes the next item to serve into *data (and its class and wait), or
 * returns false when nothing is waiting. */
bool gh_admission_pop(struct gh_admission *a, uint64_t now_ms, void **data, enum gh_class *cls,
                      uint64_t *waited_ms);
/* Waiting items of a class, and of all. */
unsigned gh_admission_len(struct gh_admission *a, enum gh_class cls);
/* How long the oldest waiting item has waited (the queue-delay signal). */
uint64_t gh_admission_delay_ms(struct gh_admission *a, uint64_t now_ms);
void gh_admission_stats(struct gh_admission *a, struct gh_admission_counts out[GH_NCLASSES]);

/* ---- shedding ---- */

struct gh_shed_config {
    double queue_delay_ms; /* the delay that counts as pressure 1 */
    double loop_lag_ms;    /* the loop lag that counts as pressure 1 */
    double conns_fraction; /* of max_conns that counts as pressure 1 */
    /* pressure at which anon, register, login, user are refused */
    double shed_at[4];
    double idle_min_factor; /* idle timeout factor at full pressure (e.g. 2 s / 60 s) */
};

struct gh_shed_input {
    double queue_delay_ms, loop_lag_ms;
    unsigned conns, max_conns;
};

struct gh_shed_state {
    double pressure;      /* max of the ratios; 1 = at target */
    unsigned shed_levels; /* 0 none, 1 anon, 2 + register, 3 + login, 4 + user */
    double idle_factor;   /* multiply the keep-alive timeout by this (0 < f <= 1) */
};

/* The defaults: shed at 1, 1.5, 2.5, 4; idle factor down to 1/30. */
void gh_shed_config_default(struct gh_shed_config *c);
void gh_shed_evaluate(const struct gh_shed_config *c, const struct gh_shed_input *in,
                      struct gh_shed_state *out);
/* True when class cls is to be refused in state s (ops never is). */
bool gh_shed_refuses(const struct gh_shed_state *s, enum gh_class cls);
