/* Unit tests of the penalty box's bookkeeping (shield/penalty.h) on a
 * simulated clock: the refusal threshold within its window, windows that
 * lapse, bans that expire, prefixes covering addresses, operator bans that
 * refusals never shorten, the caps of both tables, and the overlap check
 * of the IP sets (shield/ipset.h) that keeps exempt addresses out. */
#include "test_util.h"

#include "shield/penalty.h"

#include <arpa/inet.h>
#include <sys/socket.h>

static struct gh_cidr
C(const char *s) {
    struct gh_cidr c;
    assert_int_equal(gh_cidr_parse(s, strlen(s), &c), 0);
    return c;
}

/* A parsed prefix in one of a few rotating slots, for use as an argument. */
static const struct gh_cidr *
P(const char *s)
{
    static struct gh_cidr ring[8];
    static unsigned next;
    struct gh_cidr *c = &ring[next++ % 8];
    *c = C(s);
    return c;
}

static bool banned(struct gh_penalty *pb, const char *addr, uint64_t now)
{
    struct gh_addr a = tu_addr(addr);
    return gh_penalty_banned(pb, &a, now);
}

static struct gh_penalty *box(unsigned after, uint64_t window_ms, uint64_t ban_ms)
{
    struct gh_penalty *pb = gh_penalty_new(1024, 1024);
    assert_non_null(pb);
    struct gh_penalty_config c = {after, window_ms, ban_ms};
    gh_penalty_configure(pb, &c);
    return pb;
}

/* after refusals within the window earn a ban; fewer, or spread wider than
 * the window, do not */
static void threshold_within_window(void **state)
{
    struct gh_penalty *pb = box(5, 10000, 60000);
    struct gh_cidr src = C("192.0.2.7");
    uint64_t t = 1000000;
    for (int i = 0; i < 4; i++)
        assert_false(gh_penalty_refused(pb, &src, t + (uint64_t)i * 1000));
    assert_true(gh_penalty_refused(pb, &src, t + 9999)); /* the 5th, within 10 s of the 1st */
    /* the count starts over after a ban is earned */
    for (int i = 0; i < 4; i++)
        assert_false(gh_penalty_refused(pb, &src, t + 10000));

    /* 5 refusals, but never 5 within one window */
    struct gh_cidr slow = C("192.0.2.8");
    t = 2000000;
    for (int i = 0; i < 20; i++)
        assert_false(gh_penalty_refused(pb, &slow, t + (uint64_t)i * 2600));
    gh_penalty_free(pb);
}

static void zero_after_counts_nothing(void **state)
{
    struct gh_penalty *pb = box(0, 10000, 60000);
    struct gh_cidr src = C("192.0.2.7");
    for (int i = 0; i < 1000; i++)
        assert_false(gh_penalty_refused(pb, &src, 5000));
    gh_penalty_free(pb);
}

static void bans_expire_and_cover(void **state)
{
    struct gh_penalty *pb = box(1, 1000, 3000);
    uint64_t t = 50000;
    assert_false(banned(pb, "198.51.100.9", t)); /* empty: nothing held */
    struct gh_ban b;
    assert_int_equal(gh_penalty_add(pb, P("198.51.100.0/24"), 3000, GH_BAN_REFUSALS, t, &b), 0);
    assert_int_equal(b.expires_ms, t + 3000);
    assert_true(banned(pb, "198.51.100.9", t));
    assert_true(banned(pb, "198.51.100.255", t + 2999));
    assert_false(banned(pb, "198.51.101.1", t));
    assert_false(banned(pb, "198.51.100.9", t + 3000)); /* expired by itself */
    assert_int_equal(gh_penalty_list(pb, t + 3000, NULL, 0), 0);

    /* IPv6: a /64 and a /48 */
    assert_int_equal(gh_penalty_add(pb, P("2001:db8:1:2::/64"), 3000, GH_BAN_REFUSALS, t, NULL), 0);
    assert_true(banned(pb, "2001:db8:1:2::99", t));
    assert_false(banned(pb, "2001:db8:1:3::99", t));
    assert_int_equal(gh_penalty_add(pb, P("2001:db8:7::/48"), 3000, GH_BAN_REFUSALS, t, NULL), 0);
    assert_true(banned(pb, "2001:db8:7:ffff::1", t));
    /* an IPv4 ban never catches IPv6 and back */
    assert_false(banned(pb, "::198.51.100.9", t));

    /* lifted by the operator */
    assert_int_equal(gh_penalty_remove(pb, P("2001:db8:7::/48")), 0);
    assert_false(banned(pb, "2001:db8:7:ffff::1", t));
    assert_int_equal(gh_penalty_remove(pb, P("2001:db8:7::/48")), GH_ENOTFOUND);
    gh_penalty_free(pb);
}

