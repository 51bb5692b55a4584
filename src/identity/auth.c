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

int gh_auth_session(const struct gh_http_req *req, bool require_csrf, struct gh_principal *out)
{
    char tok[GH_TOKEN_B64_LEN + 8];
    if (gh_http_cookie_get(req, "gh_session", tok, sizeof tok))
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

int gh_auth_request(const struct gh_http_req *req, struct gh_principal *out)
{
    size_t len = 0;
    const char *h = gh_http_header_get(req, "authorization", &len);
    if (h) {
        if (len < 7 || strncasecmp(h, "Bearer ", 7))
            return GH_ENOTFOUND;
        h += 7;
        len -= 7;
        while (len && *h == ' ') {
            h++;
            len--;
        }
        while (len && h[len - 1] == ' ')
            len--;
        return gh_auth_api_key(h, len, out);
    }
    return gh_auth_session(req, true, out);
}
