/* Unit tests of the PROXY protocol parser and the X-Forwarded-For walk
 * (http/proxy.h, shield/proxy.h): v1 TCP4/TCP6/UNKNOWN, v2 INET/INET6/LOCAL/UNSPEC
 * with TLVs, every prefix of a valid header asking for more, malformed
 * headers, and XFF with trusted and untrusted hops. */
#include "test_util.h"

#include "http/proxy.h"
#include "shield/ipset.h"
#include "shield/proxy.h"

#include <arpa/inet.h>
#include <sys/socket.h>

static void fmt(const struct gh_addr *a, char *out, size_t n)
{
    inet_ntop(a->family, a->bytes, out, (socklen_t)n);
}

/* Every strict prefix of a complete header must ask for more. */
static void prefixes_need_more(const uint8_t *h, size_t len)
{
    struct gh_proxy_result r;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(gh_proxy_parse(h, i, &r), GH_PROXY_NEED_MORE);
}

static void v1_tcp4_tcp6_unknown(void **state)
{
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    struct gh_proxy_result r;
    char t[64];
    assert_int_equal(gh_proxy_parse((const uint8_t *)h, strlen(h), &r), GH_PROXY_DONE);
    assert_int_equal(r.version, 1);
    assert_int_equal(r.consumed, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"));
    assert_true(r.has_source);
    fmt(&r.src, t, sizeof t);
    assert_string_equal(t, "192.0.2.1");
    fmt(&r.dst, t, sizeof t);
    assert_string_equal(t, "198.51.100.2");
    assert_int_equal(r.src_port, 56324);
    assert_int_equal(r.dst_port, 443);
    prefixes_need_more((const uint8_t *)h, r.consumed);

    h = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    assert_int_equal(gh_proxy_parse((const uint8_t *)h, strlen(h), &r), GH_PROXY_DONE);
    assert_int_equal(r.src.family, AF_INET6);
    fmt(&r.src, t, sizeof t);
    assert_string_equal(t, "2001:db8::1");
    assert_int_equal(r.src_port, 65535);
    /* a v4-mapped source becomes IPv4 */
    h = "PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n";
    assert_int_equal(gh_proxy_parse((const uint8_t *)h, strlen(h), &r), GH_PROXY_DONE);
    assert_int_equal(r.src.family, AF_INET);

    h = "PROXY UNKNOWN\r\n";
    assert_int_equal(gh_proxy_parse((const uint8_t *)h, strlen(h), &r), GH_PROXY_DONE);
    assert_false(r.has_source);
    assert_int_equal(r.consumed, strlen(h));
    h = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_int_equal(gh_proxy_parse((const uint8_t *)h, strlen(h), &r), GH_PROXY_DONE);
    assert_false(r.has_source);
}

static void v1_malformed(void **state)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 9\r\n",
        "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n",
        "PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
        "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
        "PROXY TCP4 192.0.2.1\r198.51.100.2 1 2\r\n",
        "PROXY \r\n",
        "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n",
    };
    struct gh_proxy_result r;
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        enum gh_proxy_status st = gh_proxy_parse((const uint8_t *)bad[i], strlen(bad[i]), &r);
        if (st != GH_PROXY_INVALID)
            print_error("accepted: %s\n", bad[i]);
        assert_int_equal(st, GH_PROXY_INVALID);
    }
    /* no CRLF within 107 bytes */
    char longline[200];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "PROXY UNKNOWN ", 14);
    assert_int_equal(gh_proxy_parse((const uint8_t *)longline, 106, &r), GH_PROXY_NEED_MORE);
    assert_int_equal(gh_proxy_parse((const uint8_t *)longline, 107, &r), GH_PROXY_INVALID);
    assert_int_equal(gh_proxy_parse((const uint8_t *)longline, 200, &r), GH_PROXY_INVALID);
}

static size_t v2_header(uint8_t *b, uint8_t vercmd, uint8_t fam, const uint8_t *addr,
                        size_t alen, size_t tlv)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(b, sig, 12);
    b[12] = vercmd;
    b[13] = fam;
    size_t body = alen + tlv;
    b[14] = (uint8_t)(body >> 8);
    b[15] = (uint8_t)body;
    if (alen)
        memcpy(b + 16, addr, alen);
    memset(b + 16 + alen, 0xEE, tlv);
    return 16 + body;
}

