/* This module implements the PROXY protocol v1/v2 parser of proxy.h. */
#include "http/proxy.h"

#include <string.h>

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* ---- v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" ---- */

/* The next space-separated token of [*p, end); false if empty. */
static bool token(const char **p, const char *end, const char **tok, size_t *len)
{
    const char *s = *p;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    if (e == s)
        return false;
    *tok = s;
    *len = (size_t)(e - s);
    *p = e < end ? e + 1 : e;
    return true;
}

static enum gh_proxy_status parse_v1(const uint8_t *buf, size_t len, struct gh_proxy_result *out)
{
    const char *s = (const char *)buf;
    const char *crlf = NULL;
    size_t scan = GH_MIN(len, (size_t)GH_PROXY_V1_MAX);
    for (size_t i = 0; i < scan; i++) {
        if (s[i] == '\r') {
            if (i + 1 == scan)
                break; /* the LF may still come */
            if (s[i + 1] != '\n')
                return GH_PROXY_INVALID;
            crlf = s + i;
            break;
        }
        if (s[i] == '\n' || s[i] == '\0')
            return GH_PROXY_INVALID;
    }
    if (!crlf)
        return len >= GH_PROXY_V1_MAX ? GH_PROXY_INVALID : GH_PROXY_NEED_MORE;
    memset(out, 0, sizeof *out);
    out->version = 1;
    out->consumed = (size_t)(crlf - s) + 2;
    const char *p = s + 6, *end = crlf;
    const char *t;
    size_t tl;
    if (!token(&p, end, &t, &tl))
        return GH_PROXY_INVALID;
    if (tl == 7 && !memcmp(t, "UNKNOWN", 7))
        return GH_PROXY_DONE; /* the rest of the line is to be ignored */
    int family;
    if (tl == 4 && !memcmp(t, "TCP4", 4))
        family = AF_INET;
    else if (tl == 4 && !memcmp(t, "TCP6", 4))
        family = AF_INET6;
    else
        return GH_PROXY_INVALID;
    const char *f[4];
    size_t fl[4];
    for (int i = 0; i < 4; i++)
        if (!token(&p, end, &f[i], &fl[i]))
            return GH_PROXY_INVALID;
    if (p != end || end[-1] == ' ')
        return GH_PROXY_INVALID; /* trailing fields or spaces */
    if (!gh_addr_parse_ip(family, f[0], fl[0], &out->src) ||
        !gh_addr_parse_ip(family, f[1], fl[1], &out->dst) ||
        !gh_addr_parse_port(f[2], fl[2], &out->src_port) ||
        !gh_addr_parse_port(f[3], fl[3], &out->dst_port))
        return GH_PROXY_INVALID;
    out->has_source = true;
    return GH_PROXY_DONE;
}

/* ---- v2: 12-byte signature, ver/cmd, family/protocol, length, addresses, TLVs ---- */

static enum gh_proxy_status parse_v2(const uint8_t *buf, size_t len, struct gh_proxy_result *out)
{
    if (len < 16)
        return GH_PROXY_NEED_MORE;
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
    uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0f;
    size_t body = ((size_t)buf[14] << 8) | buf[15];
    if (ver != 2 || cmd > 1 || fam > 3 || proto > 2 || 16 + body > GH_PROXY_MAX)
        return GH_PROXY_INVALID;
    if (len < 16 + body)
        return GH_PROXY_NEED_MORE;
    memset(out, 0, sizeof *out);
    out->version = 2;
    out->consumed = 16 + body;
    const uint8_t *a = buf + 16;
    size_t need = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
    if (body < need)
        return GH_PROXY_INVALID;
    if (cmd == 0) /* LOCAL: the balancer's own connection (health checks) */
        return GH_PROXY_DONE;
    if (fam == 1) {
        gh_addr_set(&out->src, AF_INET, a);
        gh_addr_set(&out->dst, AF_INET, a + 4);
        out->src_port = (uint16_t)((a[8] << 8) | a[9]);
        out->dst_port = (uint16_t)((a[10] << 8) | a[11]);
        out->has_source = true;
    } else if (fam == 2) {
        gh_addr_set(&out->src, AF_INET6, a);
        gh_addr_set(&out->dst, AF_INET6, a + 16);
        out->src_port = (uint16_t)((a[32] << 8) | a[33]);
        out->dst_port = (uint16_t)((a[34] << 8) | a[35]);
        out->has_source = true;
    }
    /* UNSPEC and UNIX: no IP source; the TLVs are not needed and skipped */
    return GH_PROXY_DONE;
}

enum gh_proxy_status gh_proxy_parse(const uint8_t *buf, size_t len, struct gh_proxy_result *out)
{
    static const char v1sig[6] = "PROXY ";
    if (len == 0)
        return GH_PROXY_NEED_MORE;
    if (buf[0] == v2sig[0]) {
        size_t n = GH_MIN(len, sizeof v2sig);
        if (memcmp(buf, v2sig, n))
            return GH_PROXY_INVALID;
        return n < sizeof v2sig ? GH_PROXY_NEED_MORE : parse_v2(buf, len, out);
    }
    size_t n = GH_MIN(len, sizeof v1sig);
    if (memcmp(buf, v1sig, n))
        return GH_PROXY_INVALID;
    return n < sizeof v1sig ? GH_PROXY_NEED_MORE : parse_v1(buf, len, out);
}
