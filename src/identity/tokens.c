/* This module implements session and API key tokens and the sharded
 * credential cache of tokens.h: open addressing with linear probing and
 * backward-shift deletion (no deleted-slot markers), a fixed number of
 * slots per shard, a mutex per shard; a full shard drops its expired
 * entries, then its least recently used one. */
#include "identity/tokens.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64

struct shard {
    pthread_mutex_t mu;
    struct gh_cred *slots; /* kind 0 = empty */
    unsigned mask;         /* slots - 1 */
    unsigned count;
    unsigned max;          /* count cap: 3/4 of the slots */
} __attribute__((aligned(64)));

static struct {
    struct shard shards[SHARDS];
    uint8_t key[32];
    bool ready;
    _Atomic uint64_t evictions; /* live credentials dropped to make room */
    uint64_t ttl_ms;            /* trust of a cached credential (shared store); 0 = forever */
    void (*recheck)(const struct gh_cred *c);
} cache;

int gh_tokens_init(const uint8_t key[32], unsigned capacity)
{
    memcpy(cache.key, key, 32);
    unsigned per = 64;
    while (per * SHARDS * 3 / 4 < capacity && per < (1u << 26))
        per <<= 1;
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *s = &cache.shards[i];
        s->slots = calloc(per, sizeof *s->slots);
        if (!s->slots) {
            for (unsigned k = 0; k < i; k++) {
                free(cache.shards[k].slots);
                cache.shards[k].slots = NULL;
            }
            return GH_ENOMEM;
        }
        pthread_mutex_init(&s->mu, NULL);
        s->mask = per - 1;
        s->count = 0;
        s->max = per * 3 / 4;
    }
    cache.ready = true;
    return 0;
}

void gh_tokens_dispose(void)
{
    if (!cache.ready)
        return;
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *s = &cache.shards[i];
        sodium_memzero(s->slots, (size_t)(s->mask + 1) * sizeof *s->slots);
        free(s->slots);
        s->slots = NULL;
        pthread_mutex_destroy(&s->mu);
    }
    sodium_memzero(cache.key, sizeof cache.key);
    cache.ready = false;
}

void gh_token_hash(const char *token, size_t len, uint8_t out[GH_TOKEN_HASH_BYTES])
{
    crypto_generichash(out, GH_TOKEN_HASH_BYTES, (const unsigned char *)token, len, cache.key,
                       sizeof cache.key);
}

