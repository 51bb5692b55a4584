/* Unit tests of the capped arena (core/arena.h): alignment, the cap,
 * strndup, dispose and reuse. */
#include "test_util.h"

#include "core/arena.h"

#include <stdint.h>

static void alignment(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 1 << 20);
    static const size_t sizes[] = {1, 3, 7, 15, 16, 17, 31, 100, 1000, 1023, 1025, 5000, 1};
    for (size_t i = 0; i < GH_ARRAY_LEN(sizes); i++) {
        unsigned char *p = gh_arena_alloc(&a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, sizes[i]); /* ASan: the whole block is ours */
    }
    gh_arena_dispose(&a);
}

static void no_overlap(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 1 << 20);
    unsigned char *ptrs[200];
    size_t lens[200];
    for (int i = 0; i < 200; i++) {
        lens[i] = (size_t)(i * 37 % 300) + 1;
        ptrs[i] = gh_arena_alloc(&a, lens[i]);
        assert_non_null(ptrs[i]);
        memset(ptrs[i], i, lens[i]);
    }
    for (int i = 0; i < 200; i++)
        for (size_t k = 0; k < lens[i]; k++)
            assert_int_equal(ptrs[i][k], (unsigned char)i);
    gh_arena_dispose(&a);
}

static void cap_refusal(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 4096);
    assert_null(gh_arena_alloc(&a, 4097)); /* larger than the cap at once */
    assert_null(gh_arena_alloc(&a, SIZE_MAX));
    assert_null(gh_arena_alloc(&a, SIZE_MAX - 8));
    size_t got = 0;
    for (int i = 0; i < 1000; i++) {
        void *p = gh_arena_alloc(&a, 100);
        if (!p)
            break;
        got += 100;
        assert_true(a.used_total <= a.cap);
    }
    /* 100 rounds to 112: at most 4096/112 allocations fit, and the arena
     * does not give up long before the cap */
    assert_true(got <= 4096);
    assert_true(got >= 2000);
    assert_null(gh_arena_alloc(&a, 100));
    assert_true(a.used_total <= a.cap);
    gh_arena_dispose(&a);

    /* a cap below the first chunk size still serves what fits */
    gh_arena_init(&a, 100);
    void *p = gh_arena_alloc(&a, 50); /* 64 */
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_null(gh_arena_alloc(&a, 40)); /* 64 + 48 > 100 */
    assert_non_null(gh_arena_alloc(&a, 30)); /* 64 + 32 <= 100 */
    assert_true(a.used_total <= 100);
    gh_arena_dispose(&a);
}

static void strndup_copies(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 1 << 16);
    char *s = gh_arena_strndup(&a, "hello world", 5);
    assert_non_null(s);
    assert_string_equal(s, "hello");
    char *e = gh_arena_strndup(&a, "", 0);
    assert_non_null(e);
    assert_string_equal(e, "");
    /* bytes past a NUL within n are copied too (the length is the contract) */
    char *z = gh_arena_strndup(&a, "a\0b", 3);
    assert_non_null(z);
    assert_memory_equal(z, "a\0b\0", 4);
    /* copies, not aliases */
    char src[] = "mutable";
    char *c = gh_arena_strndup(&a, src, sizeof src - 1);
    src[0] = 'X';
    assert_string_equal(c, "mutable");
    assert_string_equal(s, "hello");
    gh_arena_dispose(&a);

    gh_arena_init(&a, 16);
    assert_non_null(gh_arena_strndup(&a, "0123456789abcde", 15)); /* 16 with NUL */
    assert_null(gh_arena_strndup(&a, "x", 1));
    gh_arena_dispose(&a);
    gh_arena_init(&a, 16);
    assert_null(gh_arena_strndup(&a, "0123456789abcdef", 16)); /* 17 > cap */
    gh_arena_dispose(&a);
}

static void dispose_and_reuse(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 8192);
    for (int round = 0; round < 5; round++) {
        int n = 0;
        while (gh_arena_alloc(&a, 500))
            n++;
        assert_true(n >= 8 && n <= 16);
        gh_arena_dispose(&a);
        assert_null(a.head);
        assert_int_equal(a.used_total, 0);
        assert_int_equal(a.cap, 8192); /* the cap survives dispose */
    }
    /* dispose twice and dispose of a never-used arena are harmless */
    gh_arena_dispose(&a);
    struct gh_arena b;
    gh_arena_init(&b, 10);
    gh_arena_dispose(&b);
}

static void large_after_small(void **state)
{
    /* a large allocation after small ones gets its own chunk and the
     * earlier data stays intact */
    struct gh_arena a;
    gh_arena_init(&a, 1 << 20);
    char *s = gh_arena_strndup(&a, "keep me", 7);
    unsigned char *big = gh_arena_alloc(&a, 100000);
    assert_non_null(big);
    memset(big, 0x5a, 100000);
    char *t = gh_arena_strndup(&a, "after", 5);
    assert_string_equal(s, "keep me");
    assert_string_equal(t, "after");
    assert_int_equal(big[99999], 0x5a);
    gh_arena_dispose(&a);
}

static void reset_keeps_or_frees(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 1 << 20);
    char *first = gh_arena_strndup(&a, "first", 5);
    for (int i = 0; i < 20; i++)
        assert_non_null(gh_arena_alloc(&a, 300)); /* several chunks */
    size_t total = a.used_total;
    struct gh_arena_chunk *head = a.head;
    assert_true(total > 1024);

    /* within keep: the chunks stay and are reused, nothing new is taken */
    gh_arena_reset(&a, total);
    assert_int_equal(a.used_total, total);
    assert_ptr_equal(a.head, head);
    for (int i = 0; i < 21; i++) {
        unsigned char *p = gh_arena_alloc(&a, 300);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0x11, 300);
    }
    assert_int_equal(a.used_total, total); /* all served from kept chunks */
    /* the first allocation's room is handed out again (the old data is gone) */
    gh_arena_reset(&a, total);
    bool reused = false;
    for (size_t i = 0; i < total / 16; i++) {
        char *p = gh_arena_alloc(&a, 5);
        assert_non_null(p);
        reused = reused || p == first;
    }
    assert_true(reused);
    assert_int_equal(a.used_total, total); /* exactly filled, nothing added */

    /* over keep: everything is freed */
    gh_arena_reset(&a, total - 1);
    assert_null(a.head);
    assert_int_equal(a.used_total, 0);
    assert_int_equal(a.cap, 1 << 20);
    assert_non_null(gh_arena_alloc(&a, 10)); /* and usable again */
    gh_arena_dispose(&a);
}

static void reset_respects_cap(void **state)
{
    struct gh_arena a;
    gh_arena_init(&a, 4096);
    int first_round = 0;
    while (gh_arena_alloc(&a, 100))
        first_round++;
    size_t total = a.used_total;
    assert_true(total <= 4096);
    for (int round = 0; round < 3; round++) {
        gh_arena_reset(&a, 4096);
        int n = 0;
        while (gh_arena_alloc(&a, 100))
            n++;
        assert_int_equal(n, first_round); /* same room every time, no growth */
        assert_int_equal(a.used_total, total);
        assert_true(a.used_total <= a.cap);
    }
    gh_arena_dispose(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alignment),       cmocka_unit_test(no_overlap),
        cmocka_unit_test(cap_refusal),     cmocka_unit_test(strndup_copies),
        cmocka_unit_test(dispose_and_reuse), cmocka_unit_test(large_after_small),
        cmocka_unit_test(reset_keeps_or_frees), cmocka_unit_test(reset_respects_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
