/* Unit tests of the GCRA limiters (shield/limiter.h) on a simulated clock:
 * the arithmetic (burst, steady rate, Retry-After, Reset, cost), dry run,
 * the rules and their keys, and a table-full spray of distinct addresses
 * during which the aggregate keys keep refusing, threads hammering one key
 * through the lock-free path. Prints the cost of one check and the memory
 * per entry. */
#include "test_util.h"

#include "shield/limiter.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#define MS  1000000ull
#define SEC 1000000000ull

static void gcra_burst_then_refuse(void **state)
{
    struct gh_limit lim = {.period_ns = SEC, .count = 3, .burst = 3};
    struct gh_limit_decision d;
    uint64_t now = 1000 * SEC, tat = 0;
    const uint64_t T = SEC / 3;
    for (uint32_t i = 0; i < 3; i++) {
        tat = gh_limit_gcra(tat, &lim, 1, now, false, &d);
        assert_true(d.allowed);
        assert_false(d.limited);
        assert_int_equal(d.limit, 3);
        assert_int_equal(d.remaining, 2 - i);
        assert_int_equal(d.reset_ns, (i + 1) * T); /* full again after (i+1) emissions */
    }
    uint64_t before = tat;
    tat = gh_limit_gcra(tat, &lim, 1, now, false, &d); /* the 4th at once */
    assert_false(d.allowed);
    assert_true(d.limited);
    assert_false(d.impossible);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after_ns, T);
    assert_int_equal(d.reset_ns, 3 * T);
    assert_int_equal(tat, before); /* a refusal stores nothing */
    /* one ns early: still refused, retry after 1 ns */
    gh_limit_gcra(tat, &lim, 1, now + T - 1, false, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_ns, 1);
    /* exactly at Retry-After: passes */
    tat = gh_limit_gcra(tat, &lim, 1, now + T, false, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* after a long idle time the full burst is back */
    tat = gh_limit_gcra(tat, &lim, 1, now + 100 * SEC, false, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 2);
}

static void gcra_steady_rate(void **state)
{
    /* 10 per second, no burst beyond one: exactly one per 100 ms */
    struct gh_limit lim = {.period_ns = SEC, .count = 10, .burst = 1};
    struct gh_limit_decision d;
    uint64_t tat = 0, now = 5 * SEC;
    unsigned allowed = 0;
    for (int i = 0; i < 1000; i++) { /* one try every 10 ms for 10 s */
        tat = gh_limit_gcra(tat, &lim, 1, now + (uint64_t)i * 10 * MS, false, &d);
        allowed += d.allowed;
        if (!d.allowed) {
            assert_true(d.retry_after_ns > 0 && d.retry_after_ns <= 100 * MS);
            assert_int_equal(d.retry_after_ns % (10 * MS), 0);
        }
    }
    assert_int_equal(allowed, 100);
    /* halfway through an interval: retry after the other half */
    tat = 0;
    tat = gh_limit_gcra(tat, &lim, 1, now, false, &d);
    gh_limit_gcra(tat, &lim, 1, now + 40 * MS, false, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_ns, 60 * MS);
    /* burst 0 means burst = count */
    struct gh_limit lim2 = {.period_ns = SEC, .count = 5};
    tat = 0;
    allowed = 0;
    for (int i = 0; i < 10; i++) {
        tat = gh_limit_gcra(tat, &lim2, 1, now, false, &d);
        allowed += d.allowed;
    }
    assert_int_equal(allowed, 5);
}

static void gcra_cost_tokens(void **state)
{
    /* an LLM quota: 60000 tokens per minute, all of it at once */
    struct gh_limit lim = {.period_ns = 60 * SEC, .count = 60000, .burst = 60000};
    struct gh_limit_decision d;
    uint64_t tat = 0, now = SEC;
    tat = gh_limit_gcra(tat, &lim, 36000, now, false, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 24000);
    tat = gh_limit_gcra(tat, &lim, 36000, now, false, &d);
    assert_false(d.allowed);
    /* 12000 more tokens must drain: 12 s at 1000 per second */
    assert_int_equal(d.retry_after_ns, 12 * SEC);
    tat = gh_limit_gcra(tat, &lim, 36000, now + 12 * SEC, false, &d);
    assert_true(d.allowed);
    /* more than the burst can never pass */
    gh_limit_gcra(0, &lim, 60001, now, false, &d);
    assert_false(d.allowed);
    assert_true(d.impossible);
    assert_true(d.retry_after_ns > 0);
    /* a huge cost does not wrap around */
    gh_limit_gcra(0, &lim, UINT32_MAX, now, false, &d);
    assert_false(d.allowed);
}

