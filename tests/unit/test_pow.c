/* Unit tests of the proof of work (shield/pow.h) on a simulated wall
 * clock: a good solution, then each way to be refused (wrong scope, wrong
 * network, expired, replayed, tampered, too few bits, unsolved, malformed),
 * the replay cache's bound, and the solver's speed. */
#include "test_util.h"

#include "shield/pow.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
#define NOW 1735689600000ull /* 2025-01-01 */

/* Issues and solves a challenge; nonce gets the decimal answer. */
static void issue_solved(struct gh_pow *p, enum gh_pow_scope sc, const struct gh_addr *a,
                         unsigned bits, uint64_t ttl, char *ch, char *nonce)
{
    uint64_t exp = 0, n = 0;
    assert_int_equal(gh_pow_issue(p, sc, a, bits, ttl, NOW, ch, GH_POW_CHALLENGE_MAX, &exp), 0);
    assert_int_equal(exp, (NOW + ttl) / 1000);
    assert_int_equal(gh_pow_solve(ch, strlen(ch), bits, 0, 1ull << 30, &n), 0);
    snprintf(nonce, 24, "%llu", (unsigned long long)n);
}

#define VERIFY(p, sc, a, minb, ch, nonce, now)                                                     \
    gh_pow_verify((p), (sc), (a), (minb), (ch), strlen(ch), (nonce), strlen(nonce), (now))

static void good_then_replayed(void **state)
{
    struct gh_pow *p = gh_pow_new(key, 1024);
    struct gh_addr a = tu_addr("192.0.2.10");
    char ch[GH_POW_CHALLENGE_MAX], nonce[24];
    issue_solved(p, GH_POW_REGISTER, &a, 12, 300000, ch, nonce);
    tu_assert_prefix(ch, "1.register.");
    assert_true(strlen(ch) < 100);
    for (const char *c = ch; *c; c++) /* opaque ASCII, safe in JSON and URLs */
        assert_true((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || *c == '.');
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 12, ch, nonce, NOW + 1000), GH_POW_OK);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 12, ch, nonce, NOW + 2000), GH_POW_REPLAYED);
    /* another nonce that also solves it: still the same challenge, refused */
    uint64_t n2;
    uint64_t first = strtoull(nonce, NULL, 10);
    assert_int_equal(gh_pow_solve(ch, strlen(ch), 12, first + 1, 1ull << 30, &n2), 0);
    char nonce2[24];
    snprintf(nonce2, sizeof nonce2, "%llu", (unsigned long long)n2);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 12, ch, nonce2, NOW + 2000), GH_POW_REPLAYED);
    /* another address of the same /24 may use a fresh challenge */
    struct gh_addr b = tu_addr("192.0.2.200");
    issue_solved(p, GH_POW_REGISTER, &a, 8, 300000, ch, nonce);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &b, 8, ch, nonce, NOW + 1000), GH_POW_OK);
    gh_pow_free(p);
}

static void wrong_scope_prefix_expired(void **state)
{
    struct gh_pow *p = gh_pow_new(key, 1024);
    struct gh_addr a = tu_addr("192.0.2.10"), other = tu_addr("192.0.3.10");
    struct gh_addr v6a = tu_addr("2001:db8:1:2::1"), v6b = tu_addr("2001:db8:1:ffff::1"),
                   v6c = tu_addr("2001:db8:2::1");
    char ch[GH_POW_CHALLENGE_MAX], nonce[24];
    issue_solved(p, GH_POW_SMS, &a, 8, 60000, ch, nonce);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 8, ch, nonce, NOW), GH_POW_WRONG_SCOPE);
    assert_int_equal(VERIFY(p, GH_POW_LOGIN, &a, 8, ch, nonce, NOW), GH_POW_WRONG_SCOPE);
    assert_int_equal(VERIFY(p, GH_POW_SMS, &other, 8, ch, nonce, NOW), GH_POW_WRONG_PREFIX);
    assert_int_equal(VERIFY(p, GH_POW_SMS, &v6a, 8, ch, nonce, NOW), GH_POW_WRONG_PREFIX);
    /* expired: exactly at expires_at, and later */
    assert_int_equal(VERIFY(p, GH_POW_SMS, &a, 8, ch, nonce, NOW + 60000), GH_POW_EXPIRED);
    assert_int_equal(VERIFY(p, GH_POW_SMS, &a, 8, ch, nonce, NOW + 3600000), GH_POW_EXPIRED);
    /* refusals did not burn the challenge */
    assert_int_equal(VERIFY(p, GH_POW_SMS, &a, 8, ch, nonce, NOW + 59000), GH_POW_OK);
    /* IPv6: bound to the /48 */
    issue_solved(p, GH_POW_LOGIN, &v6a, 8, 60000, ch, nonce);
    assert_int_equal(VERIFY(p, GH_POW_LOGIN, &v6c, 8, ch, nonce, NOW), GH_POW_WRONG_PREFIX);
    assert_int_equal(VERIFY(p, GH_POW_LOGIN, &a, 8, ch, nonce, NOW), GH_POW_WRONG_PREFIX);
    assert_int_equal(VERIFY(p, GH_POW_LOGIN, &v6b, 8, ch, nonce, NOW), GH_POW_OK);
    gh_pow_free(p);
}

