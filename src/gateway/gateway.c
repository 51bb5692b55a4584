/* This module implements the gateway's routes (gateway.h): the chat API
 * with authentication, validation and quotas, the `echo` model, the usage
 * and admin routes, and the life of a call (gw.h). The upstream side is in
 * relay.c. */
#include "gateway/gw.h"

#include "core/log.h"
#include "http/jsonbody.h"
#include "http/server.h"
#include "identity/identity.h"
#include "shield/shield.h"
#include "store/store.h"

#include <http_parser.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past this many bytes queued to the client, a producer pauses until the
 * connection's drain callback (the queue fell under 64 KiB). */
#define RELAY_HIGH_MARK (256u << 10)
/* An echo "token" is a word, cut at this many bytes. */
#define ECHO_TOKEN_MAX 64
/* Words in an echo answer when the request sets no max_tokens. */
#define ECHO_DEFAULT_TOKENS 256

static void chat_completions(struct gh_http_req *req);
static void fim_completions(struct gh_http_req *req);

struct gw_worker *gw_worker_of(struct gh_gateway *gw, struct gh_worker *w)
{
    unsigned i = w->admin ? 0 : 1 + w->id;
    return i < GH_ARRAY_LEN(gw->wws) ? gw->wws[i] : NULL;
}

static void add_common_headers(struct gh_http_req *req)
{
    /* the core gives every /v1 request an id and writes x-request-id */
    (void)req;
}

/* ---- authentication ---- */

/* Fills *who or answers 401/403 and returns false. */
static bool authenticate(struct gh_http_req *req, struct gh_principal *who, bool csrf)
{
    size_t len = 0;
    const char *auth = gh_http_header_get(req, "authorization", &len);
    int rc;
    if (auth)
        rc = gh_auth_request(req, who);
    else
        rc = csrf ? gh_auth_request(req, who) : gh_auth_session(req, false, who);
    if (!rc)
        return true;
    if (rc == GH_ENOTFOUND && gh_auth_reload(req))
        return false; /* evicted from the cache: the handler runs again after the store */
    if (rc == GH_EINVAL) {
        gh_http_respond_error(req, 403, "forbidden",
                              "the X-CSRF-Token header must carry the gh_csrf cookie's value");
        return false;
    }
    gh_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"gatehouse\"");
    gh_http_respond_error_param(req, 401, "invalid_api_key", NULL,
                                auth ? "Incorrect API key provided. You can find your API keys "
                                       "on the /keys page."
                                     : "You didn't provide an API key: send Authorization: "
                                       "Bearer sk-…");
    return false;
}

/* ---- /v1/models ---- */

/* One model object {"id","object":"model","created","owned_by"}. */
static void append_model(struct gh_buf *b, const struct gh_gateway *gw, const char *id)
{
    gh_buf_append_str(b, "{\"id\":\"");
    gh_buf_append_json_str(b, id, strlen(id));
    gh_buf_printf(b, "\",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"gatehouse\"}",
                  (unsigned long long)gw->created);
}

static void models(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    add_common_headers(req);
    struct gh_principal who;
    if (!authenticate(req, &who, false))
        return;
    struct gh_buf b;
    gh_buf_init(&b, 64u << 10);
    gh_buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    if (req->cfg->gateway.echo) {
        append_model(&b, gw, "echo");
        first = false;
    }
    for (unsigned i = 0; i < gw->ups.n; i++) {
        bool seen = req->cfg->gateway.echo && !strcmp(gw->ups.ups[i].model, "echo");
        for (unsigned j = 0; j < i && !seen; j++)
            seen = !strcmp(gw->ups.ups[j].model, gw->ups.ups[i].model);
        if (seen)
            continue;
        if (!first)
            gh_buf_append(&b, ",", 1);
        append_model(&b, gw, gw->ups.ups[i].model);
        first = false;
    }
    gh_buf_append_str(&b, "]}\n");
    gh_http_respond_json(req, 200, b.data, b.len);
    gh_buf_dispose(&b);
}

/* GET /v1/models/{id} (the SDKs' models.retrieve). A public name holding
 * one '/' ("deepseek-ai/DeepSeek-V3") arrives as two segments: the SDKs
 * put the id in the path as it is. */
static void model_one(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_principal who;
    if (!authenticate(req, &who, false))
        return;
    char id[260];
    if (req->nparams == 2)
        snprintf(id, sizeof id, "%s/%s", req->params[0], req->params[1]);
    else
        snprintf(id, sizeof id, "%s", req->params[0]);
    bool known =
        (req->cfg->gateway.echo && !strcmp(id, "echo")) || gh_upstreams_has_model(&gw->ups, id);
    if (!known) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "The model '%.256s' does not exist; GET /v1/models lists the models", id);
        gh_http_respond_error_param(req, 404, "model_not_found", "model", msg);
        return;
    }
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    append_model(&b, gw, id);
    gh_buf_append(&b, "\n", 1);
    gh_http_respond_json(req, 200, b.data, b.len);
    gh_buf_dispose(&b);
}

/* ---- quotas ---- */

static void defaults_of(const struct gh_config *cfg, enum gh_quota_kind kind,
                        struct gh_quota_limits *out)
{
    if (kind == GH_QUOTA_KEY)
        *out = (struct gh_quota_limits){cfg->gateway.key_rpm, cfg->gateway.key_tpm,
                                        cfg->gateway.key_tpd, cfg->gateway.key_concurrency};
    else
        *out = (struct gh_quota_limits){cfg->gateway.user_rpm, cfg->gateway.user_tpm,
                                        cfg->gateway.user_tpd, cfg->gateway.user_concurrency};
}

static void ratelimit_headers(struct gh_http_req *req, const struct gh_quota_info *in)
{
    char d[32];
    if (in->has_requests) {
        gh_http_add_header(req, "x-ratelimit-limit-requests", "%u", in->limit_requests);
        gh_http_add_header(req, "x-ratelimit-remaining-requests", "%u", in->remaining_requests);
        gh_chat_format_duration(in->reset_requests_ms, d, sizeof d);
        gh_http_add_header(req, "x-ratelimit-reset-requests", "%s", d);
    }
    if (in->has_tokens) {
        gh_http_add_header(req, "x-ratelimit-limit-tokens", "%u", in->limit_tokens);
        gh_http_add_header(req, "x-ratelimit-remaining-tokens", "%u", in->remaining_tokens);
        gh_chat_format_duration(in->reset_tokens_ms, d, sizeof d);
        gh_http_add_header(req, "x-ratelimit-reset-tokens", "%s", d);
    }
}

static unsigned share_of(unsigned limit, unsigned share)
{
    return limit && share > 1 ? GH_MAX(limit / share, 1u) : limit;
}

void gw_quota_limits(struct gw_call *c, unsigned share)
{
    struct gh_gateway *gw = c->gw;
    struct gh_quota_limits kd, ud;
    defaults_of(c->req->cfg, GH_QUOTA_KEY, &kd);
    defaults_of(c->req->cfg, GH_QUOTA_USER, &ud);
    memset(&c->key_limits, 0, sizeof c->key_limits);
    if (c->who.key_id)
        gh_quota_limits_of(gw->quotas, GH_QUOTA_KEY, c->who.key_id, &kd, &c->key_limits);
    gh_quota_limits_of(gw->quotas, GH_QUOTA_USER, c->who.user_id, &ud, &c->user_limits);
    struct gh_quota_limits *ls[2] = {&c->key_limits, &c->user_limits};
    for (int i = 0; i < 2; i++) {
        ls[i]->rpm = share_of(ls[i]->rpm, share);
        ls[i]->tpm = share_of(ls[i]->tpm, share);
        ls[i]->tpd = share_of(ls[i]->tpd, share);
        ls[i]->concurrency = share_of(ls[i]->concurrency, share);
    }
}

