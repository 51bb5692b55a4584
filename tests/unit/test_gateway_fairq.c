/* Unit tests of the gateway's fair queue (gateway/fairq.h): users share
 * turns by virtual finish (one with calls in flight comes after those with
 * none), each user weighted by its tier, the bounds, the wait estimate and
 * the counters. */
#include "test_util.h"

#include "gateway/fairq.h"

#include <string.h>

#define M 0 /* the model of every test */

static struct gh_fairq *queue(unsigned max, unsigned per_user)
{
    struct gh_fairq_config cfg = {
        .queue_max = max, .per_user = per_user, .weights = {16, 8, 1}, .users = 64};
    struct gh_fairq *q = gh_fairq_new(&cfg);
    assert_non_null(q);
    return q;
}

/* Grants the next waiter of M: its user id (0 when none waits); the entry
 * of the grant in *fu. */
static uint64_t grant(struct gh_fairq *q, struct gh_fairq_waiter *w, size_t n,
                      struct gh_fairq_user **fu)
{
    struct gh_fairq_waiter *next = gh_fairq_next_locked(q, M);
    if (!next)
        return 0;
    assert_true(next >= w && next < w + n);
    *fu = gh_fairq_grant_locked(q, next);
    return (uint64_t)(next - w) / 100 + 1; /* waiters are laid out 100 per user */
}

static void heavy_user_after_the_others(void **state)
{
    struct gh_fairq *q = queue(1000, 100);
    static struct gh_fairq_waiter w[600];
    struct gh_fairq_user *fu[4];
    /* user 1 takes the 4 slots at once, then queues 16 more */
    for (int i = 0; i < 4; i++)
        fu[i] = gh_fairq_start_locked(q, 1, M, GH_TIER_ESTABLISHED);
    for (int i = 0; i < 16; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_ESTABLISHED, 10), 0);
    /* then users 2..6, one call each */
    for (uint64_t u = 2; u <= 6; u++)
        assert_int_equal(gh_fairq_push_locked(q, &w[(u - 1) * 100], u, M, GH_TIER_ESTABLISHED, 20),
                         0);
    assert_int_equal(gh_fairq_waiting_locked(q, M), 21);
    /* slots free one by one: the five others first, in arrival order */
    struct gh_fairq_user *g;
    for (uint64_t u = 2; u <= 6; u++) {
        gh_fairq_done_locked(q, fu[u % 4], M, 100);
        fu[u % 4] = NULL;
        assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), u);
        gh_fairq_done_locked(q, g, M, 100);
    }
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 1);
    gh_fairq_done_locked(q, g, M, 100);
    for (int i = 0; i < 4; i++)
        gh_fairq_done_locked(q, fu[i], M, 100);
    while (gh_fairq_next_locked(q, M)) {
        assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 1);
        gh_fairq_done_locked(q, g, M, 100);
    }
    assert_int_equal(gh_fairq_waiting_locked(q, M), 0);
    gh_fairq_free(q);
}

static void users_take_turns(void **state)
{
    struct gh_fairq *q = queue(1000, 100);
    static struct gh_fairq_waiter w[300];
    /* user 1 queues 10 before user 2 queues 10: they alternate */
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 1), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[100 + i], 2, M, GH_TIER_NEW, 2), 0);
    struct gh_fairq_user *g;
    uint64_t prev = 0;
    for (int i = 0; i < 20; i++) {
        uint64_t u = grant(q, w, GH_ARRAY_LEN(w), &g);
        assert_true(u == 1 || u == 2);
        assert_int_not_equal(u, prev);
        prev = u;
        gh_fairq_done_locked(q, g, M, 50);
    }
    gh_fairq_free(q);
}

/* Slot time is what is shared: user 1's answers hold a slot 300 ms, user
 * 2's 100 ms; both always waiting, one slot: user 2 has about three calls
 * served for each of user 1's, and the two get about equal slot time
 * (a step per call, before: one call each in turn, user 1 three quarters
 * of the time). One stuck call is charged MAX_COST calls at most. */
