/* Unit tests of the attack-level machine (shield/level.h) on a simulated
 * clock: it rises on a signal (straight to under_attack when that
 * threshold is crossed), stays during the hysteresis, falls one level per
 * calm stretch, ignores ratios on too few events; pin, unpin, pin expiry;
 * listeners see every change once. Through the tally (issue 10, item 3):
 * one address or one /24 (/48), however it behaves, cannot raise the
 * level; a broad flood from many prefixes still does; one source's share
 * of a ratio is capped; the public level (the status page's incident)
 * follows only after the level held for incident_after. */
#include "test_util.h"

#include "http/http.h"
#include "shield/level.h"

#include <sys/socket.h>

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

/* ---- breadth, caps and the public level, through the tally ---- */

#define PERIOD_MS 5000

/* The shipped defaults (config.c): thresholds of every event signal,
 * 20 events, 8 prefixes, 5 per prefix, incident after 3 minutes. */
static void default_config(struct gh_level_config *c)
{
    memset(c, 0, sizeof *c);
    c->threshold[0][0] = 20, c->threshold[0][1] = 100;   /* register_rate */
    c->threshold[1][0] = 20, c->threshold[1][1] = 100;   /* sms_rate */
    c->threshold[2][0] = 0.6, c->threshold[2][1] = 0.9;  /* verify_fail_ratio */
    c->threshold[3][0] = 0.6, c->threshold[3][1] = 0.9;  /* login_fail_ratio */
    c->threshold[4][0] = 200, c->threshold[4][1] = 2000; /* distinct_prefixes */
    c->threshold[8][0] = 20, c->threshold[8][1] = 100;   /* login_fail_rate */
    c->calm_periods = 12;
    c->ratio_min_rate = 1;
    c->min_events = 20;
    c->min_prefixes = 8;
    c->source_cap = 5;
    c->incident_after_ms = 180000;
}

static struct gh_level_tally *fixed_tally(void)
{
    static const uint8_t key[16] = "level-test-key!";
    struct gh_level_tally *t = gh_level_tally_new(key);
    assert_non_null(t);
    return t;
}

static struct gh_addr v4(unsigned a, unsigned b, unsigned c, unsigned d)
{
    struct gh_addr x = {.family = AF_INET};
    x.bytes[0] = (uint8_t)a, x.bytes[1] = (uint8_t)b, x.bytes[2] = (uint8_t)c, x.bytes[3] = (uint8_t)d;
    return x;
}

/* 2001:db8:<site>:<net>::<host> */
static struct gh_addr v6(unsigned site, unsigned net, unsigned host)
{
    struct gh_addr x = {.family = AF_INET6};
    x.bytes[0] = 0x20, x.bytes[1] = 0x01, x.bytes[2] = 0x0d, x.bytes[3] = 0xb8;
    x.bytes[4] = (uint8_t)(site >> 8), x.bytes[5] = (uint8_t)site;
    x.bytes[6] = (uint8_t)(net >> 8), x.bytes[7] = (uint8_t)net;
    x.bytes[14] = (uint8_t)(host >> 8), x.bytes[15] = (uint8_t)host;
    return x;
}

static enum gh_level feed_period(struct gh_level_machine *m, struct gh_level_tally *t, uint64_t *now)
{
    struct gh_level_signals s = {0};
    *now += PERIOD_MS;
    return gh_level_feed_tally(m, t, PERIOD_MS / 1000.0, &s, *now);
}

/* Every way one source can behave: any event, alone or mixed, a trickle
 * or a flood, failing or succeeding, from one address, from all 256
 * addresses of its /24, from 4096 /64s of one IPv6 /48. */
