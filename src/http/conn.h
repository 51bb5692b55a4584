/* Connections: accept, read, parse, dispatch to the router, write, and the
 * limits that guard each stage. Every function here runs on the thread of
 * the worker that owns the connection. */
#pragma once

#include "http/server.h"

/* Starts w's loop priorities and polls its listening socket (w->http->listen_fd):
 * each loop turn serves the reads of established connections, then the
 * requests they completed (valid credentials and operator routes at
 * once, the others at the turn's end; past the turn's work budget the
 * others' headers wait for it too), and only then accepts new
 * connections, at most w->http->accept_budget, a bound that shrinks when
 * turns run long. Worker thread, before its loop runs. 0 or a libuv
 * error code. */
int gh_conn_listen(struct gh_worker *w);
/* Stops accepting and closes the listening socket (graceful stop). */
void gh_conn_unlisten(struct gh_worker *w);
/* Closes the loop-turn handles (the worker's exit). */
void gh_conn_turn_close(struct gh_worker *w);
/* Enforces the header, body and idle deadlines (called by the worker tick). */
void gh_conn_sweep(struct gh_worker *w, uint64_t now_ms);
/* Graceful stop: closes idle and header-less connections, marks the others
 * to close after their current answer. */
void gh_conn_stop_worker(struct gh_worker *w);
/* Forced stop: closes every connection now. */
void gh_conn_close_all(struct gh_worker *w);
