/* Credential look-ups on the request path: API keys (Authorization: Bearer
 * sk-…) and sessions (cookie gh_session, with the X-CSRF-Token double
 * submit for state-changing requests). Both are answered from an in-memory
 * cache shared by the workers (never the database), in O(1), so any loop
 * thread may call them. Revocation, logout and account deletion remove
 * entries at once for every worker. Implemented by the identity subsystem. */
#pragma once

#include "http/http.h"

struct gh_principal {
    uint64_t user_id;
    uint64_t key_id; /* 0 when authenticated by session */
    bool via_session;
};

/* Checks an API key token ("sk-…", len bytes). 0 and *out filled, or
 * GH_ENOTFOUND for an unknown, revoked or malformed key. */
int gh_auth_api_key(const char *token, size_t len, struct gh_principal *out);

/* Checks the session cookie of req; when require_csrf, also that the
 * X-CSRF-Token header equals the gh_csrf cookie bound to that session.
 * 0 and *out filled; GH_ENOTFOUND without a valid session; GH_EINVAL when
 * the session is valid but the CSRF token is missing or wrong. */
int gh_auth_session(const struct gh_http_req *req, bool require_csrf, struct gh_principal *out);

/* Either of the above, as the chat API accepts them: a Bearer API key, or
 * the session cookie with X-CSRF-Token. Same return codes. */
int gh_auth_request(const struct gh_http_req *req, struct gh_principal *out);
