/* Unit tests of admission (shield/admission.h) on simulated time: strict
 * priority, reserved shares for user and login, eviction of the least
 * important when full, deadlines, adaptive LIFO when a queue does not
 * drain, the queue-delay signal, and the shedding policy's order and
 * idle-timeout factor. */
#include "test_util.h"

#include "shield/admission.h"

struct drops {
    unsigned expired, evicted;
    uintptr_t last;
};

static void on_drop(void *data, bool evicted, void *ctx)
{
    struct drops *d = ctx;
    if (evicted)
        d->evicted++;
    else
        d->expired++;
    d->last = (uintptr_t)data;
}

#define ITEM(n) ((void *)(uintptr_t)(n))

static void priority_order(void **state)
{
    struct gh_admission a;
    struct gh_admission_config cfg = {.capacity = 16};
    assert_int_equal(gh_admission_init(&a, &cfg, NULL, NULL), 0);
    /* pushed least important first */
    assert_int_equal(gh_admission_push(&a, GH_CLASS_ANON, ITEM(5), 1000, 0), 0);
    assert_int_equal(gh_admission_push(&a, GH_CLASS_REGISTER, ITEM(4), 1000, 0), 0);
    assert_int_equal(gh_admission_push(&a, GH_CLASS_LOGIN, ITEM(3), 1000, 0), 0);
    assert_int_equal(gh_admission_push(&a, GH_CLASS_USER, ITEM(2), 1000, 0), 0);
    assert_int_equal(gh_admission_push(&a, GH_CLASS_USER, ITEM(22), 1000, 1), 0);
    assert_int_equal(gh_admission_push(&a, GH_CLASS_OPS, ITEM(1), 1000, 2), 0);
    uintptr_t order[] = {1, 2, 22, 3, 4, 5};
    for (size_t i = 0; i < GH_ARRAY_LEN(order); i++) {
        void *d;
        enum gh_class c;
        uint64_t waited;
        assert_true(gh_admission_pop(&a, 10, &d, &c, &waited));
        assert_int_equal((uintptr_t)d, order[i]);
    }
    void *d;
    assert_false(gh_admission_pop(&a, 10, &d, NULL, NULL));
    gh_admission_dispose(&a);
}

static void reserved_shares_and_eviction(void **state)
{
    struct gh_admission a;
    struct drops drops = {0};
    struct gh_admission_config cfg = {.capacity = 10};
    cfg.reserved[GH_CLASS_USER] = 3;
    cfg.reserved[GH_CLASS_LOGIN] = 2;
    assert_int_equal(gh_admission_init(&a, &cfg, on_drop, &drops), 0);
    /* a registration flood gets 10 - 3 - 2 = 5 slots */
    unsigned ok = 0;
    for (int i = 0; i < 20; i++)
        ok += gh_admission_push(&a, GH_CLASS_REGISTER, ITEM(100 + i), 1000, 0) == 0;
    assert_int_equal(ok, 5);
    /* anon, lower still: no room, and it cannot evict register */
    assert_int_equal(gh_admission_push(&a, GH_CLASS_ANON, ITEM(1), 1000, 0), GH_EBUSY);
    /* logins: their 2 reserved slots, then they evict registrations */
    for (int i = 0; i < 4; i++)
        assert_int_equal(gh_admission_push(&a, GH_CLASS_LOGIN, ITEM(200 + i), 1000, 0), 0);
    assert_int_equal(drops.evicted, 2);
    assert_int_equal(drops.last, 103); /* the newest registration left first */
    assert_int_equal(gh_admission_len(&a, GH_CLASS_REGISTER), 3);
    /* users still have their 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(gh_admission_push(&a, GH_CLASS_USER, ITEM(300 + i), 1000, 0), 0);
    assert_int_equal(drops.evicted, 2);
    /* the queue is full: another user evicts a registration */
    assert_int_equal(gh_admission_push(&a, GH_CLASS_USER, ITEM(303), 1000, 0), 0);
    assert_int_equal(drops.evicted, 3);
    struct gh_admission_counts counts[GH_NCLASSES];
    gh_admission_stats(&a, counts);
    assert_int_equal(counts[GH_CLASS_REGISTER].refused, 15);
    assert_int_equal(counts[GH_CLASS_REGISTER].evicted, 3);
    assert_int_equal(counts[GH_CLASS_ANON].refused, 1);
    void *d;
    while (gh_admission_pop(&a, 1, &d, NULL, NULL))
        ;
    gh_admission_dispose(&a);
}