/* Admits c on its key's and its user's quotas (c's limits and day filled
 * by gw_quota_admit), or answers 429/402 and returns false. The headers
 * describe the key's limits when it has any, else the user's. */
bool gw_quota_admit_local(struct gw_call *c)
{
    struct gh_gateway *gw = c->gw;
    int64_t now = (int64_t)gh_now_ns();
    c->quota_by = GW_QUOTA_LOCAL;
    struct gh_quota_info ki = {0}, ui = {0};
    enum gh_quota_verdict v = GH_QUOTA_OK;
    if (c->who.key_id)
        v = gh_quota_admit(gw->quotas, GH_QUOTA_KEY, c->who.key_id, &c->key_limits, now, c->day,
                           c->est, false, &ki);
    bool user_refused = false;
    if (v == GH_QUOTA_OK) {
        v = gh_quota_admit(gw->quotas, GH_QUOTA_USER, c->who.user_id, &c->user_limits, now,
                           c->day, c->est, true, &ui);
        user_refused = v != GH_QUOTA_OK;
    }
    if (v == GH_QUOTA_OK && c->who.key_id) {
        v = gh_quota_admit(gw->quotas, GH_QUOTA_KEY, c->who.key_id, &c->key_limits, now, c->day,
                           c->est, true, &ki);
        if (v != GH_QUOTA_OK) /* lost a race with another worker: give the user's back */
            gh_quota_release(gw->quotas, GH_QUOTA_USER, c->who.user_id, &c->user_limits, now,
                             c->day, c->est, 0);
    }
    return gw_quota_answer(c, v, user_refused, &ki, &ui);
}

bool gw_quota_answer(struct gw_call *c, enum gh_quota_verdict v, bool user_refused,
                     const struct gh_quota_info *ki, const struct gh_quota_info *ui)
{
    struct gh_gateway *gw = c->gw;
    struct gh_http_req *req = c->req;
    const struct gh_quota_info *shown =
        user_refused || !(ki->has_requests || ki->has_tokens) ? ui : ki;
    ratelimit_headers(req, shown);
    if (v == GH_QUOTA_OK)
        return true;
    GH_STAT_ADD(gw->m_quota_refused, 1);
    const struct gh_quota_info *why = user_refused ? ui : ki;
    uint64_t retry_s = (why->retry_after_ms + 999) / 1000;
    gh_http_add_header(req, "Retry-After", "%llu", (unsigned long long)(retry_s ? retry_s : 1));
    const char *who = user_refused ? "your account" : "this API key";
    switch (v) {
    case GH_QUOTA_BALANCE:
        gh_http_respond_error(req, 402, "insufficient_balance",
                              "the daily token allowance of %s is spent; it renews at 00:00 UTC",
                              who);
        break;
    case GH_QUOTA_CONCURRENCY:
        gh_http_respond_error(req, 429, "rate_limited",
                              "too many concurrent requests for %s (limit %u); retry when one "
                              "has finished",
                              who,
                              user_refused ? c->user_limits.concurrency
                                           : c->key_limits.concurrency);
        break;
    case GH_QUOTA_TOKENS:
        gh_http_respond_error(req, 429, "rate_limited",
                              "rate limit reached for %s: tokens per minute (limit %u, this "
                              "request is estimated at %u); retry after %llu s",
                              who, why->limit_tokens, c->est, (unsigned long long)retry_s);
        break;
    case GH_QUOTA_FULL:
        gh_http_respond_error(req, 429, "rate_limited", "too many clients at once; retry soon");
        break;
    default:
        gh_http_respond_error(req, 429, "rate_limited",
                              "rate limit reached for %s: requests per minute (limit %u); retry "
                              "after %llu s",
                              who, why->limit_requests, (unsigned long long)retry_s);
        break;
    }
    return false;
}

/* ---- the life of a call ---- */

static void on_call_closed(uv_handle_t *h)
{
    struct gw_call *c = h->data;
    gh_buf_dispose(&c->out);
    gh_buf_dispose(&c->body);
    gh_buf_dispose(&c->err_body);
    gh_sse_dispose(&c->sse);
    gh_chat_req_dispose(&c->chat);
    free(c->echo_text);
    free(c);
}

