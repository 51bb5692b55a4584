/* This module implements the Redis URL parser of redisurl.h. */
#include "core/redisurl.h"

#include <string.h>

static int bad(struct gh_buf *err, const char *why)
{
    if (err)
        gh_buf_printf(err, "%s (expected redis://HOST[:PORT][/DB], e.g. redis://127.0.0.1:6379)",
                      why);
    return GH_EINVAL;
}

/* Digits of s[0..len) as a number no larger than max. */
static bool number(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

int gh_redis_url_parse(const char *text, size_t len, struct gh_redis_url *out, struct gh_buf *err)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (len < sizeof scheme - 1 || memcmp(text, scheme, sizeof scheme - 1))
        return bad(err, "not a redis:// URL");
    const char *p = text + sizeof scheme - 1, *end = text + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    if (memchr(p, '@', (size_t)(auth_end - p)))
        return bad(err, "a user or password in the URL is refused (set GATEHOUSE_REDIS_PASSWORD)");
    const char *host = p, *host_end, *port = NULL;
    if (p < auth_end && *p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end)
            return bad(err, "an IPv6 address without its closing ']'");
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return bad(err, "unexpected characters after ']'");
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(auth_end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof out->host)
        return bad(err, hlen ? "the host is too long" : "no host");
    for (size_t i = 0; i < hlen; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || (c == ':' && host > p);
        if (!ok)
            return bad(err, "the host holds a character that no address or name has");
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (port && (!number(port, (size_t)(auth_end - port), 65535, &out->port) || out->port == 0))
        return bad(err, "the port must be 1 to 65535");
    if (slash && slash + 1 < end && !number(slash + 1, (size_t)(end - slash - 1), 15, &out->db))
        return bad(err, "the database must be a number from 0 to 15");
    return 0;
}
