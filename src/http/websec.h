/* Browser-facing request checks of the public listener, in one place for
 * every /api/… route: a state-changing request (any method but GET, HEAD
 * and OPTIONS) must come from the site itself (Origin, Sec-Fetch-Site),
 * and a request body must be declared application/json, so that no form or
 * simple cross-site request of another site can reach an account handler.
 * Pure functions: any thread may call them; nothing is allocated. */
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
