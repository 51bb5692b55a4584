/* Unit tests of SMS codes and budgets (identity/sms.h): code lifecycle
 * (expiry, five tries, one live code), each budget with a fake clock, and
 * the requester's, outsider's and owner's budgets kept apart. */
#include "test_util.h"

#include "identity/sms.h"

#include <arpa/inet.h>
#include <sodium.h>

static const uint8_t key[32] = {1, 2, 3};

static struct gh_sms_limits generous(void)
{
    return (struct gh_sms_limits){.code_ttl_ms = 300000,
                                  .code_tries = 5,
                                  .cooldown_ms = 0,
                                  .per_number_day = 1000,
                                  .per_addr_hour = 1000,
                                  .per_net_hour = 1000,
                                  .per_prefix_hour = 1000,
                                  .per_cc_hour = 1000,
                                  .global_hour = 100000};
}

static struct gh_sms_req req_for(const char *e164, const char *prefix, const char *ip)
{
    struct gh_sms_req r = {.e164 = e164, .prefix = prefix, .calling_code = 86};
    r.client.family = AF_INET;
    inet_pton(AF_INET, ip, r.client.bytes);
    return r;
}

static void code_lifecycle(void **state)
{
    struct gh_sms_limits l = generous();
    struct gh_sms *s;
    assert_int_equal(gh_sms_new(&l, key, 1024, &s), 0);
    const char *n = "+8613800138000";
    char code[7];
    uint64_t t = 1000000;
    assert_int_equal(gh_sms_code_issue(s, n, GH_SMS_REGISTER, t, code), 0);
    assert_int_equal(strlen(code), 6);
    for (int i = 0; i < 6; i++)
        assert_true(code[i] >= '0' && code[i] <= '9');
    /* another purpose has no code */
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_LOGIN, code, 6, t), GH_ENOTFOUND);
    /* right code: consumed */
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_REGISTER, code, 6, t), 0);
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_REGISTER, code, 6, t), GH_ENOTFOUND);

    /* five wrong tries kill it, even for the right code afterwards */
    assert_int_equal(gh_sms_code_issue(s, n, GH_SMS_REGISTER, t, code), 0);
    char wrong[7];
    snprintf(wrong, sizeof wrong, "%06u", (unsigned)(strtoul(code, NULL, 10) + 1) % 1000000u);
    for (int i = 0; i < 4; i++)
        assert_int_equal(gh_sms_code_check(s, n, GH_SMS_REGISTER, wrong, 6, t), GH_EINVAL);
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_REGISTER, wrong, 6, t), GH_EINVAL);
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_REGISTER, code, 6, t), GH_ENOTFOUND);

    /* expiry */
    assert_int_equal(gh_sms_code_issue(s, n, GH_SMS_LOGIN, t, code), 0);
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_LOGIN, code, 6, t + 300001), GH_ENOTFOUND);

    /* one live code: a new one replaces the old */
    char c1[7], c2[7];
    assert_int_equal(gh_sms_code_issue(s, n, GH_SMS_RESET, t, c1), 0);
    do
        assert_int_equal(gh_sms_code_issue(s, n, GH_SMS_RESET, t, c2), 0);
    while (!strcmp(c1, c2));
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_RESET, c1, 6, t), GH_EINVAL);
    assert_int_equal(gh_sms_code_check(s, n, GH_SMS_RESET, c2, 6, t), 0);
    gh_sms_free(s);
}

/* Charges r until refused; returns how many passed (at most max). */
static unsigned passes(struct gh_sms *s, const struct gh_sms_req *r, uint64_t t, unsigned max,
                       const char **which, uint64_t *wait)
{
    unsigned k = 0;
    while (k < max && gh_sms_budget(s, r, t, wait, which) == 0)
        k++;
    return k;
}

static void budgets(void **state)
{
    struct {
        const char *name;
        size_t off;
    } caps[] = {
        {"number_day", offsetof(struct gh_sms_limits, per_number_day)},
        {"address", offsetof(struct gh_sms_limits, per_addr_hour)},
        {"network", offsetof(struct gh_sms_limits, per_net_hour)},
        {"prefix", offsetof(struct gh_sms_limits, per_prefix_hour)},
        {"calling_code", offsetof(struct gh_sms_limits, per_cc_hour)},
        {"global", offsetof(struct gh_sms_limits, global_hour)},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(caps); i++) {
        struct gh_sms_limits l = generous();
        *(unsigned *)((char *)&l + caps[i].off) = 3;
        struct gh_sms *s;
        assert_int_equal(gh_sms_new(&l, key, 1024, &s), 0);
        struct gh_sms_req r = req_for("+8613800138000", "+861380013", "10.0.0.1");
        const char *which = NULL;
        uint64_t wait = 0, t = 5000000;
        assert_int_equal(passes(s, &r, t, 10, &which, &wait), 3);
        assert_string_equal(which, caps[i].name);
        assert_true(wait > 0);
        uint64_t period = i == 0 ? 86400000ull : 3600000ull;
        assert_true(wait <= period);
        /* the window ends: allowed again */
        assert_int_equal(gh_sms_budget(s, &r, t + period, &wait, &which), 0);
        gh_sms_free(s);
    }
}

