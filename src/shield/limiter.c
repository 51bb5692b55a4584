/* This module implements the GCRA rate limiters of limiter.h: the pure
 * arithmetic, the sharded set-associative table of TATs with its eviction,
 * and the rules (parsing and keys). */
#include "shield/limiter.h"

#include "core/config.h"
#include "obs/metrics.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define WAYS 8

/* One key and its TAT, aligned for a double-width compare-and-swap. The
 * key's hash and rank change only under the shard's mutex, and then
 * together with the TAT in one 16-byte CAS; the TAT and the key's stamp of
 * last use are updated by any thread with a 16-byte CAS that expects the
 * (key, TAT) it read, so an update can never land on a slot that another
 * key has taken meanwhile. */
struct slot {
    uint64_t key; /* 0 = empty */
    uint64_t tat; /* ns */
} __attribute__((aligned(16)));

/* Bits 32-51 of a stored key: when it was last used, in units of 2^20 ns
 * (1.05 ms), modulo 2^20 (18.3 minutes). gh_limiter_key keeps them clear:
 * a key is its rank (bits 0-1) and 42 bits of hash; the shard comes from
 * bits 58-63, the bucket from bits 0-31. */
#define STAMP_SHIFT 32
#define STAMP_BITS  20
#define STAMP_MASK  (((UINT64_C(1) << STAMP_BITS) - 1) << STAMP_SHIFT)

static inline uint64_t stamp_of(uint64_t now_ns)
{
    return ((now_ns >> 20) << STAMP_SHIFT) & STAMP_MASK;
}

/* 128 bytes: two cache lines; slots never move once written */
struct bucket {
    struct slot s[WAYS];
};

struct shard {
    pthread_mutex_t mu;
    uint64_t inserts;
    uint64_t evictions;
    uint64_t dropped;
} __attribute__((aligned(64)));

struct gh_limiter {
    unsigned nshards;
    uint32_t nbuckets; /* per shard */
    struct shard *shards;
    struct bucket *buckets; /* nshards * nbuckets */
    size_t bytes;
    unsigned char hashkey[crypto_shorthash_KEYBYTES];
};

/* ---- GCRA ---- */

uint64_t gh_limit_gcra(uint64_t tat, const struct gh_limit *lim, uint32_t cost, uint64_t now,
                       bool dry_run, struct gh_limit_decision *d)
{
    uint32_t count = lim->count ? lim->count : 1;
    uint32_t burst = lim->burst ? lim->burst : count;
    uint64_t T = lim->period_ns / count;
    if (T == 0)
        T = 1;
    /* saturating products: a cost of 2^32 tokens at T = 1 h must not wrap */
    uint64_t tau = T > UINT64_MAX / burst ? UINT64_MAX / 2 : T * burst;
    uint64_t inc = cost && T > UINT64_MAX / 2 / cost ? UINT64_MAX / 2 : T * cost;
    if (tau > UINT64_MAX / 2)
        tau = UINT64_MAX / 2;
    uint64_t base = tat > now ? tat : now; /* an idle key has a full allowance */
    uint64_t backlog = base - now;         /* 0 .. tau: the allowance used up */
    memset(d, 0, sizeof *d);
    d->limit = burst;
    /* allow when now >= base + inc - tau, i.e. backlog + inc <= tau */
    /* cost > burst never passes: compared in counts, since inc and tau
     * may both have saturated to the same value */
    if (cost > burst)
        inc = tau + 1; /* tau <= UINT64_MAX / 2: no wrap */
    if (inc <= tau && backlog <= tau - inc) {
        uint64_t new_backlog = backlog + inc;
        d->allowed = true;
        d->remaining = (uint32_t)GH_MIN((tau - new_backlog) / T, (uint64_t)UINT32_MAX);
        d->reset_ns = new_backlog;
        return now + new_backlog;
    }
    d->limited = true;
    d->allowed = dry_run;
    d->impossible = inc > tau;
    d->remaining = backlog < tau ? (uint32_t)GH_MIN((tau - backlog) / T, (uint64_t)UINT32_MAX) : 0;
    d->reset_ns = backlog;
    /* it passes once backlog has drained to tau - inc */
    d->retry_after_ns = d->impossible ? lim->period_ns : backlog - (tau - inc);
    return tat;
}

