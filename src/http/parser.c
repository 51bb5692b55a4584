/* This module implements the incremental request parser of parser.h on
 * top of http-parser. Header bytes are appended to one capped buffer and
 * turned into pointers only once the headers are complete, since the
 * buffer may move while it grows. */
#include "http/parser.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQ_ARENA_CAP (1u << 20)
#define RES_HDR_CAP   (16u << 10)

static int fail(struct gh_reqparser *p, int status, const char *msg)
{
    p->error_status = status;
    p->error_msg = msg;
    return -1;
}

/* Each thread keeps a few freed requests, arena chunks included, so the
 * steady state of a worker allocates nothing per request. */
#ifdef GH_DEBUG
#define REQ_CACHE_MAX 0 /* sanitizer builds: every freed request really is freed */
#else
#define REQ_CACHE_MAX 32
#endif
#define REQ_ARENA_KEEP (8u << 10)

static __thread struct {
    struct gh_http_req *head;
    unsigned n;
} req_cache;
static pthread_key_t req_cache_key;
static pthread_once_t req_cache_once = PTHREAD_ONCE_INIT;

static void req_cache_destroy(void *unused)
{
    (void)unused;
    gh_http_req_cache_flush();
}

static void req_cache_key_init(void)
{
    pthread_key_create(&req_cache_key, req_cache_destroy);
}

void gh_http_req_cache_flush(void)
{
    while (req_cache.head) {
        struct gh_http_req *r = req_cache.head;
        req_cache.head = r->handler_data;
        gh_arena_dispose(&r->arena);
        free(r);
    }
    req_cache.n = 0;
}

struct gh_http_req *gh_http_req_new(void)
{
    struct gh_http_req *req = req_cache.head;
    struct gh_arena arena;
    if (req) {
        req_cache.head = req->handler_data;
        req_cache.n--;
        arena = req->arena;
    } else {
        req = malloc(sizeof *req);
        if (!req)
            return NULL;
        gh_arena_init(&arena, REQ_ARENA_CAP);
    }
    memset(req, 0, sizeof *req);
    req->arena = arena;
    gh_buf_init(&req->body, 0);
    gh_buf_init(&req->res_headers, RES_HDR_CAP);
    req->content_length = UINT64_MAX;
    req->query = "";
    return req;
}

void gh_http_req_free(struct gh_http_req *req)
{
    if (!req)
        return;
    gh_buf_dispose(&req->body);
    gh_buf_dispose(&req->res_headers);
    if (req->cfg)
        gh_config_unref(req->cfg);
    if (req_cache.n + 1 > REQ_CACHE_MAX) {
        gh_arena_dispose(&req->arena);
        free(req);
        return;
    }
    if (!req_cache.head && !req_cache.n) {
        pthread_once(&req_cache_once, req_cache_key_init);
        pthread_setspecific(req_cache_key, &req_cache); /* runs the destructor at exit */
    }
    gh_arena_reset(&req->arena, REQ_ARENA_KEEP);
    req->handler_data = req_cache.head; /* the free list's link */
    req_cache.head = req;
    req_cache.n++;
}

static struct gh_reqparser *P(http_parser *hp)
{
    return hp->data;
}

static int on_message_begin(http_parser *hp)
{
    struct gh_reqparser *p = P(hp);
    if (!p->req) {
        p->req = gh_http_req_new();
        if (!p->req)
            return fail(p, 503, "out of memory");
    }
    p->offs = gh_arena_alloc(&p->req->arena, sizeof(uint32_t) * 4 * p->header_count_max);
    if (!p->offs)
        return fail(p, 503, "out of memory");
    gh_buf_init(&p->raw, p->header_max + 2 * p->header_count_max + 8);
    p->header_bytes = 0;
    p->nhdr = 0;
    p->last_cb = 0;
    p->headers_done = false;
    p->message_done = false;
    return 0;
}

