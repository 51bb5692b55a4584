/* Unit tests of the GET /api/me answer cache (identity/mecache.h): a hit
 * within the TTL, expiry, a drop, the generation that keeps a read older
 * than a drop out, collisions, the size cap, the refresh in an entry's
 * last quarter. */
#include "test_util.h"

#include "identity/mecache.h"

static int setup(void **state)
{
    return gh_mecache_init();
}

static int teardown(void **state)
{
    gh_mecache_free();
    return 0;
}

static void put_now(uint64_t id, uint64_t now, const char *json)
{
    gh_mecache_put(id, gh_mecache_gen(id), now, json, strlen(json));
}

static void hit_then_expiry(void **state)
{
    char out[GH_MECACHE_MAX];
    assert_int_equal(gh_mecache_get(7, 1000, out, NULL), 0);
    put_now(7, 1000, "{\"id\":7}");
    size_t n = gh_mecache_get(7, 1000 + GH_MECACHE_TTL_MS - 1, out, NULL);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "{\"id\":7}", 8);
    assert_int_equal(gh_mecache_get(7, 1000 + GH_MECACHE_TTL_MS, out, NULL), 0);
}

/* Past GH_MECACHE_REFRESH_MS one get asks for a refresh and the others
 * do not while it is out; its put makes the entry young again. A drop
 * ends a refresh: the read in flight is not kept, and the next entry is
 * refreshed in its turn. */
static void refresh_in_last_quarter(void **state)
{
    char out[GH_MECACHE_MAX];
    bool refresh = true;
    put_now(11, 1000, "{\"id\":11}");
    assert_int_equal(gh_mecache_get(11, 1000 + GH_MECACHE_REFRESH_MS - 1, out, &refresh), 9);
    assert_false(refresh);
    assert_int_equal(gh_mecache_get(11, 1000 + GH_MECACHE_REFRESH_MS, out, &refresh), 9);
    assert_true(refresh);
    uint64_t gen = gh_mecache_gen(11); /* the refresh reads */
    assert_int_equal(gh_mecache_get(11, 1000 + GH_MECACHE_REFRESH_MS + 1, out, &refresh), 9);
    assert_false(refresh); /* one out at a time */
    uint64_t t = 1000 + GH_MECACHE_REFRESH_MS + 10;
    gh_mecache_put(11, gen, t, "{\"id\":11,\"x\":1}", 15);
    assert_int_equal(gh_mecache_get(11, 1000 + GH_MECACHE_TTL_MS + 1, out, &refresh), 15);
    assert_false(refresh);
    assert_int_equal(gh_mecache_get(11, t + GH_MECACHE_REFRESH_MS, out, &refresh), 15);
    assert_true(refresh);
    gen = gh_mecache_gen(11);
    gh_mecache_drop(11); /* a write while the refresh reads */
    gh_mecache_put(11, gen, t + GH_MECACHE_REFRESH_MS + 5, "{\"id\":11,\"x\":2}", 15);
    assert_int_equal(gh_mecache_get(11, t + GH_MECACHE_REFRESH_MS + 6, out, &refresh), 0);
    put_now(11, 20000, "{\"id\":11,\"x\":3}");
    assert_int_equal(gh_mecache_get(11, 20000 + GH_MECACHE_REFRESH_MS, out, &refresh), 15);
    assert_true(refresh);
    assert_memory_equal(out, "{\"id\":11,\"x\":3}", 15);
}

static void drop_forgets(void **state)
{
    char out[GH_MECACHE_MAX];
    put_now(8, 1000, "{\"id\":8}");
    gh_mecache_drop(8);
    assert_int_equal(gh_mecache_get(8, 1001, out, NULL), 0);
    put_now(8, 1002, "{\"id\":8,\"x\":1}");
    assert_int_equal(gh_mecache_get(8, 1003, out, NULL), 14);
}

/* a read that began before a login committed must not refill the cache
 * with the record as it was before that login */
static void read_older_than_a_drop_is_not_kept(void **state)
{
    char out[GH_MECACHE_MAX];
    uint64_t gen = gh_mecache_gen(9); /* the /api/me read starts */
    gh_mecache_drop(9);               /* a login commits meanwhile */
    gh_mecache_put(9, gen, 1000, "{\"old\":1}", 9);
    assert_int_equal(gh_mecache_get(9, 1001, out, NULL), 0);
    put_now(9, 1002, "{\"new\":1}");
    assert_int_equal(gh_mecache_get(9, 1003, out, NULL), 9);
    assert_memory_equal(out, "{\"new\":1}", 9);
}

static void collisions_never_mix_users(void **state)
{
    char out[GH_MECACHE_MAX], json[32];
    /* far more users than slots: each answer is its own user's or none */
    for (uint64_t id = 1; id <= 3 * GH_MECACHE_SLOTS; id++) {
        int n = snprintf(json, sizeof json, "{\"id\":%llu}", (unsigned long long)id);
        gh_mecache_put(id, gh_mecache_gen(id), 5000, json, (size_t)n);
    }
    unsigned hits = 0;
    for (uint64_t id = 1; id <= 3 * GH_MECACHE_SLOTS; id++) {
        size_t n = gh_mecache_get(id, 5001, out, NULL);
        if (!n)
            continue;
        hits++;
        int m = snprintf(json, sizeof json, "{\"id\":%llu}", (unsigned long long)id);
        assert_int_equal(n, (size_t)m);
        assert_memory_equal(out, json, n);
    }
    assert_true(hits > 0 && hits <= GH_MECACHE_SLOTS);
}

static void oversize_not_kept(void **state)
{
    char out[GH_MECACHE_MAX], big[GH_MECACHE_MAX + 1];
    memset(big, 'a', sizeof big);
    gh_mecache_put(10, gh_mecache_gen(10), 1000, big, sizeof big);
    assert_int_equal(gh_mecache_get(10, 1001, out, NULL), 0);
    gh_mecache_put(10, gh_mecache_gen(10), 1000, big, GH_MECACHE_MAX);
    assert_int_equal(gh_mecache_get(10, 1001, out, NULL), GH_MECACHE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hit_then_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(refresh_in_last_quarter, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(read_older_than_a_drop_is_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(collisions_never_mix_users, setup, teardown),
        cmocka_unit_test_setup_teardown(oversize_not_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
