/* An intrusive doubly linked list (circular, with a head node). Owned by
 * whoever owns the nodes' structs; no locking. */
#pragma once

#include <stddef.h>
#include <stdbool.h>

struct gh_list {
    struct gh_list *prev, *next;
};

#define GH_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void gh_list_init(struct gh_list *h)
{
    h->prev = h->next = h;
}

static inline bool gh_list_empty(const struct gh_list *h)
{
    return h->next == h;
}

/* True when node is linked into some list (nodes are kept self-linked
 * when out of any list). */
static inline bool gh_list_linked(const struct gh_list *n)
{
    return n->next != n;
}

static inline void gh_list_push_back(struct gh_list *h, struct gh_list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void gh_list_remove(struct gh_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline struct gh_list *gh_list_first(struct gh_list *h)
{
    return h->next == h ? NULL : h->next;
}
