/* Unit tests of the attack-level machine (shield/level.h) on a simulated
 * clock: it rises on a signal (straight to under_attack when that
 * threshold is crossed), stays during the hysteresis, falls one level per
 * calm stretch, ignores ratios on too few events; pin, unpin, pin expiry;
 * listeners see every change once. */
#include "test_util.h"

#include "shield/level.h"

struct seen {
    unsigned n;
    enum gh_level from[16], to[16];
    char reason[16][32];
};

static void listener(enum gh_level from, enum gh_level to, const char *reason, void *data)
{
    struct seen *s = data;
    assert_true(s->n < 16);
    s->from[s->n] = from;
    s->to[s->n] = to;
    snprintf(s->reason[s->n], sizeof s->reason[0], "%s", reason);
    s->n++;
}

static void setup_machine(struct gh_level_machine *m, struct seen *seen)
{
    struct gh_level_config c = {0};
    c.threshold[0][0] = 5;   /* register_rate: elevated at 5/s */
    c.threshold[0][1] = 50;  /* under_attack at 50/s */
    c.threshold[2][0] = 0.5; /* verify_fail_ratio */
    c.threshold[7][1] = 500; /* loop lag 500 ms: under_attack only */
    c.calm_periods = 3;
    c.ratio_min_rate = 1;
    gh_level_init(m, &c, 0);
    memset(seen, 0, sizeof *seen);
    assert_int_equal(gh_level_subscribe(m, listener, seen), 0);
}

static const struct gh_level_signals calm = {.register_rate = 0.5};

static void rises_stays_falls(void **state)
{
    struct gh_level_machine m;
    struct seen seen;
    setup_machine(&m, &seen);
    uint64_t t = 0;
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_NORMAL);
    struct gh_level_signals busy = {.register_rate = 8};
    assert_int_equal(gh_level_feed(&m, &busy, t += 5000), GH_LEVEL_ELEVATED); /* at once */
    assert_int_equal(gh_level_get(&m), GH_LEVEL_ELEVATED);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.reason[0], "signals");
    /* two calm periods: still elevated; a busy one resets the count */
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(gh_level_feed(&m, &busy, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(seen.n, 1);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_NORMAL); /* 3rd calm */
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.to[1], GH_LEVEL_NORMAL);
    /* a flood jumps straight to under_attack, then steps down one at a time */
    struct gh_level_signals flood = {.register_rate = 80};
    assert_int_equal(gh_level_feed(&m, &flood, t += 5000), GH_LEVEL_UNDER_ATTACK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_UNDER_ATTACK);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    /* elevated-level signals during the descent hold it at elevated */
    assert_int_equal(gh_level_feed(&m, &busy, t += 5000), GH_LEVEL_ELEVATED);
    for (int i = 0; i < 2; i++)
        assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_ELEVATED);
    assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_NORMAL);
    assert_int_equal(seen.n, 5);
    assert_int_equal(seen.from[2], GH_LEVEL_NORMAL);
    assert_int_equal(seen.to[2], GH_LEVEL_UNDER_ATTACK);
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    assert_int_equal(gh_level_json(&m, t, &b), 0);
    tu_assert_prefix(b.data, "{\"level\":\"normal\",\"computed\":\"normal\",\"pinned\":false,");
    gh_buf_dispose(&b);
    gh_level_dispose(&m);
}

/* Credential stuffing alone (no registration or SMS traffic): the login
 * failure ratio counts on login events, and the failing volume is a signal
 * of its own. */
static void stuffing_signals(void **state)
{
    struct gh_level_machine m;
    struct gh_level_config c = {0};
    c.threshold[3][0] = 0.6;  /* login_fail_ratio */
    c.threshold[3][1] = 0.9;
    c.threshold[8][0] = 20;   /* login_fail_rate */
    c.threshold[8][1] = 100;
    c.calm_periods = 3;
    c.ratio_min_rate = 1;
    gh_level_init(&m, &c, 0);
    /* two failures in a quiet period: nothing */
    struct gh_level_signals few = {.login_rate = 0.4, .login_fail_ratio = 1, .login_fail_rate = 0.4};
    assert_int_equal(gh_level_feed(&m, &few, 1000), GH_LEVEL_NORMAL);
    /* a steady 70 % failing: elevated by the ratio */
    struct gh_level_signals some = {.login_rate = 10, .login_fail_ratio = 0.7, .login_fail_rate = 7};
    assert_int_equal(gh_level_feed(&m, &some, 2000), GH_LEVEL_ELEVATED);
    /* a flood: under attack by the volume even when users dilute the ratio */
    struct gh_level_signals flood = {.login_rate = 400, .login_fail_ratio = 0.8,
                                     .login_fail_rate = 320};
    assert_int_equal(gh_level_feed(&m, &flood, 3000), GH_LEVEL_UNDER_ATTACK);
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    assert_int_equal(gh_level_json(&m, 3000, &b), 0);
    tu_assert_contains(b.data, "login_fail_rate");
    gh_buf_dispose(&b);
    gh_level_dispose(&m);
}

