/* The router: method and path to a handler, with {name} path parameters
 * ("/api/keys/{id}"). Built once on the main thread before the workers
 * start, read-only afterwards, so any thread may match against it. */
#pragma once

#include "http/http.h"

typedef void (*gh_http_handler)(struct gh_http_req *req);
/* A listener's request filter: runs on the worker after routing, before
 * the handler (the public listener: the shield's classify, limit, admit;
 * the admin listener: the admin token). true to go on; false when it has
 * answered the request itself (401, 429, 503 …). */
typedef bool (*gh_request_filter_fn)(struct gh_http_req *req, void *data);

/* Traffic classes (docs/ARCHITECTURE.md), highest priority first. */
enum gh_class { GH_CLASS_OPS, GH_CLASS_USER, GH_CLASS_LOGIN, GH_CLASS_REGISTER, GH_CLASS_ANON };

struct gh_route {
    int method; /* enum http_method; GET routes also answer HEAD */
    const char *pattern;
    gh_http_handler handler;
    void *ctx;       /* the handler's context (module state) */
    size_t body_max; /* 0 = the configured default */
    enum gh_class cls;
    unsigned index; /* position, for per-route metrics */
    unsigned nsegs;
    const char *segs[16];
    uint8_t seglen[16];
};

#define GH_ROUTER_MAX 128

struct gh_router {
    struct gh_route routes[GH_ROUTER_MAX];
    unsigned n;
    gh_request_filter_fn filter; /* NULL = none; set before the workers start */
    void *filter_data;
};

void gh_router_init(struct gh_router *r);
/* Adds a route. pattern: absolute path, segments of literal text or
 * {name}. Returns the route (to set body_max, cls) or NULL when the table
 * is full or the pattern is malformed. The strings must outlive r. */
struct gh_route *gh_router_add(struct gh_router *r, const char *method, const char *pattern,
                               gh_http_handler handler, void *ctx);

enum gh_match { GH_MATCH_OK, GH_MATCH_NOT_FOUND, GH_MATCH_BAD_METHOD };

/* Percent-decodes one path segment of len bytes (no '/' in it) into out,
 * which has room for len + 1 bytes; a malformed escape stays as it is. The
 * result is NUL-terminated, its length in *outlen. Returns 0, or GH_EINVAL
 * when the decoded text holds a '/' or a NUL (the segment then matches no
 * {name}: decoding never creates path segments). Any thread. */
int gh_router_decode(const char *seg, size_t len, char *out, size_t *outlen);

/* Matches method and path. On GH_MATCH_OK fills *route and params (pointers
 * into the arena, decoded; a parameter whose decoding holds '/' or NUL does
 * not match, see gh_router_decode); on GH_MATCH_BAD_METHOD writes the allowed
 * methods ("GET, HEAD, POST") into allow. */
enum gh_match gh_router_match(const struct gh_router *r, int method, const char *path,
                              struct gh_arena *arena, const struct gh_route **route,
                              const char **params, unsigned *nparams, char *allow,
                              size_t allowlen);