void gw_call_finish(struct gw_call *c)
{
    if (c->finished)
        return;
    c->finished = true;
    struct gh_gateway *gw = c->gw;
    if (c->req) {
        /* not answered yet (a bug guard): answer so the request is freed */
        struct gh_http_req *req = c->req;
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        if (req->streaming)
            gh_http_stream_end(req);
        else if (!req->responded)
            gh_http_respond_error(req, 500, "internal_error", "the call ended unanswered");
    }
    gw_relay_abort(c);
    gw_quota_settle(c);
    struct gh_usage_rec rec = {
        .key_id = c->who.key_id,
        .user_id = c->who.user_id,
        .day = c->day,
        .model = c->model,
        .prompt_tokens = c->prompt_tokens,
        .completion_tokens = c->completion_tokens,
        .cached_tokens = c->cached_tokens,
        .reasoning_tokens = c->reasoning_tokens,
        .cut_short = c->cut_short,
        .status = c->last_status,
    };
    gh_usage_record(gw->usage, &rec);
    GH_STAT_ADD(gw->m_prompt_tokens, c->prompt_tokens);
    GH_STAT_ADD(gw->m_completion_tokens, c->completion_tokens);
    if (c->cut_short)
        GH_STAT_ADD(gw->m_cut_short, 1);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

void gw_call_start_stream(struct gw_call *c)
{
    if (c->started || !c->req)
        return;
    c->started = true;
    c->last_status = 200;
    gh_http_add_header(c->req, "Cache-Control", "no-cache");
    gh_http_add_header(c->req, "X-Accel-Buffering", "no");
    gh_http_stream_start(c->req, 200, "text/event-stream; charset=utf-8");
}

int64_t gw_call_flush(struct gw_call *c)
{
    if (!c->req)
        return GH_EIO;
    gw_call_start_stream(c);
    int64_t q = gh_http_stream_write(c->req, c->out.data, c->out.len);
    gh_buf_reset(&c->out);
    return q;
}

void gw_call_fail(struct gw_call *c, int status, const char *code, const char *message)
{
    struct gh_http_req *req = c->req;
    if (req && !c->started) {
        c->last_status = status;
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        if (status == 503 || status == 429)
            gh_http_add_header(req, "Retry-After", "%u", c->retry_after_s ? c->retry_after_s : 5);
        gh_http_respond_error_param(req, status, code, NULL, message);
    } else if (req) {
        c->cut_short = c->first_byte;
        gh_buf_reset(&c->out);
        gh_chat_sse_error(&c->out, message, status >= 500 ? "server_error" : "invalid_request_error",
                          code);
        gw_call_flush(c);
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        gh_http_stream_end(req);
    }
    gw_call_finish(c);
}

static void on_abort(struct gh_http_req *req, void *data)
{
    struct gw_call *c = data;
    (void)req;
    c->req = NULL;
    c->cut_short = true;
    if (!c->last_status)
        c->last_status = 499; /* nginx's "client closed request", for the record */
    gw_call_finish(c);
}

/* ---- the echo model ---- */

static void echo_tick(uv_timer_t *t);

static bool echo_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The next slice of a JSON text or of tool arguments: its whitespace then
 * a word, kept as they are (the slices add up to the text), at most
 * ECHO_TOKEN_MAX bytes, cut on a UTF-8 character boundary. */
static size_t echo_next_slice(struct gw_call *c, const char **tok)
{
    const char *s = c->echo_text;
    size_t n = c->echo_len, p = c->echo_pos, q = p;
    size_t end = GH_MIN(n, p + ECHO_TOKEN_MAX);
    while (q < end && echo_space(s[q]))
        q++;
    while (q < end && !echo_space(s[q]))
        q++;
    while (q < n && q > p + 1 && ((unsigned char)s[q] & 0xc0) == 0x80)
        q--;
    c->echo_pos = q;
    *tok = s + p;
    return q - p;
}

/* The next token of the reply at *pos, or 0 bytes at the end. */
static size_t echo_next(struct gw_call *c, const char **tok)
{
    if (c->echo_plan.kind != GH_ECHO_WORDS)
        return echo_next_slice(c, tok);
    const char *s = c->echo_text;
    size_t n = c->echo_len, p = c->echo_pos;
    while (p < n && echo_space(s[p]))
        p++;
    size_t start = p;
    while (p < n && p - start < ECHO_TOKEN_MAX && !echo_space(s[p]))
        p++;
    /* a long word is cut, on a UTF-8 character boundary */
    while (p < n && p - start == ECHO_TOKEN_MAX && p > start + 1 && ((unsigned char)s[p] & 0xc0) == 0x80)
        p--;
    c->echo_pos = p;
    *tok = s + start;
    return p - start;
}

/* The id of the echo's tool call: "call_" and the hex of the completion's id. */
static void echo_call_id(const struct gw_call *c, char *out, size_t outlen)
{
    snprintf(out, outlen, "call_%s", c->id + strlen("chatcmpl-"));
}

static void echo_complete(struct gw_call *c, const char *finish)
{
    struct gh_http_req *req = c->req;
    c->last_status = 200;
    bool tool = c->echo_plan.kind == GH_ECHO_TOOL;
    if (tool && !strcmp(finish, "stop"))
        finish = "tool_calls";
    if (!c->stream) {
        struct gh_buf b;
        gh_buf_init(&b, c->out.len * 2 + 4096);
        char call_id[48];
        echo_call_id(c, call_id, sizeof call_id);
        int rc = tool ? gh_chat_completion_tool(&b, c->id, c->created, c->model, call_id,
                                                c->echo_plan.tool, c->out.data ? c->out.data : "",
                                                c->out.len, finish, c->prompt_tokens,
                                                c->completion_tokens)
                      : gh_chat_completion(&b, c->id, c->created, c->model,
                                           c->out.data ? c->out.data : "", c->out.len, finish,
                                           c->prompt_tokens, c->completion_tokens);
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        if (rc)
            gh_http_respond_error(req, 500, "internal_error", "the answer is too large");
        else
            gh_http_respond_json(req, 200, b.data, b.len);
        gh_buf_dispose(&b);
    } else {
        gh_chat_sse_chunk(&c->out, c->id, c->created, c->model, NULL, NULL, 0, finish,
                          c->include_usage);
        if (c->include_usage)
            gh_chat_sse_usage(&c->out, c->id, c->created, c->model, c->prompt_tokens,
                              c->completion_tokens);
        gh_chat_sse_done(&c->out);
        gw_call_flush(c);
        c->req = NULL;
        gh_http_set_callbacks(req, NULL, NULL, NULL);
        gh_http_stream_end(req);
    }
    gw_call_finish(c);
}

/* Emits tokens: one per tick, or a batch when there is no delay. */
static void echo_run(struct gw_call *c)
{
    uint64_t delay = c->req->cfg->gateway.echo_delay_ms;
    unsigned batch = delay ? 1 : 64;
    /* without max_tokens a long prompt must not hold the request for
     * minutes (issue 13, item 8): the answer stops at ECHO_DEFAULT_TOKENS */
    unsigned limit = c->chat.max_tokens ? c->chat.max_tokens : ECHO_DEFAULT_TOKENS;
    for (unsigned i = 0; i < batch; i++) {
        const char *tok;
        size_t n = echo_next(c, &tok);
        if (!n) {
            echo_complete(c, "stop");
            return;
        }
        if (c->completion_tokens >= limit) {
            echo_complete(c, "length");
            return;
        }
        c->completion_tokens++;
        bool words = c->echo_plan.kind == GH_ECHO_WORDS;
        if (c->stream && c->echo_plan.kind == GH_ECHO_TOOL) {
            gh_chat_sse_tool_chunk(&c->out, c->id, c->created, c->model, NULL, NULL, tok, n,
                                   c->include_usage);
        } else if (c->stream) {
            char piece[ECHO_TOKEN_MAX + 2];
            size_t pl = 0;
            if (words && c->completion_tokens > 1)
                piece[pl++] = ' ';
            memcpy(piece + pl, tok, n);
            pl += n;
            gh_chat_sse_chunk(&c->out, c->id, c->created, c->model, NULL, piece, pl, NULL,
                              c->include_usage);
        } else {
            if (words && c->completion_tokens > 1)
                gh_buf_append(&c->out, " ", 1);
            if (gh_buf_append(&c->out, tok, n)) {
                echo_complete(c, "length");
                return;
            }
        }
    }
    if (c->stream) {
        c->first_byte = true;
        int64_t q = gw_call_flush(c);
        if (q < 0)
            return; /* the client has gone: on_abort finishes */
        if ((uint64_t)q > RELAY_HIGH_MARK) {
            c->echo_paused = true;
            return;
        }
    }
    uv_timer_start(&c->timer, echo_tick, delay, 0);
}

static void echo_tick(uv_timer_t *t)
{
    struct gw_call *c = t->data;
    if (c->req && !c->finished)
        echo_run(c);
}

static void on_drain(struct gh_http_req *req, void *data)
{
    struct gw_call *c = data;
    (void)req;
    if (c->finished || !c->req)
        return;
    if (c->echo_text) {
        if (c->echo_paused) {
            c->echo_paused = false;
            uv_timer_start(&c->timer, echo_tick, 0, 0);
        }
    } else {
        gw_relay_drain(c);
    }
}

static void echo_start(struct gw_call *c)
{
    struct gh_buf text;
    /* the body cap bounds the message; JSON escapes at most sextuple it
     * (tool arguments hold at most GH_ECHO_PARAMS_MAX cut copies) */
    gh_buf_init(&text, 6 * c->req->body.len + 6 * GH_ECHO_PARAMS_MAX * GH_ECHO_ARG_MAX + 4096);
    if (gh_echo_plan(c->chat.root, c->chat.last_user, c->chat.last_user_len, &c->echo_plan,
                     &text) ||
        !(c->echo_text = gh_buf_steal(&text, &c->echo_len))) {
        gh_buf_dispose(&text);
        gw_call_fail(c, 500, "internal_error", "out of memory");
        return;
    }
    c->prompt_tokens = c->chat.prompt_tokens;
    c->usage_known = true;
    gh_buf_init(&c->out, c->stream ? 1u << 20 : 64u << 20);
    if (c->stream) {
        char call_id[48];
        echo_call_id(c, call_id, sizeof call_id);
        if (c->echo_plan.kind == GH_ECHO_TOOL)
            gh_chat_sse_tool_chunk(&c->out, c->id, c->created, c->model, call_id, c->echo_plan.tool,
                                   "", 0, c->include_usage);
        else
            gh_chat_sse_chunk(&c->out, c->id, c->created, c->model, "assistant", "", 0, NULL,
                              c->include_usage);
        if (gw_call_flush(c) < 0)
            return;
    }
    uv_timer_start(&c->timer, echo_tick, c->req->cfg->gateway.echo_delay_ms, 0);
}

/* ---- POST /v1/chat/completions and /beta/completions ---- */

/* The client's own deadline from X-Request-Timeout or X-Stainless-Timeout
 * (the official SDKs' header) in ms; UINT64_MAX when absent or unreadable
 * (a hint, never a refusal). */
static uint64_t client_timeout_ms(struct gh_http_req *req)
{
    static const char *const names[] = {"x-request-timeout", "x-stainless-timeout"};
    for (size_t i = 0; i < GH_ARRAY_LEN(names); i++) {
        size_t n = 0;
        const char *v = gh_http_header_get(req, names[i], &n);
        uint64_t ms;
        if (v && !gh_fairq_parse_timeout(v, n, &ms))
            return ms;
    }
    return UINT64_MAX;
}

/* The fair queue's tier of who: a quota override first, then accounts
 * older than tier_established_age, new accounts last. */
static unsigned tier_of(struct gh_gateway *gw, const struct gh_principal *who)
{
    if (gh_quota_has_override(gw->quotas, GH_QUOTA_USER, who->user_id) ||
        (who->key_id && gh_quota_has_override(gw->quotas, GH_QUOTA_KEY, who->key_id)))
        return GH_TIER_PRIORITY;
    return who->user_id <= atomic_load(&gw->established_max_id) ? GH_TIER_ESTABLISHED : GH_TIER_NEW;
}

/* Which upstreams of model cannot serve a FIM call (no fim = true), as a
 * mask of indexes; *none set when not one of them can. */
static uint64_t fim_excluded(const struct gh_gateway *gw, const char *model, bool *none)
{
    uint64_t ex = 0;
    *none = true;
    for (unsigned i = 0; i < gw->ups.n && i < 64; i++) {
        if (strcmp(gw->ups.ups[i].model, model))
            continue;
        if (gw->ups.ups[i].fim)
            *none = false;
        else
            ex |= 1ull << i;
    }
    return ex;
}

/* A chat call (fim false) or a fill-in-the-middle call (POST
 * /beta/completions, relayed to base_url/completions of the model's
 * upstreams that declare fim = true). */
static void start_call(struct gh_http_req *req, bool fim)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_config *cfg = req->cfg;
    add_common_headers(req);
    GH_STAT_ADD(gw->m_requests, 1);
    struct gh_principal who;
    if (!authenticate(req, &who, true))
        return;
    struct gw_call *c = calloc(1, sizeof *c);
    struct gw_worker *ww = gw_worker_of(gw, req->worker);
    if (!c || !ww) {
        free(c);
        gh_http_respond_error(req, 503, "busy", "the gateway cannot take this request now");
        return;
    }
    c->gw = gw;
    c->ww = ww;
    c->req = req;
    c->who = who;
    c->up = -1;
    c->granted = GH_EBUSY;
    gh_list_init(&c->fw.node);
    gh_list_init(&c->grant_node);
    gh_list_init(&c->lease_node);
    gh_buf_init(&c->err_body, 64u << 10);
    gh_sse_init(&c->sse, 4u << 20);
    struct gh_chat_error err;
    int (*parse)(const char *, size_t, unsigned, bool, struct gh_chat_req *,
                 struct gh_chat_error *) = fim ? gh_fim_parse : gh_chat_parse;
    if (parse(req->body.data ? req->body.data : "", req->body.len, cfg->gateway.max_tokens_cap,
              !strcmp(cfg->gateway.unknown_fields, "drop"), &c->chat, &err)) {
        gh_http_respond_error_param(req, err.status, err.code, err.param, err.message);
        goto drop;
    }
    bool echo = cfg->gateway.echo && !strcmp(c->chat.model, "echo");
    if (!echo && !gh_upstreams_has_model(&gw->ups, c->chat.model)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "The model '%.256s' does not exist; GET /v1/models lists the models", c->chat.model);
        gh_http_respond_error_param(req, 404, "model_not_found", "model", msg);
        goto drop;
    }
    bool no_fim = false;
    if (fim && !echo)
        c->excluded = fim_excluded(gw, c->chat.model, &no_fim);
    if (fim && (echo || no_fim)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "The model '%.256s' does not support fill-in-the-middle completions "
                 "(POST /beta/completions); use POST /v1/chat/completions",
                 c->chat.model);
        gh_http_respond_error_param(req, 400, "invalid_request", "model", msg);
        goto drop;
    }
    snprintf(c->model, sizeof c->model, "%s", c->chat.model);
    c->stream = c->chat.stream;
    c->include_usage = c->stream && c->chat.include_usage;
    unsigned out_est = c->chat.max_tokens ? c->chat.max_tokens
                                          : GH_MIN(cfg->gateway.max_tokens_cap, 1024u);
    if (echo) /* the echo's answer is as long as the message */
        out_est = GH_MIN(out_est, gh_chat_estimate_tokens(NULL, c->chat.last_user_len) + 2);
    uint64_t est = (uint64_t)c->chat.prompt_tokens + out_est;
    c->est = est > UINT32_MAX ? UINT32_MAX : (unsigned)est;
    gh_chat_new_id(c->id, sizeof c->id); /* also the call's lease in Redis */
    gw_quota_admit(c);                   /* ends in gw_call_admitted or gw_call_drop */
    return;
