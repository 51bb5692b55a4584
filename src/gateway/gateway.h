/* The AI gateway: the OpenAI-compatible chat API (GET /v1/models, POST
 * /v1/chat/completions, streaming by SSE), the built-in `echo` model, the
 * upstream model servers called through libcurl multi on each worker's
 * loop, quotas per API key and per user, usage per key and day (GET
 * /api/usage), and the admin routes /admin/v1/quotas and
 * /admin/v1/upstreams. See docs/internals/gateway.md.
 *
 * gh_gateway_init runs on the main thread before the server starts; the
 * gateway lives as long as the process. The status accessor may be called
 * from any thread. */
#pragma once

#include "core/server.h"

struct gh_gateway;

/* Loads the upstreams file, the quota overrides and the usage record,
 * registers the routes and the per-worker hooks. 0, or a negative code
 * with a message logged (the server must not start). */
int gh_gateway_init(struct gh_server *srv);

/* One upstream as the status page shows it. */
struct gh_gateway_upstream_status {
    char name[64];
    char model[128];
    const char *state; /* "up", "cooling_down", "circuit_open", "half_open", "disabled" */
    bool up;           /* in rotation now */
    unsigned active, max_concurrent;
    uint64_t requests, failures, rate_limited;
};

/* Fills out with up to max upstreams; returns how many there are. Any
 * thread. The echo model is not an upstream and is not listed. */
unsigned gh_gateway_upstreams(struct gh_gateway *gw, struct gh_gateway_upstream_status *out,
                              unsigned max);
