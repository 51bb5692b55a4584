/* This module implements the upstream side of the gateway (gw.h): one
 * libcurl multi handle per worker driven by the worker's libuv loop
 * (CURLMOPT_SOCKETFUNCTION with a uv_poll_t per socket, CURLMOPT_TIMERFUNCTION
 * with a uv_timer_t), the relay of an upstream's SSE stream to the client
 * with backpressure, failover before the first byte, and the classification
 * of upstream errors. Everything runs on the worker's loop thread; curl's
 * callbacks never remove handles (that waits for check_done). */
#include "gateway/gw.h"

#include "core/log.h"
#include "gateway/reframe.h"
#include "status/status.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_HIGH_MARK (256u << 10)
#define WAIT_POLL_MS    50
/* DeepSeek's words for a saturated service, which clients show as they are */
#define GW_BUSY_MESSAGE "The server is busy. Please try again later."
#define GW_TOO_LONG     (-100) /* the estimated wait passes the call's deadline */
#define GW_ANSWERED     (-101) /* take_or_queue answered the call */

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct gw_worker *ww;
};

/* Poll handles are kept per descriptor number after curl lets go of a
 * socket (CURL_POLL_REMOVE, which comes at the end of every transfer even
 * when the connection stays in the cache): the next transfer on the same
 * connection starts the stopped handle again instead of paying for a new
 * one (uv_poll_init_socket, then two uv_close epoll calls): 5 system calls
 * per call. A stopped handle watches nothing, so a descriptor number reused
 * by another file is safe; curl removes a socket before closing it. */
#define SOCK_CACHE_MAX 65536

static void check_done(struct gw_worker *ww);

/* ---- curl on the loop ---- */

static void ww_release(struct gw_worker *ww);

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_cached_poll_closed(uv_handle_t *h)
{
    struct sock_ctx *sc = h->data;
    struct gw_worker *ww = sc->ww;
    free(sc);
    ww_release(ww);
}

/* The cached handle of fd, or NULL. */
static struct sock_ctx *sock_cached(struct gw_worker *ww, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < ww->nsocks ? ww->socks[fd] : NULL;
}

/* Keeps sc for its descriptor (when the cache can grow to it). */
static void sock_cache(struct gw_worker *ww, struct sock_ctx *sc)
{
    if (sc->fd < 0 || sc->fd >= SOCK_CACHE_MAX)
        return;
    size_t need = (size_t)sc->fd + 1;
    if (need > ww->nsocks) {
        size_t n = ww->nsocks ? ww->nsocks : 64;
        while (n < need)
            n *= 2;
        struct sock_ctx **t = realloc(ww->socks, n * sizeof *t);
        if (!t)
            return;
        memset(t + ww->nsocks, 0, (n - ww->nsocks) * sizeof *t);
        ww->socks = t;
        ww->nsocks = n;
    }
    ww->socks[sc->fd] = sc;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock_ctx *sc = p->data;
    struct gw_worker *ww = sc->ww;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(ww->multi, sc->fd, flags, &running);
    check_done(ww);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct gw_worker *ww = userp;
    struct sock_ctx *sc = socketp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            uv_poll_stop(&sc->poll);
            curl_multi_assign(ww->multi, s, NULL);
            if (sock_cached(ww, s) != sc)
                uv_close((uv_handle_t *)&sc->poll, on_poll_closed);
        }
        return 0;
    }
    if (!sc && (sc = sock_cached(ww, s))) {
        curl_multi_assign(ww->multi, s, sc);
    } else if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        if (uv_poll_init_socket(&ww->w->loop, &sc->poll, s)) {
            free(sc);
            return -1;
        }
        sc->fd = s;
        sc->ww = ww;
        sc->poll.data = sc;
        curl_multi_assign(ww->multi, s, sc);
        sock_cache(ww, sc);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&sc->poll, ev, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    struct gw_worker *ww = t->data;
    int running;
    curl_multi_socket_action(ww->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(ww);
}