/* ---- the table ---- */

struct gh_limiter *gh_limiter_new(size_t bytes)
{
    struct gh_limiter *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    /* enough shards that workers rarely meet on one lock, few enough that a
     * small table still has buckets in each */
    unsigned nshards = 64;
    while (nshards > 1 && bytes / nshards < sizeof(struct shard) + 64 * sizeof(struct bucket))
        nshards /= 2;
    size_t per_shard = bytes / nshards;
    size_t nb = per_shard > sizeof(struct shard)
                    ? (per_shard - sizeof(struct shard)) / sizeof(struct bucket)
                    : 0;
    if (nb == 0)
        nb = 1;
    if (nb > UINT32_MAX)
        nb = UINT32_MAX;
    t->nshards = nshards;
    t->nbuckets = (uint32_t)nb;
    t->shards = aligned_alloc(64, sizeof(struct shard) * nshards);
    size_t bsize = sizeof(struct bucket) * nb * nshards;
    t->buckets = aligned_alloc(64, (bsize + 63) / 64 * 64);
    if (!t->shards || !t->buckets) {
        gh_limiter_free(t);
        return NULL;
    }
    memset(t->shards, 0, sizeof(struct shard) * nshards);
    memset(t->buckets, 0, bsize);
    for (unsigned i = 0; i < nshards; i++)
        pthread_mutex_init(&t->shards[i].mu, NULL);
    t->bytes = bsize + sizeof(struct shard) * nshards;
    randombytes_buf(t->hashkey, sizeof t->hashkey);
    return t;
}

void gh_limiter_free(struct gh_limiter *t)
{
    if (!t)
        return;
    if (t->shards)
        for (unsigned i = 0; i < t->nshards; i++)
            pthread_mutex_destroy(&t->shards[i].mu);
    free(t->shards);
    free(t->buckets);
    free(t);
}

uint64_t gh_limiter_key(const struct gh_limiter *t, uint32_t rule_id, const void *data, size_t len)
{
    unsigned char in[4 + 64];
    size_t n = GH_MIN(len, sizeof in - 4);
    memcpy(in, &rule_id, 4);
    memcpy(in + 4, data, n);
    unsigned char out[crypto_shorthash_BYTES];
    if (len > sizeof in - 4) {
        /* long keys (never expected: phones and ids are short) hash in two steps */
        unsigned char h[crypto_shorthash_BYTES];
        crypto_shorthash(h, data, len, t->hashkey);
        memcpy(in + 4, h, sizeof h);
        n = sizeof h;
    }
    crypto_shorthash(out, in, 4 + n, t->hashkey);
    uint64_t k;
    memcpy(&k, out, sizeof k);
    k &= ~((uint64_t)GH_LIMIT_RANK_MASK | STAMP_MASK);
    return k ? k : GH_LIMIT_RANK_MASK + 1; /* rank 0, never 0 */
}

void gh_limiter_set_hashkey(struct gh_limiter *t, const unsigned char key[16])
{
    memcpy(t->hashkey, key, sizeof t->hashkey);
}

unsigned gh_limit_keykind_rank(enum gh_limit_keykind k)
{
    switch (k) {
    case GH_LKEY_GLOBAL:
        return 3;
    case GH_LKEY_PREFIX48:
    case GH_LKEY_CALLING_CODE:
        return 2;
    case GH_LKEY_PREFIX:
    case GH_LKEY_PHONE_PREFIX:
        return 1;
    default:
        return 0;
    }
}

