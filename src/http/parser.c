/* This module implements the incremental request parser of parser.h on
 * top of llhttp, compiled in its strict mode from the system's sources
 * (Debian's node-llhttp). Header bytes are appended to one capped buffer
 * and turned into pointers only once the headers are complete, since the
 * buffer may move while it grows. llhttp pauses at the end of the header
 * section and at the end of each message, so the checks llhttp does not
 * make (RFC 9112: bare LF, obs-fold, Host, Transfer-Encoding on HTTP/1.0)
 * run before the request is routed or dispatched. */
#include "http/parser.h"

#include <llhttp.h>
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

/* llhttp_t lives in the opaque storage of struct gh_reqparser */
_Static_assert(sizeof(llhttp_t) <= sizeof(((struct gh_reqparser *)0)->hp),
               "gh_reqparser.hp too small for llhttp_t");
_Static_assert(_Alignof(llhttp_t) <= _Alignof(uint64_t), "llhttp_t alignment");
/* req->method is http-parser's enum http_method; llhttp numbers the same */
_Static_assert(HTTP_DELETE == 0 && HTTP_GET == 1 && HTTP_HEAD == 2 && HTTP_POST == 3 &&
                   HTTP_PUT == 4 && HTTP_CONNECT == 5 && HTTP_OPTIONS == 6 &&
                   HTTP_TRACE == 7 && HTTP_PATCH == 28 && HTTP_SOURCE == 33,
               "llhttp method numbers differ from http-parser's");
#define GH_METHOD_LAST HTTP_SOURCE /* the last method both parsers share */

static llhttp_t *HP(struct gh_reqparser *p)
{
    return (llhttp_t *)(void *)p->hp.bytes;
}

static struct gh_reqparser *P(llhttp_t *hp)
{
    return hp->data;
}

/* Scans framing bytes (request line, header and trailer sections, chunk
 * lines; never body bytes) for what llhttp's strict mode still accepts:
 * an LF not preceded by CR (RFC 9112 2.2 lets a server accept it; behind a
 * front end that reads it otherwise, it splits requests) and obs-fold (a
 * line starting with SP or HTAB; RFC 9112 5.2 allows refusing it with 400). */
static int scan_framing(struct gh_reqparser *p, const char *from, const char *to)
{
    unsigned char prev = p->scan_prev;
    for (const char *s = from; s < to; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n' && prev != '\r')
            return fail(p, 400, "malformed request: line must end with CRLF");
        if ((ch == ' ' || ch == '\t') && prev == '\n')
            return fail(p, 400, "malformed request: obsolete line folding");
        prev = ch;
    }
    p->scan_prev = prev;
    return 0;
}

/* Scans the framing bytes from where the last scan stopped up to end, so
 * that problems are found in byte order however the input is cut. */
static int scan_to(struct gh_reqparser *p, const char *end)
{
    if (!p->scan_from)
        return 0;
    int rc = scan_framing(p, p->scan_from, end);
    p->scan_from = end;
    return rc;
}

static int on_message_begin(llhttp_t *hp)
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
    p->trailer_bytes = 0;
    p->nhdr = 0;
    p->last_cb = 0;
    p->headers_done = false;
    p->headers_pending = false;
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

/* Trailer fields and chunk extensions are read and dropped, within the
 * header budget. */
static int count_trailer(struct gh_reqparser *p, size_t len)
{
    p->trailer_bytes += len;
    if (p->trailer_bytes > p->header_max)
        return fail(p, 431, "chunk extensions or trailer fields too large");
    return 0;
}

static int on_url(llhttp_t *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (scan_to(p, at + len))
        return -1;
    if (count(p, len) || gh_buf_append(&p->raw, at, len))
        return fail(p, 431, "request line and headers too large");
    p->last_cb = 1;
    return 0;
}