/* A cost above the burst never passes, even where T x burst and T x cost
 * both saturate (found by fuzz_limiter_rules). */
static void gcra_cost_above_burst_saturated(void **state)
{
    struct gh_limit lim = {.period_ns = UINT64_MAX / 4, .count = 1, .burst = 3};
    struct gh_limit_decision d;
    gh_limit_gcra(0, &lim, 4, 1000 * SEC, false, &d);
    assert_false(d.allowed);
    assert_true(d.impossible);
    gh_limit_gcra(0, &lim, 3, 1000 * SEC, false, &d);
    assert_true(d.allowed);
}

static void dry_run_counts_never_refuses(void **state)
{
    struct gh_limiter *t = gh_limiter_new(1 << 20);
    assert_non_null(t);
    struct gh_limit lim = {.period_ns = SEC, .count = 2};
    struct gh_limit_decision d;
    uint64_t kd = gh_limiter_key(t, 1, "a", 1), kr = gh_limiter_key(t, 2, "a", 1);
    unsigned limited = 0, refused_real = 0;
    for (int i = 0; i < 10; i++) {
        gh_limiter_check(t, kd, &lim, 1, SEC, true, &d);
        assert_true(d.allowed);
        limited += d.limited;
        gh_limiter_check(t, kr, &lim, 1, SEC, false, &d);
        refused_real += !d.allowed;
    }
    /* the dry run flags exactly what the real rule refuses */
    assert_int_equal(limited, 8);
    assert_int_equal(refused_real, 8);
    /* and its state is the real one's: after half a second one passes */
    gh_limiter_check(t, kd, &lim, 1, SEC + SEC / 2, true, &d);
    assert_false(d.limited);
    gh_limiter_check(t, kd, &lim, 1, SEC + SEC / 2, true, &d);
    assert_true(d.limited);
    gh_limiter_free(t);
}

static void table_keys_independent(void **state)
{
    struct gh_limiter *t = gh_limiter_new(64 << 10);
    struct gh_limit lim = {.period_ns = SEC, .count = 1};
    struct gh_limit_decision d;
    /* 200 keys in a 64 KiB table (4000 entries): none interferes */
    for (int round = 0; round < 2; round++)
        for (uint32_t i = 0; i < 200; i++) {
            uint64_t k = gh_limiter_key(t, 7, &i, sizeof i);
            gh_limiter_check(t, k, &lim, 1, SEC, false, &d);
            assert_int_equal(d.allowed, round == 0);
        }
    /* the same data under another rule id is another key */
    assert_true(gh_limiter_key(t, 7, "x", 1) != gh_limiter_key(t, 8, "x", 1));
    /* a different table has a different secret */
    struct gh_limiter *t2 = gh_limiter_new(64 << 10);
    assert_true(gh_limiter_key(t, 7, "x", 1) != gh_limiter_key(t2, 7, "x", 1));
    struct gh_limiter_stats st;
    gh_limiter_get_stats(t, &st);
    assert_int_equal(st.inserts, 200);
    assert_int_equal(st.evictions, 0);
    assert_true(st.bytes <= 64 << 10);
    gh_limiter_free(t);
    gh_limiter_free(t2);
}

