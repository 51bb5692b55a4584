/* This module implements the usage records of usage.h. */
#include "gateway/usage.h"

#include "core/buf.h"
#include "core/log.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_MAX 65536 /* calls counted, waiting for the writer */
/* The writer gathers calls this long after the first one of a batch (or
 * until half the queue is full), so a busy server writes ~10 times a
 * second instead of once per call (a transaction on the call's path). */
#define GATHER_MS 100
/* Rows loaded from the store at start: the days kept in memory. */
#define LOAD_DAYS 400

struct row {
    uint64_t key_id, user_id;
    uint32_t day;
    bool used;
    uint64_t requests, prompt, completion, cut_short;
    uint64_t cached, reasoning; /* prompt tokens from the cache; reasoning tokens */
};

/* One call's counts on their way to the store. */
struct delta {
    struct delta *next;
    struct gh_store_usage u;
};

struct gh_usage {
    pthread_mutex_t mu; /* rows, the queue, inflight */
    pthread_cond_t cond;
    struct row *rows;
    unsigned mask, nrows;
    struct delta *head, *tail;
    unsigned queued;
    unsigned inflight; /* store jobs not yet done */
    bool stop;
    bool idle; /* the writer waits for a first call: wake it */
    _Atomic uint64_t dropped;
    struct gh_store *store;
    pthread_t thread;
};

uint32_t gh_usage_today(void)
{
    return (uint32_t)(gh_wall_ms() / 86400000u);
}