static int on_header_field(llhttp_t *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (scan_to(p, at + len))
        return -1;
    if (p->headers_done)
        return count_trailer(p, len);
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

static int on_header_value(llhttp_t *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (scan_to(p, at + len))
        return -1;
    if (p->headers_done)
        return count_trailer(p, len);
    if (count(p, len))
        return -1;
    if (!p->nhdr)
        return fail(p, 400, "malformed request: header value without a name");
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

static int on_chunk_extension(llhttp_t *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    if (scan_to(p, at + len))
        return -1;
    return count_trailer(p, len);
}

static bool header_is(const struct gh_http_header *h, const char *name)
{
    return h->name_len == strlen(name) && !strncasecmp(h->name, name, h->name_len);
}

/* RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ], possibly empty. */
static bool host_valid(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
            continue;
        if (!strchr("-._~%!$&'()*+,;=:[]", ch) || ch == '\0')
            return false;
    }
    return true;
}

/* llhttp paused at the end of the header section: the header bytes have
 * been scanned; finish the request head, apply the checks, route it. */
static int headers_admit(struct gh_reqparser *p);

static int headers_finish(struct gh_reqparser *p)
{
    llhttp_t *hp = HP(p);
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
    if (hp->http_major != 1 || hp->http_minor > 1)
        return fail(p, 505, "only HTTP/1.x is supported");
    unsigned hosts = 0, te = 0;
    for (unsigned i = 0; i < p->nhdr; i++) {
        uint32_t *o = &p->offs[4 * i];
        struct gh_http_header *h = &req->headers[i];
        h->name = raw + o[0];
        h->name_len = o[1];
        h->value = o[3] ? raw + o[2] : "";
        h->value_len = o[3];
        /* llhttp refuses these already; kept as a second line, since a
         * space in a name ("Name : value") is a smuggling vector */
        if (!h->name_len || memchr(h->name, ' ', h->name_len))
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
        if (header_is(h, "host")) {
            if (++hosts > 1)
                return fail(p, 400, "malformed request: more than one Host header");
            if (!host_valid(h->value, h->value_len))
                return fail(p, 400, "malformed request: invalid Host header");
        } else if (header_is(h, "transfer-encoding")) {
            /* the only coding gatehouse reads is one "chunked" (RFC 9112
             * 6.1); anything else frames the body differently for someone */
            if (++te > 1 || h->value_len != 7 || strncasecmp(h->value, "chunked", 7))
                return fail(p, 400, "malformed request: unsupported Transfer-Encoding");
        } else if (header_is(h, "expect")) {
            if (h->value_len == 12 && !strncasecmp(h->value, "100-continue", 12))
                req->expect_continue = true;
            else
                return fail(p, 417, "unsupported Expect header (only 100-continue)");
        }
    }
    if (hp->http_minor == 1 && !hosts)
        return fail(p, 400, "malformed request: HTTP/1.1 request without a Host header");
    /* RFC 9112 6.1: a server MUST treat an HTTP/1.0 message with
     * Transfer-Encoding as faulty and close the connection after it */
    if (te && hp->http_minor == 0)
        return fail(p, 400, "malformed request: Transfer-Encoding in an HTTP/1.0 request");
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
    if (hp->method > GH_METHOD_LAST)
        return fail(p, 501, "method not implemented");
    req->method = hp->method;
    req->method_name = llhttp_method_name((llhttp_method_t)hp->method);
    req->http_minor = hp->http_minor;
    req->head = hp->method == HTTP_HEAD;
    /* an Upgrade is not taken: the answer ends the connection */
    req->keep_alive = llhttp_should_keep_alive(hp) != 0 && !hp->upgrade;
    if (hp->flags & F_CONTENT_LENGTH)
        req->content_length = hp->content_length;
    p->headers_done = true;
    return headers_admit(p);
}

/* The caller's say on the complete headers (routing, the body cap), then
 * the body buffer. 0, GH_HEADERS_WAIT (asked again on the next feed) or
 * -1 after fail. */
static int headers_admit(struct gh_reqparser *p)
{
    struct gh_http_req *req = p->req;
    if (p->on_headers) {
        int status = p->on_headers(req, p->cb_data);
        if (status == GH_HEADERS_WAIT)
            return GH_HEADERS_WAIT;
        if (status)
            return fail(p, status, NULL);
    }
    if (req->content_length != UINT64_MAX && req->content_length > req->body_max)
        return fail(p, 413, "request body too large");
    gh_buf_init(&req->body, req->body_max);
    return 0;
}

static int on_headers_complete(llhttp_t *hp)
{
    P(hp)->headers_pending = true;
    return HPE_PAUSED; /* gh_reqparser_feed scans the section, then finishes it */
}

static int on_body(llhttp_t *hp, const char *at, size_t len)
{
    struct gh_reqparser *p = P(hp);
    /* the framing bytes before this piece (chunk lines) are scanned; the
     * body bytes are not framing */
    if (scan_to(p, at))
        return -1;
    p->scan_from = at + len;
    p->scan_prev = 0;
    int rc = gh_buf_append(&p->req->body, at, len);
    if (rc == GH_ETOOBIG)
        return fail(p, 413, "request body too large");
    if (rc)
        return fail(p, 503, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *hp)
{
    struct gh_reqparser *p = P(hp);
    p->message_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_chunk_extension_name = on_chunk_extension;
    settings.on_chunk_extension_value = on_chunk_extension;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void gh_reqparser_init(struct gh_reqparser *p, size_t header_max, unsigned header_count_max,
                       gh_reqparser_headers_cb on_headers, void *cb_data)
{
    pthread_once(&settings_once, settings_init);
    memset(p, 0, sizeof *p);
    llhttp_init(HP(p), HTTP_REQUEST, &settings);
    HP(p)->data = p;
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

static const char *errno_message(llhttp_errno_t e)
{
    switch (e) {
    case HPE_INVALID_METHOD: return "malformed request: unknown method";
    case HPE_INVALID_URL: return "malformed request: invalid request target";
    case HPE_INVALID_CONSTANT:
    case HPE_UNEXPECTED_SPACE: return "malformed request: invalid request line";
    case HPE_INVALID_VERSION: return "malformed request: invalid HTTP version";
    case HPE_INVALID_HEADER_TOKEN: return "malformed request: invalid character in a header";
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH: return "malformed request: invalid Content-Length";
    case HPE_INVALID_CHUNK_SIZE: return "malformed request: invalid chunk size";
    case HPE_STRICT: return "malformed request: chunk data must end with CRLF";
    case HPE_INVALID_TRANSFER_ENCODING: return "malformed request: unsupported Transfer-Encoding";
    case HPE_CR_EXPECTED:
    case HPE_LF_EXPECTED: return "malformed request: line must end with CRLF";
    default: return "malformed request";
    }
}

enum gh_parse_result gh_reqparser_feed(struct gh_reqparser *p, const char *data, size_t len,
                                       size_t *consumed)
{
    llhttp_t *hp = HP(p);
    const char *end = data + len;
    const char *at = data;
    *consumed = 0;
    if (p->error_status)
        return GH_PARSE_ERROR;
    GH_ASSERT(!p->message_done);
    if (p->headers_wait) { /* the caller is ready to say yes or no now */
        p->headers_wait = false;
        int rc = headers_admit(p);
        if (rc == GH_HEADERS_WAIT) {
            p->headers_wait = true;
            return GH_PARSE_WAIT;
        }
        if (rc)
            return GH_PARSE_ERROR;
        /* on with what is in hand, none included: a request without a
         * body completes here */
        llhttp_resume(hp);
    }
    for (;;) {
        p->scan_from = at;
        llhttp_errno_t e = llhttp_execute(hp, at, (size_t)(end - at));
        const char *pos = end;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
            pos = llhttp_get_error_pos(hp);
        if (p->error_status)
            break;
        if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
            /* a problem of ours earlier in the bytes is the one to report */
            const char *epos = llhttp_get_error_pos(hp);
            if (epos && epos >= p->scan_from && epos <= end && scan_to(p, epos))
                break;
            if (e == HPE_PAUSED_H2_UPGRADE)
                fail(p, 505, "only HTTP/1.x is supported");
            else
                fail(p, 400, errno_message(e));
            break;
        }
        if (scan_to(p, pos))
            break;
        p->scan_from = NULL;
        *consumed = (size_t)(pos - data);
        at = pos;
        if (p->headers_pending) {
            p->headers_pending = false;
            int rc = headers_finish(p);
            if (rc == GH_HEADERS_WAIT) {
                p->headers_wait = true; /* llhttp stays paused */
                p->scan_from = NULL;
                return GH_PARSE_WAIT;
            }
            if (rc)
                break;
            llhttp_resume(hp);
            continue;
        }
        if (p->message_done)
            return GH_PARSE_DONE;
        if (e == HPE_OK)
            return GH_PARSE_AGAIN;
        fail(p, 400, "malformed request"); /* paused for no reason of ours */
        break;
    }
    p->scan_from = NULL;
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
    p->headers_pending = false;
    p->headers_wait = false;
    p->header_bytes = 0;
    p->trailer_bytes = 0;
    p->scan_prev = 0;
    /* after a refused request the parser stays in its error state (the
     * connection closes) */
    if (p->error_status)
        return;
    llhttp_errno_t e = llhttp_get_errno(HP(p));
    if (e == HPE_PAUSED)
        llhttp_resume(HP(p));
    else if (e == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(HP(p));
}

bool gh_reqparser_in_headers(const struct gh_reqparser *p)
{
    return p->req && !p->headers_done;
}

bool gh_reqparser_in_body(const struct gh_reqparser *p)
{
    return p->req && p->headers_done && !p->message_done;
}
