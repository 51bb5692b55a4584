/* Connections: accept, read, parse, dispatch to the router, write, and the
 * limits that guard each stage. Every function here runs on the thread of
 * the worker that owns the connection. */
#pragma once

#include "core/server.h"

/* The libuv connection callback of a worker's listener. */
void gh_conn_on_connection(uv_stream_t *listener, int status);
/* Enforces the header, body and idle deadlines (called by the worker tick). */
void gh_conn_sweep(struct gh_worker *w, uint64_t now_ms);
/* Graceful stop: closes idle and header-less connections, marks the others
 * to close after their current answer. */
void gh_conn_stop_worker(struct gh_worker *w);
/* Forced stop: closes every connection now. */
void gh_conn_close_all(struct gh_worker *w);