static int count(struct gh_reqparser *p, size_t len)
{
    p->header_bytes += len;
    if (p->header_bytes > p->header_max)
        return fail(p, 431, "request headers too large");
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (count(p, len) || gh_buf_append(&p->raw, at, len))
        return fail(p, 431, "request line and headers too large");
    p->last_cb = 1;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (count(p, len))
        return -1;
    if (p->last_cb != 2) {
        if (p->nhdr >= p->header_count_max)
            return fail(p, 431, "too many request header fields");
        /* terminate the url or the previous value, start a new name */
        if (gh_buf_append(&p->raw, "", 1))
            return fail(p, 431, "request headers too large");
        uint32_t *o = &p->offs[4 * p->nhdr++];
        o[0] = (uint32_t)p->raw.len;
        o[1] = 0;
        o[2] = 0;
        o[3] = 0;
    }
    uint32_t *o = &p->offs[4 * (p->nhdr - 1)];
    if (gh_buf_append(&p->raw, at, len))
        return fail(p, 431, "request headers too large");
    o[1] += (uint32_t)len;
    p->last_cb = 2;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (count(p, len))
        return -1;
    uint32_t *o = &p->offs[4 * (p->nhdr - 1)];
    if (p->last_cb != 3) {
        if (gh_buf_append(&p->raw, "", 1))
            return fail(p, 431, "request headers too large");
        o[2] = (uint32_t)p->raw.len;
    }
    if (gh_buf_append(&p->raw, at, len))
        return fail(p, 431, "request headers too large");
    o[3] += (uint32_t)len;
    p->last_cb = 3;
    return 0;
}

static bool header_is(const struct gh_http_header *h, const char *name)
{
    return h->name_len == strlen(name) && !strncasecmp(h->name, name, h->name_len);
}

