/* The request and response API that route handlers use. A handler runs on
 * its worker's loop thread and must answer exactly once, now or later (from
 * a callback on the same loop), with gh_http_respond*, or start a stream
 * with gh_http_stream_start. The server owns the request and frees it after
 * the answer is written or the client has gone. */
#pragma once

#include "core/addr.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/config.h"

#include <netinet/in.h>

struct gh_conn;
struct gh_worker;
struct gh_route;
struct gh_http_req;

struct gh_http_header {
    const char *name;
    const char *value;
    size_t name_len, value_len;
};

#define GH_ROUTE_MAX_PARAMS 4

/* Called when the client goes away while the answer is pending (streaming
 * or async work): stop the work; any later respond call is discarded. */
typedef void (*gh_http_abort_cb)(struct gh_http_req *req, void *data);
/* Called when a stream's written data has drained below the low mark. */
typedef void (*gh_http_drain_cb)(struct gh_http_req *req, void *data);

struct gh_http_req {
    /* Parsed request: valid until the request is freed. */
    int method; /* enum http_method */
    const char *method_name;
    const char *url;   /* as sent: path and query */
    const char *path;  /* percent-encoded path, NUL-terminated */
    const char *query; /* after '?', or "" */
    struct gh_http_header *headers;
    unsigned nheaders;
    struct gh_buf body;
    uint64_t content_length; /* UINT64_MAX when absent */
    bool keep_alive;
    bool expect_continue;
    bool head; /* HEAD: answer without a body */
    unsigned short http_minor;

    /* Routing */
    const struct gh_route *route;
    const char *params[GH_ROUTE_MAX_PARAMS]; /* {name} segments, in order */
    unsigned nparams;
    size_t body_max;
    /* Credentials in the headers, checked at most once per request (the
     * body cap asks before the body is read, the shield's class after):
     * 0 not checked yet, 1 valid, -1 absent or invalid. */
    struct {
        int8_t state;
        uint64_t user_id, key_id; /* key_id 0 for a session */
    } cred;

    /* Context */
    struct gh_conn *conn; /* NULL once the client has gone */
    struct gh_worker *worker;
    struct gh_config *cfg; /* referenced for the request's lifetime */
    struct gh_addr client;
    struct gh_arena arena; /* request-scoped memory */
    uint64_t start_ns;
    char id[24]; /* x-request-id */

    /* Response state */
    struct gh_buf res_headers; /* extra "Name: value\r\n" lines */
    int status;
    uint64_t bytes_out;
    bool responded;
    bool streaming;
    bool head_pending; /* a stream's head waits for its first piece */
    bool aborted;
    gh_http_abort_cb on_abort;
    gh_http_drain_cb on_drain;
    void *cb_data;
    void *handler_data; /* free for the handler's own state */
};

/* Returns the value of header name (case-insensitive), or NULL. */
const char *gh_http_header_get(const struct gh_http_req *req, const char *name, size_t *len);
/* Copies the decoded query parameter name into out. 0, GH_ENOTFOUND or
 * GH_ETOOBIG. */
int gh_http_query_get(const struct gh_http_req *req, const char *name, char *out, size_t outlen);
/* True when the request's first If-None-Match is "*" or a valid list of
 * entity-tags (RFC 9110 8.8.3: ["W/"] DQUOTE *etagc DQUOTE, commas
 * between, empty elements allowed) of which one, weak or strong, equals
 * etag byte for byte: the caller answers 304. A malformed header never
 * matches (the full answer is always safe). */
bool gh_http_etag_matches(const struct gh_http_req *req, const char *etag);
/* Returns the value of cookie name into out. 0 or GH_ENOTFOUND. */
int gh_http_cookie_get(const struct gh_http_req *req, const char *name, char *out, size_t outlen);

/* Adds a response header. The value is refused (GH_EINVAL) if it holds CR,
 * LF or NUL, so no caller can split a response. */
int gh_http_add_header(struct gh_http_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers with a complete body. content_type may be NULL for no body. */
void gh_http_respond(struct gh_http_req *req, int status, const char *content_type,
                     const void *body, size_t len);
void gh_http_respond_json(struct gh_http_req *req, int status, const char *json, size_t len);
/* The error shape of docs/API.md: {"error":{"message","type","code"}} on
 * /api, /v1 and /admin paths; a small HTML page elsewhere. code may be NULL
 * (then derived from status). */
void gh_http_respond_error(struct gh_http_req *req, int status, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Same, with an explicit `param` field (OpenAI's error object). */
void gh_http_respond_error_param(struct gh_http_req *req, int status, const char *code,
                                 const char *param, const char *message);

/* Streaming: a chunked response written piece by piece. write returns the
 * bytes queued but not yet sent to the client, so the caller can apply
 * backpressure (pause its source above a mark, resume in on_drain), or a
 * negative code when the client has gone. */
void gh_http_stream_start(struct gh_http_req *req, int status, const char *content_type);
int64_t gh_http_stream_write(struct gh_http_req *req, const void *data, size_t len);
void gh_http_stream_end(struct gh_http_req *req);
/* Writes a last piece and ends the stream, in one write. */
void gh_http_stream_end_with(struct gh_http_req *req, const void *data, size_t len);
/* Registers the abort and drain callbacks of an async or streaming answer. */
void gh_http_set_callbacks(struct gh_http_req *req, gh_http_abort_cb on_abort,
                           gh_http_drain_cb on_drain, void *data);

/* The standard reason phrase for status. */
const char *gh_http_reason(int status);
/* "/api/..." or "/v1/..." or "/admin/...": clients that want JSON errors. */
bool gh_http_path_is_api(const char *path);
