/* A bump allocator for request-scoped memory (h2o's mem pool idea): many
 * small allocations, one free. Capped: an arena never holds more than its
 * cap bytes, so a hostile request cannot grow it without bound. Owned by
 * one thread. */
#pragma once

#include "core/common.h"

struct gh_arena_chunk;

struct gh_arena {
    struct gh_arena_chunk *head;
    size_t used_total; /* bytes of chunks allocated */
    size_t cap;
};

void gh_arena_init(struct gh_arena *a, size_t cap);
/* Frees every chunk; the arena is empty and reusable. */
void gh_arena_dispose(struct gh_arena *a);
/* Makes every byte reusable but keeps the chunks when they total at most
 * keep bytes (else frees them all), so a recycled arena allocates nothing. */
void gh_arena_reset(struct gh_arena *a, size_t keep);
/* n bytes aligned to 16, or NULL when the cap would be exceeded or memory
 * is out. The memory lives until gh_arena_dispose. */
void *gh_arena_alloc(struct gh_arena *a, size_t n);
/* A NUL-terminated copy of n bytes of s, or NULL. */
char *gh_arena_strndup(struct gh_arena *a, const char *s, size_t n);