drop:
    gw_call_drop(c);
}

void gw_call_drop(struct gw_call *c)
{
    gh_sse_dispose(&c->sse);
    gh_buf_dispose(&c->err_body);
    gh_chat_req_dispose(&c->chat);
    free(c);
}

void gw_call_admitted(struct gw_call *c)
{
    /* from here on the call holds quota and must end in gw_call_finish */
    struct gh_gateway *gw = c->gw;
    struct gh_http_req *req = c->req;
    struct gh_config *cfg = req->cfg;
    bool echo = cfg->gateway.echo && !strcmp(c->chat.model, "echo");
    c->created = gh_wall_ms() / 1000;
    c->start_ms = gh_now_ms();
    uint64_t hint = client_timeout_ms(req);
    c->deadline_ms = c->start_ms + GH_MIN(cfg->gateway.first_byte_timeout_ms, hint);
    c->queue_deadline_ms = c->start_ms + GH_MIN(cfg->gateway.queue_timeout_ms, hint);
    c->tier = tier_of(gw, &c->who);
    c->model_idx = gh_upstreams_model_index(&gw->ups, c->model);
    c->up_est = c->est;
    uv_timer_init(&req->worker->loop, &c->timer);
    c->timer.data = c;
    gh_http_set_callbacks(req, on_abort, on_drain, c);
    if (echo) {
        echo_start(c);
    } else {
        gh_buf_init(&c->out, c->stream ? 1u << 20 : 16u << 20);
        gh_buf_init(&c->body, 2 * req->body.len + (64u << 10));
        gw_relay_start(c);
    }
}

