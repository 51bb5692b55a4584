/* This module implements kvtab.h: separate chaining over a power-of-two
 * bucket array, a global entry cap, expired entries dropped as met. */
#include "identity/kvtab.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct gh_kvtab {
    pthread_mutex_t mu;
    struct gh_kv **buckets;
    unsigned mask;
    unsigned count, cap;
    unsigned sweep; /* next bucket the eviction sweep looks at */
};

int gh_kvtab_new(unsigned capacity, struct gh_kvtab **out)
{
    struct gh_kvtab *t = calloc(1, sizeof *t);
    if (!t)
        return GH_ENOMEM;
    unsigned n = 64;
    while (n < capacity && n < (1u << 26))
        n <<= 1;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return GH_ENOMEM;
    }
    t->mask = n - 1;
    t->cap = capacity ? capacity : n;
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void gh_kvtab_free(struct gh_kvtab *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i <= t->mask; i++) {
        struct gh_kv *e = t->buckets[i];
        while (e) {
            struct gh_kv *next = e->next;
            sodium_memzero(e, sizeof *e);
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void gh_kvtab_lock(struct gh_kvtab *t)
{
    pthread_mutex_lock(&t->mu);
}

void gh_kvtab_unlock(struct gh_kvtab *t)
{
    pthread_mutex_unlock(&t->mu);
}

void gh_kvtab_key(uint8_t out[16], const char *kind, const void *data, size_t len)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 16);
    crypto_generichash_update(&st, (const unsigned char *)kind, strlen(kind) + 1);
    crypto_generichash_update(&st, data, len);
    crypto_generichash_final(&st, out, 16);
}

static unsigned bucket_of(struct gh_kvtab *t, const uint8_t *key)
{
    uint32_t h;
    memcpy(&h, key, 4);
    return h & t->mask;
}

/* Drops expired entries of bucket b; with force, also its oldest entry. */
static void sweep_bucket_locked(struct gh_kvtab *t, unsigned b, uint64_t now, bool force)
{
    GH_ASSERT_LOCKED(&t->mu);
    struct gh_kv **pp = &t->buckets[b], **oldest = NULL;
    while (*pp) {
        struct gh_kv *e = *pp;
        if (e->expires_ms <= now) {
            *pp = e->next;
            free(e);
            t->count--;
            continue;
        }
        if (!oldest || e->expires_ms < (*oldest)->expires_ms)
            oldest = pp;
        pp = &e->next;
    }
    if (force && oldest) {
        struct gh_kv *e = *oldest;
        *oldest = e->next;
        free(e);
        t->count--;
    }
}

struct gh_kv *gh_kvtab_find_locked(struct gh_kvtab *t, const uint8_t key[16], uint64_t now_ms,
                                   bool create, uint64_t ttl_ms)
{
    GH_ASSERT_LOCKED(&t->mu);
    unsigned b = bucket_of(t, key);
    for (struct gh_kv **pp = &t->buckets[b]; *pp;) {
        struct gh_kv *e = *pp;
        if (e->expires_ms <= now_ms) {
            *pp = e->next;
            free(e);
            t->count--;
            continue;
        }
        if (!memcmp(e->key, key, 16))
            return e;
        pp = &e->next;
    }
    if (!create)
        return NULL;
    /* full: sweep a few buckets for expired entries, then evict */
    for (unsigned k = 0; t->count >= t->cap && k < 64; k++)
        sweep_bucket_locked(t, t->sweep++ & t->mask, now_ms, k == 63);
    if (t->count >= t->cap)
        sweep_bucket_locked(t, b, now_ms, true);
    struct gh_kv *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->key, key, 16);
    e->expires_ms = now_ms + (ttl_ms ? ttl_ms : 1);
    e->next = t->buckets[b];
    t->buckets[b] = e;
    t->count++;
    return e;
}

void gh_kvtab_del_locked(struct gh_kvtab *t, const uint8_t key[16])
{
    GH_ASSERT_LOCKED(&t->mu);
    unsigned b = bucket_of(t, key);
    for (struct gh_kv **pp = &t->buckets[b]; *pp; pp = &(*pp)->next) {
        if (!memcmp((*pp)->key, key, 16)) {
            struct gh_kv *e = *pp;
            *pp = e->next;
            sodium_memzero(e, sizeof *e);
            free(e);
            t->count--;
            return;
        }
    }
}

unsigned gh_kvtab_count(struct gh_kvtab *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}