static void rules_parse(void **state)
{
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("anon:addr:3/1s, register:prefix:30/m:burst=10;"
                                          " login:global:100/1s:dry_run  user:account:5/h",
                                          &rs, &err),
                     0);
    assert_int_equal(rs.n, 4);
    assert_int_equal(rs.rules[0].cls, GH_CLASS_ANON);
    assert_int_equal(rs.rules[0].kind, GH_LKEY_ADDR);
    assert_int_equal(rs.rules[0].lim.count, 3);
    assert_int_equal(rs.rules[0].lim.period_ns, SEC);
    assert_int_equal(rs.rules[1].cls, GH_CLASS_REGISTER);
    assert_int_equal(rs.rules[1].kind, GH_LKEY_PREFIX);
    assert_int_equal(rs.rules[1].lim.period_ns, 60 * SEC);
    assert_int_equal(rs.rules[1].lim.burst, 10);
    assert_true(rs.rules[2].dry_run);
    assert_false(rs.rules[1].dry_run);
    assert_int_equal(rs.rules[3].lim.period_ns, 3600 * SEC);
    assert_string_equal(rs.rules[0].name, "anon:addr:3/1s");
    assert_true(rs.rules[0].id != rs.rules[1].id);
    assert_non_null(rs.rules[0].m_refused);
    /* the id depends on the rule, not its position */
    struct gh_limit_rules rs2;
    assert_int_equal(gh_limit_rules_parse("login:global:1/1s anon:addr:3/1s", &rs2, &err), 0);
    assert_int_equal(rs2.rules[1].id, rs.rules[0].id);
    assert_int_equal(gh_limit_rules_parse("", &rs2, &err), 0);
    assert_int_equal(rs2.n, 0);
    /* names use the largest exact unit and parse back to the same rule,
     * up to the longest period allowed (366 d) */
    assert_int_equal(gh_limit_rules_parse("anon:addr:7/366d anon:addr:1/90000ms", &rs2, &err), 0);
    assert_string_equal(rs2.rules[0].name, "anon:addr:7/366d");
    assert_string_equal(rs2.rules[1].name, "anon:addr:1/90s");
    struct gh_limit_rules rs3;
    assert_int_equal(gh_limit_rules_parse(rs2.rules[0].name, &rs3, &err), 0);
    assert_int_equal(rs3.rules[0].id, rs2.rules[0].id);
    assert_int_equal(rs3.rules[0].lim.period_ns, rs2.rules[0].lim.period_ns);

    static const char *bad[] = {"anon:addr", "guest:addr:1/s", "anon:ip:1/s", "anon:addr:0/s",
                                "anon:addr:1/fortnight", "anon:addr:1/s:x", "anon:addr:x/s",
                                "anon:addr:1/s:burst=0", "anon:addr:1",
                                /* found by fuzz_limiter_rules: an empty period, options past
                                 * the sixth field, a period longer than the parser reads */
                                "anon:addr:5/", "anon:addr:1/s:dry:dry:dry:junk",
                                "anon:addr:1/0000000000000000000000000000001sjunk"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        gh_buf_reset(&err);
        assert_int_equal(gh_limit_rules_parse(bad[i], &rs2, &err), GH_EINVAL);
        assert_non_null(err.data);
        tu_assert_contains(err.data, "rule '");
    }
    gh_buf_reset(&err);
    gh_limit_rules_parse("anon:guest:1/s", &rs2, &err);
    tu_assert_contains(err.data, "unknown key 'guest'");
    gh_buf_dispose(&err);
}

static struct gh_addr v4(const char *s)
{
    struct gh_addr a = {.family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, s, a.bytes), 1);
    return a;
}

static struct gh_addr v6(const char *s)
{
    struct gh_addr a = {.family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, s, a.bytes), 1);
    return a;
}

static void rule_keys(void **state)
{
    struct gh_limiter *t = gh_limiter_new(1 << 16);
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("anon:addr:1/s anon:prefix:1/s anon:prefix48:1/s "
                                          "anon:account:1/s anon:apikey:1/s anon:phone:1/s "
                                          "anon:phone_prefix:1/s anon:calling_code:1/s "
                                          "anon:global:1/s",
                                          &rs, &err),
                     0);
    struct gh_addr a1 = v4("192.0.2.1"), a2 = v4("192.0.2.200"), a3 = v4("192.0.3.1");
    struct gh_addr b1 = v6("2001:db8:1:2::1"), b2 = v6("2001:db8:1:2:ffff::9"),
                   b3 = v6("2001:db8:1:3::1"), b4 = v6("2001:db8:2::1");
    uint64_t k1, k2;
