/* libFuzzer harness for the request parser (http/parser.h) and the
 * router. The first four input bytes choose the limits (header_max,
 * header_count_max, body_max) and how the rest is cut into pieces; each
 * piece is fed from its own exact-size heap copy, freed right after, so
 * ASan catches any pointer the parser keeps into fed data or any read past
 * a piece. Complete requests are taken, checked and freed; LeakSanitizer
 * checks that nothing is left behind.
 *
 * Invariants beyond memory safety: the same input fed whole and in pieces
 * gives the same requests and ends in an error in both or neither; every accepted
 * HTTP/1.1 request has exactly one Host; Transfer-Encoding is only ever one
 * "chunked" and never on HTTP/1.0; the header section of an accepted
 * request has no bare LF and no obs-fold (RFC 9112). In the run fed in
 * pieces, on_headers first answers GH_HEADERS_WAIT for some requests (as
 * conn.c does for parked headers and credentials read back), and the
 * request goes on from a feed of no bytes, as conn.c's wake does: that
 * changes nothing either. */
#include "http/parser.h"
#include "http/router.h"

#include <http_parser.h> /* enum http_method */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "invariant.h"

static void h_noop(struct gh_http_req *req) { (void)req; }

static struct gh_router router;

struct fuzz_ctx {
    size_t body_max;
    unsigned calls;
    uint32_t wait_bits; /* bit i % 32: request i's headers wait once */
    unsigned nreq;      /* requests whose headers were admitted */
    bool waited;        /* the current request's headers waited */
};

static void router_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    gh_router_init(&router);
    gh_router_add(&router, "GET", "/", h_noop, NULL);
    gh_router_add(&router, "GET", "/api/keys/{id}", h_noop, NULL);
    gh_router_add(&router, "DELETE", "/api/keys/{id}", h_noop, NULL);
    gh_router_add(&router, "POST", "/api/users/{user}/keys/{key}", h_noop, NULL);
    gh_router_add(&router, "GET", "/docs/", h_noop, NULL);
    struct gh_route *up = gh_router_add(&router, "POST", "/upload", h_noop, NULL);
    if (up)
        up->body_max = 100;
}

/* Routes like conn.c's on_headers does, and sets the body cap. */
static int on_headers(struct gh_http_req *req, void *data)
{
    struct fuzz_ctx *fc = data;
    fc->calls++;
    if (!fc->waited && (fc->wait_bits >> (fc->nreq % 32) & 1)) {
        fc->waited = true;
        return GH_HEADERS_WAIT;
    }
    fc->waited = false;
    fc->nreq++;
    FUZZ_CHECK(req->path && req->path[0] == '/');
    FUZZ_CHECK(req->query);
    req->body_max = fc->body_max;
    char allow[128];
    const struct gh_route *rt = NULL;
    enum gh_match m = gh_router_match(&router, req->method, req->path, &req->arena, &rt,
                                      req->params, &req->nparams, allow, sizeof allow);
    if (m == GH_MATCH_OK) {
        FUZZ_CHECK(rt);
        FUZZ_CHECK(req->nparams <= GH_ROUTE_MAX_PARAMS);
        for (unsigned i = 0; i < req->nparams; i++)
            FUZZ_CHECK(strlen(req->params[i]) > 0);
        req->route = rt;
        if (rt->body_max)
            req->body_max = rt->body_max;
    } else if (m == GH_MATCH_BAD_METHOD) {
        FUZZ_CHECK(strlen(allow) > 0 && strlen(allow) < sizeof allow);
    }
    return 0;
}

static void check_request(const struct gh_http_req *req)
{
    FUZZ_CHECK(req->method_name);
    FUZZ_CHECK(req->url && req->path && req->query);
    FUZZ_CHECK(req->path[0] == '/');
    volatile size_t sum = strlen(req->url) + strlen(req->path) + strlen(req->query);
    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct gh_http_header *h = &req->headers[i];
        FUZZ_CHECK(h->name && h->value);
        /* every byte readable (ASan), names and values NUL-terminated */
        for (size_t k = 0; k < h->name_len; k++)
            sum += (unsigned char)h->name[k];
        for (size_t k = 0; k < h->value_len; k++)
            sum += (unsigned char)h->value[k];
        FUZZ_CHECK(h->name[h->name_len] == '\0');
        FUZZ_CHECK(h->value[h->value_len] == '\0');
        FUZZ_CHECK(!memchr(h->name, ' ', h->name_len));
    }
    (void)sum;
    FUZZ_CHECK(req->body.len <= req->body_max);
    if (req->content_length != UINT64_MAX)
        FUZZ_CHECK(req->body.len == req->content_length);
    FUZZ_CHECK(req->head == (req->method == HTTP_HEAD));
    /* the accessors handlers use */
    size_t len;
    const char *v = gh_http_header_get(req, "content-type", &len);
    if (v)
        FUZZ_CHECK(strlen(v) == len);
    char out[64];
    int rc = gh_http_query_get(req, "q", out, sizeof out);
    FUZZ_CHECK(rc == 0 || rc == GH_ENOTFOUND || rc == GH_ETOOBIG);
    if (rc == 0)
        FUZZ_CHECK(strlen(out) < sizeof out);
    rc = gh_http_cookie_get(req, "sid", out, sizeof out);
    FUZZ_CHECK(rc == 0 || rc == GH_ENOTFOUND || rc == GH_ETOOBIG);
}

/* What one run over the input saw, to compare runs. */
struct outcome {
    unsigned done;
    int error_status;
    uint64_t digest; /* of the requests' method, path, headers and body */
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* a separator */
}

