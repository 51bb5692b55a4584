/* Credential look-ups on the request path: API keys (Authorization: Bearer
 * sk-…) and sessions (cookie gh_session, with the X-CSRF-Token double
 * submit for state-changing requests). Both are answered from an in-memory
 * cache shared by the workers (never the database), in O(1), so any loop
 * thread may call them. Revocation, logout and account deletion remove
 * entries at once for every worker. Implemented by the identity subsystem.
 *
 * Cookies: with identity.cookie_secure (the default) they are named
 * __Host-gh_session and __Host-gh_csrf and marked Secure; the plain names
 * are used only for plain http on loopback. Both names are accepted on
 * input, the __Host- one first (no subdomain or http page can set it).
 *
 * Scope: API keys reach only /v1/…, /api/usage, /user/balance and
 * /beta/…; account routes need a session. */
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
 * the session cookie with X-CSRF-Token. Same return codes; a Bearer key on
 * a path outside gh_auth_key_scope is GH_ENOTFOUND. */
int gh_auth_request(const struct gh_http_req *req, struct gh_principal *out);

/* The token of req's "Authorization: Bearer <token>" header (spaces
 * around it trimmed) in *tok, *tlen. false without such a header. */
bool gh_auth_bearer(const struct gh_http_req *req, const char **tok, size_t *tlen);

/* After one of the above answered GH_ENOTFOUND for req: when its key or
 * session may live in the store but not in the cache (the cache evicted
 * least recently used entries since start, and this one is neither cached
 * nor marked gone), looks it up on a store thread, caches it when live,
 * and runs req's route handler again, once (its second miss is final).
 * true: the request is taken (the handler runs again, or 503 busy was
 * answered when the store's queue is full); the caller returns without
 * answering. false: the miss is final; the caller answers 401. The loop
 * thread of req; handlers call it before anything they would not repeat. */
bool gh_auth_reload(struct gh_http_req *req);
/* True when gh_auth_reload would look req's credential up in the store;
 * false when the cache's answer is final (no credential, a malformed or
 * deleted one, or nothing ever evicted). Any loop thread; no side effect. */
bool gh_auth_may_reload(const struct gh_http_req *req);

/* Starts reading from the store the credential of req that the cache may
 * have evicted (gh_auth_may_reload), so that checks made before the
 * handler (the body cap, the traffic class) see an evicted user as the
 * user they are. On 0 the look-up is queued and *job set: when it is done
 * the credential (if the store holds it) is in the cache and wake(arg)
 * runs on req's worker, unless gh_auth_prefetch_cancel(*job) ran first;
 * either the wake or the cancel ends the caller's hold on *job, never
 * both. GH_ENOTFOUND when there is nothing to look up, GH_EBUSY or
 * GH_ENOMEM when it cannot be queued (no callback then). Loop thread. */
int gh_auth_prefetch(const struct gh_http_req *req, void (*wake)(void *arg), void *arg,
                     void **job);
/* The caller of gh_auth_prefetch goes away before its wake: no wake will
 * run. Same thread as the prefetch. */
void gh_auth_prefetch_cancel(void *job);

/* True when an API key may authenticate a request for path: /v1/…,
 * /beta/…, /api/usage and /user/balance. */
bool gh_auth_key_scope(const char *path);

/* Copies the session token of req's cookie (__Host-gh_session, else
 * gh_session) into out. 0, GH_ENOTFOUND or GH_ETOOBIG. */
int gh_auth_session_token(const struct gh_http_req *req, char *out, size_t outlen);

/* Adds the Set-Cookie headers of a new session (token, 43 characters)
 * lasting max_age_s: the session cookie (HttpOnly) and its CSRF cookie
 * (readable by the site's scripts), both SameSite=Lax, Path=/; Secure with
 * the __Host- prefix when req's config says identity.cookie_secure. */
void gh_auth_set_cookies(struct gh_http_req *req, const char *token, uint64_t max_age_s);
/* Adds the Set-Cookie headers that remove those cookies (under both names
 * when cookies are secure, so a session from before the prefix goes too). */
void gh_auth_clear_cookies(struct gh_http_req *req);
