/* Unit tests of the store (store/store.h) on both backends with the same
 * assertions: SQLite always, PostgreSQL when GH_TEST_PG_URL names a
 * database (tests/e2e/store-postgres.test.mjs runs this program against
 * its throwaway server; alone it says the PostgreSQL half was skipped).
 * Covers group commit with a failing job in the middle of a batch (only
 * that job rolls back), migrations applied once (a second open changes
 * nothing), the phone sealed and opened, and the data functions' answers
 * (not found, disabled accounts, revocation, cascade on delete, audit
 * order, settings). */
#include "test_util.h"

#include "store/store.h"

#include <pthread.h>
#include <sodium.h>

#define BATCH 40

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned left;
};

struct ins {
    struct waiter *w;
    struct gh_user u;
    int rc;
};

static void wait_done(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->left)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void one_done(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->left--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int ins_fn(struct gh_store_conn *c, void *arg)
{
    struct ins *x = arg;
    return gh_store_user_insert(c, &x->u);
}

static void ins_done(struct gh_worker *w, void *arg, int rc)
{
    struct ins *x = arg;
    x->rc = rc;
    one_done(x->w);
}

static void phone_of(unsigned i, struct gh_user *u)
{
    memset(u, 0, sizeof *u);
    snprintf(u->phone, sizeof u->phone, "+861380013%04u", i);
    crypto_generichash(u->phone_hash, 32, (const uint8_t *)u->phone, strlen(u->phone), NULL, 0);
    snprintf(u->region, sizeof u->region, "CN");
    u->calling_code = 86;
    snprintf(u->pw_hash, sizeof u->pw_hash, "$argon2id$test");
    u->created_ms = 1000 + i;
}

/* ---- a job run synchronously: fn on the writer, wait for its answer ---- */

struct sync_job {
    struct waiter w;
    int (*fn)(struct gh_store_conn *, void *);
    void *arg;
    int rc;
};

static int sync_fn(struct gh_store_conn *c, void *arg)
{
    struct sync_job *j = arg;
    return j->fn(c, j->arg);
}

static void sync_done(struct gh_worker *w, void *arg, int rc)
{
    struct sync_job *j = arg;
    j->rc = rc;
    one_done(&j->w);
}

static int run_write(struct gh_store *s, int (*fn)(struct gh_store_conn *, void *), void *arg)
{
    struct sync_job j = {
        .w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1}, .fn = fn, .arg = arg};
    assert_int_equal(gh_store_write(s, sync_fn, &j, NULL, sync_done), 0);
    wait_done(&j.w);
    return j.rc;
}

static int run_read(struct gh_store *s, int (*fn)(struct gh_store_conn *, void *), void *arg)
{
    struct sync_job j = {
        .w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1}, .fn = fn, .arg = arg};
    assert_int_equal(gh_store_read(s, sync_fn, &j, NULL, sync_done), 0);
    wait_done(&j.w);
    return j.rc;
}

/* ---- the scenario, on a store of either backend ---- */

static void count_session(const struct gh_store_session *s, void *arg)
{
    (*(unsigned *)arg)++;
}
static void count_key(const struct gh_store_key *k, void *arg)
{
    (*(unsigned *)arg)++;
}

static struct gh_store_usage usage_seen[4];
static void usage_cb(const struct gh_store_usage *r, void *arg)
{
    unsigned *n = arg;
    if (*n < 4)
        usage_seen[*n] = *r;
    (*n)++;
}

static uint64_t audit_seen[4];
static void audit_cb(const struct gh_store_audit *a, void *arg)
{
    unsigned *n = arg;
    if (*n < 4)
        audit_seen[*n] = a->ts_ms;
    (*n)++;
}

/* Job functions run on a store thread, where a cmocka assertion cannot
 * jump: they note the failing line and fail the job instead. */
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fail_line = __LINE__;                                                                  \
            return GH_EIO;                                                                         \
        }                                                                                          \
    } while (0)

static int fail_line;

struct world {
    uint64_t uid, uid2;
    uint8_t shash[32], khash[32];
    uint64_t kid;
};