static void other_signals(void **state)
{
    struct gh_level_machine m;
    struct seen seen;
    setup_machine(&m, &seen);
    /* a failure ratio on a trickle of attempts means nothing */
    struct gh_level_signals few = {.verify_rate = 0.2, .verify_fail_ratio = 0.9};
    assert_int_equal(gh_level_feed(&m, &few, 1000), GH_LEVEL_NORMAL);
    /* the gate is the ratio's own events: many registrations do not make
     * a few code checks meaningful */
    struct gh_level_signals other = {.register_rate = 2, .verify_rate = 0.2,
                                     .verify_fail_ratio = 0.9};
    assert_int_equal(gh_level_feed(&m, &other, 1500), GH_LEVEL_NORMAL);
    struct gh_level_signals many = {.verify_rate = 2, .verify_fail_ratio = 0.9};
    assert_int_equal(gh_level_feed(&m, &many, 2000), GH_LEVEL_ELEVATED);
    /* a signal with only an under_attack threshold */
    struct gh_level_signals lag = {.loop_lag_ms = 800};
    assert_int_equal(gh_level_feed(&m, &lag, 3000), GH_LEVEL_UNDER_ATTACK);
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    gh_level_json(&m, 3000, &b);
    tu_assert_contains(b.data, "loop_lag_ms 800.00 >= 500.00");
    gh_buf_dispose(&b);
    /* unknown thresholds (0) never fire */
    struct gh_level_signals sms = {.sms_rate = 1e9};
    gh_level_dispose(&m);
    setup_machine(&m, &seen);
    assert_int_equal(gh_level_feed(&m, &sms, 1000), GH_LEVEL_NORMAL);
    gh_level_dispose(&m);
}

static void pin_unpin_expiry(void **state)
{
    struct gh_level_machine m;
    struct seen seen;
    setup_machine(&m, &seen);
    uint64_t t = 1000;
    /* pinned until unpinned: signals move the computed level only */
    gh_level_pin(&m, GH_LEVEL_UNDER_ATTACK, 0, t);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_UNDER_ATTACK);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.reason[0], "pin");
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_level_feed(&m, &calm, t += 5000), GH_LEVEL_UNDER_ATTACK);
    struct gh_level_signals busy = {.register_rate = 8};
    gh_level_feed(&m, &busy, t += 5000);
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    gh_level_json(&m, t, &b);
    tu_assert_prefix(b.data, "{\"level\":\"under_attack\",\"computed\":\"elevated\",\"pinned\":true,"
                             "\"pinned_for_ms\":null,");
    gh_buf_dispose(&b);
    /* unpin: the computed level (elevated) applies */
    gh_level_unpin(&m, t += 1000);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_ELEVATED);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.reason[1], "unpin");
    /* pinning the level it already has announces nothing */
    gh_level_pin(&m, GH_LEVEL_ELEVATED, 0, t);
    assert_int_equal(seen.n, 2);
    gh_level_unpin(&m, t);
    /* a timed pin to normal during an attack, then it expires */
    struct gh_level_signals flood = {.register_rate = 80};
    gh_level_feed(&m, &flood, t += 1000);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_UNDER_ATTACK);
    unsigned n0 = seen.n;
    gh_level_pin(&m, GH_LEVEL_NORMAL, 60000, t);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_NORMAL);
    gh_buf_init(&b, 1024);
    gh_level_json(&m, t + 20000, &b);
    tu_assert_contains(b.data, "\"pinned_for_ms\":40000,");
    gh_buf_dispose(&b);
    gh_level_tick(&m, t + 59999);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_NORMAL);
    gh_level_feed(&m, &flood, t + 30000);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_NORMAL); /* still pinned */
    gh_level_tick(&m, t + 60000);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_UNDER_ATTACK); /* pin over: back */
    assert_int_equal(seen.n, n0 + 2);
    assert_string_equal(seen.reason[seen.n - 1], "pin expired");
    /* expiry noticed by feed too */
    gh_level_pin(&m, GH_LEVEL_ELEVATED, 1000, t + 70000);
    assert_int_equal(gh_level_feed(&m, &flood, t + 71000), GH_LEVEL_UNDER_ATTACK);
    gh_level_dispose(&m);
}

static void names(void **state)
{
    enum gh_level l;
    assert_int_equal(gh_level_parse("under_attack", &l), 0);
    assert_int_equal(l, GH_LEVEL_UNDER_ATTACK);
    assert_int_equal(gh_level_parse("panic", &l), GH_EINVAL);
    assert_string_equal(gh_level_name(GH_LEVEL_ELEVATED), "elevated");
    assert_string_equal(gh_reg_mode_name(GH_REG_RESTRICTED), "restricted");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rises_stays_falls),
        cmocka_unit_test(other_signals),
        cmocka_unit_test(stuffing_signals),
        cmocka_unit_test(pin_unpin_expiry),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
