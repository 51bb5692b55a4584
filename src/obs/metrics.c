/* This module implements the per-worker HTTP statistics and the metrics
 * registry of metrics.h. */
#include "obs/metrics.h"

#include <math.h>
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

enum kind { K_COUNTER, K_GAUGE, K_FUNC, K_COUNTER_FUNC };

struct entry {
    char name[96];
    char labels[160];
    const char *help;
    enum kind kind;
    unsigned unit; /* K_GAUGE: value is in 1/unit (0 or 1: whole) */
    _Atomic uint64_t value;
    gh_metrics_gauge_fn fn;
    gh_metrics_counter_fn cfn;
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

_Atomic uint64_t *gh_metrics_gauge_scaled(const char *name, const char *labels, const char *help,
                                          unsigned unit)
{
    struct entry *e = lookup_or_add(name, labels, help, K_GAUGE);
    if (!e)
        return NULL;
    pthread_mutex_lock(&R.mu);
    e->unit = unit;
    pthread_mutex_unlock(&R.mu);
    return &e->value;
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

int gh_metrics_counter_func(const char *name, const char *labels, const char *help,
                            gh_metrics_counter_fn fn, void *data)
{
    struct entry *e = lookup_or_add(name, labels, help, K_COUNTER_FUNC);
    if (!e)
        return GH_ETOOBIG;
    pthread_mutex_lock(&R.mu);
    e->cfn = fn;
    e->data = data;
    pthread_mutex_unlock(&R.mu);
    return 0;
}

void gh_metrics_print_value(struct gh_buf *out, double v)
{
    /* %.0f is exact for every whole double below 2^53; %g would round a
     * large counter to 6 digits */
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        gh_buf_printf(out, "%.0f", v);
    else
        gh_buf_printf(out, "%.9g", v);
}

/* Caller holds R.mu. */
static double entry_value_locked(const struct entry *e)
{
    switch (e->kind) {
    case K_FUNC:
        return e->fn ? e->fn(e->data) : 0.0;
    case K_COUNTER_FUNC:
        return e->cfn ? (double)e->cfn(e->data) : 0.0;
    case K_GAUGE:
        if (e->unit > 1)
            return (double)atomic_load(&e->value) / e->unit;
        return (double)atomic_load(&e->value);
    case K_COUNTER:
        break;
    }
    return (double)atomic_load(&e->value);
}

void gh_metrics_render_registry(struct gh_buf *out)
{
    pthread_mutex_lock(&R.mu);
    unsigned n = atomic_load(&R.n);
    for (unsigned i = 0; i < n; i++) {
        struct entry *e = &R.e[i];
        bool first = true;
        for (unsigned j = 0; j < i && first; j++)
            if (!strcmp(R.e[j].name, e->name))
                first = false;
        /* entries of one name may be registered apart: one family, printed
         * together under the first one's HELP and TYPE */
        if (!first)
            continue;
        bool counter = e->kind == K_COUNTER || e->kind == K_COUNTER_FUNC;
        gh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", e->name, e->help ? e->help : "", e->name,
                      counter ? "counter" : "gauge");
        for (unsigned j = i; j < n; j++) {
            struct entry *f = &R.e[j];
            if (strcmp(f->name, e->name))
                continue;
            const char *lo = f->labels[0] ? "{" : "", *lc = f->labels[0] ? "}" : "";
            gh_buf_printf(out, "%s%s%s%s ", f->name, lo, f->labels, lc);
            if (f->kind == K_COUNTER || (f->kind == K_GAUGE && f->unit <= 1))
                gh_buf_printf(out, "%llu", (unsigned long long)atomic_load(&f->value));
            else if (f->kind == K_COUNTER_FUNC)
                gh_buf_printf(out, "%llu", (unsigned long long)(f->cfn ? f->cfn(f->data) : 0));
            else
                gh_metrics_print_value(out, entry_value_locked(f));
            gh_buf_append_str(out, "\n");
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
        fn(e->name, e->labels, entry_value_locked(e), data);
    }
    pthread_mutex_unlock(&R.mu);
}
