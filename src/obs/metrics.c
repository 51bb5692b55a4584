/* This module implements the per-worker HTTP statistics and the metrics
 * registry of metrics.h. */
#include "obs/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int gh_metrics_statuses[GH_METRICS_NSTATUS] = {
    100, 200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 402, 403, 404, 405,
    408, 409, 410, 413, 415, 417, 422, 429, 431, 500, 502, 503, 504, 505, 0};

const uint64_t gh_metrics_buckets_us[GH_METRICS_NBUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
    30000000};

static const char *refusal_names[GH_REFUSE_COUNT] = {
    "max_conns",         "per_addr",        "blocked",        "pending_headers_evicted",
    "header_timeout",    "body_too_slow",   "header_too_large", "body_too_large",
    "bad_request",       "idle_timeout",    "body_without_credentials", "body_memory"};

const char *gh_refusal_name(enum gh_refusal r)
{
    return r < GH_REFUSE_COUNT ? refusal_names[r] : "unknown";
}

int gh_worker_stats_init(struct gh_worker_stats *s, unsigned nroutes)
{
    memset(s, 0, sizeof *s);
    s->nroutes = nroutes;
    s->requests = calloc((size_t)nroutes * GH_METRICS_NSTATUS, sizeof *s->requests);
    s->latency = calloc((size_t)nroutes * (GH_METRICS_NBUCKETS + 1), sizeof *s->latency);
    s->latency_sum_us = calloc(nroutes, sizeof *s->latency_sum_us);
    if (!s->requests || !s->latency || !s->latency_sum_us) {
        gh_worker_stats_dispose(s);
        return GH_ENOMEM;
    }
    return 0;
}

void gh_worker_stats_dispose(struct gh_worker_stats *s)
{
    free(s->requests);
    free(s->latency);
    free(s->latency_sum_us);
    s->requests = NULL;
    s->latency = NULL;
    s->latency_sum_us = NULL;
}

static unsigned status_slot(int status)
{
    for (unsigned i = 0; i + 1 < GH_METRICS_NSTATUS; i++)
        if (gh_metrics_statuses[i] == status)
            return i;
    return GH_METRICS_NSTATUS - 1;
}

void gh_worker_stats_request(struct gh_worker_stats *s, unsigned route, int status,
                             uint64_t dur_us)
{
    if (route >= s->nroutes)
        route = s->nroutes - 1;
    GH_STAT_ADD(&s->requests[(size_t)route * GH_METRICS_NSTATUS + status_slot(status)], 1);
    unsigned b = 0;
    while (b < GH_METRICS_NBUCKETS && dur_us > gh_metrics_buckets_us[b])
        b++;
    GH_STAT_ADD(&s->latency[(size_t)route * (GH_METRICS_NBUCKETS + 1) + b], 1);
    GH_STAT_ADD(&s->latency_sum_us[route], dur_us);
}

enum kind { K_COUNTER, K_GAUGE, K_FUNC };

struct entry {
    char name[96];
    char labels[160];
    const char *help;
    enum kind kind;
    _Atomic uint64_t value;
    gh_metrics_gauge_fn fn;
    void *data;
};

static struct {
    pthread_mutex_t mu;
    struct entry *e;
    atomic_uint n;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct entry *lookup_or_add(const char *name, const char *labels, const char *help,
                                   enum kind kind)
{
    if (strlen(name) >= sizeof R.e->name || strlen(labels) >= sizeof R.e->labels)
        return NULL;
    pthread_mutex_lock(&R.mu);
    struct entry *found = NULL;
    if (!R.e)
        R.e = calloc(GH_METRICS_MAX, sizeof *R.e);
    unsigned n = atomic_load(&R.n);
    for (unsigned i = 0; R.e && i < n && !found; i++)
        if (!strcmp(R.e[i].name, name) && !strcmp(R.e[i].labels, labels))
            found = &R.e[i];
    if (!found && R.e && n < GH_METRICS_MAX) {
        found = &R.e[n];
        snprintf(found->name, sizeof found->name, "%s", name);
        snprintf(found->labels, sizeof found->labels, "%s", labels);
        found->help = help;
        found->kind = kind;
        atomic_store(&R.n, n + 1);
    }
    pthread_mutex_unlock(&R.mu);
    return found;
}

_Atomic uint64_t *gh_metrics_counter(const char *name, const char *labels, const char *help)
{
    struct entry *e = lookup_or_add(name, labels, help, K_COUNTER);
    return e ? &e->value : NULL;
}

_Atomic uint64_t *gh_metrics_gauge(const char *name, const char *labels, const char *help)
{
    struct entry *e = lookup_or_add(name, labels, help, K_GAUGE);
    return e ? &e->value : NULL;
}

int gh_metrics_gauge_func(const char *name, const char *labels, const char *help,
                          gh_metrics_gauge_fn fn, void *data)
{
    struct entry *e = lookup_or_add(name, labels, help, K_FUNC);
    if (!e)
        return GH_ETOOBIG;
    pthread_mutex_lock(&R.mu);
    e->fn = fn;
    e->data = data;
    pthread_mutex_unlock(&R.mu);
    return 0;
}

void gh_metrics_render_registry(struct gh_buf *out)
{
    pthread_mutex_lock(&R.mu);
    unsigned n = atomic_load(&R.n);
    for (unsigned i = 0; i < n; i++) {
        struct entry *e = &R.e[i];
        bool first = true;
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(R.e[j].name, e->name))
                first = false;
        if (first) {
            gh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", e->name, e->help ? e->help : "",
                          e->name, e->kind == K_COUNTER ? "counter" : "gauge");
        }
        /* entries of one name may be registered apart: print them together */
        if (!first)
            continue;
        for (unsigned j = i; j < n; j++) {
            struct entry *f = &R.e[j];
            if (strcmp(f->name, e->name))
                continue;
            const char *lo = f->labels[0] ? "{" : "", *lc = f->labels[0] ? "}" : "";
            if (f->kind == K_FUNC)
                gh_buf_printf(out, "%s%s%s%s %.6g\n", f->name, lo, f->labels, lc,
                              f->fn ? f->fn(f->data) : 0.0);
            else
                gh_buf_printf(out, "%s%s%s%s %llu\n", f->name, lo, f->labels, lc,
                              (unsigned long long)atomic_load(&f->value));
        }
    }
    pthread_mutex_unlock(&R.mu);
}

void gh_metrics_each(gh_metrics_each_fn fn, void *data)
{
    pthread_mutex_lock(&R.mu);
    unsigned n = atomic_load(&R.n);
    for (unsigned i = 0; i < n; i++) {
        struct entry *e = &R.e[i];
        double v = e->kind == K_FUNC ? (e->fn ? e->fn(e->data) : 0.0)
                                     : (double)atomic_load(&e->value);
        fn(e->name, e->labels, v, data);
    }
    pthread_mutex_unlock(&R.mu);
}
