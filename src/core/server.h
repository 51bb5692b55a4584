/* The server: N event-loop workers, each with its own libuv loop and its
 * own SO_REUSEPORT listening socket, plus one admin worker on the admin
 * listener, all started and stopped by the main thread, which also handles
 * the signals (SIGTERM/SIGINT: graceful stop; SIGHUP: reload).
 * The main thread owns the gh_server; workers read it and own their
 * gh_worker. Subsystems attach per-worker state through worker hooks. */
#pragma once

#include "core/addrtab.h"
#include "core/config.h"
#include "core/list.h"
#include "core/secrets.h"
#include "obs/metrics.h"

#include <pthread.h>
#include <uv.h>

struct gh_server;
struct gh_worker;

/* Hooks a subsystem registers before start: init runs on each worker's
 * thread before it accepts, dispose after its loop has stopped. */
/* init returns 0 or a GH_E* code (never libuv's UV_E*, whose values
 * overlap them); the worker then stops the server. */
typedef int (*gh_worker_init_fn)(struct gh_worker *w, void *data);
typedef void (*gh_worker_dispose_fn)(struct gh_worker *w, void *data);
/* Runs on the main thread after a reload was accepted. */
typedef void (*gh_reload_fn)(struct gh_server *srv, const struct gh_config *cfg, void *data);

#define GH_WORKER_SLOTS 8

/* A function to run on a worker's loop, posted from any thread. */
typedef void (*gh_worker_task_fn)(struct gh_worker *w, void *data);
struct gh_worker_task;
#define GH_HOOKS_MAX 16

struct gh_http_worker;
struct gh_http_server;

struct gh_worker {
    unsigned id;
    bool admin;
    struct gh_server *srv;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;
    atomic_int commands;     /* GH_WCMD_* bits posted by the main thread */
    atomic_bool async_ready; /* async initialised: commands can wake the loop */
    uv_timer_t tick;
    struct gh_config *cfg; /* the worker's reference to the current config */
    bool stopping;

    uint64_t last_tick_ns;
    uint64_t lag_window_start_ms;

    /* the protocol's state of this worker (http/server.h): its listener
     * and connections; core only passes it along */
    struct gh_http_worker *http;
    struct gh_worker_stats stats;
    void *slots[GH_WORKER_SLOTS]; /* per-worker state of subsystems */
    /* jobs of this worker's requests running on other threads (the store,
     * the password pool), from gh_worker_job_begin to gh_worker_job_done:
     * while any is out, a saturated turn ends by giving way to them */
    atomic_uint jobs_out;
    /* tasks posted by other threads (gh_worker_post) */
    uv_async_t task_async;
    pthread_mutex_t task_mu;
    struct gh_worker_task *task_head, *task_tail;
    bool task_closed;
    int start_rc;
};

/* What the protocol layer does for the workers (http/server.c installs
 * it with gh_http_server_attach): core runs the threads, loops, ticks,
 * hooks and the stop sequence and calls these for everything that
 * concerns listeners and connections. */
struct gh_worker_proto {
    /* Main thread, before the threads start: binds the listening sockets
     * (srv->nworkers public ones and the admin one) and sets srv->port.
     * 0, or GH_E* with the reason in err (nothing left open). */
    int (*open)(struct gh_server *srv, const struct gh_config *cfg, struct gh_buf *err);
    /* Main thread: the protocol state of w (its listening socket taken
     * over), after w's loop is initialised. 0 or GH_ENOMEM. */
    int (*worker_init)(struct gh_worker *w);
    /* Main thread, after w's thread has ended (or never started). */
    void (*worker_dispose)(struct gh_worker *w);
    /* Worker thread, before its loop runs: start serving. 0 or UV_E*. */
    int (*start)(struct gh_worker *w);
    /* Worker thread: w->cfg was replaced (reload). */
    void (*config)(struct gh_worker *w);
    /* Worker thread: deadlines, from the 100 ms tick (loop clock, ms). */
    void (*tick)(struct gh_worker *w, uint64_t now_ms);
    /* Worker thread: graceful stop (stop accepting, close what is idle). */
    void (*stop)(struct gh_worker *w);
    /* Worker thread: forced stop (close everything now). */
    void (*force)(struct gh_worker *w);
    /* Worker thread: connections still open (the worker exits at 0). */
    unsigned (*open_count)(struct gh_worker *w);
    /* Worker thread: close the protocol's handles (the worker's exit). */
    void (*exit)(struct gh_worker *w);
    /* Worker thread, after its loop has ended: free thread caches. */
    void (*loop_done)(struct gh_worker *w);
};