#define KEY(rule, subj, out) assert_true(gh_limit_rule_key(t, &rs.rules[rule], (subj), (out)))
    struct gh_limit_subject s1 = {.addr = &a1}, s2 = {.addr = &a2}, s3 = {.addr = &a3};
    KEY(0, &s1, &k1);
    KEY(0, &s2, &k2);
    assert_true(k1 != k2); /* addr: two addresses */
    KEY(1, &s1, &k1);
    KEY(1, &s2, &k2);
    assert_true(k1 == k2); /* prefix: same /24 */
    KEY(1, &s3, &k2);
    assert_true(k1 != k2);
    struct gh_limit_subject t1 = {.addr = &b1}, t2 = {.addr = &b2}, t3 = {.addr = &b3},
                            t4 = {.addr = &b4};
    KEY(1, &t1, &k1);
    KEY(1, &t2, &k2);
    assert_true(k1 == k2); /* same /64 */
    KEY(1, &t3, &k2);
    assert_true(k1 != k2); /* another /64 */
    KEY(2, &t1, &k1);
    KEY(2, &t3, &k2);
    assert_true(k1 == k2); /* same /48 */
    KEY(2, &t4, &k2);
    assert_true(k1 != k2);
    /* IPv4 has no /48 level: its /24 is the prefix rule's */
    assert_false(gh_limit_rule_key(t, &rs.rules[2], &s1, &k1));
    /* ranks: address 0, /64 1, /48 2, global 3 */
    KEY(0, &t1, &k1);
    assert_int_equal(k1 & GH_LIMIT_RANK_MASK, 0);
    KEY(1, &t1, &k1);
    assert_int_equal(k1 & GH_LIMIT_RANK_MASK, 1);
    KEY(2, &t1, &k1);
    assert_int_equal(k1 & GH_LIMIT_RANK_MASK, 2);
    KEY(8, &t1, &k1);
    assert_int_equal(k1 & GH_LIMIT_RANK_MASK, 3);
    /* absent members: the rule does not apply */
    assert_false(gh_limit_rule_key(t, &rs.rules[3], &s1, &k1));
    assert_false(gh_limit_rule_key(t, &rs.rules[5], &s1, &k1));
    struct gh_limit_subject
        p1 = {.phone = "+8613800138000", .calling_code = "86", .account_id = 5, .apikey_id = 5},
        p2 = {.phone = "+8613800139999", .calling_code = "86", .account_id = 6, .apikey_id = 6};
    KEY(3, &p1, &k1);
    KEY(4, &p1, &k2);
    assert_true(k1 != k2); /* account 5 and key 5 differ */
    KEY(5, &p1, &k1);
    KEY(5, &p2, &k2);
    assert_true(k1 != k2);
    KEY(6, &p1, &k1);
    KEY(6, &p2, &k2);
    assert_true(k1 == k2); /* +86138001 3xxxx: same phone prefix */
    KEY(7, &p1, &k1);
    KEY(7, &p2, &k2);
    assert_true(k1 == k2);
    KEY(8, &s1, &k1);
    KEY(8, &t4, &k2);
    assert_true(k1 == k2); /* global */
#undef KEY
    gh_buf_dispose(&err);
    gh_limiter_free(t);
}

/* A spray of n distinct addresses over ~4,000 /24s, lasting 2 minutes,
 * through a table of `bytes` (per-address state is evicted all along)
 * against addr 5/1m, prefix 60/1m and global 600/1m. hashkey NULL keeps
 * the table's random key. Returns how many passed every rule. */
static unsigned spray(size_t bytes, unsigned n, const unsigned char *hashkey,
                      struct gh_limiter_stats *st)
{
    struct gh_limiter *t = gh_limiter_new(bytes);
    assert_non_null(t);
    if (hashkey)
        gh_limiter_set_hashkey(t, hashkey);
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("register:addr:5/1m register:prefix:60/1m "
                                          "register:global:600/1m",
                                          &rs, &err),
                     0);
    gh_buf_dispose(&err);
    unsigned allowed_total = 0;
    uint64_t now = 1000 * SEC;
    const uint64_t step = 120 * SEC / n;
    for (unsigned i = 0; i < n; i++) {
        unsigned j = (unsigned)((uint64_t)i * 1000000u / n); /* the same /24s at any n */
        struct gh_addr a = {
            .family = AF_INET,
            .bytes = {10, (uint8_t)(j % 16), (uint8_t)(j >> 12), (uint8_t)(j >> 4)}};
        struct gh_limit_subject s = {.addr = &a};
        bool ok = true;
        for (unsigned r = 0; r < rs.n && ok; r++) {
            uint64_t k;
            struct gh_limit_decision d;
            assert_true(gh_limit_rule_key(t, &rs.rules[r], &s, &k));
            gh_limiter_check(t, k, &rs.rules[r].lim, 1, now, false, &d);
            ok = d.allowed;
        }
        allowed_total += ok;
        now += step;
    }
    gh_limiter_get_stats(t, st);
    assert_true(st->bytes <= bytes);
    gh_limiter_free(t);
    return allowed_total;
}

