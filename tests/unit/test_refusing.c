/* Unit tests of the memo of refusing limiter keys (shield/refusing.h). */
#include "test_util.h"

#include "shield/refusing.h"

#include <stdlib.h>

#define MS 1000000ull

static void refuses_until_deadline(void **state)
{
    (void)state;
    struct gh_refusing *m = calloc(1, sizeof *m);
    uint64_t key = 0x123456789abcdef3ull, now = 1000 * MS;
    assert_int_equal(gh_refusing_left(m, key, now), 0);
    gh_refusing_note(m, key, now + 1500 * MS + 700000);
    assert_int_equal(gh_refusing_left(m, key, now), 1500 * MS); /* rounded down */
    assert_int_equal(gh_refusing_left(m, key, now + 1499 * MS), 1 * MS);
    assert_int_equal(gh_refusing_left(m, key, now + 1500 * MS), 0);
    assert_int_equal(gh_refusing_left(m, key, now + 1500 * MS + 800000), 0);
    free(m);
}

static void other_keys_not_refused(void **state)
{
    (void)state;
    struct gh_refusing *m = calloc(1, sizeof *m);
    uint64_t key = 0x123456789abcdef3ull, now = 5 * MS;
    gh_refusing_note(m, key, now + 100 * MS);
    /* same slot, another tag; another slot; another rank only */
    uint64_t same_slot = key ^ (1ull << 20), other_slot = key ^ (1ull << 3);
    assert_int_equal(gh_refusing_left(m, same_slot, now), 0);
    assert_int_equal(gh_refusing_left(m, other_slot, now), 0);
    /* a slot taken by another key forgets the first: never a wrong refusal */
    gh_refusing_note(m, same_slot, now + 50 * MS);
    assert_int_equal(gh_refusing_left(m, key, now), 0);
    assert_int_equal(gh_refusing_left(m, same_slot, now), 50 * MS);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_until_deadline),
        cmocka_unit_test(other_keys_not_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
