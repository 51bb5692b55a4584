/* Private declarations shared by the gateway's files (gateway.c: routes,
 * calls, quotas, the echo model; relay.c: upstream calls through libcurl
 * multi). Not for other subsystems: they use gateway.h. Everything about
 * a call and a gw_worker runs on that worker's loop thread. */
#pragma once

#include "core/list.h"
#include "core/server.h"
#include "gateway/chat.h"
#include "gateway/echo.h"
#include "gateway/fairq.h"
#include "gateway/gateway.h"
#include "gateway/quota.h"
#include "gateway/sse.h"
#include "gateway/upstream.h"
#include "gateway/usage.h"
#include "identity/auth.h"
#include "shield/redis.h"

#include <curl/curl.h>
#include <uv.h>

struct gh_gateway {
    struct gh_server *srv;
    struct gh_upstreams ups;
    struct gh_quota_table *quotas;
    struct gh_usage *usage;
    char quota_path[4200];
    struct gh_shared_doc *quota_doc; /* the overrides every node keeps (a shared store) */
    struct gh_redis *redis;          /* the cluster's quotas ([redis] url), or NULL: this table's */
    struct gh_breaker breaker;
    struct gh_fairq *fq; /* calls waiting for a model slot, all workers */
    /* users with an id up to this were created tier_established_age ago
     * (refreshed from the store by the admin worker); UINT64_MAX until known */
    _Atomic uint64_t established_max_id;
    uv_timer_t age_timer; /* on the admin worker's loop */
    struct gh_worker *age_worker;
    struct gw_tier_ref {
        struct gh_gateway *gw;
        unsigned tier;
    } tier_refs[GH_TIER_COUNT]; /* what the queue's metric functions read */
    bool age_timer_on;
    uint64_t created; /* /v1/models "created" */
    atomic_uint workers; /* started workers not yet disposed */
    /* per-worker state, [0] the admin worker, [1 + id] public worker id */
    struct gw_worker *wws[1 + 257];
    _Atomic uint64_t *m_requests, *m_prompt_tokens, *m_completion_tokens, *m_quota_refused,
        *m_cut_short, *m_failovers, *m_upstream_errors;
};

#define GW_EASY_POOL 64
#define GW_SPARES    64 /* spare concurrency slots per worker (qshare.c) */

/* Per-worker state: the curl multi handle driven by this loop. */
struct gw_worker {
    struct gh_gateway *gw;
    struct gh_worker *w;
    CURLM *multi;
    uv_timer_t curl_timer;
    uv_timer_t wait_timer; /* polls for upstream slots while calls wait */
    uv_timer_t lease_timer; /* renews the concurrency leases of calls in ww->leases */
    struct gh_list leases;  /* calls holding concurrency leases in Redis (qshare.c) */
    /* finished calls' concurrency slots, kept in Redis a moment for the
     * same user's next call on this worker (qshare.c) */
    uv_timer_t spare_timer;
    struct gw_spare {
        uint64_t user_id;
        unsigned limit;    /* the user's concurrency when it was kept */
        uint64_t until_ms; /* the loop's time */
        uint64_t lease_ms; /* when its lease was taken or last renewed */
        char user[GH_REDIS_KEY_MAX];
        char lease[48];
    } spares[GW_SPARES];
    unsigned nspares;
    uv_async_t wake;       /* a call of this worker was given a slot (any thread) */
    struct gh_list granted; /* those calls: under the fair queue's lock */
    unsigned nwaiting;      /* this worker's calls in the fair queue: under its lock */
    int closing; /* handles still closing at dispose */
    /* idle easy handles (curl_easy_reset), reused by the next calls */
    CURL *easy_pool[GW_EASY_POOL];
    unsigned neasy_pool;
    /* poll handles by descriptor, kept between transfers (relay.c) */
    struct sock_ctx **socks;
    size_t nsocks;
    uint32_t rng; /* xorshift state for the weighted upstream choice */
};

/* One chat request being answered. */
struct gw_call {
    struct gh_gateway *gw;
    struct gw_worker *ww;
    struct gh_http_req *req; /* NULL once the client has gone */
    struct gh_chat_req chat;
    struct gh_principal who;
    struct gh_quota_limits key_limits, user_limits;
    unsigned est;
    uint32_t day;
    /* where the quotas were taken, to settle them there (qshare.c) */
    enum gw_quota_by { GW_QUOTA_LOCAL, GW_QUOTA_REDIS, GW_QUOTA_NONE } quota_by;
    uint32_t quota_day;                /* Redis's day of the take */
    char quota_user[GH_REDIS_KEY_MAX]; /* the user's and the key's names in Redis */
    char quota_key[GH_REDIS_KEY_MAX];
    struct gh_list lease_node; /* in ww->leases while its leases need renewing */
    char lease[48];            /* its concurrency lease in Redis: its id, or a spare's */
    uint64_t lease_ms;         /* when that lease was taken or last renewed (loop time) */
    bool roomy;                /* few of the user's slots were taken: its may be kept */
    char id[48];
    uint64_t created;
    char model[136];
    uint64_t start_ms, deadline_ms;
    uint64_t queue_deadline_ms; /* the longest wait for a slot (queue_timeout, a client hint) */
    bool stream, include_usage;
    bool started;    /* the stream's head (and maybe keep-alives) went out */
    bool first_byte; /* content reached the client: no failover any more */
    bool finished;
    bool cut_short;
    bool usage_known;
    unsigned prompt_tokens, completion_tokens;
    unsigned cached_tokens, reasoning_tokens; /* as the upstream reported them */
    uv_timer_t timer; /* echo: the next token; relay: keep-alive and deadline */
    struct gh_buf out; /* events batched for one write; a non-streamed answer */