/* 1,000,000 distinct addresses through 256 KiB (16,000 entries) under a
 * fixed hash key: the global rule holds (600 at once + 10/s for 120 s),
 * the limits still let traffic through, and the memory does not grow. */
static void spray_keeps_aggregates(void **state)
{
    static const unsigned char key[16] = "gatehouse-spray";
    struct gh_limiter_stats st;
    unsigned allowed = spray(256 << 10, 1000000, key, &st);
    print_message("spray: %u of 1000000 allowed, capacity %llu entries, %llu inserts, %llu "
                  "evictions, %llu dropped\n",
                  allowed, (unsigned long long)st.capacity, (unsigned long long)st.inserts,
                  (unsigned long long)st.evictions, (unsigned long long)st.dropped);
    assert_true(allowed <= 600 + 1200 + 1);
    assert_true(allowed >= 1700);
    assert_true(st.evictions > 0);
}

/* The same promise as a property over 100 random hash keys, with the
 * spray shaped to starve the global key of touches: 99 % of requests come
 * from new addresses of one IPv6 /64 whose prefix allowance is spent (each
 * stores a per-address key and never reaches the global rule), 1 % from
 * fresh IPv4 /24s that reach it. Through a 4 KiB table (31 buckets) an
 * LRU-only table loses the global key between two touches in nearly every
 * run; ranked eviction never does, whatever the key. */
static void spray_any_hash_key(void **state)
{
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("register:addr:5/1m register:prefix:60/1m "
                                          "register:global:100/1m",
                                          &rs, &err),
                     0);
    gh_buf_dispose(&err);
    const unsigned n = 100000;
    const uint64_t step = 120 * SEC / n;
    for (int run = 0; run < 100; run++) {
        struct gh_limiter *t = gh_limiter_new(4 << 10);
        unsigned char key[16];
        randombytes_buf(key, sizeof key);
        gh_limiter_set_hashkey(t, key);
        unsigned allowed = 0;
        uint64_t now = 1000 * SEC;
        for (unsigned i = 0; i < n; i++, now += step) {
            struct gh_addr a = {.family = AF_INET6, .bytes = {0x20, 0x01, 0x0d, 0xb8}};
            if (i % 100 == 0) {
                a.family = AF_INET;
                a.bytes[0] = 10;
                a.bytes[1] = (uint8_t)(i >> 16);
                a.bytes[2] = (uint8_t)(i >> 8);
                a.bytes[3] = 1;
            } else {
                memcpy(a.bytes + 12, &i, sizeof i); /* a new address of one /64 */
            }
            struct gh_limit_subject s = {.addr = &a};
            bool ok = true;
            for (unsigned r = 0; r < rs.n && ok; r++) {
                uint64_t k;
                struct gh_limit_decision d;
                gh_limit_rule_key(t, &rs.rules[r], &s, &k);
                gh_limiter_check(t, k, &rs.rules[r].lim, 1, now, false, &d);
                ok = d.allowed;
            }
            allowed += ok;
        }
        struct gh_limiter_stats st;
        gh_limiter_get_stats(t, &st);
        gh_limiter_free(t);
        /* global: 100 at once + 100/min for 2 min; demand ~1,180 */
        if (allowed > 100 + 200 + 1 || allowed < 290) {
            char hex[33];
            sodium_bin2hex(hex, sizeof hex, key, sizeof key);
            fail_msg("hash key %s: %u allowed (want 290..301), %llu evictions", hex, allowed,
                     (unsigned long long)st.evictions);
        }
        assert_true(st.evictions > 1000); /* the table did churn */
    }
}

/* A bucket full of aggregate keys takes no per-address key, and a full
 * bucket of per-address keys gives way to an aggregate one. */
