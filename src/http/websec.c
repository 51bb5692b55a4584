/* This module implements websec.h: the same-origin and Content-Type checks
 * of state-changing /api/… requests, run once in the public listener's
 * dispatch before any handler (and before the shield counts the request,
 * so a forged request from a visitor's browser spends nothing of the
 * visitor's budgets). Origins are compared in a canonical form:
 * lowercase scheme and host, explicit port. */
#include "http/websec.h"

#include <string.h>
#include <strings.h>

#define ORIGIN_MAX 300

/* img-src data: for the pages' inline SVG favicon (web/pages/_head.html);
 * worker-src for the proof-of-work worker (web/js/pow-worker.js) */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* Writes "scheme://host:port" of an origin (scheme http or https, then an
 * authority without path, user info or whitespace) into out. Returns the
 * length, or 0 when s is not such an origin. */
static size_t canon_origin(const char *s, size_t len, char out[ORIGIN_MAX])
{
    const char *def_port;
    size_t sl;
    if (len > 7 && !strncasecmp(s, "http://", 7)) {
        sl = 7;
        def_port = "80";
    } else if (len > 8 && !strncasecmp(s, "https://", 8)) {
        sl = 8;
        def_port = "443";
    } else {
        return 0;
    }
    const char *a = s + sl;
    size_t al = len - sl;
    if (al + sl + 7 >= ORIGIN_MAX)
        return 0;
    for (size_t i = 0; i < al; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= ' ' || c >= 0x7f || strchr("/?#@\\", c))
            return 0;
    }
    /* the port starts after the last ':' outside an IPv6 literal */
    size_t hl = al;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', al);
        if (!rb || rb == a + 1)
            return 0;
        hl = (size_t)(rb - a) + 1;
        if (hl < al && a[hl] != ':')
            return 0;
    } else {
        for (size_t i = 0; i < al; i++)
            if (a[i] == ':')
                hl = i;
    }
    if (!hl)
        return 0;
    const char *port = def_port;
    size_t pl = strlen(def_port);
    if (hl < al) {
        port = a + hl + 1;
        pl = al - hl - 1;
        if (!pl || pl > 5)
            return 0;
        unsigned v = 0;
        for (size_t i = 0; i < pl; i++) {
            if (port[i] < '0' || port[i] > '9')
                return 0;
            v = v * 10 + (unsigned)(port[i] - '0');
        }
        if (!v || v > 65535)
            return 0;
        while (pl > 1 && *port == '0') { /* ":0443" is port 443 */
            port++;
            pl--;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < sl; i++)
        out[n++] = lower(s[i]);
    for (size_t i = 0; i < hl; i++)
        out[n++] = lower(a[i]);
    out[n++] = ':';
    memcpy(out + n, port, pl);
    n += pl;
    out[n] = '\0';
    return n;
}

bool gh_websec_origin_setting_ok(const char *public_origin)
{
    char c[ORIGIN_MAX];
    return !public_origin || !*public_origin ||
           canon_origin(public_origin, strlen(public_origin), c) != 0;
}

bool gh_websec_origin_ok(const char *origin, size_t olen, const char *host, size_t hlen,
                         const char *public_origin)
{
    char got[ORIGIN_MAX], want[ORIGIN_MAX];
    size_t gl = origin ? canon_origin(origin, olen, got) : 0;
    if (!gl)
        return false;
    size_t wl;
    if (public_origin && *public_origin) {
        wl = canon_origin(public_origin, strlen(public_origin), want);
    } else {
        /* the site as the client addressed it: the origin's scheme with
         * the Host header's authority */
        size_t sl = got[4] == 's' ? 8 : 7;
        char addressed[ORIGIN_MAX];
        if (!host || !hlen || sl + hlen >= sizeof addressed)
            return false;
        memcpy(addressed, got, sl);
        memcpy(addressed + sl, host, hlen);
        wl = canon_origin(addressed, sl + hlen, want);
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
