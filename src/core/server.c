/* This module implements the worker threads, listeners, signals, reload
 * and graceful shutdown of server.h. */
#include "core/server.h"

#include "core/log.h"
#include "http/conn.h"
#include "http/parser.h"

#include <errno.h>
#include <sodium.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS        100
#define SCRATCH_BYTES  (64u << 10)
#define LISTEN_BACKLOG 4096

int gh_server_build_config(const char *path, char **overrides, unsigned noverrides,
                           char **envp, struct gh_config **out, struct gh_buf *err)
{
    struct gh_config *c = gh_config_new();
    if (!c) {
        gh_buf_printf(err, "out of memory");
        return GH_ENOMEM;
    }
    int rc = 0;
    if (path)
        rc = gh_config_load_file(c, path, err);
    for (unsigned i = 0; !rc && i < noverrides; i++)
        rc = gh_config_set_assignment(c, overrides[i], "command line", err);
    if (!rc)
        rc = gh_config_apply_env(c, envp, err);
    if (!rc)
        rc = gh_config_validate(c, err);
    if (rc) {
        gh_config_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

struct gh_config *gh_server_config(struct gh_server *srv)
{
    pthread_mutex_lock(&srv->cfg_mu);
    struct gh_config *c = gh_config_ref(srv->cfg);
    pthread_mutex_unlock(&srv->cfg_mu);
    return c;
}

int gh_server_init(struct gh_server *srv, struct gh_config *cfg, struct gh_buf *err)
{
    memset(srv, 0, sizeof *srv);
    pthread_mutex_init(&srv->cfg_mu, NULL);
    srv->cfg = cfg;
    srv->started_ms = gh_wall_ms();
    gh_router_init(&srv->router);
    gh_router_init(&srv->admin_router);
    int rc = gh_datadir_prepare(cfg->server.data_dir, err);
    if (rc)
        return rc;
    rc = gh_log_start(cfg, err);
    if (rc)
        return rc;
    rc = gh_secrets_load(cfg, &srv->secrets, err);
    if (rc)
        return rc;
    srv->addrs = gh_addrtab_new(cfg->limits.max_conns);
    if (!srv->addrs) {
        gh_buf_printf(err, "out of memory for the connection table");
        return GH_ENOMEM;
    }
    return 0;
}

int gh_server_add_worker_hook(struct gh_server *srv, gh_worker_init_fn init,
                              gh_worker_dispose_fn dispose, void *data)
{
    if (srv->nhooks >= GH_HOOKS_MAX)
        return GH_ETOOBIG;
    srv->hooks[srv->nhooks].init = init;
    srv->hooks[srv->nhooks].dispose = dispose;
    srv->hooks[srv->nhooks].data = data;
    srv->nhooks++;
    return 0;
}

int gh_server_add_reload_hook(struct gh_server *srv, gh_reload_fn fn, void *data)
{
    if (srv->nreload_hooks >= GH_HOOKS_MAX)
        return GH_ETOOBIG;
    srv->reload_hooks[srv->nreload_hooks].fn = fn;
    srv->reload_hooks[srv->nreload_hooks].data = data;
    srv->nreload_hooks++;
    return 0;
}

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
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
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
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
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

/* ---- workers ---- */

struct gh_worker_task {
    struct gh_worker_task *next;
    gh_worker_task_fn fn;
    void *data;
};

int gh_worker_post(struct gh_worker *w, gh_worker_task_fn fn, void *data)
{
    struct gh_worker_task *t = malloc(sizeof *t);
    if (!t)
        return GH_ENOMEM;
    t->next = NULL;
    t->fn = fn;
    t->data = data;
    pthread_mutex_lock(&w->task_mu);
    if (w->task_closed) {
        pthread_mutex_unlock(&w->task_mu);
        free(t);
        return GH_EBUSY;
    }
    if (w->task_tail)
        w->task_tail->next = t;
    else
        w->task_head = t;
    w->task_tail = t;
    uv_async_send(&w->task_async);
    pthread_mutex_unlock(&w->task_mu);
    return 0;
}

static void run_tasks(struct gh_worker *w)
{
    pthread_mutex_lock(&w->task_mu);
    struct gh_worker_task *t = w->task_head;
    w->task_head = w->task_tail = NULL;
    pthread_mutex_unlock(&w->task_mu);
    while (t) {
        struct gh_worker_task *next = t->next;
        t->fn(w, t->data);
        free(t);
        t = next;
    }
}

static void on_task_async(uv_async_t *a)
{
    run_tasks(a->data);
}

static void worker_take_config(struct gh_worker *w)
{
    struct gh_config *n = gh_server_config(w->srv);
    gh_config_unref(w->cfg);
    w->cfg = n;
    unsigned cap = w->admin ? 64 : n->limits.max_pending_headers / w->srv->nworkers;
    w->pending_cap = cap ? cap : 1;
}

static void worker_exit(struct gh_worker *w)
{
    if (uv_is_closing((uv_handle_t *)&w->async))
        return;
    for (unsigned i = 0; i < w->srv->nhooks; i++)
        if (w->srv->hooks[i].dispose)
            w->srv->hooks[i].dispose(w, w->srv->hooks[i].data);
    uv_close((uv_handle_t *)&w->async, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
    /* tasks posted from now on are refused; those queued still run */
    pthread_mutex_lock(&w->task_mu);
    w->task_closed = true;
    pthread_mutex_unlock(&w->task_mu);
    run_tasks(w);
    uv_close((uv_handle_t *)&w->task_async, NULL);
    gh_conn_unlisten(w);
    gh_conn_turn_close(w);
}

static void worker_stop(struct gh_worker *w)
{
    if (!w->stopping) {
        w->stopping = true;
        gh_conn_unlisten(w);
        gh_conn_stop_worker(w);
    }
    if (w->nconns == 0)
        worker_exit(w);
}

static void on_worker_async(uv_async_t *a)
{
    struct gh_worker *w = a->data;
    int cmds = atomic_exchange(&w->commands, 0);
    if (cmds & GH_WCMD_RELOAD)
        worker_take_config(w);
    if (cmds & GH_WCMD_FORCE) {
        w->stopping = true;
        gh_conn_close_all(w);
    }
    if (cmds & (GH_WCMD_STOP | GH_WCMD_FORCE))
        worker_stop(w);
}

static void on_tick(uv_timer_t *t)
{
    struct gh_worker *w = t->data;
    uint64_t now_ns = gh_now_ns();
    uint64_t expected = w->last_tick_ns + (uint64_t)TICK_MS * 1000000u;
    uint64_t lag_us = now_ns > expected ? (now_ns - expected) / 1000 : 0;
    w->last_tick_ns = now_ns;
    uint64_t now = now_ns / 1000000u;
    atomic_store_explicit(&w->stats.loop_lag_us, lag_us, memory_order_relaxed);
    if (now - w->lag_window_start_ms >= 10000) {
        w->lag_window_start_ms = now;
        atomic_store_explicit(&w->stats.loop_lag_max_us, lag_us, memory_order_relaxed);
    } else if (lag_us > GH_STAT_GET(&w->stats.loop_lag_max_us)) {
        atomic_store_explicit(&w->stats.loop_lag_max_us, lag_us, memory_order_relaxed);
    }
    /* connection states are stamped with the loop's clock: compare alike */
    gh_conn_sweep(w, uv_now(&w->loop));
    if (w->stopping && w->nconns == 0)
        worker_exit(w);
}

static void worker_main(void *arg)
{
    struct gh_worker *w = arg;
    struct gh_server *srv = w->srv;
    w->async.data = w;
    w->tick.data = w;
    int rc = gh_conn_listen(w);
    if (!rc)
        rc = uv_async_init(&w->loop, &w->async, on_worker_async);
    w->task_async.data = w;
    if (!rc)
        rc = uv_async_init(&w->loop, &w->task_async, on_task_async);
    if (!rc)
        rc = uv_timer_init(&w->loop, &w->tick);
    if (!rc) {
        w->last_tick_ns = gh_now_ns();
        w->lag_window_start_ms = w->last_tick_ns / 1000000u;
        rc = uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    }
    /* libuv's codes above, the hooks' GH_E* codes below: the two ranges
     * overlap (-1 is both UV_EPERM and GH_EINVAL), so each is named apart */
    int hrc = 0;
    for (unsigned i = 0; !rc && !hrc && i < srv->nhooks; i++)
        if (srv->hooks[i].init)
            hrc = srv->hooks[i].init(w, srv->hooks[i].data);
    w->start_rc = rc ? GH_EIO : hrc;
    if (w->start_rc) {
        gh_log(GH_LOG_ERROR, "worker_start", "worker %u failed to start: %s", w->id,
               rc ? uv_strerror(rc) : gh_strerror(hrc));
        gh_server_request_stop(srv);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* anything a hook left open is closed here, so the loop can end */
    gh_http_req_cache_flush();
    gh_buf_dispose(&w->out);
    if (uv_loop_close(&w->loop) == UV_EBUSY) {
#ifdef GH_DEBUG
        /* every module closes what it opened in its dispose hook; a handle
         * left here is a leak in one of them: name it and stop */
        fprintf(stderr, "worker %u: handles left open at loop close:\n", w->id);
        uv_print_all_handles(&w->loop, stderr);
        abort();
#endif
        uv_walk(&w->loop, (uv_walk_cb)(void (*)(void))uv_close, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
    }
    atomic_fetch_sub(&srv->workers_running, 1);
    uv_async_send(&srv->exit_async);
}

static void post(struct gh_worker *w, int cmd)
{
    atomic_fetch_or(&w->commands, cmd);
    uv_async_send(&w->async);
}

static void for_each_worker(struct gh_server *srv, void (*fn)(struct gh_worker *, int), int arg)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        fn(&srv->workers[i], arg);
    fn(&srv->admin, arg);
}

static void stop_timer_cb(uv_timer_t *t)
{
    struct gh_server *srv = t->data;
    gh_log(GH_LOG_WARN, "shutdown_forced",
           "in-flight requests did not finish within the shutdown timeout; closing them");
    for_each_worker(srv, post, GH_WCMD_FORCE);
}

void gh_server_request_stop(struct gh_server *srv)
{
    atomic_store(&srv->stopping, true);
    for_each_worker(srv, post, GH_WCMD_STOP);
}

static void begin_stop(struct gh_server *srv, const char *why)
{
    if (atomic_load(&srv->stopping) && uv_is_active((uv_handle_t *)&srv->stop_timer)) {
        gh_log(GH_LOG_WARN, "shutdown", "second %s: closing every connection now", why);
        for_each_worker(srv, post, GH_WCMD_FORCE);
        return;
    }
    struct gh_config *cfg = gh_server_config(srv);
    gh_log(GH_LOG_INFO, "shutdown", "%s: finishing in-flight requests (up to %llu ms)", why,
           (unsigned long long)cfg->server.shutdown_timeout_ms);
    uv_timer_start(&srv->stop_timer, stop_timer_cb, cfg->server.shutdown_timeout_ms, 0);
    gh_config_unref(cfg);
    gh_server_request_stop(srv);
}

int gh_server_reload(struct gh_server *srv, struct gh_buf *err)
{
    struct gh_config *n = NULL;
    int rc = gh_server_build_config(srv->config_path, srv->overrides, srv->noverrides, srv->envp,
                                    &n, err);
    if (rc)
        return rc;
    struct gh_config *old = srv->cfg;
    /* what the sockets, threads and files were built from stays */
    static const char *fixed[] = {"listen", "admin_listen", "data_dir"};
    char **nf[] = {&n->server.listen, &n->server.admin_listen, &n->server.data_dir};
    char *const of[] = {old->server.listen, old->server.admin_listen, old->server.data_dir};
    for (size_t i = 0; i < GH_ARRAY_LEN(fixed); i++) {
        if (strcmp(*nf[i], of[i])) {
            gh_log(GH_LOG_WARN, "reload", "[server] %s changed: takes effect after a restart",
                   fixed[i]);
            char *keep = strdup(of[i]);
            if (keep) {
                free(*nf[i]);
                *nf[i] = keep;
            }
        }
    }
    if (n->server.workers != old->server.workers) {
        gh_log(GH_LOG_WARN, "reload", "[server] workers changed: takes effect after a restart");
        n->server.workers = old->server.workers;
    }
    struct gh_buf lerr;
    gh_buf_init(&lerr, 512);
    if (gh_log_start(n, &lerr))
        gh_log(GH_LOG_WARN, "reload", "logs not reopened: %s", lerr.data ? lerr.data : "");
    gh_buf_dispose(&lerr);
    pthread_mutex_lock(&srv->cfg_mu);
    srv->cfg = n;
    pthread_mutex_unlock(&srv->cfg_mu);
    for_each_worker(srv, post, GH_WCMD_RELOAD);
    for (unsigned i = 0; i < srv->nreload_hooks; i++)
        srv->reload_hooks[i].fn(srv, n, srv->reload_hooks[i].data);
    gh_config_unref(old);
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct gh_server *srv = s->data;
    if (signum == SIGHUP) {
        struct gh_buf err;
        gh_buf_init(&err, 1024);
        if (gh_server_reload(srv, &err))
            gh_log(GH_LOG_ERROR, "reload_refused", "configuration not reloaded, keeping the "
                                                   "running one: %s",
                   err.data ? err.data : "error");
        else
            gh_log(GH_LOG_INFO, "reload", "configuration reloaded");
        gh_buf_dispose(&err);
        return;
    }
    begin_stop(srv, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int init_worker(struct gh_server *srv, struct gh_worker *w, unsigned id, bool admin,
                       int fd)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->admin = admin;
    w->srv = srv;
    w->router = admin ? &srv->admin_router : &srv->router;
    w->listen_fd = fd;
    gh_list_init(&w->conns_header);
    gh_list_init(&w->conns_body);
    gh_list_init(&w->conns_idle);
    gh_list_init(&w->conns_busy);
    pthread_mutex_init(&w->task_mu, NULL);
    w->scratch_len = SCRATCH_BYTES;
    w->scratch = malloc(SCRATCH_BYTES);
    if (!w->scratch || uv_loop_init(&w->loop))
        return GH_ENOMEM;
    worker_take_config(w);
    /* +1 slot for unmatched requests */
    return gh_worker_stats_init(&w->stats, w->router->n + 1);
}

static void on_exit_check(uv_async_t *a);

int gh_server_run(struct gh_server *srv)
{
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_config *cfg = gh_server_config(srv);
    signal(SIGPIPE, SIG_IGN);
    unsigned n = cfg->server.workers;
    if (!n) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    srv->nworkers = n;
    srv->workers = calloc(n, sizeof *srv->workers);
    int *fds = calloc(n, sizeof *fds);
    int admin_fd = -1;
    int rc = srv->workers && fds ? 0 : GH_ENOMEM;
    struct sockaddr_storage ss, ass;
    if (!rc && (gh_parse_hostport(cfg->server.listen, &ss) ||
                gh_parse_hostport(cfg->server.admin_listen, &ass)))
        rc = GH_EINVAL;
    bool shared = cfg->server.reuseport || n > 1;
    if (!rc && shared && port_of(&ss) && probe_address_free(&ss, cfg->server.listen, &err))
        rc = GH_EIO;
    for (unsigned i = 0; !rc && i < n; i++) {
        fds[i] = listen_socket(&ss, shared, &err, "listen");
        if (fds[i] < 0) {
            rc = GH_EIO;
            break;
        }
        if (i == 0)
            set_port(&ss, bound_port(fds[0])); /* port 0: every worker on the same one */
    }
    if (!rc) {
        admin_fd = listen_socket(&ass, false, &err, "admin_listen");
        if (admin_fd < 0)
            rc = GH_EIO;
    }
    if (rc) {
        fprintf(stderr, "gatehouse: %s\n", err.data ? err.data : "cannot start");
        gh_log(GH_LOG_ERROR, "start_failed", "%s", err.data ? err.data : "cannot start");
        for (unsigned i = 0; fds && i < n; i++)
            if (fds[i] > 0)
                close(fds[i]);
        free(fds);
        gh_buf_dispose(&err);
        gh_config_unref(cfg);
        return 1;
    }
    snprintf(srv->listen_desc, sizeof srv->listen_desc, "%s", cfg->server.listen);
    uv_loop_init(&srv->main_loop);
    uv_async_init(&srv->main_loop, &srv->exit_async, on_exit_check);
    srv->exit_async.data = srv;
    uv_timer_init(&srv->main_loop, &srv->stop_timer);
    srv->stop_timer.data = srv;
    uv_signal_t *sigs[] = {&srv->sig_term, &srv->sig_int, &srv->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(&srv->main_loop, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    for (unsigned i = 0; i < n; i++)
        if (init_worker(srv, &srv->workers[i], i, false, fds[i]))
            rc = GH_ENOMEM;
    if (init_worker(srv, &srv->admin, n, true, admin_fd))
        rc = GH_ENOMEM;
    free(fds);
    unsigned started = 0;
    atomic_store(&srv->workers_running, rc ? 0 : n + 1);
    for (unsigned i = 0; !rc && i <= n; i++) {
        struct gh_worker *w = i < n ? &srv->workers[i] : &srv->admin;
        if (uv_thread_create(&w->thread, worker_main, w)) {
            rc = GH_EIO;
            atomic_fetch_sub(&srv->workers_running, n + 1 - i);
            break;
        }
        started++;
    }
    if (rc) {
        gh_log(GH_LOG_ERROR, "start_failed", "cannot start the worker threads");
        gh_server_request_stop(srv);
    } else {
        uint16_t port = bound_port(srv->workers[0].listen_fd);
        gh_log(GH_LOG_INFO, "listening",
               "gatehouse %s serving on %s (port %u) with %u workers; admin on %s", GH_VERSION,
               cfg->server.listen, port, n, cfg->server.admin_listen);
    }
    gh_config_unref(cfg);
    uv_run(&srv->main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < started; i++)
        uv_thread_join(i < n ? &srv->workers[i].thread : &srv->admin.thread);
    uv_loop_close(&srv->main_loop);
    gh_buf_dispose(&err);
    gh_log(GH_LOG_INFO, "stopped", "gatehouse stopped");
    return rc ? 1 : srv->exit_code;
}

/* A worker thread ended; when all have, close the main loop's handles so
 * uv_run returns. uv_async_send coalesces wake-ups, so count, not calls. */
static void on_exit_check(uv_async_t *a)
{
    struct gh_server *srv = a->data;
    if (atomic_load(&srv->workers_running) != 0)
        return;
    uv_close((uv_handle_t *)&srv->exit_async, NULL);
    uv_close((uv_handle_t *)&srv->stop_timer, NULL);
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
}

void gh_server_dispose(struct gh_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        gh_worker_stats_dispose(&srv->workers[i].stats);
        free(srv->workers[i].scratch);
        gh_config_unref(srv->workers[i].cfg);
    }
    if (srv->workers) {
        gh_worker_stats_dispose(&srv->admin.stats);
        free(srv->admin.scratch);
        gh_config_unref(srv->admin.cfg);
    }
    free(srv->workers);
    srv->workers = NULL;
    gh_addrtab_free(srv->addrs);
    srv->addrs = NULL;
    gh_config_unref(srv->cfg);
    srv->cfg = NULL;
    sodium_memzero(&srv->secrets, sizeof srv->secrets);
    pthread_mutex_destroy(&srv->cfg_mu);
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
                b[k] += GH_STAT_GET(
                    &ws[i].stats.latency[(size_t)rt * (GH_METRICS_NBUCKETS + 1) + k]);
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
    gh_buf_printf(out, "# HELP gatehouse_build_info Version of the running binary.\n"
                       "# TYPE gatehouse_build_info gauge\n"
                       "gatehouse_build_info{version=\"%s\"} 1\n"
                       "# HELP gatehouse_uptime_seconds Seconds since start.\n"
                       "# TYPE gatehouse_uptime_seconds gauge\n"
                       "gatehouse_uptime_seconds %.3f\n",
                  GH_VERSION, (double)(gh_wall_ms() - srv->started_ms) / 1000.0);
    gh_buf_append_str(out, "# HELP gatehouse_http_requests_total Requests answered, by route "
                           "and status.\n# TYPE gatehouse_http_requests_total counter\n");
    render_requests(out, "public", srv->workers, srv->nworkers, &srv->router);
    render_requests(out, "admin", &srv->admin, 1, &srv->admin_router);
    gh_buf_append_str(out, "# HELP gatehouse_http_request_duration_seconds Time from the "
                           "first byte of a request to its answer.\n"
                           "# TYPE gatehouse_http_request_duration_seconds histogram\n");
    render_latency(out, "public", srv->workers, srv->nworkers, &srv->router);
    render_latency(out, "admin", &srv->admin, 1, &srv->admin_router);

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
                  (unsigned long long)atomic_load_explicit(&srv->body_bytes, memory_order_relaxed),
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
