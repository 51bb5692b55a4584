/* Metrics in Prometheus text format. Two kinds:
 * - per-worker HTTP statistics (requests by route and status, latency
 *   histograms, connections, refusals by limit, loop lag), written only by
 *   their worker with relaxed stores, summed when /metrics is read;
 * - a registry of named counters and gauges for every other module,
 *   registered at start (any thread may then add to them atomically).
 * The registry is the process's one metrics table. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

/* Status codes counted individually; others fall in the last slot. */
#define GH_METRICS_NSTATUS 30
/* Latency histogram bucket upper bounds in microseconds (+Inf implied). */
#define GH_METRICS_NBUCKETS 14

enum gh_refusal {
    GH_REFUSE_MAX_CONNS,       /* total connection cap at accept */
    GH_REFUSE_PER_ADDR,        /* per-address connection cap at accept */
    GH_REFUSE_BLOCKED,         /* blocklisted address at accept */
    GH_REFUSE_PENDING_EVICTED, /* oldest header-less connection closed for a new one */
    GH_REFUSE_HEADER_TIMEOUT,  /* 408: headers too slow */
    GH_REFUSE_BODY_TIMEOUT,    /* 408: body below the minimum rate */
    GH_REFUSE_HEADER_TOO_LARGE, /* 431 */
    GH_REFUSE_BODY_TOO_LARGE,   /* 413 */
    GH_REFUSE_BAD_REQUEST,      /* 400 and other parse errors */
    GH_REFUSE_IDLE_TIMEOUT,     /* idle keep-alive closed (not an error) */
    GH_REFUSE_BODY_NO_CREDENTIALS, /* 413: over limits.body_max without valid credentials */
    GH_REFUSE_BODY_MEMORY,         /* 503: limits.body_memory spent */
    GH_REFUSE_COUNT
};

struct gh_worker_stats {
    unsigned nroutes; /* routes + 2 (unmatched, invalid) */
    _Atomic uint64_t *requests; /* [nroutes][GH_METRICS_NSTATUS] */
    _Atomic uint64_t *latency;  /* [nroutes][GH_METRICS_NBUCKETS + 1] */
    _Atomic uint64_t *latency_sum_us; /* [nroutes] */
    _Atomic uint64_t conns_open;
    _Atomic uint64_t conns_accepted;
    _Atomic uint64_t pending_headers;
    _Atomic uint64_t refused[GH_REFUSE_COUNT];
    _Atomic uint64_t loop_lag_us;     /* last tick's lag */
    _Atomic uint64_t loop_lag_max_us; /* max over the last 10 s */
    _Atomic uint64_t loop_yields;     /* saturated turns that gave way to its jobs (conn.c) */
    _Atomic uint64_t parked;          /* anonymous headers put off to the turn's end (conn.c) */
    _Atomic uint64_t prio_reads;      /* users' reads ahead of the poll's order (conn.c) */
    _Atomic uint64_t access_sampled_out;
};

int gh_worker_stats_init(struct gh_worker_stats *s, unsigned nroutes);
void gh_worker_stats_dispose(struct gh_worker_stats *s);
/* Counts one answered request (worker thread only). */
void gh_worker_stats_request(struct gh_worker_stats *s, unsigned route, int status,
                             uint64_t dur_us);
const char *gh_refusal_name(enum gh_refusal r);
extern const int gh_metrics_statuses[GH_METRICS_NSTATUS];
extern const uint64_t gh_metrics_buckets_us[GH_METRICS_NBUCKETS];

/* Registry. name is a Prometheus metric name: `gatehouse_<module>_…` in
 * base units (seconds, bytes, ratios), counters ending in `_total`; labels
 * is "" or `key="value",…` with no empty values. The same name and labels
 * return the same counter. All entries of one name are one family: they
 * must be of one kind and are rendered together under one HELP and TYPE
 * (the first registered's). NULL when the registry is full (it holds
 * GH_METRICS_MAX entries). */
#define GH_METRICS_MAX 1024
_Atomic uint64_t *gh_metrics_counter(const char *name, const char *labels, const char *help);
_Atomic uint64_t *gh_metrics_gauge(const char *name, const char *labels, const char *help);
/* A gauge that holds a whole number of 1/unit (e.g. 1000 for a ratio kept
 * in thousandths): rendered as value / unit, a float in the base unit. */
_Atomic uint64_t *gh_metrics_gauge_scaled(const char *name, const char *labels, const char *help,
                                          unsigned unit);
/* A gauge whose value fn computes when /metrics is read (any thread).
 * Whole values are printed exactly. */
typedef double (*gh_metrics_gauge_fn)(void *data);
int gh_metrics_gauge_func(const char *name, const char *labels, const char *help,
                          gh_metrics_gauge_fn fn, void *data);
/* A counter (name ends in _total) whose value fn reads when /metrics is
 * read, for totals another module keeps (any thread). */
typedef uint64_t (*gh_metrics_counter_fn)(void *data);
int gh_metrics_counter_func(const char *name, const char *labels, const char *help,
                            gh_metrics_counter_fn fn, void *data);
/* Appends v as a sample value: whole numbers exactly (no exponent), others
 * with 9 significant digits. */
void gh_metrics_print_value(struct gh_buf *out, double v);
/* Writes every registered metric. */
void gh_metrics_render_registry(struct gh_buf *out);
/* Calls fn for every registered metric with its value now (gauge
 * functions computed), in registration order, under the registry's lock:
 * fn must not register metrics. Any thread (the admin summary). */
typedef void (*gh_metrics_each_fn)(const char *name, const char *labels, double value,
                                   void *data);
void gh_metrics_each(gh_metrics_each_fn fn, void *data);