static void b64(const uint8_t *raw, size_t n, char *out, size_t outlen)
{
    sodium_bin2base64(out, outlen, raw, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void gh_token_new_session(char out[GH_TOKEN_B64_LEN + 1])
{
    uint8_t raw[GH_TOKEN_BYTES];
    randombytes_buf(raw, sizeof raw);
    b64(raw, sizeof raw, out, GH_TOKEN_B64_LEN + 1);
    sodium_memzero(raw, sizeof raw);
}

void gh_token_new_api_key(char out[GH_API_KEY_LEN + 1])
{
    memcpy(out, "sk-", 3);
    gh_token_new_session(out + 3);
}

static bool b64_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* 43 base64url characters of 32 bytes leave 2 bits of the last one
 * unused; the encoder writes them as zero. Only that canonical spelling is
 * a token, so each token has exactly one text (what the keyed hash sees). */
static bool b64_token(const char *s)
{
    return b64_chars(s, GH_TOKEN_B64_LEN) && strchr("AEIMQUYcgkosw048", s[GH_TOKEN_B64_LEN - 1]);
}

bool gh_token_api_key_wellformed(const char *s, size_t len)
{
    return len == GH_API_KEY_LEN && !memcmp(s, "sk-", 3) && b64_token(s + 3);
}

bool gh_token_session_wellformed(const char *s, size_t len)
{
    return len == GH_TOKEN_B64_LEN && b64_token(s);
}

void gh_token_csrf(const char *session, size_t len, char out[GH_TOKEN_B64_LEN + 1])
{
    /* a different key than gh_token_hash so the CSRF token (readable by
     * scripts) never equals the stored session hash */
    uint8_t k[32], h[32];
    crypto_generichash(k, sizeof k, (const unsigned char *)"gatehouse csrf v1", 17, cache.key,
                       sizeof cache.key);
    crypto_generichash(h, sizeof h, (const unsigned char *)session, len, k, sizeof k);
    b64(h, sizeof h, out, GH_TOKEN_B64_LEN + 1);
    sodium_memzero(k, sizeof k);
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static struct shard *shard_of(const uint8_t *hash)
{
    return &cache.shards[hash[8] % SHARDS];
}

/* Index of hash in s, or the empty slot where it would go. */
static unsigned find_locked(struct shard *s, const uint8_t *hash, bool *found)
{
    GH_ASSERT_LOCKED(&s->mu);
    unsigned i = (unsigned)load64(hash) & s->mask;
    for (;;) {
        struct gh_cred *c = &s->slots[i];
        if (!c->kind) {
            *found = false;
            return i;
        }
        if (!memcmp(c->hash, hash, GH_TOKEN_HASH_BYTES)) {
            *found = true;
            return i;
        }
        i = (i + 1) & s->mask;
    }
}

/* Backward-shift deletion: moves later entries of the probe run back so
 * that look-ups never meet a hole before their entry. */
static void remove_at_locked(struct shard *s, unsigned i)
{
    GH_ASSERT_LOCKED(&s->mu);
    unsigned j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        struct gh_cred *c = &s->slots[j];
        if (!c->kind)
            break;
        unsigned home = (unsigned)load64(c->hash) & s->mask;
        /* c may move to i when i lies cyclically in [home, j) */
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            s->slots[i] = *c;
            i = j;
        }
    }
    memset(&s->slots[i], 0, sizeof s->slots[i]);
    s->count--;
}

/* Locks the shard of hash and finds its slot (*i, *found); NULL (and no
 * lock) before gh_tokens_init. */
static struct shard *lock_find(const uint8_t *hash, unsigned *i, bool *found)
{
    if (!cache.ready)
        return NULL;
    struct shard *s = shard_of(hash);
    pthread_mutex_lock(&s->mu);
    *i = find_locked(s, hash, found);
    return s;
}

static bool expired(const struct gh_cred *c, uint64_t now)
{
    if (c->expires_ms && now >= c->expires_ms)
        return true;
    return c->idle_ms && c->last_seen_ms && now >= c->last_seen_ms + c->idle_ms;
}

static void purge_locked(struct shard *s, uint64_t now)
{
    GH_ASSERT_LOCKED(&s->mu);
    for (unsigned i = 0; i <= s->mask;) {
        if (s->slots[i].kind && expired(&s->slots[i], now))
            remove_at_locked(s, i); /* re-check i: an entry may have moved in */
        else
            i++;
    }
}

/* Drops the least recently used entry of a full shard (a credential never
 * seen since it was cached counts as seen at time 0): its owner's next
 * request finds it in the store again (gh_auth_reload). */
static void evict_lru_locked(struct shard *s)
{
    GH_ASSERT_LOCKED(&s->mu);
    unsigned victim = 0;
    uint64_t oldest = UINT64_MAX;
    for (unsigned i = 0; i <= s->mask; i++)
        if (s->slots[i].kind && s->slots[i].last_seen_ms < oldest) {
            oldest = s->slots[i].last_seen_ms;
            victim = i;
        }
    GH_ASSERT(oldest != UINT64_MAX);
    if (s->slots[victim].kind != GH_CRED_GONE)
        atomic_fetch_add_explicit(&cache.evictions, 1, memory_order_relaxed);
    remove_at_locked(s, victim);
}

/* Adds or replaces c in its shard s (locked). */
static void put_locked(struct shard *s, const struct gh_cred *c)
{
    GH_ASSERT_LOCKED(&s->mu);
    bool found;
    unsigned i = find_locked(s, c->hash, &found);
    if (!found && s->count >= s->max) {
        purge_locked(s, gh_wall_ms());
        if (s->count >= s->max)
            evict_lru_locked(s);
        i = find_locked(s, c->hash, &found);
    }
    s->slots[i] = *c;
    if (!s->slots[i].last_seen_ms && s->slots[i].idle_ms)
        s->slots[i].last_seen_ms = gh_wall_ms(); /* the idle clock starts now */
    if (!s->slots[i].checked_ms)
        s->slots[i].checked_ms = gh_wall_ms();
    if (!found)
        s->count++;
}

int gh_tokens_put(const struct gh_cred *c)
{
    struct shard *s = shard_of(c->hash);
    pthread_mutex_lock(&s->mu);
    put_locked(s, c);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int gh_tokens_get(const uint8_t hash[GH_TOKEN_HASH_BYTES], uint64_t now_ms, struct gh_cred *out)
{
    if (!cache.ready)
        return GH_ENOTFOUND;
    struct shard *s = shard_of(hash);
    int rc = GH_ENOTFOUND;
    bool recheck = false;
    pthread_mutex_lock(&s->mu);
    bool found;
    unsigned i = find_locked(s, hash, &found);
    if (found) {
        struct gh_cred *c = &s->slots[i];
        if (expired(c, now_ms)) {
            remove_at_locked(s, i);
        } else if (c->kind == GH_CRED_GONE) {
            /* deleted with its account: not found, and no store look-up */
        } else {
            c->last_seen_ms = now_ms;
            /* past its trust: this caller has it read again, the others
             * go on trusting it meanwhile (one read per TTL) */
            recheck = cache.ttl_ms && now_ms >= c->checked_ms + cache.ttl_ms;
            if (recheck)
                c->checked_ms = now_ms;
            *out = *c;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (recheck)
        cache.recheck(out);
    return rc;
}

int gh_tokens_peek(const uint8_t hash[GH_TOKEN_HASH_BYTES], struct gh_cred *out)
{
    bool found;
    unsigned i;
    struct shard *s = lock_find(hash, &i, &found);
    if (!s)
        return GH_ENOTFOUND;
    if (found)
        *out = s->slots[i];
    pthread_mutex_unlock(&s->mu);
    return found ? 0 : GH_ENOTFOUND;
}

int gh_tokens_del(const uint8_t hash[GH_TOKEN_HASH_BYTES])
{
    bool found;
    unsigned i;
    struct shard *s = lock_find(hash, &i, &found);
    if (!s)
        return GH_ENOTFOUND;
    if (found)
        remove_at_locked(s, i);
    pthread_mutex_unlock(&s->mu);
    return found ? 0 : GH_ENOTFOUND;
}

unsigned gh_tokens_del_user(uint64_t user_id, int kind)
{
    unsigned n = 0;
    if (!cache.ready)
        return 0;
    for (unsigned k = 0; k < SHARDS; k++) {
        struct shard *s = &cache.shards[k];
        pthread_mutex_lock(&s->mu);
        for (unsigned i = 0; i <= s->mask;) {
            struct gh_cred *c = &s->slots[i];
            bool match = kind ? c->kind == kind : c->kind && c->kind != GH_CRED_GONE;
            if (match && c->user_id == user_id) {
                remove_at_locked(s, i);
                n++;
            } else {
                i++;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

int gh_tokens_bury(const uint8_t hash[GH_TOKEN_HASH_BYTES], uint64_t user_id,
                   uint64_t expires_ms)
{
    struct gh_cred c = {.kind = GH_CRED_GONE, .user_id = user_id, .expires_ms = expires_ms,
                        .last_seen_ms = gh_wall_ms()};
    memcpy(c.hash, hash, GH_TOKEN_HASH_BYTES);
    return gh_tokens_put(&c);
}

void gh_tokens_set_ttl(uint64_t ttl_ms, void (*recheck)(const struct gh_cred *c))
{
    cache.ttl_ms = recheck ? ttl_ms : 0;
    cache.recheck = recheck;
}

int gh_tokens_forget(const uint8_t hash[GH_TOKEN_HASH_BYTES])
{
    bool found;
    unsigned i;
    struct shard *s = lock_find(hash, &i, &found);
    if (!s)
        return GH_ENOTFOUND;
    struct gh_cred *c = &s->slots[i];
    bool live = found && c->kind != GH_CRED_GONE;
    if (live) {
        /* the marker keeps the cached expiry (keys: until evicted) */
        c->kind = GH_CRED_GONE;
        c->idle_ms = 0;
        c->last_seen_ms = gh_wall_ms();
    }
    pthread_mutex_unlock(&s->mu);
    return live ? 0 : GH_ENOTFOUND;
}

bool gh_tokens_refresh(const uint8_t hash[GH_TOKEN_HASH_BYTES], const struct gh_cred *fresh)
{
    bool found;
    unsigned i;
    struct shard *s = lock_find(hash, &i, &found);
    if (!s)
        return false;
    bool live = false;
    if (found && s->slots[i].kind == GH_CRED_GONE) {
        /* ended meanwhile: the marker wins */
    } else if (!fresh) {
        if (found)
            remove_at_locked(s, i);
    } else {
        struct gh_cred c = *fresh;
        c.checked_ms = gh_wall_ms();
        if (found)
            c.last_seen_ms = s->slots[i].last_seen_ms; /* the idle clock goes on */
        put_locked(s, &c);
        live = true;
    }
    pthread_mutex_unlock(&s->mu);
    return live;
}

uint64_t gh_tokens_evictions(void)
{
    return atomic_load_explicit(&cache.evictions, memory_order_relaxed);
}

unsigned gh_tokens_count(void)
{
    unsigned n = 0;
    for (unsigned k = 0; cache.ready && k < SHARDS; k++) {
        pthread_mutex_lock(&cache.shards[k].mu);
        n += cache.shards[k].count;
        pthread_mutex_unlock(&cache.shards[k].mu);
    }
    return n;
}
