/* The upstream pool: the model servers behind the gateway, read from the
 * operator's upstreams file (INI, one [upstream NAME] section each, see
 * docs/internals/gateway.md), and their shared health: concurrent calls
 * (atomic slots), the 429 cool-down, the out-of-rotation flag after
 * 401/402/403, and a circuit breaker (N failures in a window open it; after
 * the open time one half-open probe decides). Loaded on the main thread;
 * the state may then be read and changed from any worker (a mutex per
 * upstream, held for a few instructions). */
#pragma once

#include "core/common.h"

#include <pthread.h>

#define GH_UPSTREAMS_MAX 64

enum gh_upstream_outcome {
    GH_UP_SUCCESS,      /* a complete answer (or a 400/422 that was the client's fault) */
    GH_UP_FAILURE,      /* 5xx, connection failure, timeout, broken stream */
    GH_UP_RATE_LIMITED, /* 429: cool down */
    GH_UP_AUTH,         /* 401/402/403: out of rotation */
    GH_UP_NEUTRAL       /* the client left: says nothing about the upstream */
};

enum gh_circuit { GH_CIRCUIT_CLOSED, GH_CIRCUIT_OPEN, GH_CIRCUIT_HALF_OPEN };

struct gh_upstream {
    char name[64];
    char model[128];          /* the model name clients ask for */
    char base_url[512];       /* ".../v1"; the call goes to base_url + "/chat/completions" */
    char api_key[512];        /* read from the environment variable api_key_env */
    char upstream_model[128]; /* the name the upstream knows; default: model */
    unsigned weight;
    unsigned max_concurrent;
    uint64_t max_tokens_in_flight; /* estimated prompt + max_tokens admitted at once; 0 = no cap */
    bool priority_vllm;            /* priority_field = vllm: the caller's tier goes as "priority" */
    uint64_t connect_timeout_ms, timeout_ms;
    bool fim; /* serves base_url/completions (fill-in-the-middle, POST /beta/completions) */

    /* shared state */
    atomic_uint active;
    _Atomic uint64_t tokens_in_flight;
    pthread_mutex_t mu;
    enum gh_circuit circuit;
    bool probing;  /* the half-open probe is out */
    bool disabled; /* 401/402/403: out of rotation until restart or reload */
    uint64_t open_until_ms, cooldown_until_ms, window_start_ms;
    unsigned window_failures;
    _Atomic uint64_t requests, failures, rate_limited;
};

struct gh_upstreams {
    struct gh_upstream *ups; /* n entries */
    unsigned n;
    atomic_int reported; /* last status handed to the status page, -1 none */
};

/* Hands the upstreams' health to the status page's "api" and "models"
 * components when it changed: all in rotation → operational, some out
 * (open circuit, taken out after 401/402/403) → partial_outage, all out →
 * major_outage. Cheap when nothing changed; any thread. */
void gh_upstreams_report_status(struct gh_upstreams *u, uint64_t now_ms);

/* Breaker settings (from the [gateway] section). */
struct gh_breaker {
    unsigned failures;
    uint64_t window_ms, open_ms, cooldown_ms;
};

/* Reads path into out (empty when path is "" ). 0, or GH_EINVAL/GH_EIO with
 * "FILE:LINE: reason" in err. Reads api_key_env variables from envp. */
int gh_upstreams_load(const char *path, char **envp, struct gh_upstreams *out, char *err,
                      size_t errlen);
void gh_upstreams_dispose(struct gh_upstreams *u);
/* True when some upstream serves model. */
bool gh_upstreams_has_model(const struct gh_upstreams *u, const char *model);

/* Picks an upstream of model not in tried (a bit per index) among those in
 * rotation with a free slot for a call of est tokens (max_concurrent, and
 * max_tokens_in_flight unless the upstream is idle: a call larger than the
 * cap runs alone), the least loaded by outstanding calls per weight
 * ((active + 1) / weight; ties broken by rnd), and takes the slot and the
 * tokens. Returns the index; GH_EBUSY when some are in rotation but all
 * are full (wait and retry); GH_ENOTFOUND when none is in rotation. */
int gh_upstream_acquire(struct gh_upstreams *u, const char *model, uint64_t tried, uint64_t now_ms,
                        uint32_t rnd, unsigned est);
/* The index of the first upstream of model (the model's number for the
 * fair queue), or -1. */
int gh_upstreams_model_index(const struct gh_upstreams *u, const char *model);
/* The slots of model's upstreams in rotation now (for the wait estimate). */
unsigned gh_upstreams_slots(struct gh_upstreams *u, const char *model, uint64_t now_ms);
/* The longest Retry-After taken from an upstream, in seconds. */
#define GH_RETRY_AFTER_MAX_S 86400u

/* Reads the value of an upstream's Retry-After header (v, n bytes, spaces
 * and a CRLF around it allowed): delay-seconds, or an IMF-fixdate ("Sun,
 * 06 Nov 1994 08:49:37 GMT", the weekday checked) taken relative to now_s
 * (Unix seconds; a past date is 0). *ms gets the delay, at most
 * GH_RETRY_AFTER_MAX_S seconds. Returns 0, or GH_EINVAL (*ms = 0) for
 * anything else, the obsolete date forms included. Pure; any thread. */
int gh_upstream_retry_after(const char *v, size_t n, uint64_t now_s, uint64_t *ms);

/* Gives the slot and est tokens back with how the call went.
 * retry_after_ms: the upstream's Retry-After on a 429 (0 when absent). */
void gh_upstream_release(struct gh_upstream *up, const struct gh_breaker *b,
                         enum gh_upstream_outcome outcome, uint64_t retry_after_ms, uint64_t now_ms,
                         unsigned est);
/* The state as the status page and /admin/v1/upstreams show it:
 * "up", "cooling_down", "circuit_open", "half_open", "disabled". */
const char *gh_upstream_state(struct gh_upstream *up, uint64_t now_ms);
