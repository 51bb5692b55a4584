/* Unit tests of the gateway's quotas (gateway/quota.h): GCRA requests and
 * tokens per minute, the daily allowance, concurrency, settling on real
 * usage, the table's capacity and the persisted overrides. */
#include "test_util.h"

#include "gateway/quota.h"

#define SEC 1000000000LL
static const int64_t T0 = 1000 * SEC;

static void requests_per_minute(void **state)
{
    struct gh_quota_state s = {0};
    struct gh_quota_limits l = {.rpm = 3};
    struct gh_quota_info in;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gh_quota_check(&s, &l, T0, 1, 1, true, &in), GH_QUOTA_OK);
        assert_true(in.has_requests);
        assert_int_equal(in.limit_requests, 3);
        assert_int_equal(in.remaining_requests, 2 - i);
    }
    assert_int_equal(in.reset_requests_ms, 60000);
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 1, true, &in), GH_QUOTA_REQUESTS);
    assert_int_equal(in.retry_after_ms, 20000); /* one emission interval */
    /* a refusal takes nothing: still refused a bit before, allowed at 20 s */
    assert_int_equal(gh_quota_check(&s, &l, T0 + 19 * SEC, 1, 1, true, &in), GH_QUOTA_REQUESTS);
    assert_int_equal(gh_quota_check(&s, &l, T0 + 20 * SEC, 1, 1, true, &in), GH_QUOTA_OK);
    assert_int_equal(s.active, 4);
}

static void tokens_per_minute_and_settle(void **state)
{
    struct gh_quota_state s = {0};
    struct gh_quota_limits l = {.tpm = 100};
    struct gh_quota_info in;
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 60, true, &in), GH_QUOTA_OK);
    assert_int_equal(in.remaining_tokens, 40);
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 60, true, &in), GH_QUOTA_TOKENS);
    assert_true(in.retry_after_ms > 0 && in.retry_after_ms <= 12000);
    /* the request used 10, not 60: the 50 come back */
    gh_quota_settle(&s, &l, T0, 1, 60, 10);
    assert_int_equal(s.active, 0);
    assert_int_equal(s.reserved, 0);
    assert_int_equal(s.day_tokens, 10);
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 60, true, &in), GH_QUOTA_OK);
    /* larger than the minute: passes only on a full bucket */
    struct gh_quota_state s2 = {0};
    assert_int_equal(gh_quota_check(&s2, &l, T0, 1, 500, true, &in), GH_QUOTA_OK);
    assert_int_equal(gh_quota_check(&s2, &l, T0 + SEC, 1, 500, true, &in), GH_QUOTA_TOKENS);
}

static void tokens_per_day(void **state)
{
    struct gh_quota_state s = {0};
    struct gh_quota_limits l = {.tpd = 100};
    struct gh_quota_info in;
    assert_int_equal(gh_quota_check(&s, &l, T0, 7, 30, true, &in), GH_QUOTA_OK);
    gh_quota_settle(&s, &l, T0, 7, 30, 99);
    assert_int_equal(gh_quota_check(&s, &l, T0, 7, 30, true, &in), GH_QUOTA_OK);
    gh_quota_settle(&s, &l, T0, 7, 30, 5);
    assert_int_equal(gh_quota_check(&s, &l, T0, 7, 30, true, &in), GH_QUOTA_BALANCE);
    assert_true(in.retry_after_ms > 0 && in.retry_after_ms <= 86400000);
    /* the next UTC day starts afresh */
    assert_int_equal(gh_quota_check(&s, &l, T0, 8, 30, true, &in), GH_QUOTA_OK);
}

static void concurrency(void **state)
{
    struct gh_quota_state s = {0};
    struct gh_quota_limits l = {.concurrency = 1};
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 10, true, NULL), GH_QUOTA_OK);
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 10, true, NULL), GH_QUOTA_CONCURRENCY);
    gh_quota_settle(&s, &l, T0, 1, 10, 3);
    assert_int_equal(gh_quota_check(&s, &l, T0, 1, 10, true, NULL), GH_QUOTA_OK);
}

static void unlimited(void **state)
{
    struct gh_quota_state s = {0};
    struct gh_quota_limits l = {0};
    struct gh_quota_info in;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(gh_quota_check(&s, &l, T0, 1, 100000, true, &in), GH_QUOTA_OK);
    assert_false(in.has_requests);
    assert_false(in.has_tokens);
}

