/* This module implements the incremental SSE parser of sse.h. */
#include "gateway/sse.h"

#include <string.h>

/* A line may hold an event's whole data plus "data: " and a CR. */
#define LINE_SLACK 8

void gh_sse_init(struct gh_sse_parser *p, size_t cap)
{
    gh_buf_init(&p->line, cap + LINE_SLACK);
    gh_buf_init(&p->data, cap);
    p->has_data = false;
}

void gh_sse_dispose(struct gh_sse_parser *p)
{
    gh_buf_dispose(&p->line);
    gh_buf_dispose(&p->data);
}

bool gh_sse_pending(const struct gh_sse_parser *p)
{
    return p->line.len || p->has_data;
}

/* One complete line without its terminator. */
static int on_line(struct gh_sse_parser *p, const char *s, size_t n, gh_sse_event_cb cb, void *ud)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (!n) {
        if (!p->has_data)
            return 0;
        p->has_data = false;
        int rc = cb(p->data.data ? p->data.data : "", p->data.len, ud);
        gh_buf_reset(&p->data);
        return rc;
    }
    if (s[0] == ':')
        return 0;
    if (n == 4 && !memcmp(s, "data", 4)) {
        s += 4; /* a field without a colon has the empty value */
        n = 0;
    } else if (n < 5 || memcmp(s, "data:", 5)) {
        return 0; /* event:, id:, retry: and unknown fields */
    } else {
        s += 5;
        n -= 5;
    }
    if (n && *s == ' ') {
        s++;
        n--;
    }
    int rc = 0;
    if (p->has_data)
        rc = gh_buf_append(&p->data, "\n", 1);
    p->has_data = true;
    return rc ? rc : gh_buf_append(&p->data, s, n);
}

int gh_sse_feed(struct gh_sse_parser *p, const char *buf, size_t len, gh_sse_event_cb cb,
                void *ud)
{
    while (len) {
        /* the common case, without a copy: nothing held and a whole
         * one-line event "data:…\n\n" in buf; its data goes to cb in place */
        if (!p->line.len && !p->has_data && len > 6 && !memcmp(buf, "data:", 5)) {
            const char *nl = memchr(buf + 5, '\n', len - 5);
            if (nl && (size_t)(nl - buf) > p->line.cap)
                return GH_ETOOBIG; /* the same line cap as when it comes in pieces */
            if (nl && (size_t)(nl - buf) + 1 < len && nl[1] == '\n') {
                const char *s = buf + 5;
                size_t n = (size_t)(nl - s);
                if (n && *s == ' ') {
                    s++;
                    n--;
                }
                if (n && s[n - 1] == '\r')
                    n--;
                if (n > p->data.cap)
                    return GH_ETOOBIG;
                int rc = cb(s, n, ud);
                if (rc)
                    return rc;
                size_t used = (size_t)(nl - buf) + 2;
                buf += used;
                len -= used;
                continue;
            }
        }
        const char *nl = memchr(buf, '\n', len);
        if (!nl)
            return gh_buf_append(&p->line, buf, len);
        size_t n = (size_t)(nl - buf);
        int rc;
        if (p->line.len) {
            rc = gh_buf_append(&p->line, buf, n);
            if (!rc)
                rc = on_line(p, p->line.data, p->line.len, cb, ud);
            gh_buf_reset(&p->line);
        } else if (n > p->line.cap) {
            rc = GH_ETOOBIG;
        } else {
            rc = on_line(p, buf, n, cb, ud);
        }
        if (rc)
            return rc;
        buf += n + 1;
        len -= n + 1;
    }
    return 0;
}
