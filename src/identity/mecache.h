/* The answers of GET /api/me, kept for a few seconds so that a signed-in
 * user's page loads and polls are answered from memory, without a store
 * round trip: on PostgreSQL that round trip costs the cluster three times
 * the node's own work for the request (bench/results/cluster.md), and on
 * a saturated worker it is a second wait for the loop.
 *
 * A fixed table of GH_MECACHE_SLOTS slots, direct-mapped by user id (a
 * collision replaces the older entry), sharded locks; an entry lives
 * GH_MECACHE_TTL_MS and is dropped at once by every write this node makes
 * to the record it renders (a login's last_login_at, disable, delete).
 * A write on another node shows here within the TTL: an entry is never
 * older than that, and one asked for in its last quarter is read again
 * in the background, so a user who keeps polling is always answered from
 * memory. Entries hold the
 * rendered user object, a phone number in clear among it: they are wiped
 * when replaced, dropped or freed, and never written anywhere.
 *
 * Any thread. gh_mecache_init/free: main thread, before and after the
 * threads that call the others. */
#pragma once

#include "core/common.h"

#define GH_MECACHE_SLOTS  16384
#define GH_MECACHE_TTL_MS 5000
/* past this age an entry is still answered, and read again behind the
 * answer (gh_mecache_get's *refresh) */
#define GH_MECACHE_REFRESH_MS 3750
#define GH_MECACHE_MAX    240 /* bytes of one rendered user object */

/* 0 or GH_ENOMEM. */
int gh_mecache_init(void);
void gh_mecache_free(void);
/* Copies the live entry of user_id into out (GH_MECACHE_MAX bytes) and
 * returns its length; 0 when there is none (or the cache is off). When the
 * entry is older than GH_MECACHE_REFRESH_MS and no refresh of it is out,
 * *refresh is set (else cleared) and the entry counts as being refreshed:
 * the caller reads the record again behind its answer (gh_mecache_gen,
 * then gh_mecache_put, which ends the refresh), so a user who keeps
 * asking never waits for the store. A refresh that fails leaves the entry
 * to its expiry. */
size_t gh_mecache_get(uint64_t user_id, uint64_t now_ms, char *out, bool *refresh);
/* The generation of user_id's slot: take it before reading the record,
 * hand it to gh_mecache_put with what was read. */
uint64_t gh_mecache_gen(uint64_t user_id);
/* Keeps json (len bytes) for user_id until now_ms + GH_MECACHE_TTL_MS,
 * unless the slot was dropped since gen was taken (what was read may be
 * older than the write that dropped it: it is not kept). Larger than
 * GH_MECACHE_MAX: not kept. */
void gh_mecache_put(uint64_t user_id, uint64_t gen, uint64_t now_ms, const char *json, size_t len);
/* Drops user_id's entry (its record changed and the change committed). */
void gh_mecache_drop(uint64_t user_id);
