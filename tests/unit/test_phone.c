/* Unit tests of phone classification (identity/phone.h): valid mobiles per
 * region, refused number types, garbage, too long input, unicode digits. */
#include "test_util.h"

#include "identity/phone.h"

static int parse(const char *s, struct gh_phone *p, const char **why)
{
    return gh_phone_parse(s, strlen(s), false, p, why);
}

static void valid_mobiles(void **state)
{
    static const struct {
        const char *in, *e164, *region;
        unsigned cc;
    } cases[] = {
        {"+8613800138000", "+8613800138000", "CN", 86},
        {"+86 138 0013 8001", "+8613800138001", "CN", 86},
        {"+86-139-1234-5678", "+8613912345678", "CN", 86},
        {"+1 415 555 2671", "+14155552671", "US", 1},
        {"+1 (201) 555-0123", "+12015550123", "US", 1},
        {"+852 9123 4567", "+85291234567", "HK", 852},
        {"+44 7400 123456", "+447400123456", "GB", 44},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        struct gh_phone p;
        const char *why = NULL;
        int rc = parse(cases[i].in, &p, &why);
        if (rc)
            print_error("%s: %s\n", cases[i].in, why);
        assert_int_equal(rc, 0);
        assert_string_equal(p.e164, cases[i].e164);
        assert_string_equal(p.region, cases[i].region);
        assert_int_equal(p.calling_code, cases[i].cc);
        /* the prefix is the number without its last 4 digits */
        assert_int_equal(strlen(p.prefix), strlen(p.e164) - 4);
        assert_memory_equal(p.prefix, p.e164, strlen(p.prefix));
    }
    struct gh_phone p;
    const char *why;
    assert_int_equal(parse("+8613800138000", &p, &why), 0);
    assert_int_equal(p.type, GH_PHONE_MOBILE);
    assert_string_equal(gh_phone_type_name(p.type), "mobile");
}

static void refused_types(void **state)
{
    static const struct {
        const char *in, *word;
    } cases[] = {
        {"+1 900 555 1234", "premium-rate"},
        {"+44 871 234 5678", "premium-rate"}, /* GB 087x: libphonenumber says premium rate */
        {"+1 800 555 1212", "toll-free"},
        {"+44 800 123 4567", "toll-free"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        struct gh_phone p;
        const char *why = NULL;
        assert_int_equal(parse(cases[i].in, &p, &why), GH_EINVAL);
        assert_non_null(why);
        tu_assert_contains(why, cases[i].word);
    }
}

static void garbage(void **state)
{
    static const char *const cases[] = {
        "",       "abc",          "+",       "+86",     "13800138000" /* no + */,
        "+86 138 0013 8000 x", "++8613800138000", "+861380013800099999", "+999 1234 5678",
        "+86\n13800138000", "+86 13800138000;", "+00000000",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        struct gh_phone p;
        const char *why = NULL;
        if (parse(cases[i], &p, &why) != GH_EINVAL) {
            print_error("accepted '%s'\n", cases[i]);
            fail();
        }
        assert_non_null(why);
        tu_assert_prefix(why, "phone:");
    }
}

static void too_long(void **state)
{
    char big[200];
    memset(big, ' ', sizeof big);
    memcpy(big, "+8613800138000", 14);
    struct gh_phone p;
    const char *why = NULL;
    assert_int_equal(gh_phone_parse(big, 65, false, &p, &why), GH_EINVAL);
    tu_assert_contains(why, "too long");
    /* at the limit, padding spaces are fine */
    assert_int_equal(gh_phone_parse(big, 64, false, &p, &why), 0);
    /* a megabyte never reaches the library */
    size_t n = 1u << 20;
    char *huge = malloc(n);
    assert_non_null(huge);
    memset(huge, '1', n);
    huge[0] = '+';
    assert_int_equal(gh_phone_parse(huge, n, false, &p, &why), GH_EINVAL);
    free(huge);
}

static void unicode_digits(void **state)
{
    struct gh_phone p;
    const char *why = NULL;
    /* fullwidth digits, Arabic-Indic digits, a fullwidth plus */
    assert_int_equal(parse("+86\xef\xbc\x91\xef\xbc\x93\xef\xbc\x98" "00138000", &p, &why),
                     GH_EINVAL);
    tu_assert_contains(why, "ASCII");
    assert_int_equal(parse("+86\xd9\xa1\xd9\xa3\xd9\xa8" "00138000", &p, &why), GH_EINVAL);
    assert_int_equal(parse("\xef\xbc\x8b" "8613800138000", &p, &why), GH_EINVAL);
}

static void voip_configurable(void **state)
{
    /* GB 056 numbers are VoIP in libphonenumber's metadata */
    const char *n = "+44 56 1234 5678";
    struct gh_phone p;
    const char *why = NULL;
    int rc = gh_phone_parse(n, strlen(n), false, &p, &why);
    if (rc == 0 && p.type != GH_PHONE_VOIP)
        skip(); /* metadata without this range */
    assert_int_equal(rc, GH_EINVAL);
    tu_assert_contains(why, "VoIP");
    assert_int_equal(gh_phone_parse(n, strlen(n), true, &p, &why), 0);
    assert_int_equal(p.type, GH_PHONE_VOIP);
}

int main(void)
{
    gh_phone_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_mobiles),  cmocka_unit_test(refused_types),
        cmocka_unit_test(garbage),        cmocka_unit_test(too_long),
        cmocka_unit_test(unicode_digits), cmocka_unit_test(voip_configurable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
