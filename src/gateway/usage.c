/* This module implements the usage records of usage.h. */
#include "gateway/usage.h"

#include "core/buf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_MAX 65536 /* lines waiting for the writer */
/* The writer gathers lines this long after the first one of a batch (or
 * until half the queue is full), so a busy server wakes it ~10 times a
 * second instead of once per call (a context switch on the call's path). */
#define GATHER_MS 100

struct row {
    uint64_t key_id, user_id;
    uint32_t day;
    bool used;
    uint64_t requests, prompt, completion, cut_short;
    uint64_t cached, reasoning; /* prompt tokens from the cache; reasoning tokens */
};

struct line {
    struct line *next;
    size_t len;
    char text[];
};

struct gh_usage {
    pthread_mutex_t mu; /* rows and the queue */
    pthread_cond_t cond;
    struct row *rows;
    unsigned mask, nrows;
    struct line *head, *tail;
    unsigned queued;
    bool stop;
    bool idle; /* the writer waits for a first line: wake it */
    _Atomic uint64_t dropped;
    FILE *f;
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

static void count_locked(struct gh_usage *u, const struct gh_usage_rec *rec)
{
    GH_ASSERT_LOCKED(&u->mu);
    struct row *r = row_locked(u, rec->key_id, rec->user_id, rec->day);
    if (!r)
        return;
    r->requests++;
    r->prompt += rec->prompt_tokens;
    r->completion += rec->completion_tokens;
    r->cut_short += rec->cut_short;
    r->cached += rec->cached_tokens;
    r->reasoning += rec->reasoning_tokens;
}

static void *writer(void *arg)
{
    struct gh_usage *u = arg;
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
        struct line *batch = u->head;
        u->head = u->tail = NULL;
        u->queued = 0;
        bool stop = u->stop;
        pthread_mutex_unlock(&u->mu);
        while (batch) {
            struct line *next = batch->next;
            if (fwrite(batch->text, 1, batch->len, u->f) != batch->len)
                atomic_fetch_add(&u->dropped, 1);
            free(batch);
            batch = next;
        }
        fflush(u->f);
        pthread_mutex_lock(&u->mu);
        if (stop && !u->head)
            break;
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

static void replay(struct gh_usage *u, FILE *f)
{
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue; /* a torn last line after a crash */
        struct gh_usage_rec r = {
            .key_id = (uint64_t)json_integer_value(json_object_get(j, "key_id")),
            .user_id = (uint64_t)json_integer_value(json_object_get(j, "user_id")),
            .day = (uint32_t)json_integer_value(json_object_get(j, "day")),
            .prompt_tokens = (unsigned)json_integer_value(json_object_get(j, "prompt_tokens")),
            .completion_tokens =
                (unsigned)json_integer_value(json_object_get(j, "completion_tokens")),
            .cut_short = json_is_true(json_object_get(j, "cut_short")),
            .cached_tokens = (unsigned)json_integer_value(json_object_get(j, "cached_tokens")),
            .reasoning_tokens =
                (unsigned)json_integer_value(json_object_get(j, "reasoning_tokens")),
        };
        pthread_mutex_lock(&u->mu); /* alone at start, but the rule is the rule */
        count_locked(u, &r);
        pthread_mutex_unlock(&u->mu);
        json_decref(j);
    }
}

struct gh_usage *gh_usage_new(const char *path, unsigned capacity, char *err, size_t errlen)
{
    struct gh_usage *u = calloc(1, sizeof *u);
    if (!u)
        goto nomem;
    unsigned n = 64;
    while (n < capacity / 3 * 4 && n < (1u << 28))
        n <<= 1;
    u->rows = calloc(n, sizeof *u->rows);
    if (!u->rows)
        goto nomem;
    u->mask = n - 1;
    pthread_mutex_init(&u->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cond, &ca);
    pthread_condattr_destroy(&ca);
    FILE *old = fopen(path, "r");
    if (old) {
        replay(u, old);
        fclose(old);
    }
    u->f = fopen(path, "a");
    if (!u->f) {
        snprintf(err, errlen, "cannot open %s for appending", path);
        goto fail;
    }
    if (pthread_create(&u->thread, NULL, writer, u)) {
        snprintf(err, errlen, "cannot start the usage writer thread");
        fclose(u->f);
        goto fail;
    }
    return u;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    if (u)
        free(u->rows);
    free(u);
    return NULL;
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
    fclose(u->f);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cond);
    free(u->rows);
    free(u);
}

void gh_usage_record(struct gh_usage *u, const struct gh_usage_rec *r)
{
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    char ts[40];
    gh_buf_printf(&b, "{\"ts\":\"%s\",\"day\":%u,\"key_id\":%llu,\"user_id\":%llu,\"model\":\"",
                  gh_time_rfc3339(gh_wall_ms(), ts, sizeof ts), r->day,
                  (unsigned long long)r->key_id, (unsigned long long)r->user_id);
    gh_buf_append_json_str(&b, r->model, strnlen(r->model, 256));
    gh_buf_printf(&b,
                  "\",\"prompt_tokens\":%u,\"completion_tokens\":%u,\"cached_tokens\":%u,"
                  "\"reasoning_tokens\":%u,\"cut_short\":%s,\"status\":%d}\n",
                  r->prompt_tokens, r->completion_tokens, r->cached_tokens, r->reasoning_tokens,
                  r->cut_short ? "true" : "false", r->status);
    struct line *l = b.data ? malloc(sizeof *l + b.len) : NULL;
    if (l) {
        l->next = NULL;
        l->len = b.len;
        memcpy(l->text, b.data, b.len);
    }
    gh_buf_dispose(&b);
    pthread_mutex_lock(&u->mu);
    count_locked(u, r);
    if (l && u->queued < QUEUE_MAX) {
        if (u->tail)
            u->tail->next = l;
        else
            u->head = l;
        u->tail = l;
        u->queued++;
        l = NULL;
        if (u->idle || u->queued == QUEUE_MAX / 2) {
            u->idle = false;
            pthread_cond_signal(&u->cond);
        }
    }
    pthread_mutex_unlock(&u->mu);
    if (l) {
        free(l);
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
