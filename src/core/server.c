/* This module implements the worker threads, signals, reload and
 * graceful shutdown of server.h. It knows no protocol: the listeners and
 * connections are the protocol layer's (srv->proto, http/server.c). */
#include "core/server.h"

#include "core/log.h"

#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 100

int gh_server_build_config(const char *path, char **overrides, unsigned noverrides, char **envp,
                           struct gh_config **out, struct gh_buf *err)
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
    w->srv->proto->config(w);
}

static void worker_exit(struct gh_worker *w)
{
    if (uv_is_closing((uv_handle_t *)&w->async))
        return;
    /* tasks posted from now on are refused (their senders then finish
     * them off the loop, with no worker); those queued run now, while the
     * modules they were posted for still live: a hook's dispose may free
     * what a task writes to (a store job's answer ran after the gateway
     * that asked had been freed) */
    pthread_mutex_lock(&w->task_mu);
    w->task_closed = true;
    pthread_mutex_unlock(&w->task_mu);
    run_tasks(w);
    for (unsigned i = 0; i < w->srv->nhooks; i++)
        if (w->srv->hooks[i].dispose)
            w->srv->hooks[i].dispose(w, w->srv->hooks[i].data);
    uv_close((uv_handle_t *)&w->async, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_close((uv_handle_t *)&w->task_async, NULL);
    w->srv->proto->exit(w);
}

static void worker_stop(struct gh_worker *w)
{
    if (!w->stopping) {
        w->stopping = true;
        w->srv->proto->stop(w);
    }
    if (w->srv->proto->open_count(w) == 0)
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
        w->srv->proto->force(w);
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
    w->srv->proto->tick(w, uv_now(&w->loop));
    if (w->stopping && w->srv->proto->open_count(w) == 0)
        worker_exit(w);
}

static void worker_main(void *arg)
{
    struct gh_worker *w = arg;
    struct gh_server *srv = w->srv;
    w->async.data = w;
    w->tick.data = w;
    int rc = srv->proto->start(w);
    if (!rc)
        rc = uv_async_init(&w->loop, &w->async, on_worker_async);
    if (!rc) {
        /* a command posted before this (a stop asked while the workers
         * were still starting) did not wake the loop: wake it now */
        atomic_store(&w->async_ready, true);
        if (atomic_load(&w->commands))
            uv_async_send(&w->async);
    }
    w->task_async.data = w;
    if (!rc)
        rc = uv_async_init(&w->loop, &w->task_async, on_task_async);
    if (!rc)
        rc = uv_timer_init(&w->loop, &w->tick);
    /* libuv's codes above, the hooks' GH_E* codes below: the two ranges
     * overlap (-1 is both UV_EPERM and GH_EINVAL), so each is named apart */
    int hrc = 0;
    for (unsigned i = 0; !rc && !hrc && i < srv->nhooks; i++)
        if (srv->hooks[i].init)
            hrc = srv->hooks[i].init(w, srv->hooks[i].data);
    /* the tick's lag counts from here, when the loop is about to run: the
     * time the hooks took to start is not the loop's lag (it was read as
     * a first tick late by that much, and the shield shed for it) */
    if (!rc && !hrc) {
        uv_update_time(&w->loop);
        w->last_tick_ns = gh_now_ns();
        w->lag_window_start_ms = w->last_tick_ns / 1000000u;
        rc = uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    }
    w->start_rc = rc ? GH_EIO : hrc;
    if (w->start_rc) {
        gh_log(GH_LOG_ERROR, "worker_start", "worker %u failed to start: %s", w->id,
               rc ? uv_strerror(rc) : gh_strerror(hrc));
        gh_server_request_stop(srv);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* anything a hook left open is closed here, so the loop can end */
    srv->proto->loop_done(w);
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

/* Any thread. The command waits in w->commands until the worker's async
 * exists (worker_main sends it then): a stop may be asked, by a worker
 * that failed to start say, while other workers are still starting. */
static void post(struct gh_worker *w, int cmd)
{
    atomic_fetch_or(&w->commands, cmd);
    if (atomic_load(&w->async_ready))
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
            gh_log(GH_LOG_ERROR, "reload_refused",
                   "configuration not reloaded, keeping the "
                   "running one: %s",
                   err.data ? err.data : "error");
        else
            gh_log(GH_LOG_INFO, "reload", "configuration reloaded");
        gh_buf_dispose(&err);
        return;
    }
    begin_stop(srv, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* w is zeroed but for w->http, which proto->open set. */
static int init_worker(struct gh_server *srv, struct gh_worker *w, unsigned id, bool admin)
{
    w->id = id;
    w->admin = admin;
    w->srv = srv;
    pthread_mutex_init(&w->task_mu, NULL);
    if (uv_loop_init(&w->loop) || srv->proto->worker_init(w))
        return GH_ENOMEM;
    worker_take_config(w);
    return 0;
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
    int rc = srv->workers ? 0 : GH_ENOMEM;
    if (!rc && !srv->proto) {
        gh_buf_printf(&err, "no protocol attached to the server");
        rc = GH_EINVAL;
    }
    if (!rc)
        rc = srv->proto->open(srv, cfg, &err);
    if (rc) {
        fprintf(stderr, "gatehouse: %s\n", err.data ? err.data : "cannot start");
        gh_log(GH_LOG_ERROR, "start_failed", "%s", err.data ? err.data : "cannot start");
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
        if (init_worker(srv, &srv->workers[i], i, false))
            rc = GH_ENOMEM;
    if (init_worker(srv, &srv->admin, n, true))
        rc = GH_ENOMEM;
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
        gh_log(GH_LOG_INFO, "listening",
               "gatehouse %s serving on %s (port %u) with %u workers; admin on %s", GH_VERSION,
               cfg->server.listen, srv->port, n, cfg->server.admin_listen);
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

static void dispose_worker(struct gh_server *srv, struct gh_worker *w)
{
    if (srv->proto)
        srv->proto->worker_dispose(w);
    gh_config_unref(w->cfg);
    w->cfg = NULL;
}

void gh_server_dispose(struct gh_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        dispose_worker(srv, &srv->workers[i]);
    if (srv->workers)
        dispose_worker(srv, &srv->admin);
    free(srv->workers);
    srv->workers = NULL;
    gh_addrtab_free(srv->addrs);
    srv->addrs = NULL;
    gh_config_unref(srv->cfg);
    srv->cfg = NULL;
    sodium_memzero(&srv->secrets, sizeof srv->secrets);
    pthread_mutex_destroy(&srv->cfg_mu);
}
