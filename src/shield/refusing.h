/* A memo of the limiter keys that refuse every request now. When an
 * aggregate key (a /24 or /64, a /48, a class's global key) refuses a
 * request, nobody passes under it until its retry time (a GCRA refusal
 * stores nothing), so the key and that time are noted here; the shield's
 * header filter then refuses the next request under the key from its
 * headers, before its body is read or parsed.
 *
 * GH_REFUSING_SLOTS words of 64 bits (24 bits of the key, 40 bits of the
 * deadline in ms of the monotonic clock), indexed by other bits of the
 * key, read and written with relaxed atomics by any thread. A slot taken
 * by another key only forgets (that request then takes the full check); a
 * key matching a slot's 24-bit tag by chance would be refused at most
 * until that slot's deadline. A noted deadline is rounded down, never
 * later than the limiter's own. Memory: the caller's (embed the struct,
 * zeroed); nothing to free. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#define GH_REFUSING_SLOTS 4096

struct gh_refusing {
    _Atomic uint64_t slot[GH_REFUSING_SLOTS];
};

/* Notes that key refuses every request until until_ns (monotonic ns). */
void gh_refusing_note(struct gh_refusing *m, uint64_t key, uint64_t until_ns);
/* How long key still refuses at now_ns (ns; 0 when not known to refuse). */
uint64_t gh_refusing_left(struct gh_refusing *m, uint64_t key, uint64_t now_ns);
