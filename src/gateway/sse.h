/* An incremental parser of server-sent events, for the streams upstreams
 * send: bytes in, whole events' data out. It follows the SSE rules the
 * OpenAI protocol uses: lines end in LF or CRLF, "data:" lines (one
 * optional space after the colon) accumulate into the event's data joined
 * by LF ("data" alone adds an empty line), a blank line dispatches the
 * event, ":" lines are comments, other fields are ignored. A lone CR is
 * not a line end (model servers never send one; the relay re-frames every
 * event, so none reaches a client). Lines (cap + 8 bytes) and events (cap)
 * are capped the same way whether the bytes come whole or in pieces. The
 * data may span lines: whoever forwards it must re-frame it (reframe.h).
 * Owned by one thread. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

struct gh_sse_parser {
    struct gh_buf line; /* a line cut by the end of a feed */
    struct gh_buf data; /* the event being assembled */
    bool has_data;
};

/* Called once per event; return 0 to go on, a negative code to stop the
 * feed (the code is returned by gh_sse_feed). */
typedef int (*gh_sse_event_cb)(const char *data, size_t len, void *ud);

/* Prepares p; events (and lines) longer than cap fail with GH_ETOOBIG. */
void gh_sse_init(struct gh_sse_parser *p, size_t cap);
void gh_sse_dispose(struct gh_sse_parser *p);
/* Feeds len bytes. Returns 0, GH_ETOOBIG, GH_ENOMEM or what cb returned. */
int gh_sse_feed(struct gh_sse_parser *p, const char *buf, size_t len, gh_sse_event_cb cb,
                void *ud);
/* True when bytes of an unfinished line or event are held. */
bool gh_sse_pending(const struct gh_sse_parser *p);
