/* This module implements server.h: the HTTP protocol of the workers that
 * core/server.c runs. It binds the listening sockets (one SO_REUSEPORT
 * socket per public worker, one admin socket), owns each worker's
 * connection state (struct gh_http_worker) and hands the worker's loop
 * events to conn.c, and renders the HTTP statistics of /metrics. */
#include "http/server.h"

#include "core/log.h"
#include "http/conn.h"
#include "http/parser.h"

#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_BYTES  (64u << 10)
#define LISTEN_BACKLOG 4096

/* ---- listening sockets ---- */

static int listen_socket(const struct sockaddr_storage *ss, bool reuseport, struct gh_buf *err,
                         const char *what)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        gh_buf_printf(err, "%s: socket: %s", what, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
        gh_buf_printf(err, "%s: SO_REUSEPORT: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len =
        ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (const struct sockaddr *)ss, len) || listen(fd, LISTEN_BACKLOG)) {
        gh_buf_printf(err, "%s: cannot listen: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* SO_REUSEPORT lets any socket of the same user join a port, another
 * gatehouse included: the kernel would then spread connections over two
 * servers with different databases. So before the workers bind theirs,
 * a socket without it must be able to bind the address: if anything
 * listens there already, start-up stops. 0, or GH_EIO with err filled. */
static int probe_address_free(const struct sockaddr_storage *ss, const char *text,
                              struct gh_buf *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        gh_buf_printf(err, "listen: socket: %s", strerror(errno));
        return GH_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* TIME_WAIT is no owner */
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len =
        ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    int rc = 0;
    if (bind(fd, (const struct sockaddr *)ss, len)) {
        if (errno == EADDRINUSE)
            gh_buf_printf(err,
                          "listen: %s is already in use by another process (another gatehouse?); "
                          "stop it or set [server] listen to a free address",
                          text);
        else
            gh_buf_printf(err, "listen: cannot bind %s: %s", text, strerror(errno));
        rc = GH_EIO;
    }
    close(fd);
    return rc;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len))
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* ---- the workers' protocol ---- */

static void close_listeners(struct gh_server *srv)
{
    for (unsigned i = 0; i <= srv->nworkers; i++) {
        struct gh_worker *w = i < srv->nworkers ? &srv->workers[i] : &srv->admin;
        if (w->http && w->http->listen_fd >= 0)
            close(w->http->listen_fd);
        free(w->http);
        w->http = NULL;
    }
}

static int proto_open(struct gh_server *srv, const struct gh_config *cfg, struct gh_buf *err)
{
    unsigned n = srv->nworkers;
    for (unsigned i = 0; i <= n; i++) {
        struct gh_worker *w = i < n ? &srv->workers[i] : &srv->admin;
        w->http = calloc(1, sizeof *w->http);
        if (!w->http) {
            gh_buf_printf(err, "out of memory");
            close_listeners(srv);
            return GH_ENOMEM;
        }
        w->http->listen_fd = -1;
        w->http->router = i < n ? &srv->http->router : &srv->http->admin_router;
    }
    struct sockaddr_storage ss, ass;
    if (gh_parse_hostport(cfg->server.listen, &ss) ||
        gh_parse_hostport(cfg->server.admin_listen, &ass)) {
        close_listeners(srv);
        return GH_EINVAL;
    }
    bool shared = cfg->server.reuseport || n > 1;
    int rc = 0;
    if (shared && port_of(&ss) && probe_address_free(&ss, cfg->server.listen, err))
        rc = GH_EIO;
    for (unsigned i = 0; !rc && i < n; i++) {
        int fd = listen_socket(&ss, shared, err, "listen");
        if (fd < 0) {
            rc = GH_EIO;
            break;
        }
        srv->workers[i].http->listen_fd = fd;
        if (i == 0)
            set_port(&ss, bound_port(fd)); /* port 0: every worker on the same one */
    }
    if (!rc) {
        srv->admin.http->listen_fd = listen_socket(&ass, false, err, "admin_listen");
        if (srv->admin.http->listen_fd < 0)
            rc = GH_EIO;
    }
    if (rc) {
        close_listeners(srv);
        return rc;
    }
    srv->port = bound_port(srv->workers[0].http->listen_fd);
    return 0;
}

static int proto_worker_init(struct gh_worker *w)
{
    struct gh_http_worker *h = w->http;
    gh_list_init(&h->conns_header);
    gh_list_init(&h->conns_body);
    gh_list_init(&h->conns_idle);
    gh_list_init(&h->conns_busy);
    h->prio_ep = -1;
    h->scratch_len = SCRATCH_BYTES;
    h->scratch = malloc(SCRATCH_BYTES);
    if (!h->scratch)
        return GH_ENOMEM;
    /* +1 slot for unmatched requests */
    return gh_worker_stats_init(&w->stats, h->router->n + 1);
}

static void proto_worker_dispose(struct gh_worker *w)
{
    gh_worker_stats_dispose(&w->stats);
    if (!w->http)
        return;
    if (w->http->prio_ep >= 0)
        close(w->http->prio_ep);
    free(w->http->scratch);
    free(w->http);
    w->http = NULL;
}

static void proto_config(struct gh_worker *w)
{
    unsigned cap = w->admin ? 64 : w->cfg->limits.max_pending_headers / w->srv->nworkers;
    w->http->pending_cap = cap ? cap : 1;
}

static void proto_stop(struct gh_worker *w)
{
    gh_conn_unlisten(w);
    gh_conn_stop_worker(w);
}

static unsigned proto_open_count(struct gh_worker *w)
{
    return w->http->nconns;
}

static void proto_exit(struct gh_worker *w)
{
    gh_conn_unlisten(w);
    gh_conn_turn_close(w);
}

static void proto_loop_done(struct gh_worker *w)
{
    gh_http_req_cache_flush();
    gh_buf_dispose(&w->http->out);
}

static const struct gh_worker_proto http_proto = {
    .open = proto_open,
    .worker_init = proto_worker_init,
    .worker_dispose = proto_worker_dispose,
    .start = gh_conn_listen,
    .config = proto_config,
    .tick = gh_conn_sweep,
    .stop = proto_stop,
    .force = gh_conn_close_all,
    .open_count = proto_open_count,
    .exit = proto_exit,
    .loop_done = proto_loop_done,
};

void gh_http_server_attach(struct gh_server *srv, struct gh_http_server *http)
{
    memset(http, 0, sizeof *http);
    pthread_mutex_init(&http->lf_lock, NULL);
    srv->http = http;
    gh_router_init(&http->router);
    gh_router_init(&http->admin_router);
    srv->proto = &http_proto;
}

static void listen_filter_task(struct gh_worker *w, void *data)
{
    (void)data;
    gh_conn_listen_filter_apply(w);
}

uint64_t gh_http_listen_filter(struct gh_server *srv, const struct sock_filter *insns, unsigned len)
{
    struct gh_http_server *h = srv->http;
    if (len > BPF_MAXINSNS)
        return 0;
    pthread_mutex_lock(&h->lf_lock);
    if (len)
        memcpy(h->lf_insns, insns, sizeof *insns * len);
    h->lf_len = len;
    uint64_t gen = atomic_fetch_add_explicit(&h->lf_gen, 1, memory_order_release) + 1;
    pthread_mutex_unlock(&h->lf_lock);
    for (unsigned i = 0; i < srv->nworkers; i++)
        gh_worker_post(&srv->workers[i], listen_filter_task, NULL); /* else the tick does it */
    return gen;
}

uint64_t gh_http_listen_filter_applied(struct gh_server *srv)
{
    uint64_t min = atomic_load(&srv->http->lf_gen);
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].http) /* a worker that stopped listening lags: the gauge's care */
            min = GH_MIN(min, atomic_load(&srv->workers[i].http->lf_gen));
    return min;
}