static uint64_t hash(uint64_t key, uint32_t day)
{
    uint64_t x = key * 0x9e3779b97f4a7c15ULL ^ day;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

/* The row of (key, day), created if missing; NULL when the table is full. */
static struct row *row_locked(struct gh_usage *u, uint64_t key, uint64_t user, uint32_t day)
{
    GH_ASSERT_LOCKED(&u->mu);
    uint64_t h = hash(key, day);
    for (unsigned i = 0; i <= u->mask; i++) {
        struct row *r = &u->rows[(h + i) & u->mask];
        if (r->used && r->key_id == key && r->day == day)
            return r;
        if (!r->used) {
            /* keep a quarter free so probes stay short */
            if (u->nrows >= (u->mask + 1) / 4 * 3)
                return NULL;
            memset(r, 0, sizeof *r);
            r->used = true;
            r->key_id = key;
            r->user_id = user;
            r->day = day;
            u->nrows++;
            return r;
        }
    }
    return NULL;
}

static void add_locked(struct gh_usage *u, const struct gh_store_usage *d)
{
    GH_ASSERT_LOCKED(&u->mu);
    struct row *r = row_locked(u, d->key_id, d->user_id, d->day);
    if (!r)
        return;
    r->requests += d->requests;
    r->prompt += d->prompt_tokens;
    r->completion += d->completion_tokens;
    r->cut_short += d->cut_short;
    r->cached += d->cached_tokens;
    r->reasoning += d->reasoning_tokens;
}

/* ---- to the store ---- */

struct batch {
    struct gh_usage *u;
    size_t n;
    struct gh_store_usage rows[];
};

static int batch_fn(struct gh_store_conn *c, void *arg)
{
    struct batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        int rc = gh_store_usage_add(c, &b->rows[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static void batch_done(struct gh_worker *w, void *arg, int rc)
{
    (void)w; /* submitted without a worker: the store's thread */
    struct batch *b = arg;
    struct gh_usage *u = b->u;
    if (rc) {
        gh_log(GH_LOG_ERROR, "usage_write_failed", "%zu usage rows not written: %s", b->n,
               gh_strerror(rc));
        atomic_fetch_add(&u->dropped, b->n);
    }
    free(b);
    pthread_mutex_lock(&u->mu);
    u->inflight--;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->mu);
}

static int cmp_delta(const void *x, const void *y)
{
    const struct gh_store_usage *a = x, *b = y;
    if (a->day != b->day)
        return a->day < b->day ? -1 : 1;
    if (a->key_id != b->key_id)
        return a->key_id < b->key_id ? -1 : 1;
    return a->user_id < b->user_id ? -1 : a->user_id > b->user_id;
}

/* Sums the deltas of list per (day, key, user) into one batch: a
 * transaction per gather, a row per key-day in it (sorted, then merged:
 * a gather may hold thousands of keys). Frees the list. */
static struct batch *gather(struct gh_usage *u, struct delta *list, unsigned n)
{
    struct batch *b = malloc(sizeof *b + (size_t)n * sizeof b->rows[0]);
    if (!b)
        atomic_fetch_add(&u->dropped, n);
    size_t k = 0;
    while (list) {
        struct delta *next = list->next;
        if (b)
            b->rows[k++] = list->u;
        free(list);
        list = next;
    }
    if (!b)
        return NULL;
    b->u = u;
    qsort(b->rows, k, sizeof b->rows[0], cmp_delta);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        struct gh_store_usage *r = &b->rows[out], *d = &b->rows[i];
        if (out && !cmp_delta(&b->rows[out - 1], d)) {
            r = &b->rows[out - 1];
            r->requests += d->requests;
            r->prompt_tokens += d->prompt_tokens;
            r->completion_tokens += d->completion_tokens;
            r->cached_tokens += d->cached_tokens;
            r->reasoning_tokens += d->reasoning_tokens;
            r->cut_short += d->cut_short;
        } else {
            *r = *d;
            out++;
        }
    }
    b->n = out;
    return b;
}

static void *writer(void *arg)
{
    struct gh_usage *u = arg;
    gh_thread_name("gh-usage");
    pthread_mutex_lock(&u->mu);
    for (;;) {
        while (!u->head && !u->stop) {
            u->idle = true;
            pthread_cond_wait(&u->cond, &u->mu);
        }
        u->idle = false;
        if (!u->stop && u->queued < QUEUE_MAX / 2) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += GATHER_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (!u->stop && u->queued < QUEUE_MAX / 2 &&
                   pthread_cond_timedwait(&u->cond, &u->mu, &until) == 0)
                ;
        }
        struct delta *list = u->head;
        unsigned n = u->queued;
        u->head = u->tail = NULL;
        u->queued = 0;
        bool stop = u->stop;
        pthread_mutex_unlock(&u->mu);
        struct batch *b = list ? gather(u, list, n) : NULL;
        if (b) {
            pthread_mutex_lock(&u->mu);
            u->inflight++;
            pthread_mutex_unlock(&u->mu);
            int rc = gh_store_write(u->store, batch_fn, b, NULL, batch_done);
            if (rc)
                batch_done(NULL, b, rc); /* the store's queue is full: counted */
        }
        pthread_mutex_lock(&u->mu);
        if (stop && !u->head)
            break;
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* ---- start: the store's rows, and the old file's once ---- */

static void load_row(const struct gh_store_usage *r, void *arg)
{
    struct gh_usage *u = arg;
    pthread_mutex_lock(&u->mu); /* alone at start, but the rule is the rule */
    add_locked(u, r);
    pthread_mutex_unlock(&u->mu);
}

static int load_fn(struct gh_store_conn *c, void *arg)
{
    struct gh_usage *u = arg;
    uint32_t today = gh_usage_today();
    return gh_store_usage_each(c, today > LOAD_DAYS ? today - LOAD_DAYS : 0,
                               (u->mask + 1) / 4 * 3, load_row, u);
}

/* What the old file held, summed per key-day, and whether it is in the
 * store already (the import's own mark, so a crash before the rename does
 * not count it twice). */
struct import {
    struct gh_usage *u; /* a table of its own: the sums */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int rc;
};

#define IMPORT_MARK "usage_jsonl_imported"

static int import_fn(struct gh_store_conn *c, void *arg)
{
    struct import *im = arg;
    struct gh_buf mark;
    gh_buf_init(&mark, 64);
    int rc = gh_store_setting_get(c, IMPORT_MARK, &mark);
    gh_buf_dispose(&mark);
    if (rc == 0)
        return 0; /* imported before a crash: only the rename is left */
    if (rc != GH_ENOTFOUND)
        return rc;
    struct gh_usage *t = im->u;
    for (unsigned i = 0; i <= t->mask; i++) {
        const struct row *r = &t->rows[i];
        if (!r->used)
            continue;
        struct gh_store_usage d = {.day = r->day,
                                   .key_id = r->key_id,
                                   .user_id = r->user_id,
                                   .requests = r->requests,
                                   .prompt_tokens = r->prompt,
                                   .completion_tokens = r->completion,
                                   .cached_tokens = r->cached,
                                   .reasoning_tokens = r->reasoning,
                                   .cut_short = r->cut_short};
        rc = gh_store_usage_add(c, &d);
        if (rc)
            return rc;
    }
    return gh_store_setting_put(c, IMPORT_MARK, "1");
}

static void import_done(struct gh_worker *w, void *arg, int rc)
{
    (void)w;
    struct import *im = arg;
    pthread_mutex_lock(&im->mu);
    im->rc = rc;
    im->done = true;
    pthread_cond_signal(&im->cond);
    pthread_mutex_unlock(&im->mu);
}

static struct gh_usage *table_new(unsigned capacity)
{
    struct gh_usage *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    unsigned n = 64;
    while (n < capacity / 3 * 4 && n < (1u << 28))
        n <<= 1;
    u->rows = calloc(n, sizeof *u->rows);
    if (!u->rows) {
        free(u);
        return NULL;
    }
    u->mask = n - 1;
    pthread_mutex_init(&u->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cond, &ca);
    pthread_condattr_destroy(&ca);
    return u;
}

static void table_free(struct gh_usage *u)
{
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cond);
    free(u->rows);
    free(u);
}

/* Sums the old file's lines (one per call) into t. */
static void replay(struct gh_usage *t, FILE *f)
{
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue; /* a torn last line after a crash */
        json_int_t day = json_integer_value(json_object_get(j, "day"));
        struct gh_store_usage d = {
            .day = day > 0 && day < UINT32_MAX ? (uint32_t)day : 0,
            .key_id = (uint64_t)json_integer_value(json_object_get(j, "key_id")),
            .user_id = (uint64_t)json_integer_value(json_object_get(j, "user_id")),
            .requests = 1,
            .prompt_tokens = (uint64_t)json_integer_value(json_object_get(j, "prompt_tokens")),
            .completion_tokens =
                (uint64_t)json_integer_value(json_object_get(j, "completion_tokens")),
            .cut_short = json_is_true(json_object_get(j, "cut_short")),
            .cached_tokens = (uint64_t)json_integer_value(json_object_get(j, "cached_tokens")),
            .reasoning_tokens =
                (uint64_t)json_integer_value(json_object_get(j, "reasoning_tokens")),
        };
        json_decref(j);
        if (!d.day)
            continue;
        pthread_mutex_lock(&t->mu);
        add_locked(t, &d);
        pthread_mutex_unlock(&t->mu);
    }
}

/* Moves legacy_path (the JSON lines of older versions) into the store once
 * and renames it to legacy_path.imported. */
static int import_legacy(struct gh_store *store, const char *legacy_path, unsigned capacity,
                         char *err, size_t errlen)
{
    FILE *f = fopen(legacy_path, "r");
    if (!f)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "cannot read %s", legacy_path), GH_EIO);
    struct import im = {.u = table_new(capacity)};
    if (!im.u) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return GH_ENOMEM;
    }
    replay(im.u, f);
    fclose(f);
    pthread_mutex_init(&im.mu, NULL);
    pthread_cond_init(&im.cond, NULL);
    int rc = gh_store_write(store, import_fn, &im, NULL, import_done);
    if (!rc) {
        pthread_mutex_lock(&im.mu);
        while (!im.done)
            pthread_cond_wait(&im.cond, &im.mu);
        pthread_mutex_unlock(&im.mu);
        rc = im.rc;
    }
    pthread_mutex_destroy(&im.mu);
    pthread_cond_destroy(&im.cond);
    unsigned rows = im.u->nrows;
    table_free(im.u);
    if (rc) {
        snprintf(err, errlen, "cannot move %s into the store (%s)", legacy_path, gh_strerror(rc));
        return rc;
    }
    char to[4300];
    snprintf(to, sizeof to, "%s.imported", legacy_path);
    if (rename(legacy_path, to)) {
        snprintf(err, errlen, "moved %s into the store but cannot rename it to %s", legacy_path, to);
        return GH_EIO;
    }
    gh_log(GH_LOG_INFO, "usage_imported", "%u usage rows of %s moved into the store; the file is now %s",
           rows, legacy_path, to);
    return 0;
}

