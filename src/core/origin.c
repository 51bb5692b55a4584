/* This module implements origin.h: the canonical form of a web origin
 * (RFC 6454 serialization with the port always written). */
#include "core/origin.h"

#include <string.h>
#include <strings.h>

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

size_t gh_origin_canon(const char *s, size_t len, char out[GH_ORIGIN_MAX])
{
    const char *def_port;
    size_t sl;
    if (len > 7 && !strncasecmp(s, "http://", 7)) {
        sl = 7;
        def_port = "80";
    } else if (len > 8 && !strncasecmp(s, "https://", 8)) {
        sl = 8;
        def_port = "443";
    } else {
        return 0;
    }
    const char *a = s + sl;
    size_t al = len - sl;
    if (al + sl + 7 >= GH_ORIGIN_MAX)
        return 0;
    for (size_t i = 0; i < al; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= ' ' || c >= 0x7f || strchr("/?#@\\", c))
            return 0;
    }
    /* the port starts after the last ':' outside an IPv6 literal */
    size_t hl = al;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', al);
        if (!rb || rb == a + 1)
            return 0;
        hl = (size_t)(rb - a) + 1;
        if (hl < al && a[hl] != ':')
            return 0;
    } else {
        for (size_t i = 0; i < al; i++)
            if (a[i] == ':')
                hl = i;
    }
    if (!hl)
        return 0;
    const char *port = def_port;
    size_t pl = strlen(def_port);
    if (hl < al) {
        port = a + hl + 1;
        pl = al - hl - 1;
        if (!pl || pl > 5)
            return 0;
        unsigned v = 0;
        for (size_t i = 0; i < pl; i++) {
            if (port[i] < '0' || port[i] > '9')
                return 0;
            v = v * 10 + (unsigned)(port[i] - '0');
        }
        if (!v || v > 65535)
            return 0;
        while (pl > 1 && *port == '0') { /* ":0443" is port 443 */
            port++;
            pl--;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < sl; i++)
        out[n++] = lower(s[i]);
    for (size_t i = 0; i < hl; i++)
        out[n++] = lower(a[i]);
    out[n++] = ':';
    memcpy(out + n, port, pl);
    n += pl;
    out[n] = '\0';
    return n;
}

bool gh_origin_setting_ok(const char *public_origin)
{
    char c[GH_ORIGIN_MAX];
    return !public_origin || !*public_origin ||
           gh_origin_canon(public_origin, strlen(public_origin), c) != 0;
}
