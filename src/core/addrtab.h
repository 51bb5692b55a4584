/* A table counting open connections per client address (an IPv4 address,
 * or the /64 of an IPv6 one, since a client holds a whole /64), shared by
 * every worker: sharded, each shard a small open-addressing hash under its own
 * mutex. Its capacity is fixed at creation (an entry exists only while its
 * address has a connection open, so the total connection cap bounds it). */
#pragma once

#include "core/addr.h"

struct gh_addrtab;

/* A table for up to capacity distinct addresses. NULL when out of memory. */
struct gh_addrtab *gh_addrtab_new(unsigned capacity);
void gh_addrtab_free(struct gh_addrtab *t);
/* Counts one more connection from a (its /64 for IPv6) unless that would pass max. Returns the
 * new count, 0 when refused (cap reached or table full). Any thread. */
unsigned gh_addrtab_acquire(struct gh_addrtab *t, const struct gh_addr *a, unsigned max);
/* Counts one connection less. Any thread. */
void gh_addrtab_release(struct gh_addrtab *t, const struct gh_addr *a);
/* Current count for a (for tests and diagnostics). */
unsigned gh_addrtab_count(struct gh_addrtab *t, const struct gh_addr *a);
