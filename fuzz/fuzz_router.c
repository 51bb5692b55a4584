/* This module implements the libFuzzer harness of the router's path
 * matching and percent-decoding (http/router.h). Beyond memory safety it
 * checks that a decoded parameter never escapes its route (no '/' and no
 * NUL in it, so it names one segment and ends where C strings end), that a
 * match keeps the route's shape (as many segments, literal segments
 * equal), that decoding never grows its input, leaves text without '%'
 * as it is and undoes encoding, and that re-encoding the parameters of a
 * match into the pattern matches the same route with the same values. */
#include "http/router.h"

#include <http_parser.h> /* enum http_method */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invariant.h"

#define PATH_MAX_LEN 512

static void h_noop(struct gh_http_req *req) { (void)req; }

static struct gh_router router;

static void router_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    static const char *const routes[][2] = {
        {"GET", "/"},
        {"GET", "/static/{name}"},
        {"GET", "/css/{name}"},
        {"GET", "/js/{name}"},
        {"GET", "/api/keys/{id}"},
        {"DELETE", "/api/keys/{id}"},
        {"POST", "/api/users/{user}/keys/{key}"},
        {"PUT", "/admin/v1/quotas/{kind}/{id}"},
        {"GET", "/docs/"},
        {"GET", "/status"},
    };
    gh_router_init(&router);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        FUZZ_CHECK(gh_router_add(&router, routes[i][0], routes[i][1], h_noop, NULL));
}

static size_t count_char(const char *s, size_t n, char c)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == c;
    return k;
}

/* Percent-encodes every byte but unreserved ones (RFC 3986 2.3). */
static size_t encode(const char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            (ch && strchr("-._~", ch))) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return o;
}

static void check_decode(const char *seg, size_t n)
{
    char out[PATH_MAX_LEN + 1], enc[3 * PATH_MAX_LEN + 1], back[3 * PATH_MAX_LEN + 1];
    size_t olen = 0;
    int rc = gh_router_decode(seg, n, out, &olen);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    FUZZ_CHECK(olen <= n);
    FUZZ_CHECK(out[olen] == '\0');
    if (rc == 0)
        FUZZ_CHECK(!memchr(out, '/', olen) && strlen(out) == olen);
    else
        FUZZ_CHECK(memchr(out, '/', olen) || memchr(out, '\0', olen));
    if (!memchr(seg, '%', n)) /* nothing to decode: identity */
        FUZZ_CHECK(olen == n && !memcmp(out, seg, n));
    /* decoding undoes encoding, whatever the bytes */
    size_t elen = encode(seg, n, enc);
    size_t blen = 0;
    int brc = gh_router_decode(enc, elen, back, &blen);
    FUZZ_CHECK(blen == n && !memcmp(back, seg, n));
    FUZZ_CHECK(brc == (memchr(seg, '/', n) || memchr(seg, '\0', n) ? GH_EINVAL : 0));
}

static void check_match(int method, const char *path)
{
    struct gh_arena arena;
    gh_arena_init(&arena, 1u << 16);
    const struct gh_route *rt = NULL;
    const char *params[GH_ROUTE_MAX_PARAMS];
    unsigned np = 0;
    char allow[128];
    enum gh_match m =
        gh_router_match(&router, method, path, &arena, &rt, params, &np, allow, sizeof allow);
    FUZZ_CHECK(m == GH_MATCH_OK || m == GH_MATCH_NOT_FOUND || m == GH_MATCH_BAD_METHOD);
    if (m == GH_MATCH_BAD_METHOD)
        FUZZ_CHECK(allow[0] && strlen(allow) < sizeof allow);
    if (m != GH_MATCH_OK) {
        gh_arena_dispose(&arena);
        return;
    }
    FUZZ_CHECK(rt);
    /* the shape of the route: as many segments, literal ones equal, one
     * parameter per {name}, each one segment of its own */
    size_t plen = strlen(path), tlen = strlen(rt->pattern);
    FUZZ_CHECK(count_char(path, plen, '/') == count_char(rt->pattern, tlen, '/'));
    FUZZ_CHECK(np == count_char(rt->pattern, tlen, '{'));
    char rebuilt[3 * PATH_MAX_LEN + 64];
    size_t o = 0;
    unsigned pi = 0;
    const char *s = path + 1;
    for (unsigned i = 0; i < rt->nsegs; i++) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        rebuilt[o++] = '/';
        if (rt->segs[i][0] == '{') {
            const char *v = params[pi++];
            size_t vl = strlen(v);
            FUZZ_CHECK(vl > 0 && vl <= len);
            FUZZ_CHECK(!strchr(v, '/'));
            o += encode(v, vl, rebuilt + o);
        } else {
            FUZZ_CHECK(len == rt->seglen[i] && !memcmp(s, rt->segs[i], len));
            memcpy(rebuilt + o, s, len);
            o += len;
        }
        s += len + (end ? 1 : 0);
    }
    if (o == 0)
        rebuilt[o++] = '/'; /* the route "/" has no segments */
    rebuilt[o] = '\0';
    /* re-encoded, the parameters lead to the same route and values */
    const struct gh_route *rt2 = NULL;
    const char *params2[GH_ROUTE_MAX_PARAMS];
    unsigned np2 = 0;
    FUZZ_CHECK(gh_router_match(&router, method, rebuilt, &arena, &rt2, params2, &np2, allow,
                          sizeof allow) == GH_MATCH_OK);
    FUZZ_CHECK(rt2 == rt && np2 == np);
    for (unsigned i = 0; i < np; i++)
        FUZZ_CHECK(!strcmp(params[i], params2[i]));
    gh_arena_dispose(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > PATH_MAX_LEN)
        return 0;
    router_once();
    static const int methods[] = {HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_DELETE, HTTP_PUT};
    int method = methods[data[0] % (sizeof methods / sizeof methods[0])];
    data++;
    size--;
    /* a path as the parser hands it over: from '/', no NUL, no query */
    char path[PATH_MAX_LEN + 2];
    size_t n = 0;
    path[n++] = '/';
    for (size_t i = 0; i < size; i++) {
        char c = (char)data[i];
        if (c == '\0' || c == '?' || c == '#')
            break;
        path[n++] = c;
    }
    path[n] = '\0';
    check_match(method, path);
    /* every segment through the decoder on its own */
    const char *s = path + 1;
    for (;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        check_decode(s, len);
        if (!end)
            break;
        s = end + 1;
    }
    /* and the raw bytes, NUL and '/' included */
    check_decode((const char *)data, size);
    return 0;
}
