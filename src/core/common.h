/* Common definitions shared by every module: error codes, assertions,
 * clocks. Any thread may use anything here. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>

/* Negative error codes returned by functions that can fail (0 = success). */
#define GH_EINVAL   (-1) /* invalid argument or input */
#define GH_ENOMEM   (-2) /* allocation failed */
#define GH_ETOOBIG  (-3) /* a capped buffer or table would exceed its cap */
#define GH_EIO      (-4) /* a system call failed */
#define GH_ENOTFOUND (-5)
#define GH_EBUSY    (-6) /* a queue or table is full */
#define GH_EEXIST   (-7)
#define GH_EPERM    (-8) /* refused: not allowed as things stand */

/* A GH_E* code's name for logs ("invalid argument" …); never NULL. */
const char *gh_strerror(int rc);

#define GH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GH_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define GH_MAX(a, b)    ((a) > (b) ? (a) : (b))
#define GH_LIKELY(x)    __builtin_expect(!!(x), 1)
#define GH_UNLIKELY(x)  __builtin_expect(!!(x), 0)

#ifdef GH_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define GH_ASSERT(c)                                                                               \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
/* A *_locked function's first line: the mutex it needs is held (a
 * trylock that finds it free takes it, and the assertion then stops). */
#include <errno.h>
#include <pthread.h>
#define GH_ASSERT_LOCKED(m) GH_ASSERT(pthread_mutex_trylock(m) == EBUSY)
#else
#define GH_ASSERT(c)        ((void)0)
#define GH_ASSERT_LOCKED(m) ((void)0)
#endif

/* Counters written by one thread and read by others: a relaxed load and
 * store, no locked instruction on the hot path. */
#define GH_STAT_ADD(p, n)                                                                          \
    atomic_store_explicit((p), atomic_load_explicit((p), memory_order_relaxed) + (n),              \
                          memory_order_relaxed)
#define GH_STAT_GET(p) atomic_load_explicit((p), memory_order_relaxed)

/* Milliseconds on a monotonic clock (never jumps). */
uint64_t gh_now_ms(void);
/* Nanoseconds on a monotonic clock. */
uint64_t gh_now_ns(void);
/* Milliseconds since the Unix epoch (wall clock, for timestamps only). */
uint64_t gh_wall_ms(void);
/* Names the calling thread in ps, top -H and /proc (at most 15 bytes:
 * longer names are cut), so that an operator can tell the store's writer
 * from a worker. Best effort. */
void gh_thread_name(const char *name);
/* Formats a wall-clock time in ms as RFC 3339 UTC with milliseconds into
 * out (at least 32 bytes). Returns out. */
char *gh_time_rfc3339(uint64_t wall_ms, char *out, size_t outlen);
