/* This module implements auth.h: credential look-ups on the request path
 * answered from the in-memory cache of tokens.h, with the CSRF double
 * submit (the X-CSRF-Token header must equal the gh_csrf value derived
 * from the session token, compared in constant time). */
#include "identity/auth.h"

#include "identity/tokens.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

int gh_auth_api_key(const char *token, size_t len, struct gh_principal *out)
{
    if (!token || !gh_token_api_key_wellformed(token, len))
        return GH_ENOTFOUND;
    uint8_t h[GH_TOKEN_HASH_BYTES];
    gh_token_hash(token, len, h);
    struct gh_cred c;
    if (gh_tokens_get(h, gh_wall_ms(), &c) || c.kind != GH_CRED_KEY)
        return GH_ENOTFOUND;
    out->user_id = c.user_id;
    out->key_id = c.id;
    out->via_session = false;
    return 0;
}

int gh_auth_session_token(const struct gh_http_req *req, char *out, size_t outlen)
{
    int rc = gh_http_cookie_get(req, "__Host-gh_session", out, outlen);
    return rc == GH_ENOTFOUND ? gh_http_cookie_get(req, "gh_session", out, outlen) : rc;
}

bool gh_auth_key_scope(const char *path)
{
    return path && (!strncmp(path, "/v1/", 4) || !strncmp(path, "/beta/", 6) ||
                    !strcmp(path, "/api/usage") || !strcmp(path, "/user/balance"));
}

void gh_auth_set_cookies(struct gh_http_req *req, const char *token, uint64_t max_age_s)
{
    char csrf[GH_TOKEN_B64_LEN + 1];
    gh_token_csrf(token, strlen(token), csrf);
    bool sec = req->cfg->identity.cookie_secure;
    const char *pre = sec ? "__Host-" : "";
    const char *attr = sec ? "; Secure" : "";
    unsigned long long age = (unsigned long long)max_age_s;
    gh_http_add_header(req, "Set-Cookie",
                       "%sgh_session=%s; Path=/; Max-Age=%llu; HttpOnly; SameSite=Lax%s", pre,
                       token, age, attr);
    gh_http_add_header(req, "Set-Cookie", "%sgh_csrf=%s; Path=/; Max-Age=%llu; SameSite=Lax%s",
                       pre, csrf, age, attr);
    gh_http_add_header(req, "Cache-Control", "no-store");
}

void gh_auth_clear_cookies(struct gh_http_req *req)
{
    bool sec = req->cfg->identity.cookie_secure;
    const char *attr = sec ? "; Secure" : "";
    for (int host = sec; host >= 0; host--) {
        const char *pre = host ? "__Host-" : "";
        gh_http_add_header(req, "Set-Cookie",
                           "%sgh_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax%s", pre, attr);
        gh_http_add_header(req, "Set-Cookie", "%sgh_csrf=; Path=/; Max-Age=0; SameSite=Lax%s", pre,
                           attr);
    }
}

int gh_auth_session(const struct gh_http_req *req, bool require_csrf, struct gh_principal *out)
{
    char tok[GH_TOKEN_B64_LEN + 8];
    if (gh_auth_session_token(req, tok, sizeof tok))
        return GH_ENOTFOUND;
    size_t len = strlen(tok);
    if (!gh_token_session_wellformed(tok, len))
        return GH_ENOTFOUND;
    uint8_t h[GH_TOKEN_HASH_BYTES];
    gh_token_hash(tok, len, h);
    struct gh_cred c;
    if (gh_tokens_get(h, gh_wall_ms(), &c) || c.kind != GH_CRED_SESSION)
        return GH_ENOTFOUND;
    if (require_csrf) {
        size_t hl = 0;
        const char *hv = gh_http_header_get(req, "x-csrf-token", &hl);
        char want[GH_TOKEN_B64_LEN + 1];
        gh_token_csrf(tok, len, want);
        if (!hv || hl != GH_TOKEN_B64_LEN || sodium_memcmp(hv, want, GH_TOKEN_B64_LEN) != 0)
            return GH_EINVAL;
    }
    out->user_id = c.user_id;
    out->key_id = 0;
    out->via_session = true;
    return 0;
}

bool gh_auth_bearer(const struct gh_http_req *req, const char **tok, size_t *tlen)
{
    size_t len = 0;
    const char *h = gh_http_header_get(req, "authorization", &len);
    if (!h || len < 7 || strncasecmp(h, "Bearer ", 7))
        return false;
    h += 7;
    len -= 7;
    while (len && *h == ' ') {
        h++;
        len--;
    }
    while (len && h[len - 1] == ' ')
        len--;
    *tok = h;
    *tlen = len;
    return true;
}

int gh_auth_request(const struct gh_http_req *req, struct gh_principal *out)
{
    if (gh_http_header_get(req, "authorization", NULL)) {
        const char *h;
        size_t len;
        if (!gh_auth_bearer(req, &h, &len) || !gh_auth_key_scope(req->path))
            return GH_ENOTFOUND;
        return gh_auth_api_key(h, len, out);
    }
    return gh_auth_session(req, true, out);
}
