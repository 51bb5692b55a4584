/* This module implements the password CPU pool of pwpool.h: one mutex,
 * one condition variable, a FIFO per priority with its own bound and
 * deadline; a thread always takes from the highest-priority non-empty
 * queue it may serve (a `low` queue only while another thread stays free). */
#include "identity/pwpool.h"

#include "core/server.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS_MAX 256

struct pjob {
    struct pjob *next;
    gh_pwpool_fn fn;
    gh_pwpool_done_fn done;
    void *arg;
    struct gh_worker *w;
    uint64_t deadline_ms;
    uint64_t enq_ms;
    int rc;
};

struct gh_pwpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct {
        struct pjob *head, *tail;
        unsigned n;
        unsigned max;
        uint64_t deadline_ms;
        bool low;
    } q[GH_PW_NPRIO];
    bool stopping;
    unsigned busy; /* threads running a job */
    unsigned nthreads;
    pthread_t threads[THREADS_MAX];
};

static void finish_task(struct gh_worker *w, void *data)
{
    struct pjob *j = data;
    j->done(w, j->arg, j->rc);
    free(j);
}

static void finish(struct pjob *j)
{
    if (j->w)
        gh_worker_job_done(j->w);
    if (j->w && gh_worker_post(j->w, finish_task, j) == 0)
        return;
    j->done(NULL, j->arg, j->rc);
    free(j);
}

static struct pjob *unlink_head(struct gh_pwpool *p, int i)
{
    struct pjob *j = p->q[i].head;
    p->q[i].head = j->next;
    if (!p->q[i].head)
        p->q[i].tail = NULL;
    p->q[i].n--;
    j->next = NULL;
    return j;
}

/* The next job this thread may run; all = ignore the reservation (stop). */
static struct pjob *take_locked(struct gh_pwpool *p, bool all)
{
    GH_ASSERT_LOCKED(&p->mu);
    /* one thread stays free for the queues that are not low */
    bool low_ok = all || p->nthreads < 2 || p->busy + 1 < p->nthreads;
    for (int i = 0; i < GH_PW_NPRIO; i++)
        if (p->q[i].head && (low_ok || !p->q[i].low))
            return unlink_head(p, i);
    return NULL;
}

static bool low_waiting_locked(const struct gh_pwpool *p)
{
    GH_ASSERT_LOCKED((pthread_mutex_t *)&p->mu);
    for (int i = 0; i < GH_PW_NPRIO; i++)
        if (p->q[i].low && p->q[i].head)
            return true;
    return false;
}

static void *pool_main(void *data)
{
    struct gh_pwpool *p = data;
    gh_thread_name("gh-password");
    for (;;) {
        pthread_mutex_lock(&p->mu);
        struct pjob *j;
        while (!(j = take_locked(p, false)) && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (j)
            p->busy++;
        pthread_mutex_unlock(&p->mu);
        if (!j)
            break;
        if (gh_now_ms() > j->deadline_ms) {
            j->rc = GH_EBUSY;
        } else {
            j->fn(j->arg);
            j->rc = 0;
        }
        finish(j);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        /* a low job may have waited for this thread to become free */
        if (low_waiting_locked(p))
            pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

int gh_pwpool_new(unsigned threads, unsigned queue_max, uint64_t deadline_ms,
                  struct gh_pwpool **out)
{
    struct gh_pwpool *p = calloc(1, sizeof *p);
    if (!p)
        return GH_ENOMEM;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    threads = GH_MIN(threads, (unsigned)THREADS_MAX);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < GH_PW_NPRIO; i++) {
        p->q[i].max = queue_max ? queue_max : 1024;
        p->q[i].deadline_ms = deadline_ms ? deadline_ms : 5000;
    }
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p))
            break;
        p->nthreads++;
    }
    if (!p->nthreads) {
        free(p);
        return GH_ENOMEM;
    }
    *out = p;
    return 0;
}

int gh_pwpool_set_queue(struct gh_pwpool *p, enum gh_pw_prio prio, unsigned queue_max,
                        uint64_t deadline_ms, bool low)
{
    if ((unsigned)prio >= GH_PW_NPRIO || !queue_max || !deadline_ms)
        return GH_EINVAL;
    pthread_mutex_lock(&p->mu);
    p->q[prio].max = queue_max;
    p->q[prio].deadline_ms = deadline_ms;
    p->q[prio].low = low;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void gh_pwpool_free(struct gh_pwpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    /* jobs nobody will run: answered GH_EIO */
    struct pjob *j;
    while ((j = take_locked(p, true)) != NULL) {
        pthread_mutex_unlock(&p->mu);
        j->rc = GH_EIO;
        finish(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int gh_pwpool_submit(struct gh_pwpool *p, enum gh_pw_prio prio, gh_pwpool_fn fn, void *arg,
                     struct gh_worker *w, gh_pwpool_done_fn done)
{
    if ((unsigned)prio >= GH_PW_NPRIO)
        return GH_EINVAL;
    struct pjob *j = calloc(1, sizeof *j);
    if (!j)
        return GH_ENOMEM;
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    j->w = w;
    j->enq_ms = gh_now_ms();
    if (w)
        gh_worker_job_begin(w);
    struct pjob *late = NULL, **late_tail = &late;
    pthread_mutex_lock(&p->mu);
    j->deadline_ms = j->enq_ms + p->q[prio].deadline_ms;
    /* a full queue first drops what waited past its deadline (the oldest,
     * at its head): those would only be answered busy when taken */
    bool full = p->q[prio].n >= p->q[prio].max;
    while (full && p->q[prio].head && p->q[prio].head->deadline_ms < j->enq_ms) {
        struct pjob *old = unlink_head(p, prio);
        old->rc = GH_EBUSY;
        *late_tail = old;
        late_tail = &old->next;
    }
    int rc = 0;
    if (p->stopping || p->q[prio].n >= p->q[prio].max) {
        rc = GH_EBUSY;
    } else {
        if (p->q[prio].tail)
            p->q[prio].tail->next = j;
        else
            p->q[prio].head = j;
        p->q[prio].tail = j;
        p->q[prio].n++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    while (late) {
        struct pjob *next = late->next;
        finish(late);
        late = next;
    }
    if (rc) {
        if (w)
            gh_worker_job_done(w);
        free(j);
    }
    return rc;
}

unsigned gh_pwpool_queued(struct gh_pwpool *p, enum gh_pw_prio prio)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = (unsigned)prio < GH_PW_NPRIO ? p->q[prio].n : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}

uint64_t gh_pwpool_delay_ms(struct gh_pwpool *p, enum gh_pw_prio prio, uint64_t now_ms)
{
    if ((unsigned)prio >= GH_PW_NPRIO)
        return 0;
    pthread_mutex_lock(&p->mu);
    const struct pjob *j = p->q[prio].head;
    uint64_t d = j && now_ms > j->enq_ms ? now_ms - j->enq_ms : 0;
    pthread_mutex_unlock(&p->mu);
    return d;
}

unsigned gh_pwpool_threads(struct gh_pwpool *p)
{
    return p->nthreads;
}