static void charged_by_slot_time(void **state)
{
    struct gh_fairq *q = queue(1000, 200);
    static struct gh_fairq_waiter w[200];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 1), 0);
        assert_int_equal(gh_fairq_push_locked(q, &w[100 + i], 2, M, GH_TIER_NEW, 1), 0);
    }
    struct gh_fairq_user *g;
    unsigned n[3] = {0}, ms[3] = {0};
    for (int i = 0; i < 120; i++) {
        uint64_t u = grant(q, w, GH_ARRAY_LEN(w), &g);
        assert_true(u == 1 || u == 2);
        unsigned hold = u == 1 ? 300 : 100;
        n[u]++;
        ms[u] += hold;
        gh_fairq_done_locked(q, g, M, hold);
    }
    assert_true(n[2] >= 2.5 * n[1] && n[2] <= 3.5 * n[1]);
    assert_true(ms[1] >= 0.8 * ms[2] && ms[1] <= 1.25 * ms[2]);
    gh_fairq_free(q);

    memset(w, 0, sizeof w); /* the first queue's waiters went with it */
    /* a call held 100 x the mean costs its user MAX_COST turns, not 100
     * (24 others' turns: it raised the mean they are measured against,
     * counted as MAX_COST means, so theirs cost less for a while) */
    q = queue(1000, 200);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 1), 0);
        assert_int_equal(gh_fairq_push_locked(q, &w[100 + i], 2, M, GH_TIER_NEW, 1), 0);
    }
    for (int i = 0; i < 4; i++) { /* the mean: 100 ms */
        grant(q, w, GH_ARRAY_LEN(w), &g);
        gh_fairq_done_locked(q, g, M, 100);
    }
    uint64_t stuck = grant(q, w, GH_ARRAY_LEN(w), &g);
    gh_fairq_done_locked(q, g, M, 10000);
    unsigned other = 0;
    for (;;) {
        uint64_t u = grant(q, w, GH_ARRAY_LEN(w), &g);
        gh_fairq_done_locked(q, g, M, 100);
        if (u == stuck)
            break;
        other++;
    }
    assert_true(other >= 16 && other <= 30);
    gh_fairq_free(q);
}

static void tiers_by_weight(void **state)
{
    struct gh_fairq *q = queue(1000, 100);
    static struct gh_fairq_waiter w[300];
    /* a new account arrives first, then an established one: the
     * established goes first (ties go to the better tier) */
    assert_int_equal(gh_fairq_push_locked(q, &w[0], 1, M, GH_TIER_NEW, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[100], 2, M, GH_TIER_ESTABLISHED, 2), 0);
    struct gh_fairq_user *g;
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 2);
    gh_fairq_done_locked(q, g, M, 10);
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 1);
    gh_fairq_done_locked(q, g, M, 10);
    /* both tiers busy: established 8 dispatches for new's 1 (weights 8:1) */
    for (int i = 0; i < 90; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[100 + i], 2, M, GH_TIER_ESTABLISHED, 3), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 4), 0);
    unsigned est = 0, nw = 0;
    for (int i = 0; i < 45; i++) {
        uint64_t u = grant(q, w, GH_ARRAY_LEN(w), &g);
        gh_fairq_done_locked(q, g, M, 10);
        est += u == 2;
        nw += u == 1;
    }
    assert_true(nw >= 4 && nw <= 6);
    assert_int_equal(est + nw, 45);
    struct gh_fairq_tier_stats st;
    gh_fairq_stats(q, GH_TIER_NEW, &st);
    assert_int_equal(st.waiting, 10 - nw);
    assert_int_equal(st.oldest_since_ms, 4);
    assert_int_equal(st.dispatched, 1 + nw);
    gh_fairq_free(q);
}

static void bounds_and_removal(void **state)
{
    struct gh_fairq *q = queue(5, 3);
    static struct gh_fairq_waiter w[300];
    for (int i = 0; i < 3; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 1), 0);
    /* the user's bound, then the whole queue's */
    assert_int_equal(gh_fairq_push_locked(q, &w[3], 1, M, GH_TIER_NEW, 1), GH_ETOOBIG);
    assert_int_equal(gh_fairq_push_locked(q, &w[100], 2, M, GH_TIER_NEW, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[101], 2, M, GH_TIER_NEW, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[200], 3, M, GH_TIER_NEW, 1), GH_EBUSY);
    /* a waiter that leaves frees its place */
    gh_fairq_remove_locked(q, &w[1], true);
    assert_false(w[1].queued);
    assert_int_equal(gh_fairq_push_locked(q, &w[200], 3, M, GH_TIER_NEW, 1), 0);
    gh_fairq_remove_locked(q, &w[1], true); /* twice: nothing */
    struct gh_fairq_tier_stats st;
    gh_fairq_stats(q, GH_TIER_NEW, &st);
    assert_int_equal(st.waiting, 5);
    assert_int_equal(st.timed_out, 1);
    /* everything out: the entries go back to the pool */
    gh_fairq_remove_locked(q, &w[0], false);
    gh_fairq_remove_locked(q, &w[2], false);
    gh_fairq_remove_locked(q, &w[100], false);
    gh_fairq_remove_locked(q, &w[101], false);
    gh_fairq_remove_locked(q, &w[200], false);
    assert_null(gh_fairq_next_locked(q, M));
    gh_fairq_free(q);
}