static int data_fn(struct gh_store_conn *c, void *arg)
{
    struct world *w = arg;
    struct gh_user u, got;
    phone_of(9000, &u);
    CHECK((gh_store_user_insert(c, &u)) == (0));
    w->uid = u.id;
    CHECK((gh_store_user_by_phone(c, u.phone_hash, &got)) == (0));
    CHECK(!strcmp(got.phone, "+8613800139000")); /* sealed, then opened */
    CHECK((got.id) == (u.id));
    CHECK((got.calling_code) == (86));
    CHECK(!strcmp(got.region, "CN"));
    uint8_t none[32] = {1};
    CHECK((gh_store_user_by_phone(c, none, &got)) == (GH_ENOTFOUND));
    CHECK((gh_store_user_by_id(c, 999999999, &got)) == (GH_ENOTFOUND));

    CHECK((gh_store_user_login_result(c, u.id, false, 0)) == (0));
    CHECK((gh_store_user_login_result(c, u.id, false, 0)) == (0));
    CHECK((gh_store_user_by_id(c, u.id, &got)) == (0));
    CHECK((got.failed_logins) == (2));
    CHECK((gh_store_user_login_result(c, u.id, true, 5555)) == (0));
    CHECK((gh_store_user_by_id(c, u.id, &got)) == (0));
    CHECK((got.failed_logins) == (0));
    CHECK((got.last_login_ms) == (5555));
    CHECK((gh_store_user_set_password(c, u.id, "$argon2id$new")) == (0));
    CHECK((gh_store_user_set_password(c, 999999999, "x")) == (GH_ENOTFOUND));

    struct gh_store_session s = {.user_id = u.id, .created_ms = 1, .expires_ms = 10000};
    randombytes_buf(s.hash, 32);
    memcpy(w->shash, s.hash, 32);
    CHECK((gh_store_session_insert(c, &s)) == (0));
    CHECK(s.id > 0);
    struct gh_store_session sg;
    CHECK((gh_store_session_by_hash(c, s.hash, 5000, &sg)) == (0));
    CHECK((sg.user_id) == (u.id));
    CHECK((gh_store_session_by_hash(c, s.hash, 20000, &sg)) == (GH_ENOTFOUND));

    struct gh_store_key k = {.user_id = u.id, .created_ms = 2};
    randombytes_buf(k.hash, 32);
    memcpy(w->khash, k.hash, 32);
    snprintf(k.prefix, sizeof k.prefix, "sk-abc");
    snprintf(k.name, sizeof k.name, "laptop");
    CHECK((gh_store_key_insert(c, &k)) == (0));
    w->kid = k.id;
    struct gh_store_key kg;
    CHECK((gh_store_key_by_hash(c, k.hash, &kg)) == (0));
    CHECK(!strcmp(kg.name, "laptop"));
    CHECK((gh_store_key_touch(c, k.id, 77)) == (0));
    CHECK((gh_store_key_get(c, k.id, &kg)) == (0));
    CHECK((kg.last_used_ms) == (77));
    CHECK((gh_store_keys_live_count(c, u.id)) == (1));

    /* a disabled account: no new session or key, left out of the loads */
    CHECK((gh_store_user_set_disabled(c, u.id, 123)) == (0));
    struct gh_store_session s2 = {.user_id = u.id, .expires_ms = 10000};
    randombytes_buf(s2.hash, 32);
    CHECK((gh_store_session_insert(c, &s2)) == (GH_ENOTFOUND));
    CHECK((gh_store_session_by_hash(c, s.hash, 5000, &sg)) == (GH_ENOTFOUND));
    CHECK((gh_store_key_by_hash(c, k.hash, &kg)) == (GH_ENOTFOUND));
    unsigned n = 0;
    CHECK((gh_store_sessions_each(c, 0, 5000, count_session, &n)) == (0));
    CHECK((n) == (0));
    n = 0;
    CHECK((gh_store_keys_each(c, 0, false, count_key, &n)) == (0));
    CHECK((n) == (0));
    CHECK((gh_store_user_set_disabled(c, u.id, 0)) == (0));
    n = 0;
    CHECK((gh_store_sessions_each(c, 0, 5000, count_session, &n)) == (0));
    CHECK((n) == (1));
    n = 0;
    CHECK((gh_store_sessions_each(c, u.id, 0, count_session, &n)) == (0));
    CHECK((n) == (1));

    /* revocation */
    CHECK((gh_store_key_revoke(c, u.id + 1, k.id, 99, &kg)) == (GH_ENOTFOUND));
    CHECK((gh_store_key_revoke(c, u.id, k.id, 99, &kg)) == (0));
    CHECK((kg.revoked_ms) == (99));
    CHECK(!strcmp(kg.prefix, "sk-abc"));
    CHECK((gh_store_key_revoke(c, u.id, k.id, 100, &kg)) == (GH_ENOTFOUND));
    CHECK((gh_store_keys_live_count(c, u.id)) == (0));
    n = 0;
    CHECK((gh_store_keys_each(c, u.id, true, count_key, &n)) == (0));
    CHECK((n) == (1));
    n = 0;
    CHECK((gh_store_keys_each(c, u.id, false, count_key, &n)) == (0));
    CHECK((n) == (0));

    /* audit: newest first, at most limit */
    for (uint64_t t = 1; t <= 3; t++) {
        struct gh_store_audit a = {.ts_ms = t, .user_id = u.id};
        snprintf(a.event, sizeof a.event, "e%llu", (unsigned long long)t);
        CHECK((gh_store_audit_insert(c, &a)) == (0));
    }
    n = 0;
    CHECK((gh_store_audit_each(c, u.id, 2, audit_cb, &n)) == (0));
    CHECK((n) == (2));
    CHECK((audit_seen[0]) == (3));
    CHECK((audit_seen[1]) == (2));

    /* usage: adds to one row per (day, key, user), newest day first */
    struct gh_store_usage d1 = {.day = 20000, .key_id = 7, .user_id = u.id, .requests = 1,
                                .prompt_tokens = 11, .completion_tokens = 7, .cached_tokens = 8,
                                .reasoning_tokens = 4};
    CHECK((gh_store_usage_add(c, &d1)) == (0));
    d1.cut_short = 1;
    CHECK((gh_store_usage_add(c, &d1)) == (0));
    struct gh_store_usage d2 = {.day = 20001, .key_id = 7, .user_id = u.id, .requests = 3};
    CHECK((gh_store_usage_add(c, &d2)) == (0));
    struct gh_store_usage old = {.day = 19000, .key_id = 7, .user_id = u.id, .requests = 9};
    CHECK((gh_store_usage_add(c, &old)) == (0));
    n = 0;
    CHECK((gh_store_usage_each(c, 19999, 10, usage_cb, &n)) == (0));
    CHECK((n) == (2));
    CHECK((usage_seen[0].day) == (20001) && (usage_seen[0].requests) == (3));
    CHECK((usage_seen[1].day) == (20000) && (usage_seen[1].requests) == (2));
    CHECK((usage_seen[1].prompt_tokens) == (22) && (usage_seen[1].completion_tokens) == (14));
    CHECK((usage_seen[1].cached_tokens) == (16) && (usage_seen[1].reasoning_tokens) == (8));
    CHECK((usage_seen[1].cut_short) == (1) && (usage_seen[1].key_id) == (7));
    CHECK((usage_seen[1].user_id) == (u.id));
    n = 0;
    CHECK((gh_store_usage_each(c, 0, 1, usage_cb, &n)) == (0));
    CHECK((n) == (1));

    /* settings */
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    CHECK((gh_store_setting_get(c, "policy", &b)) == (GH_ENOTFOUND));
    CHECK((gh_store_setting_put(c, "policy", "{\"mode\":\"open\"}")) == (0));
    CHECK((gh_store_setting_put(c, "policy", "{\"mode\":\"busy\"}")) == (0));
    CHECK((gh_store_setting_get(c, "policy", &b)) == (0));
    CHECK(!strcmp(b.data, "{\"mode\":\"busy\"}"));
    gh_buf_dispose(&b);

    /* a second session, then deletes */
    struct gh_store_session s3 = {.user_id = u.id, .expires_ms = 10000};
    randombytes_buf(s3.hash, 32);
    CHECK((gh_store_session_insert(c, &s3)) == (0));
    CHECK((gh_store_session_delete(c, s3.hash)) == (0));
    CHECK((gh_store_session_delete(c, s3.hash)) == (GH_ENOTFOUND));
    CHECK((gh_store_sessions_delete_user(c, u.id)) == (1));

    struct gh_user u2;
    phone_of(9001, &u2);
    CHECK((gh_store_user_insert(c, &u2)) == (0));
    w->uid2 = u2.id;
    /* the fair queue's established tier: the newest user created before a time */
    uint64_t newest = 99;
    CHECK((gh_store_user_newest_before(c, UINT64_MAX, &newest)) == (0));
    CHECK((newest) == (u2.id));
    CHECK((gh_store_user_newest_before(c, 0, &newest)) == (0));
    CHECK((newest) == (0));
    struct gh_store_key k2 = {.user_id = u2.id};
    randombytes_buf(k2.hash, 32);
    snprintf(k2.name, sizeof k2.name, "a");
    snprintf(k2.prefix, sizeof k2.prefix, "sk-a");
    CHECK((gh_store_key_insert(c, &k2)) == (0));
    struct gh_store_key k3 = k2;
    randombytes_buf(k3.hash, 32);
    CHECK((gh_store_key_insert(c, &k3)) == (0));
    CHECK((gh_store_keys_revoke_user(c, u2.id, 5)) == (2));
    struct gh_store_session s4 = {.user_id = u2.id, .expires_ms = 10000};
    randombytes_buf(s4.hash, 32);
    CHECK((gh_store_session_insert(c, &s4)) == (0));
    CHECK((gh_store_user_delete(c, u2.id)) == (0));
    CHECK((gh_store_user_delete(c, u2.id)) == (GH_ENOTFOUND));
    n = 0;
    CHECK((gh_store_sessions_each(c, u2.id, 0, count_session, &n)) == (0));
    CHECK((n) == (0));
    n = 0;
    CHECK((gh_store_keys_each(c, u2.id, true, count_key, &n)) == (0));
    CHECK((n) == (0));
    return 0;
}

