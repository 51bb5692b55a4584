/* This module implements the penalty box's bookkeeping (penalty.h): the
 * refusal tally with its windows and the table of bans with expiries. */
#include "shield/penalty.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define WAYS   8
#define SHARDS 64

struct ban_slot {
    struct gh_cidr cidr;
    bool used;
    uint8_t reason;
    uint64_t expires_ms; /* 0 = lifted */
};

struct tally_slot {
    struct gh_cidr cidr;
    bool used;
    uint32_t count;
    uint64_t start_ms;
};

struct gh_penalty {
    pthread_mutex_t ban_mu[SHARDS], tally_mu[SHARDS];
    uint32_t ban_buckets, tally_buckets; /* powers of two */
    struct ban_slot *bans;
    struct tally_slot *tally;
    /* bit n set: a ban of prefix length n (mapped space) was ever held */
    _Atomic uint64_t lens[3];
    atomic_uint after;
    _Atomic uint64_t window_ms, ban_ms;
    _Atomic uint64_t added[GH_BAN_NREASONS], full, tally_evictions;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

static uint32_t pow2_buckets(size_t entries)
{
    uint32_t n = SHARDS;
    while ((size_t)n * WAYS < entries && n < (1u << 26))
        n <<= 1;
    return n;
}

struct gh_penalty *gh_penalty_new(size_t max_bans, size_t max_tracked)
{
    if (sodium_init() < 0)
        return NULL;
    struct gh_penalty *pb = calloc(1, sizeof *pb);
    if (!pb)
        return NULL;
    pb->ban_buckets = pow2_buckets(max_bans);
    pb->tally_buckets = pow2_buckets(max_tracked);
    pb->bans = calloc((size_t)pb->ban_buckets * WAYS, sizeof *pb->bans);
    pb->tally = calloc((size_t)pb->tally_buckets * WAYS, sizeof *pb->tally);
    if (!pb->bans || !pb->tally) {
        gh_penalty_free(pb);
        return NULL;
    }
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&pb->ban_mu[i], NULL);
        pthread_mutex_init(&pb->tally_mu[i], NULL);
    }
    crypto_shorthash_keygen(pb->key);
    return pb;
}

void gh_penalty_free(struct gh_penalty *pb)
{
    if (!pb)
        return;
    if (pb->bans && pb->tally)
        for (int i = 0; i < SHARDS; i++) {
            pthread_mutex_destroy(&pb->ban_mu[i]);
            pthread_mutex_destroy(&pb->tally_mu[i]);
        }
    free(pb->bans);
    free(pb->tally);
    free(pb);
}

void gh_penalty_configure(struct gh_penalty *pb, const struct gh_penalty_config *c)
{
    atomic_store(&pb->after, c->after);
    atomic_store(&pb->window_ms, c->window_ms);
    atomic_store(&pb->ban_ms, c->ban_ms);
}

/* ---- prefixes ---- */

static void cidr_trim(struct gh_cidr *c, unsigned len)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned lo = i * 8;
        if (len >= lo + 8)
            continue;
        c->bytes[i] = len > lo ? (uint8_t)(c->bytes[i] & (0xff << (8 - (len - lo)))) : 0;
    }
    c->len = (uint8_t)len;
}

bool gh_cidr_contains(const struct gh_cidr *a, const struct gh_cidr *b)
{
    if (b->len < a->len)
        return false;
    struct gh_cidr t = *b;
    cidr_trim(&t, a->len);
    return !memcmp(t.bytes, a->bytes, 16);
}

void gh_penalty_source(const struct gh_addr *a, unsigned v4_len, unsigned v6_len,
                       struct gh_cidr *out)
{
    gh_cidr_from_addr(a, out);
    cidr_trim(out, a->family == AF_INET ? 96 + GH_MIN(v4_len, 32u) : GH_MIN(v6_len, 128u));
}

