/* The password CPU pool: threads that run expensive jobs (argon2id) taken
 * from priority queues, so that a flood of registrations or of logins from
 * sources that keep failing never delays the login of a user signing in
 * from where they signed in before. Each queue is bounded and has its own
 * deadline: a job still waiting past it is not run but answered "busy".
 * Queues marked `low` never take the pool's last free thread (with two
 * threads or more), so a job of the higher queues always starts at once.
 * The pool is created and freed on the main thread; any thread may submit.
 * The caller owns arg; done is where it gets it back. */
#pragma once

#include "core/common.h"

struct gh_worker;
struct gh_pwpool;

/* In the order a free thread serves them. The login tiers depend only on
 * the client's address and prefix (never on whether the number has an
 * account: no enumeration, equal timing). */
enum gh_pw_prio {
    GH_PW_LOGIN = 0,         /* a source with a recent success (and password resets) */
    GH_PW_LOGIN_NEW = 1,     /* a source with no history and few attempts */
    GH_PW_REGISTER = 2,      /* registrations */
    GH_PW_LOGIN_SUSPECT = 3, /* a source whose attempts keep failing */
    GH_PW_NPRIO
};

/* Runs on a pool thread. */
typedef void (*gh_pwpool_fn)(void *arg);
/* rc is 0 when fn ran, GH_EBUSY when the job passed its deadline before a
 * thread took it (fn did not run), GH_EIO when the pool stopped first.
 * Posted to w; called on the pool thread when w is NULL or gone (then w
 * is NULL). */
typedef void (*gh_pwpool_done_fn)(struct gh_worker *w, void *arg, int rc);

/* threads 0 = one per core; every queue gets queue_max and deadline_ms
 * (change one with gh_pwpool_set_queue). 0 or GH_ENOMEM. */
int gh_pwpool_new(unsigned threads, unsigned queue_max, uint64_t deadline_ms,
                  struct gh_pwpool **out);
/* Sets the bound, the deadline and the `low` mark of one queue (main
 * thread, before anyone submits). 0 or GH_EINVAL. */
int gh_pwpool_set_queue(struct gh_pwpool *p, enum gh_pw_prio prio, unsigned queue_max,
                        uint64_t deadline_ms, bool low);
/* Stops the threads; queued jobs get done(…, GH_EIO). */
void gh_pwpool_free(struct gh_pwpool *p);

/* Queues a job. 0, or GH_EBUSY when that priority's queue is full even
 * after dropping its jobs past their deadline (those get done(…,
 * GH_EBUSY)); then nothing runs and the caller keeps arg. */
int gh_pwpool_submit(struct gh_pwpool *p, enum gh_pw_prio prio, gh_pwpool_fn fn, void *arg,
                     struct gh_worker *w, gh_pwpool_done_fn done);

/* How long the oldest job waiting at prio has waited (ms; 0 when none):
 * the queue-delay signal the shield sheds on. Any thread. */
uint64_t gh_pwpool_delay_ms(struct gh_pwpool *p, enum gh_pw_prio prio, uint64_t now_ms);
/* Jobs waiting at prio. */
unsigned gh_pwpool_queued(struct gh_pwpool *p, enum gh_pw_prio prio);
/* The pool's thread count. */
unsigned gh_pwpool_threads(struct gh_pwpool *p);
