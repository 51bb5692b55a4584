/* This module implements the store's threads (store.h): one writer thread
 * running queued jobs in group-committed transactions (a savepoint per
 * job), reader threads sharing one queue, both queues bounded, and the
 * delivery of each job's result to its worker with gh_worker_post. */
#include "store/store.h"

#include "core/log.h"
#include "core/server.h"
#include "store/sqlite.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAX   128 /* jobs per write transaction */
#define READERS_MAX 8

struct job {
    struct job *next;
    gh_store_fn fn;
    void *arg;
    struct gh_worker *w;
    gh_store_done_fn done;
    int rc;
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    unsigned n, max;
    bool closing;
};

struct gh_store {
    char *path;
    uint8_t enc_key[32];
    struct queue wq, rq;
    pthread_t writer;
    pthread_t readers[READERS_MAX];
    unsigned nreaders;
    struct gh_store_conn wconn;
    struct gh_store_conn rconn[READERS_MAX];
    struct reader_arg {
        struct gh_store *s;
        unsigned idx;
    } rargs[READERS_MAX];
};

static void queue_init(struct queue *q, unsigned max)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->head = q->tail = NULL;
    q->n = 0;
    q->max = max;
    q->closing = false;
}

static int queue_push(struct queue *q, gh_store_fn fn, void *arg, struct gh_worker *w,
                      gh_store_done_fn done)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return GH_ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->w = w;
    j->done = done;
    pthread_mutex_lock(&q->mu);
    if (q->closing || q->n >= q->max) {
        pthread_mutex_unlock(&q->mu);
        free(j);
        return GH_EBUSY;
    }
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* Takes up to max jobs (waits for at least one). Returns NULL when closing
 * and empty. */
static struct job *queue_take(struct queue *q, unsigned max)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->closing)
        pthread_cond_wait(&q->cv, &q->mu);
    struct job *first = q->head, *last = NULL;
    unsigned k = 0;
    for (struct job *j = q->head; j && k < max; j = j->next, k++)
        last = j;
    if (last) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->n -= k;
    }
    pthread_mutex_unlock(&q->mu);
    return first;
}

struct delivery {
    gh_store_done_fn done;
    void *arg;
    int rc;
};

static void deliver_task(struct gh_worker *w, void *data)
{
    struct delivery *d = data;
    d->done(w, d->arg, d->rc);
    free(d);
}

static void deliver(struct job *j)
{
    if (!j->done)
        return;
    if (j->w) {
        struct delivery *d = malloc(sizeof *d);
        if (d) {
            d->done = j->done;
            d->arg = j->arg;
            d->rc = j->rc;
            if (gh_worker_post(j->w, deliver_task, d) == 0)
                return;
            free(d);
        }
    }
    j->done(NULL, j->arg, j->rc);
}

static void *writer_main(void *data)
{
    struct gh_store *s = data;
    struct gh_store_conn *c = &s->wconn;
    for (;;) {
        struct job *batch = queue_take(&s->wq, GROUP_MAX);
        if (!batch)
            break;
        bool in_tx = gh_sqlite_exec(c, "BEGIN IMMEDIATE") == 0;
        for (struct job *j = batch; j; j = j->next) {
            if (!in_tx) {
                j->rc = GH_EIO;
                continue;
            }
            gh_sqlite_exec(c, "SAVEPOINT job");
            j->rc = j->fn(c, j->arg);
            if (j->rc < 0)
                gh_sqlite_exec(c, "ROLLBACK TO job");
            gh_sqlite_exec(c, "RELEASE job");
        }
        if (in_tx && gh_sqlite_exec(c, "COMMIT")) {
            gh_sqlite_exec(c, "ROLLBACK");
            for (struct job *j = batch; j; j = j->next)
                j->rc = GH_EIO;
        }
        while (batch) {
            struct job *next = batch->next;
            deliver(batch);
            free(batch);
            batch = next;
        }
    }
    return NULL;
}