static void chat_completions(struct gh_http_req *req)
{
    start_call(req, false);
}

static void fim_completions(struct gh_http_req *req)
{
    start_call(req, true);
}

/* ---- GET /api/usage ---- */

static void usage_route(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_principal who;
    if (!authenticate(req, &who, false))
        return;
    char q[16];
    uint64_t days = 30;
    if (!gh_http_query_get(req, "days", q, sizeof q) && (gh_parse_uint(q, 3660, &days) || !days)) {
        gh_http_respond_error_param(req, 400, "invalid_request", "days",
                                    "days must be a whole number between 1 and 3660");
        return;
    }
    uint32_t today = gh_usage_today();
    uint32_t from = today + 1 > days ? today + 1 - (uint32_t)days : 0;
    json_t *rows = gh_usage_query(gw->usage, who.user_id, from);
    json_t *ans = json_pack("{s:s,s:o,s:s}", "object", "list", "data", rows ? rows : json_array(),
                            "policy",
                            "tokens as the model reported them; a stream cut short counts its "
                            "prompt and the tokens delivered before the cut");
    char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    if (!text) {
        gh_http_respond_error(req, 500, "internal_error", "out of memory");
        return;
    }
    gh_http_respond_json(req, 200, text, strlen(text));
    free(text);
}

/* ---- GET /user/balance (DeepSeek's shape) ---- */

/* The caller's balance is what is left of today's token allowance (tpd):
 * the smaller of the key's and the user's, in tokens as whole-number
 * strings, currency "TOKENS". With no daily allowance at all there is no
 * balance to count: is_available true and no balance_infos. */
void gw_balance_respond(struct gh_http_req *req, const unsigned tpd[2], const uint64_t spent[2])
{
    bool limited = false;
    uint64_t left = UINT64_MAX;
    for (int k = 0; k < 2; k++) {
        if (!tpd[k])
            continue;
        limited = true;
        left = GH_MIN(left, spent[k] >= tpd[k] ? 0 : tpd[k] - spent[k]);
    }
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    gh_buf_printf(&b, "{\"is_available\":%s,\"balance_infos\":[",
                  !limited || left ? "true" : "false");
    if (limited)
        gh_buf_printf(&b,
                      "{\"currency\":\"TOKENS\",\"total_balance\":\"%llu\","
                      "\"granted_balance\":\"%llu\",\"topped_up_balance\":\"0\"}",
                      (unsigned long long)left, (unsigned long long)left);
    gh_buf_append_str(&b, "]}\n");
    gh_http_add_header(req, "Cache-Control", "no-store");
    gh_http_respond_json(req, 200, b.data, b.len);
    gh_buf_dispose(&b);
}

void gw_balance_local(struct gh_gateway *gw, struct gh_http_req *req,
                      const struct gh_principal *who, const unsigned tpd[2])
{
    uint32_t day = gh_usage_today();
    uint64_t spent[2] = {0, 0};
    if (tpd[0])
        spent[0] = gh_quota_spent(gw->quotas, GH_QUOTA_USER, who->user_id, day);
    if (tpd[1])
        spent[1] = gh_quota_spent(gw->quotas, GH_QUOTA_KEY, who->key_id, day);
    gw_balance_respond(req, tpd, spent);
}

static void balance(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_principal who;
    if (!authenticate(req, &who, false))
        return;
    struct gh_quota_limits d, l;
    unsigned tpd[2] = {0, 0}; /* the user's, the key's */
    for (int k = 0; k < 2; k++) {
        enum gh_quota_kind kind = k ? GH_QUOTA_KEY : GH_QUOTA_USER;
        uint64_t id = k ? who.key_id : who.user_id;
        if (!id)
            continue; /* the web chat's session has no key */
        defaults_of(req->cfg, kind, &d);
        gh_quota_limits_of(gw->quotas, kind, id, &d, &l);
        tpd[k] = l.tpd;
    }
    if (tpd[0] || tpd[1])
        gw_quota_balance(gw, req, &who, tpd); /* the cluster's count, in Redis */
    else
        gw_balance_respond(req, tpd, (const uint64_t[2]){0, 0});
}

/* ---- admin: quotas and upstreams ---- */

struct save_job {
    uv_work_t work;
    struct gh_http_req *req;
    struct gh_gateway *gw;
    json_t *answer;
    int rc;
};

static void save_work(uv_work_t *w)
{
    struct save_job *j = w->data;
    j->rc = gh_quota_save(j->gw->quotas, j->gw->quota_path);
}

static void save_done(uv_work_t *w, int status)
{
    struct save_job *j = w->data;
    if (status || j->rc) {
        gh_http_respond_error(j->req, 500, "internal_error",
                              "the quota was set but could not be saved to %s", j->gw->quota_path);
    } else {
        char *text = json_dumps(j->answer, JSON_COMPACT);
        if (text)
            gh_http_respond_json(j->req, 200, text, strlen(text));
        else
            gh_http_respond_error(j->req, 500, "internal_error", "out of memory");
        free(text);
    }
    json_decref(j->answer);
    free(j);
}

static bool parse_target(struct gh_http_req *req, enum gh_quota_kind *kind, uint64_t *id)
{
    const char *k = req->params[0], *i = req->params[1];
    if (!strcmp(k, "keys") || !strcmp(k, "key"))
        *kind = GH_QUOTA_KEY;
    else if (!strcmp(k, "users") || !strcmp(k, "user"))
        *kind = GH_QUOTA_USER;
    else {
        gh_http_respond_error(req, 404, "not_found", "quotas are set on keys/ID or users/ID");
        return false;
    }
    if (gh_parse_uint(i, UINT64_MAX >> 8, id) || !*id) {
        gh_http_respond_error_param(req, 400, "invalid_request", "id",
                                    "the id must be a positive whole number");
        return false;
    }
    return true;
}

static json_t *limits_json(enum gh_quota_kind kind, uint64_t id, const struct gh_quota_limits *l)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "kind", kind == GH_QUOTA_KEY ? "key" : "user",
                     "id", (json_int_t)id, "rpm", (json_int_t)l->rpm, "tpm", (json_int_t)l->tpm,
                     "tpd", (json_int_t)l->tpd, "concurrency", (json_int_t)l->concurrency);
}

/* Another node's quota overrides (the store's listener thread). */
static int apply_quotas(const char *text, void *arg)
{
    return gh_quota_load_text(arg, text);
}