struct gh_usage *gh_usage_new(struct gh_store *store, const char *legacy_path, unsigned capacity,
                              char *err, size_t errlen)
{
    if (legacy_path && import_legacy(store, legacy_path, capacity, err, errlen))
        return NULL;
    struct gh_usage *u = table_new(capacity);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->store = store;
    int rc = gh_store_read_now(store, load_fn, u);
    if (rc) {
        snprintf(err, errlen, "cannot read usage from the store (%s)", gh_strerror(rc));
        table_free(u);
        return NULL;
    }
    if (pthread_create(&u->thread, NULL, writer, u)) {
        snprintf(err, errlen, "cannot start the usage writer thread");
        table_free(u);
        return NULL;
    }
    return u;
}

void gh_usage_free(struct gh_usage *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    u->stop = true;
    pthread_cond_signal(&u->cond);
    pthread_mutex_unlock(&u->mu);
    pthread_join(u->thread, NULL);
    /* the batches handed to the store name u: wait for them */
    pthread_mutex_lock(&u->mu);
    while (u->inflight)
        pthread_cond_wait(&u->cond, &u->mu);
    pthread_mutex_unlock(&u->mu);
    table_free(u);
}

void gh_usage_record(struct gh_usage *u, const struct gh_usage_rec *r)
{
    struct delta *d = malloc(sizeof *d);
    struct gh_store_usage one = {.day = r->day,
                                 .key_id = r->key_id,
                                 .user_id = r->user_id,
                                 .requests = 1,
                                 .prompt_tokens = r->prompt_tokens,
                                 .completion_tokens = r->completion_tokens,
                                 .cached_tokens = r->cached_tokens,
                                 .reasoning_tokens = r->reasoning_tokens,
                                 .cut_short = r->cut_short};
    pthread_mutex_lock(&u->mu);
    add_locked(u, &one);
    if (d && u->queued < QUEUE_MAX && !u->stop) {
        d->next = NULL;
        d->u = one;
        if (u->tail)
            u->tail->next = d;
        else
            u->head = d;
        u->tail = d;
        u->queued++;
        d = NULL;
        if (u->idle || u->queued == QUEUE_MAX / 2) {
            u->idle = false;
            pthread_cond_signal(&u->cond);
        }
    }
    pthread_mutex_unlock(&u->mu);
    if (d) {
        free(d);
        atomic_fetch_add(&u->dropped, 1);
    }
}