/* RFC 9112 on what was accepted: Host, Transfer-Encoding, line endings. */
static void check_strict(const struct gh_http_req *req, const uint8_t *raw, size_t rawlen)
{
    unsigned hosts = 0, te = 0;
    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct gh_http_header *h = &req->headers[i];
        if (h->name_len == 4 && !strncasecmp(h->name, "host", 4))
            hosts++;
        if (h->name_len == 17 && !strncasecmp(h->name, "transfer-encoding", 17)) {
            te++;
            FUZZ_CHECK(!strcasecmp(h->value, "chunked"));
        }
    }
    FUZZ_CHECK(hosts <= 1);
    if (req->http_minor == 1)
        FUZZ_CHECK(hosts == 1);
    FUZZ_CHECK(te <= 1);
    if (te)
        FUZZ_CHECK(req->http_minor == 1 && req->content_length == UINT64_MAX);
    /* without a body every byte of the request is framing */
    if (!te && (req->content_length == UINT64_MAX || req->content_length == 0)) {
        for (size_t k = 0; k < rawlen; k++) {
            if (raw[k] != '\n')
                continue;
            FUZZ_CHECK(k > 0 && raw[k - 1] == '\r');
            if (k + 1 < rawlen)
                FUZZ_CHECK(raw[k + 1] != ' ' && raw[k + 1] != '\t');
        }
    }
}

static void run(const uint8_t *data, size_t size, size_t header_max, unsigned count_max,
                size_t body_max, uint32_t seed, bool whole, struct outcome *out)
{
    struct fuzz_ctx fc = {.body_max = body_max, .wait_bits = whole ? 0 : seed * 2654435761u};
    struct gh_reqparser p;
    gh_reqparser_init(&p, header_max, count_max, on_headers, &fc);
    size_t off = 0, req_start = 0;
    unsigned done = 0;
    bool failed = false;
    uint64_t digest = 14695981039346656037ull;
    while (off < size && !failed) {
        /* piece sizes from a tiny generator: mostly small, sometimes all */
        seed = seed * 1103515245u + 12345u;
        size_t piece = whole || (seed >> 16) % 8 == 0 ? size - off : 1 + (seed >> 16) % 23;
        if (piece > size - off)
            piece = size - off;
        char *buf = malloc(piece);
        FUZZ_CHECK(buf);
        memcpy(buf, data + off, piece);
        size_t poff = 0;
        while (poff < piece) {
            size_t consumed = 0;
            enum gh_parse_result r = gh_reqparser_feed(&p, buf + poff, piece - poff, &consumed);
            FUZZ_CHECK(consumed <= piece - poff);
            poff += consumed;
            if (r == GH_PARSE_WAIT) {
                /* the caller's answer is ready: a feed of no bytes */
                FUZZ_CHECK(fc.waited);
                size_t none = 1;
                r = gh_reqparser_feed(&p, "", 0, &none);
                FUZZ_CHECK(none == 0 && r != GH_PARSE_WAIT);
                if (r == GH_PARSE_AGAIN)
                    continue; /* the rest of the piece */
            }
            if (r == GH_PARSE_DONE) {
                FUZZ_CHECK(!gh_reqparser_in_headers(&p));
                struct gh_http_req *req = gh_reqparser_take(&p);
                FUZZ_CHECK(req);
                check_request(req);
                check_strict(req, data + req_start, off + poff - req_start);
                req_start = off + poff;
                digest = mix(digest, &req->method, sizeof req->method);
                digest = mix(digest, req->url, strlen(req->url));
                for (unsigned i = 0; i < req->nheaders; i++) {
                    digest = mix(digest, req->headers[i].name, req->headers[i].name_len);
                    digest = mix(digest, req->headers[i].value, req->headers[i].value_len);
                }
                digest = mix(digest, req->body.data, req->body.len);
                gh_http_req_free(req);
                gh_reqparser_next(&p);
                done++;
                continue;
            }
            if (r == GH_PARSE_ERROR) {
                FUZZ_CHECK(p.error_status >= 400 && p.error_status < 600);
                /* an error is final */
                size_t c2 = 1;
                FUZZ_CHECK(gh_reqparser_feed(&p, buf, piece, &c2) == GH_PARSE_ERROR && c2 == 0);
                failed = true;
                break;
            }
            FUZZ_CHECK(r == GH_PARSE_AGAIN);
            FUZZ_CHECK(poff == piece); /* AGAIN means every byte was used */
        }
        free(buf);
        off += piece;
    }
    FUZZ_CHECK(fc.calls >= done);
    out->done = done;
    out->error_status = failed ? p.error_status : 0;
    out->digest = digest;
    gh_reqparser_dispose(&p);
    /* really free the recycled requests, so ASan sees any later use */
    gh_http_req_cache_flush();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    router_once();
    size_t header_max = 64 + (size_t)data[0] * 32; /* 64 .. 8224 */
    unsigned count_max = 1 + data[1] % 40;
    size_t body_max = (size_t)data[2] * 8;
    uint32_t seed = data[3] | 1u;
    data += 4;
    size -= 4;
    struct outcome pieces, whole;
    run(data, size, header_max, count_max, body_max, seed, false, &pieces);
    run(data, size, header_max, count_max, body_max, seed, true, &whole);
    /* where the bytes are cut changes nothing that is accepted; which
     * refusal comes first may (a partial field name counts against the
     * caps at the end of a piece, while llhttp refuses it whole) */
    FUZZ_CHECK(pieces.done == whole.done);
    FUZZ_CHECK(!pieces.error_status == !whole.error_status);
    FUZZ_CHECK(pieces.digest == whole.digest);
    return 0;
}
