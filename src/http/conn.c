/* This module implements connections (conn.h) and the response functions
 * of http.h.
 *
 * A connection is in one state at a time and, for the states that wait on
 * the client, in the matching list of its worker, ordered by when it
 * entered it; the worker's tick walks each list from the oldest and stops
 * at the first that is still in time, so deadline checks cost O(expired).
 * Reads land in the worker's scratch buffer; only bytes not yet parsed are
 * copied into the connection, so an idle keep-alive connection holds no
 * buffer at all. One request per connection is answered at a time;
 * pipelined requests wait in the input buffer (capped) and answers go out
 * in order. Signed-in users' and operators' requests are dispatched as
 * soon as they are complete, the others at the end of the loop's turn,
 * and new connections are accepted after them, a bounded number per turn
 * ("accepting, paced" below). */
#include "http/conn.h"

#include "core/log.h"
#include "http/parser.h"
#include "http/server.h"
#include "http/websec.h"
#include "http/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum conn_state { ST_HEADER, ST_BODY, ST_BUSY, ST_IDLE, ST_CLOSING };

/* Past this many bytes queued to a slow client, stop parsing new requests. */
#define WRITE_HIGH_MARK (256u << 10)
/* A stream's drain callback fires when the queue falls under this. */
#define WRITE_LOW_MARK (64u << 10)

/* the loop's turns (accepting, paced; should_park) */
#define ACCEPT_MIN     1
#define ACCEPT_START   16
#define ACCEPT_MAX     256
#define TURN_TARGET_US 100
/* how often a busy turn looks at signed-in users' connections (prio_check) */
#define PRIO_EVERY_NS 40000
/* a turn whose poll slept less than this found events waiting */
#define SATURATED_SLEEP_NS 20000

struct gh_conn {
    uv_tcp_t tcp;
    struct gh_worker *w;
    struct gh_list node;
    struct gh_list ready_node; /* in w->http->ready while its request waits for the turn's end */
    struct gh_list park_node;  /* in w->http->parked while its headers wait for the turn's end */
    uint64_t since_ms;
    uint64_t first_byte_ns;
    struct gh_reqparser parser;
    struct gh_http_req *req; /* being answered */
    struct gh_buf in;        /* received, not yet parsed */
    size_t write_pending;
    struct gh_addr addr;
    uint32_t nreq;
    uint8_t state;
    bool eof;
    bool read_paused;
    bool close_after;
    bool in_process;
    bool counted;      /* in the server's total */
    bool addr_counted; /* in the per-address table, under addr */
    bool expect_proxy; /* a trusted balancer: a PROXY header comes first */
    bool shared_addr;  /* past limits.max_conns_per_addr: credentials only (shared_admit) */
    bool shared_refused; /* refused by shared_admit (counted as per_addr) */
    bool continue_sent;
    bool shutting;
    bool got_bytes;
    bool unparked;  /* its headers' turn has come: on_headers goes on */
    bool linger;    /* refused mid-request: drain what the client still sends */
    bool peer_done; /* refused with its whole request read and Connection: close */
    bool prio;      /* in the worker's prio_ep: it has sent valid credentials */
    bool lingering; /* our side is shut; reading and discarding until EOF */
    uint32_t lingered; /* bytes discarded while lingering */
    /* the body being received (body_admit) */
    bool body_authed;         /* its headers carry valid credentials */
    bool body_capped;         /* its route's cap was cut to limits.body_max: no credentials */
    uint64_t body_charged;    /* bytes charged to srv->http->body_bytes, returned on leaving ST_BODY */
    uint64_t rate_mark_ms;    /* start of the current body-rate window */
    uint64_t rate_mark_bytes; /* body bytes at rate_mark_ms */
    const char *refuse_msg;   /* why on_headers refused (the parser has no message) */
    unsigned refuse_retry;    /* the Retry-After of a 429 from the headers (s) */
    /* an evicted session or key being read back before the body cap is set */
    void *cred_job;                       /* the look-up, until its wake or cancel */
    const struct gh_http_req *cred_asked; /* the request it was for (asked once) */
};

struct write_req {
    uv_write_t w;
    struct gh_conn *c;
    size_t len;
    char data[];
};

static void conn_close(struct gh_conn *c);
static void dispatch(struct gh_conn *c, struct gh_http_req *req);
static void on_turn_spin(uv_idle_t *h)
{
    (void)h; /* its being active is what counts: the poll does not block */
}

/* Queues node on list (w->http->ready or parked) for the turn's end; the
 * poll does not block while anything waits there. */
static void turn_queue(struct gh_worker *w, struct gh_list *list, struct gh_list *node)
{
    gh_list_push_back(list, node);
    uv_idle_start(&w->http->turn_spin, on_turn_spin); /* nothing when active */
}
static void process_input(struct gh_conn *c);
static void refuse_parsed(struct gh_conn *c, size_t avail);
static void maybe_continue(struct gh_conn *c);
static void enqueue(struct gh_conn *c, struct gh_http_req *req);
static void finish_request(struct gh_http_req *req);
static void account(struct gh_http_req *req, unsigned route_idx);
static unsigned route_index(struct gh_http_req *req);
static void resume_read(struct gh_conn *c);
static void prio_check(struct gh_worker *w);
static void refuse(struct gh_conn *c, int status, const char *msg);
static enum gh_refusal address_check(struct gh_worker *w, const struct gh_addr *a,
                                     bool *addr_counted, bool *shared);

/* ---- lists and states ---- */

static void body_release(struct gh_conn *c);

/* Which state may follow which. A connection starts in ST_IDLE before
 * its first set_state (to ST_HEADER, so that it is counted pending).
 *   IDLE   -> HEADER  the first bytes of a request
 *   HEADER -> BODY    headers complete and routed (a body may follow)
 *   HEADER -> BUSY    refused from its headers (400, 408, 429, 431)
 *   BODY   -> BUSY    complete and dispatched, or refused (408, 413, 503)
 *   BUSY   -> BUSY    dispatched at the turn's end after waiting ready
 *   BUSY   -> IDLE    answered, kept alive
 *   BUSY   -> BODY    only to linger after a refusal (reads discarded)
 *   any    -> CLOSING once; nothing follows CLOSING */
static inline bool state_may_follow(enum conn_state from, enum conn_state to, bool lingering)
{
    switch (to) {
    case ST_HEADER:
        return from == ST_IDLE;
    case ST_BODY:
        return from == ST_HEADER || (from == ST_BUSY && lingering);
    case ST_BUSY:
        return from == ST_HEADER || from == ST_BODY || from == ST_BUSY;
    case ST_IDLE:
        return from == ST_BUSY;
    case ST_CLOSING:
        return from != ST_CLOSING;
    }
    return false;
}

static void set_state(struct gh_conn *c, enum conn_state st, uint64_t now_ms)
{
    struct gh_worker *w = c->w;
    GH_ASSERT(state_may_follow((enum conn_state)c->state, st, c->lingering));
    if (c->state == ST_BODY && st != ST_BODY) {
        body_release(c); /* received, refused or closed: no longer in flight */
        if (gh_list_linked(&c->park_node))
            gh_list_remove(&c->park_node);
    }
    if (c->state == ST_HEADER && st != ST_HEADER) {
        w->http->npending--;
        GH_STAT_ADD(&w->stats.pending_headers, -1);
    } else if (c->state != ST_HEADER && st == ST_HEADER) {
        w->http->npending++;
        GH_STAT_ADD(&w->stats.pending_headers, 1);
    }
    if (gh_list_linked(&c->node))
        gh_list_remove(&c->node);
    c->state = (uint8_t)st;
    c->since_ms = now_ms;
    switch (st) {
    case ST_HEADER:
        gh_list_push_back(&w->http->conns_header, &c->node);
        break;
    case ST_BODY:
        gh_list_push_back(&w->http->conns_body, &c->node);
        break;
    case ST_BUSY:
        gh_list_push_back(&w->http->conns_busy, &c->node);
        break;
    case ST_IDLE:
        gh_list_push_back(&w->http->conns_idle, &c->node);
        break;
    default: break;
    }
}

/* ---- writing ---- */

static void maybe_close_after_write(struct gh_conn *c);

/* Closing right after refusing a request whose body is still arriving
 * would make the kernel answer the client's next bytes with a reset, and
 * a reset can destroy the refusal before the client reads it (clients that
 * send the whole body before reading, like the Python openai SDK, then see
 * a connection error instead of the 413). So, like nginx's lingering
 * close, read and discard after shutting our side, then close: for at
 * most limits.linger_time in all (nginx's lingering_time), at most
 * limits.linger_max bytes, and at most LINGER_IDLE_MS between two reads
 * (nginx's lingering_timeout), so a silent client does not hold it. */
#define LINGER_IDLE_MS 5000

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct gh_conn *c = sr->data;
    free(sr);
    if (c->state == ST_CLOSING)
        return;
    if (status == 0 && c->linger && !c->eof && c->w->cfg->limits.linger_time_ms &&
        c->w->cfg->limits.linger_max) {
        c->lingering = true;
        set_state(c, ST_BODY, uv_now(&c->w->loop)); /* the sweep ends it */
        c->rate_mark_ms = uv_now(&c->w->loop);      /* the last read, while lingering */
        if (c->read_paused) { /* refused while its reading waited (should_park, cred_wake) */
            c->read_paused = false;
            resume_read(c);
        }
        return;
    }
    conn_close(c);
}

