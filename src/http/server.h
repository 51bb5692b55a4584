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

#define GH_RID_BUF 512

struct gh_http_worker {
    const struct gh_router *router; /* the listener's routes */
    uv_poll_t listener;             /* listen_fd, accepted by conn.c at the end of each loop turn */
    int listen_fd;
    bool listening;
    /* the loop's priorities (conn.c): users' and operators' requests are
     * dispatched as soon as they are parsed; the others parsed in a turn
     * wait in ready until the turn's end, then new connections are
     * accepted, at most accept_budget of them, a bound that adapts to how
     * long the loop's turns take */
    uv_check_t turn_end;
    uv_idle_t turn_spin; /* keeps the poll from blocking while ready holds requests */
    struct gh_list ready;
    bool accept_ready;  /* the listening socket was readable this turn */
    bool accept_paused; /* out of descriptors: polled again by the tick */
    unsigned accept_budget;
    uint64_t turn_mark_ns, turn_idle_mark_ns;

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
 * stop). Main thread, after gh_server_init and before gh_server_run. */
void gh_http_server_attach(struct gh_server *srv);

/* Renders /metrics: the HTTP statistics of every worker, the process's
 * own gauges and the metrics registry (any thread). */
void gh_server_render_metrics(struct gh_server *srv, struct gh_buf *out);
