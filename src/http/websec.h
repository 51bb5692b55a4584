/* Browser-facing security of the public listener, in one place: the
 * request checks of every /api/… route (a state-changing request, any
 * method but GET, HEAD and OPTIONS, must come from the site itself by
 * Origin and Sec-Fetch-Site, and a request body must be declared
 * application/json, so that no form or simple cross-site request of
 * another site can reach an account handler), and the response headers of
 * everything served to a browser as a document or file (the site's pages,
 * the status page, the embedded assets).
 * Any thread may call the pure functions; nothing is allocated. */
#pragma once

#include "http/http.h"

/* True when origin (olen bytes, the Origin header's value) names the site:
 * equal to public_origin when that is non-empty (scheme, host and port,
 * case-insensitive, a default port written or not), otherwise an http or
 * https origin whose host[:port] equals host (the Host header, hlen
 * bytes). "null", opaque and malformed origins are false. */
bool gh_websec_origin_ok(const char *origin, size_t olen, const char *host, size_t hlen,
                         const char *public_origin);

/* True when a Content-Type value (len bytes) is application/json, with or
 * without parameters ("application/json; charset=utf-8"). */
bool gh_websec_is_json(const char *ct, size_t len);

/* The check of the public listener's dispatch: true when req may go on to
 * its handler; false after answering 403 (cross-site) or 415 (body not
 * JSON). Only /api/… paths are checked. Loop thread of req. */
bool gh_websec_check(struct gh_http_req *req);

/* Adds the security headers every page and static file carries: a strict
 * Content-Security-Policy (nothing inline, nothing from elsewhere, no
 * framing), X-Frame-Options: DENY, Referrer-Policy: no-referrer,
 * X-Content-Type-Options: nosniff, Cross-Origin-Opener-Policy:
 * same-origin. The site's pages, the status page and gh_assets_send all
 * call it, so the stacks cannot drift apart. Loop thread of req. */
void gh_websec_page_headers(struct gh_http_req *req);