static void one_source_cannot_raise(void **state)
{
    struct gh_level_config c;
    default_config(&c);
    struct gh_level_machine m;
    gh_level_init(&m, &c, 0);
    struct gh_level_tally *t = fixed_tally();
    uint64_t now = 0;
    static const unsigned volumes[] = {1, 5, 12, 32, 100, 1000, 100000};
    for (int shape = 0; shape < 3; shape++)
        for (int ev = 0; ev <= GH_LEVEL_EV_COUNT; ev++) /* GH_LEVEL_EV_COUNT: all at once */
            for (size_t v = 0; v < GH_ARRAY_LEN(volumes); v++) {
                for (unsigned i = 0; i < volumes[v]; i++) {
                    struct gh_addr a = shape == 0   ? v4(203, 0, 113, 7)
                                       : shape == 1 ? v4(203, 0, 113, i & 255)
                                                    : v6(42, i & 0xfff, i);
                    for (int e = 0; e < GH_LEVEL_EV_COUNT; e++)
                        if (e == ev || ev == GH_LEVEL_EV_COUNT)
                            gh_level_tally_add(t, (enum gh_level_event)e, &a, 1);
                }
                assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_NORMAL);
            }
    /* a stuffing run from one /24 that the service never refuses: 12 wrong
     * passwords in 2.5 s, then on for an hour */
    for (int p = 0; p < 720; p++) {
        for (unsigned i = 0; i < 24; i++) {
            struct gh_addr a = v4(198, 51, 100, i);
            gh_level_tally_add(t, GH_LEVEL_EV_LOGIN_FAIL, &a, 1);
            gh_level_tally_add(t, GH_LEVEL_EV_VERIFY_FAIL, &a, 1);
        }
        assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_NORMAL);
    }
    assert_int_equal(gh_level_get_public(&m), GH_LEVEL_NORMAL);
    gh_level_tally_free(t);
    gh_level_dispose(&m);
}

/* A few prefixes (fewer than min_prefixes), each as loud as it likes,
 * stay below; 64 prefixes failing logins, or a registration flood from
 * 500 prefixes, raise the level. */
static void broad_flood_raises(void **state)
{
    struct gh_level_config c;
    default_config(&c);
    struct gh_level_machine m;
    gh_level_init(&m, &c, 0);
    struct gh_level_tally *t = fixed_tally();
    uint64_t now = 0;
    for (unsigned p = 0; p < 7; p++)
        for (unsigned i = 0; i < 1000; i++) {
            struct gh_addr a = v4(10, p, 0, i & 255);
            gh_level_tally_add(t, GH_LEVEL_EV_LOGIN_FAIL, &a, 1);
        }
    assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_NORMAL);
    /* 64 /24s, 10 failures each: 64 × 5 counted = 64/s, all failing */
    for (unsigned p = 0; p < 64; p++)
        for (unsigned i = 0; i < 10; i++) {
            struct gh_addr a = v4(10, p, 1, i);
            gh_level_tally_add(t, GH_LEVEL_EV_LOGIN_FAIL, &a, 1);
        }
    assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_UNDER_ATTACK);
    struct gh_buf b;
    gh_buf_init(&b, 1024);
    assert_int_equal(gh_level_json(&m, now, &b), 0);
    tu_assert_contains(b.data, "login_fail");
    tu_assert_contains(b.data, "\"public\":\"normal\"");
    gh_buf_dispose(&b);
    gh_level_dispose(&m);

    /* registrations from 500 IPv6 /48s: rate and distinct prefixes */
    gh_level_init(&m, &c, 0);
    now = 0;
    for (unsigned p = 0; p < 500; p++)
        for (unsigned i = 0; i < 3; i++) {
            struct gh_addr a = v6(p, i, 1);
            gh_level_tally_add(t, GH_LEVEL_EV_REGISTER, &a, 1);
        }
    assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_UNDER_ATTACK);
    struct gh_level_signals s = {0};
    gh_level_feed_tally(&m, t, 5, &s, now += PERIOD_MS); /* emptied by the last feed */
    assert_true(s.register_rate == 0 && s.distinct_prefixes == 0);
    gh_level_tally_free(t);
    gh_level_dispose(&m);
}

/* Three nodes each see a third of a broad flood: alone, no node has the
 * evidence; the cluster's sums (slot by slot, then capped, as
 * level_redis.c's script adds them) do, and read as one node's tally of
 * the whole flood would. */
