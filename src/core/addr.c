/* This module implements the address conversions of addr.h on top of
 * inet_pton/inet_ntop. */
#include "core/addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void gh_addr_set(struct gh_addr *a, int family, const uint8_t *b)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET6 && memcmp(b, v4mapped, sizeof v4mapped)) {
        a->family = AF_INET6;
        memcpy(a->bytes, b, 16);
        return;
    }
    a->family = AF_INET;
    memcpy(a->bytes, family == AF_INET6 ? b + 12 : b, 4);
}

void gh_addr_from_sockaddr(const struct sockaddr_storage *ss, struct gh_addr *a)
{
    if (ss->ss_family == AF_INET)
        gh_addr_set(a, AF_INET, (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr);
    else if (ss->ss_family == AF_INET6)
        gh_addr_set(a, AF_INET6, ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr);
    else
        memset(a, 0, sizeof *a);
}

bool gh_addr_parse_ip(int family, const char *s, size_t len, struct gh_addr *out)
{
    char t[INET6_ADDRSTRLEN + 1];
    uint8_t b[16];
    if (len == 0 || len >= sizeof t)
        return false;
    memcpy(t, s, len);
    t[len] = '\0';
    if (inet_pton(family, t, b) != 1)
        return false;
    gh_addr_set(out, family, b);
    return true;
}

bool gh_addr_parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

int gh_addr_parse(const char *s, size_t len, struct gh_addr *out)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0)
        return GH_EINVAL;
    if (s[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(s, ']', len);
        if (!close)
            return GH_EINVAL;
        size_t rest = len - (size_t)(close - s) - 1;
        uint16_t port;
        if (rest && (close[1] != ':' || !gh_addr_parse_port(close + 2, rest - 1, &port)))
            return GH_EINVAL;
        return gh_addr_parse_ip(AF_INET6, s + 1, (size_t)(close - s - 1), out) ? 0 : GH_EINVAL;
    }
    const char *colon = memchr(s, ':', len);
    if (colon && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1))
        return gh_addr_parse_ip(AF_INET6, s, len, out) ? 0 : GH_EINVAL; /* bare v6 */
    if (colon) {                                                        /* v4:port */
        uint16_t port;
        if (!gh_addr_parse_port(colon + 1, len - (size_t)(colon - s) - 1, &port))
            return GH_EINVAL;
        len = (size_t)(colon - s);
    }
    return gh_addr_parse_ip(AF_INET, s, len, out) ? 0 : GH_EINVAL;
}

void gh_addr_format(const struct gh_addr *a, char *out, size_t outlen)
{
    if (!inet_ntop(a->family, a->bytes, out, (socklen_t)outlen))
        snprintf(out, outlen, "unknown");
}

void gh_addr_format_prefix(const struct gh_addr *a, char *out, size_t outlen)
{
    struct gh_addr p = *a;
    char tmp[64];
    if (a->family == AF_INET) {
        p.bytes[3] = 0;
        gh_addr_format(&p, tmp, sizeof tmp);
        snprintf(out, outlen, "%s/24", tmp);
    } else {
        memset(p.bytes + 6, 0, 10);
        gh_addr_format(&p, tmp, sizeof tmp);
        snprintf(out, outlen, "%s/48", tmp);
    }
}
