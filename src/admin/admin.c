/* This module implements the core routes of admin.h. */
#include "admin/admin.h"

#include <sodium.h>
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

bool gh_admin_authorized(struct gh_http_req *req)
{
    struct gh_server *srv = req->route->ctx;
    size_t len = 0;
    const char *h = gh_http_header_get(req, "authorization", &len);
    const char *tok = srv->secrets.admin_token;
    size_t tlen = strlen(tok);
    /* compare in constant time over the token's length; the length itself
     * is not secret (it is fixed by the format) */
    bool ok = h && len == 7 + tlen && !strncmp(h, "Bearer ", 7) &&
              sodium_memcmp(h + 7, tok, tlen) == 0;
    if (!ok) {
        gh_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"gatehouse admin\"");
        gh_http_respond_error(req, 401, "unauthorized",
                              h ? "admin token is wrong" : "admin token required "
                                                           "(Authorization: Bearer <token>)");
    }
    return ok;
}

int gh_admin_init(struct gh_server *srv)
{
    struct gh_route *r1 = gh_router_add(&srv->router, "GET", "/healthz", healthz, srv);
    struct gh_route *r2 = gh_router_add(&srv->admin_router, "GET", "/healthz", healthz, srv);
    struct gh_route *r3 = gh_router_add(&srv->admin_router, "GET", "/metrics", metrics, srv);
    if (!r1 || !r2 || !r3)
        return GH_ETOOBIG;
    r1->cls = GH_CLASS_OPS;
    r2->cls = GH_CLASS_OPS;
    r3->cls = GH_CLASS_OPS;
    return 0;
}
