/* This module implements the libFuzzer harness of API-key and session
 * token parsing (identity/tokens.h) and of the request paths that find a
 * token in a request (identity/auth.h: the Bearer header, the session
 * cookie under either name). Invariants, beyond memory safety:
 * - the shape checks agree with an independent reference (length,
 *   "sk-", base64url alphabet, canonical last character);
 * - a well-formed token round-trips: decoded to 32 bytes and encoded
 *   again it is the same text;
 * - a request is authenticated only by exactly the one live key or
 *   session the harness put in the cache, never by a variant of it, and a
 *   key never outside its path scope;
 * - the cookie reader returns a value that lies inside the header. */
#include "http/http.h"
#include "identity/auth.h"
#include "identity/tokens.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static char session[GH_TOKEN_B64_LEN + 1];
static char key[GH_API_KEY_LEN + 1];

static void setup(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    if (sodium_init() < 0)
        abort();
    uint8_t k[32] = {1, 2, 3};
    if (gh_tokens_init(k, 1024))
        abort();
    /* fixed tokens, so the seeds can name them */
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(i * 37 + 11);
    sodium_bin2base64(session, sizeof session, raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    raw[0] ^= 0xff;
    memcpy(key, "sk-", 3);
    sodium_bin2base64(key + 3, sizeof key - 3, raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    struct gh_cred c = {.kind = GH_CRED_SESSION, .user_id = 7, .id = 1};
    gh_token_hash(session, strlen(session), c.hash);
    if (gh_tokens_put(&c))
        abort();
    struct gh_cred d = {.kind = GH_CRED_KEY, .user_id = 7, .id = 2};
    gh_token_hash(key, strlen(key), d.hash);
    if (gh_tokens_put(&d))
        abort();
}

static bool ref_b64(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    return n && strchr("AEIMQUYcgkosw048", s[n - 1]) != NULL;
}

static void round_trip(const char *s)
{
    uint8_t raw[64];
    size_t n = 0;
    char again[GH_TOKEN_B64_LEN + 1];
    if (sodium_base642bin(raw, sizeof raw, s, GH_TOKEN_B64_LEN, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        n != GH_TOKEN_BYTES)
        abort();
    sodium_bin2base64(again, sizeof again, raw, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (memcmp(again, s, GH_TOKEN_B64_LEN))
        abort();
}

static struct gh_http_req *req_with(struct gh_http_req *r, struct gh_http_header *h,
                                    const char *name, const char *value, size_t len,
                                    const char *path)
{
    memset(r, 0, sizeof *r);
    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = len;
    r->headers = h;
    r->nheaders = 1;
    r->path = path;
    r->method_name = "GET";
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    const char *s = (const char *)data;

    /* shapes against the reference, and round trips */
    bool sw = gh_token_session_wellformed(s, size);
    if (sw != (size == GH_TOKEN_B64_LEN && ref_b64(data, size)))
        abort();
    if (sw)
        round_trip(s);
    bool kw = gh_token_api_key_wellformed(s, size);
    if (kw != (size == GH_API_KEY_LEN && !memcmp(s, "sk-", 3) && ref_b64(data + 3, size - 3)))
        abort();
    if (kw)
        round_trip(s + 3);

    /* the bytes as a whole header value: NUL, CR and LF never reach here
     * (the parser refuses them) */
    if (size > 4096 || memchr(data, 0, size) || memchr(data, '\r', size) ||
        memchr(data, '\n', size))
        return 0;
    char *v = malloc(size + 1);
    if (!v)
        abort();
    memcpy(v, data, size);
    v[size] = '\0';
    struct gh_http_req r;
    struct gh_http_header h;
    struct gh_principal p;

    /* Authorization: the one key, on its paths only */
    req_with(&r, &h, "Authorization", v, size, "/v1/models");
    bool is_key = false;
    if (size >= 7 && !strncasecmp(v, "Bearer ", 7)) {
        const char *t = v + 7;
        size_t tl = size - 7;
        while (tl && *t == ' ') { /* what auth.c trims: spaces */
            t++;
            tl--;
        }
        while (tl && t[tl - 1] == ' ')
            tl--;
        is_key = tl == GH_API_KEY_LEN && !memcmp(t, key, tl);
    }
    int rc = gh_auth_request(&r, &p);
    if ((rc == 0) != is_key || (rc == 0 && (p.user_id != 7 || p.key_id != 2)))
        abort();
    r.path = "/api/me";
    if (gh_auth_request(&r, &p) == 0)
        abort(); /* keys never reach account routes */

    /* Cookie: the session under either name, nothing else */
    req_with(&r, &h, "Cookie", v, size, "/api/me");
    char tok[128];
    rc = gh_auth_session_token(&r, tok, sizeof tok);
    if (rc == 0) {
        /* the value follows a '=' somewhere in the header, without ';' */
        size_t tl = strlen(tok);
        bool inside = false;
        for (const char *at = v; !inside && (at = memmem(at, size - (size_t)(at - v), tok, tl));
             at++)
            inside = at > v && at[-1] == '=';
        if (!inside || memchr(tok, ';', tl))
            abort();
    }
    bool is_session = rc == 0 && !strcmp(tok, session);
    rc = gh_auth_session(&r, false, &p);
    if ((rc == 0) != is_session || (rc == 0 && (p.user_id != 7 || !p.via_session)))
        abort();
    /* with CSRF required: the header's value decides; a cookie alone never */
    if (gh_auth_session(&r, true, &p) == 0)
        abort();
    free(v);
    return 0;
}
