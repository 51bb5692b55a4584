/* This module implements the memo of refusing limiter keys (refusing.h). */
#include "shield/refusing.h"

#define DEADLINE_BITS 40
#define DEADLINE_MASK ((UINT64_C(1) << DEADLINE_BITS) - 1)

/* The key's two low bits are its rank (limiter.h): the slot and the tag
 * come from the bits above them. */
static inline unsigned slot_of(uint64_t key)
{
    return (unsigned)(key >> 2) & (GH_REFUSING_SLOTS - 1);
}

static inline uint64_t tag_of(uint64_t key)
{
    return (key >> 14) & ((UINT64_C(1) << (64 - DEADLINE_BITS)) - 1);
}

void gh_refusing_note(struct gh_refusing *m, uint64_t key, uint64_t until_ns)
{
    uint64_t until_ms = until_ns / 1000000u; /* rounded down: never past the limiter */
    atomic_store_explicit(&m->slot[slot_of(key)],
                          tag_of(key) << DEADLINE_BITS | (until_ms & DEADLINE_MASK),
                          memory_order_relaxed);
}

uint64_t gh_refusing_left(struct gh_refusing *m, uint64_t key, uint64_t now_ns)
{
    uint64_t v = atomic_load_explicit(&m->slot[slot_of(key)], memory_order_relaxed);
    if (v >> DEADLINE_BITS != tag_of(key))
        return 0;
    /* the monotonic clock counts from boot: 40 bits of ms last 34 years */
    uint64_t until_ms = v & DEADLINE_MASK, now_ms = now_ns / 1000000u;
    /* until_ms > now_ms, both rounded down, means the deadline is after now */
    return until_ms > now_ms ? until_ms * 1000000u - now_ns : 0;
}