static void rank_orders_eviction(void **state)
{
    struct gh_limiter *t = gh_limiter_new(1); /* one shard of one bucket: 8 slots */
    struct gh_limit lim = {.period_ns = 60 * SEC, .count = 1};
    struct gh_limit_decision d;
    uint64_t now = 100 * SEC;
    /* 8 live global-rank keys */
    for (uint64_t i = 1; i <= 8; i++)
        gh_limiter_check(t, (i << 8) | 3, &lim, 1, now, false, &d);
    for (uint64_t i = 100; i < 1100; i++) /* per-address keys knock in vain */
        gh_limiter_check(t, i << 8, &lim, 1, now, false, &d);
    for (uint64_t i = 1; i <= 8; i++) { /* every aggregate still refuses */
        gh_limiter_check(t, (i << 8) | 3, &lim, 1, now, false, &d);
        assert_false(d.allowed);
    }
    struct gh_limiter_stats st;
    gh_limiter_get_stats(t, &st);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.dropped, 1000);
    gh_limiter_free(t);
    /* the other way round: per-address keys give way, the oldest first
     * when they are equally far from refilled */
    t = gh_limiter_new(1);
    for (uint64_t i = 1; i <= 8; i++)
        gh_limiter_check(t, i << 8, &lim, 1, now, false, &d);
    gh_limiter_check(t, (99ull << 8) | 1, &lim, 1, now, false, &d); /* a prefix key */
    gh_limiter_check(t, (99ull << 8) | 1, &lim, 1, now, false, &d);
    assert_false(d.allowed); /* remembered */
    gh_limiter_check(t, 1ull << 8, &lim, 1, now, false, &d);
    assert_true(d.allowed); /* the oldest address key was the one evicted */
    gh_limiter_get_stats(t, &st);
    assert_int_equal(st.evictions, 2);
    gh_limiter_free(t);
}

/* Among live keys of one rank, the least recently used gives way, even
 * when the lock-free path is all that touched the others since they were
 * stored (slots never move: the order lives in a stamp per slot). */
static void evicts_least_recent(void **state)
{
    struct gh_limiter *t = gh_limiter_new(1); /* one bucket */
    struct gh_limit lim = {.period_ns = 60 * SEC, .count = 10};
    struct gh_limit_decision d;
    uint64_t now = 100 * SEC;
    for (uint64_t k = 1; k <= 8; k++) /* stored 10 ms apart: key 1 is the oldest */
        gh_limiter_check(t, k << 8, &lim, 1, now + k * 10 * MS, false, &d);
    for (uint64_t k = 1; k <= 7; k++) /* used again later, except key 8 */
        gh_limiter_check(t, k << 8, &lim, 1, now + SEC + k * 10 * MS, false, &d);
    gh_limiter_check(t, 100ull << 8, &lim, 1, now + 2 * SEC, false, &d); /* a newcomer */
    gh_limiter_check(t, 8ull << 8, &lim, 1, now + 2 * SEC, false, &d);
    assert_int_equal(d.remaining, 9); /* forgotten: a full allowance again */
    gh_limiter_check(t, 2ull << 8, &lim, 1, now + 2 * SEC, false, &d);
    assert_int_equal(d.remaining, 7); /* remembered: 3 of 10 used */
    gh_limiter_check(t, 1ull << 8, &lim, 1, now + 2 * SEC, false, &d);
    assert_int_equal(d.remaining, 9); /* key 8 coming back displaced the least recent */
    gh_limiter_free(t);
}

/* Threads hammering one key: what passes is what the GCRA allows, never
 * more (a lost update in the lock-free path would let extra requests
 * through), whether the clock stands still or moves, and while other
 * threads churn the rest of the key's bucket under the lock. */
struct hammer {
    struct gh_limiter *t;
    uint64_t key;
    struct gh_limit lim;
    _Atomic uint64_t *clock; /* each check takes the next tick (NULL: frozen at 1 s) */
    uint64_t tick;
    unsigned id, iters;
    bool spray; /* insert new rank-0 keys instead */
    pthread_barrier_t *start;
    uint64_t allowed, last_now; /* out */
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    struct gh_limit_decision d;
    pthread_barrier_wait(h->start);
    for (unsigned i = 0; i < h->iters; i++) {
        uint64_t now = h->clock ? atomic_fetch_add(h->clock, h->tick) : SEC;
        uint64_t key = h->spray ? ((uint64_t)h->id << 20 | i) << 2 : h->key;
        gh_limiter_check(h->t, key, &h->lim, 1, now, false, &d);
        h->allowed += !h->spray && d.allowed;
        h->last_now = now;
    }
    return NULL;
}