static void operator_bans_are_not_shortened(void **state)
{
    struct gh_penalty *pb = box(1, 1000, 3000);
    uint64_t t = 70000;
    struct gh_cidr c = C("203.0.113.5");
    struct gh_ban b;
    assert_int_equal(gh_penalty_add(pb, &c, 3600000, GH_BAN_OPERATOR, t, &b), 0);
    /* a refusal-earned ban of 3 s does not shorten the operator's hour */
    assert_int_equal(gh_penalty_add(pb, &c, 3000, GH_BAN_REFUSALS, t + 10, &b), 0);
    assert_int_equal(b.expires_ms, t + 3600000);
    assert_int_equal(b.reason, GH_BAN_OPERATOR);
    struct gh_ban list[4];
    assert_int_equal(gh_penalty_list(pb, t + 5000, list, 4), 1);
    assert_true(gh_cidr_equal(&list[0].cidr, &c));
    assert_int_equal(list[0].reason, GH_BAN_OPERATOR);
    struct gh_penalty_stats st;
    gh_penalty_get_stats(pb, &st);
    assert_int_equal(st.added[GH_BAN_OPERATOR], 1);
    assert_int_equal(st.added[GH_BAN_REFUSALS], 1);
    gh_penalty_free(pb);
}

/* the ban table holds at most its capacity; a full bucket refuses and
 * counts, and expired bans make room again */
static void ban_table_is_capped(void **state)
{
    struct gh_penalty *pb = gh_penalty_new(64, 64);
    assert_non_null(pb);
    struct gh_penalty_stats st;
    gh_penalty_get_stats(pb, &st);
    size_t cap = st.capacity;
    assert_true(cap >= 64 && cap <= 4096);
    uint64_t t = 1000;
    size_t ok = 0, full = 0;
    for (unsigned i = 0; i < 20000; i++) {
        struct gh_cidr c = {0};
        gh_cidr_from_addr(
            &(struct gh_addr){.family = AF_INET,
                              .bytes = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i}},
            &c);
        if (gh_penalty_add(pb, &c, 1000, GH_BAN_REFUSALS, t, NULL) == 0)
            ok++;
        else
            full++;
    }
    assert_true(ok <= cap);
    assert_true(ok >= cap / 2); /* 8-way buckets fill well */
    assert_int_equal(ok + full, 20000);
    gh_penalty_get_stats(pb, &st);
    assert_int_equal(st.full, full);
    assert_int_equal(gh_penalty_list(pb, t, NULL, 0), ok);
    /* a second later all have expired: the slots are free again */
    struct gh_cidr c = C("192.0.2.1");
    assert_int_equal(gh_penalty_add(pb, &c, 1000, GH_BAN_REFUSALS, t + 1000, NULL), 0);
    assert_int_equal(gh_penalty_list(pb, t + 1000, NULL, 0), 1);
    gh_penalty_free(pb);
}

/* the tally is bounded too: a spray of sources forgets the oldest windows
 * (counted) but never grows, and a source still in its window keeps
 * counting when the others are younger */