static void table_and_capacity(void **state)
{
    struct gh_quota_table *t = gh_quota_table_new(64);
    assert_non_null(t);
    struct gh_quota_limits l = {.rpm = 1, .concurrency = 1};
    /* key 1 and user 1 are different entries */
    assert_int_equal(gh_quota_admit(t, GH_QUOTA_KEY, 1, &l, T0, 1, 1, true, NULL), GH_QUOTA_OK);
    assert_int_equal(gh_quota_admit(t, GH_QUOTA_USER, 1, &l, T0, 1, 1, true, NULL), GH_QUOTA_OK);
    assert_int_equal(gh_quota_admit(t, GH_QUOTA_KEY, 1, &l, T0, 1, 1, true, NULL),
                     GH_QUOTA_CONCURRENCY);
    gh_quota_release(t, GH_QUOTA_KEY, 1, &l, T0, 1, 1, 1);
    assert_int_equal(gh_quota_admit(t, GH_QUOTA_KEY, 1, &l, T0, 1, 1, true, NULL),
                     GH_QUOTA_REQUESTS);
    /* idle entries make room: a million passers-by fit in a small table */
    struct gh_quota_limits none = {0};
    for (uint64_t id = 100; id < 100000; id++)
        assert_int_equal(gh_quota_admit(t, GH_QUOTA_KEY, id, &none, T0, 1, 1, false, NULL),
                         GH_QUOTA_OK);
    /* busy entries cannot be replaced: the table refuses instead of forgetting them */
    int full = 0;
    for (uint64_t id = 200000; id < 202000; id++)
        full += gh_quota_admit(t, GH_QUOTA_KEY, id, &l, T0, 1, 1, true, NULL) == GH_QUOTA_FULL;
    assert_true(full > 0);
    gh_quota_table_free(t);
}

static void overrides_persist(void **state)
{
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/quotas.json", dir);
    struct gh_quota_table *t = gh_quota_table_new(64);
    struct gh_quota_limits def = {10, 1000, 100000, 4}, eff;
    struct gh_quota_limits set = {5, GH_QUOTA_UNSET, GH_QUOTA_UNSET, GH_QUOTA_UNSET};
    assert_int_equal(gh_quota_set(t, GH_QUOTA_KEY, 42, &set), 0);
    set = (struct gh_quota_limits){GH_QUOTA_UNSET, GH_QUOTA_UNSET, 0, GH_QUOTA_UNSET};
    assert_int_equal(gh_quota_set(t, GH_QUOTA_KEY, 42, &set), 0);
    gh_quota_limits_of(t, GH_QUOTA_KEY, 42, &def, &eff);
    assert_int_equal(eff.rpm, 5);
    assert_int_equal(eff.tpm, 1000);
    assert_int_equal(eff.tpd, 0);
    assert_int_equal(eff.concurrency, 4);
    gh_quota_limits_of(t, GH_QUOTA_USER, 42, &def, &eff);
    assert_int_equal(eff.rpm, 10);
    assert_int_equal(gh_quota_save(t, path), 0);
    gh_quota_table_free(t);

    t = gh_quota_table_new(64);
    assert_int_equal(gh_quota_load(t, path), 0);
    gh_quota_limits_of(t, GH_QUOTA_KEY, 42, &def, &eff);
    assert_int_equal(eff.rpm, 5);
    json_t *list = gh_quota_list(t);
    assert_int_equal(json_array_size(list), 1);
    json_t *row = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(row, "kind")), "key");
    assert_int_equal(json_integer_value(json_object_get(row, "id")), 42);
    json_decref(list);
    assert_int_equal(gh_quota_set(t, GH_QUOTA_KEY, 42, NULL), 0);
    assert_int_equal(gh_quota_set(t, GH_QUOTA_KEY, 42, NULL), GH_ENOTFOUND);
    gh_quota_table_free(t);

    /* a corrupt file is refused, a missing one is fine */
    FILE *f = fopen(path, "w");
    fputs("[1,2", f);
    fclose(f);
    t = gh_quota_table_new(64);
    assert_int_equal(gh_quota_load(t, path), GH_EINVAL);
    unlink(path);
    assert_int_equal(gh_quota_load(t, path), 0);
    gh_quota_table_free(t);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_per_minute), cmocka_unit_test(tokens_per_minute_and_settle),
        cmocka_unit_test(tokens_per_day),      cmocka_unit_test(concurrency),
        cmocka_unit_test(unlimited),           cmocka_unit_test(table_and_capacity),
        cmocka_unit_test(overrides_persist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