static void pool_exhaustion(void **state)
{
    struct gh_fairq_config cfg = {.queue_max = 100, .per_user = 10, .users = 2};
    struct gh_fairq *q = gh_fairq_new(&cfg);
    assert_non_null(q);
    struct gh_fairq_user *a = gh_fairq_start_locked(q, 1, M, GH_TIER_NEW);
    struct gh_fairq_user *b = gh_fairq_start_locked(q, 2, M, GH_TIER_NEW);
    assert_non_null(a);
    assert_non_null(b);
    /* no entry left: a call in flight goes uncounted, a waiter is refused */
    assert_null(gh_fairq_start_locked(q, 3, M, GH_TIER_NEW));
    struct gh_fairq_waiter w = {0};
    assert_int_equal(gh_fairq_push_locked(q, &w, 3, M, GH_TIER_NEW, 1), GH_ETOOBIG);
    gh_fairq_done_locked(q, a, M, 10);
    gh_fairq_done_locked(q, NULL, M, 10);
    assert_int_equal(gh_fairq_push_locked(q, &w, 3, M, GH_TIER_NEW, 1), 0);
    gh_fairq_remove_locked(q, &w, false);
    gh_fairq_done_locked(q, b, M, 10);
    gh_fairq_free(q);
}

static void estimate(void **state)
{
    struct gh_fairq *q = queue(1000, 100);
    static struct gh_fairq_waiter w[300];
    /* no finished call yet: no estimate */
    assert_int_equal(gh_fairq_estimate_locked(q, M, 10, 4), 0);
    struct gh_fairq_user *u = gh_fairq_start_locked(q, 1, M, GH_TIER_NEW);
    gh_fairq_done_locked(q, u, M, 1000);
    /* 3 ahead, 4 slots, 1 s each: a slot frees every 250 ms, the 4th is ours */
    assert_int_equal(gh_fairq_estimate_locked(q, M, 3, 4), 1000);
    /* ahead: the heavy user's 10 count once per turn for a newcomer */
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[i], 1, M, GH_TIER_NEW, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[100], 2, M, GH_TIER_PRIORITY, 1), 0);
    assert_int_equal(gh_fairq_ahead_locked(q, 3, M, GH_TIER_NEW), 1 + 1);
    assert_int_equal(gh_fairq_ahead_locked(q, 1, M, GH_TIER_NEW), 1 + 10);
    assert_int_equal(gh_fairq_ahead_locked(q, 3, M, GH_TIER_PRIORITY), 1);
    gh_fairq_refused_locked(q, GH_TIER_NEW, true);
    gh_fairq_refused_locked(q, GH_TIER_NEW, false);
    struct gh_fairq_tier_stats st;
    gh_fairq_stats(q, GH_TIER_NEW, &st);
    assert_int_equal(st.refused_full, 1);
    assert_int_equal(st.refused_wait, 1);
    assert_int_equal(st.served, 1);
    for (int i = 0; i < 10; i++)
        gh_fairq_remove_locked(q, &w[i], false);
    gh_fairq_remove_locked(q, &w[100], false);
    gh_fairq_free(q);
}

/* The place in line of each queued waiter is the order the queue grants
 * them in within a tier; a better tier's waiters all count ahead. */