/* SMS codes and the SMS outbox: postgres only (sqlite answers GH_EINVAL). */
struct claimed {
    unsigned n;
    uint64_t id;
    char msg[16];
    size_t len;
};

static void claim_cb(uint64_t id, const void *msg, size_t len, void *arg)
{
    struct claimed *cl = arg;
    cl->n++;
    cl->id = id;
    cl->len = len < sizeof cl->msg ? len : sizeof cl->msg;
    memcpy(cl->msg, msg, cl->len);
}

static int code_check(struct gh_store_conn *c, const uint8_t *key, const uint8_t *h, uint64_t now)
{
    int res = 99;
    int rc = gh_store_sms_code_check(c, key, h, now, &res);
    return rc ? rc * 1000 : res;
}

static int sms_fn(struct gh_store_conn *c, void *arg)
{
    bool pg = *(const bool *)arg;
    uint8_t key[32] = {7}, h[32] = {8}, bad[32] = {9};
    uint64_t now = gh_wall_ms(), id = 0, id2 = 0;
    if (!pg) {
        CHECK(gh_store_sms_code_put(c, key, h, now + 1000, 2) == GH_EINVAL);
        CHECK(gh_store_sms_outbox_add(c, "x", 1, now, &id) == GH_EINVAL);
        return 0;
    }
    CHECK(code_check(c, key, h, now) == GH_ENOTFOUND);
    CHECK(gh_store_sms_code_put(c, key, h, now + 60000, 2) == 0);
    CHECK(code_check(c, key, bad, now) == GH_EINVAL); /* a try used */
    CHECK(code_check(c, key, h, now) == 0);           /* right: consumed */
    CHECK(code_check(c, key, h, now) == GH_ENOTFOUND);
    CHECK(gh_store_sms_code_put(c, key, h, now + 60000, 2) == 0);
    CHECK(code_check(c, key, bad, now) == GH_EINVAL);
    CHECK(code_check(c, key, bad, now) == GH_EINVAL); /* the last try kills it */
    CHECK(code_check(c, key, h, now) == GH_ENOTFOUND);
    CHECK(gh_store_sms_code_put(c, key, h, now + 10, 5) == 0);
    CHECK(code_check(c, key, h, now + 10) == GH_ENOTFOUND); /* expired */

    CHECK(gh_store_sms_outbox_add(c, "hello", 5, now - 1, &id) == 0 && id);
    CHECK(gh_store_sms_outbox_add(c, "later", 5, now + 60000, &id2) == 0 && id2 > id);
    struct claimed cl = {0};
    CHECK(gh_store_sms_outbox_claim(c, now, now + 60000, 10, claim_cb, &cl) == 1);
    CHECK(cl.n == 1 && cl.id == id && cl.len == 5 && !memcmp(cl.msg, "hello", 5));
    CHECK(gh_store_sms_outbox_claim(c, now, now + 60000, 10, claim_cb, &cl) == 0); /* leased */
    CHECK(gh_store_sms_outbox_delete(c, id) == 0);
    CHECK(gh_store_sms_outbox_delete(c, id) == GH_ENOTFOUND);
    CHECK(gh_store_sms_outbox_delete(c, id2) == 0);
    return 0;
}

