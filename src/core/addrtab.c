/* This module implements the per-address connection counter of addrtab.h
 * with linear probing and backward-shift deletion, so a shard never fills
 * with tombstones however connections come and go. IPv6 clients are
 * counted by /64: one subscriber line or host gets a whole /64, so its
 * 2^64 addresses are one client to the cap. */
#include "core/addrtab.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 64

struct slot {
    uint8_t family; /* 0 = empty */
    uint8_t bytes[16];
    uint32_t count;
};

struct shard {
    pthread_mutex_t mu;
    struct slot *slots;
    unsigned mask;
    unsigned used;
    unsigned max_used;
};

struct gh_addrtab {
    struct shard shards[NSHARDS];
    unsigned char hashkey[crypto_shorthash_KEYBYTES];
};

static uint64_t addr_hash(const struct gh_addrtab *t, const struct gh_addr *a)
{
    /* keyed SipHash: every bit (the shard comes from the top ones) depends
     * on every address bit, and a client holding a whole IPv6 /64 cannot
     * aim its addresses at one shard to fill it for everyone else */
    unsigned char in[17], out[crypto_shorthash_BYTES];
    in[0] = a->family;
    memcpy(in + 1, a->bytes, 16);
    crypto_shorthash(out, in, sizeof in, t->hashkey);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h;
}

/* The address as the table counts it: an IPv6 address cut to its /64. */
static struct gh_addr key_of(const struct gh_addr *a)
{
    struct gh_addr k = *a;
    if (k.family == AF_INET6)
        memset(k.bytes + 8, 0, 8);
    return k;
}

static bool same(const struct slot *s, const struct gh_addr *a)
{
    return s->family == a->family && !memcmp(s->bytes, a->bytes, 16);
}

struct gh_addrtab *gh_addrtab_new(unsigned capacity)
{
    struct gh_addrtab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    randombytes_buf(t->hashkey, sizeof t->hashkey);
    unsigned per = capacity / NSHARDS + 8;
    unsigned size = 16;
    while (size < per * 2)
        size *= 2;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &t->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->slots = calloc(size, sizeof *s->slots);
        if (!s->slots) {
            gh_addrtab_free(t);
            return NULL;
        }
        s->mask = size - 1;
        s->max_used = per + per / 2 < size - 1 ? per + per / 2 : size - 1;
    }
    return t;
}

void gh_addrtab_free(struct gh_addrtab *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < NSHARDS; i++) {
        free(t->shards[i].slots);
        pthread_mutex_destroy(&t->shards[i].mu);
    }
    free(t);
}

static struct shard *shard_of(struct gh_addrtab *t, uint64_t h)
{
    return &t->shards[(h >> 56) % NSHARDS];
}

unsigned gh_addrtab_acquire(struct gh_addrtab *t, const struct gh_addr *addr, unsigned max)
{
    struct gh_addr key = key_of(addr);
    const struct gh_addr *a = &key;
    uint64_t h = addr_hash(t, a);
    struct shard *s = shard_of(t, h);
    unsigned result = 0;
    pthread_mutex_lock(&s->mu);
    unsigned i = (unsigned)h & s->mask;
    for (;;) {
        struct slot *sl = &s->slots[i];
        if (!sl->family) {
            if (s->used >= s->max_used || max == 0)
                break;
            sl->family = a->family;
            memcpy(sl->bytes, a->bytes, 16);
            sl->count = 1;
            s->used++;
            result = 1;
            break;
        }
        if (same(sl, a)) {
            if (sl->count < max)
                result = ++sl->count;
            break;
        }
        i = (i + 1) & s->mask;
    }
    pthread_mutex_unlock(&s->mu);
    return result;
}

void gh_addrtab_release(struct gh_addrtab *t, const struct gh_addr *addr)
{
    struct gh_addr key = key_of(addr);
    const struct gh_addr *a = &key;
    uint64_t h = addr_hash(t, a);
    struct shard *s = shard_of(t, h);
    pthread_mutex_lock(&s->mu);
    unsigned i = (unsigned)h & s->mask;
    for (;;) {
        struct slot *sl = &s->slots[i];
        if (!sl->family)
            break; /* not present: nothing to release */
        if (same(sl, a)) {
            if (--sl->count == 0) {
                /* backward-shift deletion keeps probe chains intact */
                unsigned hole = i, j = i;
                for (;;) {
                    j = (j + 1) & s->mask;
                    struct slot *nx = &s->slots[j];
                    if (!nx->family)
                        break;
                    struct gh_addr na = {.family = nx->family};
                    memcpy(na.bytes, nx->bytes, 16);
                    unsigned home = (unsigned)addr_hash(t, &na) & s->mask;
                    /* can nx move to hole? only if home is not in (hole, j] */
                    bool between = hole <= j ? (home > hole && home <= j)
                                             : (home > hole || home <= j);
                    if (between)
                        continue;
                    s->slots[hole] = *nx;
                    hole = j;
                }
                memset(&s->slots[hole], 0, sizeof s->slots[hole]);
                s->used--;
            }
            break;
        }
        i = (i + 1) & s->mask;
    }
    pthread_mutex_unlock(&s->mu);
}

unsigned gh_addrtab_count(struct gh_addrtab *t, const struct gh_addr *addr)
{
    struct gh_addr key = key_of(addr);
    const struct gh_addr *a = &key;
    uint64_t h = addr_hash(t, a);
    struct shard *s = shard_of(t, h);
    unsigned c = 0;
    pthread_mutex_lock(&s->mu);
    unsigned i = (unsigned)h & s->mask;
    for (;;) {
        struct slot *sl = &s->slots[i];
        if (!sl->family)
            break;
        if (same(sl, a)) {
            c = sl->count;
            break;
        }
        i = (i + 1) & s->mask;
    }
    pthread_mutex_unlock(&s->mu);
    return c;
}