static uint64_t hash(const struct gh_penalty *pb, const struct gh_cidr *c)
{
    unsigned char in[17], h[crypto_shorthash_BYTES];
    memcpy(in, c->bytes, 16);
    in[16] = c->len;
    crypto_shorthash(h, in, sizeof in, pb->key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

/* ---- bans ---- */

/* The bucket of c in the ban table, with its shard locked. */
static struct ban_slot *ban_bucket_lock(struct gh_penalty *pb, const struct gh_cidr *c,
                                        pthread_mutex_t **mu)
{
    uint32_t b = (uint32_t)hash(pb, c) & (pb->ban_buckets - 1);
    *mu = &pb->ban_mu[b % SHARDS];
    pthread_mutex_lock(*mu);
    return &pb->bans[(size_t)b * WAYS];
}

static bool ban_live(const struct ban_slot *s, uint64_t now_ms)
{
    return s->used && s->expires_ms > now_ms;
}

int gh_penalty_add(struct gh_penalty *pb, const struct gh_cidr *c, uint64_t ttl_ms,
                   enum gh_ban_reason reason, uint64_t now_ms, struct gh_ban *out)
{
    GH_ASSERT((unsigned)reason < GH_BAN_NREASONS && c->len <= 128);
    pthread_mutex_t *mu;
    struct ban_slot *bk = ban_bucket_lock(pb, c, &mu), *slot = NULL;
    for (int i = 0; i < WAYS; i++) {
        if (bk[i].used && gh_cidr_equal(&bk[i].cidr, c)) {
            slot = &bk[i];
            break;
        }
        if (!slot && !ban_live(&bk[i], now_ms))
            slot = &bk[i]; /* the first free or expired way, unless c is further on */
    }
    if (!slot) {
        pthread_mutex_unlock(mu);
        atomic_fetch_add_explicit(&pb->full, 1, memory_order_relaxed);
        return GH_ETOOBIG;
    }
    uint64_t exp = now_ms + ttl_ms;
    bool same = slot->used && gh_cidr_equal(&slot->cidr, c) && ban_live(slot, now_ms);
    if (!same || exp > slot->expires_ms) {
        slot->expires_ms = exp;
        /* an operator's ban stays the operator's when refusals extend it */
        if (!same || reason == GH_BAN_OPERATOR)
            slot->reason = (uint8_t)reason;
    }
    slot->cidr = *c;
    slot->used = true;
    if (out)
        *out = (struct gh_ban){slot->cidr, slot->expires_ms, (enum gh_ban_reason)slot->reason};
    pthread_mutex_unlock(mu);
    atomic_fetch_or_explicit(&pb->lens[c->len / 64], 1ull << (c->len % 64), memory_order_release);
    atomic_fetch_add_explicit(&pb->added[reason], 1, memory_order_relaxed);
    return 0;
}

int gh_penalty_remove(struct gh_penalty *pb, const struct gh_cidr *c)
{
    pthread_mutex_t *mu;
    struct ban_slot *bk = ban_bucket_lock(pb, c, &mu);
    int rc = GH_ENOTFOUND;
    for (int i = 0; i < WAYS; i++)
        if (bk[i].used && bk[i].expires_ms && gh_cidr_equal(&bk[i].cidr, c)) {
            bk[i].used = false;
            bk[i].expires_ms = 0;
            rc = 0;
        }
    pthread_mutex_unlock(mu);
    return rc;
}

static bool banned_exact(struct gh_penalty *pb, const struct gh_cidr *c, uint64_t now_ms)
{
    pthread_mutex_t *mu;
    struct ban_slot *bk = ban_bucket_lock(pb, c, &mu);
    bool hit = false;
    for (int i = 0; i < WAYS && !hit; i++)
        hit = ban_live(&bk[i], now_ms) && gh_cidr_equal(&bk[i].cidr, c);
    pthread_mutex_unlock(mu);
    return hit;
}

bool gh_penalty_banned(struct gh_penalty *pb, const struct gh_addr *a, uint64_t now_ms)
{
    if (!pb)
        return false;
    struct gh_cidr full;
    gh_cidr_from_addr(a, &full);
    /* IPv4 lives in ::ffff:0:0/96: shorter lengths would be IPv6-wide bans
     * that an IPv4 address only matches through /0 .. /95, which the
     * lengths an operator can give (0.0.0.0/N is 96 + N) never are */
    for (unsigned w = 0; w < 3; w++) {
        uint64_t m = atomic_load_explicit(&pb->lens[w], memory_order_acquire);
        while (m) {
            unsigned len = w * 64 + (unsigned)__builtin_ctzll(m);
            m &= m - 1;
            if (len > 128)
                break;
            struct gh_cidr c = full;
            cidr_trim(&c, len);
            if (banned_exact(pb, &c, now_ms))
                return true;
        }
    }
    return false;
}

/* Walks the live bans, calling fn under each bucket's lock; fn returns
 * false to stop. */
static void each_ban(struct gh_penalty *pb, uint64_t now_ms,
                     bool (*fn)(const struct ban_slot *s, void *arg), void *arg)
{
    for (uint32_t b = 0; b < pb->ban_buckets; b++) {
        pthread_mutex_t *mu = &pb->ban_mu[b % SHARDS];
        const struct ban_slot *bk = &pb->bans[(size_t)b * WAYS];
        bool go = true;
        pthread_mutex_lock(mu);
        for (int i = 0; i < WAYS && go; i++)
            if (ban_live(&bk[i], now_ms))
                go = fn(&bk[i], arg);
        pthread_mutex_unlock(mu);
        if (!go)
            return;
    }
}

struct collect {
    const struct gh_cidr *outer; /* NULL: every ban */
    struct gh_ban *out;
    size_t max, n, live;
};

static bool collect_one(const struct ban_slot *s, void *arg)
{
    struct collect *k = arg;
    if (k->outer && (s->cidr.len <= k->outer->len || !gh_cidr_contains(k->outer, &s->cidr)))
        return true;
    if (k->n < k->max)
        k->out[k->n++] = (struct gh_ban){s->cidr, s->expires_ms, (enum gh_ban_reason)s->reason};
    k->live++;
    return k->outer ? k->n < k->max : true;
}

size_t gh_penalty_list(struct gh_penalty *pb, uint64_t now_ms, struct gh_ban *out, size_t max)
{
    struct collect k = {NULL, out, max, 0, 0};
    each_ban(pb, now_ms, collect_one, &k);
    return k.live;
}

size_t gh_penalty_inside(struct gh_penalty *pb, const struct gh_cidr *outer, uint64_t now_ms,
                         struct gh_ban *out, size_t max)
{
    struct collect k = {outer, out, max, 0, 0};
    if (max)
        each_ban(pb, now_ms, collect_one, &k);
    return k.n;
}

/* ---- the tally ---- */

uint64_t gh_penalty_ban_ms(struct gh_penalty *pb)
{
    return atomic_load_explicit(&pb->ban_ms, memory_order_relaxed);
}

bool gh_penalty_refused(struct gh_penalty *pb, const struct gh_cidr *src, uint64_t now_ms)
{
    unsigned after = atomic_load_explicit(&pb->after, memory_order_relaxed);
    uint64_t window = atomic_load_explicit(&pb->window_ms, memory_order_relaxed);
    if (!after)
        return false;
    uint32_t b = (uint32_t)hash(pb, src) & (pb->tally_buckets - 1);
    pthread_mutex_t *mu = &pb->tally_mu[b % SHARDS];
    struct tally_slot *bk = &pb->tally[(size_t)b * WAYS], *slot = NULL, *victim = NULL;
    bool victim_free = false;
    pthread_mutex_lock(mu);
    for (int i = 0; i < WAYS; i++) {
        struct tally_slot *s = &bk[i];
        if (s->used && gh_cidr_equal(&s->cidr, src)) {
            slot = s;
            break;
        }
        if (!s->used || now_ms >= s->start_ms + window) {
            if (!victim_free) { /* a free or lapsed way: nothing is lost */
                victim = s;
                victim_free = true;
            }
        } else if (!victim_free && (!victim || s->start_ms < victim->start_ms)) {
            victim = s; /* else the oldest window */
        }
    }
    if (!slot) {
        slot = victim;
        if (!victim_free)
            atomic_fetch_add_explicit(&pb->tally_evictions, 1, memory_order_relaxed);
        slot->used = true;
        slot->cidr = *src;
        slot->count = 0;
        slot->start_ms = now_ms;
    }
    if (now_ms >= slot->start_ms + window) { /* a new window opens */
        slot->count = 0;
        slot->start_ms = now_ms;
    }
    bool earned = ++slot->count >= after;
    if (earned) /* the ban answers now; a source that comes back starts over */
        slot->used = false;
    pthread_mutex_unlock(mu);
    return earned;
}

void gh_penalty_get_stats(struct gh_penalty *pb, struct gh_penalty_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!pb)
        return;
    for (int r = 0; r < GH_BAN_NREASONS; r++)
        out->added[r] = atomic_load_explicit(&pb->added[r], memory_order_relaxed);
    out->full = atomic_load_explicit(&pb->full, memory_order_relaxed);
    out->tally_evictions = atomic_load_explicit(&pb->tally_evictions, memory_order_relaxed);
    out->capacity = (size_t)pb->ban_buckets * WAYS;
}

const char *gh_ban_reason_name(enum gh_ban_reason r)
{
    return r == GH_BAN_OPERATOR ? "operator" : "refusals";
}
