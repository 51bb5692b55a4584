/* Unit tests of the request parser (http/parser.h), driven without
 * sockets: simple and pipelined requests, every split point, bodies
 * (Content-Length and chunked) against body_max, the 431/400/505/417
 * refusals, query splitting and keep-alive. */
#include "test_util.h"

#include "http/parser.h"

#include <http_parser.h> /* enum http_method */

#define HEADER_MAX   4096
#define HEADER_COUNT 16

struct cbctx {
    size_t body_max;
    int ret;   /* what on_headers answers */
    int calls; /* how often it ran */
    bool headers_seen_complete;
};

/* Plays the part of conn.c's on_headers: sets the body cap. */
static int on_headers(struct gh_http_req *req, void *data)
{
    struct cbctx *c = data;
    c->calls++;
    req->body_max = c->body_max;
    /* headers and path are already final when this runs */
    c->headers_seen_complete = req->path && req->path[0] == '/';
    return c->ret;
}

struct fx {
    struct gh_reqparser p;
    struct cbctx cb;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->cb.body_max = 1024;
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    gh_reqparser_dispose(&f->p);
    free(f);
    return 0;
}

/* Feeds a whole string once. */
static enum gh_parse_result feed(struct fx *f, const char *s, size_t *consumed)
{
    size_t c;
    enum gh_parse_result r = gh_reqparser_feed(&f->p, s, strlen(s), consumed ? consumed : &c);
    return r;
}

/* Feeds s and expects one complete request consuming all of it. */
static struct gh_http_req *parse_one(struct fx *f, const char *s)
{
    size_t consumed = 0;
    enum gh_parse_result r = feed(f, s, &consumed);
    if (r != GH_PARSE_DONE) {
        print_error("result %d, status %d (%s)\n", r, f->p.error_status,
                    f->p.error_msg ? f->p.error_msg : "");
        fail();
    }
    assert_int_equal(consumed, strlen(s));
    struct gh_http_req *req = gh_reqparser_take(&f->p);
    assert_non_null(req);
    gh_reqparser_next(&f->p);
    return req;
}

/* Feeds s and expects an error with status. */
static void expect_error(struct fx *f, const char *s, int status)
{
    size_t consumed = 0;
    enum gh_parse_result r = feed(f, s, &consumed);
    if (r != GH_PARSE_ERROR || f->p.error_status != status) {
        print_error("result %d, status %d, want error %d, input \"%.60s\"\n", r,
                    f->p.error_status, status, s);
        fail();
    }
    assert_true(consumed <= strlen(s));
    /* an error is final */
    assert_int_equal(gh_reqparser_feed(&f->p, "GET / HTTP/1.1\r\n\r\n", 18, &consumed),
                     GH_PARSE_ERROR);
    assert_int_equal(consumed, 0);
}

static const char *hdr(const struct gh_http_req *req, const char *name)
{
    return gh_http_header_get(req, name, NULL);
}

static void simple_get(void **state)
{
    struct fx *f = *state;
    assert_false(gh_reqparser_in_headers(&f->p));
    struct gh_http_req *req = parse_one(f, "GET /hello?x=1&y=%41 HTTP/1.1\r\n"
                                           "Host: example.com\r\n"
                                           "User-Agent: test/1.0  \r\n"
                                           "X-Empty:\r\n"
                                           "accept: */*\r\n"
                                           "\r\n");
    assert_int_equal(f->cb.calls, 1);
    assert_true(f->cb.headers_seen_complete);
    assert_int_equal(req->method, HTTP_GET);
    assert_string_equal(req->method_name, "GET");
    assert_string_equal(req->url, "/hello?x=1&y=%41");
    assert_string_equal(req->path, "/hello");
    assert_string_equal(req->query, "x=1&y=%41");
    assert_int_equal(req->http_minor, 1);
    assert_true(req->keep_alive);
    assert_false(req->head);
    assert_false(req->expect_continue);
    assert_true(req->content_length == UINT64_MAX);
    assert_int_equal(req->body.len, 0);
    assert_int_equal(req->body_max, 1024);
    assert_int_equal(req->nheaders, 4);
    assert_string_equal(req->headers[0].name, "Host"); /* names keep their case, NUL-ended */
    assert_int_equal(req->headers[0].name_len, 4);
    assert_string_equal(hdr(req, "host"), "example.com");
    assert_string_equal(hdr(req, "HOST"), "example.com");
    assert_string_equal(hdr(req, "user-agent"), "test/1.0"); /* trailing spaces trimmed */
    size_t len = 99;
    assert_string_equal(gh_http_header_get(req, "x-empty", &len), "");
    assert_int_equal(len, 0);
    assert_string_equal(hdr(req, "Accept"), "*/*");
    assert_null(hdr(req, "cookie"));
    char q[16];
    assert_int_equal(gh_http_query_get(req, "y", q, sizeof q), 0);
    assert_string_equal(q, "A");
    gh_http_req_free(req);
}