/* Runs nhot hammering threads (and nspray churning ones) over t; the sum
 * of what passed. *end gets the clock's final reading. */
static uint64_t hammer(struct gh_limiter *t, uint64_t key, const struct gh_limit *lim,
                       _Atomic uint64_t *clock, unsigned nhot, unsigned nspray, unsigned iters)
{
    enum { MAXT = 16 };
    struct hammer h[MAXT];
    pthread_t tid[MAXT];
    pthread_barrier_t start;
    unsigned n = nhot + nspray;
    assert_true(n <= MAXT);
    pthread_barrier_init(&start, NULL, n);
    for (unsigned i = 0; i < n; i++) {
        h[i] = (struct hammer){.t = t,
                               .key = key,
                               .lim = *lim,
                               .clock = clock,
                               .tick = 1000,
                               .id = i,
                               .iters = iters,
                               .spray = i >= nhot,
                               .start = &start};
        assert_int_equal(pthread_create(&tid[i], NULL, hammer_run, &h[i]), 0);
    }
    uint64_t allowed = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        allowed += h[i].allowed;
    }
    pthread_barrier_destroy(&start);
    return allowed;
}

static void hot_key_threads_exact(void **state)
{
    /* frozen clock, an allowance of half the checks: exactly that passes,
     * however the threads interleave (most checks pass, so most of them
     * race to store a TAT) */
    struct gh_limiter *t = gh_limiter_new(1 << 20);
    struct gh_limit lim = {.period_ns = 3600 * SEC, .count = 200000};
    uint64_t key = gh_limiter_key(t, 1, "203.0.113.7", 11);
    assert_int_equal(hammer(t, key, &lim, NULL, 8, 0, 50000), 200000);
    gh_limiter_free(t);
}

static void hot_key_threads_moving_clock(void **state)
{
    /* 500,000/s (T = 2 us) with a burst of 10: 8 threads x 50,000 checks,
     * each a tick of 1 us later, so 0.4 s of simulated time: at most
     * 10 + 200,000 pass */
    struct gh_limiter *t = gh_limiter_new(1 << 20);
    struct gh_limit lim = {.period_ns = SEC, .count = 500000, .burst = 10};
    uint64_t key = gh_limiter_key(t, 1, "203.0.113.7", 11);
    _Atomic uint64_t clock = 10 * SEC;
    uint64_t allowed = hammer(t, key, &lim, &clock, 8, 0, 50000);
    uint64_t elapsed = atomic_load(&clock) - 10 * SEC, T = SEC / 500000;
    print_message("hot key: %llu passed in %.3f s of simulated time (GCRA: at most %llu)\n",
                  (unsigned long long)allowed, (double)elapsed / SEC,
                  (unsigned long long)(10 + elapsed / T));
    assert_true(allowed <= 10 + elapsed / T);
    /* threads read the clock out of order, which only ever refuses more;
     * still, most of the allowance is used */
    assert_true(allowed >= elapsed / T / 2);
    gh_limiter_free(t);
}

static void hot_key_threads_with_churn(void **state)
{
    /* one bucket: the hot key (a global-rank key, never evicted by rank-0
     * keys) shares it with seven slots two threads keep replacing */
    struct gh_limiter *t = gh_limiter_new(1);
    struct gh_limit lim = {.period_ns = 3600 * SEC, .count = 150000};
    uint64_t key = (12345ull << 8) | 3;
    assert_int_equal(hammer(t, key, &lim, NULL, 6, 2, 50000), 150000);
    struct gh_limiter_stats st;
    gh_limiter_get_stats(t, &st);
    assert_true(st.evictions > 1000); /* the bucket did churn around it */
    gh_limiter_free(t);
}

/* The same spray confined to one /24 with a table far too small: the
 * prefix key is touched by every request, never evicted, and refuses. */