static int cmp_rows(const void *a, const void *b)
{
    const struct row *x = *(struct row *const *)a, *y = *(struct row *const *)b;
    if (x->day != y->day)
        return x->day > y->day ? -1 : 1;
    return x->key_id < y->key_id ? -1 : x->key_id > y->key_id;
}

json_t *gh_usage_query(struct gh_usage *u, uint64_t user_id, uint32_t from)
{
    enum { MAX_ROWS = 4096 };
    json_t *arr = json_array();
    struct row **found = malloc(MAX_ROWS * sizeof *found);
    struct row *copy = malloc(MAX_ROWS * sizeof *copy);
    size_t n = 0;
    if (!found || !copy || !arr) {
        free(found);
        free(copy);
        return arr;
    }
    pthread_mutex_lock(&u->mu);
    for (unsigned i = 0; i <= u->mask && n < MAX_ROWS; i++) {
        struct row *r = &u->rows[i];
        if (r->used && r->user_id == user_id && r->day >= from) {
            copy[n] = *r;
            found[n] = &copy[n];
            n++;
        }
    }
    pthread_mutex_unlock(&u->mu);
    qsort(found, n, sizeof found[0], cmp_rows);
    for (size_t i = 0; i < n; i++) {
        struct row *r = found[i];
        time_t t = (time_t)r->day * 86400;
        struct tm tm;
        gmtime_r(&t, &tm);
        char date[16];
        strftime(date, sizeof date, "%Y-%m-%d", &tm);
        json_array_append_new(
            arr,
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "date", date, "key_id",
                      (json_int_t)r->key_id, "requests", (json_int_t)r->requests, "prompt_tokens",
                      (json_int_t)r->prompt, "completion_tokens", (json_int_t)r->completion,
                      "total_tokens", (json_int_t)(r->prompt + r->completion), "cached_tokens",
                      (json_int_t)r->cached, "reasoning_tokens", (json_int_t)r->reasoning,
                      "cut_short", (json_int_t)r->cut_short));
    }
    free(found);
    free(copy);
    return arr;
}

void gh_usage_each(struct gh_usage *u, uint32_t day,
                   void (*fn)(uint64_t key_id, uint64_t user_id, uint64_t tokens, void *data),
                   void *data)
{
    pthread_mutex_lock(&u->mu);
    for (unsigned i = 0; i <= u->mask; i++) {
        struct row *r = &u->rows[i];
        if (r->used && r->day == day)
            fn(r->key_id, r->user_id, r->prompt + r->completion, data);
    }
    pthread_mutex_unlock(&u->mu);
}

uint64_t gh_usage_dropped(struct gh_usage *u)
{
    return atomic_load(&u->dropped);
}
