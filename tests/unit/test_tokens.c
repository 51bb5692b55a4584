/* Unit tests of tokens and the credential cache (identity/tokens.h), and
 * of the login back-off arithmetic (identity/backoff.h). */
#include "test_util.h"

#include "identity/backoff.h"
#include "identity/tokens.h"

#include <sodium.h>

static void formats(void **state)
{
    char s1[GH_TOKEN_B64_LEN + 1], s2[GH_TOKEN_B64_LEN + 1], k[GH_API_KEY_LEN + 1];
    gh_token_new_session(s1);
    gh_token_new_session(s2);
    assert_int_equal(strlen(s1), 43);
    assert_string_not_equal(s1, s2);
    assert_true(gh_token_session_wellformed(s1, strlen(s1)));
    gh_token_new_api_key(k);
    assert_int_equal(strlen(k), 46);
    tu_assert_prefix(k, "sk-");
    assert_true(gh_token_api_key_wellformed(k, strlen(k)));
    assert_false(gh_token_api_key_wellformed(k, strlen(k) - 1));
    assert_false(gh_token_api_key_wellformed(s1, strlen(s1)));
    k[10] = '+';
    assert_false(gh_token_api_key_wellformed(k, strlen(k)));
    /* the CSRF token is bound to the session and differs from it */
    char c1[GH_TOKEN_B64_LEN + 1], c1b[GH_TOKEN_B64_LEN + 1], c2[GH_TOKEN_B64_LEN + 1];
    gh_token_csrf(s1, 43, c1);
    gh_token_csrf(s1, 43, c1b);
    gh_token_csrf(s2, 43, c2);
    assert_string_equal(c1, c1b);
    assert_string_not_equal(c1, c2);
    assert_string_not_equal(c1, s1);
}

static void cache(void **state)
{
    char tok[GH_TOKEN_B64_LEN + 1];
    struct gh_cred c = {.kind = GH_CRED_SESSION, .user_id = 7, .id = 1};
    uint64_t now = gh_wall_ms();
    gh_token_new_session(tok);
    gh_token_hash(tok, 43, c.hash);
    assert_int_equal(gh_tokens_put(&c), 0);
    struct gh_cred out;
    assert_int_equal(gh_tokens_get(c.hash, now, &out), 0);
    assert_int_equal(out.user_id, 7);
    /* many entries of several users; delete one user */
    uint8_t hashes[500][32];
    for (int i = 0; i < 500; i++) {
        struct gh_cred k = {.kind = GH_CRED_KEY, .user_id = 100 + (i % 5), .id = (uint64_t)i};
        char t[GH_API_KEY_LEN + 1];
        gh_token_new_api_key(t);
        gh_token_hash(t, GH_API_KEY_LEN, k.hash);
        memcpy(hashes[i], k.hash, 32);
        assert_int_equal(gh_tokens_put(&k), 0);
    }
    assert_int_equal(gh_tokens_count(), 501);
    assert_int_equal(gh_tokens_del_user(102, 0), 100);
    for (int i = 0; i < 500; i++)
        assert_int_equal(gh_tokens_get(hashes[i], now, &out) == 0, i % 5 != 2);
    assert_int_equal(gh_tokens_del(hashes[0]), 0);
    assert_int_equal(gh_tokens_del(hashes[0]), GH_ENOTFOUND);
    assert_int_equal(gh_tokens_get(hashes[1], now, &out), 0);
    /* absolute and idle expiry */
    struct gh_cred e = {.kind = GH_CRED_SESSION, .user_id = 9, .expires_ms = now + 1000};
    gh_token_new_session(tok);
    gh_token_hash(tok, 43, e.hash);
    assert_int_equal(gh_tokens_put(&e), 0);
    assert_int_equal(gh_tokens_get(e.hash, now + 999, &out), 0);
    assert_int_equal(gh_tokens_get(e.hash, now + 1000, &out), GH_ENOTFOUND);
    struct gh_cred idle = {.kind = GH_CRED_SESSION, .user_id = 9, .idle_ms = 500,
                           .last_seen_ms = now};
    gh_token_new_session(tok);
    gh_token_hash(tok, 43, idle.hash);
    assert_int_equal(gh_tokens_put(&idle), 0);
    assert_int_equal(gh_tokens_get(idle.hash, now + 400, &out), 0); /* seen: clock restarts */
    assert_int_equal(gh_tokens_get(idle.hash, now + 800, &out), 0);
    assert_int_equal(gh_tokens_get(idle.hash, now + 1400, &out), GH_ENOTFOUND);
}