/* ---- /metrics ---- */

/* Route label values: the pattern and method, "unmatched"/"any" for the
 * slot past the router's routes (no label value is ever empty). */
static void route_labels(const struct gh_router *r, unsigned rt, const char **name,
                         const char **method)
{
    *name = rt < r->n ? r->routes[rt].pattern : "unmatched";
    *method = rt < r->n ? http_method_str(r->routes[rt].method) : "any";
}

/* The samples of gatehouse_http_requests_total for one listener's workers
 * (the caller prints HELP and TYPE once for both listeners). */
static void render_requests(struct gh_buf *out, const char *listener, struct gh_worker *ws,
                            unsigned nw, const struct gh_router *r)
{
    for (unsigned rt = 0; rt < r->n + 1; rt++) {
        const char *name, *method;
        route_labels(r, rt, &name, &method);
        for (unsigned s = 0; s < GH_METRICS_NSTATUS; s++) {
            uint64_t v = 0;
            for (unsigned i = 0; i < nw; i++)
                v += GH_STAT_GET(&ws[i].stats.requests[(size_t)rt * GH_METRICS_NSTATUS + s]);
            if (!v)
                continue;
            /* the last slot gathers every status not listed: one sample */
            char st[16];
            if (gh_metrics_statuses[s])
                snprintf(st, sizeof st, "%d", gh_metrics_statuses[s]);
            else
                snprintf(st, sizeof st, "other");
            gh_buf_printf(out,
                          "gatehouse_http_requests_total{listener=\"%s\",method=\"%s\","
                          "route=\"%s\",status=\"%s\"} %llu\n",
                          listener, method, name, st, (unsigned long long)v);
        }
    }
}