/* The key's rank (limiter.h): how many requests share it. */
static inline unsigned key_rank(uint64_t key)
{
    return (unsigned)(key & GH_LIMIT_RANK_MASK);
}

/* A double-width CAS of slot s from (okey, otat) to (nkey, ntat). Inline
 * cmpxchg16b on x86-64 (built with -mcx16), casp or ldxp/stxp on arm64. */
static inline bool slot_cas(struct slot *s, uint64_t okey, uint64_t otat, uint64_t nkey,
                            uint64_t ntat)
{
    union {
        struct slot s;
        unsigned __int128 w;
    } o = {.s = {okey, otat}}, n = {.s = {nkey, ntat}};
#ifdef __GCC_HAVE_SYNC_COMPARE_AND_SWAP_16
    return __sync_bool_compare_and_swap((unsigned __int128 *)s, o.w, n.w);
#else /* libatomic (CMakeLists.txt links it where the CPU needs it) */
    return __atomic_compare_exchange_n((unsigned __int128 *)s, &o.w, n.w, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
#endif
}

static inline uint64_t load_key(const struct slot *s)
{
    return __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
}

static inline uint64_t load_tat(const struct slot *s)
{
    return __atomic_load_n(&s->tat, __ATOMIC_ACQUIRE);
}

/* Applies the GCRA to key, stored in slot s, without a lock, and stamps
 * the slot with the time of use. A refusal (and a dry-run refusal) stores
 * nothing unless the stamp is a millisecond old, so it only reads: any
 * number of workers refusing one flooding key share its cache line and
 * never wait for each other. A request that passes stores its TAT with a
 * CAS that expects the (key, TAT) it read, retried while others get there
 * first. false when s no longer holds key (evicted meanwhile): take the
 * lock. */
static bool slot_update(struct slot *s, uint64_t key, const struct gh_limit *lim, uint32_t cost,
                        uint64_t now_ns, bool dry_run, struct gh_limit_decision *d)
{
    uint64_t stamped = key | stamp_of(now_ns), tat = load_tat(s);
    for (;;) {
        /* the TAT read is key's only if the key is still there after it */
        uint64_t k = load_key(s);
        if ((k & ~STAMP_MASK) != key)
            return false;
        uint64_t next = gh_limit_gcra(tat, lim, cost, now_ns, dry_run, d);
        if ((next == tat && k == stamped) || slot_cas(s, k, tat, stamped, next))
            return true;
        tat = load_tat(s);
    }
}

/* The slot a new key of rank `rank` may take in b, or -1 when every slot
 * holds a live key that outranks it. An empty slot first, then one that
 * has fully refilled (forgetting it loses nothing), then the least
 * recently used of the lowest rank present (the closest to refilled on a
 * tie), never one ranked above the newcomer: a flood of per-address keys
 * can only displace each other, never the prefix or global key that is
 * refusing the flood, whatever the hash key. Stamps and TATs move under us
 * (lock-free updates): the choice is a snapshot. A key unused for longer
 * than the stamp's 18-minute wrap may pass for a recent one. */
static int pick_victim_locked(const struct bucket *b, unsigned rank, uint64_t now_ns)
{
    int v = -1;
    unsigned best_rank = GH_LIMIT_RANK_MASK + 1;
    uint64_t best_age = 0, best_tat = UINT64_MAX, now_stamp = stamp_of(now_ns);
    for (int i = 0; i < WAYS; i++) {
        uint64_t k = load_key(&b->s[i]), tat = load_tat(&b->s[i]);
        if (k == 0 || tat <= now_ns)
            return i;
        unsigned r = key_rank(k);
        uint64_t age = (now_stamp - (k & STAMP_MASK)) & STAMP_MASK;
        if (r <= rank &&
            (r < best_rank ||
             (r == best_rank && (age > best_age || (age == best_age && tat < best_tat))))) {
            best_rank = r;
            best_age = age;
            best_tat = tat;
            v = i;
        }
    }
    return v;
}

void gh_limiter_check(struct gh_limiter *t, uint64_t key, const struct gh_limit *lim, uint32_t cost,
                      uint64_t now_ns, bool dry_run, struct gh_limit_decision *d)
{
    key &= ~STAMP_MASK; /* the table's own bits (gh_limiter_key never sets them) */
    GH_ASSERT(key != 0);
    /* the high bits choose the shard, the low 32 the bucket (fast range) */
    unsigned si = (unsigned)(key >> 58) & (t->nshards - 1);
    uint32_t bi = (uint32_t)(((uint64_t)(uint32_t)key * t->nbuckets) >> 32);
    struct shard *sh = &t->shards[si];
    struct bucket *b = &t->buckets[(size_t)si * t->nbuckets + bi];
    /* a key already stored: no lock (issue 11: one hot key across workers) */
    for (int i = 0; i < WAYS; i++)
        if ((load_key(&b->s[i]) & ~STAMP_MASK) == key &&
            slot_update(&b->s[i], key, lim, cost, now_ns, dry_run, d))
            return;
    pthread_mutex_lock(&sh->mu);
    /* a key's hash and rank change only under the lock: look again,
     * another thread may have stored this one since */
    for (int i = 0; i < WAYS; i++)
        if ((load_key(&b->s[i]) & ~STAMP_MASK) == key) {
            bool held = slot_update(&b->s[i], key, lim, cost, now_ns, dry_run, d);
            GH_ASSERT(held);
            (void)held;
            goto out;
        }
    uint64_t tat = gh_limit_gcra(0, lim, cost, now_ns, dry_run, d);
    if (tat <= now_ns) /* nothing to remember */
        goto out;
    int v = pick_victim_locked(b, key_rank(key), now_ns);
    if (v < 0) {
        /* every slot outranks this key: it is not remembered, and the
         * aggregate keys above it go on counting its traffic */
        sh->dropped++;
        goto out;
    }
    struct slot *s = &b->s[v];
    uint64_t vkey, vtat;
    do { /* the victim's TAT and stamp may move until the CAS takes the slot */
        vtat = load_tat(s);
        vkey = load_key(s);
    } while (!slot_cas(s, vkey, vtat, key | stamp_of(now_ns), tat));
    sh->evictions += vkey != 0 && vtat > now_ns;
    sh->inserts++;
out:
    pthread_mutex_unlock(&sh->mu);
}

void gh_limiter_get_stats(struct gh_limiter *t, struct gh_limiter_stats *out)
{
    memset(out, 0, sizeof *out);
    out->capacity = (uint64_t)t->nshards * t->nbuckets * WAYS;
    out->bytes = t->bytes;
    for (unsigned i = 0; i < t->nshards; i++) {
        pthread_mutex_lock(&t->shards[i].mu);
        out->inserts += t->shards[i].inserts;
        out->evictions += t->shards[i].evictions;
        out->dropped += t->shards[i].dropped;
        pthread_mutex_unlock(&t->shards[i].mu);
    }
}

/* ---- rules ---- */

static const char *const class_names[] = {"ops", "user", "login", "register", "anon"};
static const char *const kind_names[GH_LKEY_COUNT] = {"addr",         "prefix",       "prefix48",
                                                      "account",      "apikey",       "phone",
                                                      "phone_prefix", "calling_code", "global"};

const char *gh_class_name(enum gh_class c)
{
    return (unsigned)c < GH_ARRAY_LEN(class_names) ? class_names[c] : "?";
}

const char *gh_limit_keykind_name(enum gh_limit_keykind k)
{
    return (unsigned)k < GH_LKEY_COUNT ? kind_names[k] : "?";
}

int gh_class_parse(const char *s, size_t len, enum gh_class *out)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(class_names); i++)
        if (strlen(class_names[i]) == len && !memcmp(class_names[i], s, len)) {
            *out = (enum gh_class)i;
            return 0;
        }
    return GH_EINVAL;
}

