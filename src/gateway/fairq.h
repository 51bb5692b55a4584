/* The fair queue of the gateway: calls that wait for a model slot when
 * every upstream of their model is full, shared by all the node's workers.
 * It decides who goes next when a slot frees, by weighted fair queueing
 * across users (not keys: one user's many keys or scripts share one
 * turn), each user weighted by its priority tier (policy: a quota
 * override, an established account, a new account; weights 16, 8, 1 by
 * default):
 *   - each waiting user has a virtual start tag; its next call finishes
 *     (virtually) one step later, a step being 1 / its tier's weight, and
 *     the call with the earliest finish goes next (ties: the better tier,
 *     then the earlier arrival); the user's tag then grows by a step, and
 *     when the call ends, by its hold time in mean holds less one step
 *     (at most 16 steps): slot time is what is shared;
 *   - a user joins the queue at the start tag of the last dispatch plus
 *     a step per call it holds in flight already (so one with 4 running
 *     comes after those with none), never lower than its own tag: no
 *     credit is banked while it did not wait. Tags are forgotten when the
 *     model's queue empties.
 * So the weights apply per user, and a tier's share follows its users:
 * 45 established users and 5 new ones, all waiting, get 360 calls to 5
 * (the new accounts absorb the wait), where weights per tier would give
 * the five new accounts one call in nine whatever their number.
 * It is bounded (queue_max in all, queue_per_user per user), keeps the
 * recent service time per model for the wait estimate, and counts per tier
 * what /metrics shows.
 *
 * The caller owns the waiters (embedded in its calls) and holds the
 * queue's mutex (gh_fairq_lock) around every *_locked call; any thread.
 * Entries per (user, model, tier) come from a fixed pool sized at
 * creation: no allocation after gh_fairq_new. */
#pragma once

#include "core/common.h"
#include "core/list.h"

#include <pthread.h>

enum gh_fairq_tier { GH_TIER_PRIORITY, GH_TIER_ESTABLISHED, GH_TIER_NEW, GH_TIER_COUNT };

/* "priority", "established", "new". */
const char *gh_fairq_tier_name(unsigned tier);

#define GH_FAIRQ_MODELS 64 /* model indexes 0..63 (the first upstream serving it) */

struct gh_fairq_user;

struct gh_fairq_waiter {
    struct gh_list node; /* in its (model, tier) queue, arrival order */
    struct gh_fairq_user *user;
    uint64_t seq;
    uint64_t since_ms;
    unsigned model, tier;
    bool queued;
};

struct gh_fairq_config {
    unsigned queue_max, per_user;
    unsigned weights[GH_TIER_COUNT]; /* each >= 1 */
    unsigned users;                  /* entry pool: users waiting or in flight at once */
};

struct gh_fairq_tier_stats {
    unsigned waiting;
    uint64_t served;          /* calls that took a slot (at once or after waiting) */
    uint64_t dispatched;      /* of which after waiting */
    uint64_t refused_full;    /* queue_max or queue_per_user reached */
    uint64_t refused_wait;    /* the estimated wait passed the call's deadline */
    uint64_t timed_out;       /* waited until the deadline */
    uint64_t oldest_since_ms; /* 0 when none waits */
};

struct gh_fairq;

/* NULL when out of memory. */
struct gh_fairq *gh_fairq_new(const struct gh_fairq_config *cfg);
void gh_fairq_free(struct gh_fairq *q);
void gh_fairq_lock(struct gh_fairq *q);
void gh_fairq_unlock(struct gh_fairq *q);

/* Takes an entry for (user_id, model, tier) counting one call in flight,
 * for a call that got a slot without waiting. Returns the entry to hand
 * to gh_fairq_done_locked, or NULL when the pool is full (the call goes
 * on, uncounted). */
struct gh_fairq_user *gh_fairq_start_locked(struct gh_fairq *q, uint64_t user_id, unsigned model,
                                            unsigned tier);
/* A call counted by gh_fairq_start_locked or gh_fairq_grant_locked gave its
 * slot back after hold_ms: the user's count falls, the model's service
 * time is updated. u may be NULL (uncounted). */
void gh_fairq_done_locked(struct gh_fairq *q, struct gh_fairq_user *u, unsigned model,
                          uint64_t hold_ms);

/* Queues w (filled by the caller: nothing but zeroes) for user_id.
 * 0, GH_EBUSY (queue_max reached) or GH_ETOOBIG (the user's
 * queue_per_user reached, or no entry left): w is not queued. */
int gh_fairq_push_locked(struct gh_fairq *q, struct gh_fairq_waiter *w, uint64_t user_id,
                         unsigned model, unsigned tier, uint64_t now_ms);
/* Takes a queued w out without a slot (the client left, its deadline
 * passed: timed_out counts it). */
void gh_fairq_remove_locked(struct gh_fairq *q, struct gh_fairq_waiter *w, bool timed_out);
/* The waiter of model that goes next, or NULL; it stays queued. */
struct gh_fairq_waiter *gh_fairq_next_locked(struct gh_fairq *q, unsigned model);
/* The next waiter got a slot: out of the queue, counted in flight (hand
 * the returned entry to gh_fairq_done_locked later), its user's tag
 * advanced by a step. */
struct gh_fairq_user *gh_fairq_grant_locked(struct gh_fairq *q, struct gh_fairq_waiter *w);
/* Calls of model waiting. */
unsigned gh_fairq_waiting_locked(struct gh_fairq *q, unsigned model);

/* The calls of model that would start before a new call of (user_id,
 * tier): the caller's own waiting calls and every other waiter whose
 * virtual finish comes before the new call's (ties count ahead). */
unsigned gh_fairq_ahead_locked(struct gh_fairq *q, uint64_t user_id, unsigned model, unsigned tier);
/* The estimated wait of a call with `ahead` calls before it on model
 * with `slots` slots: (ahead + 1) × the recent mean service time / slots,
 * in ms; 0 while the model has no finished call to go by. */
/* The place in line of the queued waiter w, 1 = next (0: not queued),
 * the order gh_fairq_next_locked grants in while nobody else arrives:
 * its rank among its user's waiters plus every other waiter whose
 * virtual finish comes first. What the web chat shows as "position N". */
unsigned gh_fairq_position_locked(struct gh_fairq *q, const struct gh_fairq_waiter *w);
uint64_t gh_fairq_estimate_locked(struct gh_fairq *q, unsigned model, unsigned ahead,
                                  unsigned slots);
/* Counts a refusal of tier: full (true) or a wait past the deadline. */
void gh_fairq_refused_locked(struct gh_fairq *q, unsigned tier, bool full);

/* Reads a client's deadline hint (X-Request-Timeout, X-Stainless-Timeout):
 * seconds, digits with at most one '.' and a fraction ("30", "1.5", ".25";
 * digits past milliseconds are ignored), at most 9 before the point and 16
 * in all. *ms gets it in milliseconds. 0, or GH_EINVAL (*ms = 0) for
 * anything else, zero included. Pure; any thread. */
int gh_fairq_parse_timeout(const char *v, size_t n, uint64_t *ms);

/* A copy of tier's counters (takes the lock). */
void gh_fairq_stats(struct gh_fairq *q, unsigned tier, struct gh_fairq_tier_stats *out);