static void v2_families(void **state)
{
    uint8_t b[600];
    struct gh_proxy_result r;
    char t[64];
    const uint8_t a4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB};
    size_t n = v2_header(b, 0x21, 0x11, a4, sizeof a4, 7);
    memcpy(b + n, "GET /", 5);
    assert_int_equal(gh_proxy_parse(b, n + 5, &r), GH_PROXY_DONE);
    assert_int_equal(r.version, 2);
    assert_int_equal(r.consumed, n);
    assert_true(r.has_source);
    fmt(&r.src, t, sizeof t);
    assert_string_equal(t, "192.0.2.1");
    assert_int_equal(r.src_port, 56324);
    assert_int_equal(r.dst_port, 443);
    prefixes_need_more(b, n);

    uint8_t a6[36] = {0x20, 0x01, 0x0d, 0xb8};
    a6[15] = 1;
    a6[16] = 0x20;
    a6[17] = 0x01;
    a6[31] = 2;
    a6[32] = 0x30;
    a6[33] = 0x39;
    n = v2_header(b, 0x21, 0x21, a6, sizeof a6, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_DONE);
    fmt(&r.src, t, sizeof t);
    assert_string_equal(t, "2001:db8::1");
    assert_int_equal(r.src_port, 12345);

    /* LOCAL: the balancer's health check, no source */
    n = v2_header(b, 0x20, 0x00, NULL, 0, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_DONE);
    assert_false(r.has_source);
    assert_int_equal(r.consumed, 16);
    /* PROXY with UNSPEC, and with UNIX addresses */
    n = v2_header(b, 0x21, 0x00, NULL, 0, 4);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_DONE);
    assert_false(r.has_source);
    uint8_t unixa[216] = {0};
    n = v2_header(b, 0x21, 0x31, unixa, sizeof unixa, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_DONE);
    assert_false(r.has_source);

    /* malformed: version, command, family, short addresses, too long */
    n = v2_header(b, 0x11, 0x11, a4, sizeof a4, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_INVALID);
    n = v2_header(b, 0x22, 0x11, a4, sizeof a4, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_INVALID);
    n = v2_header(b, 0x21, 0x41, a4, sizeof a4, 0);
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_INVALID);
    n = v2_header(b, 0x21, 0x21, a4, sizeof a4, 0); /* INET6 with 12 bytes */
    assert_int_equal(gh_proxy_parse(b, n, &r), GH_PROXY_INVALID);
    v2_header(b, 0x21, 0x11, a4, sizeof a4, 0);
    b[14] = 0xff; /* 65 KB announced */
    assert_int_equal(gh_proxy_parse(b, 16, &r), GH_PROXY_INVALID);
    /* a broken signature */
    v2_header(b, 0x21, 0x11, a4, sizeof a4, 0);
    b[5] = 0x0E;
    assert_int_equal(gh_proxy_parse(b, 28, &r), GH_PROXY_INVALID);
    assert_int_equal(gh_proxy_parse(b, 4, &r), GH_PROXY_NEED_MORE); /* still a prefix */
    assert_int_equal(gh_proxy_parse(b, 6, &r), GH_PROXY_INVALID);
}

static struct gh_addr A(const char *s)
{
    struct gh_addr a;
    assert_int_equal(gh_proxy_parse_addr(s, strlen(s), &a), 0);
    return a;
}