static void tampered(void **state)
{
    struct gh_pow *p = gh_pow_new(key, 1024);
    struct gh_addr a = tu_addr("198.51.100.1");
    char ch[GH_POW_CHALLENGE_MAX], nonce[24];
    issue_solved(p, GH_POW_REGISTER, &a, 4, 60000, ch, nonce);
    size_t len = strlen(ch);
    /* flip every character in turn: never accepted */
    for (size_t i = 0; i < len; i++) {
        char t[GH_POW_CHALLENGE_MAX];
        memcpy(t, ch, len + 1);
        t[i] = t[i] == '1' ? '2' : '1';
        enum gh_pow_result r = VERIFY(p, GH_POW_REGISTER, &a, 0, t, nonce, NOW);
        assert_true(r == GH_POW_BAD_SIGNATURE || r == GH_POW_MALFORMED);
    }
    /* lowering the bits field, lengthening the expiry: the MAC refuses */
    char t[GH_POW_CHALLENGE_MAX];
    memcpy(t, ch, len + 1);
    char *bits = strstr(t, ".4.");
    assert_non_null(bits);
    bits[1] = '0';
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 0, t, nonce, NOW), GH_POW_BAD_SIGNATURE);
    /* a challenge of another server (another key) */
    static const unsigned char key2[32] = "another-key-another-key-another!";
    struct gh_pow *q = gh_pow_new(key2, 64);
    assert_int_equal(VERIFY(q, GH_POW_REGISTER, &a, 4, ch, nonce, NOW), GH_POW_BAD_SIGNATURE);
    gh_pow_free(q);
    /* truncated, extended, garbage */
    static const char *junk[] = {"", "1", "1.register", "2.register.1.1.000000.00.00",
                                 "hello world",
                                 "1.register.x.4.c63364.aaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < GH_ARRAY_LEN(junk); i++)
        assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 0, junk[i], nonce, NOW),
                         GH_POW_MALFORMED);
    char longer[GH_POW_CHALLENGE_MAX + 8];
    snprintf(longer, sizeof longer, "%s.x", ch);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 0, longer, nonce, NOW), GH_POW_MALFORMED);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 4, ch, nonce, NOW), GH_POW_OK);
    gh_pow_free(p);
}

static void too_few_bits_and_unsolved(void **state)
{
    struct gh_pow *p = gh_pow_new(key, 1024);
    struct gh_addr a = tu_addr("203.0.113.1");
    char ch[GH_POW_CHALLENGE_MAX], nonce[24];
    issue_solved(p, GH_POW_REGISTER, &a, 10, 60000, ch, nonce);
    /* the policy now wants 16: a 10-bit challenge is not enough */
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 16, ch, nonce, NOW), GH_POW_TOO_EASY);
    /* a nonce that does not solve it */
    char wrong[24];
    uint64_t n = strtoull(nonce, NULL, 10);
    for (uint64_t k = n + 1;; k++) {
        snprintf(wrong, sizeof wrong, "%llu", (unsigned long long)k);
        if (!gh_pow_check_hash(ch, strlen(ch), wrong, strlen(wrong), 10))
            break;
    }
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 10, ch, wrong, NOW), GH_POW_UNSOLVED);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 10, ch, "-1", NOW), GH_POW_MALFORMED);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 10, ch, "", NOW), GH_POW_MALFORMED);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 10, ch, "123456789012345678901", NOW),
                     GH_POW_MALFORMED);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 10, ch, "99999999999999999999", NOW),
                     GH_POW_MALFORMED); /* past 2^64 */
    /* leading zeros hash differently: "007" is not "7" */
    char padded[32];
    snprintf(padded, sizeof padded, "0%s", nonce);
    enum gh_pow_result r = VERIFY(p, GH_POW_REGISTER, &a, 10, ch, padded, NOW);
    assert_true(r == GH_POW_UNSOLVED || r == GH_POW_OK);
    /* a 0-bit challenge needs no work */
    issue_solved(p, GH_POW_REGISTER, &a, 0, 60000, ch, nonce);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 0, ch, "12345", NOW), GH_POW_OK);
    uint64_t exp;
    assert_int_equal(gh_pow_issue(p, GH_POW_REGISTER, &a, 33, 1000, NOW, ch, sizeof ch, &exp),
                     GH_EINVAL);
    gh_pow_free(p);
}

