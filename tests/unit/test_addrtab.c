/* Unit tests of the per-address connection counter (core/addrtab.h):
 * the per-address cap, freeing slots, capacity, backward-shift deletion
 * under heavy collisions (checked against a model), four threads
 * acquiring and releasing at once, and IPv6 counted by /64. */
#include "test_util.h"

#include "core/addrtab.h"

#include <pthread.h>
#include <sys/socket.h>

static struct gh_addr v4(uint32_t n)
{
    struct gh_addr a;
    memset(&a, 0, sizeof a);
    a.family = AF_INET;
    a.bytes[0] = (uint8_t)(n >> 24);
    a.bytes[1] = (uint8_t)(n >> 16);
    a.bytes[2] = (uint8_t)(n >> 8);
    a.bytes[3] = (uint8_t)n;
    return a;
}

/* 2001:db8:nnnn:nnnn::1, one /64 per n */
static struct gh_addr v6(uint32_t n)
{
    struct gh_addr a;
    memset(&a, 0, sizeof a);
    a.family = AF_INET6;
    a.bytes[0] = 0x20;
    a.bytes[1] = 0x01;
    a.bytes[2] = 0x0d;
    a.bytes[3] = 0xb8;
    a.bytes[4] = (uint8_t)(n >> 24);
    a.bytes[5] = (uint8_t)(n >> 16);
    a.bytes[6] = (uint8_t)(n >> 8);
    a.bytes[7] = (uint8_t)n;
    a.bytes[15] = 1;
    return a;
}

/* Host iid of the /64 of v6(n): 2001:db8:nnnn:nnnn:<iid> */
static struct gh_addr v6_host(uint32_t n, uint64_t iid)
{
    struct gh_addr a = v6(n);
    for (int i = 0; i < 8; i++)
        a.bytes[15 - i] = (uint8_t)(iid >> (8 * i));
    return a;
}

/* A small deterministic generator, so a failure can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void cap_per_address(void **state)
{
    struct gh_addrtab *t = gh_addrtab_new(1000);
    assert_non_null(t);
    struct gh_addr a = v4(0x0a000001), b = v4(0x0a000002);
    assert_int_equal(gh_addrtab_count(t, &a), 0);
    assert_int_equal(gh_addrtab_acquire(t, &a, 3), 1);
    assert_int_equal(gh_addrtab_acquire(t, &a, 3), 2);
    assert_int_equal(gh_addrtab_acquire(t, &a, 3), 3);
    assert_int_equal(gh_addrtab_acquire(t, &a, 3), 0); /* refused at the cap */
    assert_int_equal(gh_addrtab_count(t, &a), 3);      /* and not counted */
    assert_int_equal(gh_addrtab_acquire(t, &b, 3), 1); /* other addresses unaffected */
    gh_addrtab_release(t, &a);
    assert_int_equal(gh_addrtab_count(t, &a), 2);
    assert_int_equal(gh_addrtab_acquire(t, &a, 3), 3);
    /* a lower max applies at once, a higher one lets more in */
    assert_int_equal(gh_addrtab_acquire(t, &a, 2), 0);
    assert_int_equal(gh_addrtab_acquire(t, &a, 4), 4);
    /* max 0 refuses even a new address */
    struct gh_addr c = v4(0x0a000003);
    assert_int_equal(gh_addrtab_acquire(t, &c, 0), 0);
    assert_int_equal(gh_addrtab_count(t, &c), 0);
    gh_addrtab_free(t);
    gh_addrtab_free(NULL);
}

static void release_to_zero_frees(void **state)
{
    /* capacity 0: every shard holds only a dozen entries, so if released
     * entries were not freed the table would refuse within a few
     * hundred addresses */
    struct gh_addrtab *t = gh_addrtab_new(0);
    assert_non_null(t);
    for (uint32_t i = 0; i < 20000; i++) {
        struct gh_addr a = i & 1 ? v6(i) : v4(i);
        assert_int_equal(gh_addrtab_acquire(t, &a, 5), 1);
        assert_int_equal(gh_addrtab_acquire(t, &a, 5), 2);
        gh_addrtab_release(t, &a);
        gh_addrtab_release(t, &a);
        assert_int_equal(gh_addrtab_count(t, &a), 0);
    }
    /* releasing an address with no entry changes nothing */
    struct gh_addr x = v4(0x01020304);
    gh_addrtab_release(t, &x);
    assert_int_equal(gh_addrtab_count(t, &x), 0);
    assert_int_equal(gh_addrtab_acquire(t, &x, 1), 1);
    gh_addrtab_free(t);
}