static void position(void **state)
{
    struct gh_fairq *q = queue(1000, 100);
    static struct gh_fairq_waiter w[400];
    assert_int_equal(gh_fairq_position_locked(q, &w[0]), 0); /* not queued */
    /* user 1 queues two, then user 2 one, then user 3 (a new account) one */
    assert_int_equal(gh_fairq_push_locked(q, &w[0], 1, M, GH_TIER_ESTABLISHED, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[1], 1, M, GH_TIER_ESTABLISHED, 1), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[100], 2, M, GH_TIER_ESTABLISHED, 2), 0);
    assert_int_equal(gh_fairq_push_locked(q, &w[200], 3, M, GH_TIER_NEW, 3), 0);
    /* turns: user 1, user 2 (same tag, later head), user 1 again */
    assert_int_equal(gh_fairq_position_locked(q, &w[0]), 1);
    assert_int_equal(gh_fairq_position_locked(q, &w[100]), 2);
    assert_int_equal(gh_fairq_position_locked(q, &w[1]), 3);
    assert_int_equal(gh_fairq_position_locked(q, &w[200]), 4);
    /* the queue grants them in that order; positions move up */
    struct gh_fairq_user *g;
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 1);
    gh_fairq_done_locked(q, g, M, 100);
    assert_false(w[0].queued);
    assert_int_equal(gh_fairq_position_locked(q, &w[0]), 0);
    assert_int_equal(gh_fairq_position_locked(q, &w[100]), 1);
    assert_int_equal(gh_fairq_position_locked(q, &w[1]), 2);
    assert_int_equal(gh_fairq_position_locked(q, &w[200]), 3);
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 2);
    gh_fairq_done_locked(q, g, M, 100);
    assert_int_equal(gh_fairq_position_locked(q, &w[1]), 1);
    assert_int_equal(gh_fairq_position_locked(q, &w[200]), 2);
    /* an established user arriving now goes before the new account (its
     * call finishes 1/8 past the last start, the new one's 1 past), and
     * before user 1's second call (user 1 has had a turn already) */
    assert_int_equal(gh_fairq_push_locked(q, &w[300], 4, M, GH_TIER_ESTABLISHED, 4), 0);
    assert_int_equal(gh_fairq_position_locked(q, &w[300]), 1);
    assert_int_equal(gh_fairq_position_locked(q, &w[1]), 2);
    assert_int_equal(gh_fairq_position_locked(q, &w[200]), 3);
    assert_int_equal(gh_fairq_ahead_locked(q, 5, M, GH_TIER_NEW), 3);
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 4);
    gh_fairq_done_locked(q, g, M, 100);
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 1);
    gh_fairq_done_locked(q, g, M, 100);
    assert_int_equal(grant(q, w, GH_ARRAY_LEN(w), &g), 3);
    gh_fairq_done_locked(q, g, M, 100);
    gh_fairq_free(q);
}

/* The weights apply per user: nine established users and one new
 * account, all waiting, share in 8 × 9 : 1, so the new account absorbs
 * the wait (weights per tier would have given it one call in nine). Every
 * grant is where gh_fairq_position_locked said it would be. */
static void new_accounts_absorb_the_wait(void **state)
{
    struct gh_fairq *q = queue(2000, 100);
    static struct gh_fairq_waiter w[1000];
    for (uint64_t u = 1; u <= 9; u++)
        for (int i = 0; i < 20; i++)
            assert_int_equal(gh_fairq_push_locked(q, &w[(u - 1) * 100 + i], u, M,
                                                  GH_TIER_ESTABLISHED, 1),
                             0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(gh_fairq_push_locked(q, &w[900 + i], 10, M, GH_TIER_NEW, 1), 0);
    /* the new account's first call: after 8 of each established user's */
    assert_int_equal(gh_fairq_position_locked(q, &w[900]), 9 * 8 + 1);
    assert_int_equal(gh_fairq_ahead_locked(q, 11, M, GH_TIER_NEW), 9 * 8 + 1);
    unsigned per_user[11] = {0};
    struct gh_fairq_user *g;
    for (int i = 0; i < 146; i++) {
        struct gh_fairq_waiter *next = gh_fairq_next_locked(q, M);
        assert_non_null(next);
        assert_int_equal(gh_fairq_position_locked(q, next), 1);
        uint64_t u = grant(q, w, GH_ARRAY_LEN(w), &g);
        gh_fairq_done_locked(q, g, M, 10);
        per_user[u]++;
    }
    /* 146 = 2 × 73: each established user 16, the new account 2 */
    for (unsigned u = 1; u <= 9; u++)
        assert_int_equal(per_user[u], 16);
    assert_int_equal(per_user[10], 2);
    for (int i = 0; i < 1000; i++)
        gh_fairq_remove_locked(q, &w[i], false);
    gh_fairq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heavy_user_after_the_others),
        cmocka_unit_test(users_take_turns),
        cmocka_unit_test(charged_by_slot_time),
        cmocka_unit_test(tiers_by_weight),
        cmocka_unit_test(bounds_and_removal),
        cmocka_unit_test(pool_exhaustion),
        cmocka_unit_test(estimate),
        cmocka_unit_test(position),
        cmocka_unit_test(new_accounts_absorb_the_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