static void *reader_main(void *data)
{
    struct reader_arg *ra = data;
    struct gh_store *s = ra->s;
    struct gh_store_conn *c = &s->rconn[ra->idx];
    for (;;) {
        struct job *j = queue_take(&s->rq, 1);
        if (!j)
            break;
        /* a read transaction so a multi-query job sees one snapshot */
        gh_sqlite_exec(c, "BEGIN");
        j->rc = j->fn(c, j->arg);
        gh_sqlite_exec(c, "COMMIT");
        deliver(j);
        free(j);
    }
    return NULL;
}

int gh_store_open(const struct gh_store_options *o, struct gh_store **out, struct gh_buf *err)
{
    struct gh_store *s = calloc(1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->path = strdup(o->path);
    if (!s->path) {
        free(s);
        return GH_ENOMEM;
    }
    memcpy(s->enc_key, o->enc_key, 32);
    s->wconn.enc_key = s->enc_key;
    if (gh_sqlite_open(&s->wconn, s->path, true, err)) {
        free(s->path);
        free(s);
        return GH_EIO;
    }
    s->nreaders = GH_MIN(GH_MAX(o->readers, 1u), (unsigned)READERS_MAX);
    for (unsigned i = 0; i < s->nreaders; i++) {
        s->rconn[i].enc_key = s->enc_key;
        if (gh_sqlite_open(&s->rconn[i], s->path, false, err)) {
            for (unsigned k = 0; k < i; k++)
                gh_sqlite_close(&s->rconn[k]);
            gh_sqlite_close(&s->wconn);
            free(s->path);
            free(s);
            return GH_EIO;
        }
    }
    unsigned qmax = o->queue_max ? o->queue_max : 10000;
    queue_init(&s->wq, qmax);
    queue_init(&s->rq, qmax);
    pthread_create(&s->writer, NULL, writer_main, s);
    for (unsigned i = 0; i < s->nreaders; i++) {
        s->rargs[i].s = s;
        s->rargs[i].idx = i;
        pthread_create(&s->readers[i], NULL, reader_main, &s->rargs[i]);
    }
    *out = s;
    return 0;
}

static void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void gh_store_close(struct gh_store *s)
{
    if (!s)
        return;
    queue_close(&s->rq);
    for (unsigned i = 0; i < s->nreaders; i++)
        pthread_join(s->readers[i], NULL);
    queue_close(&s->wq);
    pthread_join(s->writer, NULL);
    for (unsigned i = 0; i < s->nreaders; i++)
        gh_sqlite_close(&s->rconn[i]);
    gh_sqlite_exec(&s->wconn, "PRAGMA wal_checkpoint(TRUNCATE)");
    gh_sqlite_close(&s->wconn);
    free(s->path);
    free(s);
}

int gh_store_write(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                   gh_store_done_fn done)
{
    return queue_push(&s->wq, fn, arg, w, done);
}

int gh_store_read(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                  gh_store_done_fn done)
{
    return queue_push(&s->rq, fn, arg, w, done);
}

int gh_store_read_now(struct gh_store *s, gh_store_fn fn, void *arg)
{
    struct gh_store_conn c = {.enc_key = s->enc_key};
    struct gh_buf err;
    gh_buf_init(&err, 512);
    int rc = gh_sqlite_open(&c, s->path, false, &err);
    if (rc) {
        gh_log(GH_LOG_ERROR, "store_error", "%s", err.data ? err.data : "open failed");
        gh_buf_dispose(&err);
        return rc;
    }
    gh_buf_dispose(&err);
    rc = fn(&c, arg);
    gh_sqlite_close(&c);
    return rc;
}

unsigned gh_store_pending(struct gh_store *s)
{
    pthread_mutex_lock(&s->wq.mu);
    unsigned n = s->wq.n;
    pthread_mutex_unlock(&s->wq.mu);
    pthread_mutex_lock(&s->rq.mu);
    n += s->rq.n;
    pthread_mutex_unlock(&s->rq.mu);
    return n;
}
