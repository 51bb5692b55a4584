/* Rate limiters: GCRA (the generic cell rate algorithm) over a table of
 * keys shared by every worker, and the rules that say which key a request
 * is counted under (client address, its prefix, account, API key, phone
 * number, phone prefix, calling code, or one global key per class).
 *
 * The table owns one 64-bit theoretical arrival time (TAT) per key, in
 * 16 bytes per entry with the key's keyed hash (SipHash, random key per
 * table, so nobody can aim collisions; 42 of its bits are kept beside the
 * rank and a stamp of last use). Its capacity is fixed when it
 * is made, from a size in bytes; it never allocates afterwards. It is
 * sharded and each shard is a set-associative cache of 8-way buckets. A
 * key already stored is checked without a lock: a refusal only reads its
 * TAT, a request that passes stores the new TAT with a 16-byte
 * compare-and-swap of (key, TAT), so workers refusing one flooding key
 * never wait for each other. Storing a new key takes the shard's mutex:
 * when its bucket is full, an entry that has fully refilled (TAT <= now,
 * so forgetting it loses nothing) is reused first, else the least
 * recently used entry (each carries a millisecond stamp of its last use)
 * is evicted and counted. Every key carries a rank in its two low bits (how many requests
 * share it: 0 address, account, key or number; 1 /24, /64 or number prefix;
 * 2 /48 or calling code; 3 global), and a new key only ever displaces a
 * live key of its own rank or below, lowest rank first: a flood of
 * per-address or per-number keys can evict only its own kind, never the
 * aggregate key that refuses it, whatever the hash key. A new key that
 * finds its bucket full of higher-ranked live keys is not remembered
 * (counted as dropped); the aggregates above it still count its requests.
 *
 * Threads: gh_limiter_check and the stats may be called from any thread
 * at once; new/free on one thread while nobody else uses the table. Rules
 * (gh_limit_rules) are immutable after parsing and may be read by any
 * thread; the caller owns them and frees them with gh_limit_rules_dispose.
 * Every function takes the time as a parameter (ns on a monotonic clock),
 * so tests drive a simulated clock. */
#pragma once

#include "core/buf.h"
#include "core/common.h"
#include "http/router.h"

struct gh_limiter;

/* A rate: count requests (or cost units) per period, and up to burst at
 * once. The emission interval is T = period / count, the tolerance
 * tau = T * burst; burst 0 means burst = count. */
struct gh_limit {
    uint64_t period_ns;
    uint32_t count;
    uint32_t burst;
};

/* What one check decided; enough for 429 and X-RateLimit-* headers. */
struct gh_limit_decision {
    bool allowed;    /* false only when refused for real (not in dry run) */
    bool limited;    /* the rate is exceeded (true also when a dry run let it pass) */
    bool impossible; /* cost > burst: this cost can never pass */
    uint32_t limit;  /* the burst: how many pass at once from a full allowance */
    uint32_t remaining;      /* unit-cost requests that would still pass now */
    uint64_t reset_ns;       /* until the allowance is full again */
    uint64_t retry_after_ns; /* refused: until this request would pass */
};

struct gh_limiter_stats {
    uint64_t capacity;  /* entries */
    uint64_t bytes;     /* memory of the entries and shards */
    uint64_t inserts;   /* new keys stored */
    uint64_t evictions; /* live entries dropped for a new key */
    uint64_t dropped;   /* new keys not stored: their bucket was all higher-ranked */
};

/* The two low bits of a table key: its rank (see the top of this file).
 * Bits 32-51 are the table's own (a stamp of last use): keys are compared
 * without them. */
#define GH_LIMIT_RANK_MASK 3u

/* A table whose entries and shards fit in bytes (at least one shard of one
 * bucket). NULL when out of memory. Call once at start. */
struct gh_limiter *gh_limiter_new(size_t bytes);
void gh_limiter_free(struct gh_limiter *t);

/* The table key of (rule id, data): a SipHash under the table's secret,
 * never 0, of rank 0 (OR a rank into the low bits for aggregate keys; see
 * gh_limit_keykind_rank). Any thread. */
uint64_t gh_limiter_key(const struct gh_limiter *t, uint32_t rule_id, const void *data,
                        size_t len);

/* Replaces the table's random hash key (for tests that need a fixed or a
 * chosen key). Call before any other thread uses the table. */