/* The samples of gatehouse_http_request_duration_seconds for one
 * listener's workers (HELP and TYPE printed once by the caller). */
static void render_latency(struct gh_buf *out, const char *listener, struct gh_worker *ws,
                           unsigned nw, const struct gh_router *r)
{
    for (unsigned rt = 0; rt < r->n + 1; rt++) {
        const char *name, *method;
        route_labels(r, rt, &name, &method);
        uint64_t cum = 0, sum = 0;
        uint64_t b[GH_METRICS_NBUCKETS + 1] = {0};
        for (unsigned i = 0; i < nw; i++) {
            for (unsigned k = 0; k <= GH_METRICS_NBUCKETS; k++)
                b[k] +=
                    GH_STAT_GET(&ws[i].stats.latency[(size_t)rt * (GH_METRICS_NBUCKETS + 1) + k]);
            sum += GH_STAT_GET(&ws[i].stats.latency_sum_us[rt]);
        }
        uint64_t total = 0;
        for (unsigned k = 0; k <= GH_METRICS_NBUCKETS; k++)
            total += b[k];
        if (!total)
            continue;
        char lab[512];
        snprintf(lab, sizeof lab, "listener=\"%s\",method=\"%s\",route=\"%s\"", listener, method,
                 name);
        for (unsigned k = 0; k < GH_METRICS_NBUCKETS; k++) {
            cum += b[k];
            gh_buf_printf(out,
                          "gatehouse_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                          lab, (double)gh_metrics_buckets_us[k] / 1e6, (unsigned long long)cum);
        }
        gh_buf_printf(out,
                      "gatehouse_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
                      "gatehouse_http_request_duration_seconds_sum{%s} %.6f\n"
                      "gatehouse_http_request_duration_seconds_count{%s} %llu\n",
                      lab, (unsigned long long)total, lab, (double)sum / 1e6, lab,
                      (unsigned long long)total);
    }
}

/* One gauge per worker (the admin worker labelled "admin"): the stats
 * field at offset, times scale (1 prints a whole, signed number). */
static void render_per_worker_as(struct gh_buf *out, struct gh_server *srv, const char *name,
                                 const char *help, const char *type, size_t offset, double scale)
{
    gh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (unsigned i = 0; i <= srv->nworkers; i++) {
        struct gh_worker *w = i < srv->nworkers ? &srv->workers[i] : &srv->admin;
        _Atomic uint64_t *f = (_Atomic uint64_t *)((char *)&w->stats + offset);
        char id[16];
        snprintf(id, sizeof id, w->admin ? "admin" : "%u", w->id);
        if (scale == 1)
            gh_buf_printf(out, "%s{worker=\"%s\"} %lld\n", name, id,
                          (long long)(int64_t)GH_STAT_GET(f));
        else
            gh_buf_printf(out, "%s{worker=\"%s\"} %.6f\n", name, id,
                          (double)GH_STAT_GET(f) * scale);
    }
}

static void render_per_worker(struct gh_buf *out, struct gh_server *srv, const char *name,
                              const char *help, size_t offset, double scale)
{
    render_per_worker_as(out, srv, name, help, "gauge", offset, scale);
}

void gh_server_render_metrics(struct gh_server *srv, struct gh_buf *out)
{
    gh_buf_printf(out,
                  "# HELP gatehouse_build_info Version of the running binary.\n"
                  "# TYPE gatehouse_build_info gauge\n"
                  "gatehouse_build_info{version=\"%s\"} 1\n"
                  "# HELP gatehouse_uptime_seconds Seconds since start.\n"
                  "# TYPE gatehouse_uptime_seconds gauge\n"
                  "gatehouse_uptime_seconds %.3f\n",
                  GH_VERSION, (double)(gh_wall_ms() - srv->started_ms) / 1000.0);
    gh_buf_append_str(out, "# HELP gatehouse_http_requests_total Requests answered, by route "
                           "and status.\n# TYPE gatehouse_http_requests_total counter\n");
    render_requests(out, "public", srv->workers, srv->nworkers, &srv->http->router);
    render_requests(out, "admin", &srv->admin, 1, &srv->http->admin_router);
    gh_buf_append_str(out, "# HELP gatehouse_http_request_duration_seconds Time from the "
                           "first byte of a request to its answer.\n"
                           "# TYPE gatehouse_http_request_duration_seconds histogram\n");
    render_latency(out, "public", srv->workers, srv->nworkers, &srv->http->router);
    render_latency(out, "admin", &srv->admin, 1, &srv->http->admin_router);

    render_per_worker(out, srv, "gatehouse_connections_open", "Open client connections.",
                      offsetof(struct gh_worker_stats, conns_open), 1);
    uint64_t accepted = 0, pending = 0, sampled = 0;
    uint64_t refused[GH_REFUSE_COUNT] = {0};
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct gh_worker *w = &srv->workers[i];
        accepted += GH_STAT_GET(&w->stats.conns_accepted);
        pending += GH_STAT_GET(&w->stats.pending_headers);
        sampled += GH_STAT_GET(&w->stats.access_sampled_out);
        for (unsigned k = 0; k < GH_REFUSE_COUNT; k++)
            refused[k] += GH_STAT_GET(&w->stats.refused[k]);
    }
    gh_buf_printf(out,
                  "# HELP gatehouse_connections_accepted_total Connections accepted.\n"
                  "# TYPE gatehouse_connections_accepted_total counter\n"
                  "gatehouse_connections_accepted_total %llu\n"
                  "# HELP gatehouse_connections_pending_headers Connections that have not "
                  "sent complete headers.\n"
                  "# TYPE gatehouse_connections_pending_headers gauge\n"
                  "gatehouse_connections_pending_headers %lld\n",
                  (unsigned long long)accepted, (long long)(int64_t)pending);
    gh_buf_append_str(out, "# HELP gatehouse_connections_refused_total Connections refused "
                           "or closed by a limit, by limit.\n"
                           "# TYPE gatehouse_connections_refused_total counter\n");
    for (unsigned k = 0; k < GH_REFUSE_COUNT; k++)
        gh_buf_printf(out, "gatehouse_connections_refused_total{limit=\"%s\"} %llu\n",
                      gh_refusal_name((enum gh_refusal)k), (unsigned long long)refused[k]);
    struct gh_config *cfg = gh_server_config(srv);
    gh_buf_printf(out,
                  "# HELP gatehouse_body_memory_bytes Bytes charged by request bodies being "
                  "received (limits.body_memory).\n"
                  "# TYPE gatehouse_body_memory_bytes gauge\n"
                  "gatehouse_body_memory_bytes %llu\n"
                  "# HELP gatehouse_body_memory_limit_bytes The body budget (limits.body_memory); "
                  "bodies without credentials may fill half.\n"
                  "# TYPE gatehouse_body_memory_limit_bytes gauge\n"
                  "gatehouse_body_memory_limit_bytes %llu\n",
                  (unsigned long long)atomic_load_explicit(&srv->http->body_bytes, memory_order_relaxed),
                  (unsigned long long)(cfg ? cfg->limits.body_memory : 0));
    if (cfg)
        gh_config_unref(cfg);
    render_per_worker(out, srv, "gatehouse_event_loop_lag_seconds",
                      "How late the last 100 ms tick of each worker's loop fired.",
                      offsetof(struct gh_worker_stats, loop_lag_us), 1e-6);
    render_per_worker(out, srv, "gatehouse_event_loop_lag_max_seconds",
                      "Largest tick lag of each worker over the last 10 s.",
                      offsetof(struct gh_worker_stats, loop_lag_max_us), 1e-6);
    render_per_worker_as(out, srv, "gatehouse_event_loop_yields_total",
                         "Busy loop turns that ended by yielding the CPU to the store or "
                         "password threads working on the worker's requests.",
                         "counter", offsetof(struct gh_worker_stats, loop_yields), 1);
    render_per_worker_as(out, srv, "gatehouse_event_loop_parked_total",
                         "Requests without credentials whose headers arrived after the loop "
                         "turn's work budget was spent, checked at the turn's end instead.",
                         "counter", offsetof(struct gh_worker_stats, parked), 1);
    render_per_worker_as(out, srv, "gatehouse_event_loop_priority_reads_total",
                         "Reads of signed-in users' connections made during a busy loop turn, "
                         "ahead of the poll's other events.",
                         "counter", offsetof(struct gh_worker_stats, prio_reads), 1);
    gh_buf_printf(out,
                  "# HELP gatehouse_log_lines_dropped_total Log lines dropped because the "
                  "buffer was full.\n# TYPE gatehouse_log_lines_dropped_total counter\n"
                  "gatehouse_log_lines_dropped_total %llu\n"
                  "# HELP gatehouse_access_log_sampled_out_total Requests not written to the "
                  "access log because of sampling.\n"
                  "# TYPE gatehouse_access_log_sampled_out_total counter\n"
                  "gatehouse_access_log_sampled_out_total %llu\n",
                  (unsigned long long)gh_log_dropped(), (unsigned long long)sampled);
    gh_metrics_render_registry(out);
}