static void admin_quota_put(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    enum gh_quota_kind kind;
    uint64_t id;
    if (!parse_target(req, &kind, &id))
        return;
    bool del = req->method == HTTP_DELETE;
    struct gh_quota_limits l = {GH_QUOTA_UNSET, GH_QUOTA_UNSET, GH_QUOTA_UNSET, GH_QUOTA_UNSET};
    if (!del) {
        json_t *body = gh_http_body_object(req);
        if (!body)
            return;
        static const char *const names[] = {"rpm", "tpm", "tpd", "concurrency"};
        unsigned *fields[] = {&l.rpm, &l.tpm, &l.tpd, &l.concurrency};
        for (size_t i = 0; i < GH_ARRAY_LEN(names); i++) {
            json_t *v = json_object_get(body, names[i]);
            if (!v)
                continue;
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) >= (json_int_t)GH_QUOTA_UNSET) {
                json_decref(body);
                gh_http_respond_error_param(req, 422, "invalid_parameter", names[i],
                                            "limits are whole numbers >= 0 (0 = unlimited)");
                return;
            }
            *fields[i] = (unsigned)json_integer_value(v);
        }
        json_decref(body);
    }
    int rc = gh_quota_set(gw->quotas, kind, id, del ? NULL : &l);
    if (rc == GH_ENOTFOUND) {
        gh_http_respond_error(req, 404, "not_found", "no quota override for this %s",
                              kind == GH_QUOTA_KEY ? "key" : "user");
        return;
    }
    if (rc) {
        gh_http_respond_error(req, 507, "too_many", "too many quota overrides");
        return;
    }
    if (gw->quota_doc) { /* the other nodes read it again when its message arrives */
        char *doc = gh_quota_dump(gw->quotas, true);
        gh_shared_doc_save(gw->quota_doc, doc);
        free(doc);
    }
    struct gh_quota_limits defaults, eff;
    defaults_of(req->cfg, kind, &defaults);
    gh_quota_limits_of(gw->quotas, kind, id, &defaults, &eff);
    gh_log(GH_LOG_INFO, "quota_set", "%s %llu: rpm=%u tpm=%u tpd=%u concurrency=%u%s",
           kind == GH_QUOTA_KEY ? "key" : "user", (unsigned long long)id, eff.rpm, eff.tpm,
           eff.tpd, eff.concurrency, del ? " (override removed)" : "");
    struct save_job *j = calloc(1, sizeof *j);
    if (!j) {
        gh_http_respond_error(req, 500, "internal_error", "out of memory");
        return;
    }
    j->req = req;
    j->gw = gw;
    j->answer = limits_json(kind, id, &eff);
    j->work.data = j;
    if (uv_queue_work(&req->worker->loop, &j->work, save_work, save_done)) {
        json_decref(j->answer);
        free(j);
        gh_http_respond_error(req, 500, "internal_error", "cannot queue the save");
    }
}

static void admin_quotas(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_config *cfg = req->cfg;
    json_t *ans = json_pack(
        "{s:o,s:{s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I}}}", "overrides", gh_quota_list(gw->quotas),
        "defaults", "key", "rpm", (json_int_t)cfg->gateway.key_rpm, "tpm",
        (json_int_t)cfg->gateway.key_tpm, "tpd", (json_int_t)cfg->gateway.key_tpd, "concurrency",
        (json_int_t)cfg->gateway.key_concurrency, "user", "rpm", (json_int_t)cfg->gateway.user_rpm,
        "tpm", (json_int_t)cfg->gateway.user_tpm, "tpd", (json_int_t)cfg->gateway.user_tpd,
        "concurrency", (json_int_t)cfg->gateway.user_concurrency);
    char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    if (text)
        gh_http_respond_json(req, 200, text, strlen(text));
    else
        gh_http_respond_error(req, 500, "internal_error", "out of memory");
    free(text);
}

unsigned gh_gateway_upstreams(struct gh_gateway *gw, struct gh_gateway_upstream_status *out,
                              unsigned max)
{
    uint64_t now = gh_now_ms();
    for (unsigned i = 0; i < gw->ups.n && i < max; i++) {
        struct gh_upstream *up = &gw->ups.ups[i];
        struct gh_gateway_upstream_status *s = &out[i];
        snprintf(s->name, sizeof s->name, "%s", up->name);
        snprintf(s->model, sizeof s->model, "%s", up->model);
        s->state = gh_upstream_state(up, now);
        s->up = !strcmp(s->state, "up") || !strcmp(s->state, "half_open");
        s->active = atomic_load(&up->active);
        s->max_concurrent = up->max_concurrent;
        s->requests = atomic_load(&up->requests);
        s->failures = atomic_load(&up->failures);
        s->rate_limited = atomic_load(&up->rate_limited);
    }
    return gw->ups.n;
}

static void admin_upstreams(struct gh_http_req *req)
{
    struct gh_gateway *gw = req->route->ctx;
    struct gh_gateway_upstream_status st[GH_UPSTREAMS_MAX];
    unsigned n = gh_gateway_upstreams(gw, st, GH_UPSTREAMS_MAX);
    json_t *arr = json_array();
    for (unsigned i = 0; i < n; i++) {
        struct gh_upstream *up = &gw->ups.ups[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "name", st[i].name,
                           "model", st[i].model, "base_url", up->base_url, "state", st[i].state,
                           "up", st[i].up, "weight", (json_int_t)up->weight, "active",
                           (json_int_t)st[i].active, "max_concurrent",
                           (json_int_t)st[i].max_concurrent, "requests",
                           (json_int_t)st[i].requests, "failures", (json_int_t)st[i].failures,
                           "rate_limited", (json_int_t)st[i].rate_limited));
    }
    json_t *ans = json_pack("{s:o,s:b}", "upstreams", arr, "echo", req->cfg->gateway.echo);
    char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    if (text)
        gh_http_respond_json(req, 200, text, strlen(text));
    else
        gh_http_respond_error(req, 500, "internal_error", "out of memory");
    free(text);
}

/* ---- workers, metrics, init ---- */

/* Frees the gateway once no worker can use it any more. */
static void gateway_free(struct gh_gateway *gw)
{
    gh_usage_free(gw->usage);           /* writes what is queued */
    gh_shared_doc_close(gw->quota_doc); /* no other node's overrides from here on */
    gh_quota_table_free(gw->quotas);
    gh_upstreams_dispose(&gw->ups);
    gh_fairq_free(gw->fq);
    free(gw);
}

/* ---- the established tier: which user ids are old enough ---- */

struct age_job {
    struct gh_gateway *gw;
    uint64_t before_ms, id;
};

static int age_fn(struct gh_store_conn *conn, void *arg)
{
    struct age_job *j = arg;
    return gh_store_user_newest_before(conn, j->before_ms, &j->id);
}

static void age_done(struct gh_worker *w, void *arg, int rc)
{
    struct age_job *j = arg;
    if (w && !rc)
        atomic_store(&j->gw->established_max_id, j->id);
    free(j);
}

/* Asks the store for the newest user created tier_established_age ago
 * (ids grow with creation, so one number splits the tiers). Admin loop. */
static void on_age_timer(uv_timer_t *t)
{
    struct gh_gateway *gw = t->data;
    struct gh_store *st = gh_identity_store();
    struct gh_config *cfg = gh_server_config(gw->srv);
    uint64_t age = cfg->gateway.tier_established_age_ms;
    gh_config_unref(cfg);
    if (!age) {
        atomic_store(&gw->established_max_id, UINT64_MAX);
        return;
    }
    struct age_job *j = st ? calloc(1, sizeof *j) : NULL;
    if (!j)
        return;
    j->gw = gw;
    uint64_t now = gh_wall_ms();
    j->before_ms = now > age ? now - age : 0;
    if (gh_store_read(st, age_fn, j, gw->age_worker, age_done))
        free(j);
}

