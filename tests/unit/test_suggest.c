/* Unit tests of typo suggestions (core/suggest.h): the edit distance, the
 * closeness threshold that keeps unrelated names from being offered, and
 * the bounds on long input. */
#include "test_util.h"

#include "core/suggest.h"

#include <limits.h>

static void distance(void **state)
{
    (void)state;
    assert_int_equal(gh_suggest_distance("idle_timeout", "idle_timeout"), 0);
    assert_int_equal(gh_suggest_distance("idle_timout", "idle_timeout"), 1);   /* deletion */
    assert_int_equal(gh_suggest_distance("idle_timeoutt", "idle_timeout"), 1); /* insertion */
    assert_int_equal(gh_suggest_distance("idle_tineout", "idle_timeout"), 1);  /* substitution */
    assert_int_equal(gh_suggest_distance("idle_tiemout", "idle_timeout"), 1);  /* swap */
    assert_int_equal(gh_suggest_distance("IDLE_TIMEOUT", "idle_timeout"), 0);  /* case */
    assert_int_equal(gh_suggest_distance("", "abc"), 3);
    assert_int_equal(gh_suggest_distance("abc", ""), 3);
    assert_int_equal(gh_suggest_distance("kitten", "sitting"), 3);
    char longer[GH_SUGGEST_MAX + 2];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(gh_suggest_distance(longer, "a"), UINT_MAX);
    assert_int_equal(gh_suggest_distance("a", longer), UINT_MAX);
    longer[GH_SUGGEST_MAX] = '\0'; /* exactly the cap: still compared */
    assert_int_equal(gh_suggest_distance(longer, longer), 0);
}

static const char *nearest(const char *word, const char *const *names, size_t n)
{
    struct gh_suggest s;
    gh_suggest_init(&s, word);
    for (size_t i = 0; i < n; i++)
        gh_suggest_add(&s, names[i]);
    return gh_suggest_result(&s);
}

static void nearest_name(void **state)
{
    (void)state;
    static const char *const keys[] = {"header_timeout", "idle_timeout", "header_max", "body_max"};
    const size_t n = sizeof keys / sizeof *keys;
    assert_string_equal(nearest("idle_timout", keys, n), "idle_timeout");
    assert_string_equal(nearest("hedaer_max", keys, n), "header_max");
    assert_string_equal(nearest("body-max", keys, n), "body_max");
    /* too far from everything: no guess */
    assert_null(nearest("colour", keys, n));
    assert_null(nearest("timeout", keys, n));
    /* the word itself is no suggestion */
    assert_null(nearest("body_max", keys, n));
    /* short words allow one edit only */
    static const char *const cmds[] = {"top", "lists", "block", "policy show", "policy set"};
    const size_t m = sizeof cmds / sizeof *cmds;
    assert_string_equal(nearest("tpo", cmds, m), "top");
    assert_null(nearest("xy", cmds, m));
    assert_null(nearest("tap2", cmds, m));
    assert_string_equal(nearest("polcy show", cmds, m), "policy show");
    assert_string_equal(nearest("blocks", cmds, m), "block");
    /* no candidates */
    assert_null(nearest("anything", cmds, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distance),
        cmocka_unit_test(nearest_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