static void maybe_close_after_write(struct gh_conn *c)
{
    if (!c->close_after || c->write_pending || c->req || c->shutting || c->state == ST_CLOSING)
        return;
    if (c->peer_done) {
        /* everything the client sent has been read and it asked to close:
         * close sends the answer's rest and a FIN as a shutdown would,
         * without a turn of the loop in between (a flood's refusals) */
        conn_close(c);
        return;
    }
    c->shutting = true;
    uv_shutdown_t *sr = malloc(sizeof *sr);
    if (!sr || uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown)) {
        free(sr);
        conn_close(c);
        return;
    }
    sr->data = c;
}

static void on_write(uv_write_t *wr, int status)
{
    struct write_req *r = (struct write_req *)wr;
    struct gh_conn *c = r->c;
    c->write_pending -= r->len;
    free(r);
    if (c->state == ST_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->req && c->req->streaming && c->req->on_drain && c->write_pending < WRITE_LOW_MARK)
        c->req->on_drain(c->req, c->req->cb_data);
    if (c->close_after) {
        maybe_close_after_write(c);
        return;
    }
    if (!c->req && c->write_pending < WRITE_HIGH_MARK)
        process_input(c);
}

/* Queues len bytes; copies what the kernel did not take at once. */
static int conn_write(struct gh_conn *c, const char *data, size_t len)
{
    if (c->state == ST_CLOSING || c->shutting)
        return GH_EIO;
    size_t off = 0;
    if (c->write_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n > 0)
            off = (size_t)n;
        else if (n < 0 && n != UV_EAGAIN)
            return GH_EIO;
    }
    if (off == len)
        return 0;
    struct write_req *r = malloc(sizeof *r + (len - off));
    if (!r)
        return GH_ENOMEM;
    r->c = c;
    r->len = len - off;
    memcpy(r->data, data + off, r->len);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)r->len);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        free(r);
        return GH_EIO;
    }
    c->write_pending += r->len;
    return 0;
}

/* ---- responses ---- */

const char *gh_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

bool gh_http_path_is_api(const char *path)
{
    return !strncmp(path, "/api/", 5) || !strcmp(path, "/api") || !strncmp(path, "/v1/", 4) ||
           !strcmp(path, "/v1") || !strncmp(path, "/admin/", 7) || !strcmp(path, "/healthz") ||
           !strncmp(path, "/beta/", 6) || !strcmp(path, "/user/balance"); /* DeepSeek's */
}

static const char *default_code(int status)
{
    switch (status) {
    case 400: return "invalid_request";
    case 401: return "unauthorized";
    case 402: return "insufficient_balance";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "body_too_large";
    case 415: return "unsupported_media_type";
    case 417: return "expectation_failed";
    case 422: return "invalid_parameter";
    case 429: return "rate_limited";
    case 431: return "headers_too_large";
    case 503: return "busy";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal_error" : "invalid_request";
    }
}

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void update_date(struct gh_worker *w)
{
    uint64_t now = gh_wall_ms() / 1000;
    if (now == w->http->date_sec)
        return;
    w->http->date_sec = now;
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(w->http->date_hdr, sizeof w->http->date_hdr, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
             &tm);
}

/* Writes the status line and the common headers into b. */
static void build_head(struct gh_http_req *req, struct gh_buf *b, int status,
                       const char *content_type)
{
    struct gh_conn *c = req->conn;
    if (c->w->stopping || c->eof)
        req->keep_alive = false;
    /* appends, not printf: this runs for every response */
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    gh_buf_append_str(b, req->http_minor ? "HTTP/1.1 " : "HTTP/1.0 ");
    gh_buf_append(b, code, 4);
    gh_buf_append_str(b, gh_http_reason(status));
    gh_buf_append(b, "\r\n", 2);
    gh_buf_append_str(b, c->w->http->date_hdr);
    gh_buf_append_str(b, "Server: gatehouse\r\n");
    if (content_type) {
        gh_buf_append_str(b, "Content-Type: ");
        gh_buf_append_str(b, content_type);
        gh_buf_append(b, "\r\n", 2);
    }
    if (req->keep_alive && !req->http_minor)
        gh_buf_append_str(b, "Connection: keep-alive\r\n");
    else if (!req->keep_alive)
        gh_buf_append_str(b, "Connection: close\r\n");
    if (req->id[0]) {
        gh_buf_append_str(b, "x-request-id: ");
        gh_buf_append_str(b, req->id);
        gh_buf_append(b, "\r\n", 2);
    }
    if (req->cfg && req->cfg->server.hsts_max_age_ms && !c->w->admin) {
        char hsts[80];
        int n = snprintf(hsts, sizeof hsts, "Strict-Transport-Security: max-age=%llu\r\n",
                         (unsigned long long)(req->cfg->server.hsts_max_age_ms / 1000));
        gh_buf_append(b, hsts, (size_t)n);
    }
    if (req->res_headers.len)
        gh_buf_append(b, req->res_headers.data, req->res_headers.len);
}

int gh_http_add_header(struct gh_http_req *req, const char *name, const char *fmt, ...)
{
    char value[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof value || strpbrk(value, "\r\n") || strpbrk(name, "\r\n: "))
        return GH_EINVAL;
    if (req->streaming)
        return GH_EINVAL; /* the head is written (or waiting, complete) */
    return gh_buf_printf(&req->res_headers, "%s: %s\r\n", name, value);
}

/* Frees a request whose client has gone (nothing more can be written). */
static void drop_request(struct gh_http_req *req)
{
    gh_http_req_free(req);
}