static int on_timer_set(CURLM *m, long timeout_ms, void *userp)
{
    struct gw_worker *ww = userp;
    (void)m;
    if (timeout_ms < 0)
        uv_timer_stop(&ww->curl_timer);
    else
        uv_timer_start(&ww->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void dispatch(struct gh_gateway *gw, int model);

/* While calls of this worker wait: hands free slots out every 50 ms (an
 * upstream's cool-down or open circuit ends without a release to wake the
 * queue). */
static void on_wait_poll(uv_timer_t *t)
{
    struct gw_worker *ww = t->data;
    struct gh_gateway *gw = ww->gw;
    for (unsigned i = 0; i < gw->ups.n; i++)
        if (gh_upstreams_model_index(&gw->ups, gw->ups.ups[i].model) == (int)i)
            dispatch(gw, (int)i);
    gh_fairq_lock(gw->fq);
    bool idle = !ww->nwaiting;
    gh_fairq_unlock(gw->fq);
    if (idle)
        uv_timer_stop(&ww->wait_timer);
}

/* Calls of this worker given a slot by another thread's dispatch: their
 * attempts start here, on their own loop. */
static void on_wake(uv_async_t *a)
{
    struct gw_worker *ww = a->data;
    for (;;) {
        gh_fairq_lock(ww->gw->fq);
        struct gh_list *n = gh_list_first(&ww->granted);
        if (n)
            gh_list_remove(n);
        gh_fairq_unlock(ww->gw->fq);
        if (!n)
            break;
        gw_relay_start(GH_CONTAINER_OF(n, struct gw_call, grant_node));
    }
}

int gw_relay_worker_init(struct gw_worker *ww)
{
    ww->multi = curl_multi_init();
    if (!ww->multi)
        return GH_ENOMEM;
    curl_multi_setopt(ww->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(ww->multi, CURLMOPT_SOCKETDATA, ww);
    curl_multi_setopt(ww->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(ww->multi, CURLMOPT_TIMERDATA, ww);
    curl_multi_setopt(ww->multi, CURLMOPT_MAXCONNECTS, 256L);
    uv_timer_init(&ww->w->loop, &ww->curl_timer);
    uv_timer_init(&ww->w->loop, &ww->wait_timer);
    uv_timer_init(&ww->w->loop, &ww->lease_timer);
    uv_timer_init(&ww->w->loop, &ww->spare_timer);
    gh_list_init(&ww->granted);
    gh_list_init(&ww->leases);
    int rc = uv_async_init(&ww->w->loop, &ww->wake, on_wake);
    if (rc) {
        curl_multi_cleanup(ww->multi);
        uv_close((uv_handle_t *)&ww->curl_timer, NULL);
        uv_close((uv_handle_t *)&ww->wait_timer, NULL);
        uv_close((uv_handle_t *)&ww->lease_timer, NULL);
        uv_close((uv_handle_t *)&ww->spare_timer, NULL);
        return rc;
    }
    ww->curl_timer.data = ww;
    ww->wait_timer.data = ww;
    ww->lease_timer.data = ww;
    ww->spare_timer.data = ww;
    ww->wake.data = ww;
    return 0;
}

/* One of the handles closed at dispose is gone: the last one frees ww
 * (libuv runs close callbacks in no promised order). */
static void ww_release(struct gw_worker *ww)
{
    if (--ww->closing == 0)
        free(ww);
}

static void on_ww_closed(uv_handle_t *h)
{
    ww_release(h->data);
}

void gw_relay_worker_dispose(struct gw_worker *ww)
{
    /* every call ended when its connection closed; what is left are idle
     * pooled connections, whose sockets curl closes here */
    curl_multi_cleanup(ww->multi);
    while (ww->neasy_pool)
        curl_easy_cleanup(ww->easy_pool[--ww->neasy_pool]);
    ww->multi = NULL;
    ww->closing = 5;
    for (size_t i = 0; i < ww->nsocks; i++) {
        if (ww->socks[i]) {
            ww->closing++;
            uv_close((uv_handle_t *)&ww->socks[i]->poll, on_cached_poll_closed);
        }
    }
    free(ww->socks);
    ww->socks = NULL;
    ww->nsocks = 0;
    uv_close((uv_handle_t *)&ww->curl_timer, on_ww_closed);
    uv_close((uv_handle_t *)&ww->wait_timer, on_ww_closed);
    uv_close((uv_handle_t *)&ww->wake, on_ww_closed);
    uv_close((uv_handle_t *)&ww->lease_timer, on_ww_closed);
    uv_close((uv_handle_t *)&ww->spare_timer, on_ww_closed);
}

/* ---- one attempt ---- */

/* An easy handle from the worker's pool, or a new one. */
static CURL *easy_get(struct gw_worker *ww)
{
    return ww->neasy_pool ? ww->easy_pool[--ww->neasy_pool] : curl_easy_init();
}

/* Takes e out of the multi handle and keeps it for the next call (its
 * options reset; the connection it used stays in the multi's cache). */
static void easy_put(struct gw_worker *ww, CURL *e)
{
    curl_multi_remove_handle(ww->multi, e);
    if (ww->neasy_pool < GW_EASY_POOL) {
        curl_easy_reset(e);
        ww->easy_pool[ww->neasy_pool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void reset_attempt(struct gw_call *c)
{
    if (c->easy) {
        easy_put(c->ww, c->easy);
        c->easy = NULL;
    }
    c->http_status = 0;
    c->retry_after_ms = 0;
    c->done_seen = c->paused = c->proto_error = false;
    gh_buf_reset(&c->err_body);
    gh_buf_reset(&c->out);
    gh_sse_dispose(&c->sse);
    gh_sse_init(&c->sse, 4u << 20);
}

static void release_upstream(struct gw_call *c, enum gh_upstream_outcome o)
{
    if (c->up < 0)
        return;
    struct gh_upstream *up = &c->gw->ups.ups[c->up];
    c->up = -1;
    uint64_t now = gh_now_ms();
    gh_upstream_release(up, &c->gw->breaker, o, c->retry_after_ms, now, c->up_est);
    /* the service time of complete answers feeds the wait estimate */
    uint64_t hold = o == GH_UP_SUCCESS ? GH_MAX(now - c->slot_ms, (uint64_t)1) : 0;
    gh_fairq_lock(c->gw->fq);
    gh_fairq_done_locked(c->gw->fq, c->fu, (unsigned)c->model_idx, hold);
    c->fu = NULL;
    gh_fairq_unlock(c->gw->fq);
    /* a success while all is well changes nothing: skip the scan (it takes
     * every upstream's lock) on the common path */
    if (o != GH_UP_SUCCESS || atomic_load(&c->gw->ups.reported) != GH_STATUS_OPERATIONAL)
        gh_upstreams_report_status(&c->gw->ups, gh_now_ms());
    if (o == GH_UP_AUTH)
        gh_log(GH_LOG_ERROR, "upstream_auth",
               "ALERT upstream %s refused our credentials (HTTP %ld): taken out of rotation; "
               "fix its api_key_env and restart",
               up->name, c->http_status);
    dispatch(c->gw, c->model_idx);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct gw_call *c = ud;
    size_t len = sz * n;
    if (len > 5 && !strncmp(p, "HTTP/", 5)) {
        c->retry_after_ms = 0;
    } else if (len > 12 && !strncasecmp(p, "retry-after:", 12)) {
        uint64_t ms;
        if (!gh_upstream_retry_after(p + 12, len - 12, gh_wall_ms() / 1000, &ms))
            c->retry_after_ms = ms;
    }
    return len;
}

/* A non-negative integer member of o (0 when absent or not one). */
static unsigned count_of(json_t *o, const char *name)
{
    json_int_t v = json_integer_value(json_object_get(o, name));
    return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

/* Takes the counts of an upstream's usage object u: prompt and completion
 * tokens, and the details the usage record keeps: tokens served from the
 * prompt cache (DeepSeek's prompt_cache_hit_tokens, OpenAI's
 * prompt_tokens_details.cached_tokens) and reasoning tokens
 * (completion_tokens_details.reasoning_tokens). */
static void take_usage(struct gw_call *c, json_t *u)
{
    c->prompt_tokens = count_of(u, "prompt_tokens");
    c->completion_tokens = count_of(u, "completion_tokens");
    c->cached_tokens = count_of(u, "prompt_cache_hit_tokens");
    if (!c->cached_tokens)
        c->cached_tokens = count_of(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
    c->reasoning_tokens =
        count_of(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
    c->usage_known = true;
}

/* Reads the usage of a JSON text holding "usage". */
static bool read_usage(struct gw_call *c, const char *data, size_t len)
{
    json_t *j = json_loadb(data, len, 0, NULL);
    json_t *u = json_object_get(j, "usage");
    bool ok = json_is_object(u);
    if (ok)
        take_usage(c, u);
    json_decref(j);
    return ok;
}

/* What on_event needs of a chunk, found in one pass over its colons
 * (memmem per key was the relay's top cost): a "usage" object, an empty
 * "choices", a non-empty "content", "reasoning_content" or (FIM) "text"
 * string. A key inside a string value is escaped (\"usage\") and so never
 * matches. */
struct chunk_keys {
    bool usage, choices_empty, content;
};

static void scan_chunk(const char *d, size_t n, struct chunk_keys *k)
{
    const char *end = d + n, *p = d;
    while ((p = memchr(p, ':', (size_t)(end - p)))) {
        size_t before = (size_t)(p - d);
        const char *v = p + 1;
        if (v < end && *v == ' ')
            v++;
        p++;
        if (v >= end || before < 7 || p[-2] != '"')
            continue;
        if (*v == '{' && !memcmp(p - 8, "\"usage\"", 7))
            k->usage = true;
        else if (before >= 9 && *v == '[' && v + 1 < end && v[1] == ']' &&
                 !memcmp(p - 10, "\"choices\"", 9))
            k->choices_empty = true;
        else if (before >= 9 && *v == '"' && v + 1 < end && v[1] != '"' &&
                 (!memcmp(p - 10, "\"content\"", 9) ||
                  (before >= 19 && !memcmp(p - 20, "\"reasoning_content\"", 19))))
            k->content = true;
        else if (*v == '"' && v + 1 < end && v[1] != '"' && !memcmp(p - 7, "\"text\"", 6))
            k->content = true; /* a FIM chunk's text */
    }
}

/* Logs what an upstream said that the client will not see (its own words
 * may name internal hosts), with the request id to find it by. */
static void log_upstream_text(struct gw_call *c, const char *what, const char *text, size_t len)
{
    gh_log(GH_LOG_WARN, "upstream_said", "request %s, upstream %s, %s: %.*s",
           c->req ? c->req->id : "-", c->up >= 0 ? c->gw->ups.ups[c->up].name : "?", what,
           (int)GH_MIN(len, 512), text);
}

/* One upstream event: checked, re-framed (one compact JSON line, the
 * public model name, no system_fingerprint), counted, queued for the
 * client. An event that is not one JSON object (nor [DONE]) ends the
 * stream: GH_EINVAL. */
static int on_event(const char *data, size_t len, void *ud)
{
    struct gw_call *c = ud;
    if (c->done_seen)
        return 0; /* nothing after [DONE] or an error event reaches the client */
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        c->done_seen = true;
        return gh_buf_append_str(&c->out, "data: [DONE]\n\n");
    }
    size_t mark = c->out.len;
    bool error;
    int rc = gh_reframe_event(data, len, c->model, &c->out, &error);
    if (rc)
        return rc; /* GH_EINVAL: not a JSON object, a broken upstream */
    /* the compact text, between "data: " and "\n\n" */
    const char *d = c->out.data + mark + 6;
    size_t n = c->out.len - mark - 8;
    if (error) {
        /* the upstream reports a failure mid-stream: our words, not its */
        log_upstream_text(c, "error event", d, n);
        c->out.len = mark;
        c->proto_error = true;
        c->done_seen = true;
        return gh_chat_sse_error(&c->out, "the model server reported an error", "server_error",
                                 "upstream_error");
    }
    struct chunk_keys k = {0};
    scan_chunk(d, n, &k);
    if (k.usage) {
        if (!read_usage(c, d, n)) {
            c->out.len = mark;
            return GH_EINVAL;
        }
        /* the usage-only chunk goes on only if the client asked for it */
        if (!c->include_usage && k.choices_empty)
            c->out.len = mark;
    } else if (!c->usage_known && k.content) {
        c->completion_tokens++; /* a token delivered: one chunk ~ one token */
    }
    return 0;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct gw_call *c = ud;
    size_t len = sz * n;
    if (!c->req) {
        c->client_gone = true;
        return 0;
    }
    if (c->paused)
        return CURL_WRITEFUNC_PAUSE; /* kept by curl until the client drains */
    if (!c->http_status)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
    if (c->http_status < 200 || c->http_status >= 300) {
        gh_buf_append(&c->err_body, p, GH_MIN(len, c->err_body.cap - c->err_body.len));
        return len;
    }
    if (!c->stream) {
        if (gh_buf_append(&c->out, p, len)) {
            c->proto_error = true;
            return 0;
        }
        return len;
    }
    int rc = gh_sse_feed(&c->sse, p, len, on_event, c);
    if (c->out.len) {
        if (!c->first_byte) {
            c->first_byte = true;
            c->prompt_tokens = c->usage_known ? c->prompt_tokens : c->chat.prompt_tokens;
        }
        int64_t q = gw_call_flush(c);
        if (q < 0) {
            c->client_gone = true; /* not the upstream's fault */
            return 0;
        }
        if ((uint64_t)q > RELAY_HIGH_MARK)
            c->paused = true; /* the next delivery is refused until on_drain */
    }
    if (rc) {
        c->proto_error = true;
        if (rc == GH_EINVAL)
            snprintf(c->last_error, sizeof c->last_error, "the model server sent a malformed event");
        return 0;
    }
    return len;
}

/* priority_field = vllm: the caller's tier as the top-level "priority"
 * (lower runs first in vLLM's priority scheduling), before the body's
 * closing brace. */
static int add_priority(struct gw_call *c)
{
    size_t n = c->body.len;
    while (n && c->body.data[n - 1] != '}')
        n--;
    if (!n)
        return GH_EINVAL;
    c->body.len = n - 1;
    return gh_buf_printf(&c->body, ",\"priority\":%u}", c->tier);
}

static int build_body(struct gw_call *c, const struct gh_upstream *up)
{
    gh_buf_reset(&c->body);
    unsigned mt = c->chat.upstream_max_tokens;
    int rc = GH_EINVAL;
    if (c->chat.fim) {
        rc = gh_fim_upstream_body(c->chat.root, up->upstream_model, c->stream, mt, &c->body);
    } else {
        if (c->req && !c->chat.pruned)
            rc = gh_chat_upstream_body(c->req->body.data ? c->req->body.data : "",
                                       c->req->body.len, up->upstream_model, c->stream, mt,
                                       &c->body);
        if (rc) {
            /* the splice could not read it, members were pruned below the
             * top level, or the client has gone: jansson, from the
             * validated tree */
            gh_buf_reset(&c->body);
            rc = gh_chat_upstream_body_tree(c->chat.root, up->upstream_model, c->stream, mt,
                                            &c->body);
        }
    }
    return rc || !up->priority_vllm ? rc : add_priority(c);
}

static void relay_timer(uv_timer_t *t);

#define QUEUE_TICK_MS 1000 /* how often a waiting stream's position is looked at */

/* Seconds for Retry-After from an estimated wait in ms (at least 1). */
static unsigned retry_seconds(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
}

/* The estimated wait of c if it queued now, in ms (0: unknown). */
static uint64_t wait_estimate(struct gw_call *c)
{
    struct gh_gateway *gw = c->gw;
    unsigned slots = gh_upstreams_slots(&gw->ups, c->model, gh_now_ms());
    gh_fairq_lock(gw->fq);
    unsigned ahead = gh_fairq_ahead_locked(gw->fq, c->who.user_id, (unsigned)c->model_idx, c->tier);
    uint64_t est = gh_fairq_estimate_locked(gw->fq, (unsigned)c->model_idx, ahead, slots);
    gh_fairq_unlock(gw->fq);
    return est;
}

/* Takes c out of the fair queue, or gives back a slot handed over and not
 * yet used. True when c was waiting (or handed a slot). This loop. */
static bool leave_queue(struct gw_call *c, bool timed_out)
{
    struct gh_fairq *fq = c->gw->fq;
    bool was = false;
    gh_fairq_lock(fq);
    if (c->fw.queued) {
        gh_fairq_remove_locked(fq, &c->fw, timed_out);
        c->ww->nwaiting--;
        was = true;
    }
    if (gh_list_linked(&c->grant_node)) {
        gh_list_remove(&c->grant_node);
        was = true;
    }
    gh_fairq_unlock(fq);
    if (c->granted >= 0) {
        c->up = c->granted; /* handed over, never used: back to the pool */
        c->slot_ms = gh_now_ms();
        release_upstream(c, GH_UP_NEUTRAL);
    }
    c->granted = GH_EBUSY;
    return was;
}

/* The first attempt's admission: a free slot when nobody of the model
 * waits (a retry after a failure does not queue behind), else the fair
 * queue, or at once 503 busy when the estimated wait passes the call's
 * queue deadline or the queue is full. Returns the upstream index,
 * GH_ENOTFOUND, GH_EBUSY (queued) or GW_ANSWERED (answered busy). */
static int take_or_queue(struct gw_call *c, uint32_t rnd)
{
    struct gh_gateway *gw = c->gw;
    struct gh_fairq *fq = gw->fq;
    unsigned m = (unsigned)c->model_idx;
    uint64_t now = gh_now_ms();
    unsigned slots = gh_upstreams_slots(&gw->ups, c->model, now);
    int idx = GH_EBUSY;
    gh_fairq_lock(fq);
    if (c->tried || !gh_fairq_waiting_locked(fq, m)) {
        idx = gh_upstream_acquire(&gw->ups, c->model, c->tried | c->excluded, now, rnd, c->up_est);
        if (idx >= 0)
            c->fu = gh_fairq_start_locked(fq, c->who.user_id, m, c->tier);
    }
    if (idx != GH_EBUSY) {
        gh_fairq_unlock(fq);
        return idx;
    }
    unsigned ahead = gh_fairq_ahead_locked(fq, c->who.user_id, m, c->tier);
    uint64_t est = gh_fairq_estimate_locked(fq, m, ahead, slots);
    uint64_t left = c->queue_deadline_ms > now ? c->queue_deadline_ms - now : 0;
    int rc = est > left ? GW_TOO_LONG
                        : gh_fairq_push_locked(fq, &c->fw, c->who.user_id, m, c->tier, now);
    if (rc)
        gh_fairq_refused_locked(fq, c->tier, rc != GW_TOO_LONG);
    else
        c->ww->nwaiting++;
    gh_fairq_unlock(fq);
    if (!rc)
        return GH_EBUSY;
    GH_STAT_ADD(gw->m_upstream_errors, 1);
    c->retry_after_s = retry_seconds(est ? est : 5000);
    gw_call_fail(c, 503, "busy", GW_BUSY_MESSAGE);
    return GW_ANSWERED;
}

/* The deadline now: the first byte's, and the queue's while no slot is
 * held (c->up is only set on this loop). */
static uint64_t deadline_of(const struct gw_call *c)
{
    return c->up >= 0 ? c->deadline_ms : GH_MIN(c->deadline_ms, c->queue_deadline_ms);
}

/* A streamed call in the fair queue: its place in line as the SSE comment
 * ": queue position=N" (1 = next) when it changed, or when a keepalive has
 * passed since the last comment; else ": keep-alive" when that is due.
 * A comment: OpenAI clients skip it, the web chat shows it. */
static int64_t send_waiting(struct gw_call *c)
{
    if (!c->req)
        return GH_EIO;
    struct gh_fairq *fq = c->gw->fq;
    gh_fairq_lock(fq);
    unsigned pos = gh_fairq_position_locked(fq, &c->fw);
    gh_fairq_unlock(fq);
    uint64_t now = gh_now_ms();
    bool due = now - c->comment_ms >= c->req->cfg->gateway.keepalive_ms;
    if (pos && (pos != c->queue_pos || due)) {
        char line[40];
        int n = snprintf(line, sizeof line, ": queue position=%u\n\n", pos);
        gh_buf_append(&c->out, line, (size_t)n);
        c->queue_pos = pos;
    } else if (due) {
        gh_buf_append_str(&c->out, ": keep-alive\n\n");
    } else {
        return 0;
    }
    c->comment_ms = now;
    return gw_call_flush(c);
}

static void arm_timer(struct gw_call *c)
{
    if (c->first_byte || !c->req)
        return;
    uint64_t now = gh_now_ms(), dl = deadline_of(c);
    uint64_t left = dl > now ? dl - now : 0;
    uint64_t every = c->req->cfg->gateway.keepalive_ms;
    if (c->in_queue)
        every = GH_MIN(every, QUEUE_TICK_MS); /* its position, as it moves */
    uv_timer_start(&c->timer, relay_timer, c->stream ? GH_MIN(every, left) : left, 0);
}

void gw_relay_start(struct gw_call *c)
{
    struct gh_gateway *gw = c->gw;
    struct gw_worker *ww = c->ww;
    if (!uv_is_active((uv_handle_t *)&c->timer))
        arm_timer(c);
    /* xorshift32 seeded once per worker: the weighted choice needs no
     * cryptographic randomness (nor a getrandom call per request) */
    if (!ww->rng)
        ww->rng = randombytes_random() | 1u;
    ww->rng ^= ww->rng << 13;
    ww->rng ^= ww->rng >> 17;
    ww->rng ^= ww->rng << 5;
    int idx = c->granted; /* a slot handed over by dispatch, or GH_EBUSY */
    c->granted = GH_EBUSY;
    c->in_queue = false;
    if (idx == GH_EBUSY) {
        idx = take_or_queue(c, ww->rng);
        if (idx == GH_EBUSY) {
            c->in_queue = true;
            if (c->stream) {
                /* its place in line at once, then as it moves */
                uv_timer_stop(&c->timer);
                send_waiting(c); /* a client gone is told by on_abort */
                arm_timer(c);
            }
            if (!uv_is_active((uv_handle_t *)&ww->wait_timer))
                uv_timer_start(&ww->wait_timer, on_wait_poll, WAIT_POLL_MS, WAIT_POLL_MS);
            return;
        }
        if (idx == GW_ANSWERED)
            return; /* answered busy */
    }
    if (idx < 0)
        gh_upstreams_report_status(&gw->ups, gh_now_ms()); /* circuits may have re-closed */
    if (idx < 0) {
        GH_STAT_ADD(gw->m_upstream_errors, 1);
        if (!c->tried) {
            char msg[300];
            snprintf(msg, sizeof msg,
                     "no model server for '%.128s' is available now; retry in a moment", c->model);
            gw_call_fail(c, 503, "busy", msg);
        } else {
            int st = c->last_status >= 400 ? c->last_status : 502;
            char msg[300];
            snprintf(msg, sizeof msg, "the model servers failed: %s",
                     c->last_error[0] ? c->last_error : "no answer");
            gw_call_fail(c, st, st == 503 ? "busy" : "upstream_error", msg);
        }
        return;
    }
    struct gh_upstream *up = &gw->ups.ups[idx];
    c->up = idx;
    c->slot_ms = gh_now_ms();
    c->tried |= 1ull << idx;
    char url[600];
    snprintf(url, sizeof url, "%s/%s", up->base_url,
             c->chat.fim ? "completions" : "chat/completions");
    CURL *e = easy_get(ww);
    if (!e || build_body(c, up)) {
        if (e)
            curl_easy_cleanup(e);
        release_upstream(c, GH_UP_NEUTRAL);
        gw_call_fail(c, 500, "internal_error", "out of memory");
        return;
    }
    c->easy = e;
    /* the header list lives in the call: no allocation per attempt */
    unsigned nh = 0;
    c->hdrs[nh++].data = (char *)"Content-Type: application/json";
    c->hdrs[nh++].data = (char *)"Expect:";
    if (c->stream)
        c->hdrs[nh++].data = (char *)"Accept: text/event-stream";
    if (up->api_key[0]) {
        snprintf(c->hdr_auth, sizeof c->hdr_auth, "Authorization: Bearer %s", up->api_key);
        c->hdrs[nh++].data = c->hdr_auth;
    }
    if (c->req) {
        snprintf(c->hdr_rid, sizeof c->hdr_rid, "X-Request-Id: %s", c->req->id);
        c->hdrs[nh++].data = c->hdr_rid;
    }
    for (unsigned i = 0; i < nh; i++)
        c->hdrs[i].next = i + 1 < nh ? &c->hdrs[i + 1] : NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)up->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)up->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "gatehouse/" GH_VERSION);
    if (curl_multi_add_handle(ww->multi, e)) {
        reset_attempt(c);
        release_upstream(c, GH_UP_NEUTRAL);
        gw_call_fail(c, 500, "internal_error", "cannot start the upstream call");
    }
}

void gw_relay_abort(struct gw_call *c)
{
    leave_queue(c, false);
    reset_attempt(c);
    release_upstream(c, GH_UP_NEUTRAL); /* the client left: nothing learnt */
}

void gw_relay_drain(struct gw_call *c)
{
    if (c->paused && c->easy) {
        c->paused = false;
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
    }
}

static void relay_timer(uv_timer_t *t)
{
    struct gw_call *c = t->data;
    if (c->finished || c->first_byte || !c->req)
        return;
    if (gh_now_ms() >= deadline_of(c)) {
        GH_STAT_ADD(c->gw->m_upstream_errors, 1);
        bool calling = c->easy != NULL;
        if (leave_queue(c, true)) {
            /* waited for a slot until its deadline: busy, retry when the
             * queue ahead should have drained */
            c->retry_after_s = retry_seconds(wait_estimate(c));
            gw_call_fail(c, 503, "busy", GW_BUSY_MESSAGE);
            return;
        }
        reset_attempt(c);
        release_upstream(c, calling ? GH_UP_FAILURE : GH_UP_NEUTRAL);
        gw_call_fail(c, 503, "busy",
                     "no model server answered in time; the service is busy, retry later");
        return;
    }
    if (c->stream) {
        if (c->in_queue) {
            if (send_waiting(c) < 0)
                return;
        } else {
            gh_buf_append_str(&c->out, ": keep-alive\n\n");
            if (gw_call_flush(c) < 0)
                return;
        }
    }
    arm_timer(c);
}

void gw_relay_on_timer(struct gw_call *c)
{
    relay_timer(&c->timer);
}

/* Hands model's free slots to the waiters the fair queue picks, and their
 * workers the news. Any thread. A waiter whose upstreams are full stops
 * the round (no overtaking: a large call is not starved by small ones). */
static void dispatch(struct gh_gateway *gw, int model)
{
    if (model < 0)
        return;
    uint64_t now = gh_now_ms();
    const char *name = gw->ups.ups[model].model;
    gh_fairq_lock(gw->fq);
    struct gh_fairq_waiter *w;
    while ((w = gh_fairq_next_locked(gw->fq, (unsigned)model))) {
        struct gw_call *c = GH_CONTAINER_OF(w, struct gw_call, fw);
        int idx = gh_upstream_acquire(&gw->ups, name, c->tried | c->excluded, now,
                                      (uint32_t)(now ^ w->seq * 2654435761u), c->up_est);
        if (idx == GH_EBUSY)
            break;
        if (idx >= 0)
            c->fu = gh_fairq_grant_locked(gw->fq, w);
        else
            gh_fairq_remove_locked(gw->fq, w, false); /* none in rotation: it fails there */
        c->granted = idx;
        c->ww->nwaiting--;
        gh_list_push_back(&c->ww->granted, &c->grant_node);
        uv_async_send(&c->ww->wake);
    }
    gh_fairq_unlock(gw->fq);
}

/* ---- the end of a transfer ---- */

static void finish_success(struct gw_call *c)
{
    struct gh_http_req *req = c->req;
    if (c->stream) {
        if (!c->done_seen)
            gh_buf_append_str(&c->out, "data: [DONE]\n\n");
        if (!c->usage_known && !c->first_byte)
            c->prompt_tokens = c->chat.prompt_tokens;
        gw_call_start_stream(c);
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        gh_http_stream_end_with(req, c->out.data, c->out.len); /* [DONE] and the end at once */
        gh_buf_reset(&c->out);
    } else {
        c->last_status = 200;
        if (!c->usage_known) { /* read by transfer_done */
            c->prompt_tokens = c->chat.prompt_tokens;
            c->completion_tokens = gh_chat_estimate_tokens(NULL, c->out.len);
        }
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        gh_http_respond_json(req, 200, c->out.data ? c->out.data : "", c->out.len);
    }
    gw_call_finish(c);
}

static void transfer_done(struct gw_call *c, CURLcode res)
{
    if (!c->http_status)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
    long st = c->http_status;
    bool ok2xx = st >= 200 && st < 300;
    if (res == CURLE_OK && ok2xx && !c->stream && !c->proto_error) {
        /* one parse: the answer's shape, and its usage for the accounts */
        json_t *j = json_loadb(c->out.data ? c->out.data : "", c->out.len, 0, NULL);
        bool valid = json_is_object(j) && json_is_array(json_object_get(j, "choices"));
        json_t *u = json_object_get(j, "usage");
        if (valid && json_is_object(u))
            take_usage(c, u);
        json_decref(j);
        /* the answer as the client sees it: compact, the public model
         * name, no system_fingerprint (numbers kept as the model wrote them) */
        struct gh_buf shown;
        gh_buf_init(&shown, c->out.cap);
        if (valid && gh_reframe_json(c->out.data, c->out.len, c->model, &shown))
            valid = false;
        if (valid) {
            gh_buf_append(&shown, "\n", 1);
            gh_buf_dispose(&c->out);
            c->out = shown;
        } else {
            gh_buf_dispose(&shown);
            c->proto_error = true;
            snprintf(c->last_error, sizeof c->last_error,
                     "the model server sent a malformed completion");
        }
    }
    if (res == CURLE_OK && ok2xx && !c->proto_error) {
        if (c->easy) {
            easy_put(c->ww, c->easy);
            c->easy = NULL;
        }
        release_upstream(c, GH_UP_SUCCESS);
        finish_success(c);
        return;
    }
    if (c->client_gone) {
        /* our write to the client failed: the upstream did nothing wrong
         * (counting it would open its circuit whenever clients leave) */
        uv_timer_stop(&c->timer);
        reset_attempt(c);
        release_upstream(c, GH_UP_NEUTRAL);
        c->cut_short = true;
        if (!c->last_status)
            c->last_status = 499;
        gw_call_finish(c);
        return;
    }
    if (c->first_byte) {
        /* broken mid-stream: one error event, then the end */
        bool upstream_event = c->proto_error && c->done_seen;
        char msg[200];
        snprintf(msg, sizeof msg, "the model server's stream broke off: %s",
                 c->last_error[0] ? c->last_error : curl_easy_strerror(res));
        gh_log(GH_LOG_WARN, "upstream_broken", "upstream %s: %s",
               c->up >= 0 ? c->gw->ups.ups[c->up].name : "?", msg);
        uv_timer_stop(&c->timer);
        reset_attempt(c);
        release_upstream(c, GH_UP_FAILURE);
        GH_STAT_ADD(c->gw->m_upstream_errors, 1);
        c->cut_short = true;
        if (upstream_event) {
            /* the upstream's own error event went out already */
            struct gh_http_req *req = c->req;
            c->req = NULL;
            gh_http_set_callbacks(req, NULL, NULL, NULL);
            gh_http_stream_end(req);
            gw_call_finish(c);
        } else {
            gw_call_fail(c, 502, "upstream_error", msg);
        }
        return;
    }
    /* nothing reached the client: classify, and maybe try another */
    enum gh_upstream_outcome o = GH_UP_FAILURE;
    const char *name = c->up >= 0 ? c->gw->ups.ups[c->up].name : "?";
    if (res != CURLE_OK && !(st >= 400)) {
        snprintf(c->last_error, sizeof c->last_error, "%s", curl_easy_strerror(res));
        c->last_status = res == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
    } else if (st == 429) {
        o = GH_UP_RATE_LIMITED;
        snprintf(c->last_error, sizeof c->last_error, "the model servers are busy (429)");
        c->last_status = 503;
    } else if (st == 401 || st == 402 || st == 403) {
        o = GH_UP_AUTH;
        snprintf(c->last_error, sizeof c->last_error, "a model server refused our credentials");
        c->last_status = 502;
    } else if (st == 400 || st == 422) {
        /* the client's request: its answer, not the upstream's health. The
         * upstream's own text may name internal hosts: it goes to the log */
        log_upstream_text(c, st == 400 ? "HTTP 400" : "HTTP 422",
                          c->err_body.data ? c->err_body.data : "", c->err_body.len);
        reset_attempt(c);
        release_upstream(c, GH_UP_SUCCESS);
        gw_call_fail(c, (int)st, st == 400 ? "invalid_request" : "invalid_parameter",
                     "the model server refused the request as invalid; check the request's "
                     "fields and values against docs/API.md");
        return;
    } else if (ok2xx) {
        if (!c->last_error[0])
            snprintf(c->last_error, sizeof c->last_error, "the model server's answer broke off");
        c->last_status = 502;
    } else {
        snprintf(c->last_error, sizeof c->last_error, "a model server answered HTTP %ld", st);
        c->last_status = 502;
    }
    gh_log(GH_LOG_WARN, "upstream_failed", "upstream %s: %s; trying another", name,
           c->last_error);
    reset_attempt(c);
    release_upstream(c, o);
    GH_STAT_ADD(c->gw->m_failovers, 1);
    if (!c->req) {
        gw_call_finish(c);
        return;
    }
    gw_relay_start(c);
}

static void check_done(struct gw_worker *ww)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(ww->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        struct gw_call *c = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
        if (!c || c->easy != e) {
            curl_multi_remove_handle(ww->multi, e);
            curl_easy_cleanup(e);
            continue;
        }
        transfer_done(c, res);
    }
}