void gh_limiter_set_hashkey(struct gh_limiter *t, const unsigned char key[16]);

/* Checks and, when it passes, counts `cost` units for key at time now_ns
 * against lim. With dry_run a request over the rate still passes
 * (d->allowed true, d->limited true) and nothing is stored for it, exactly
 * as a real refusal stores nothing. O(1): at most 8 entries; no lock
 * for a key already stored, the shard's mutex to store a new one. Any
 * thread. */
void gh_limiter_check(struct gh_limiter *t, uint64_t key, const struct gh_limit *lim,
                      uint32_t cost, uint64_t now_ns, bool dry_run, struct gh_limit_decision *d);

/* The pure GCRA step, on one stored TAT (0 = none): fills d and returns
 * the TAT to store (unchanged when refused). Exposed for tests. */
uint64_t gh_limit_gcra(uint64_t tat, const struct gh_limit *lim, uint32_t cost, uint64_t now_ns,
                       bool dry_run, struct gh_limit_decision *d);

void gh_limiter_get_stats(struct gh_limiter *t, struct gh_limiter_stats *out);

/* ---- rules ---- */

/* What a rule counts under. */
enum gh_limit_keykind {
    GH_LKEY_ADDR,         /* the client address */
    GH_LKEY_PREFIX,       /* IPv4 /24, IPv6 /64 */
    GH_LKEY_PREFIX48,     /* IPv6 /48 (a site); IPv4 requests skip these rules */
    GH_LKEY_ACCOUNT,      /* the authenticated user */
    GH_LKEY_APIKEY,       /* the API key */
    GH_LKEY_PHONE,        /* the phone number (E.164) */
    GH_LKEY_PHONE_PREFIX, /* the number without its last 4 digits */
    GH_LKEY_CALLING_CODE, /* the country calling code ("86") */
    GH_LKEY_GLOBAL,       /* one key for the whole class */
    GH_LKEY_COUNT
};

struct gh_limit_rule {
    char name[48]; /* "register:prefix:30/1m" */
    enum gh_class cls;
    enum gh_limit_keykind kind;
    struct gh_limit lim;
    bool dry_run;
    uint32_t id; /* derived from the rule's text: the same rule keeps its state on reload */
    /* counters in the metrics registry (may be NULL when it is full) */
    _Atomic uint64_t *m_allowed, *m_refused, *m_would_refuse;
};

#define GH_LIMIT_RULES_MAX 64

struct gh_limit_rules {
    struct gh_limit_rule rules[GH_LIMIT_RULES_MAX];
    unsigned n;
};

/* What a request offers to key on; NULL / 0 members are absent, and rules
 * keyed on an absent member do not apply. */
struct gh_limit_subject {
    const struct gh_addr *addr;
    uint64_t account_id;
    uint64_t apikey_id;
    const char *phone;        /* E.164, "+8613800138000" */
    const char *calling_code; /* "86" */
};

/* Parses rules: entries separated by commas, semicolons or spaces, each
 * CLASS:KEY:COUNT/PERIOD[:burst=N][:dry_run], e.g. "anon:addr:20/1s:burst=40,
 * register:prefix:30/1m, register:global:100/1s:dry_run". CLASS is ops, user,
 * login, register or anon; KEY addr, prefix, prefix48, account, apikey,
 * phone, phone_prefix, calling_code or global; PERIOD a duration (1s, 1m,
 * 1h; a bare unit "s" means 1). 0, or GH_EINVAL with the entry and reason
 * in err. Registers the rules' counters in the metrics registry. */
int gh_limit_rules_parse(const char *text, struct gh_limit_rules *out, struct gh_buf *err);

/* The table key of rule r for subject s into *key. false when s lacks what
 * the rule keys on (then the rule does not apply). */
bool gh_limit_rule_key(const struct gh_limiter *t, const struct gh_limit_rule *r,
                       const struct gh_limit_subject *s, uint64_t *key);

const char *gh_limit_keykind_name(enum gh_limit_keykind k);
/* The rank keys of kind k carry (0..3, higher = shared by more requests). */
unsigned gh_limit_keykind_rank(enum gh_limit_keykind k);
const char *gh_class_name(enum gh_class c);
/* Parses a class name; 0 or GH_EINVAL. */
int gh_class_parse(const char *s, size_t len, enum gh_class *out);