static void xff(void **state)
{
    struct gh_cidr tr[2];
    assert_int_equal(gh_cidr_parse("10.0.0.0/8", 10, &tr[0]), 0);
    assert_int_equal(gh_cidr_parse("2001:db8:ffff::/48", 18, &tr[1]), 0);
    struct gh_ipset *trusted = gh_ipset_build(tr, 2);
    struct gh_addr lb = A("10.0.0.5"), stranger = A("203.0.113.50"), out;
    char t[64];
#define XFF(v, peer) gh_proxy_xff((v), strlen(v), (peer), trusted, &out)
    /* from an untrusted peer the header means nothing */
    assert_false(XFF("192.0.2.1", &stranger));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "203.0.113.50");
    /* one hop */
    assert_true(XFF("192.0.2.1", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "192.0.2.1");
    /* the client forged entries on the left: the rightmost untrusted wins */
    assert_true(XFF("1.1.1.1, 8.8.8.8, 192.0.2.1, 10.9.9.9", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "192.0.2.1");
    /* ports and IPv6 forms */
    assert_true(XFF("[2001:db8::7]:443,10.1.1.1:80", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "2001:db8::7");
    assert_true(XFF(" 2001:db8::8 ", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "2001:db8::8");
    /* garbage stops the walk at the trusted hop to its right */
    assert_true(XFF("192.0.2.1, unknown, 10.2.2.2", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "10.2.2.2");
    assert_false(XFF("not an address", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "10.0.0.5");
    assert_false(XFF("", &lb));
    /* everything trusted: the leftmost */
    assert_true(XFF("10.3.3.3, 10.4.4.4", &lb));
    fmt(&out, t, sizeof t);
    assert_string_equal(t, "10.3.3.3");
    /* no trusted list: ignored */
    assert_false(gh_proxy_xff("192.0.2.1", 9, &lb, NULL, &out));
#undef XFF
    struct gh_addr x;
    static const char *bad[] = {"", "1.2.3.4:", "1.2.3.4:99999", "[2001:db8::1", "[1.2.3.4]",
                                "2001:db8::1]:80", "1.2.3"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++)
        assert_int_equal(gh_proxy_parse_addr(bad[i], strlen(bad[i]), &x), GH_EINVAL);
    gh_ipset_unref(trusted);
}

static void assert_addr(const struct gh_addr *a, const char *want)
{
    char t[64];
    fmt(a, t, sizeof t);
    assert_string_equal(t, want);
}

/* Several X-Forwarded-For lines (issue 10 item 9): joined in order and
 * walked from the right, so the line a trusted proxy appended last is read
 * first and a client's forged line before it counts only past trusted hops. */
static void xff_several_lines(void **state)
{
    struct gh_cidr tr[1];
    assert_int_equal(gh_cidr_parse("127.0.0.1/32", 12, &tr[0]), 0);
    struct gh_ipset *trusted = gh_ipset_build(tr, 1);
    struct gh_addr lb = A("127.0.0.1"), stranger = A("203.0.113.50"), out;
    struct gh_http_header h[5];
    struct gh_http_req req = {.headers = h};
#define HDR(i, n, v) (h[i] = (struct gh_http_header){(n), (v), strlen(n), strlen(v)})
    /* forged first, real second (HAProxy "option forwardfor" appends) */
    HDR(0, "Host", "x");
    HDR(1, "X-Forwarded-For", "198.51.100.99");
    HDR(2, "x-forwarded-for", "192.0.2.1");
    req.nheaders = 3;
    assert_true(gh_proxy_xff_req(&req, &lb, trusted, &out));
    assert_addr(&out, "192.0.2.1");
    /* the same as one joined line */
    assert_true(gh_proxy_xff("198.51.100.99, 192.0.2.1", 24, &lb, trusted, &out));
    assert_addr(&out, "192.0.2.1");
    /* a trusted hop at the start of the last line: the walk goes on into
     * the line before it, past other fields between them */
    HDR(2, "X-Forwarded-For", "127.0.0.1");
    HDR(3, "Accept", "*/*");
    HDR(4, "X-Forwarded-For", "127.0.0.1, 127.0.0.1");
    req.nheaders = 5;
    assert_true(gh_proxy_xff_req(&req, &lb, trusted, &out));
    assert_addr(&out, "198.51.100.99");
    /* garbage in the last line stops the walk at the trusted hop to its right */
    HDR(4, "X-Forwarded-For", "junk, 127.0.0.1");
    assert_true(gh_proxy_xff_req(&req, &lb, trusted, &out));
    assert_addr(&out, "127.0.0.1");
    /* an empty last line is an empty element: the walk stops there */
    HDR(4, "X-Forwarded-For", "");
    assert_false(gh_proxy_xff_req(&req, &lb, trusted, &out));
    assert_addr(&out, "127.0.0.1");
    /* from an untrusted peer, or without a list, every line means nothing */
    HDR(4, "X-Forwarded-For", "192.0.2.7");
    assert_false(gh_proxy_xff_req(&req, &stranger, trusted, &out));
    assert_addr(&out, "203.0.113.50");
    assert_false(gh_proxy_xff_req(&req, &lb, NULL, &out));
    /* no X-Forwarded-For at all */
    req.nheaders = 1;
    assert_false(gh_proxy_xff_req(&req, &lb, trusted, &out));
#undef HDR
    gh_ipset_unref(trusted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4_tcp6_unknown),
        cmocka_unit_test(v1_malformed),
        cmocka_unit_test(v2_families),
        cmocka_unit_test(xff),
        cmocka_unit_test(xff_several_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