static void v4_and_v6_are_distinct(void **state)
{
    struct gh_addrtab *t = gh_addrtab_new(100);
    struct gh_addr a = v4(0x01020304), b;
    memset(&b, 0, sizeof b);
    b.family = AF_INET6;
    memcpy(b.bytes, a.bytes, 16); /* same bytes, other family */
    assert_int_equal(gh_addrtab_acquire(t, &a, 10), 1);
    assert_int_equal(gh_addrtab_acquire(t, &a, 10), 2);
    assert_int_equal(gh_addrtab_acquire(t, &b, 10), 1);
    assert_int_equal(gh_addrtab_count(t, &a), 2);
    assert_int_equal(gh_addrtab_count(t, &b), 1);
    gh_addrtab_release(t, &b);
    assert_int_equal(gh_addrtab_count(t, &a), 2);
    gh_addrtab_free(t);
}

/* A client holds a whole IPv6 /64: its addresses share one count (the
 * attack: each address of a /64 counted separately toward
 * max_conns_per_addr), while the next /64 of the same /48 has its own. */
static void v6_counted_by_64(void **state)
{
    struct gh_addrtab *t = gh_addrtab_new(1000);
    assert_non_null(t);
    enum { MAX = 4 };
    for (uint64_t i = 0; i < MAX; i++) {
        struct gh_addr a = v6_host(7, 0x1000 + i * 0x9e3779b97f4a7c15ull);
        assert_int_equal(gh_addrtab_acquire(t, &a, MAX), i + 1);
    }
    for (uint64_t i = 0; i < 100; i++) {
        struct gh_addr a = v6_host(7, 0xabcdef + i);
        assert_int_equal(gh_addrtab_acquire(t, &a, MAX), 0);
    }
    struct gh_addr any = v6_host(7, 0xffffffffffffffffull), zero = v6_host(7, 0);
    assert_int_equal(gh_addrtab_count(t, &any), MAX);
    assert_int_equal(gh_addrtab_count(t, &zero), MAX);
    /* the neighbouring /64s are other clients */
    struct gh_addr next = v6_host(8, 0x1000), prev = v6_host(6, 0x1000);
    assert_int_equal(gh_addrtab_acquire(t, &next, MAX), 1);
    assert_int_equal(gh_addrtab_acquire(t, &prev, MAX), 1);
    /* released through any address of the /64, and freed at zero */
    for (uint64_t i = 0; i < MAX; i++) {
        struct gh_addr a = v6_host(7, 0x5555 + i);
        gh_addrtab_release(t, &a);
    }
    assert_int_equal(gh_addrtab_count(t, &any), 0);
    assert_int_equal(gh_addrtab_acquire(t, &any, 1), 1);
    /* IPv4 addresses stay exact: the host byte counts */
    struct gh_addr a1 = v4(0x0a000001), a2 = v4(0x0a000002);
    assert_int_equal(gh_addrtab_acquire(t, &a1, 1), 1);
    assert_int_equal(gh_addrtab_acquire(t, &a2, 1), 1);
    gh_addrtab_free(t);
}