void gh_http_respond(struct gh_http_req *req, int status, const char *content_type,
                     const void *body, size_t len)
{
    GH_ASSERT(!req->responded);
    req->responded = true;
    req->status = status;
    if (!req->conn) {
        drop_request(req);
        return;
    }
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    /* assembled in the worker's buffer: conn_write copies what the kernel
     * does not take at once, so the block is free again when it returns */
    struct gh_buf b = req->worker->http->out;
    b.len = 0;
    b.cap = len + req->res_headers.len + 1024;
    build_head(req, &b, status, no_body ? NULL : content_type);
    if (!no_body) {
        char num[24];
        size_t i = sizeof num;
        size_t v = len;
        do {
            num[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        gh_buf_append_str(&b, "Content-Length: ");
        gh_buf_append(&b, num + i, sizeof num - i);
        gh_buf_append(&b, "\r\n", 2);
    }
    gh_buf_append(&b, "\r\n", 2);
    if (!no_body && !req->head && len)
        gh_buf_append(&b, body, len);
    req->bytes_out = b.len;
    /* counted before the bytes leave: a client holding its answer finds
     * it in /metrics and the access log, whatever the threads' timing */
    account(req, route_index(req));
    if (!b.data || conn_write(req->conn, b.data, b.len))
        req->keep_alive = false;
    if (b.alloc > (64u << 10))
        gh_buf_dispose(&b); /* keep small blocks only */
    req->worker->http->out = b;
    finish_request(req);
}

void gh_http_respond_json(struct gh_http_req *req, int status, const char *json, size_t len)
{
    gh_http_respond(req, status, "application/json", json, len);
}

void gh_http_respond_error_param(struct gh_http_req *req, int status, const char *code,
                                 const char *param, const char *message)
{
    struct gh_buf b;
    gh_buf_init(&b, 8192);
    if (!code)
        code = default_code(status);
    if (gh_http_path_is_api(req->path ? req->path : "/api")) {
        gh_buf_append_str(&b, "{\"error\":{\"message\":\"");
        gh_buf_append_json_str(&b, message, strlen(message));
        gh_buf_printf(&b, "\",\"type\":\"%s\",\"param\":", error_type(status));
        if (param) {
            gh_buf_append_str(&b, "\"");
            gh_buf_append_json_str(&b, param, strlen(param));
            gh_buf_append_str(&b, "\"");
        } else {
            gh_buf_append_str(&b, "null");
        }
        gh_buf_append_str(&b, ",\"code\":\"");
        gh_buf_append_json_str(&b, code, strlen(code));
        gh_buf_append_str(&b, "\"}}\n");
        gh_http_respond(req, status, "application/json", b.data, b.len);
    } else {
        gh_buf_printf(&b,
                      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<meta name=\"viewport\" content=\"width=device-width\">"
                      "<title>%d %s</title></head><body style=\"font-family:sans-serif;"
                      "max-width:40em;margin:4em auto\"><h1>%d %s</h1><p>",
                      status, gh_http_reason(status), status, gh_http_reason(status));
        gh_buf_append_html(&b, message, strlen(message));
        gh_buf_append_str(&b, "</p><p><a href=\"/\">gatehouse</a></p></body></html>\n");
        gh_http_respond(req, status, "text/html; charset=utf-8", b.data, b.len);
    }
    gh_buf_dispose(&b);
}

void gh_http_respond_error(struct gh_http_req *req, int status, const char *code,
                           const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gh_http_respond_error_param(req, status, code, NULL, msg);
}

void gh_http_set_callbacks(struct gh_http_req *req, gh_http_abort_cb on_abort,
                           gh_http_drain_cb on_drain, void *data)
{
    req->on_abort = on_abort;
    req->on_drain = on_drain;
    req->cb_data = data;
}

/* Streaming answers cost one write per piece, and on a busy CPU every write
 * wakes the client once more. So the head waits (in res_headers, whose
 * lines it already holds) and leaves with the first piece of body, and
 * the last piece leaves with the terminating chunk (gh_http_stream_end_with). */
void gh_http_stream_start(struct gh_http_req *req, int status, const char *content_type)
{
    GH_ASSERT(!req->responded && !req->streaming);
    req->streaming = true;
    req->status = status;
    if (!req->conn)
        return;
    struct gh_buf b;
    gh_buf_init(&b, req->res_headers.len + 1024);
    if (!req->http_minor)
        req->keep_alive = false; /* HTTP/1.0: the close ends the body */
    build_head(req, &b, status, content_type);
    if (req->http_minor)
        gh_buf_append_str(&b, "Transfer-Encoding: chunked\r\n");
    gh_buf_append(&b, "\r\n", 2);
    gh_buf_reset(&req->res_headers);
    if (!b.data || gh_buf_append(&req->res_headers, b.data, b.len))
        req->keep_alive = false;
    else
        req->head_pending = true;
    gh_buf_dispose(&b);
}

/* Writes the pending head (if any), data as one chunk (if len), and the
 * terminating chunk (if last), in one write. */
static int stream_send(struct gh_http_req *req, const void *data, size_t len, bool last)
{
    struct gh_buf b;
    gh_buf_init(&b, len + req->res_headers.len + 48);
    if (req->head_pending) {
        gh_buf_append(&b, req->res_headers.data, req->res_headers.len);
        req->head_pending = false;
        gh_buf_dispose(&req->res_headers);
    }
    if (len && !req->head) {
        if (req->http_minor) {
            char hdr[24];
            snprintf(hdr, sizeof hdr, "%zx\r\n", len);
            gh_buf_append_str(&b, hdr);
        }
        gh_buf_append(&b, data, len);
        if (req->http_minor)
            gh_buf_append(&b, "\r\n", 2);
    }
    if (last && req->http_minor && !req->head)
        gh_buf_append(&b, "0\r\n\r\n", 5);
    req->bytes_out += b.len;
    if (last)
        account(req, route_index(req)); /* before the last bytes: see gh_http_respond */
    int rc = 0;
    if (b.len)
        rc = b.data ? conn_write(req->conn, b.data, b.len) : GH_ENOMEM;
    gh_buf_dispose(&b);
    return rc;
}

int64_t gh_http_stream_write(struct gh_http_req *req, const void *data, size_t len)
{
    GH_ASSERT(req->streaming && !req->responded);
    if (!req->conn)
        return GH_EIO;
    if (!len && !req->head_pending)
        return (int64_t)req->conn->write_pending;
    int rc = stream_send(req, data, len, false);
    if (rc)
        return rc;
    return (int64_t)req->conn->write_pending;
}

void gh_http_stream_end_with(struct gh_http_req *req, const void *data, size_t len)
{
    GH_ASSERT(req->streaming && !req->responded);
    req->responded = true;
    if (!req->conn) {
        drop_request(req);
        return;
    }
    if (stream_send(req, data, len, true))
        req->keep_alive = false;
    finish_request(req);
}

void gh_http_stream_end(struct gh_http_req *req)
{
    gh_http_stream_end_with(req, NULL, 0);
}

/* ---- request lookups ---- */

const char *gh_http_header_get(const struct gh_http_req *req, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct gh_http_header *h = &req->headers[i];
        if (h->name_len == nl && !strncasecmp(h->name, name, nl)) {
            if (len)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f')
        return (c | 32) - 'a' + 10;
    return -1;
}

int gh_http_query_get(const struct gh_http_req *req, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = req->query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen >= nl && !strncmp(p, name, nl) && (plen == nl || p[nl] == '=')) {
            const char *v = plen == nl ? p + nl : p + nl + 1;
            size_t vlen = plen == nl ? 0 : plen - nl - 1, o = 0;
            for (size_t i = 0; i < vlen; i++) {
                char ch = v[i];
                int h1, h2;
                if (ch == '+')
                    ch = ' ';
                else if (ch == '%' && i + 2 < vlen && (h1 = hexdig(v[i + 1])) >= 0 &&
                         (h2 = hexdig(v[i + 2])) >= 0) {
                    ch = (char)(h1 * 16 + h2);
                    i += 2;
                }
                if (o + 1 >= outlen)
                    return GH_ETOOBIG;
                out[o++] = ch;
            }
            out[o] = '\0';
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return GH_ENOTFOUND;
}

bool gh_http_etag_matches(const struct gh_http_req *req, const char *etag)
{
    size_t len = 0;
    const char *h = gh_http_header_get(req, "if-none-match", &len);
    if (!h)
        return false;
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    size_t i = 0;
    while (i < len && (h[i] == ' ' || h[i] == '\t'))
        i++;
    if (len - i == 1 && h[i] == '*')
        return true;
    /* 1#entity-tag (RFC 9110 8.8.3): any malformed element makes the
     * header invalid, and an invalid header never matches */
    size_t el = strlen(etag);
    bool match = false, any = false;
    while (i < len) {
        if (h[i] == ' ' || h[i] == '\t' || h[i] == ',') {
            i++;
            continue;
        }
        if (h[i] == 'W' && i + 1 < len && h[i + 1] == '/')
            i += 2;
        if (i >= len || h[i] != '"')
            return false;
        size_t start = i++;
        while (i < len && h[i] != '"') {
            unsigned char c = (unsigned char)h[i++];
            if (c < 0x21 || c == 0x7f) /* etagc: %x21 / %x23-7E / obs-text */
                return false;
        }
        if (i++ >= len)
            return false; /* no closing quote */
        match = match || (i - start == el && !memcmp(h + start, etag, el));
        any = true;
        while (i < len && (h[i] == ' ' || h[i] == '\t'))
            i++;
        if (i < len && h[i] != ',')
            return false; /* a tag must end the element */
    }
    return any && match;
}

int gh_http_cookie_get(const struct gh_http_req *req, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct gh_http_header *h = &req->headers[i];
        if (h->name_len != 6 || strncasecmp(h->name, "cookie", 6))
            continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            if ((size_t)(stop - p) > nl && !strncmp(p, name, nl) && p[nl] == '=') {
                size_t vl = (size_t)(stop - p - nl - 1);
                if (vl + 1 > outlen)
                    return GH_ETOOBIG;
                memcpy(out, p + nl + 1, vl);
                out[vl] = '\0';
                return 0;
            }
            p = stop;
        }
    }
    return GH_ENOTFOUND;
}

/* ---- the request cycle ---- */

static void access_log(struct gh_http_req *req, uint64_t dur_us)
{
    if (!strcmp(req->cfg->log.access_log, "off"))
        return; /* nothing to format: the line would be dropped */
    struct gh_worker *w = req->worker;
    unsigned rate = req->cfg->log.access_rate;
    uint64_t sec = uv_now(&w->loop) / 1000;
    if (sec != w->http->access_log.window_sec) {
        w->http->access_log.window_sec = sec;
        w->http->access_log.count = 0;
    }
    unsigned sample = 1;
    if (w->http->access_log.count++ >= rate) {
        sample = req->cfg->log.access_sample;
        if (++w->http->access_log.skip < sample) {
            GH_STAT_ADD(&w->stats.access_sampled_out, 1);
            return;
        }
        w->http->access_log.skip = 0;
    }
    char ts[40], prefix[64];
    char line[1024];
    gh_addr_format_prefix(&req->client, prefix, sizeof prefix);
    struct gh_buf b;
    gh_buf_init(&b, sizeof line);
    gh_buf_printf(&b, "{\"ts\":\"%s\",\"worker\":%u,\"client\":\"%s\",\"method\":\"%s\",\"path\":\"",
                  gh_time_rfc3339(gh_wall_ms(), ts, sizeof ts), w->id, prefix,
                  req->method_name ? req->method_name : "-");
    const char *path = req->path ? req->path : "-";
    gh_buf_append_json_str(&b, path, GH_MIN(strlen(path), (size_t)256));
    gh_buf_printf(&b, "\",\"route\":\"%s\",\"status\":%d,\"bytes\":%llu,\"us\":%llu",
                  req->route ? req->route->pattern : "-", req->status,
                  (unsigned long long)req->bytes_out, (unsigned long long)dur_us);
    if (sample > 1)
        gh_buf_printf(&b, ",\"sample\":%u", sample);
    gh_buf_append_str(&b, "}\n");
    if (b.data)
        gh_log_access(b.data, b.len);
    gh_buf_dispose(&b);
}

static void account(struct gh_http_req *req, unsigned route_idx)
{
    uint64_t dur_us = (gh_now_ns() - req->start_ns) / 1000;
    gh_worker_stats_request(&req->worker->stats, route_idx, req->status, dur_us);
    if (req->cfg)
        access_log(req, dur_us);
}

static unsigned route_index(struct gh_http_req *req)
{
    const struct gh_router *r = req->worker->http->router;
    return req->route ? req->route->index : r->n; /* r->n = unmatched */
}

static void finish_request(struct gh_http_req *req)
{
    struct gh_conn *c = req->conn;
    c->req = NULL;
    if (!req->keep_alive)
        c->close_after = true;
    gh_http_req_free(req);
    if (c->state == ST_CLOSING)
        return;
    gh_reqparser_next(&c->parser);
    c->continue_sent = false;
    c->got_bytes = false;
    if (c->close_after) {
        maybe_close_after_write(c);
        return;
    }
    set_state(c, ST_IDLE, uv_now(&c->w->loop));
    if (c->read_paused && !c->eof) {
        c->read_paused = false;
        resume_read(c);
    }
    if (!c->in_process && c->write_pending < WRITE_HIGH_MARK)
        process_input(c);
}

/* ---- bodies being received ----
 *
 * A body costs memory from its first byte until the handler has it, and
 * the client decides how long that is. So a body larger than a header
 * block is charged to one process-wide budget (limits.body_memory) while
 * it is received: a declared Content-Length at once, before any of it is
 * read; a chunked body as its buffer grows. What does not fit is refused
 * 503 busy. Bodies whose headers carry no valid credentials may fill half
 * the budget at most, so anonymous clients cannot take it all from users.
 * Bodies up to header_max are not charged: they cost what a pending
 * header costs, and logins never wait on the budget. */

/* What the body buffer allocates to hold n bytes: gh_buf_reserve doubles
 * from 256 and never passes its cap + 1. */
static uint64_t body_alloc_for(uint64_t n, size_t cap)
{
    uint64_t a = 256;
    while (a < n + 1 && a < (uint64_t)cap + 1)
        a *= 2;
    return GH_MIN(a, (uint64_t)cap + 1);
}

/* Raises c's charge to total bytes. False (nothing charged) when the
 * budget cannot hold it. */
static bool body_charge(struct gh_conn *c, uint64_t total)
{
    struct gh_worker *w = c->w;
    const struct gh_config *cfg = w->cfg;
    if (w->admin || total <= c->body_charged || total <= cfg->limits.header_max)
        return true;
    uint64_t budget = c->body_authed ? cfg->limits.body_memory : cfg->limits.body_memory / 2;
    uint64_t add = total - c->body_charged;
    uint64_t after = atomic_fetch_add_explicit(&w->srv->http->body_bytes, add, memory_order_relaxed) + add;
    if (after > budget) {
        atomic_fetch_sub_explicit(&w->srv->http->body_bytes, add, memory_order_relaxed);
        return false;
    }
    c->body_charged = total;
    return true;
}

static void body_release(struct gh_conn *c)
{
    if (!c->body_charged)
        return;
    atomic_fetch_sub_explicit(&c->w->srv->http->body_bytes, c->body_charged, memory_order_relaxed);
    c->body_charged = 0;
}

static void pause_read(struct gh_conn *c)
{
    if (!c->read_paused) {
        c->read_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* The credentials look-up of body_admit or shared_admit is done, or
 * parked headers' turn has come (run_ready): the parser asks on_headers
 * again (a feed with no bytes), which may complete a request without a
 * body; else the bytes that arrived meanwhile are parsed and reading
 * resumes. */
static void cred_wake(void *arg)
{
    struct gh_conn *c = arg;
    c->cred_job = NULL;
    if (c->state == ST_CLOSING)
        return;
    size_t used = 0;
    enum gh_parse_result r = gh_reqparser_feed(&c->parser, "", 0, &used);
    if (r == GH_PARSE_ERROR) {
        refuse_parsed(c, c->in.len);
        return;
    }
    if (r == GH_PARSE_WAIT)
        return; /* asked to wait again */
    if (r == GH_PARSE_DONE) {
        /* a request without a body: what follows it waits for its answer */
        enqueue(c, gh_reqparser_take(&c->parser));
        return;
    }
    maybe_continue(c); /* its headers were let in: the body is wanted */
    if (c->in.len) {
        process_input(c);
    } else if (c->read_paused && !c->eof) {
        c->read_paused = false;
        resume_read(c);
    }
}

/* Sizes the allowance of req's body before any of it is read: a route's
 * cap above limits.body_max is for requests whose headers carry valid
 * credentials (the shield's check), others get limits.body_max; then a
 * declared length is charged. Starts the body-rate window. Returns 0, or
 * 413 or 503 for the parser to refuse with (c->refuse_msg says why). */
static int body_admit(struct gh_conn *c, struct gh_http_req *req)
{
    struct gh_worker *w = c->w;
    struct gh_server *srv = w->srv;
    const struct gh_config *cfg = w->cfg;
    c->body_authed = false;
    c->body_capped = false;
    c->body_charged = 0;
    c->rate_mark_ms = uv_now(&w->loop);
    c->rate_mark_bytes = 0;
    if (w->admin)
        return 0; /* the admin listener: private, token-holders only */
    if (req->body_max > cfg->limits.body_max) {
        c->body_authed = srv->http->credentials && srv->http->credentials(req, srv->http->credentials_data);
        /* a body that needs the large cap, from credentials the cache may
         * have evicted: read them back first, so an existing user is never
         * refused for the cache's sake. Reading stops meanwhile. */
        bool large = req->content_length == UINT64_MAX ||
                     req->content_length > cfg->limits.body_max;
        if (!c->body_authed && large && c->cred_asked != req && srv->http->credentials_fetch) {
            c->cred_asked = req;
            if (!srv->http->credentials_fetch(req, cred_wake, c, &c->cred_job,
                                        srv->http->credentials_data)) {
                pause_read(c);
                return GH_HEADERS_WAIT;
            }
        }
        if (!c->body_authed) {
            req->body_max = cfg->limits.body_max;
            c->body_capped = true;
        }
    }
    if (req->content_length == UINT64_MAX || req->content_length > req->body_max)
        return 0; /* chunked: charged as it grows; too large: the parser's 413 */
    if (!body_charge(c, body_alloc_for(req->content_length, req->body_max))) {
        c->refuse_msg = "the server is receiving too many request bodies; retry shortly";
        return 503;
    }
    return 0;
}

/* A request on a connection past limits.max_conns_per_addr (shared
 * address): served only when its headers carry valid credentials, read
 * back first when the cache may have evicted them. 0, GH_HEADERS_WAIT, or
 * 429 for the parser to refuse with. */
static int shared_admit(struct gh_conn *c, struct gh_http_req *req)
{
    struct gh_server *srv = c->w->srv;
    if (srv->http->credentials && srv->http->credentials(req, srv->http->credentials_data))
        return 0;
    if (c->cred_asked != req && srv->http->credentials_fetch) {
        c->cred_asked = req;
        if (!srv->http->credentials_fetch(req, cred_wake, c, &c->cred_job, srv->http->credentials_data)) {
            pause_read(c);
            return GH_HEADERS_WAIT;
        }
    }
    c->shared_refused = true;
    c->refuse_retry = 1;
    return 429;
}

/* The work of the loop's current turn so far, in µs: the wall time since
 * the last turn's end less the time the poll slept meanwhile. */
static uint64_t turn_busy_us(struct gh_worker *w, uint64_t now_ns, uint64_t *idle_ns)
{
    uint64_t idle = uv_metrics_idle_time(&w->loop);
    uint64_t span = now_ns - w->http->turn_mark_ns, slept = idle - w->http->turn_idle_mark_ns;
    if (idle_ns)
        *idle_ns = idle;
    return (span - GH_MIN(span, slept)) / 1000;
}

/* Whether req's headers wait for the turn's end: once the turn has done
 * TURN_TARGET_US of work, a request without valid credentials and not
 * for an operator route is neither checked by the shield nor refused nor
 * read further in this turn (its connection stops reading). So under a
 * flood the reads of a turn cost a parse each past the budget, not a
 * refusal's writes and close, and a user's request in the same poll waits
 * behind that much. run_ready takes them up in arrival order. */
static bool should_park(struct gh_conn *c, struct gh_http_req *req)
{
    struct gh_worker *w = c->w;
    struct gh_server *srv = w->srv;
    if (w->admin || (req->route && req->route->cls == GH_CLASS_OPS))
        return false;
    if (gh_list_linked(&c->park_node))
        return true; /* asked again before its turn came */
    if (turn_busy_us(w, uv_hrtime(), NULL) <= TURN_TARGET_US)
        return false;
    if (srv->http->credentials && srv->http->credentials(req, srv->http->credentials_data))
        return false;
    GH_STAT_ADD(&w->stats.parked, 1);
    pause_read(c);
    turn_queue(w, &w->http->parked, &c->park_node);
    return true;
}

static int on_headers(struct gh_http_req *req, void *data)
{
    struct gh_conn *c = data;
    struct gh_worker *w = c->w;
    req->worker = w;
    req->conn = c;
    req->client = c->addr;
    if (!req->cfg) /* asked again after GH_HEADERS_WAIT: one reference */
        req->cfg = gh_config_ref(w->cfg);
    req->start_ns = c->first_byte_ns;
    req->body_max = w->cfg->limits.body_max;
    char allow[128];
    const struct gh_route *rt = NULL;
    enum gh_match m = gh_router_match(w->http->router, req->method, req->path, &req->arena, &rt,
                                      req->params, &req->nparams, allow, sizeof allow);
    if (m == GH_MATCH_OK) {
        req->route = rt;
        if (rt->body_max)
            req->body_max = rt->body_max;
    } else if (m == GH_MATCH_BAD_METHOD) {
        /* remembered for dispatch; the body (capped) is read first so the
         * connection stays usable (asked again after GH_HEADERS_WAIT: once) */
        if (req->status != 405)
            gh_http_add_header(req, "Allow", "%s", allow);
        req->status = 405;
    } else {
        req->status = 404;
    }
    if (c->state == ST_HEADER)
        set_state(c, ST_BODY, uv_now(&w->loop));
    if (c->state != ST_BODY)
        return 0;
    if (c->unparked)
        c->unparked = false;
    else if (should_park(c, req))
        return GH_HEADERS_WAIT;
    if (c->shared_addr && !w->admin) {
        int rc = shared_admit(c, req);
        if (rc)
            return rc;
    }
    /* refused already by its class's aggregate limits: answered from the
     * headers, the body neither read nor parsed */
    struct gh_server *srv = w->srv;
    bool has_body = req->content_length != UINT64_MAX
                        ? req->content_length > 0
                        : gh_http_header_get(req, "transfer-encoding", NULL) != NULL;
    if (m == GH_MATCH_OK && !w->admin && has_body && srv->http->header_filter &&
        srv->http->header_filter(req, &c->refuse_retry, srv->http->header_filter_data) == 429) {
        c->refuse_msg = "too many requests; retry later";
        return 429;
    }
    return body_admit(c, req);
}

/* API answers carry x-request-id (as OpenAI's do): "req_" and 16 hex
 * digits of 64 random bits, so ids neither collide nor tell how many
 * requests the service answers. The bits come from the worker's buffer of
 * CSPRNG output, refilled every GH_RID_BUF / 8 ids (one system call per
 * refill, not per request). */
static void assign_request_id(struct gh_http_req *req)
{
    if (req->id[0] || !req->path ||
        (strncmp(req->path, "/v1/", 4) && strncmp(req->path, "/api/", 5) &&
         strncmp(req->path, "/beta/", 6) && strcmp(req->path, "/user/balance")))
        return;
    struct gh_worker *w = req->worker;
    if (w->http->rid_left < 8) {
        randombytes_buf(w->http->rid_buf, sizeof w->http->rid_buf);
        w->http->rid_left = sizeof w->http->rid_buf;
    }
    w->http->rid_left -= 8;
    uint8_t *r = w->http->rid_buf + w->http->rid_left;
    static const char hex[] = "0123456789abcdef";
    char *o = req->id;
    memcpy(o, "req_", 4);
    o += 4;
    for (int k = 0; k < 8; k++) {
        *o++ = hex[r[k] >> 4];
        *o++ = hex[r[k] & 0xf];
    }
    *o = '\0';
    sodium_memzero(r, 8); /* an id is drawn once */
}

static void dispatch(struct gh_conn *c, struct gh_http_req *req)
{
    struct gh_worker *w = c->w;
    assign_request_id(req);
    c->cred_asked = NULL;
    c->req = req;
    c->nreq++;
    if (c->nreq >= w->cfg->limits.requests_per_conn || w->stopping || c->eof)
        req->keep_alive = false;
    set_state(c, ST_BUSY, uv_now(&c->w->loop));
    if (req->status == 405) {
        req->status = 0;
        gh_http_respond_error(req, 405, "method_not_allowed", "method %s is not allowed on %s",
                              req->method_name, req->path);
    } else if (!req->route) {
        req->status = 0;
        gh_http_respond_error(req, 404, "not_found", "no such resource: %s", req->path);
    } else if (!w->admin && !gh_websec_check(req)) {
        return; /* cross-site or not JSON: answered before anything is counted */
    } else if (w->http->router->filter &&
               !w->http->router->filter(req, w->http->router->filter_data)) {
        return; /* the listener's filter answered */
    } else {
        req->route->handler(req);
    }
}

/* n bytes as a person writes a limit: "1 MiB", "64 KiB", "1000 bytes". */
static void size_words(char *out, size_t cap, size_t n)
{
    if (n && n % (1u << 20) == 0)
        snprintf(out, cap, "%zu MiB", n >> 20);
    else if (n && n % 1024 == 0)
        snprintf(out, cap, "%zu KiB", n >> 10);
    else
        snprintf(out, cap, "%zu bytes", n);
}

/* A complete request: one with valid credentials (class user) or for an
 * operator route is dispatched at once, from the read that completed it;
 * the others wait for the end of the loop's turn (on_turn_end). So a
 * signed-in user's request waits behind no anonymous request of the same
 * turn, and behind at most the rest of the turn's reads, which the accept
 * budget bounds. The connection is busy from now on: it parses nothing
 * more and no deadline of the client's applies. */
static void enqueue(struct gh_conn *c, struct gh_http_req *req)
{
    struct gh_worker *w = c->w;
    struct gh_server *srv = w->srv;
    c->req = req;
    set_state(c, ST_BUSY, uv_now(&w->loop));
    bool ops = w->admin || (req->route && req->route->cls == GH_CLASS_OPS);
    bool user = !ops && req->route && srv->http->credentials &&
                srv->http->credentials(req, srv->http->credentials_data);
    if (user && !c->prio && w->http->prio_ep >= 0) {
        /* its next requests are looked for during busy turns too */
        uv_os_fd_t fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        if (!uv_fileno((uv_handle_t *)&c->tcp, &fd) &&
            !epoll_ctl(w->http->prio_ep, EPOLL_CTL_ADD, fd, &ev)) {
            c->prio = true;
            w->http->nprio++;
        }
    } else if (!user && !ops && c->prio) {
        /* priority is for requests with credentials only */
        uv_os_fd_t fd;
        if (!uv_fileno((uv_handle_t *)&c->tcp, &fd))
            epoll_ctl(w->http->prio_ep, EPOLL_CTL_DEL, fd, NULL);
        c->prio = false;
        w->http->nprio--;
    }
    if (ops || user) {
        dispatch(c, req);
        return;
    }
    turn_queue(w, &w->http->ready, &c->ready_node);
}

/* Answers a request the parser refused, then closes. */
static void refuse(struct gh_conn *c, int status, const char *msg)
{
    struct gh_worker *w = c->w;
    bool no_cred = status == 413 && c->body_capped && c->state == ST_BODY;
    enum gh_refusal why = status == 431   ? GH_REFUSE_HEADER_TOO_LARGE
                          : no_cred       ? GH_REFUSE_BODY_NO_CREDENTIALS
                          : status == 413 ? GH_REFUSE_BODY_TOO_LARGE
                          : status == 503 ? GH_REFUSE_BODY_MEMORY
                          : status == 408 ? (c->state == ST_BODY ? GH_REFUSE_BODY_TIMEOUT
                                                                 : GH_REFUSE_HEADER_TIMEOUT)
                                          : GH_REFUSE_BAD_REQUEST;
    if (c->shared_refused)
        why = GH_REFUSE_PER_ADDR;
    if (status != 429 || c->shared_refused) /* a limiter's 429 is counted by the shield */
        GH_STAT_ADD(&w->stats.refused[why], 1);
    char why_msg[128];
    if (no_cred) {
        snprintf(why_msg, sizeof why_msg,
                 "request body too large: without valid credentials the limit is %zu bytes",
                 w->cfg->limits.body_max);
        msg = why_msg;
    } else if (c->shared_refused) {
        snprintf(why_msg, sizeof why_msg,
                 "too many connections from your address (more than %u): beyond that only "
                 "signed-in requests are served",
                 w->cfg->limits.max_conns_per_addr);
        msg = why_msg;
    } else if (status == 429) {
        snprintf(why_msg, sizeof why_msg, "too many requests; retry in %u second%s",
                 c->refuse_retry, c->refuse_retry == 1 ? "" : "s");
        msg = why_msg;
    } else if (c->refuse_msg) {
        msg = c->refuse_msg;
    }
    bool name_cap = status == 413 && !no_cred && !c->refuse_msg;
    c->refuse_msg = NULL;
    c->linger = !c->peer_done;
    struct gh_http_req *req = gh_reqparser_take(&c->parser);
    if (!req)
        req = gh_http_req_new();
    if (!req) {
        conn_close(c);
        return;
    }
    if (name_cap && req->body_max) { /* the parser's 413: the route's cap, named */
        char size[32];
        size_words(size, sizeof size, req->body_max);
        snprintf(why_msg, sizeof why_msg, "request body too large: the limit for this route is %s",
                 size);
        msg = why_msg;
    }
    if (!req->worker) {
        req->worker = w;
        req->conn = c;
        req->client = c->addr;
        req->cfg = gh_config_ref(w->cfg);
        req->start_ns = c->first_byte_ns ? c->first_byte_ns : gh_now_ns();
    }
    req->http_minor = 1;
    req->head = false;
    req->keep_alive = false;
    req->responded = false;
    req->streaming = false;
    gh_buf_reset(&req->res_headers);
    if (status == 503) /* the body budget frees as bodies finish or stall out */
        gh_http_add_header(req, "Retry-After", "%llu",
                           (unsigned long long)GH_MAX(1, w->cfg->limits.body_rate_window_ms / 1000));
    if (status == 429)
        gh_http_add_header(req, "Retry-After", "%u", c->refuse_retry);
    else
        req->route = NULL; /* counted as unmatched */
    assign_request_id(req);
    c->cred_asked = NULL;
    c->req = req;
    set_state(c, ST_BUSY, uv_now(&c->w->loop));
    gh_http_respond_error(req, status, c->shared_refused ? "too_many_connections" : NULL, "%s",
                          msg ? msg : gh_http_reason(status));
}

/* The body is wanted: a client waiting for 100 Continue gets it now. */
static void maybe_continue(struct gh_conn *c)
{
    struct gh_http_req *pr = c->parser.req;
    if (pr && pr->expect_continue && !c->continue_sent && gh_reqparser_in_body(&c->parser)) {
        c->continue_sent = true;
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
}

/* Answers the request the parser refused, with avail bytes of it in hand
 * after the point it stopped at. A request that said Connection: close
 * and whose whole body is in hand has nothing more to send: no lingering,
 * and the connection closes as soon as the answer is written. */
static void refuse_parsed(struct gh_conn *c, size_t avail)
{
    const struct gh_http_req *pr = c->parser.req;
    c->peer_done =
        pr && !pr->keep_alive && pr->content_length != UINT64_MAX && pr->content_length <= avail;
    refuse(c, c->parser.error_status, c->parser.error_msg);
}

/* Parses as much of data as one request at a time allows; returns bytes
 * used. */
static size_t parse(struct gh_conn *c, const char *data, size_t len, uint64_t now_ns)
{
    size_t used_total = 0;
    while (len > 0 && !c->req && !c->cred_job && c->state != ST_CLOSING && !c->close_after &&
           c->write_pending < WRITE_HIGH_MARK) {
        if (c->state == ST_IDLE) {
            set_state(c, ST_HEADER, uv_now(&c->w->loop));
            c->first_byte_ns = now_ns;
        } else if (!c->got_bytes) {
            c->first_byte_ns = now_ns;
        }
        c->got_bytes = true;
        size_t used = 0;
        enum gh_parse_result r = gh_reqparser_feed(&c->parser, data, len, &used);
        data += used;
        len -= used;
        used_total += used;
        if (r == GH_PARSE_ERROR) {
            refuse_parsed(c, len);
            return used_total + len; /* the rest is discarded with the connection */
        }
        if (r == GH_PARSE_DONE) {
            enqueue(c, gh_reqparser_take(&c->parser));
            continue;
        }
        if (r == GH_PARSE_WAIT)
            break; /* cred_wake goes on */
        /* a chunked body is charged as its buffer grows */
        if (c->state == ST_BODY && c->parser.req && !body_charge(c, c->parser.req->body.alloc)) {
            refuse(c, 503, "the server is receiving too many request bodies; retry shortly");
            return used_total + len;
        }
        maybe_continue(c);
    }
    return used_total;
}

static void process_input(struct gh_conn *c)
{
    if (c->in_process || !c->in.len)
        return;
    c->in_process = true;
    size_t used = parse(c, c->in.data, c->in.len, gh_now_ns());
    if (c->state != ST_CLOSING) {
        gh_buf_consume(&c->in, used);
        if (!c->in.len)
            gh_buf_dispose(&c->in);
    }
    c->in_process = false;
    if (c->state == ST_CLOSING)
        return;
    if (c->eof && !c->req && !c->in.len) {
        c->close_after = true;
        maybe_close_after_write(c);
    } else if (c->read_paused && !c->eof && !c->req && !c->cred_job &&
               !gh_list_linked(&c->park_node) && c->in.len < c->w->cfg->limits.pipeline_max) {
        /* the backlog that paused reading has been worked off */
        c->read_paused = false;
        resume_read(c);
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct gh_conn *c = h->data;
    buf->base = c->w->http->scratch;
    buf->len = c->w->http->scratch_len;
}

/* Reads the PROXY header of a connection from a trusted balancer, then
 * applies the address checks to the client it reports, as accept does for
 * direct clients. */
static void read_proxy_header(struct gh_conn *c, const char *data, size_t len, size_t cap)
{
    struct gh_worker *w = c->w;
    if (!c->in.cap)
        gh_buf_init(&c->in, cap);
    if (gh_buf_append(&c->in, data, len)) {
        conn_close(c);
        return;
    }
    struct gh_proxy_result pr;
    enum gh_proxy_status st = gh_proxy_parse((const uint8_t *)c->in.data, c->in.len, &pr);
    if (st == GH_PROXY_NEED_MORE && c->in.len < GH_PROXY_MAX)
        return;
    if (st != GH_PROXY_DONE) {
        GH_STAT_ADD(&w->stats.refused[GH_REFUSE_BAD_REQUEST], 1);
        conn_close(c);
        return;
    }
    c->expect_proxy = false;
    if (pr.has_source)
        c->addr = pr.src;
    enum gh_refusal why = address_check(w, &c->addr, &c->addr_counted, &c->shared_addr);
    if (why != GH_REFUSE_COUNT) {
        GH_STAT_ADD(&w->stats.refused[why], 1);
        conn_close(c);
        return;
    }
    gh_buf_consume(&c->in, pr.consumed);
    if (c->in.len)
        process_input(c);
    else
        gh_buf_dispose(&c->in);
}

static void read_in(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gh_conn *c = s->data;
    if (nread == 0 || c->state == ST_CLOSING)
        return;
    if (c->lingering) {
        size_t cap = c->w->cfg->limits.linger_max;
        c->lingered += nread > 0 ? (uint32_t)GH_MIN((size_t)nread, cap) : 0;
        c->rate_mark_ms = uv_now(&c->w->loop);
        if (nread < 0 || c->lingered >= cap)
            conn_close(c);
        return;
    }
    if (c->linger && c->close_after && nread > 0)
        return; /* refused: what follows is discarded until our side is shut */
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->eof = true;
        uv_read_stop(s);
        if (c->req) {
            /* the client has gone while its answer was pending */
            if (c->req->on_abort)
                conn_close(c);
            else
                c->req->keep_alive = false;
            return;
        }
        if (gh_reqparser_in_headers(&c->parser) || gh_reqparser_in_body(&c->parser)) {
            conn_close(c); /* a request cut short: no one to answer */
            return;
        }
        c->close_after = true;
        maybe_close_after_write(c);
        return;
    }
    size_t cap = c->w->cfg->limits.pipeline_max + c->w->cfg->limits.header_max;
    if (c->expect_proxy) {
        read_proxy_header(c, buf->base, (size_t)nread, cap);
        return;
    }
    if (!c->in.len && !c->req && !c->in_process) {
        /* fast path: parse straight from the scratch buffer */
        c->in_process = true;
        size_t used = parse(c, buf->base, (size_t)nread, gh_now_ns());
        c->in_process = false;
        if (c->state == ST_CLOSING)
            return;
        if (used < (size_t)nread) {
            gh_buf_init(&c->in, cap);
            if (gh_buf_append(&c->in, buf->base + used, (size_t)nread - used)) {
                conn_close(c);
                return;
            }
        }
    } else {
        if (!c->in.cap)
            gh_buf_init(&c->in, cap);
        if (gh_buf_append(&c->in, buf->base, (size_t)nread)) {
            conn_close(c);
            return;
        }
        if (!c->req)
            process_input(c);
    }
    if (c->state == ST_CLOSING)
        return;
    if (c->in.len >= c->w->cfg->limits.pipeline_max && !c->read_paused) {
        c->read_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* libuv's read callback. A connection closed by read_in is freed only
 * by its close callback, at the loop's closing phase: c->w still holds. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gh_conn *c = s->data;
    read_in(s, nread, buf);
    if (!c->prio)
        prio_check(c->w);
}

/* ---- signed-in users first, within a turn ----
 *
 * A turn under a flood is up to TURN_TARGET_US of strangers' work, plus a
 * read and a parse for each of the poll's other events; a user's request
 * read in that poll waited for all of it. A connection that has sent valid
 * credentials is also in the worker's prio_ep (edge-triggered), and while
 * a turn is busy, every PRIO_EVERY_NS of its work (after a stranger's read,
 * a queued request, a parked one taken up, an accept) prio_check asks that
 * set, without waiting, whether one has bytes: it is read and served at
 * once. libuv's own poll (level-triggered) then finds it drained. */

/* Reads c as libuv would, if it waits for its next request with nothing
 * buffered; anything else is left to the loop. */
static void prio_read(struct gh_conn *c)
{
    if (c->state != ST_IDLE || c->read_paused || c->eof || c->lingering || c->linger ||
        c->close_after || c->in_process || c->req || c->in.len || c->expect_proxy)
        return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd))
        return;
    uv_buf_t buf;
    on_alloc((uv_handle_t *)&c->tcp, 0, &buf);
    ssize_t n;
    do
        n = read(fd, buf.base, buf.len);
    while (n < 0 && errno == EINTR);
    if (n > 0) { /* an end or an error the loop's own read finds too */
        GH_STAT_ADD(&c->w->stats.prio_reads, 1);
        read_in((uv_stream_t *)&c->tcp, n, &buf);
    }
}

static void prio_check(struct gh_worker *w)
{
    struct gh_http_worker *h = w->http;
    if (!h->nprio || h->in_prio) /* no user connection: nothing to ask */
        return;
    uint64_t now = uv_hrtime();
    if (now - h->prio_mark_ns < PRIO_EVERY_NS || turn_busy_us(w, now, NULL) < PRIO_EVERY_NS / 1000)
        return;
    h->prio_mark_ns = now;
    /* one at a time, used at once: a closed descriptor leaves the set by
     * itself (no connection's descriptor is ever duplicated), so the
     * pointer is that of a live connection, and none is kept while
     * serving it could close another */
    struct epoll_event ev;
    if (epoll_wait(h->prio_ep, &ev, 1, 0) != 1)
        return;
    h->in_prio = true;
    prio_read(ev.data.ptr);
    h->in_prio = false;
}

static void resume_read(struct gh_conn *c)
{
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- opening and closing ---- */

static void on_closed(uv_handle_t *h)
{
    struct gh_conn *c = h->data;
    gh_reqparser_dispose(&c->parser);
    gh_buf_dispose(&c->in);
    free(c);
}

static void conn_close(struct gh_conn *c)
{
    if (c->state == ST_CLOSING)
        return;
    struct gh_worker *w = c->w;
    if (c->cred_job) {
        w->srv->http->credentials_cancel(c->cred_job);
        c->cred_job = NULL;
    }
    set_state(c, ST_CLOSING, 0);
    w->http->nconns--;
    w->http->nprio -= c->prio; /* its descriptor leaves the set as it closes */
    GH_STAT_ADD(&w->stats.conns_open, -1);
    if (c->counted)
        atomic_fetch_sub_explicit(&w->srv->conns_total, 1, memory_order_relaxed);
    if (c->addr_counted)
        gh_addrtab_release(w->srv->addrs, &c->addr);
    struct gh_http_req *req = c->req;
    c->req = NULL;
    if (req && gh_list_linked(&c->ready_node)) {
        /* queued for the turn's end: no handler has seen it */
        gh_list_remove(&c->ready_node);
        account(req, route_index(req));
        gh_http_req_free(req);
    } else if (req) {
        /* the answer is still pending: the handler finishes into the void */
        account(req, route_index(req));
        req->conn = NULL;
        req->aborted = true;
        if (req->on_abort) {
            req->on_abort(req, req->cb_data);
            gh_http_req_free(req);
        } else if (req->responded) {
            gh_http_req_free(req);
        }
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- accepting, paced ----
 *
 * libuv accepts until EAGAIN in one go, so under a flood of new
 * connections a turn of the loop went to accepting and answering them
 * while the requests of established clients waited. Here the listening
 * socket is only polled (level-triggered); the accepts happen at the end
 * of the turn, after the reads of established connections and the
 * requests they completed, and at most accept_budget of them. The budget
 * is halved after a turn that took more than TURN_TARGET_US of work and
 * grows by a quarter after a turn within it that used all of it (a
 * backlog is waiting): so a user's request waits behind about one turn's
 * worth of new-connection work, whatever the flood; the kernel's backlog
 * holds the rest, as it does for nginx with multi_accept off. */

/* Whether an address may connect: the checks made before anything is
 * allocated for a connection (for a direct client at accept, for a
 * balancer's client once its PROXY header has told who it is). Returns
 * GH_REFUSE_COUNT to go on, else why it is refused; on success the
 * address is counted in the per-address table (*addr_counted), and
 * *shared says it has more than limits.max_conns_per_addr connections:
 * one address of many users (carrier-grade NAT), whose connections past
 * that cap serve requests with valid credentials only (shared_admit). */
static enum gh_refusal address_check(struct gh_worker *w, const struct gh_addr *a,
                                     bool *addr_counted, bool *shared)
{
    struct gh_server *srv = w->srv;
    const struct gh_config *cfg = w->cfg;
    *addr_counted = false;
    *shared = false;
    if (srv->http->accept_filter && !srv->http->accept_filter(a, srv->http->accept_filter_data))
        return GH_REFUSE_BLOCKED;
    unsigned cap = GH_MAX(cfg->limits.max_conns_per_addr, cfg->limits.max_conns_per_shared_addr);
    unsigned n = gh_addrtab_acquire(srv->addrs, a, GH_MIN(cap, cfg->limits.max_conns));
    if (!n)
        return GH_REFUSE_PER_ADDR;
    *addr_counted = true;
    *shared = n > cfg->limits.max_conns_per_addr;
    return GH_REFUSE_COUNT;
}

/* Sets up a connection for fd, accepted from ss. Nothing is allocated for
 * a refused address: its socket is closed at once. */
static void accept_fd(struct gh_worker *w, int fd, const struct sockaddr_storage *ss)
{
    const struct gh_config *cfg = w->cfg;
    struct gh_server *srv = w->srv;
    struct gh_addr a;
    gh_addr_from_sockaddr(ss, &a);
    bool expect_proxy = false, counted = false, addr_counted = false, shared = false;
    enum gh_refusal why = GH_REFUSE_COUNT;
    if (!w->admin) {
        /* a trusted balancer speaks for many clients: the address checks
         * wait for the client address its PROXY header reports */
        expect_proxy = srv->http->proxy_trusted && srv->http->proxy_trusted(&a, srv->http->proxy_trusted_data);
        if (!expect_proxy)
            why = address_check(w, &a, &addr_counted, &shared);
        if (why == GH_REFUSE_COUNT) {
            unsigned total = atomic_fetch_add_explicit(&srv->conns_total, 1, memory_order_relaxed);
            counted = true;
            if (total >= cfg->limits.max_conns)
                why = GH_REFUSE_MAX_CONNS;
        }
    }
    struct gh_conn *c = NULL;
    if (why == GH_REFUSE_COUNT) {
        c = calloc(1, sizeof *c);
        if (c && uv_tcp_init(&w->loop, &c->tcp)) {
            free(c);
            c = NULL;
        }
        if (c && uv_tcp_open(&c->tcp, fd)) {
            uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
            c = NULL;
        }
    } else {
        GH_STAT_ADD(&w->stats.refused[why], 1);
    }
    if (!c) {
        if (counted)
            atomic_fetch_sub_explicit(&srv->conns_total, 1, memory_order_relaxed);
        if (addr_counted)
            gh_addrtab_release(srv->addrs, &a);
        close(fd);
        return;
    }
    c->addr = a;
    c->expect_proxy = expect_proxy;
    c->counted = counted;
    c->addr_counted = addr_counted;
    c->shared_addr = shared;
    if (!w->admin) {
        /* the slowloris guard: room for a new connection is made by closing
         * the one that has waited longest without sending its headers */
        while (w->http->npending >= w->http->pending_cap) {
            struct gh_list *oldest = gh_list_first(&w->http->conns_header);
            if (!oldest)
                break;
            GH_STAT_ADD(&w->stats.refused[GH_REFUSE_PENDING_EVICTED], 1);
            conn_close(GH_CONTAINER_OF(oldest, struct gh_conn, node));
        }
    }
    if (!w->http->date_sec)
        update_date(w);
    c->w = w;
    c->tcp.data = c;
    gh_list_init(&c->node);
    gh_list_init(&c->ready_node);
    gh_list_init(&c->park_node);
    c->state = ST_IDLE; /* so the first set_state counts it pending */
    gh_reqparser_init(&c->parser, cfg->limits.header_max, cfg->limits.header_count_max,
                      on_headers, c);
    w->http->nconns++;
    GH_STAT_ADD(&w->stats.conns_open, 1);
    GH_STAT_ADD(&w->stats.conns_accepted, 1);
    set_state(c, ST_HEADER, uv_now(&w->loop));
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
        conn_close(c);
}

/* Accepts up to w->http->accept_budget connections. True when the backlog was
 * emptied (EAGAIN) before the budget was spent. */
static bool accept_some(struct gh_worker *w)
{
    w->http->accept_ready = false;
    for (unsigned n = 0; n < w->http->accept_budget && w->http->listening; n++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd =
            accept4(w->http->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_fd(w, fd, &ss);
            prio_check(w);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* the socket stays readable: polling it now would spin; the
             * tick polls it again (gh_conn_sweep) */
            uv_poll_stop(&w->http->listener);
            w->http->accept_paused = true;
        }
        return true;
    }
    return false;
}

static void on_listener(uv_poll_t *p, int status, int events)
{
    struct gh_worker *w = p->data;
    (void)events;
    if (status == 0)
        w->http->accept_ready = true;
}

/* Takes list's first entry off it, the first time (*first) whatever the
 * time, after that only before end (uv_hrtime); else NULL. */
static struct gh_list *turn_next(struct gh_list *list, uint64_t end, bool *first)
{
    struct gh_list *n = gh_list_first(list);
    if (!n || (!*first && uv_hrtime() > end))
        return NULL;
    *first = false;
    gh_list_remove(n);
    return n;
}

/* Dispatches the anonymous requests completed before the turn's end
 * (users' and operators' went at once: enqueue), in arrival order, then
 * takes up parked headers (should_park), while the turn's work is within
 * TURN_TARGET_US, and at least one of each: the rest wait for the next
 * turn (turn_spin keeps its poll from blocking). */
static void run_ready(struct gh_worker *w)
{
    /* the poll does not run meanwhile: the turn's budget ends at a time */
    uint64_t now = uv_hrtime();
    uint64_t end =
        now + (TURN_TARGET_US - GH_MIN(turn_busy_us(w, now, NULL), TURN_TARGET_US)) * 1000;
    struct gh_list *n;
    bool first = true;
    while ((n = turn_next(&w->http->ready, end, &first))) {
        struct gh_conn *c = GH_CONTAINER_OF(n, struct gh_conn, ready_node);
        dispatch(c, c->req);
        prio_check(w);
    }
    first = true;
    while ((n = turn_next(&w->http->parked, end, &first))) {
        struct gh_conn *c = GH_CONTAINER_OF(n, struct gh_conn, park_node);
        c->unparked = true;
        cred_wake(c); /* asks on_headers again, then reads on */
        prio_check(w);
    }
}

static void on_turn_end(uv_check_t *h)
{
    struct gh_worker *w = h->data;
    run_ready(w);
    /* the turn's work: the poll's callbacks and run_ready; the accepts
     * below count in the next turn's */
    uint64_t now = uv_hrtime(), idle;
    uint64_t busy_us = turn_busy_us(w, now, &idle);
    uint64_t slept = idle - w->http->turn_idle_mark_ns;
    w->http->turn_mark_ns = now;
    w->http->turn_idle_mark_ns = idle;
    if (busy_us > TURN_TARGET_US)
        w->http->accept_budget = GH_MAX(ACCEPT_MIN, w->http->accept_budget / 2);
    if (w->http->accept_ready && !accept_some(w) && busy_us <= TURN_TARGET_US)
        w->http->accept_budget =
            GH_MIN(ACCEPT_MAX, w->http->accept_budget + w->http->accept_budget / 4 + 1);
    /* A saturated loop never sleeps in the poll, so a store or password
     * thread that shares its CPU and has a user's answer to compute waits
     * for the scheduler to preempt the loop (a time slice: milliseconds).
     * While such a job is out, a turn whose poll did not sleep (the loop
     * is saturated: events were waiting) ends by giving way to it; the
     * time given is not the loop's work. */
    if (slept < SATURATED_SLEEP_NS && atomic_load_explicit(&w->jobs_out, memory_order_relaxed)) {
        GH_STAT_ADD(&w->stats.loop_yields, 1);
        uint64_t t = uv_hrtime();
        sched_yield();
        w->http->turn_mark_ns += uv_hrtime() - t;
    }
    if (gh_list_empty(&w->http->ready) && gh_list_empty(&w->http->parked))
        uv_idle_stop(&w->http->turn_spin);
}

int gh_conn_listen(struct gh_worker *w)
{
    gh_list_init(&w->http->ready);
    gh_list_init(&w->http->parked);
    w->http->accept_budget = ACCEPT_START;
    w->http->listener.data = w;
    w->http->turn_end.data = w;
    w->http->turn_spin.data = w;
    int rc = uv_loop_configure(&w->loop, UV_METRICS_IDLE_TIME);
    if (!rc)
        rc = uv_check_init(&w->loop, &w->http->turn_end);
    if (!rc)
        rc = uv_idle_init(&w->loop, &w->http->turn_spin);
    if (!rc)
        rc = uv_check_start(&w->http->turn_end, on_turn_end);
    if (rc)
        return rc;
    w->http->turn_mark_ns = uv_hrtime();
    w->http->turn_idle_mark_ns = uv_metrics_idle_time(&w->loop);
    if (!w->admin)
        w->http->prio_ep = epoll_create1(EPOLL_CLOEXEC); /* none: no priority, nothing else */
    rc = uv_poll_init_socket(&w->loop, &w->http->listener, w->http->listen_fd);
    if (!rc) {
        w->http->listening = true;
        rc = uv_poll_start(&w->http->listener, UV_READABLE, on_listener);
    }
    return rc;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct gh_worker *w = h->data;
    close(w->http->listen_fd); /* the poll no longer watches it */
}

void gh_conn_unlisten(struct gh_worker *w)
{
    if (!w->http->listening)
        return;
    w->http->listening = false;
    w->http->accept_ready = false;
    uv_close((uv_handle_t *)&w->http->listener, on_listener_closed);
}

void gh_conn_turn_close(struct gh_worker *w)
{
    if (w->http->turn_end.loop && !uv_is_closing((uv_handle_t *)&w->http->turn_end)) {
        uv_close((uv_handle_t *)&w->http->turn_end, NULL);
        uv_close((uv_handle_t *)&w->http->turn_spin, NULL);
    }
}

/* ---- deadlines ---- */

/* A socket's refusal is tried once per program (see server.h). */
void gh_conn_listen_filter_apply(struct gh_worker *w)
{
    struct gh_http_server *h = w->srv->http;
    if (w->admin || !w->http->listening ||
        atomic_load_explicit(&h->lf_gen, memory_order_acquire) ==
            atomic_load_explicit(&w->http->lf_gen, memory_order_relaxed))
        return;
    pthread_mutex_lock(&h->lf_lock);
    int rc;
    if (h->lf_len) {
        struct sock_fprog fp = {.len = (unsigned short)h->lf_len, .filter = h->lf_insns};
        rc = setsockopt(w->http->listen_fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp);
    } else {
        int unused = 0; /* the kernel wants an int here */
        rc = setsockopt(w->http->listen_fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof unused);
        if (rc && errno == ENOENT) /* had none */
            rc = 0;
    }
    if (rc)
        atomic_store(&h->lf_errno, errno);
    atomic_store(&w->http->lf_gen, atomic_load_explicit(&h->lf_gen, memory_order_relaxed));
    pthread_mutex_unlock(&h->lf_lock);
}

void gh_conn_sweep(struct gh_worker *w, uint64_t now)
{
    const struct gh_config *cfg = w->cfg;
    update_date(w); /* the Date header is refreshed here, not per response */
    gh_conn_listen_filter_apply(w);
    if (w->http->accept_paused && w->http->listening) { /* out of descriptors a tick ago */
        w->http->accept_paused = false;
        uv_poll_start(&w->http->listener, UV_READABLE, on_listener);
    }
    struct gh_list *n;
    while ((n = gh_list_first(&w->http->conns_header))) {
        struct gh_conn *c = GH_CONTAINER_OF(n, struct gh_conn, node);
        if (now - c->since_ms < cfg->limits.header_timeout_ms)
            break;
        if (c->got_bytes) {
            refuse(c, 408, "request headers not received in time");
        } else {
            GH_STAT_ADD(&w->stats.refused[GH_REFUSE_HEADER_TIMEOUT], 1);
            conn_close(c);
        }
    }
    uint64_t idle = cfg->limits.idle_timeout_ms;
    unsigned f = atomic_load_explicit(&w->srv->http->idle_factor_milli, memory_order_relaxed);
    if (f && f < 1000) /* shortened under pressure (the shield) */
        idle = idle * f / 1000;
    while ((n = gh_list_first(&w->http->conns_idle))) {
        struct gh_conn *c = GH_CONTAINER_OF(n, struct gh_conn, node);
        if (now - c->since_ms < idle)
            break;
        GH_STAT_ADD(&w->stats.refused[GH_REFUSE_IDLE_TIMEOUT], 1);
        conn_close(c);
    }
    /* bodies: once the grace time is over, every body_rate_window must
     * bring body_min_rate x window more bytes. Not an average since the
     * start, which would let a fast start buy a stall of minutes while the
     * body's memory is held. */
    uint64_t window = cfg->limits.body_rate_window_ms;
    struct gh_list *it = w->http->conns_body.next;
    while (it != &w->http->conns_body) {
        struct gh_conn *c = GH_CONTAINER_OF(it, struct gh_conn, node);
        it = it->next;
        uint64_t elapsed = now - c->since_ms;
        if (c->lingering) {
            if (elapsed >= cfg->limits.linger_time_ms || now - c->rate_mark_ms >= LINGER_IDLE_MS)
                conn_close(c);
            continue;
        }
        /* parked headers wait for the loop, not for the client */
        if (elapsed < cfg->limits.body_rate_grace_ms || !c->parser.req ||
            now - c->rate_mark_ms < window || gh_list_linked(&c->park_node))
            continue;
        uint64_t got = c->parser.req->body.len;
        uint64_t span = now - c->rate_mark_ms;
        if ((got - c->rate_mark_bytes) * 1000 < (uint64_t)cfg->limits.body_min_rate * span) {
            refuse(c, 408, "request body arrived too slowly");
            continue;
        }
        c->rate_mark_ms = now;
        c->rate_mark_bytes = got;
    }
}

void gh_conn_stop_worker(struct gh_worker *w)
{
    struct gh_list *n;
    while ((n = gh_list_first(&w->http->conns_idle)))
        conn_close(GH_CONTAINER_OF(n, struct gh_conn, node));
    struct gh_list *it = w->http->conns_header.next;
    while (it != &w->http->conns_header) {
        struct gh_conn *c = GH_CONTAINER_OF(it, struct gh_conn, node);
        it = it->next;
        if (!c->got_bytes)
            conn_close(c);
    }
    for (it = w->http->conns_busy.next; it != &w->http->conns_busy; it = it->next) {
        struct gh_conn *c = GH_CONTAINER_OF(it, struct gh_conn, node);
        if (c->req)
            c->req->keep_alive = false;
    }
}

void gh_conn_close_all(struct gh_worker *w)
{
    struct gh_list *lists[] = {&w->http->conns_header, &w->http->conns_body, &w->http->conns_idle,
                               &w->http->conns_busy};
    for (size_t i = 0; i < GH_ARRAY_LEN(lists); i++) {
        struct gh_list *n;
        while ((n = gh_list_first(lists[i])))
            conn_close(GH_CONTAINER_OF(n, struct gh_conn, node));
    }
}
