/* This module implements the redaction of PostgreSQL connection strings
 * (pgurl.h), following where libpq looks for a password: the userinfo of
 * a URL up to its first '@' (before any '/'), a password query parameter,
 * or a password key of a conninfo string. */
#include "core/pgurl.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define HIDDEN "***"

struct out {
    char *p;
    size_t cap, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->len + n >= o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = 0;
}

static size_t scheme_len(const char *url)
{
    static const char *const schemes[] = {"postgresql://", "postgres://"};
    for (size_t i = 0; i < GH_ARRAY_LEN(schemes); i++)
        if (!strncasecmp(url, schemes[i], strlen(schemes[i])))
            return strlen(schemes[i]);
    return 0;
}

static bool is_password_key(const char *k, size_t n)
{
    return n == 8 && !strncasecmp(k, "password", 8);
}

static int redact_url(const char *url, size_t skip, struct out *o, bool *found)
{
    put(o, url, skip);
    const char *p = url + skip;
    size_t auth = strcspn(p, "/?");
    const char *at = memchr(p, '@', auth);
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            put(o, p, (size_t)(colon - p) + 1);
            put(o, HIDDEN, strlen(HIDDEN));
            *found = true;
        } else {
            put(o, p, (size_t)(at - p));
        }
        p = at;
    }
    size_t q = strcspn(p, "?");
    put(o, p, q);
    p += q;
    if (!*p)
        return 0;
    put(o, "?", 1);
    p++;
    while (*p) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (eq && is_password_key(p, (size_t)(eq - p))) {
            put(o, p, (size_t)(eq - p) + 1);
            put(o, HIDDEN, strlen(HIDDEN));
            *found = true;
        } else {
            put(o, p, n);
        }
        p += n;
        if (*p == '&') {
            put(o, "&", 1);
            p++;
        }
    }
    return 0;
}

/* key = value pairs; a value is bare up to white space or single-quoted,
 * a backslash escaping the next character in both (libpq's rules). */
static int redact_conninfo(const char *s, struct out *o, bool *found)
{
    const char *p = s;
    for (bool first = true;; first = false) {
        const char *ws = p;
        while (isspace((unsigned char)*p))
            p++;
        put(o, ws, (size_t)(p - ws));
        if (!*p)
            return 0;
        /* libpq lets a key follow a closing quote at once; the copy puts a
         * space there so the "***" cannot run into the next key */
        if (!first && ws == p)
            put(o, " ", 1);
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=' || !klen)
            return GH_EINVAL;
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p != '\'')
                return GH_EINVAL;
            p++;
        } else {
            for (; *p && !isspace((unsigned char)*p); p++)
                if (*p == '\\' && p[1])
                    p++;
        }
        put(o, key, klen);
        put(o, "=", 1);
        if (is_password_key(key, klen)) {
            put(o, HIDDEN, strlen(HIDDEN));
            *found = true;
        } else {
            put(o, val, (size_t)(p - val));
        }
    }
}

static int redact(const char *url, char *out, size_t cap, bool *found)
{
    struct out o = {.p = out, .cap = cap};
    *found = false;
    if (!cap)
        return GH_ETOOBIG;
    out[0] = 0;
    size_t skip = scheme_len(url);
    int rc;
    if (skip)
        rc = redact_url(url, skip, &o, found);
    else if (strstr(url, "://"))
        rc = GH_EINVAL; /* another scheme: not libpq's */
    else
        rc = redact_conninfo(url, &o, found);
    if (!rc && o.full)
        rc = GH_ETOOBIG;
    if (rc)
        out[0] = 0;
    return rc;
}

int gh_pgurl_redact(const char *url, char *out, size_t cap)
{
    bool found;
    return redact(url, out, cap, &found);
}

bool gh_pgurl_has_password(const char *url)
{
    char tmp[4200];
    bool found = false;
    redact(url, tmp, sizeof tmp, &found);
    return found;
}
