/* The HTTP side of the server: the listening sockets, the per-worker
 * connection state that conn.c drives, and the HTTP part of /metrics.
 * core/server.c runs the workers' loops, their hooks, the signals and
 * reload without knowing what a connection is; it reaches this layer only
 * through the struct gh_worker_proto that gh_http_server_attach installs.
 *
 * Ownership: each gh_http_worker belongs to its worker (w->http), is
 * allocated on the main thread before the worker threads start, used only
 * on its worker's thread while they run, and freed after they have been
 * joined (gh_server_dispose). */
#pragma once

#include "core/list.h"
#include "core/server.h"
#include "http/router.h"

#include <linux/filter.h>
#include <pthread.h>

#define GH_RID_BUF 512

/* Decides at accept, before any read, whether an address may connect. */
typedef bool (*gh_accept_filter_fn)(const struct gh_addr *a, void *data);
/* Runs on the worker when the headers of a routed public request that
 * has a body are complete, before any of its body is read (the shield:
 * the aggregate limits of its class already refuse). Returns 0 to go on,
 * or 429 with *retry_after_s set: the request is refused from its headers
 * and the connection closed (lingering). */
typedef int (*gh_header_filter_fn)(struct gh_http_req *req, unsigned *retry_after_s, void *data);
/* True when req's headers carry valid credentials (an API key or a
 * session): a route's body cap above limits.body_max is for them only.
 * Runs on the worker when the headers are complete, before any body byte
 * is read. */
typedef bool (*gh_credentials_fn)(struct gh_http_req *req, void *data);
/* Starts an asynchronous look-up of req's credentials when the in-memory
 * answer may be incomplete (an evicted session or key): 0 and *job set
 * when started, then wake(arg) runs on the worker once the credentials
 * hook can answer for sure; negative when there is nothing to wait for.
 * cancel(job) when arg goes away first (no wake then). */
typedef int (*gh_credentials_fetch_fn)(struct gh_http_req *req, void (*wake)(void *arg), void *arg,
                                       void **job, void *data);
typedef void (*gh_credentials_cancel_fn)(void *job);
/* True when a peer is a trusted load balancer whose connections start
 * with a PROXY protocol header (v1 or v2). Any worker thread. */
typedef bool (*gh_proxy_trusted_fn)(const struct gh_addr *peer, void *data);

/* The server-wide HTTP state (srv->http): the two routers and the hooks
 * the subsystems install on the public listener at init (main thread,
 * before gh_server_run; read-only while the workers run, except the two
 * atomics). */
struct gh_http_server {
    struct gh_router router;       /* public listener */
    struct gh_router admin_router; /* admin listener */
    gh_accept_filter_fn accept_filter;
    void *accept_filter_data;
    gh_proxy_trusted_fn proxy_trusted; /* public listener only */
    void *proxy_trusted_data;
    gh_header_filter_fn header_filter; /* public listener only */
    void *header_filter_data;
    gh_credentials_fn credentials; /* public listener only; NULL = none are valid */
    void *credentials_data;
    gh_credentials_fetch_fn credentials_fetch; /* NULL = the hook's answer is final */
    gh_credentials_cancel_fn credentials_cancel;
    /* bytes charged by request bodies being received on the public
     * listener, all workers together (limits.body_memory; conn.c) */
    _Atomic uint64_t body_bytes;
    /* keep-alive idle timeout factor in thousandths (0 or 1000 = as
     * configured); the shield lowers it under pressure, the sweep reads it */
    atomic_uint idle_factor_milli;
    /* the public listening sockets' filter (gh_http_listen_filter): each
     * worker attaches the program of a newer generation at its tick */
    pthread_mutex_t lf_lock;
    struct sock_filter lf_insns[BPF_MAXINSNS];
    unsigned lf_len;         /* 0: no filter */
    _Atomic uint64_t lf_gen; /* bumped by each gh_http_listen_filter */
    _Atomic int lf_errno;    /* the last attach a socket refused, 0 if none */
};

