/* This module implements the capped bump allocator of arena.h. */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN 1024

struct gh_arena_chunk {
    struct gh_arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char mem[];
};

void gh_arena_init(struct gh_arena *a, size_t cap)
{
    a->head = NULL;
    a->used_total = 0;
    a->cap = cap;
}

void gh_arena_dispose(struct gh_arena *a)
{
    struct gh_arena_chunk *c = a->head;
    while (c) {
        struct gh_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

void gh_arena_reset(struct gh_arena *a, size_t keep)
{
    if (a->used_total > keep) {
        gh_arena_dispose(a);
        return;
    }
    for (struct gh_arena_chunk *c = a->head; c; c = c->next)
        c->used = 0;
}

void *gh_arena_alloc(struct gh_arena *a, size_t n)
{
    if (n > a->cap)
        return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    struct gh_arena_chunk *c = a->head;
    /* a recycled arena has free room in older chunks too */
    while (c && c->size - c->used < need)
        c = c->next;
    if (!c) {
        c = a->head;
        size_t size = GH_MAX(need, c ? c->size * 2 : (size_t)CHUNK_MIN);
        if (a->used_total + size > a->cap) {
            size = need;
            if (a->used_total + size > a->cap)
                return NULL;
        }
        c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        /* new chunks go first: they are the largest */
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->used_total += size;
    }
    void *p = c->mem + c->used;
    c->used += need;
    return p;
}

char *gh_arena_strndup(struct gh_arena *a, const char *s, size_t n)
{
    char *p = gh_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