static void many_up_to_capacity(void **state)
{
    enum { CAP = 20000 };
    struct gh_addrtab *t = gh_addrtab_new(CAP);
    assert_non_null(t);
    for (uint32_t i = 0; i < CAP / 2; i++) {
        struct gh_addr a = v4(0xc0a80000u + i), b = v6(i * 7919u);
        assert_int_equal(gh_addrtab_acquire(t, &a, 2), 1);
        assert_int_equal(gh_addrtab_acquire(t, &b, 2), 1);
    }
    for (uint32_t i = 0; i < CAP / 2; i++) {
        struct gh_addr a = v4(0xc0a80000u + i), b = v6(i * 7919u);
        assert_int_equal(gh_addrtab_count(t, &a), 1);
        assert_int_equal(gh_addrtab_acquire(t, &a, 2), 2);
        assert_int_equal(gh_addrtab_acquire(t, &b, 2), 2);
        assert_int_equal(gh_addrtab_acquire(t, &b, 2), 0);
    }
    for (uint32_t i = 0; i < CAP / 2; i++) {
        struct gh_addr a = v4(0xc0a80000u + i), b = v6(i * 7919u);
        gh_addrtab_release(t, &a);
        gh_addrtab_release(t, &a);
        gh_addrtab_release(t, &b);
        assert_int_equal(gh_addrtab_count(t, &a), 0);
        assert_int_equal(gh_addrtab_count(t, &b), 1);
        gh_addrtab_release(t, &b);
    }
    for (uint32_t i = 0; i < CAP / 2; i += 97) {
        struct gh_addr b = v6(i * 7919u);
        assert_int_equal(gh_addrtab_count(t, &b), 0);
    }
    gh_addrtab_free(t);
}

static void table_full(void **state)
{
    enum { N = 3000 };
    struct gh_addrtab *t = gh_addrtab_new(0); /* 64 shards of 12 entries */
    assert_non_null(t);
    static bool ok[N];
    unsigned accepted = 0;
    for (uint32_t i = 0; i < N; i++) {
        struct gh_addr a = v4(i);
        unsigned r = gh_addrtab_acquire(t, &a, 100);
        ok[i] = r == 1;
        assert_true(r <= 1);
        accepted += ok[i];
    }
    assert_true(accepted < N);    /* some were refused: the table is bounded */
    assert_true(accepted <= 768); /* never more than the shards hold */
    assert_true(accepted >= 500); /* but it does not refuse early */
    for (uint32_t i = 0; i < N; i++) {
        struct gh_addr a = v4(i);
        assert_int_equal(gh_addrtab_count(t, &a), ok[i] ? 1 : 0);
        /* an address already in is never refused below its max, even
         * with its shard full */
        if (ok[i])
            assert_int_equal(gh_addrtab_acquire(t, &a, 100), 2);
    }
    for (uint32_t i = 0; i < N; i++) {
        struct gh_addr a = v4(i);
        if (ok[i]) {
            gh_addrtab_release(t, &a);
            gh_addrtab_release(t, &a);
        }
    }
    /* empty again: every address gets in one at a time */
    for (uint32_t i = 0; i < N; i++) {
        struct gh_addr a = v4(i);
        assert_int_equal(gh_addrtab_acquire(t, &a, 1), 1);
        gh_addrtab_release(t, &a);
    }
    gh_addrtab_free(t);
}

/* Random acquires and releases on a pool larger than the table holds,
 * checked against a model after every step: backward-shift deletion must
 * keep every remaining entry findable. */
