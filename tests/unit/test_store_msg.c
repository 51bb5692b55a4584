/* Unit tests of the messages between cluster nodes (store.h,
 * gh_store_msg): each kind encodes to one text and back; payloads that
 * are not a message (wrong version, kind, length, case, a user id of 0 or
 * past 64 bits, a name outside [a-z0-9_.-]) are refused. */
#include "test_util.h"

#include "store/store.h"

static void round_trip(void **state)
{
    struct gh_store_msg m = {.node = 0x0123456789abcdefull, .kind = GH_STORE_MSG_SESSION}, back;
    for (int i = 0; i < 32; i++)
        m.hash[i] = (uint8_t)(i * 7);
    char text[GH_STORE_MSG_MAX];
    int n = gh_store_msg_encode(&m, text, sizeof text);
    assert_int_equal(n, 3 + 16 + 1 + 1 + 1 + 64);
    assert_memory_equal(text, "v1:0123456789abcdef:s:00070e15", 30);
    assert_int_equal(gh_store_msg_decode(text, (size_t)n, &back), 0);
    assert_int_equal(back.kind, 's');
    assert_true(back.node == m.node);
    assert_memory_equal(back.hash, m.hash, 32);

    struct gh_store_msg u = {.node = 1, .kind = GH_STORE_MSG_USER, .user_id = UINT64_MAX};
    n = gh_store_msg_encode(&u, text, sizeof text);
    assert_string_equal(text, "v1:0000000000000001:u:18446744073709551615");
    assert_int_equal(gh_store_msg_decode(text, (size_t)n, &back), 0);
    assert_true(back.user_id == UINT64_MAX);

    struct gh_store_msg d = {.node = 2, .kind = GH_STORE_MSG_SETTING};
    snprintf(d.name, sizeof d.name, "policy");
    n = gh_store_msg_encode(&d, text, sizeof text);
    assert_string_equal(text, "v1:0000000000000002:d:policy");
    assert_int_equal(gh_store_msg_decode(text, (size_t)n, &back), 0);
    assert_string_equal(back.name, "policy");
    /* a small buffer is refused, never overrun */
    assert_int_equal(gh_store_msg_encode(&d, text, 10), GH_EINVAL);
}

static void refusals(void **state)
{
    static const char *const bad[] = {
        "",
        "v2:0000000000000002:d:policy",
        "v1:000000000000002:d:policy",
        "v1:000000000000000G:d:policy",
        "v1:0000000000000002:x:policy",
        "v1:0000000000000002:d:Policy",
        "v1:0000000000000002:d:po licy",
        "v1:0000000000000002:u:0",
        "v1:0000000000000002:u:012",
        "v1:0000000000000002:u:18446744073709551616",
        "v1:0000000000000002:u:-1",
        "v1:0000000000000002:s:00",
        ("v1:0000000000000002:k:"
         "ABCDEF0000000000000000000000000000000000000000000000000000000000"),
    };
    struct gh_store_msg m;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(gh_store_msg_decode(bad[i], strlen(bad[i]), &m), GH_EINVAL);
    struct gh_store_msg z = {.kind = GH_STORE_MSG_USER, .user_id = 0};
    char text[GH_STORE_MSG_MAX];
    assert_int_equal(gh_store_msg_encode(&z, text, sizeof text), GH_EINVAL);
    assert_false(gh_store_setting_name_ok("a-name-of-49-characters-is-one-too-many-for-a-msg"));
    assert_true(gh_store_setting_name_ok("quotas"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
