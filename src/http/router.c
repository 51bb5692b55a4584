/* This module implements the router of router.h: a linear scan over
 * pre-split patterns. With the few dozen routes gatehouse has this costs
 * less than hashing, and it keeps 405 answers (which need every method
 * that matches the path) simple. */
#include "http/router.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>

void gh_router_init(struct gh_router *r)
{
    memset(r, 0, sizeof *r);
}

static int method_from_name(const char *name)
{
    for (int m = 0; m < 64; m++) {
        const char *s = http_method_str((enum http_method)m);
        if (!s || !strcmp(s, "<unknown>"))
            break;
        if (!strcmp(s, name))
            return m;
    }
    return -1;
}

struct gh_route *gh_router_add(struct gh_router *r, const char *method, const char *pattern,
                               gh_http_handler handler, void *ctx)
{
    int m = method_from_name(method);
    if (m < 0 || r->n >= GH_ROUTER_MAX || pattern[0] != '/')
        return NULL;
    struct gh_route *rt = &r->routes[r->n];
    memset(rt, 0, sizeof *rt);
    rt->method = m;
    rt->pattern = pattern;
    rt->handler = handler;
    rt->ctx = ctx;
    rt->cls = GH_CLASS_ANON;
    rt->index = r->n;
    const char *p = pattern + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (rt->nsegs >= GH_ARRAY_LEN(rt->segs) || len > 255)
            return NULL;
        rt->segs[rt->nsegs] = p;
        rt->seglen[rt->nsegs] = (uint8_t)len;
        rt->nsegs++;
        p += len;
        if (*p == '/') {
            p++;
            /* "/docs/": the trailing slash is an empty last segment, so the
             * route matches "/docs/" and not "/docs" */
            if (!*p) {
                if (rt->nsegs >= GH_ARRAY_LEN(rt->segs))
                    return NULL;
                rt->segs[rt->nsegs] = p;
                rt->seglen[rt->nsegs] = 0;
                rt->nsegs++;
            }
        }
    }
    r->n++;
    return rt;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gh_router_decode(const char *seg, size_t len, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t k = 0; k < len; k++) {
        if (seg[k] == '%' && k + 2 < len) {
            int h1 = hexval(seg[k + 1]), h2 = hexval(seg[k + 2]);
            if (h1 >= 0 && h2 >= 0) {
                out[o++] = (char)(h1 * 16 + h2);
                k += 2;
                continue;
            }
        }
        out[o++] = seg[k]; /* a malformed escape stays as it is */
    }
    out[o] = '\0';
    *outlen = o;
    /* the path was split into segments before decoding: a decoded '/'
     * would be a segment boundary only the handler sees ("/static/
     * pages%2Findex.html"), and a NUL cuts every C string made of it */
    if (memchr(out, '/', o) || memchr(out, '\0', o))
        return GH_EINVAL;
    return 0;
}

/* Matches path segments against rt; params filled when arena is set. */
static bool match_path(const struct gh_route *rt, const char *path, struct gh_arena *arena,
                       const char **params, unsigned *nparams)
{
    const char *p = path + 1;
    unsigned np = 0;
    for (unsigned i = 0; i < rt->nsegs; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *seg = rt->segs[i];
        if (seg[0] == '{') {
            if (len == 0 || np >= GH_ROUTE_MAX_PARAMS)
                return false;
            if (arena) {
                char *v = gh_arena_alloc(arena, len + 1);
                size_t vlen;
                if (!v || gh_router_decode(p, len, v, &vlen))
                    return false;
                params[np] = v;
            }
            np++;
        } else if (len != rt->seglen[i] || memcmp(p, seg, len)) {
            return false;
        }
        p += len;
        if (*p == '/') {
            p++;
            if (!*p && i + 1 == rt->nsegs)
                return false; /* trailing slash: a different resource */
        } else if (i + 1 < rt->nsegs) {
            return false;
        }
    }
    if (*p)
        return false;
    if (nparams)
        *nparams = np;
    return true;
}

enum gh_match gh_router_match(const struct gh_router *r, int method, const char *path,
                              struct gh_arena *arena, const struct gh_route **route,
                              const char **params, unsigned *nparams, char *allow,
                              size_t allowlen)
{
    bool path_seen = false;
    size_t alen = 0;
    uint64_t listed = 0; /* methods already in allow, as bits */
    if (allowlen)
        allow[0] = '\0';
    for (unsigned i = 0; i < r->n; i++) {
        const struct gh_route *rt = &r->routes[i];
        if (!match_path(rt, path, NULL, NULL, NULL))
            continue;
        if (rt->method == method || (method == HTTP_HEAD && rt->method == HTTP_GET)) {
            if (!match_path(rt, path, arena, params, nparams))
                return GH_MATCH_NOT_FOUND;
            *route = rt;
            return GH_MATCH_OK;
        }
        path_seen = true;
        int ms[2] = {rt->method, rt->method == HTTP_GET ? HTTP_HEAD : -1};
        for (int k = 0; k < 2 && allowlen; k++) {
            if (ms[k] < 0 || ms[k] >= 64 || (listed & (1ull << ms[k])))
                continue;
            listed |= 1ull << ms[k];
            int n = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "",
                             http_method_str((enum http_method)ms[k]));
            if (n > 0 && (size_t)n < allowlen - alen)
                alen += (size_t)n;
        }
    }
    return path_seen ? GH_MATCH_BAD_METHOD : GH_MATCH_NOT_FOUND;
}
