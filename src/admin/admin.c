/* This module implements the core routes of admin.h. */
#include "admin/admin.h"

#include "http/server.h"

#include <http_parser.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static void healthz(struct gh_http_req *req)
{
    static const char body[] = "{\"status\":\"ok\"}\n";
    gh_http_respond_json(req, 200, body, sizeof body - 1);
}

static void metrics(struct gh_http_req *req)
{
    struct gh_server *srv = req->route->ctx;
    struct gh_buf b;
    gh_buf_init(&b, 16u << 20);
    gh_server_render_metrics(srv, &b);
    gh_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                    b.len);
    gh_buf_dispose(&b);
}

/* The admin listener's filter: every route under /admin/ needs the bearer
 * admin token, checked here once for all of them (a module's route cannot
 * forget it). /healthz and /metrics stay open on this private listener, for
 * probes and scrapers. Matched on the route's pattern, not the raw path, so
 * no spelling of a path reaches an /admin/ handler unchecked. */
static bool admin_filter(struct gh_http_req *req, void *data)
{
    struct gh_server *srv = data;
    if (strncmp(req->route->pattern, "/admin/", 7) != 0)
        return true;
    size_t len = 0;
    const char *h = gh_http_header_get(req, "authorization", &len);
    const char *tok = srv->secrets.admin_token;
    size_t tlen = strlen(tok);
    /* compare in constant time over the token's length; the length itself
     * is not secret (it is fixed by the format) */
    bool ok =
        h && len == 7 + tlen && !strncmp(h, "Bearer ", 7) && sodium_memcmp(h + 7, tok, tlen) == 0;
    if (!ok) {
        gh_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"gatehouse admin\"");
        gh_http_respond_error(req, 401, "unauthorized",
                              h ? "admin token is wrong"
                                : "admin token required "
                                  "(Authorization: Bearer <token>)");
    }
    return ok;
}

static const char *const class_names[] = {"ops", "user", "login", "register", "anon"};

static void list_router(json_t *arr, const struct gh_router *r)
{
    for (unsigned i = 0; i < r->n; i++) {
        const struct gh_route *rt = &r->routes[i];
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s}", "method", http_method_str(rt->method),
                                        "path", rt->pattern, "class", class_names[rt->cls]));
    }
}

/* GET /admin/v1/routes: both listeners' routes, from the routers
 * themselves (what answers, not what the docs say answers). */
static void routes(struct gh_http_req *req)
{
    struct gh_server *srv = req->route->ctx;
    json_t *pub = json_array(), *adm = json_array();
    list_router(pub, &srv->http->router);
    list_router(adm, &srv->http->admin_router);
    json_t *doc = json_pack("{s:o, s:o}", "public", pub, "admin", adm);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        gh_http_respond_error(req, 503, "busy", "out of memory; retry");
        return;
    }
    gh_http_respond_json(req, 200, text, strlen(text));
    free(text);
}

int gh_admin_init(struct gh_server *srv)
{
    struct gh_route *r1 = gh_router_add(&srv->http->router, "GET", "/healthz", healthz, srv);
    struct gh_route *r2 = gh_router_add(&srv->http->admin_router, "GET", "/healthz", healthz, srv);
    struct gh_route *r3 = gh_router_add(&srv->http->admin_router, "GET", "/metrics", metrics, srv);
    struct gh_route *r4 = gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/routes", routes, srv);
    if (!r1 || !r2 || !r3 || !r4)
        return GH_ETOOBIG;
    r4->cls = GH_CLASS_OPS;
    srv->http->admin_router.filter = admin_filter;
    srv->http->admin_router.filter_data = srv;
    r1->cls = GH_CLASS_OPS;
    r2->cls = GH_CLASS_OPS;
    r3->cls = GH_CLASS_OPS;
    return 0;
}
