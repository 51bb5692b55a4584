/* This module implements the capped growable buffer of buf.h. */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gh_buf_init(struct gh_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

void gh_buf_dispose(struct gh_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

void gh_buf_reset(struct gh_buf *b)
{
    b->len = 0;
}

int gh_buf_reserve(struct gh_buf *b, size_t n)
{
    if (n > b->cap || b->len > b->cap - n)
        return GH_ETOOBIG;
    size_t need = b->len + n + 1; /* room for a terminating NUL */
    if (need <= b->alloc)
        return 0;
    size_t na = b->alloc ? b->alloc : 256;
    while (na < need)
        na *= 2;
    if (na > b->cap + 1)
        na = b->cap + 1;
    char *p = realloc(b->data, na);
    if (!p)
        return GH_ENOMEM;
    b->data = p;
    b->alloc = na;
    b->data[b->len] = '\0'; /* a fresh block is a valid empty string too */
    return 0;
}

int gh_buf_append(struct gh_buf *b, const void *p, size_t n)
{
    int rc = gh_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int gh_buf_append_str(struct gh_buf *b, const char *s)
{
    return gh_buf_append(b, s, strlen(s));
}

int gh_buf_vprintf(struct gh_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return GH_EINVAL;
    int rc = gh_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int gh_buf_printf(struct gh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = gh_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int gh_buf_append_json_str(struct gh_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        /* copy the longest run that needs no escaping at once */
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            int rc = gh_buf_append(b, p + i, run - i);
            if (rc)
                return rc;
            i = run;
            continue;
        }
        unsigned char c = p[i];
        char esc[8];
        int rc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = gh_buf_append(b, esc, 2);
            i++;
        } else if (c == '\n') {
            rc = gh_buf_append(b, "\\n", 2);
            i++;
        } else if (c == '\r') {
            rc = gh_buf_append(b, "\\r", 2);
            i++;
        } else if (c == '\t') {
            rc = gh_buf_append(b, "\\t", 2);
            i++;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = gh_buf_append(b, esc, 6);
            i++;
        } else {
            size_t l = utf8_seq_len(p + i, n - i);
            if (l == 0) {
                rc = gh_buf_append(b, "\\ufffd", 6);
                i++;
            } else {
                rc = gh_buf_append(b, p + i, l);
                i += l;
            }
        }
        if (rc)
            return rc;
    }
    return gh_buf_reserve(b, 0);
}

int gh_buf_append_html(struct gh_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        int rc = rep ? gh_buf_append_str(b, rep) : gh_buf_append(b, s + i, 1);
        if (rc)
            return rc;
    }
    return 0;
}

void gh_buf_consume(struct gh_buf *b, size_t n)
{
    GH_ASSERT(n <= b->len);
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *gh_buf_steal(struct gh_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