static void start_age_timer(struct gh_gateway *gw, struct gh_worker *w)
{
    struct gh_config *cfg = gh_server_config(gw->srv);
    uint64_t age = cfg->gateway.tier_established_age_ms;
    gh_config_unref(cfg);
    /* a quarter of the age between looks, from 1 s to a minute */
    uint64_t every = GH_MAX(GH_MIN(age / 4, (uint64_t)60000), (uint64_t)1000);
    gw->age_worker = w;
    uv_timer_init(&w->loop, &gw->age_timer);
    gw->age_timer.data = gw;
    uv_timer_start(&gw->age_timer, on_age_timer, 0, every);
    gw->age_timer_on = true;
}

static int worker_init(struct gh_worker *w, void *data)
{
    struct gh_gateway *gw = data;
    atomic_fetch_add(&gw->workers, 1);
    if (w->admin) {
        start_age_timer(gw, w);
        return 0;
    }
    unsigned i = 1 + w->id;
    if (i >= GH_ARRAY_LEN(gw->wws))
        return GH_EINVAL;
    struct gw_worker *ww = calloc(1, sizeof *ww);
    if (!ww)
        return GH_ENOMEM;
    ww->gw = gw;
    ww->w = w;
    int rc = gw_relay_worker_init(ww);
    if (rc) {
        free(ww);
        return rc;
    }
    gw_quota_start_renewal(ww);
    gw->wws[i] = ww;
    return 0;
}

static void worker_dispose(struct gh_worker *w, void *data)
{
    struct gh_gateway *gw = data;
    struct gw_worker *ww = w->admin ? NULL : gw->wws[1 + w->id];
    if (w->admin && gw->age_timer_on) {
        gw->age_timer_on = false;
        uv_close((uv_handle_t *)&gw->age_timer, NULL);
    }
    if (ww) {
        gw->wws[1 + w->id] = NULL;
        gw_relay_worker_dispose(ww); /* frees ww once its handles have closed */
    }
    /* the last worker out (its loop has no calls left) frees the gateway */
    if (atomic_fetch_sub(&gw->workers, 1) == 1)
        gateway_free(gw);
}

static double upstream_metric(void *data, int what)
{
    struct gh_upstream *up = data;
    const char *s = gh_upstream_state(up, gh_now_ms());
    switch (what) {
    case 0:
        return !strcmp(s, "up") || !strcmp(s, "half_open");
    case 1:
        return !strcmp(s, "circuit_open");
    default:
        return atomic_load(&up->active);
    }
}
static double m_up(void *d) { return upstream_metric(d, 0); }
static double m_open(void *d) { return upstream_metric(d, 1); }
static double m_active(void *d) { return upstream_metric(d, 2); }
static uint64_t m_requests(void *d)
{
    return atomic_load(&((struct gh_upstream *)d)->requests);
}
static uint64_t m_failures(void *d)
{
    return atomic_load(&((struct gh_upstream *)d)->failures);
}
static uint64_t m_limited(void *d)
{
    return atomic_load(&((struct gh_upstream *)d)->rate_limited);
}

static struct gh_fairq_tier_stats tier_stats(void *d)
{
    struct gw_tier_ref *r = d;
    struct gh_fairq_tier_stats st;
    gh_fairq_stats(r->gw->fq, r->tier, &st);
    return st;
}
static double m_q_waiting(void *d)
{
    return tier_stats(d).waiting;
}
static double m_q_oldest(void *d)
{
    uint64_t since = tier_stats(d).oldest_since_ms, now = gh_now_ms();
    return since && now > since ? (double)(now - since) / 1000.0 : 0;
}
static uint64_t m_q_served(void *d)
{
    return tier_stats(d).served;
}
static uint64_t m_q_dispatched(void *d)
{
    return tier_stats(d).dispatched;
}
static uint64_t m_q_full(void *d)
{
    return tier_stats(d).refused_full;
}
static uint64_t m_q_wait(void *d)
{
    return tier_stats(d).refused_wait + tier_stats(d).timed_out;
}

static void register_queue_metrics(struct gh_gateway *gw)
{
    for (unsigned t = 0; t < GH_TIER_COUNT; t++) {
        struct gw_tier_ref *r = &gw->tier_refs[t];
        *r = (struct gw_tier_ref){gw, t};
        char l[64], lf[96], lw[96];
        snprintf(l, sizeof l, "tier=\"%s\"", gh_fairq_tier_name(t));
        snprintf(lf, sizeof lf, "%s,reason=\"full\"", l);
        snprintf(lw, sizeof lw, "%s,reason=\"wait\"", l);
        gh_metrics_gauge_func("gatehouse_chat_queue_waiting", l,
                              "calls waiting for a model slot, per tier", m_q_waiting, r);
        gh_metrics_gauge_func("gatehouse_chat_queue_oldest_wait_seconds", l,
                              "how long the oldest waiting call of the tier has waited", m_q_oldest,
                              r);
        gh_metrics_counter_func("gatehouse_chat_queue_served_total", l,
                                "calls that took a model slot, per tier", m_q_served, r);
        gh_metrics_counter_func("gatehouse_chat_queue_dispatched_total", l,
                                "calls that took a model slot after waiting, per tier",
                                m_q_dispatched, r);
        gh_metrics_counter_func("gatehouse_chat_queue_busy_total", lf,
                                "calls answered 503 busy by the queue: full, or a wait past "
                                "the call's deadline (estimated or reached)",
                                m_q_full, r);
        gh_metrics_counter_func("gatehouse_chat_queue_busy_total", lw,
                                "calls answered 503 busy by the queue: full, or a wait past "
                                "the call's deadline (estimated or reached)",
                                m_q_wait, r);
    }
}

static void register_metrics(struct gh_gateway *gw)
{
    register_queue_metrics(gw);
    gw->m_requests = gh_metrics_counter("gatehouse_chat_requests_total", "",
                                        "chat completion requests received");
    gw->m_prompt_tokens = gh_metrics_counter("gatehouse_chat_tokens_total", "kind=\"prompt\"",
                                             "tokens charged to users");
    gw->m_completion_tokens = gh_metrics_counter("gatehouse_chat_tokens_total",
                                                 "kind=\"completion\"", "tokens charged to users");
    gw->m_quota_refused = gh_metrics_counter("gatehouse_chat_quota_refused_total", "",
                                             "chat requests refused by a quota (429/402)");
    gw->m_cut_short = gh_metrics_counter("gatehouse_chat_cut_short_total", "",
                                         "answers ended early (client gone or upstream broke)");
    gw->m_failovers = gh_metrics_counter("gatehouse_upstream_failovers_total", "",
                                         "calls moved to another upstream before the first byte");
    gw->m_upstream_errors = gh_metrics_counter(
        "gatehouse_upstream_errors_total", "", "calls that ended in an error for the client");
    for (unsigned i = 0; i < gw->ups.n; i++) {
        struct gh_upstream *up = &gw->ups.ups[i];
        char labels[256];
        snprintf(labels, sizeof labels, "upstream=\"%s\",model=\"%s\"", up->name, up->model);
        gh_metrics_gauge_func("gatehouse_upstream_up", labels,
                              "1 when the upstream is in rotation", m_up, up);
        gh_metrics_gauge_func("gatehouse_upstream_circuit_open", labels,
                              "1 while the upstream's circuit breaker is open", m_open, up);
        gh_metrics_gauge_func("gatehouse_upstream_active", labels, "calls in flight", m_active,
                              up);
        gh_metrics_counter_func("gatehouse_upstream_requests_total", labels, "calls started",
                                m_requests, up);
        gh_metrics_counter_func("gatehouse_upstream_failures_total", labels,
                                "failed calls (5xx, connection, broken stream, 401/402/403)",
                                m_failures, up);
        gh_metrics_counter_func("gatehouse_upstream_rate_limited_total", labels,
                                "429 answers (the upstream cooled down)", m_limited, up);
    }
}