static void head_and_methods(void **state)
{
    struct fx *f = *state;
    struct gh_http_req *req = parse_one(f, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(req->method, HTTP_HEAD);
    assert_true(req->head);
    gh_http_req_free(req);
    req = parse_one(f, "DELETE /api/keys/1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(req->method, HTTP_DELETE);
    assert_string_equal(req->method_name, "DELETE");
    assert_false(req->head);
    gh_http_req_free(req);
}

static void pipelined(void **state)
{
    struct fx *f = *state;
    const char *all = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                      "GET /c?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const char *want_path[] = {"/a", "/b", "/c"};
    size_t off = 0, len = strlen(all);
    for (int i = 0; i < 3; i++) {
        size_t consumed = 0;
        assert_int_equal(gh_reqparser_feed(&f->p, all + off, len - off, &consumed),
                         GH_PARSE_DONE);
        assert_true(consumed > 0 && consumed <= len - off);
        off += consumed;
        struct gh_http_req *req = gh_reqparser_take(&f->p);
        assert_non_null(req);
        assert_null(gh_reqparser_take(&f->p)); /* taken once */
        gh_reqparser_next(&f->p);
        assert_string_equal(req->path, want_path[i]);
        if (i == 1) {
            assert_int_equal(req->body.len, 5);
            assert_memory_equal(req->body.data, "hello", 5);
            assert_true(req->content_length == 5);
            assert_int_equal(req->method, HTTP_POST);
        } else {
            assert_int_equal(req->body.len, 0);
        }
        if (i == 2) {
            assert_false(req->keep_alive);
            assert_string_equal(req->query, "q");
        } else {
            assert_true(req->keep_alive);
        }
        gh_http_req_free(req);
    }
    assert_int_equal(off, len);
    assert_int_equal(f->cb.calls, 3);
}

/* The fields of a parsed request that the splitting test compares. */
static void check_reference(const struct gh_http_req *req)
{
    assert_int_equal(req->method, HTTP_POST);
    assert_string_equal(req->path, "/upload/item");
    assert_string_equal(req->query, "mode=fast");
    assert_int_equal(req->nheaders, 4);
    assert_string_equal(hdr(req, "host"), "example.org");
    assert_string_equal(hdr(req, "x-long-header-name"), "a value with  inner spaces");
    assert_string_equal(hdr(req, "transfer-encoding"), "chunked");
    assert_string_equal(hdr(req, "x-last"), "z");
    assert_int_equal(req->body.len, 16);
    assert_memory_equal(req->body.data, "hello, chunked!\n", 16);
    assert_true(req->keep_alive);
}

static const char split_req[] = "POST /upload/item?mode=fast HTTP/1.1\r\n"
                                "Host: example.org\r\n"
                                "X-Long-Header-Name: a value with  inner spaces\r\n"
                                "Transfer-Encoding: chunked\r\n"
                                "X-Last: z\r\n"
                                "\r\n"
                                "7\r\nhello, \r\n"
                                "9;ext=1\r\nchunked!\n\r\n"
                                "0\r\n\r\n";

static void split_at_every_byte(void **state)
{
    struct fx *f = *state;
    size_t len = sizeof split_req - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        size_t consumed = 0;
        enum gh_parse_result r = gh_reqparser_feed(&f->p, split_req, cut, &consumed);
        if (cut < len) {
            assert_int_equal(r, GH_PARSE_AGAIN);
            assert_int_equal(consumed, cut);
            r = gh_reqparser_feed(&f->p, split_req + cut, len - cut, &consumed);
            assert_int_equal(consumed, len - cut);
        } else {
            assert_int_equal(consumed, len);
        }
        assert_int_equal(r, GH_PARSE_DONE);
        struct gh_http_req *req = gh_reqparser_take(&f->p);
        gh_reqparser_next(&f->p);
        check_reference(req);
        gh_http_req_free(req);
    }
    /* and one byte at a time */
    size_t i = 0;
    enum gh_parse_result r = GH_PARSE_AGAIN;
    for (; i < len; i++) {
        size_t consumed = 0;
        r = gh_reqparser_feed(&f->p, split_req + i, 1, &consumed);
        assert_int_equal(consumed, 1);
        if (i + 1 < len) {
            assert_int_equal(r, GH_PARSE_AGAIN);
            /* in_headers until the blank line, then in_body */
            bool body_started = i + 1 >= (size_t)(strstr(split_req, "\r\n\r\n") + 4 - split_req);
            assert_int_equal(gh_reqparser_in_headers(&f->p), !body_started);
            assert_int_equal(gh_reqparser_in_body(&f->p), body_started);
        }
    }
    assert_int_equal(r, GH_PARSE_DONE);
    struct gh_http_req *req = gh_reqparser_take(&f->p);
    gh_reqparser_next(&f->p);
    check_reference(req);
    gh_http_req_free(req);
    assert_false(gh_reqparser_in_headers(&f->p));
    assert_false(gh_reqparser_in_body(&f->p));
}

static void content_length_body(void **state)
{
    struct fx *f = *state;
    struct gh_http_req *req = parse_one(f, "PUT /k HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
                                           "hello world");
    assert_true(req->content_length == 11);
    assert_int_equal(req->body.len, 11);
    assert_string_equal(req->body.data, "hello world");
    gh_http_req_free(req);
    /* exactly body_max is fine */
    f->cb.body_max = 4;
    req = parse_one(f, "POST /k HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd");
    assert_string_equal(req->body.data, "abcd");
    gh_http_req_free(req);
    /* a body arriving in pieces */
    size_t consumed;
    assert_int_equal(feed(f, "POST /k HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab", &consumed),
                     GH_PARSE_AGAIN);
    assert_true(gh_reqparser_in_body(&f->p));
    assert_int_equal(feed(f, "cdGET", &consumed), GH_PARSE_DONE);
    assert_int_equal(consumed, 2); /* stops at the end of this request */
    req = gh_reqparser_take(&f->p);
    gh_reqparser_next(&f->p);
    assert_string_equal(req->body.data, "abcd");
    gh_http_req_free(req);
}

static void chunked_body(void **state)
{
    struct fx *f = *state;
    struct gh_http_req *req =
        parse_one(f, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n");
    assert_int_equal(req->body.len, 21);
    assert_string_equal(req->body.data, "hello world0123456789");
    assert_true(req->content_length == UINT64_MAX);
    gh_http_req_free(req);
    /* a zero-length chunked body */
    req = parse_one(f, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_int_equal(req->body.len, 0);
    gh_http_req_free(req);
}

static void body_over_max_content_length(void **state)
{
    struct fx *f = *state;
    f->cb.body_max = 10;
    /* refused when announced, before any body byte */
    size_t consumed;
    enum gh_parse_result r = feed(f, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", &consumed);
    assert_int_equal(r, GH_PARSE_ERROR);
    assert_int_equal(f->p.error_status, 413);
    assert_int_equal(f->cb.calls, 1);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    expect_error(f, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000\r\n\r\n", 413);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* body_max 0: any announced body is too large, an empty one is fine */
    f->cb.body_max = 0;
    struct gh_http_req *req = parse_one(f, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    gh_http_req_free(req);
    expect_error(f, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", 413);
}

static void body_over_max_chunked(void **state)
{
    struct fx *f = *state;
    f->cb.body_max = 10;
    size_t consumed;
    assert_int_equal(feed(f, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n",
                          &consumed),
                     GH_PARSE_AGAIN);
    assert_int_equal(feed(f, "5\r\nghijk\r\n0\r\n\r\n", &consumed), GH_PARSE_ERROR);
    assert_int_equal(f->p.error_status, 413);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* exactly 10 in chunks is fine */
    struct gh_http_req *req = parse_one(f, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           "6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n");
    assert_string_equal(req->body.data, "abcdefghij");
    gh_http_req_free(req);
    /* a huge chunk size announced is refused as its bytes come */
    expect_error(f, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\n0123456789A",
                 413);
}

static void headers_too_large(void **state)
{
    struct fx *f = *state;
    char big[HEADER_MAX + 200];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(big + n, 'v', HEADER_MAX);
    memcpy(big + n + HEADER_MAX, "\r\n\r\n", 5);
    expect_error(f, big, 431);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* a long URL counts too */
    n = snprintf(big, sizeof big, "GET /");
    memset(big + n, 'u', HEADER_MAX);
    memcpy(big + n + HEADER_MAX, " HTTP/1.1\r\n\r\n", 14);
    expect_error(f, big, 431);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* many small headers that together pass the cap, fed in pieces */
    size_t consumed;
    assert_int_equal(feed(f, "GET / HTTP/1.1\r\nHost: a\r\n", &consumed), GH_PARSE_AGAIN);
    enum gh_parse_result r = GH_PARSE_AGAIN;
    char line[600];
    memset(line, 'a', sizeof line);
    memcpy(line, "X-A: ", 5);
    memcpy(line + sizeof line - 3, "\r\n", 3);
    for (int i = 0; i < 12 && r == GH_PARSE_AGAIN; i++)
        r = feed(f, line, &consumed);
    assert_int_equal(r, GH_PARSE_ERROR);
    assert_int_equal(f->p.error_status, 431);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* just under the cap passes: url "/" (1) + "Host" "a" (5) + name (5) + value */
    n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(big + n, 'v', HEADER_MAX - 11);
    memcpy(big + n + HEADER_MAX - 11, "\r\n\r\n", 5);
    struct gh_http_req *req = parse_one(f, big);
    size_t vl;
    assert_non_null(gh_http_header_get(req, "x-big", &vl));
    assert_int_equal(vl, HEADER_MAX - 11);
    gh_http_req_free(req);
}

static void too_many_header_fields(void **state)
{
    struct fx *f = *state;
    char buf[2048];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HEADER_COUNT - 1; i++) /* and Host */
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-H%d: %d\r\n", i, i);
    snprintf(buf + n, sizeof buf - n, "\r\n");
    struct gh_http_req *req = parse_one(f, buf); /* exactly the max */
    assert_int_equal(req->nheaders, HEADER_COUNT);
    assert_string_equal(hdr(req, "x-h14"), "14");
    gh_http_req_free(req);
    snprintf(buf + n, sizeof buf - n, "X-One-More: 1\r\n\r\n");
    expect_error(f, buf, 431);
}

static void bad_request_lines(void **state)
{
    struct fx *f = *state;
    static const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET / XTTP/1.1\r\n\r\n",
        "GET  HTTP/1.1\r\nHost: a\r\n\r\n",
        "G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX(: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\nContent-Length: abc\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET http://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", /* absolute form: not a path */
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", /* control characters in a value */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        expect_error(f, bad[i], 400);
        gh_reqparser_dispose(&f->p);
        gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    }
    assert_int_equal(f->cb.calls, 0); /* none reached routing */
    /* a bad chunk size is found after the headers were routed */
    expect_error(f, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
}

/* RFC 9112 strictness (issue 10 item 11): each of these is a request
 * smuggling primitive behind a front end that reads it another way; each
 * is a 400 and nothing after it is parsed. */
static void smuggling_primitives_refused(void **state)
{
    struct fx *f = *state;
    static const char *bad[] = {
        /* obs-fold */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        /* bare LF: request line, field line, end of the header section */
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        /* Host: missing in HTTP/1.1, twice, malformed */
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        /* Transfer-Encoding on HTTP/1.0, or other than one "chunked" */
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        /* chunk data not followed by CRLF (the 204 + 200 of the issue) */
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabcXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        /* bare LF in chunk framing and at the end of the trailer section */
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\r\n y\r\n\r\n",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        /* whole, and split at every byte: the checks hold across pieces */
        size_t len = strlen(bad[i]);
        for (size_t cut = 0; cut <= len; cut++) {
            gh_reqparser_dispose(&f->p);
            gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
            size_t c1 = 0, c2 = 0;
            enum gh_parse_result r = gh_reqparser_feed(&f->p, bad[i], cut, &c1);
            if (r == GH_PARSE_AGAIN)
                r = gh_reqparser_feed(&f->p, bad[i] + cut, len - cut, &c2);
            if (r != GH_PARSE_ERROR || f->p.error_status != 400) {
                print_error("case %zu cut %zu: result %d status %d, want 400\n", i, cut, r,
                            f->p.error_status);
                fail();
            }
        }
    }
}

/* What RFC 9112 allows stays accepted. */
static void strict_still_accepts(void **state)
{
    struct fx *f = *state;
    static const char *good[] = {
        "GET / HTTP/1.0\r\n\r\n", /* HTTP/1.0 needs no Host */
        "GET / HTTP/1.1\r\nHost:\r\n\r\n", /* empty Host (no authority) */
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: xn--bcher-kva.example:443\r\n\r\n",
        "GET / HTTP/1.1\r\nhOsT: a\r\nX: caf\xc3\xa9 \t\r\n\r\n", /* obs-text */
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: x\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", /* RFC 9112 2.2: an empty line first */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(good); i++) {
        gh_reqparser_dispose(&f->p);
        gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
        gh_http_req_free(parse_one(f, good[i]));
    }
}

static void http2_version(void **state)
{
    struct fx *f = *state;
    size_t consumed;
    assert_int_equal(feed(f, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", &consumed), GH_PARSE_ERROR);
    assert_true(f->p.error_status == 505 || f->p.error_status == 400);
    assert_int_equal(f->cb.calls, 0);
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    /* the HTTP/2 connection preface is not a request either */
    assert_int_equal(feed(f, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &consumed), GH_PARSE_ERROR);
    assert_true(f->p.error_status == 505 || f->p.error_status == 400);
}

static void expect_header(void **state)
{
    struct fx *f = *state;
    struct gh_http_req *req = parse_one(f, "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                           "Content-Length: 0\r\n\r\n");
    assert_true(req->expect_continue);
    gh_http_req_free(req);
    req = parse_one(f, "POST /u HTTP/1.1\r\nHost: a\r\nexpect: 100-Continue\r\n\r\n");
    assert_true(req->expect_continue);
    gh_http_req_free(req);
    req = parse_one(f, "POST /u HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_false(req->expect_continue);
    gh_http_req_free(req);
    expect_error(f, "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
    assert_int_equal(f->cb.calls, 3); /* refused before routing */
    gh_reqparser_dispose(&f->p);
    gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    expect_error(f, "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-please\r\n\r\n", 417);
}

static void query_split(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *target, *path, *query;
    } cases[] = {
        {"/p", "/p", ""},
        {"/p?", "/p", ""},
        {"/p?a=1&b=2", "/p", "a=1&b=2"},
        {"/p?a=1?b", "/p", "a=1?b"},
        {"/p?a=1#frag", "/p", "a=1"},
        {"/p#frag", "/p", ""},
        {"/p#frag?not=query", "/p", ""},
        {"/a%2Fb/c?x=%20", "/a%2Fb/c", "x=%20"},
        {"/", "/", ""},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].target);
        struct gh_http_req *req = parse_one(f, buf);
        if (strcmp(req->path, cases[i].path) || strcmp(req->query, cases[i].query)) {
            print_error("%s: path \"%s\" query \"%s\", want \"%s\" \"%s\"\n", cases[i].target,
                        req->path, req->query, cases[i].path, cases[i].query);
            gh_http_req_free(req);
            fail();
        }
        gh_http_req_free(req);
    }
}

static void keep_alive_rules(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *req;
        bool keep_alive;
        unsigned minor;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", false, 1},
        {"GET / HTTP/1.0\r\n\r\n", false, 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        gh_reqparser_dispose(&f->p);
        gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
        struct gh_http_req *req = parse_one(f, cases[i].req);
        assert_int_equal(req->keep_alive, cases[i].keep_alive);
        assert_int_equal(req->http_minor, cases[i].minor);
        gh_http_req_free(req);
    }
}

static void on_headers_refusal(void **state)
{
    struct fx *f = *state;
    f->cb.ret = 404;
    size_t consumed;
    assert_int_equal(feed(f, "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n", &consumed), GH_PARSE_ERROR);
    assert_int_equal(f->p.error_status, 404);
    assert_int_equal(f->cb.calls, 1);
}

static void no_callback_means_no_body(void **state)
{
    struct gh_reqparser p;
    gh_reqparser_init(&p, HEADER_MAX, HEADER_COUNT, NULL, NULL);
    size_t consumed;
    const char *s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(gh_reqparser_feed(&p, s, strlen(s), &consumed), GH_PARSE_ERROR);
    assert_int_equal(p.error_status, 413); /* body_max stays 0 */
    gh_reqparser_dispose(&p);
}

static void dispose_mid_request(void **state)
{
    /* LeakSanitizer checks that a half-parsed request is freed */
    struct gh_reqparser p;
    struct cbctx cb = {.body_max = 100};
    gh_reqparser_init(&p, HEADER_MAX, HEADER_COUNT, on_headers, &cb);
    size_t consumed;
    const char *s = "POST / HTTP/1.1\r\nHost: a\r\nX-A: b\r\nContent-Len";
    assert_int_equal(gh_reqparser_feed(&p, s, strlen(s), &consumed), GH_PARSE_AGAIN);
    assert_true(gh_reqparser_in_headers(&p));
    gh_reqparser_dispose(&p);
    gh_reqparser_init(&p, HEADER_MAX, HEADER_COUNT, on_headers, &cb);
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\nabc";
    assert_int_equal(gh_reqparser_feed(&p, s, strlen(s), &consumed), GH_PARSE_AGAIN);
    assert_true(gh_reqparser_in_body(&p));
    gh_reqparser_dispose(&p);
    /* a request taken but a next one never started */
    gh_reqparser_init(&p, HEADER_MAX, HEADER_COUNT, on_headers, &cb);
    s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(gh_reqparser_feed(&p, s, strlen(s), &consumed), GH_PARSE_DONE);
    gh_reqparser_dispose(&p); /* not taken: dispose frees it */
}

static void recycled_request_is_clean(void **state)
{
    /* freed requests are recycled per thread: nothing of the previous one
     * may show through in the next */
    struct fx *f = *state;
    for (int round = 0; round < 40; round++) {
        struct gh_http_req *req = parse_one(f, "POST /first?a=b HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                               "X-Secret: s3cr3t\r\nContent-Length: 6\r\n"
                                               "\r\nsecret");
        assert_true(req->expect_continue);
        req->status = 404;
        req->responded = true;
        req->nparams = 2;
        req->handler_data = req;
        char *junk = gh_arena_alloc(&req->arena, 2000);
        assert_non_null(junk);
        memset(junk, 'J', 2000);
        gh_http_req_free(req);

        req = parse_one(f, "GET /second HTTP/1.0\r\n\r\n");
        assert_false(req->expect_continue);
        assert_int_equal(req->nheaders, 0);
        assert_null(hdr(req, "x-secret"));
        assert_int_equal(req->body.len, 0);
        assert_true(req->content_length == UINT64_MAX);
        assert_string_equal(req->query, "");
        assert_int_equal(req->status, 0);
        assert_false(req->responded);
        assert_int_equal(req->nparams, 0);
        assert_null(req->route);
        assert_null(req->cfg);
        assert_null(req->handler_data);
        assert_false(req->keep_alive);
        assert_int_equal(req->res_headers.len, 0);
        char *fresh = gh_arena_alloc(&req->arena, 16);
        assert_non_null(fresh);
        gh_http_req_free(req);
        /* nothing may follow a request that ends its connection */
        size_t consumed;
        assert_int_equal(feed(f, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &consumed),
                         GH_PARSE_ERROR);
        gh_reqparser_dispose(&f->p);
        gh_reqparser_init(&f->p, HEADER_MAX, HEADER_COUNT, on_headers, &f->cb);
    }
    gh_http_req_cache_flush();
}

/* on_headers may answer "ask me later" (GH_HEADERS_WAIT: conn.c's parked
 * headers, a credential read back): the request goes on from a feed of no
 * bytes. Without a body it completes there, and what follows it in the
 * stream stays for the next request; with one, the body's bytes come
 * after. */
static void headers_wait_then_go_on(void **state)
{
    struct fx *f = *state;
    size_t consumed = 0;
    const char *get = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    f->cb.ret = GH_HEADERS_WAIT;
    char two[256];
    snprintf(two, sizeof two, "%sGET /b HTTP/1.1\r\nHost: a\r\n\r\n", get);
    assert_int_equal(feed(f, two, &consumed), GH_PARSE_WAIT);
    assert_int_equal(consumed, strlen(get));
    assert_int_equal(gh_reqparser_feed(&f->p, "", 0, &consumed), GH_PARSE_WAIT);
    f->cb.ret = 0;
    assert_int_equal(gh_reqparser_feed(&f->p, "", 0, &consumed), GH_PARSE_DONE);
    assert_int_equal(f->cb.calls, 3);
    struct gh_http_req *req = gh_reqparser_take(&f->p);
    assert_string_equal(req->path, "/a");
    gh_http_req_free(req);
    gh_reqparser_next(&f->p);
    req = parse_one(f, two + strlen(get));
    assert_string_equal(req->path, "/b");
    gh_http_req_free(req);

    f->cb.ret = GH_HEADERS_WAIT;
    const char *post = "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
    assert_int_equal(feed(f, post, &consumed), GH_PARSE_WAIT);
    f->cb.ret = 0;
    assert_int_equal(gh_reqparser_feed(&f->p, "", 0, &consumed), GH_PARSE_AGAIN);
    assert_int_equal(feed(f, "hello", &consumed), GH_PARSE_DONE);
    assert_int_equal(consumed, 5);
    req = gh_reqparser_take(&f->p);
    assert_string_equal(req->path, "/c");
    assert_int_equal(req->body.len, 5);
    assert_memory_equal(req->body.data, "hello", 5);
    gh_http_req_free(req);
    gh_reqparser_next(&f->p);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(simple_get),
        T(head_and_methods),
        T(pipelined),
        T(split_at_every_byte),
        T(content_length_body),
        T(chunked_body),
        T(body_over_max_content_length),
        T(body_over_max_chunked),
        T(headers_too_large),
        T(too_many_header_fields),
        T(bad_request_lines),
        T(smuggling_primitives_refused),
        T(strict_still_accepts),
        T(http2_version),
        T(expect_header),
        T(query_split),
        T(keep_alive_rules),
        T(on_headers_refusal),
        T(headers_wait_then_go_on),
        cmocka_unit_test(no_callback_means_no_body),
        cmocka_unit_test(dispose_mid_request),
        T(recycled_request_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