/* Parses one "CLASS:KEY:COUNT/PERIOD[:burst=N][:dry_run]" of len bytes. */
static int parse_rule(const char *s, size_t len, struct gh_limit_rule *r, struct gh_buf *err)
{
    char text[128];
    if (len >= sizeof text) {
        gh_buf_printf(err, "rule '%.40s…' is too long", s);
        return GH_EINVAL;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    memset(r, 0, sizeof *r);
    char *fields[6];
    unsigned nf = 0;
    for (char *p = text;;) {
        if (nf == GH_ARRAY_LEN(fields)) {
            gh_buf_printf(err, "rule '%.*s': too many options (burst=N, dry_run)", (int)len, s);
            return GH_EINVAL;
        }
        fields[nf++] = p;
        char *colon = strchr(p, ':');
        if (!colon)
            break;
        *colon = '\0';
        p = colon + 1;
    }
    if (nf < 3) {
        gh_buf_printf(err, "rule '%.*s': expected CLASS:KEY:COUNT/PERIOD", (int)len, s);
        return GH_EINVAL;
    }
    if (gh_class_parse(fields[0], strlen(fields[0]), &r->cls)) {
        gh_buf_printf(err, "rule '%.*s': unknown class '%s' (ops, user, login, register, anon)",
                      (int)len, s, fields[0]);
        return GH_EINVAL;
    }
    r->kind = GH_LKEY_COUNT;
    for (int k = 0; k < GH_LKEY_COUNT; k++)
        if (!strcmp(fields[1], kind_names[k]))
            r->kind = (enum gh_limit_keykind)k;
    if (r->kind == GH_LKEY_COUNT) {
        gh_buf_printf(err,
                      "rule '%.*s': unknown key '%s' (addr, prefix, prefix48, account, apikey, "
                      "phone, phone_prefix, calling_code, global)",
                      (int)len, s, fields[1]);
        return GH_EINVAL;
    }
    char *slash = strchr(fields[2], '/');
    uint64_t count = 0, period_ms = 0;
    if (slash)
        *slash = '\0';
    char period[32];
    /* "1/s" means 1/1s; an empty or over-long period is an error, never cut short */
    bool period_ok = slash && slash[1] && strlen(slash + 1) < sizeof period - 1;
    if (period_ok)
        snprintf(period, sizeof period, "%s%s", slash[1] >= '0' && slash[1] <= '9' ? "" : "1",
                 slash + 1);
    if (!period_ok || gh_parse_uint(fields[2], 1000000000, &count) || count == 0 ||
        gh_parse_duration_ms(period, &period_ms) || period_ms == 0 ||
        period_ms > 366ull * 86400 * 1000) {
        gh_buf_printf(err, "rule '%.*s': expected COUNT/PERIOD such as 20/1s or 100/1h", (int)len,
                      s);
        return GH_EINVAL;
    }
    r->lim.count = (uint32_t)count;
    r->lim.period_ns = period_ms * 1000000ull;
    for (unsigned i = 3; i < nf; i++) {
        uint64_t burst;
        if (!strcmp(fields[i], "dry_run") || !strcmp(fields[i], "dry")) {
            r->dry_run = true;
        } else if (!strncmp(fields[i], "burst=", 6) &&
                   !gh_parse_uint(fields[i] + 6, 1000000000, &burst) && burst > 0) {
            r->lim.burst = (uint32_t)burst;
        } else {
            gh_buf_printf(err, "rule '%.*s': unknown option '%s' (burst=N, dry_run)", (int)len, s,
                          fields[i]);
            return GH_EINVAL;
        }
    }
    /* the period in its largest exact unit, so that the name parses back */
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    size_t u = 0;
    while (period_ms % units[u].ms)
        u++;
    snprintf(r->name, sizeof r->name, "%s:%s:%llu/%llu%s", class_names[r->cls], kind_names[r->kind],
             (unsigned long long)count, (unsigned long long)(period_ms / units[u].ms),
             units[u].unit);
    /* a stable id from the rule's identity (not its position) */
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)r->name, strlen(r->name));
    memcpy(&r->id, h, sizeof r->id);
    char labels[128];
    static const char help[] = "rate-limit decisions by rule";
    snprintf(labels, sizeof labels, "rule=\"%s\",result=\"allowed\"", r->name);
    r->m_allowed = gh_metrics_counter("gatehouse_shield_limit_decisions_total", labels, help);
    snprintf(labels, sizeof labels, "rule=\"%s\",result=\"refused\"", r->name);
    r->m_refused = gh_metrics_counter("gatehouse_shield_limit_decisions_total", labels, help);
    snprintf(labels, sizeof labels, "rule=\"%s\",result=\"would_refuse\"", r->name);
    r->m_would_refuse = gh_metrics_counter("gatehouse_shield_limit_decisions_total", labels, help);
    return 0;
}