static void cluster_counts(void **state)
{
    (void)state;
    struct gh_level_config c;
    default_config(&c);
    c.min_events = 120;
    struct gh_level_machine m;
    gh_level_init(&m, &c, 0);
    struct gh_level_tally *node[3], *whole = fixed_tally();
    for (int n = 0; n < 3; n++)
        node[n] = fixed_tally();
    /* 150 /24s, 2 registrations each (one from each of two nodes) */
    for (unsigned p = 0; p < 150; p++) {
        struct gh_addr a = v4(10, p, 0, 1);
        gh_level_tally_add(node[p % 3], GH_LEVEL_EV_REGISTER, &a, 1);
        gh_level_tally_add(node[(p + 1) % 3], GH_LEVEL_EV_REGISTER, &a, 1);
        gh_level_tally_add(whole, GH_LEVEL_EV_REGISTER, &a, 2);
    }
    struct gh_level_counts sum = {0};
    for (unsigned i = 0; i < GH_LEVEL_TALLY_SLOTS; i++) {
        uint32_t v = 0;
        for (int n = 0; n < 3; n++)
            v += atomic_load(&node[n]->slot[GH_LEVEL_EV_REGISTER][i]);
        if (v) {
            sum.events[GH_LEVEL_EV_REGISTER] += GH_MIN(v, c.source_cap);
            sum.slots[GH_LEVEL_EV_REGISTER]++;
        }
    }
    uint64_t now = 0;
    for (int n = 0; n < 3; n++) { /* 100 events a node: below min_events */
        struct gh_level_machine one;
        gh_level_init(&one, &c, 0);
        struct gh_level_signals s = {0};
        gh_level_feed_tally(&one, node[n], PERIOD_MS / 1000.0, &s, PERIOD_MS);
        assert_true(s.register_rate == 0);
        assert_int_equal(gh_level_get(&one), GH_LEVEL_NORMAL);
        gh_level_dispose(&one);
    }
    struct gh_level_signals sc = {0}, sw = {0};
    gh_level_feed_counts(&m, &sum, PERIOD_MS / 1000.0, &sc, now += PERIOD_MS);
    gh_level_feed_tally(&m, whole, PERIOD_MS / 1000.0, &sw, now += PERIOD_MS);
    assert_true(sc.register_rate == sw.register_rate && sc.register_rate == 300 / 5.0);
    assert_true(sc.distinct_prefixes == sw.distinct_prefixes);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_ELEVATED);
    for (int n = 0; n < 3; n++)
        gh_level_tally_free(node[n]);
    gh_level_tally_free(whole);
    gh_level_dispose(&m);
}

/* One source's share of a ratio is capped both ways: its failures cannot
 * fill a ratio, and its successes cannot hide a broad failing flood. */
static void source_share_capped(void **state)
{
    struct gh_level_config c;
    default_config(&c);
    c.min_events = 8;
    struct gh_level_machine m;
    gh_level_init(&m, &c, 0);
    struct gh_level_tally *t = fixed_tally();
    uint64_t now = 0;
    /* 8 /24s fail once each, one address succeeds 1000 times: 8 / (8 + 5) */
    for (unsigned p = 0; p < 8; p++) {
        struct gh_addr a = v4(172, 16, p, 1);
        gh_level_tally_add(t, GH_LEVEL_EV_VERIFY_FAIL, &a, 1);
    }
    struct gh_addr one = v4(192, 0, 2, 1);
    gh_level_tally_add(t, GH_LEVEL_EV_VERIFY_OK, &one, 1000);
    struct gh_level_signals s = {0};
    assert_int_equal(gh_level_feed_tally(&m, t, 1, &s, now += 1000), GH_LEVEL_ELEVATED);
    assert_true(s.verify_fail_ratio > 0.6 && s.verify_fail_ratio < 0.62);
    /* users succeeding from many prefixes do dilute it */
    for (unsigned p = 0; p < 8; p++) {
        struct gh_addr a = v4(172, 16, p, 1);
        gh_level_tally_add(t, GH_LEVEL_EV_VERIFY_FAIL, &a, 1);
        struct gh_addr u = v4(100, 64, p, 9);
        gh_level_tally_add(t, GH_LEVEL_EV_VERIFY_OK, &u, 2);
    }
    memset(&s, 0, sizeof s);
    gh_level_feed_tally(&m, t, 1, &s, now += 1000);
    assert_true(s.verify_fail_ratio > 0.33 && s.verify_fail_ratio < 0.34);
    gh_level_tally_free(t);
    gh_level_dispose(&m);
}

