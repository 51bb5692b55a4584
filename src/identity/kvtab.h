/* A small table of short-lived counters keyed by 16-byte digests (SMS
 * codes and budgets, login failures): fixed capacity, entries expire, one
 * mutex. Callers lock, find (or create) an entry, read and change its
 * values, and unlock; an entry pointer is valid only while locked. Any
 * thread. The table owns its entries. */
#pragma once

#include "core/common.h"

struct gh_kvtab;

struct gh_kv {
    struct gh_kv *next;
    uint8_t key[16];
    uint64_t expires_ms; /* monotonic; the entry vanishes after */
    uint64_t v[4];       /* the caller's values, zero when created */
    uint8_t blob[32];    /* the caller's bytes (an SMS code's hash) */
};

/* 0 or GH_ENOMEM. */
int gh_kvtab_new(unsigned capacity, struct gh_kvtab **out);
void gh_kvtab_free(struct gh_kvtab *t);
void gh_kvtab_lock(struct gh_kvtab *t);
void gh_kvtab_unlock(struct gh_kvtab *t);
/* The digest of a name made of parts (joined unambiguously). */
void gh_kvtab_key(uint8_t out[16], const char *kind, const void *data, size_t len);
/* The live entry for key at now_ms, or NULL; with create, a new zeroed
 * entry expiring at now_ms + ttl_ms (evicting expired entries, or the
 * oldest of a bucket when full). Locked callers only. */
struct gh_kv *gh_kvtab_find_locked(struct gh_kvtab *t, const uint8_t key[16], uint64_t now_ms,
                                   bool create, uint64_t ttl_ms);
/* Removes key if present. Locked callers only. */
void gh_kvtab_del_locked(struct gh_kvtab *t, const uint8_t key[16]);
unsigned gh_kvtab_count(struct gh_kvtab *t);