#define GH_WCMD_RELOAD 1
#define GH_WCMD_STOP   2
#define GH_WCMD_FORCE  4

struct gh_server {
    struct gh_config *cfg; /* current; swap and ref under cfg_mu */
    pthread_mutex_t cfg_mu;
    char *config_path;
    char **overrides; /* "section.key=value" from flags, re-applied on reload */
    unsigned noverrides;
    char **envp;

    struct gh_secrets secrets;
    struct gh_worker *workers;
    unsigned nworkers;
    struct gh_worker admin;

    atomic_uint conns_total;
    struct gh_addrtab *addrs;
    /* the protocol's server-wide state (http/server.h: routers, listener
     * hooks, body memory); core only passes it along. NULL until
     * gh_http_server_attach */
    struct gh_http_server *http;

    struct {
        gh_worker_init_fn init;
        gh_worker_dispose_fn dispose;
        void *data;
    } hooks[GH_HOOKS_MAX];
    unsigned nhooks;
    struct {
        gh_reload_fn fn;
        void *data;
    } reload_hooks[GH_HOOKS_MAX];
    unsigned nreload_hooks;

    uv_loop_t main_loop;
    uv_async_t exit_async;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t stop_timer;
    atomic_uint workers_running;
    uint64_t started_ms;
    uint64_t stop_deadline_ms;
    atomic_bool stopping;
    int exit_code;
    char listen_desc[80];
    const struct gh_worker_proto *proto; /* NULL until gh_http_server_attach */
    uint16_t port;                       /* the public listener's bound port (proto->open) */
};

/* Builds the configuration from the file (or NULL), the overrides and the
 * environment, and validates it. 0 or GH_EINVAL with the message in err. */
int gh_server_build_config(const char *path, char **overrides, unsigned noverrides, char **envp,
                           struct gh_config **out, struct gh_buf *err);

/* Prepares a server around cfg (taking over its reference): data
 * directory, secrets, logs, routes. 0 or a negative code with err set. */
int gh_server_init(struct gh_server *srv, struct gh_config *cfg, struct gh_buf *err);
/* Registers a per-worker hook; before gh_server_run only. */
int gh_server_add_worker_hook(struct gh_server *srv, gh_worker_init_fn init,
                              gh_worker_dispose_fn dispose, void *data);
int gh_server_add_reload_hook(struct gh_server *srv, gh_reload_fn fn, void *data);
/* Binds, starts the workers and runs until a stop signal and the graceful
 * shutdown are over. Returns the process exit code. */
int gh_server_run(struct gh_server *srv);
void gh_server_dispose(struct gh_server *srv);

/* Runs fn(w, data) on w's loop thread soon. Any thread may call it; this
 * is how work done off the loop (password hashing, database) comes back
 * to answer its request. Returns GH_ENOMEM, or GH_EBUSY when the worker
 * has stopped (then fn never runs and the caller keeps data). */
int gh_worker_post(struct gh_worker *w, gh_worker_task_fn fn, void *data);

/* A job of w's is handed to another thread (begin, before it can finish)
 * and that thread has finished with it (done, before posting its answer):
 * a pool that will answer on w's loop brackets each job with these, so
 * that a loop saturated by a flood yields the CPU to the threads doing its
 * users' work instead of keeping it until the scheduler's slice runs out
 * (conn.c, on_turn_end). Any thread. */
static inline void gh_worker_job_begin(struct gh_worker *w)
{
    atomic_fetch_add_explicit(&w->jobs_out, 1, memory_order_relaxed);
}

static inline void gh_worker_job_done(struct gh_worker *w)
{
    atomic_fetch_sub_explicit(&w->jobs_out, 1, memory_order_relaxed);
}
/* A new reference to the current configuration (any thread). */
struct gh_config *gh_server_config(struct gh_server *srv);
/* Re-reads the configuration as SIGHUP does. 0, or an error in err and the
 * old configuration kept. Main thread. */
int gh_server_reload(struct gh_server *srv, struct gh_buf *err);
/* Asks the server to stop gracefully (any thread). */
void gh_server_request_stop(struct gh_server *srv);
