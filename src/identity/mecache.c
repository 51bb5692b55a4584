/* This module implements the GET /api/me answer cache (mecache.h). */
#include "identity/mecache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64

struct slot {
    uint64_t user_id; /* 0 = empty */
    uint64_t expires_ms;
    uint64_t refresh_ms; /* from then on a get asks for a refresh */
    uint64_t gen;        /* drops so far (never reset) */
    bool refreshing;     /* a refresh is out (until the next put or drop) */
    uint16_t len;
    char json[GH_MECACHE_MAX];
};

static struct slot *slots;
static pthread_mutex_t locks[SHARDS];

static size_t slot_of(uint64_t user_id)
{
    /* ids are sequential: mix them so neighbours spread over the shards */
    uint64_t h = user_id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (GH_MECACHE_SLOTS - 1);
}

static pthread_mutex_t *lock_of(size_t i)
{
    return &locks[i % SHARDS];
}

int gh_mecache_init(void)
{
    _Static_assert((GH_MECACHE_SLOTS & (GH_MECACHE_SLOTS - 1)) == 0, "a power of two");
    slots = calloc(GH_MECACHE_SLOTS, sizeof *slots);
    if (!slots)
        return GH_ENOMEM;
    for (unsigned i = 0; i < SHARDS; i++)
        pthread_mutex_init(&locks[i], NULL);
    return 0;
}

void gh_mecache_free(void)
{
    if (!slots)
        return;
    sodium_memzero(slots, GH_MECACHE_SLOTS * sizeof *slots);
    free(slots);
    slots = NULL;
    for (unsigned i = 0; i < SHARDS; i++)
        pthread_mutex_destroy(&locks[i]);
}

size_t gh_mecache_get(uint64_t user_id, uint64_t now_ms, char *out, bool *refresh)
{
    if (refresh)
        *refresh = false;
    if (!slots || !user_id)
        return 0;
    size_t i = slot_of(user_id), n = 0;
    pthread_mutex_lock(lock_of(i));
    struct slot *s = &slots[i];
    if (s->user_id == user_id && now_ms < s->expires_ms) {
        n = s->len;
        memcpy(out, s->json, n);
        if (refresh && now_ms >= s->refresh_ms && !s->refreshing) {
            s->refreshing = true;
            *refresh = true;
        }
    }
    pthread_mutex_unlock(lock_of(i));
    return n;
}

uint64_t gh_mecache_gen(uint64_t user_id)
{
    if (!slots)
        return 0;
    size_t i = slot_of(user_id);
    pthread_mutex_lock(lock_of(i));
    uint64_t g = slots[i].gen;
    pthread_mutex_unlock(lock_of(i));
    return g;
}

void gh_mecache_put(uint64_t user_id, uint64_t gen, uint64_t now_ms, const char *json, size_t len)
{
    if (!slots || !user_id || !len || len > GH_MECACHE_MAX)
        return;
    size_t i = slot_of(user_id);
    pthread_mutex_lock(lock_of(i));
    struct slot *s = &slots[i];
    if (s->gen != gen) {
        pthread_mutex_unlock(lock_of(i));
        return;
    }
    sodium_memzero(s->json, sizeof s->json);
    memcpy(s->json, json, len);
    s->len = (uint16_t)len;
    s->user_id = user_id;
    s->expires_ms = now_ms + GH_MECACHE_TTL_MS;
    s->refresh_ms = now_ms + GH_MECACHE_REFRESH_MS;
    s->refreshing = false;
    pthread_mutex_unlock(lock_of(i));
}

void gh_mecache_drop(uint64_t user_id)
{
    if (!slots || !user_id)
        return;
    size_t i = slot_of(user_id);
    pthread_mutex_lock(lock_of(i));
    struct slot *s = &slots[i];
    /* a drop for a colliding user refuses this one's put in flight too:
     * harmless, the next read fills it */
    s->gen++;
    if (s->user_id == user_id) {
        sodium_memzero(s->json, sizeof s->json);
        s->user_id = 0;
        s->len = 0;
        s->expires_ms = 0;
        s->refreshing = false;
    }
    pthread_mutex_unlock(lock_of(i));
}
