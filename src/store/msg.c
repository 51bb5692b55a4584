/* This module implements the text form of the messages between the nodes
 * of a cluster (store.h, gh_store_msg): "v1:<node>:<kind>:<value>", at most
 * GH_STORE_MSG_MAX bytes, so small and so plain that a NOTIFY payload can
 * never carry more than a keyed hash, an account id or a setting's name. */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* n bytes from 2n lowercase hex characters. */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

bool gh_store_setting_name_ok(const char *name)
{
    size_t n = name ? strnlen(name, GH_STORE_SETTING_NAME_MAX + 1) : 0;
    if (!n || n > GH_STORE_SETTING_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i]))
            return false;
    return true;
}

int gh_store_msg_encode(const struct gh_store_msg *m, char *out, size_t cap)
{
    uint8_t node[8];
    for (int i = 0; i < 8; i++)
        node[i] = (uint8_t)(m->node >> (56 - 8 * i));
    char nh[17], val[72];
    tohex(node, 8, nh);
    switch (m->kind) {
    case GH_STORE_MSG_SESSION:
    case GH_STORE_MSG_KEY:
        tohex(m->hash, 32, val);
        break;
    case GH_STORE_MSG_USER:
        if (!m->user_id)
            return GH_EINVAL;
        snprintf(val, sizeof val, "%llu", (unsigned long long)m->user_id);
        break;
    case GH_STORE_MSG_SETTING:
        if (!gh_store_setting_name_ok(m->name))
            return GH_EINVAL;
        snprintf(val, sizeof val, "%s", m->name);
        break;
    default:
        return GH_EINVAL;
    }
    int n = snprintf(out, cap, "v1:%s:%c:%s", nh, m->kind, val);
    return n < 0 || (size_t)n >= cap ? GH_EINVAL : n;
}

int gh_store_msg_decode(const char *s, size_t len, struct gh_store_msg *m)
{
    memset(m, 0, sizeof *m);
    /* "v1:" 16 hex ":" kind ":" value */
    if (len < 3 + 16 + 3 + 1 || len >= GH_STORE_MSG_MAX || memcmp(s, "v1:", 3) || s[19] != ':' ||
        s[21] != ':')
        return GH_EINVAL;
    uint8_t node[8];
    if (!unhex(s + 3, node, 8))
        return GH_EINVAL;
    for (int i = 0; i < 8; i++)
        m->node = m->node << 8 | node[i];
    m->kind = s[20];
    const char *v = s + 22;
    size_t vn = len - 22;
    switch (m->kind) {
    case GH_STORE_MSG_SESSION:
    case GH_STORE_MSG_KEY:
        return vn == 64 && unhex(v, m->hash, 32) ? 0 : GH_EINVAL;
    case GH_STORE_MSG_USER:
        if (vn > 20 || v[0] == '0')
            return GH_EINVAL;
        for (size_t i = 0; i < vn; i++) {
            uint64_t d = (uint64_t)(v[i] - '0');
            if (v[i] < '0' || v[i] > '9' || m->user_id > (UINT64_MAX - d) / 10)
                return GH_EINVAL;
            m->user_id = m->user_id * 10 + d;
        }
        return 0;
    case GH_STORE_MSG_SETTING:
        if (!vn || vn > GH_STORE_SETTING_NAME_MAX)
            return GH_EINVAL;
        for (size_t i = 0; i < vn; i++) /* every byte: a NUL would cut the name short */
            if (!name_char(v[i]))
                return GH_EINVAL;
        memcpy(m->name, v, vn);
        m->name[vn] = 0;
        return 0;
    default:
        return GH_EINVAL;
    }
}