static void spray_one_prefix_tiny_table(void **state)
{
    struct gh_limiter *t = gh_limiter_new(8 << 10); /* ~ 500 entries */
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("register:addr:5/1m register:prefix:50/1m", &rs, &err),
                     0);
    gh_buf_dispose(&err);
    uint64_t now = 10 * SEC;
    unsigned allowed = 0;
    /* 200,000 requests from 256 addresses x many ports... every address of
     * one /24 and 50,000 other /24s interleaved, within one second */
    for (unsigned i = 0; i < 200000; i++) {
        struct gh_addr a = {.family = AF_INET};
        if (i % 2) {
            a.bytes[0] = 198;
            a.bytes[1] = 51;
            a.bytes[2] = 100;
            a.bytes[3] = (uint8_t)i;
        } else { /* noise from elsewhere, to churn the table */
            a.bytes[0] = 11;
            a.bytes[1] = (uint8_t)(i >> 16);
            a.bytes[2] = (uint8_t)(i >> 8);
            a.bytes[3] = (uint8_t)i;
        }
        struct gh_limit_subject s = {.addr = &a};
        bool ok = true;
        for (unsigned r = 0; r < rs.n && ok; r++) {
            uint64_t k;
            struct gh_limit_decision d;
            gh_limit_rule_key(t, &rs.rules[r], &s, &k);
            gh_limiter_check(t, k, &rs.rules[r].lim, 1, now + i * 5000ull, false, &d);
            ok = d.allowed;
        }
        if (i % 2)
            allowed += ok;
    }
    assert_int_equal(allowed, 50); /* exactly the prefix's burst */
    struct gh_limiter_stats st;
    gh_limiter_get_stats(t, &st);
    assert_true(st.evictions > 10000);
    assert_true(st.bytes <= 8 << 10);
    gh_limiter_free(t);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static void cost_of_a_check(void **state)
{
    struct gh_limiter *t = gh_limiter_new(64 << 20);
    struct gh_limit_rules rs;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_limit_rules_parse("anon:addr:100/1s", &rs, &err), 0);
    gh_buf_dispose(&err);
    const unsigned N = 2000000;
    uint64_t t0 = mono_ns();
    unsigned allowed = 0;
    for (unsigned i = 0; i < N; i++) {
        struct gh_addr a = {.family = AF_INET,
                            .bytes = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i}};
        struct gh_limit_subject s = {.addr = &a};
        uint64_t k;
        struct gh_limit_decision d;
        gh_limit_rule_key(t, &rs.rules[0], &s, &k);
        gh_limiter_check(t, k, &rs.rules[0].lim, 1, t0 + i, false, &d);
        allowed += d.allowed;
    }
    uint64_t dt = mono_ns() - t0;
    struct gh_limiter_stats st;
    gh_limiter_get_stats(t, &st);
    print_message("limiter: %.1f ns per check (key hash + lookup/insert, 64 MiB table, %llu "
                  "entries, %.1f bytes/entry)\n",
                  (double)dt / N, (unsigned long long)st.capacity,
                  (double)st.bytes / (double)st.capacity);
    assert_true(allowed > 0);
    /* hot: 1000 keys that stay in cache */
    t0 = mono_ns();
    for (unsigned i = 0; i < N; i++) {
        struct gh_addr a = {.family = AF_INET,
                            .bytes = {10, 0, (uint8_t)((i % 1000) >> 8), (uint8_t)(i % 1000)}};
        struct gh_limit_subject s = {.addr = &a};
        uint64_t k;
        struct gh_limit_decision d;
        gh_limit_rule_key(t, &rs.rules[0], &s, &k);
        gh_limiter_check(t, k, &rs.rules[0].lim, 1, t0 + i, false, &d);
    }
    dt = mono_ns() - t0;
    print_message("limiter: %.1f ns per check on 1000 hot keys\n", (double)dt / N);
    gh_limiter_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gcra_burst_then_refuse),
        cmocka_unit_test(gcra_steady_rate),
        cmocka_unit_test(gcra_cost_tokens),
        cmocka_unit_test(dry_run_counts_never_refuses),
        cmocka_unit_test(gcra_cost_above_burst_saturated),
        cmocka_unit_test(table_keys_independent),
        cmocka_unit_test(rules_parse),
        cmocka_unit_test(rule_keys),
        cmocka_unit_test(spray_keeps_aggregates),
        cmocka_unit_test(spray_any_hash_key),
        cmocka_unit_test(rank_orders_eviction),
        cmocka_unit_test(evicts_least_recent),
        cmocka_unit_test(hot_key_threads_exact),
        cmocka_unit_test(hot_key_threads_moving_clock),
        cmocka_unit_test(hot_key_threads_with_churn),
        cmocka_unit_test(spray_one_prefix_tiny_table),
        cmocka_unit_test(cost_of_a_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
