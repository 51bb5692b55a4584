/* Re-framing what an upstream sends before the client sees it: a strict
 * JSON reader that writes the compact form of one JSON object (so an
 * event's data is always one line, whatever newlines the upstream put in
 * it), with the top-level "model" set to the public model name and the
 * top-level "system_fingerprint" left out. Pure functions on caller
 * memory: any thread may call them. Nothing is allocated but out's block. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

/* Nesting deeper than this is refused (GH_EINVAL). */
#define GH_REFRAME_DEPTH_MAX 64

/* Appends the compact form of s (n bytes), which must be exactly one JSON
 * object (RFC 8259: UTF-8, no raw control characters in strings,
 * whitespace around it allowed), to out. Strings and numbers are copied
 * byte for byte, whitespace outside them dropped. When model is not NULL,
 * every top-level "model" member gets the value model (a string) and
 * top-level "system_fingerprint" members are left out. Returns 0,
 * GH_EINVAL (not one JSON object), GH_ETOOBIG or GH_ENOMEM; on failure out
 * is as it was. */
int gh_reframe_json(const char *s, size_t n, const char *model, struct gh_buf *out);

/* One SSE event for the client, appended to out: "data: [DONE]\n\n" for
 * the data [DONE], else "data: " + gh_reframe_json(data) + "\n\n". Same
 * returns; on failure out is as it was. *error (when not NULL) tells
 * whether the object has a top-level "error" member (keys read as a
 * client decodes them), wherever it stands among the others. */
int gh_reframe_event(const char *data, size_t len, const char *model, struct gh_buf *out,
                     bool *error);