struct gh_http_worker {
    const struct gh_router *router; /* the listener's routes */
    uv_poll_t listener;             /* listen_fd, accepted by conn.c at the end of each loop turn */
    int listen_fd;
    bool listening;
    /* the loop's priorities (conn.c): users' and operators' requests are
     * dispatched as soon as they are parsed; the others parsed in a turn
     * wait in ready until the turn's end (past the turn's work budget,
     * their headers wait in parked, unread further), then new connections are
     * accepted, at most accept_budget of them, a bound that adapts to how
     * long the loop's turns take */
    uv_check_t turn_end;
    uv_idle_t turn_spin; /* keeps the poll from blocking while ready holds requests */
    struct gh_list ready;
    struct gh_list parked; /* connections whose anonymous headers wait for the turn's end */
    bool accept_ready;  /* the listening socket was readable this turn */
    bool accept_paused; /* out of descriptors: polled again by the tick */
    unsigned accept_budget;
    uint64_t turn_mark_ns, turn_idle_mark_ns;
    /* signed-in users' keep-alive connections, also in an epoll set of
     * their own (edge-triggered), looked at every PRIO_EVERY_NS of a busy
     * turn's work so that a user's next request does not wait for the
     * poll's other events (conn.c, prio_check); -1 when none */
    int prio_ep;
    unsigned nprio; /* connections in prio_ep */
    uint64_t prio_mark_ns;
    bool in_prio;
    _Atomic uint64_t lf_gen; /* the listen filter's generation this socket has */

    /* connections, by what they wait for; each list is ordered by since */
    struct gh_list conns_header; /* headers not complete (slowloris guard) */
    struct gh_list conns_body;   /* reading a body (minimum rate) */
    struct gh_list conns_idle;   /* keep-alive between requests */
    struct gh_list conns_busy;   /* a request being answered */
    unsigned nconns;
    unsigned npending; /* in conns_header */
    unsigned pending_cap;

    char date_hdr[48]; /* "Date: …\r\n" */
    uint64_t date_sec;
    uint8_t rid_buf[GH_RID_BUF]; /* CSPRNG bytes for x-request-id (conn.c) */
    unsigned rid_left;           /* bytes not yet drawn (from the end); 0 = refill */

    struct {
        uint64_t window_sec;
        unsigned count;
        unsigned skip;
    } access_log;

    char *scratch; /* read buffer shared by this worker's connections */
    size_t scratch_len;
    struct gh_buf out; /* where responses are assembled; its block is reused */
};

/* Makes srv an HTTP server: installs the protocol operations its workers
 * run (listening sockets, connections, deadlines, graceful and forced
 * stop) and http (owned by the caller, outliving srv's run) as srv->http,
 * its routers empty and no hooks. Main thread, after gh_server_init and
 * before the subsystems register routes and hooks. */
void gh_http_server_attach(struct gh_server *srv, struct gh_http_server *http);
/* Sets the classic BPF program (SO_ATTACH_FILTER) of every public
 * listening socket; len 0 detaches it. Each worker attaches it to its own
 * socket on its loop (a posted task, else its next tick: within 100 ms).
 * Any thread. Returns the program's generation (0 when len is over
 * BPF_MAXINSNS: nothing changes). A socket's refusal is kept in lf_errno. */
uint64_t gh_http_listen_filter(struct gh_server *srv, const struct sock_filter *insns,
                               unsigned len);
/* The newest generation every public worker has attached (one that
 * stopped listening keeps what it had). */
uint64_t gh_http_listen_filter_applied(struct gh_server *srv);
/* Attaches a newer listen filter to w's own listening socket (conn.c; on
 * w's loop, which alone may use the descriptor: it closes it when it stops
 * listening). */
void gh_conn_listen_filter_apply(struct gh_worker *w);

/* Renders /metrics: the HTTP statistics of every worker, the process's
 * own gauges and the metrics registry (any thread). */
void gh_server_render_metrics(struct gh_server *srv, struct gh_buf *out);
