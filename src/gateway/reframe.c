/* This module implements the strict compact JSON re-framer of reframe.h.
 *
 * One pass, no tree: the reader checks the grammar and writes each token
 * as it goes. Every byte written consumes at least one byte read, except
 * the public model name written in place of a "model" value, for which
 * room is reserved before it is written; so the buffer can always hold
 * what is written plus the rest of the input. */
#include "gateway/reframe.h"

#include <string.h>

struct rf {
    const char *s;
    size_t n, i;
    struct gh_buf *out;
    size_t o;          /* the write position in out->data (out->len moves at the end) */
    const char *model; /* JSON string of the public model, quotes included */
    size_t model_len;
    bool esc;   /* the last string read held an escape */
    bool error; /* the object has a top-level "error" member */
};

#define MODEL_MAX 256

static inline void skip_ws(struct rf *r)
{
    /* compact input (the common case) has none: one test */
    if (r->i < r->n && (unsigned char)r->s[r->i] > ' ')
        return;
    while (r->i < r->n) {
        char c = r->s[r->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        r->i++;
    }
}

static inline void put(struct rf *r, const char *p, size_t len)
{
    memcpy(r->out->data + r->o, p, len);
    r->o += len;
}

static inline void put1(struct rf *r, char c)
{
    r->out->data[r->o++] = c;
}

/* Bytes a string's scan stops at: '"', '\\', controls, non-ASCII. */
static const unsigned char stop[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The length of the valid UTF-8 sequence at p (n bytes left), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;
    /* the second byte's range rules out overlongs, surrogates, > U+10FFFF */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((p[k] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* A string at s[i] == '"': checked and copied as it is. r->esc tells
 * whether it held an escape. */
static int string(struct rf *r)
{
    const unsigned char *s = (const unsigned char *)r->s;
    size_t start = r->i, i = r->i + 1, n = r->n;
    bool esc = false;
    for (;;) {
        while (i < n && !stop[s[i]])
            i++;
        if (i >= n)
            return GH_EINVAL;
        unsigned char c = s[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return GH_EINVAL;
        if (c == '\\') {
            esc = true;
            if (i + 1 >= n)
                return GH_EINVAL;
            unsigned char e = s[i + 1];
            if (e == 'u') {
                if (i + 5 >= n || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) ||
                    !is_hex(s[i + 5]))
                    return GH_EINVAL;
                i += 6;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                i += 2;
            } else {
                return GH_EINVAL;
            }
            continue;
        }
        size_t l = utf8_len(s + i, n - i);
        if (!l)
            return GH_EINVAL;
        i += l;
    }
    r->i = i + 1;
    r->esc = esc;
    put(r, r->s + start, r->i - start);
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? copied as it is. */
static int number(struct rf *r)
{
    size_t start = r->i;
    const char *s = r->s;
    size_t n = r->n;
    if (r->i < n && s[r->i] == '-')
        r->i++;
    if (r->i >= n || !is_digit(s[r->i]))
        return GH_EINVAL;
    if (s[r->i] == '0') {
        r->i++;
    } else {
        while (r->i < n && is_digit(s[r->i]))
            r->i++;
    }
    if (r->i < n && s[r->i] == '.') {
        r->i++;
        if (r->i >= n || !is_digit(s[r->i]))
            return GH_EINVAL;
        while (r->i < n && is_digit(s[r->i]))
            r->i++;
    }
    if (r->i < n && (s[r->i] == 'e' || s[r->i] == 'E')) {
        r->i++;
        if (r->i < n && (s[r->i] == '+' || s[r->i] == '-'))
            r->i++;
        if (r->i >= n || !is_digit(s[r->i]))
            return GH_EINVAL;
        while (r->i < n && is_digit(s[r->i]))
            r->i++;
    }
    put(r, s + start, r->i - start);
    return 0;
}

static int literal(struct rf *r, const char *word)
{
    size_t l = strlen(word);
    if (r->n - r->i < l || memcmp(r->s + r->i, word, l))
        return GH_EINVAL;
    put(r, word, l);
    r->i += l;
    return 0;
}

static int value(struct rf *r, unsigned depth);

static int array(struct rf *r, unsigned depth)
{
    put1(r, '[');
    r->i++;
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == ']') {
        r->i++;
        put1(r, ']');
        return 0;
    }
    for (;;) {
        int rc = value(r, depth + 1);
        if (rc)
            return rc;
        skip_ws(r);
        if (r->i >= r->n)
            return GH_EINVAL;
        char c = r->s[r->i++];
        put1(r, c);
        if (c == ']')
            return 0;
        if (c != ',')
            return GH_EINVAL;
        skip_ws(r);
    }
}

/* Whether the raw key text k (between its quotes, escapes as sent) spells
 * name once its escapes are read. */
static bool key_equals(const char *k, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (!memchr(k, '\\', len))
        return len == nl && !memcmp(k, name, nl);
    size_t j = 0;
    for (size_t i = 0; i < len; j++) {
        char c = k[i];
        if (c == '\\' && i + 5 < len && k[i + 1] == 'u') {
            unsigned v = 0;
            for (size_t d = 2; d < 6; d++) {
                char h = k[i + d];
                v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            if (v > 0x7f)
                return false; /* our names are ASCII */
            c = (char)v;
            i += 6;
        } else if (c == '\\' && i + 1 < len) {
            c = k[i + 1];
            i += 2;
        } else {
            i++;
        }
        if (j >= nl || c != name[j])
            return false;
    }
    return j == nl;
}

static int object(struct rf *r, unsigned depth)
{
    bool top = depth == 0 && r->model;
    put1(r, '{');
    r->i++;
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == '}') {
        r->i++;
        put1(r, '}');
        return 0;
    }
    bool written = false;
    size_t first = r->o; /* just after the '{' */
    for (;;) {
        if (r->i >= r->n || r->s[r->i] != '"')
            return GH_EINVAL;
        size_t member = r->o; /* where this member (or its comma) starts */
        if (written)
            put1(r, ',');
        size_t k0 = r->i + 1;
        int rc = string(r);
        if (rc)
            return rc;
        size_t klen = r->i - 1 - k0;
        bool kesc = r->esc;
        skip_ws(r);
        if (r->i >= r->n || r->s[r->i] != ':')
            return GH_EINVAL;
        r->i++;
        put1(r, ':');
        skip_ws(r);
        size_t v0 = r->o;
        rc = value(r, depth + 1);
        if (rc)
            return rc;
        written = true;
        /* only top-level keys of 5 bytes and more can spell our names */
        bool esc = top && kesc;
        if (top && (klen == 5 || esc) && key_equals(r->s + k0, klen, "model")) {
            /* the value read (checked) is replaced by the public name */
            r->o = v0;
            /* room for the name and the rest of the input. The reserve
             * counts from len, and a growing buffer gets a NUL at data[len]:
             * len is moved to the write position for it, else that NUL
             * lands on the first byte written (the '{') */
            size_t len0 = r->out->len;
            r->out->len = r->o;
            rc = gh_buf_reserve(r->out, r->model_len + (r->n - r->i));
            r->out->len = len0;
            if (rc)
                return rc;
            put(r, r->model, r->model_len);
        } else if (top && klen == 5 && !esc && !memcmp(r->s + k0, "error", 5)) {
            r->error = true;
        } else if (top && esc && key_equals(r->s + k0, klen, "error")) {
            r->error = true;
        } else if (top && (klen == 18 || esc) &&
                   key_equals(r->s + k0, klen, "system_fingerprint")) {
            /* nothing of it stays; a comma is due only if a member came before */
            r->o = member;
            written = member > first;
        }
        skip_ws(r);
        if (r->i >= r->n)
            return GH_EINVAL;
        char c = r->s[r->i++];
        if (c == '}') {
            put1(r, '}');
            return 0;
        }
        if (c != ',')
            return GH_EINVAL;
        skip_ws(r);
    }
}

static int value(struct rf *r, unsigned depth)
{
    if (depth > GH_REFRAME_DEPTH_MAX)
        return GH_EINVAL;
    if (r->i >= r->n)
        return GH_EINVAL;
    switch (r->s[r->i]) {
    case '{':
        return object(r, depth);
    case '[':
        return array(r, depth);
    case '"':
        return string(r);
    case 't':
        return literal(r, "true");
    case 'f':
        return literal(r, "false");
    case 'n':
        return literal(r, "null");
    default:
        return number(r);
    }
}

/* The public model as a JSON string (quotes included) into buf. */
static size_t quote_model(const char *model, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)model; *p; p++) {
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p < 0x20) {
            memcpy(buf + o, "\\u00", 4);
            buf[o + 4] = hex[*p >> 4];
            buf[o + 5] = hex[*p & 15];
            o += 6;
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    return o;
}

/* gh_reframe_json; *error (when not NULL) tells whether the object has a
 * top-level "error" member. */
static int reframe(const char *s, size_t n, const char *model, struct gh_buf *out, bool *error)
{
    char mq[MODEL_MAX * 6 + 2];
    struct rf r = {.s = s, .n = n, .out = out, .o = out->len};
    if (model) {
        if (strlen(model) > MODEL_MAX)
            return GH_EINVAL;
        r.model_len = quote_model(model, mq);
        r.model = mq;
    }
    int rc = gh_buf_reserve(out, n);
    if (rc)
        return rc;
    skip_ws(&r);
    if (r.i >= n || s[r.i] != '{')
        return GH_EINVAL;
    rc = object(&r, 0);
    if (rc)
        goto fail;
    skip_ws(&r);
    if (r.i != n) {
        rc = GH_EINVAL;
        goto fail;
    }
    GH_ASSERT(r.o <= out->cap);
    out->len = r.o;
    out->data[out->len] = '\0';
    if (error)
        *error = r.error;
    return 0;
fail:
    if (out->data)
        out->data[out->len] = '\0';
    return rc;
}

int gh_reframe_json(const char *s, size_t n, const char *model, struct gh_buf *out)
{
    return reframe(s, n, model, out, NULL);
}

int gh_reframe_event(const char *data, size_t len, const char *model, struct gh_buf *out,
                     bool *error)
{
    if (error)
        *error = false;
    if (len == 6 && !memcmp(data, "[DONE]", 6))
        return gh_buf_append_str(out, "data: [DONE]\n\n");
    size_t mark = out->len;
    int rc = gh_buf_append(out, "data: ", 6);
    rc = rc ? rc : reframe(data, len, model, out, error);
    rc = rc ? rc : gh_buf_append(out, "\n\n", 2);
    if (rc && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}