int gh_limit_rules_parse(const char *text, struct gh_limit_rules *out, struct gh_buf *err)
{
    out->n = 0;
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ',' || *p == ';' || *p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ",; \t\n");
        if (out->n >= GH_LIMIT_RULES_MAX) {
            gh_buf_printf(err, "more than %d rules", GH_LIMIT_RULES_MAX);
            return GH_EINVAL;
        }
        if (parse_rule(p, len, &out->rules[out->n], err))
            return GH_EINVAL;
        out->n++;
        p += len;
    }
    return 0;
}

bool gh_limit_rule_key(const struct gh_limiter *t, const struct gh_limit_rule *r,
                       const struct gh_limit_subject *s, uint64_t *key)
{
    unsigned char buf[24];
    size_t n = 0;
    buf[n++] = (unsigned char)r->kind;
    switch (r->kind) {
    case GH_LKEY_ADDR:
    case GH_LKEY_PREFIX:
    case GH_LKEY_PREFIX48: {
        if (!s->addr)
            return false;
        bool v4 = s->addr->family == AF_INET;
        if (v4 && r->kind == GH_LKEY_PREFIX48)
            return false; /* IPv4 has no level between /24 and everyone: prefix covers it */
        size_t keep = v4 ? (r->kind == GH_LKEY_ADDR ? 4 : 3)
                         : (r->kind == GH_LKEY_ADDR     ? 16
                            : r->kind == GH_LKEY_PREFIX ? 8
                                                        : 6);
        buf[n++] = v4 ? 4 : 6;
        memcpy(buf + n, s->addr->bytes, keep);
        n += keep;
        break;
    }
    case GH_LKEY_ACCOUNT:
    case GH_LKEY_APIKEY: {
        uint64_t id = r->kind == GH_LKEY_ACCOUNT ? s->account_id : s->apikey_id;
        if (!id)
            return false;
        memcpy(buf + n, &id, sizeof id);
        n += sizeof id;
        break;
    }
    case GH_LKEY_PHONE:
    case GH_LKEY_PHONE_PREFIX:
    case GH_LKEY_CALLING_CODE: {
        const char *v = r->kind == GH_LKEY_CALLING_CODE ? s->calling_code : s->phone;
        if (!v || !*v)
            return false;
        size_t len = strlen(v);
        if (r->kind == GH_LKEY_PHONE_PREFIX)
            len = len > 4 ? len - 4 : 0;
        if (len > sizeof buf - n) {
            *key = gh_limiter_key(t, r->id ^ ((uint32_t)r->kind << 24), v, len) |
                   gh_limit_keykind_rank(r->kind);
            return true;
        }
        memcpy(buf + n, v, len);
        n += len;
        break;
    }
    case GH_LKEY_GLOBAL:
    case GH_LKEY_COUNT:
        break;
    }
    *key = gh_limiter_key(t, r->id, buf, n) | gh_limit_keykind_rank(r->kind);
    return true;
}