static void tally_is_capped(void **state)
{
    struct gh_penalty *pb = gh_penalty_new(64, 64);
    struct gh_penalty_config cfg = {3, 10000, 1000};
    gh_penalty_configure(pb, &cfg);
    uint64_t t = 100000;
    for (unsigned i = 0; i < 100000; i++) {
        struct gh_cidr c;
        gh_cidr_from_addr(
            &(struct gh_addr){.family = AF_INET,
                              .bytes = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i}},
            &c);
        assert_false(gh_penalty_refused(pb, &c, t)); /* one refusal each: no bans */
    }
    struct gh_penalty_stats st;
    gh_penalty_get_stats(pb, &st);
    assert_true(st.tally_evictions > 90000);
    assert_int_equal(gh_penalty_list(pb, t, NULL, 0), 0);
    gh_penalty_free(pb);
}

static void inside_and_sources(void **state)
{
    struct gh_penalty *pb = box(1, 1000, 3000);
    uint64_t t = 9000;
    assert_int_equal(gh_penalty_add(pb, P("192.0.2.7"), 3000, GH_BAN_REFUSALS, t, NULL), 0);
    assert_int_equal(gh_penalty_add(pb, P("192.0.2.9"), 3000, GH_BAN_REFUSALS, t, NULL), 0);
    assert_int_equal(gh_penalty_add(pb, P("192.0.3.9"), 3000, GH_BAN_REFUSALS, t, NULL), 0);
    struct gh_ban in[8];
    assert_int_equal(gh_penalty_inside(pb, P("192.0.2.0/24"), t, in, 8), 2);
    assert_int_equal(gh_penalty_inside(pb, P("192.0.2.7"), t, in, 8), 0); /* strictly inside */
    assert_int_equal(gh_penalty_inside(pb, P("192.0.2.0/24"), t + 3000, in, 8), 0);

    struct gh_cidr s, want;
    struct gh_addr a = tu_addr("192.0.2.77");
    gh_penalty_source(&a, 24, 64, &s);
    want = C("192.0.2.0/24");
    assert_true(gh_cidr_equal(&s, &want));
    a = tu_addr("2001:db8:1:2:3::4");
    gh_penalty_source(&a, 24, 48, &s);
    want = C("2001:db8:1::/48");
    assert_true(gh_cidr_equal(&s, &want));
    gh_penalty_source(&a, 32, 128, &s);
    want = C("2001:db8:1:2:3::4");
    assert_true(gh_cidr_equal(&s, &want));
    assert_true(gh_cidr_contains(P("192.0.2.0/24"), P("192.0.2.7")));
    assert_false(gh_cidr_contains(P("192.0.2.7"), P("192.0.2.0/24")));
    gh_penalty_free(pb);
}

/* what keeps allow-listed addresses and balancers out of prefix bans */
static void ipset_overlaps(void **state)
{
    struct gh_cidr cs[] = {C("192.0.2.5"), C("10.0.0.0/8"), C("2001:db8::/32")};
    struct gh_ipset *s = gh_ipset_build(cs, 3);
    assert_non_null(s);
    assert_true(gh_ipset_overlaps(s, P("192.0.2.0/24"))); /* holds an entry */
    assert_true(gh_ipset_overlaps(s, P("192.0.2.5")));    /* is one */
    assert_false(gh_ipset_overlaps(s, P("192.0.2.6")));
    assert_false(gh_ipset_overlaps(s, P("192.0.3.0/24")));
    assert_true(gh_ipset_overlaps(s, P("10.9.8.0/24"))); /* inside one */
    assert_true(gh_ipset_overlaps(s, P("0.0.0.0/0")));
    assert_true(gh_ipset_overlaps(s, P("2001:db8:5::/48")));
    assert_false(gh_ipset_overlaps(s, P("2001:db9::/48")));
    assert_false(gh_ipset_overlaps(NULL, P("0.0.0.0/0")));
    gh_ipset_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(threshold_within_window),
        cmocka_unit_test(zero_after_counts_nothing),
        cmocka_unit_test(bans_expire_and_cover),
        cmocka_unit_test(operator_bans_are_not_shortened),
        cmocka_unit_test(ban_table_is_capped),
        cmocka_unit_test(tally_is_capped),
        cmocka_unit_test(inside_and_sources),
        cmocka_unit_test(ipset_overlaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