static void deadlines_expire(void **state)
{
    struct gh_admission a;
    struct drops drops = {0};
    struct gh_admission_config cfg = {.capacity = 8};
    assert_int_equal(gh_admission_init(&a, &cfg, on_drop, &drops), 0);
    gh_admission_push(&a, GH_CLASS_LOGIN, ITEM(1), 100, 0);
    gh_admission_push(&a, GH_CLASS_LOGIN, ITEM(2), 500, 10);
    gh_admission_push(&a, GH_CLASS_ANON, ITEM(3), 150, 20);
    assert_int_equal(gh_admission_delay_ms(&a, 90), 90);
    void *d;
    uint64_t waited;
    assert_true(gh_admission_pop(&a, 200, &d, NULL, &waited)); /* 1 expired at 100 */
    assert_int_equal((uintptr_t)d, 2);
    assert_int_equal(waited, 190);
    assert_int_equal(drops.expired, 1);
    assert_false(gh_admission_pop(&a, 200, &d, NULL, NULL)); /* 3 expired at 150 */
    assert_int_equal(drops.expired, 2);
    assert_int_equal(gh_admission_delay_ms(&a, 300), 0);
    gh_admission_dispose(&a);
}

static void adaptive_lifo(void **state)
{
    struct gh_admission a;
    struct drops drops = {0};
    struct gh_admission_config cfg = {.capacity = 64, .codel_target_ms = 5,
                                      .codel_interval_ms = 100};
    assert_int_equal(gh_admission_init(&a, &cfg, on_drop, &drops), 0);
    /* a queue that keeps 10 waiting for 200 ms, fed one item per ms */
    uint64_t t = 0;
    for (int i = 0; i < 10; i++)
        gh_admission_push(&a, GH_CLASS_USER, ITEM(i), 10000, t);
    void *d;
    for (int i = 10; i < 200; i++) {
        t++;
        gh_admission_push(&a, GH_CLASS_USER, ITEM(i), 10000, t);
        if (i % 2)
            assert_true(gh_admission_pop(&a, t, &d, NULL, NULL));
    }
    /* past 100 ms without draining: newest first, and the old ones expired */
    uint64_t waited;
    gh_admission_push(&a, GH_CLASS_USER, ITEM(500), 10000, t);
    assert_true(gh_admission_pop(&a, t, &d, NULL, &waited));
    assert_int_equal((uintptr_t)d, 500);
    assert_int_equal(waited, 0);
    assert_true(drops.expired > 0);
    assert_true(gh_admission_delay_ms(&a, t) <= 5);
    /* once drained, FIFO again */
    while (gh_admission_pop(&a, t, &d, NULL, NULL))
        ;
    gh_admission_push(&a, GH_CLASS_USER, ITEM(1000), 10000, t + 1);
    gh_admission_push(&a, GH_CLASS_USER, ITEM(1001), 10000, t + 1);
    assert_true(gh_admission_pop(&a, t + 2, &d, NULL, NULL));
    assert_int_equal((uintptr_t)d, 1000);
    gh_admission_dispose(&a);
}

static void shedding_order(void **state)
{
    struct gh_shed_config c;
    gh_shed_config_default(&c);
    struct gh_shed_state s;
    struct gh_shed_input calm = {.queue_delay_ms = 10, .loop_lag_ms = 2, .conns = 100,
                                 .max_conns = 10000};
    gh_shed_evaluate(&c, &calm, &s);
    assert_int_equal(s.shed_levels, 0);
    assert_true(s.idle_factor == 1.0);
    for (int k = 0; k < GH_NCLASSES; k++)
        assert_false(gh_shed_refuses(&s, (enum gh_class)k));
    /* rising pressure sheds anon, then register, then login, user last */
    double delays[] = {100, 150, 250, 400};
    enum gh_class order[] = {GH_CLASS_ANON, GH_CLASS_REGISTER, GH_CLASS_LOGIN, GH_CLASS_USER};
    double last_factor = 1.0;
    for (int i = 0; i < 4; i++) {
        struct gh_shed_input in = {.queue_delay_ms = delays[i]};
        gh_shed_evaluate(&c, &in, &s);
        assert_int_equal(s.shed_levels, i + 1);
        for (int k = 0; k < 4; k++)
            assert_int_equal(gh_shed_refuses(&s, order[k]), k <= i);
        assert_false(gh_shed_refuses(&s, GH_CLASS_OPS));
        assert_true(s.idle_factor <= last_factor);
        last_factor = s.idle_factor;
    }
    assert_true(last_factor < 0.05);
    /* the other signals count too */
    struct gh_shed_input lag = {.loop_lag_ms = 60};
    gh_shed_evaluate(&c, &lag, &s);
    assert_int_equal(s.shed_levels, 1);
    struct gh_shed_input conns = {.conns = 9000, .max_conns = 10000};
    gh_shed_evaluate(&c, &conns, &s);
    assert_int_equal(s.shed_levels, 1);
    assert_true(s.idle_factor < 1.0 && s.idle_factor > 0.05);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(priority_order),   cmocka_unit_test(reserved_shares_and_eviction),
        cmocka_unit_test(deadlines_expire), cmocka_unit_test(adaptive_lifo),
        cmocka_unit_test(shedding_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
