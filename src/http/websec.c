/* This module implements websec.h: the same-origin and Content-Type checks
 * of state-changing /api/… requests, run once in the public listener's
 * dispatch before any handler (and before the shield counts the request,
 * so a forged request from a visitor's browser spends nothing of the
 * visitor's budgets). Origins are compared in the canonical form of
 * core/origin.h: lowercase scheme and host, explicit port. */
#include "http/websec.h"

#include "core/origin.h"

#include <string.h>
#include <strings.h>

/* img-src data: for the pages' inline SVG favicon (web/pages/_head.html);
 * worker-src for the proof-of-work worker (web/js/pow-worker.js) */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

bool gh_websec_origin_ok(const char *origin, size_t olen, const char *host, size_t hlen,
                         const char *public_origin)
{
    char got[GH_ORIGIN_MAX], want[GH_ORIGIN_MAX];
    size_t gl = origin ? gh_origin_canon(origin, olen, got) : 0;
    if (!gl)
        return false;
    size_t wl;
    if (public_origin && *public_origin) {
        wl = gh_origin_canon(public_origin, strlen(public_origin), want);
    } else {
        /* the site as the client addressed it: the origin's scheme with
         * the Host header's authority */
        size_t sl = got[4] == 's' ? 8 : 7;
        char addressed[GH_ORIGIN_MAX];
        if (!host || !hlen || sl + hlen >= sizeof addressed)
            return false;
        memcpy(addressed, got, sl);
        memcpy(addressed + sl, host, hlen);
        wl = gh_origin_canon(addressed, sl + hlen, want);
    }
    return wl && wl == gl && !memcmp(got, want, gl);
}

bool gh_websec_is_json(const char *ct, size_t len)
{
    static const char want[] = "application/json";
    const size_t wl = sizeof want - 1;
    while (len && (*ct == ' ' || *ct == '\t')) {
        ct++;
        len--;
    }
    if (len < wl || strncasecmp(ct, want, wl))
        return false;
    ct += wl;
    len -= wl;
    while (len && (*ct == ' ' || *ct == '\t')) {
        ct++;
        len--;
    }
    return !len || *ct == ';';
}

static bool safe_method(const struct gh_http_req *req)
{
    const char *m = req->method_name ? req->method_name : "";
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
}

bool gh_websec_check(struct gh_http_req *req)
{
    if (!req->path || strncmp(req->path, "/api/", 5) || safe_method(req))
        return true;
    size_t ol = 0, sl = 0, hl = 0, cl = 0;
    const char *origin = gh_http_header_get(req, "origin", &ol);
    const char *site = gh_http_header_get(req, "sec-fetch-site", &sl);
    /* a browser names where a request comes from; a client that names
     * nothing (curl, SDKs) is no browser and carries no ambient cookie
     * another site could borrow */
    bool cross = site && sl == 10 && !strncasecmp(site, "cross-site", 10);
    if (!cross && origin) {
        const char *host = gh_http_header_get(req, "host", &hl);
        cross = !gh_websec_origin_ok(origin, ol, host, hl, req->cfg->server.public_origin);
    } else if (!cross && site) {
        /* a sibling subdomain is same-site but not this site */
        cross = sl == 9 && !strncasecmp(site, "same-site", 9);
    }
    if (cross) {
        gh_http_respond_error(req, 403, "forbidden",
                              "cross-site request refused: %s %s must come from this site's own "
                              "pages (Origin and Sec-Fetch-Site are checked)",
                              req->method_name, req->path);
        return false;
    }
    const char *ct = gh_http_header_get(req, "content-type", &cl);
    if (req->body.len && (!ct || !gh_websec_is_json(ct, cl))) {
        gh_http_respond_error(req, 415, "unsupported_media_type",
                              "the request body must be JSON sent with Content-Type: "
                              "application/json");
        return false;
    }
    return true;
}

void gh_websec_page_headers(struct gh_http_req *req)
{
    gh_http_add_header(req, "Content-Security-Policy", "%s", CSP);
    gh_http_add_header(req, "X-Frame-Options", "DENY");
    gh_http_add_header(req, "Referrer-Policy", "no-referrer");
    gh_http_add_header(req, "X-Content-Type-Options", "nosniff");
    gh_http_add_header(req, "Cross-Origin-Opener-Policy", "same-origin");
}