/* The switch of the quotas to their failure mode and back, logged. */
static void on_cluster(bool up, void *data)
{
    static const char *const whats[] = {[GH_SHIELD_MODE_LOCAL] = "each node allows 1/nodes of each",
                                        [GH_SHIELD_MODE_OPEN] = "no quota",
                                        [GH_SHIELD_MODE_CLOSED] = "chat requests 503 busy"};
    struct gh_gateway *gw = data;
    struct gh_config *cfg = gh_server_config(gw->srv);
    if (up)
        gh_log(GH_LOG_INFO, "quota_shared", "chat quotas are counted in Redis again");
    else
        gh_log(GH_LOG_WARN, "quota_fallback",
               "chat quotas cannot be counted in Redis: [redis] quota_mode = %s (%s) until it "
               "answers",
               cfg->redis.quota_mode, whats[gh_shield_mode_parse(cfg->redis.quota_mode)]);
    gh_config_unref(cfg);
}

/* The quotas use the shield's Redis client, and its fallback counters. */
static void register_quota_fallbacks(struct gh_gateway *gw)
{
    gw->redis = gh_shield_cluster_redis();
    if (gw->redis)
        gh_shield_subscribe_cluster(on_cluster, gw);
}

static void prime_quota(uint64_t key_id, uint64_t user_id, uint64_t tokens, void *data)
{
    struct gh_gateway *gw = data;
    uint32_t day = gh_usage_today();
    if (key_id)
        gh_quota_prime(gw->quotas, GH_QUOTA_KEY, key_id, day, tokens);
    gh_quota_prime(gw->quotas, GH_QUOTA_USER, user_id, day, tokens);
}

int gh_gateway_init(struct gh_server *srv)
{
    struct gh_config *cfg = gh_server_config(srv);
    struct gh_gateway *gw = calloc(1, sizeof *gw);
    char err[1024] = "";
    int rc = GH_ENOMEM;
    if (!gw)
        goto fail;
    gw->srv = srv;
    gw->created = gh_wall_ms() / 1000;
    atomic_store(&gw->established_max_id, UINT64_MAX); /* until the store answers */
    struct gh_fairq_config fqc = {
        .queue_max = cfg->gateway.queue_max,
        .per_user = cfg->gateway.queue_per_user,
        .weights = {cfg->gateway.tier_weight_priority, cfg->gateway.tier_weight_established,
                    cfg->gateway.tier_weight_new},
        /* entries: every waiter's user, and the users in flight */
        .users = cfg->gateway.queue_max + 65536,
    };
    gw->fq = gh_fairq_new(&fqc);
    if (!gw->fq)
        goto fail;
    gw->breaker = (struct gh_breaker){cfg->gateway.breaker_failures, cfg->gateway.breaker_window_ms,
                                      cfg->gateway.breaker_open_ms, cfg->gateway.cooldown_ms};
    rc = gh_upstreams_load(cfg->gateway.upstreams_file, srv->envp ? srv->envp : NULL, &gw->ups,
                           err, sizeof err);
    if (rc)
        goto fail;
    rc = GH_ENOMEM;
    gw->quotas = gh_quota_table_new(cfg->gateway.quota_entries);
    if (!gw->quotas)
        goto fail;
    snprintf(gw->quota_path, sizeof gw->quota_path, "%s/quotas.json", cfg->server.data_dir);
    if (gh_quota_load(gw->quotas, gw->quota_path)) {
        snprintf(err, sizeof err, "%.900s: not a quota file (JSON object of overrides)", gw->quota_path);
        rc = GH_EINVAL;
        goto fail;
    }
    /* on a store other nodes write, the store's overrides win over the file */
    gw->quota_doc = gh_identity_share_doc("quotas", apply_quotas, gw->quotas);
    char path[4200];
    snprintf(path, sizeof path, "%s/usage.jsonl", cfg->server.data_dir);
    gw->usage = gh_usage_new(gh_identity_store(), path, 1u << 18, err, sizeof err);
    if (!gw->usage) {
        rc = GH_EIO;
        goto fail;
    }
    gh_usage_each(gw->usage, gh_usage_today(), prime_quota, gw);
    struct gh_route *r[6] = {
        gh_router_add(&srv->http->router, "GET", "/v1/models", models, gw),
        gh_router_add(&srv->http->router, "POST", "/v1/chat/completions", chat_completions, gw),
        gh_router_add(&srv->http->router, "GET", "/api/usage", usage_route, gw),
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/quotas", admin_quotas, gw),
        gh_router_add(&srv->http->admin_router, "PUT", "/admin/v1/quotas/{kind}/{id}", admin_quota_put,
                      gw),
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/upstreams", admin_upstreams, gw),
    };
    struct gh_route *rdel = gh_router_add(&srv->http->admin_router, "DELETE",
                                          "/admin/v1/quotas/{kind}/{id}", admin_quota_put, gw);
    /* the rest of the surface clients expect (issue 15 item 6) */
    struct gh_route *api[] = {
        gh_router_add(&srv->http->router, "GET", "/v1/models/{id}", model_one, gw),
        gh_router_add(&srv->http->router, "GET", "/v1/models/{org}/{id}", model_one, gw),
        gh_router_add(&srv->http->router, "GET", "/user/balance", balance, gw),
        gh_router_add(&srv->http->router, "POST", "/beta/completions", fim_completions, gw),
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(api); i++) {
        if (!api[i])
            rdel = NULL;
        else
            api[i]->cls = GH_CLASS_USER;
    }
    if (rdel)
        api[3]->body_max = cfg->gateway.body_max;
    for (size_t i = 0; i < GH_ARRAY_LEN(r); i++)
        if (!r[i])
            rdel = NULL;
    if (!rdel) {
        snprintf(err, sizeof err, "the route table is full");
        rc = GH_ETOOBIG;
        goto fail;
    }
    r[0]->cls = GH_CLASS_USER;
    r[1]->cls = GH_CLASS_USER;
    r[1]->body_max = cfg->gateway.body_max;
    r[2]->cls = GH_CLASS_USER;
    r[3]->cls = r[4]->cls = r[5]->cls = rdel->cls = GH_CLASS_OPS;
    rc = gh_server_add_worker_hook(srv, worker_init, worker_dispose, gw);
    if (rc) {
        snprintf(err, sizeof err, "too many worker hooks");
        goto fail;
    }
    register_metrics(gw);
    register_quota_fallbacks(gw);
    gh_log(GH_LOG_INFO, "gateway_start", "echo model %s, %u upstream(s)%s%s",
           cfg->gateway.echo ? "on" : "off", gw->ups.n, gw->ups.n ? " from " : "",
           gw->ups.n ? cfg->gateway.upstreams_file : "");
    gh_config_unref(cfg);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
fail:
    gh_log(GH_LOG_ERROR, "gateway_start", "the gateway cannot start: %s",
           err[0] ? err : "out of memory");
    fprintf(stderr, "gatehouse: gateway: %s\n", err[0] ? err : "out of memory");
    gh_config_unref(cfg);
    /* no worker ran: nothing else holds it (its routes die with the server) */
    if (gw)
        gateway_free(gw);
    return rc;
}