static void budget_keys(void **state)
{
    struct gh_sms_limits l = generous();
    l.per_net_hour = 2;
    struct gh_sms *s;
    assert_int_equal(gh_sms_new(&l, key, 1024, &s), 0);
    const char *which;
    uint64_t wait, t = 1000;
    struct gh_sms_req a = req_for("+8613800138001", "+861380013", "10.0.1.1");
    struct gh_sms_req b = req_for("+8613900139001", "+861390013", "10.0.1.2");
    struct gh_sms_req c = req_for("+8613700137001", "+861370013", "10.0.1.3");
    struct gh_sms_req d = req_for("+8613700137001", "+861370013", "10.0.2.3");
    assert_int_equal(gh_sms_budget(s, &a, t, &wait, &which), 0);
    assert_int_equal(gh_sms_budget(s, &b, t, &wait, &which), 0);
    /* same /24, other address and number: the network cap */
    assert_int_equal(gh_sms_budget(s, &c, t, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "network");
    /* another /24 is fine */
    assert_int_equal(gh_sms_budget(s, &d, t, &wait, &which), 0);
    gh_sms_free(s);

    /* cooldown per number; a refused request charges nothing */
    l = generous();
    l.cooldown_ms = 60000;
    l.per_addr_hour = 2;
    assert_int_equal(gh_sms_new(&l, key, 1024, &s), 0);
    assert_int_equal(gh_sms_budget(s, &a, t, &wait, &which), 0);
    assert_int_equal(gh_sms_budget(s, &a, t + 1000, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "cooldown");
    assert_int_equal(wait, 59000);
    struct gh_sms_req b2 = req_for("+8613900139001", "+861390013", "10.0.1.1");
    assert_int_equal(gh_sms_budget(s, &b2, t + 1000, &wait, &which), 0); /* 2nd for the address */
    assert_int_equal(gh_sms_budget(s, &a, t + 60000, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "address");
    gh_sms_free(s);
}

static void owner_and_outsider(void **state)
{
    /* the requester's budgets and the number's are charged apart; an
     * outsider exhausting a number's login budget, cooldown and prefix
     * leaves the reset budget and the owner's budget whole */
    struct gh_sms_limits l = generous();
    l.per_number_day = 2;
    l.per_prefix_hour = 3;
    l.cooldown_ms = 60000;
    struct gh_sms *s;
    assert_int_equal(gh_sms_new(&l, key, 1024, &s), 0);
    const char *which;
    uint64_t wait, t = 1000;
    struct gh_sms_req out = req_for("+8613800138000", "+861380013", "10.0.3.1");
    out.purpose = GH_SMS_LOGIN;
    /* requester budgets never touch the number's */
    for (int i = 0; i < 10; i++)
        assert_int_equal(gh_sms_budget_requester(s, &out, t, &wait, &which), 0);
    assert_int_equal(gh_sms_budget_send(s, &out, t, &wait, &which), 0);
    assert_int_equal(gh_sms_budget_send(s, &out, t + 1, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "cooldown");
    assert_int_equal(gh_sms_budget_send(s, &out, t + 60000, &wait, &which), 0);
    assert_int_equal(gh_sms_budget_send(s, &out, t + 120000, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "number_day");
    /* the reset code of the same number: its own cooldown and day */
    struct gh_sms_req reset = out;
    reset.purpose = GH_SMS_RESET;
    assert_int_equal(gh_sms_budget_send(s, &reset, t + 120000, &wait, &which), 0);
    /* the reset prefix for outsiders is spent (3 of 3) ... */
    struct gh_sms_req near = req_for("+8613800131234", "+861380013", "10.0.3.2");
    near.purpose = GH_SMS_RESET;
    assert_int_equal(gh_sms_budget_send(s, &near, t + 120000, &wait, &which), 0);
    near.e164 = "+8613800135678";
    assert_int_equal(gh_sms_budget_send(s, &near, t + 120000, &wait, &which), 0);
    assert_int_equal(gh_sms_budget_send(s, &reset, t + 200000, &wait, &which), GH_EBUSY);
    assert_string_equal(which, "prefix");
    /* ... and the owner's codes are charged elsewhere */
    struct gh_sms_req own = reset;
    own.owner = true;
    assert_int_equal(gh_sms_budget_send(s, &own, t + 200000, &wait, &which), 0);
    own.purpose = GH_SMS_LOGIN;
    assert_int_equal(gh_sms_budget_send(s, &own, t + 200000, &wait, &which), 0);
    gh_sms_free(s);
}

static void purposes(void **state)
{
    assert_int_equal(gh_sms_purpose_parse("register", 8), GH_SMS_REGISTER);
    assert_int_equal(gh_sms_purpose_parse("login", 5), GH_SMS_LOGIN);
    assert_int_equal(gh_sms_purpose_parse("reset", 5), GH_SMS_RESET);
    assert_int_equal(gh_sms_purpose_parse("resets", 6), -1);
    assert_int_equal(gh_sms_purpose_parse("", 0), -1);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(code_lifecycle),
        cmocka_unit_test(budgets),
        cmocka_unit_test(budget_keys),
        cmocka_unit_test(owner_and_outsider),
        cmocka_unit_test(purposes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