static void churn_against_model(void **state)
{
    enum { POOL = 1500, MAX = 3, STEPS = 200000 };
    struct gh_addrtab *t = gh_addrtab_new(0);
    assert_non_null(t);
    static unsigned model[POOL];
    memset(model, 0, sizeof model);
    rng_state = 0x1234567887654321ull;
    unsigned refused_full = 0;
    for (unsigned step = 0; step < STEPS; step++) {
        uint32_t k = rnd() % POOL;
        struct gh_addr a = k & 1 ? v6(k) : v4(k);
        if (rnd() % 2 == 0) {
            unsigned r = gh_addrtab_acquire(t, &a, MAX);
            if (model[k] == MAX) {
                assert_int_equal(r, 0);
            } else if (r == 0) {
                assert_int_equal(model[k], 0); /* only a new entry may find its shard full */
                refused_full++;
            } else {
                assert_int_equal(r, model[k] + 1);
                model[k]++;
            }
        } else {
            gh_addrtab_release(t, &a);
            if (model[k])
                model[k]--;
        }
        assert_int_equal(gh_addrtab_count(t, &a), model[k]);
        if (step % 5000 == 0)
            for (uint32_t j = 0; j < POOL; j++) {
                struct gh_addr b = j & 1 ? v6(j) : v4(j);
                assert_int_equal(gh_addrtab_count(t, &b), model[j]);
            }
    }
    assert_true(refused_full > 0); /* the pool did overflow shards: collisions were real */
    /* drain in random order, checking every count as entries leave */
    uint32_t order[POOL];
    for (uint32_t i = 0; i < POOL; i++)
        order[i] = i;
    for (uint32_t i = POOL - 1; i > 0; i--) {
        uint32_t j = rnd() % (i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (uint32_t i = 0; i < POOL; i++) {
        uint32_t k = order[i];
        struct gh_addr a = k & 1 ? v6(k) : v4(k);
        while (model[k]) {
            gh_addrtab_release(t, &a);
            model[k]--;
        }
        if (i % 50 == 0)
            for (uint32_t j = 0; j < POOL; j++) {
                struct gh_addr b = j & 1 ? v6(j) : v4(j);
                assert_int_equal(gh_addrtab_count(t, &b), model[j]);
            }
    }
    for (uint32_t j = 0; j < POOL; j++) {
        struct gh_addr b = j & 1 ? v6(j) : v4(j);
        assert_int_equal(gh_addrtab_count(t, &b), 0);
    }
    gh_addrtab_free(t);
}

struct thr {
    struct gh_addrtab *t;
    unsigned id;
    unsigned seed;
    unsigned acquired;
    unsigned capped_hits; /* successes on the shared capped address */
};

#define THR_ADDRS 200

static void *worker(void *arg)
{
    struct thr *th = arg;
    unsigned held[THR_ADDRS];
    memset(held, 0, sizeof held);
    unsigned seed = th->seed;
    for (unsigned i = 0; i < 50000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % THR_ADDRS; /* shared by every thread */
        struct gh_addr a = k & 1 ? v6(k) : v4(k);
        if ((seed >> 4) & 1 || !held[k]) {
            if (gh_addrtab_acquire(th->t, &a, 1000000)) {
                held[k]++;
                th->acquired++;
            }
        } else {
            gh_addrtab_release(th->t, &a);
            held[k]--;
        }
    }
    for (unsigned k = 0; k < THR_ADDRS; k++) {
        struct gh_addr a = k & 1 ? v6(k) : v4(k);
        while (held[k]) {
            gh_addrtab_release(th->t, &a);
            held[k]--;
        }
    }
    /* the per-address cap holds across threads */
    struct gh_addr capped = v4(0xdeadbeef);
    for (unsigned i = 0; i < 10; i++)
        if (gh_addrtab_acquire(th->t, &capped, 5))
            th->capped_hits++;
    return NULL;
}

static void concurrent(void **state)
{
    struct gh_addrtab *t = gh_addrtab_new(1000);
    assert_non_null(t);
    pthread_t tids[4];
    struct thr th[4];
    for (unsigned i = 0; i < 4; i++) {
        th[i] = (struct thr){.t = t, .id = i, .seed = 17 + i * 7919};
        assert_int_equal(pthread_create(&tids[i], NULL, worker, &th[i]), 0);
    }
    unsigned hits = 0;
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(tids[i], NULL), 0);
        assert_true(th[i].acquired > 1000);
        hits += th[i].capped_hits;
    }
    assert_int_equal(hits, 5);
    for (unsigned k = 0; k < THR_ADDRS; k++) {
        struct gh_addr a = k & 1 ? v6(k) : v4(k);
        assert_int_equal(gh_addrtab_count(t, &a), 0);
    }
    struct gh_addr capped = v4(0xdeadbeef);
    assert_int_equal(gh_addrtab_count(t, &capped), 5);
    gh_addrtab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cap_per_address),     cmocka_unit_test(release_to_zero_frees),
        cmocka_unit_test(v4_and_v6_are_distinct), cmocka_unit_test(many_up_to_capacity),
        cmocka_unit_test(table_full),          cmocka_unit_test(churn_against_model),
        cmocka_unit_test(concurrent),          cmocka_unit_test(v6_counted_by_64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