static int on_headers_complete(http_parser *hp)
{
    struct gh_reqparser *p = P(hp);
    struct gh_http_req *req = p->req;
    if (gh_buf_append(&p->raw, "", 1))
        return fail(p, 431, "request headers too large");
    /* the buffer is final now: copy it into the arena and point into it */
    char *raw = gh_arena_alloc(&req->arena, p->raw.len);
    req->headers = gh_arena_alloc(&req->arena, sizeof *req->headers * (p->nhdr ? p->nhdr : 1));
    if (!raw || !req->headers)
        return fail(p, 503, "out of memory");
    memcpy(raw, p->raw.data, p->raw.len);
    gh_buf_dispose(&p->raw);
    req->url = raw;
    req->nheaders = p->nhdr;
    for (unsigned i = 0; i < p->nhdr; i++) {
        uint32_t *o = &p->offs[4 * i];
        struct gh_http_header *h = &req->headers[i];
        h->name = raw + o[0];
        h->name_len = o[1];
        h->value = o[3] ? raw + o[2] : "";
        h->value_len = o[3];
        /* http-parser outside strict mode lets spaces into names; RFC 9112
         * 5.1 wants "Name : value" refused (a smuggling vector) */
        if (memchr(h->name, ' ', h->name_len))
            return fail(p, 400, "malformed request: invalid character in a header");
        /* RFC 9110 5.5: no control characters (but tab) in a value; a NUL
         * would also cut every C string made of it short */
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char ch = (unsigned char)h->value[k];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fail(p, 400, "malformed request: control character in a header value");
        }
        /* values may end in spaces the parser kept */
        while (h->value_len && (h->value[h->value_len - 1] == ' ' ||
                                h->value[h->value_len - 1] == '\t'))
            h->value_len--;
        if (o[3])
            ((char *)h->value)[h->value_len] = '\0';
        if (header_is(h, "expect")) {
            if (h->value_len == 12 && !strncasecmp(h->value, "100-continue", 12))
                req->expect_continue = true;
            else
                return fail(p, 417, "unsupported Expect header (only 100-continue)");
        }
    }
    /* split path and query; strip a fragment a client should not send */
    char *hash = strchr(raw, '#');
    if (hash)
        *hash = '\0'; /* first, so a '?' inside the fragment starts no query */
    char *q = strchr(raw, '?');
    if (q) {
        char *path = gh_arena_strndup(&req->arena, raw, (size_t)(q - raw));
        if (!path)
            return fail(p, 503, "out of memory");
        req->path = path;
        req->query = q + 1;
    } else {
        req->path = raw;
    }
    if (req->path[0] != '/')
        return fail(p, 400, "request target must be an absolute path");
    req->method = hp->method;
    req->method_name = http_method_str(hp->method);
    req->http_minor = hp->http_minor;
    req->head = hp->method == HTTP_HEAD;
    req->keep_alive = http_should_keep_alive(hp) != 0;
    if (hp->flags & F_CONTENTLENGTH)
        req->content_length = hp->content_length;
    if (hp->http_major != 1)
        return fail(p, 505, "only HTTP/1.x is supported");
    p->headers_done = true;
    if (p->on_headers) {
        int status = p->on_headers(req, p->cb_data);
        if (status)
            return fail(p, status, NULL);
    }
    if (req->content_length != UINT64_MAX && req->content_length > req->body_max)
        return fail(p, 413, "request body too large");
    gh_buf_init(&req->body, req->body_max);
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    int rc = gh_buf_append(&p->req->body, at, len);
    if (rc == GH_ETOOBIG)
        return fail(p, 413, "request body too large");
    if (rc)
        return fail(p, 503, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct gh_reqparser *p = P(hp);
    p->message_done = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void gh_reqparser_init(struct gh_reqparser *p, size_t header_max, unsigned header_count_max,
                       gh_reqparser_headers_cb on_headers, void *cb_data)
{
    memset(p, 0, sizeof *p);
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    p->header_max = header_max;
    p->header_count_max = header_count_max;
    p->on_headers = on_headers;
    p->cb_data = cb_data;
}

void gh_reqparser_dispose(struct gh_reqparser *p)
{
    gh_buf_dispose(&p->raw);
    gh_http_req_free(p->req);
    p->req = NULL;
}

static const char *errno_message(enum http_errno e)
{
    switch (e) {
    case HPE_INVALID_METHOD: return "malformed request: unknown method";
    case HPE_INVALID_URL: return "malformed request: invalid request target";
    case HPE_INVALID_VERSION: return "malformed request: invalid HTTP version";
    case HPE_INVALID_HEADER_TOKEN: return "malformed request: invalid character in a header";
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH: return "malformed request: invalid Content-Length";
    case HPE_INVALID_CHUNK_SIZE: return "malformed request: invalid chunk size";
    case HPE_INVALID_TRANSFER_ENCODING: return "malformed request: invalid Transfer-Encoding";
    case HPE_LF_EXPECTED: return "malformed request: line must end with CRLF";
    default: return "malformed request";
    }
}

enum gh_parse_result gh_reqparser_feed(struct gh_reqparser *p, const char *data, size_t len,
                                       size_t *consumed)
{
    GH_ASSERT(!p->message_done);
    *consumed = 0;
    if (p->error_status)
        return GH_PARSE_ERROR;
    size_t n = http_parser_execute(&p->hp, &settings, data, len);
    *consumed = n;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_PAUSED && p->message_done)
        return GH_PARSE_DONE;
    if (e == HPE_OK)
        return GH_PARSE_AGAIN;
    if (!p->error_status) {
        if (e == HPE_HEADER_OVERFLOW) {
            p->error_status = 431;
            p->error_msg = "request headers too large";
        } else {
            p->error_status = 400;
            p->error_msg = errno_message(e);
        }
    }
    return GH_PARSE_ERROR;
}

struct gh_http_req *gh_reqparser_take(struct gh_reqparser *p)
{
    struct gh_http_req *req = p->req;
    p->req = NULL;
    return req;
}

void gh_reqparser_next(struct gh_reqparser *p)
{
    gh_buf_dispose(&p->raw);
    gh_http_req_free(p->req);
    p->req = NULL;
    p->offs = NULL;
    p->message_done = false;
    p->headers_done = false;
    p->header_bytes = 0;
    /* after a refused request the parser is in error state (the connection
     * closes) and http_parser asserts if asked to un-pause it */
    if (HTTP_PARSER_ERRNO(&p->hp) == HPE_PAUSED)
        http_parser_pause(&p->hp, 0);
}

bool gh_reqparser_in_headers(const struct gh_reqparser *p)
{
    return p->req && !p->headers_done;
}

bool gh_reqparser_in_body(const struct gh_reqparser *p)
{
    return p->req && p->headers_done && !p->message_done;
}
