/* A growable byte buffer with a hard cap (the curl `dynbuf` idea): appends
 * that would grow it past its cap fail with GH_ETOOBIG and leave it intact.
 * Owned by one thread; the caller's memory holds the struct, the buffer
 * owns its heap block until gh_buf_dispose. */
#pragma once

#include "core/common.h"

#include <stdarg.h>

struct gh_buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap; /* hard limit on len */
};

/* Prepares an empty buffer that may grow to cap bytes. Allocates nothing. */
void gh_buf_init(struct gh_buf *b, size_t cap);
/* Frees the heap block; the buffer is empty and reusable afterwards. */
void gh_buf_dispose(struct gh_buf *b);
/* Empties the buffer but keeps its block. */
void gh_buf_reset(struct gh_buf *b);
/* Makes room for n more bytes. 0, GH_ETOOBIG or GH_ENOMEM. */
int gh_buf_reserve(struct gh_buf *b, size_t n);
/* Appends n bytes. 0, GH_ETOOBIG or GH_ENOMEM. */
int gh_buf_append(struct gh_buf *b, const void *p, size_t n);
int gh_buf_append_str(struct gh_buf *b, const char *s);
/* Appends formatted text (never truncates: all or GH_ETOOBIG). */
int gh_buf_printf(struct gh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gh_buf_vprintf(struct gh_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Appends s as the inside of a JSON string (quotes not included): escapes
 * quotes, backslashes and control characters; invalid UTF-8 bytes become
 * U+FFFD so the output is always valid JSON. */
int gh_buf_append_json_str(struct gh_buf *b, const char *s, size_t n);
/* Same for HTML text and attribute values. */
int gh_buf_append_html(struct gh_buf *b, const char *s, size_t n);
/* Removes the first n bytes (n <= len). */
void gh_buf_consume(struct gh_buf *b, size_t n);
/* Detaches the block; the caller frees it with free(). The buffer is empty. */
char *gh_buf_steal(struct gh_buf *b, size_t *len);