struct pub_seen {
    unsigned n;
    enum gh_level to[8];
    uint64_t at[8];
    char reason[8][16];
    uint64_t *now;
};

static void pub_listener(enum gh_level from, enum gh_level to, const char *reason, void *data)
{
    struct pub_seen *s = data;
    (void)from;
    assert_true(s->n < 8);
    s->to[s->n] = to;
    s->at[s->n] = *s->now;
    snprintf(s->reason[s->n], sizeof s->reason[0], "%s", reason);
    s->n++;
}

static void broad_failures(struct gh_level_tally *t)
{
    for (unsigned p = 0; p < 40; p++)
        for (unsigned i = 0; i < 5; i++) {
            struct gh_addr a = v4(10, 9, p, i);
            gh_level_tally_add(t, GH_LEVEL_EV_LOGIN_FAIL, &a, 1);
        }
}

/* The incident waits for the level to hold: a burst of a few periods
 * never reaches the status page; a lasting attack does after
 * incident_after; the fall is public at once; a pin at once. */
static void public_after_hold(void **state)
{
    struct gh_level_config c;
    default_config(&c);
    c.calm_periods = 2;
    struct gh_level_machine m;
    uint64_t now = 0;
    gh_level_init(&m, &c, now);
    struct pub_seen seen = {.now = &now};
    assert_int_equal(gh_level_subscribe_public(&m, pub_listener, &seen), 0);
    struct gh_level_tally *t = fixed_tally();
    /* a burst: under attack for 3 periods, then calm falls back */
    for (int p = 0; p < 3; p++) {
        broad_failures(t);
        assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_UNDER_ATTACK);
    }
    for (int p = 0; p < 4; p++)
        feed_period(&m, t, &now);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_NORMAL);
    assert_int_equal(seen.n, 0);
    /* a lasting attack: public once it held 3 minutes, not before */
    uint64_t start = now + PERIOD_MS;
    while (now < start + 180000 - PERIOD_MS) {
        broad_failures(t);
        assert_int_equal(feed_period(&m, t, &now), GH_LEVEL_UNDER_ATTACK);
        assert_int_equal(gh_level_get_public(&m), GH_LEVEL_NORMAL);
    }
    assert_int_equal(seen.n, 0);
    broad_failures(t);
    feed_period(&m, t, &now);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.to[0], GH_LEVEL_UNDER_ATTACK);
    assert_int_equal(seen.at[0], start + 180000);
    assert_string_equal(seen.reason[0], "held");
    assert_int_equal(gh_level_get_public(&m), GH_LEVEL_UNDER_ATTACK);
    /* calm: the effective level steps down, and so does the public one, at once */
    feed_period(&m, t, &now);
    feed_period(&m, t, &now);
    assert_int_equal(gh_level_get(&m), GH_LEVEL_ELEVATED);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.to[1], GH_LEVEL_ELEVATED);
    feed_period(&m, t, &now);
    feed_period(&m, t, &now);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.to[2], GH_LEVEL_NORMAL);
    /* an operator's pin is public at once; its end too */
    gh_level_pin(&m, GH_LEVEL_UNDER_ATTACK, 0, now);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.to[3], GH_LEVEL_UNDER_ATTACK);
    assert_string_equal(seen.reason[3], "pin");
    gh_level_unpin(&m, now += 1000);
    assert_int_equal(seen.n, 5);
    assert_int_equal(seen.to[4], GH_LEVEL_NORMAL);
    gh_level_tally_free(t);
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
        cmocka_unit_test(one_source_cannot_raise),
        cmocka_unit_test(broad_flood_raises),
        cmocka_unit_test(source_share_capped),
        cmocka_unit_test(cluster_counts),
        cmocka_unit_test(public_after_hold),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