    /* echo */
    char *echo_text; /* "Echo: …", the JSON object or the tool's arguments (owned) */
    struct gh_echo_plan echo_plan;
    size_t echo_len, echo_pos;
    bool echo_paused;

    /* relay */
    CURL *easy;
    int up; /* index of the upstream holding a slot, or -1 */
    uint64_t tried;
    uint64_t excluded; /* upstreams that cannot serve the call (FIM without fim = true) */
    /* the request headers: nodes and texts owned by the call (curl only
     * reads the list), so an attempt allocates nothing for them */
    struct curl_slist hdrs[6];
    char hdr_auth[560], hdr_rid[64];
    struct gh_buf body; /* the body sent upstream */
    struct gh_sse_parser sse;
    struct gh_buf err_body;
    long http_status;
    uint64_t retry_after_ms;
    bool done_seen, paused, proto_error;
    bool client_gone; /* a write to the client failed: end, blame nobody */
    struct gh_fairq_waiter fw; /* in the fair queue while waiting for a slot */
    struct gh_list grant_node; /* in ww->granted once given a slot */
    int granted;               /* the upstream given by the queue, or a GH_E* code */
    bool in_queue;             /* this loop's view: queued by take_or_queue, no slot yet */
    unsigned queue_pos;        /* the last ": queue position=N" sent */
    uint64_t comment_ms;       /* when the last SSE comment went out */
    struct gh_fairq_user *fu;  /* counted in flight by the fair queue */
    unsigned tier;             /* enum gh_fairq_tier */
    int model_idx;             /* the model's number for the fair queue */
    unsigned up_est;           /* tokens taken from the upstream's max_tokens_in_flight */
    uint64_t slot_ms;          /* when the slot was taken (service time) */
    unsigned retry_after_s;    /* Retry-After of a busy answer; 0: the default */
    char last_error[160];
    int last_status; /* what the client gets when every upstream failed */
};

/* gateway.c */
struct gw_worker *gw_worker_of(struct gh_gateway *gw, struct gh_worker *w);
/* Starts the SSE answer (headers) if it has not started. */
void gw_call_start_stream(struct gw_call *c);
/* Writes c->out to the client and empties it. Returns the bytes queued to
 * the client or a negative code when it has gone. */
int64_t gw_call_flush(struct gw_call *c);
/* Answers with an error: a status when nothing was sent yet, else one SSE
 * error event and the end of the stream. Then finishes the call. */
void gw_call_fail(struct gw_call *c, int status, const char *code, const char *message);
/* Ends the call: settles quotas, records usage, frees everything (the
 * request was answered, or the client has gone). */
void gw_call_finish(struct gw_call *c);

/* Continues a call admitted on its quotas (gw_quota_admit): the model's
 * answer starts. */
void gw_call_admitted(struct gw_call *c);
/* Frees a call that was answered (a refusal) before it was admitted. */
void gw_call_drop(struct gw_call *c);
/* Fills c's effective limits (overrides, else the defaults), divided by
 * share (1: the whole limit; a limit stays at least 1). */
void gw_quota_limits(struct gw_call *c, unsigned share);
/* Decides c's quotas in this process's table and answers a refusal
 * (x-ratelimit-* headers either way). True when admitted. */
bool gw_quota_admit_local(struct gw_call *c);
/* Writes the x-ratelimit-* headers of in, and answers the refusal v of
 * the user (user_refused) or the key with why's Retry-After. True for
 * GH_QUOTA_OK (nothing answered). */
bool gw_quota_answer(struct gw_call *c, enum gh_quota_verdict v, bool user_refused,
                     const struct gh_quota_info *ki, const struct gh_quota_info *ui);

/* Answers GET /user/balance from tpd and spent ([0] the user's, [1] the
 * key's; tpd 0: no daily allowance), or from this process's table. */
void gw_balance_respond(struct gh_http_req *req, const unsigned tpd[2], const uint64_t spent[2]);
void gw_balance_local(struct gh_gateway *gw, struct gh_http_req *req,
                      const struct gh_principal *who, const unsigned tpd[2]);

/* qshare.c: the quotas shared by the cluster's nodes in Redis */
/* Admits c on its quotas, in Redis (one round trip, the loop never waits)
 * when the cluster shares them, else in this process's table; while
 * Redis is unreachable, as [redis] quota_mode says. Ends in
 * gw_call_admitted(c), or in gw_call_drop(c) after a refusal. */
void gw_quota_admit(struct gw_call *c);
/* Settles c's quotas where they were taken (actual tokens), freeing its
 * concurrency. */
void gw_quota_settle(struct gw_call *c);
/* Answers GET /user/balance for who with the tokens spent today: in
 * Redis (the request waits, the loop does not) when the cluster shares
 * the quotas, else (or when Redis cannot answer) this process's count. */
void gw_quota_balance(struct gh_gateway *gw, struct gh_http_req *req,
                      const struct gh_principal *who, const unsigned tpd[2]);
/* The worker's timer: renews the leases of its calls in Redis. */
void gw_quota_start_renewal(struct gw_worker *ww);

/* relay.c */
int gw_relay_worker_init(struct gw_worker *ww);
void gw_relay_worker_dispose(struct gw_worker *ww);
/* Starts (or continues, after a failure) the upstream call of c. */
void gw_relay_start(struct gw_call *c);
/* The client left or the call ends: stops the transfer at once. */
void gw_relay_abort(struct gw_call *c);
/* The client's queue drained: resume a paused transfer. */
void gw_relay_drain(struct gw_call *c);
/* The keep-alive / deadline timer of a relayed call. */
void gw_relay_on_timer(struct gw_call *c);
