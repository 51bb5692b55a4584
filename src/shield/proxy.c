/* This module implements the PROXY protocol v1/v2 parser and the
 * X-Forwarded-For walk of proxy.h. */
#include "shield/proxy.h"

#include "shield/ipset.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v4(struct gh_addr *a, const uint8_t *b)
{
    memset(a, 0, sizeof *a);
    a->family = AF_INET;
    memcpy(a->bytes, b, 4);
}

static void set_v6(struct gh_addr *a, const uint8_t *b)
{
    if (!memcmp(b, v4mapped, 12)) {
        set_v4(a, b + 12);
        return;
    }
    memset(a, 0, sizeof *a);
    a->family = AF_INET6;
    memcpy(a->bytes, b, 16);
}

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

static bool parse_port(const char *s, size_t len, uint16_t *out)
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

static bool parse_ip(int family, const char *s, size_t len, struct gh_addr *out)
{
    char t[INET6_ADDRSTRLEN + 1];
    uint8_t b[16];
    if (len == 0 || len >= sizeof t)
        return false;
    memcpy(t, s, len);
    t[len] = '\0';
    if (inet_pton(family, t, b) != 1)
        return false;
    if (family == AF_INET)
        set_v4(out, b);
    else
        set_v6(out, b);
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
    if (!parse_ip(family, f[0], fl[0], &out->src) || !parse_ip(family, f[1], fl[1], &out->dst) ||
        !parse_port(f[2], fl[2], &out->src_port) || !parse_port(f[3], fl[3], &out->dst_port))
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
        set_v4(&out->src, a);
        set_v4(&out->dst, a + 4);
        out->src_port = (uint16_t)((a[8] << 8) | a[9]);
        out->dst_port = (uint16_t)((a[10] << 8) | a[11]);
        out->has_source = true;
    } else if (fam == 2) {
        set_v6(&out->src, a);
        set_v6(&out->dst, a + 16);
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

/* ---- X-Forwarded-For ---- */

int gh_proxy_parse_addr(const char *s, size_t len, struct gh_addr *out)
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
        if (rest && (close[1] != ':' || !parse_port(close + 2, rest - 1, &port)))
            return GH_EINVAL;
        return parse_ip(AF_INET6, s + 1, (size_t)(close - s - 1), out) ? 0 : GH_EINVAL;
    }
    const char *colon = memchr(s, ':', len);
    if (colon && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1))
        return parse_ip(AF_INET6, s, len, out) ? 0 : GH_EINVAL; /* bare v6 */
    if (colon) { /* v4:port */
        uint16_t port;
        if (!parse_port(colon + 1, len - (size_t)(colon - s) - 1, &port))
            return GH_EINVAL;
        len = (size_t)(colon - s);
    }
    return parse_ip(AF_INET, s, len, out) ? 0 : GH_EINVAL;
}

/* Walks one field value from the right, continuing the walk *out and
 * *from_header hold. Returns true when the walk goes on into the field
 * line before this one (every element here was a trusted hop). */
static bool xff_walk(const char *value, size_t len, const struct gh_ipset *trusted,
                     struct gh_addr *out, bool *from_header)
{
    size_t end = len;
    for (;;) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        struct gh_addr a;
        if (gh_proxy_parse_addr(value + start, end - start, &a))
            return false; /* keep the trusted hop on its right */
        *out = a;
        *from_header = true;
        if (!gh_ipset_contains(trusted, &a))
            return false;
        if (start == 0)
            return true;
        end = start - 1;
    }
}

bool gh_proxy_xff(const char *value, size_t len, const struct gh_addr *peer,
                  const struct gh_ipset *trusted, struct gh_addr *out)
{
    *out = *peer;
    if (!value || !trusted || !gh_ipset_contains(trusted, peer))
        return false;
    bool from_header = false;
    xff_walk(value, len, trusted, out, &from_header);
    return from_header;
}

bool gh_proxy_xff_req(const struct gh_http_req *req, const struct gh_addr *peer,
                      const struct gh_ipset *trusted, struct gh_addr *out)
{
    *out = *peer;
    if (!trusted || !gh_ipset_contains(trusted, peer))
        return false;
    bool from_header = false;
    /* the field lines joined in order (RFC 9110 5.3) and walked from the
     * right: the last line first, as the nearest proxy appended it */
    for (unsigned i = req->nheaders; i-- > 0;) {
        const struct gh_http_header *h = &req->headers[i];
        if (h->name_len != 15 || strncasecmp(h->name, "x-forwarded-for", 15))
            continue;
        if (!xff_walk(h->value, h->value_len, trusted, out, &from_header))
            break;
    }
    return from_header;
}