static void full_shard(void **state)
{
    /* a full shard never refuses: it drops its least recently used entry.
     * One credential seen all along survives a flood many times the
     * cache's size; the flood's first entries do not. */
    uint64_t now = gh_wall_ms();
    struct gh_cred keep = {.kind = GH_CRED_SESSION, .user_id = 2, .id = 1, .last_seen_ms = now};
    randombytes_buf(keep.hash, sizeof keep.hash);
    assert_int_equal(gh_tokens_put(&keep), 0);
    uint8_t first[32];
    uint64_t ev0 = gh_tokens_evictions();
    struct gh_cred out;
    for (int i = 0; i < 40000; i++) {
        struct gh_cred k = {.kind = GH_CRED_SESSION, .user_id = 1, .id = (uint64_t)i,
                            .last_seen_ms = now + 1 + (uint64_t)i};
        randombytes_buf(k.hash, sizeof k.hash);
        if (i == 0)
            memcpy(first, k.hash, 32);
        assert_int_equal(gh_tokens_put(&k), 0);
        if (i % 64 == 0) /* the kept one is in use */
            assert_int_equal(gh_tokens_get(keep.hash, now + 2 + (uint64_t)i, &out), 0);
    }
    assert_true(gh_tokens_evictions() > ev0);
    assert_true(gh_tokens_count() <= 64 * 64 * 3 / 4 * 2);
    assert_int_equal(gh_tokens_get(keep.hash, now + 50000, &out), 0);
    assert_int_equal(gh_tokens_get(first, now + 50000, &out), GH_ENOTFOUND);
    gh_tokens_del_user(1, 0);
    gh_tokens_del_user(2, 0);
}

static void buried(void **state)
{
    /* a credential deleted with its account answers not-found from memory,
     * is not removed by gh_tokens_del_user, and is seen by peek */
    uint64_t now = gh_wall_ms();
    struct gh_cred c = {.kind = GH_CRED_SESSION, .user_id = 77, .id = 5};
    randombytes_buf(c.hash, sizeof c.hash);
    assert_int_equal(gh_tokens_put(&c), 0);
    assert_int_equal(gh_tokens_bury(c.hash, 77, now + 60000), 0);
    struct gh_cred out;
    assert_int_equal(gh_tokens_get(c.hash, now, &out), GH_ENOTFOUND);
    assert_int_equal(gh_tokens_del_user(77, 0), 0);
    assert_int_equal(gh_tokens_peek(c.hash, &out), 0);
    assert_int_equal(out.kind, GH_CRED_GONE);
    /* past its expiry the marker goes */
    assert_int_equal(gh_tokens_get(c.hash, now + 60000, &out), GH_ENOTFOUND);
    assert_int_equal(gh_tokens_peek(c.hash, &out), GH_ENOTFOUND);
}

static unsigned rechecks;
static struct gh_cred rechecked;

static void on_recheck(const struct gh_cred *c)
{
    rechecks++;
    rechecked = *c;
}

static void trust_bound(void **state)
{
    /* on a shared store: a credential past the TTL still answers, once
     * asks for a re-read, and the answer replaces or removes it */
    gh_tokens_set_ttl(1000, on_recheck);
    uint64_t now = gh_wall_ms();
    struct gh_cred c = {.kind = GH_CRED_KEY, .user_id = 88, .id = 9, .checked_ms = now};
    randombytes_buf(c.hash, sizeof c.hash);
    assert_int_equal(gh_tokens_put(&c), 0);
    struct gh_cred out;
    rechecks = 0;
    assert_int_equal(gh_tokens_get(c.hash, now + 999, &out), 0);
    assert_int_equal(rechecks, 0);
    assert_int_equal(gh_tokens_get(c.hash, now + 1000, &out), 0);
    assert_int_equal(rechecks, 1);
    assert_memory_equal(rechecked.hash, c.hash, sizeof c.hash);
    /* the others go on trusting it meanwhile: one read per TTL */
    assert_int_equal(gh_tokens_get(c.hash, now + 1500, &out), 0);
    assert_int_equal(rechecks, 1);
    /* still in the store: trusted again; gone from it: removed */
    assert_true(gh_tokens_refresh(c.hash, &c));
    assert_false(gh_tokens_refresh(c.hash, NULL));
    assert_int_equal(gh_tokens_peek(c.hash, &out), GH_ENOTFOUND);
    /* another node ended it: a marker, which a late answer cannot undo */
    assert_int_equal(gh_tokens_put(&c), 0);
    assert_int_equal(gh_tokens_forget(c.hash), 0);
    assert_int_equal(gh_tokens_get(c.hash, now, &out), GH_ENOTFOUND);
    assert_false(gh_tokens_refresh(c.hash, &c));
    assert_int_equal(gh_tokens_peek(c.hash, &out), 0);
    assert_int_equal(out.kind, GH_CRED_GONE);
    assert_int_equal(gh_tokens_forget(c.hash), GH_ENOTFOUND);
    gh_tokens_del(c.hash);
    gh_tokens_set_ttl(0, NULL);
}

static void backoff(void **state)
{
    uint64_t s = 1000, max = 15 * 60 * 1000;
    assert_int_equal(gh_backoff_ms(0, s, max), 0);
    assert_int_equal(gh_backoff_ms(1, s, max), 1000);
    assert_int_equal(gh_backoff_ms(2, s, max), 2000);
    assert_int_equal(gh_backoff_ms(5, s, max), 16000);
    assert_int_equal(gh_backoff_ms(10, s, max), 512000);
    assert_int_equal(gh_backoff_ms(11, s, max), max);
    assert_int_equal(gh_backoff_ms(100, s, max), max);
    assert_int_equal(gh_backoff_ms(4000000000u, s, max), max);
    assert_int_equal(gh_backoff_ms(3, 0, max), 0);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    assert_int_equal(gh_tokens_init(key, 4096), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats),
        cmocka_unit_test(cache),
        cmocka_unit_test(full_shard),
        cmocka_unit_test(buried),
        cmocka_unit_test(trust_bound),
        cmocka_unit_test(backoff),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gh_tokens_dispose();
    return rc;
}
