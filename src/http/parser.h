/* The request parser: llhttp (strict build) driven incrementally, with
 * gatehouse's own RFC 9112 checks on top, collecting one request at a time
 * into a gh_http_req with every size capped. It knows nothing of sockets,
 * so the fuzzer drives it directly. One per connection, used by that
 * connection's loop thread only.
 *
 * Refused with 400 (and the connection closes): bare LF line endings,
 * obs-fold, a missing (HTTP/1.1) or repeated or malformed Host,
 * Transfer-Encoding on HTTP/1.0 or other than one "chunked", chunk data not
 * followed by CRLF, Content-Length with Transfer-Encoding, repeated
 * Content-Length. req->method keeps http-parser's numbering (enum
 * http_method), which llhttp shares. */
#pragma once

#include "http/http.h"

enum gh_parse_result {
    GH_PARSE_AGAIN = 0, /* all input consumed, the request is not complete */
    GH_PARSE_DONE = 1,  /* one request complete; call gh_reqparser_next after */
    GH_PARSE_ERROR = 2, /* unrecoverable; error_status says which answer */
    GH_PARSE_WAIT = 3,  /* the headers callback asked to wait: feed again (even
                         * with no bytes) when it can answer; nothing of the
                         * body was consumed */
};

/* Called when the headers are complete, before any body byte. Routes the
 * request and sets req->body_max. Returns 0 to go on or an HTTP status
 * (413, 404 …) to stop with. */
typedef int (*gh_reqparser_headers_cb)(struct gh_http_req *req, void *data);
/* What a headers callback returns to be asked again on the next feed
 * (it waits for something asynchronous; not an HTTP status). */
#define GH_HEADERS_WAIT 1

struct gh_reqparser {
    /* llhttp_t, kept opaque so llhttp.h (which clashes with http_parser.h)
     * stays inside parser.c; its size is checked there */
    union {
        unsigned char bytes[128];
        uint64_t align;
        void *palign;
    } hp;
    struct gh_http_req *req; /* the request being parsed, owned until taken */
    size_t header_max;
    unsigned header_count_max;
    size_t header_bytes;
    int last_cb; /* 0 none, 1 url, 2 field, 3 value */
    struct gh_buf raw; /* url and header bytes of the current request */
    uint32_t *offs;    /* per header: name_off, name_len, value_off, value_len */
    unsigned nhdr;
    bool headers_done;
    bool headers_pending; /* llhttp paused at the end of the header section */
    bool headers_wait;    /* paused there until the headers callback can answer */
    bool message_done;
    unsigned char scan_prev;   /* last framing byte seen (CRLF and obs-fold checks) */
    const char *scan_from;     /* framing bytes not yet scanned in the current feed */
    size_t trailer_bytes;      /* trailer fields and chunk extensions, capped */
    int error_status;
    const char *error_msg;
    gh_reqparser_headers_cb on_headers;
    void *cb_data;
};

/* Prepares a parser with the limits; allocates nothing yet. */
void gh_reqparser_init(struct gh_reqparser *p, size_t header_max, unsigned header_count_max,
                       gh_reqparser_headers_cb on_headers, void *cb_data);
/* Frees the request being parsed, if any. */
void gh_reqparser_dispose(struct gh_reqparser *p);

/* Feeds len bytes; *consumed tells how many were used. On GH_PARSE_DONE
 * the complete request is in p->req: take it with gh_reqparser_take, then
 * call gh_reqparser_next before feeding the rest. */
enum gh_parse_result gh_reqparser_feed(struct gh_reqparser *p, const char *data, size_t len,
                                       size_t *consumed);
/* Hands the complete request to the caller, who frees it with
 * gh_http_req_free. */
struct gh_http_req *gh_reqparser_take(struct gh_reqparser *p);
/* Readies the parser for the next request on the connection. */
void gh_reqparser_next(struct gh_reqparser *p);
/* True when bytes of a request have arrived but its headers have not. */
bool gh_reqparser_in_headers(const struct gh_reqparser *p);
bool gh_reqparser_in_body(const struct gh_reqparser *p);

/* A new request (from this thread's cache of freed ones when it has one). */
struct gh_http_req *gh_http_req_new(void);
/* Frees a request; any thread, though workers free their own. */
void gh_http_req_free(struct gh_http_req *req);
/* Frees this thread's cache of requests (worker exit; tests). */
void gh_http_req_cache_flush(void);