static int read_fn(struct gh_store_conn *c, void *arg)
{
    struct world *w = arg;
    struct gh_user got;
    CHECK((gh_store_user_by_id(c, w->uid, &got)) == (0));
    CHECK(!strcmp(got.pw_hash, "$argon2id$new"));
    CHECK(!strcmp(got.phone, "+8613800139000"));
    return 0;
}

static int count_users_fn(struct gh_store_conn *c, void *arg)
{
    unsigned *n = arg;
    struct gh_user got;
    for (unsigned i = 0; i < BATCH; i++) {
        struct gh_user u;
        phone_of(i, &u);
        if (gh_store_user_by_phone(c, u.phone_hash, &got) == 0)
            (*n)++;
    }
    return 0;
}

static void scenario(const struct gh_store_options *o)
{
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    struct gh_store_options so = *o;
    so.enc_key = key;
    so.queue_max = 1000;
    so.readers = 2;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_store *s = NULL;
    if (gh_store_open(&so, &s, &err))
        fail_msg("open %s: %s", o->backend, err.data ? err.data : "?");

    /* a burst queued at once: the writer runs it in few transactions;
     * every fifth job repeats an earlier number and fails alone */
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, BATCH};
    static struct ins jobs[BATCH];
    for (unsigned i = 0; i < BATCH; i++) {
        jobs[i].w = &w;
        phone_of(i % 5 == 4 ? i - 1 : i, &jobs[i].u);
        assert_int_equal(gh_store_write(s, ins_fn, &jobs[i], NULL, ins_done), 0);
    }
    wait_done(&w);
    for (unsigned i = 0; i < BATCH; i++)
        assert_int_equal(jobs[i].rc, i % 5 == 4 ? GH_EEXIST : 0);
    unsigned n = 0;
    fail_line = 0;
    assert_int_equal(run_read(s, count_users_fn, &n), 0);
    assert_int_equal(n, BATCH - BATCH / 5);

    struct world wd = {0};
    if (run_write(s, data_fn, &wd) || run_read(s, read_fn, &wd))
        fail_msg("%s: check at line %d failed", o->backend, fail_line);
    bool pg = !strcmp(o->backend, "postgres");
    if (run_write(s, sms_fn, &pg))
        fail_msg("%s: SMS check at line %d failed", o->backend, fail_line);
    gh_store_close(s);

    /* opened again: migrations already applied, the data still there */
    s = NULL;
    if (gh_store_open(&so, &s, &err))
        fail_msg("reopen %s: %s", o->backend, err.data ? err.data : "?");
    if (run_read(s, read_fn, &wd))
        fail_msg("%s reopened: check at line %d failed", o->backend, fail_line);
    gh_store_close(s);
    gh_buf_dispose(&err);
}

static void test_sqlite(void **state)
{
    (void)state;
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/store.db", dir);
    struct gh_store_options o = {.backend = "sqlite", .path = path};
    scenario(&o);
    tu_rmtree(dir);
}

static void test_postgres(void **state)
{
    (void)state;
    const char *url = getenv("GH_TEST_PG_URL");
    if (!url || !*url) {
        printf("test_postgres: skipped (GH_TEST_PG_URL unset; tests/e2e/store-postgres.test.mjs "
               "runs this against a throwaway PostgreSQL)\n");
        skip();
    }
    struct gh_store_options o = {.backend = "postgres",
                                 .url = url,
                                 .connect_timeout_ms = 5000,
                                 .statement_timeout_ms = 10000};
    scenario(&o);
}

static void test_unknown_backend(void **state)
{
    (void)state;
    uint8_t key[32] = {0};
    struct gh_store_options o = {.backend = "mongo", .enc_key = key};
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_store *s = NULL;
    assert_int_equal(gh_store_open(&o, &s, &err), GH_EINVAL);
    assert_non_null(strstr(err.data, "unknown backend"));
    gh_buf_dispose(&err);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite),
        cmocka_unit_test(test_postgres),
        cmocka_unit_test(test_unknown_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