static void hash_check_vectors(void **state)
{
    /* SHA-256("abc") = ba7816bf…: no zero bits; check the bit counting on a
     * found solution instead: exactly `bits` leading zeros are enough */
    uint64_t n;
    assert_int_equal(gh_pow_solve("x", 1, 8, 0, 1 << 20, &n), 0);
    char d[24];
    snprintf(d, sizeof d, "%llu", (unsigned long long)n);
    assert_true(gh_pow_check_hash("x", 1, d, strlen(d), 8));
    assert_true(gh_pow_check_hash("x", 1, d, strlen(d), 1));
    assert_true(gh_pow_check_hash("x", 1, d, strlen(d), 0));
    /* the known answer the JS worker test also checks */
    assert_int_equal(gh_pow_solve("test-challenge", 14, 12, 0, 1 << 20, &n), 0);
    print_message("pow: test-challenge at 12 bits -> nonce %llu\n", (unsigned long long)n);
}

static void replay_cache_bounded(void **state)
{
    /* 128 entries: 16 shards x 1 bucket x 8 ways */
    struct gh_pow *p = gh_pow_new(key, 128);
    struct gh_addr a = tu_addr("192.0.2.1");
    char ch[GH_POW_CHALLENGE_MAX], nonce[24];
    unsigned ok = 0, busy = 0;
    for (int i = 0; i < 400; i++) {
        issue_solved(p, GH_POW_REGISTER, &a, 0, 60000, ch, nonce);
        enum gh_pow_result r = VERIFY(p, GH_POW_REGISTER, &a, 0, ch, nonce, NOW);
        ok += r == GH_POW_OK;
        busy += r == GH_POW_BUSY;
        assert_true(r == GH_POW_OK || r == GH_POW_BUSY);
    }
    assert_true(ok <= 128);
    assert_true(busy >= 400 - 128);
    /* once those challenges have expired, room again */
    uint64_t exp;
    assert_int_equal(gh_pow_issue(p, GH_POW_REGISTER, &a, 0, 60000, NOW + 120000, ch, sizeof ch,
                                  &exp),
                     0);
    assert_int_equal(VERIFY(p, GH_POW_REGISTER, &a, 0, ch, "1", NOW + 120000), GH_POW_OK);
    gh_pow_free(p);
}

static void solver_speed(void **state)
{
    struct gh_pow *p = gh_pow_new(key, 1024);
    struct gh_addr a = tu_addr("192.0.2.1");
    char ch[GH_POW_CHALLENGE_MAX];
    uint64_t exp, n;
    assert_int_equal(gh_pow_issue(p, GH_POW_REGISTER, &a, 16, 60000, NOW, ch, sizeof ch, &exp),
                     0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const uint64_t tries = 300000;
    assert_int_equal(gh_pow_solve(ch, strlen(ch), 32, 0, tries, &n) == 0 ? 0 : 1, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* verifying: one HMAC + one hash */
    char nonce[24];
    assert_int_equal(gh_pow_solve(ch, strlen(ch), 16, 0, 1ull << 30, &n), 0);
    snprintf(nonce, sizeof nonce, "%llu", (unsigned long long)n);
    struct timespec v0, v1;
    clock_gettime(CLOCK_MONOTONIC, &v0);
    for (int i = 0; i < 10000; i++)
        VERIFY(p, GH_POW_LOGIN, &a, 16, ch, nonce, NOW); /* wrong scope: no replay entry */
    clock_gettime(CLOCK_MONOTONIC, &v1);
    double vs = (double)(v1.tv_sec - v0.tv_sec) + (double)(v1.tv_nsec - v0.tv_nsec) / 1e9;
    print_message("pow: solver %.2f M hashes/s (20 bits ~ %.2f s on average); verify %.2f us\n",
                  (double)tries / s / 1e6, (double)(1 << 20) / ((double)tries / s),
                  vs / 10000 * 1e6);
    gh_pow_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_then_replayed),     cmocka_unit_test(wrong_scope_prefix_expired),
        cmocka_unit_test(tampered),               cmocka_unit_test(too_few_bits_and_unsolved),
        cmocka_unit_test(hash_check_vectors),     cmocka_unit_test(replay_cache_bounded),
        cmocka_unit_test(solver_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
