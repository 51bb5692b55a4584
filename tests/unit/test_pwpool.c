/* Unit tests of the password CPU pool (identity/pwpool.h) and passwords
 * (identity/password.h): login jobs overtake queued registration jobs,
 * the login tiers (known, new, suspect) in order, low queues never take
 * the last free thread, per-queue bounds and deadlines (a full queue drops
 * what is past its deadline), the common list, argon2id round trip. */
#include "test_util.h"

#include "identity/password.h"
#include "identity/pwpool.h"

#include <pthread.h>
#include <sodium.h>
#include <unistd.h>

struct order {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool released;
    int started; /* blockers running */
    int seq[64];
    int n;
    int done;
    int busy;
};

struct item {
    struct order *o;
    int id;
    bool blocker;
};

static void run_item(void *arg)
{
    struct item *it = arg;
    struct order *o = it->o;
    pthread_mutex_lock(&o->mu);
    if (it->blocker) {
        o->started++;
        pthread_cond_broadcast(&o->cv);
        while (!o->released)
            pthread_cond_wait(&o->cv, &o->mu);
    }
    o->seq[o->n++] = it->id;
    pthread_mutex_unlock(&o->mu);
}

static void done_item(struct gh_worker *w, void *arg, int rc)
{
    struct item *it = arg;
    pthread_mutex_lock(&it->o->mu);
    it->o->done++;
    if (rc == GH_EBUSY)
        it->o->busy++;
    pthread_cond_broadcast(&it->o->cv);
    pthread_mutex_unlock(&it->o->mu);
}

/* Waits until n blockers hold their threads: a pool thread on a loaded
 * machine may take longer than any sleep to pick its job up. */
static void wait_started(struct order *o, int n)
{
    pthread_mutex_lock(&o->mu);
    while (o->started < n)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

static void wait_done(struct order *o, int n)
{
    pthread_mutex_lock(&o->mu);
    while (o->done < n)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

static void login_first(void **state)
{
    struct gh_pwpool *p;
    assert_int_equal(gh_pwpool_new(1, 100, 60000, &p), 0);
    struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct item items[22];
    /* a blocker occupies the only thread, then a flood of registrations,
     * then one login submitted last */
    items[0] = (struct item){&o, 0, true};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_REGISTER, run_item, &items[0], NULL, done_item), 0);
    wait_started(&o, 1);
    for (int i = 1; i <= 20; i++) {
        items[i] = (struct item){&o, 100 + i, false};
        assert_int_equal(
            gh_pwpool_submit(p, GH_PW_REGISTER, run_item, &items[i], NULL, done_item), 0);
    }
    items[21] = (struct item){&o, 1, false};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_LOGIN, run_item, &items[21], NULL, done_item), 0);
    assert_int_equal(gh_pwpool_queued(p, GH_PW_REGISTER), 20);
    assert_int_equal(gh_pwpool_queued(p, GH_PW_LOGIN), 1);
    pthread_mutex_lock(&o.mu);
    o.released = true;
    pthread_cond_broadcast(&o.cv);
    pthread_mutex_unlock(&o.mu);
    wait_done(&o, 22);
    assert_int_equal(o.seq[0], 0);
    assert_int_equal(o.seq[1], 1); /* the login ran right after the blocker */
    for (int i = 2; i < 22; i++)
        assert_int_equal(o.seq[i], 100 + i - 1); /* registrations keep their order */
    gh_pwpool_free(p);
}

static void bounded_and_deadline(void **state)
{
    struct gh_pwpool *p;
    assert_int_equal(gh_pwpool_new(1, 3, 50, &p), 0);
    struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct item items[8];
    items[0] = (struct item){&o, 0, true};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_REGISTER, run_item, &items[0], NULL, done_item), 0);
    wait_started(&o, 1);
    for (int i = 1; i <= 3; i++) {
        items[i] = (struct item){&o, i, false};
        assert_int_equal(
            gh_pwpool_submit(p, GH_PW_REGISTER, run_item, &items[i], NULL, done_item), 0);
    }
    items[4] = (struct item){&o, 4, false};
    /* the registration queue is full; the login queue is not */
    assert_int_equal(gh_pwpool_submit(p, GH_PW_REGISTER, run_item, &items[4], NULL, done_item),
                     GH_EBUSY);
    assert_int_equal(gh_pwpool_submit(p, GH_PW_LOGIN, run_item, &items[4], NULL, done_item), 0);
    usleep(120000); /* past the 50 ms deadline of everything queued */
    pthread_mutex_lock(&o.mu);
    o.released = true;
    pthread_cond_broadcast(&o.cv);
    pthread_mutex_unlock(&o.mu);
    wait_done(&o, 5);
    assert_int_equal(o.busy, 4); /* nothing queued ran late */
    assert_int_equal(o.n, 1);
    gh_pwpool_free(p);
}

static void wait_ran(struct order *o, int n)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&o->mu);
        int got = o->n;
        pthread_mutex_unlock(&o->mu);
        if (got >= n)
            return;
        usleep(2000);
    }
    fail_msg("only some jobs ran");
}

static void release(struct order *o)
{
    pthread_mutex_lock(&o->mu);
    o->released = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void tiers_in_order(void **state)
{
    struct gh_pwpool *p;
    assert_int_equal(gh_pwpool_new(1, 100, 60000, &p), 0);
    assert_int_equal(gh_pwpool_set_queue(p, GH_PW_LOGIN_SUSPECT, 10, 60000, true), 0);
    assert_int_equal(gh_pwpool_set_queue(p, GH_PW_REGISTER, 100, 60000, true), 0);
    struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct item items[10];
    items[0] = (struct item){&o, 0, true};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_LOGIN, run_item, &items[0], NULL, done_item), 0);
    wait_started(&o, 1);
    /* submitted lowest tier first; served known, new, registration, suspect */
    static const struct {
        enum gh_pw_prio prio;
        int id;
    } sub[] = {{GH_PW_LOGIN_SUSPECT, 40}, {GH_PW_LOGIN_SUSPECT, 41}, {GH_PW_REGISTER, 30},
               {GH_PW_LOGIN_NEW, 20},     {GH_PW_LOGIN_NEW, 21},     {GH_PW_REGISTER, 31},
               {GH_PW_LOGIN, 10},         {GH_PW_LOGIN_SUSPECT, 42}, {GH_PW_LOGIN, 11}};
    for (int i = 0; i < 9; i++) {
        items[i + 1] = (struct item){&o, sub[i].id, false};
        assert_int_equal(
            gh_pwpool_submit(p, sub[i].prio, run_item, &items[i + 1], NULL, done_item), 0);
    }
    assert_int_equal(gh_pwpool_queued(p, GH_PW_LOGIN_SUSPECT), 3);
    release(&o);
    wait_done(&o, 10);
    static const int want[] = {0, 10, 11, 20, 21, 30, 31, 40, 41, 42};
    for (int i = 0; i < 10; i++)
        assert_int_equal(o.seq[i], want[i]);
    gh_pwpool_free(p);
}

static void low_keeps_a_thread_free(void **state)
{
    struct gh_pwpool *p;
    assert_int_equal(gh_pwpool_new(2, 100, 60000, &p), 0);
    assert_int_equal(gh_pwpool_set_queue(p, GH_PW_LOGIN_SUSPECT, 10, 60000, true), 0);
    struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct item items[4];
    /* a suspect job holds one thread; a second suspect job must wait
     * although the other thread is idle: it is kept for the higher tiers */
    items[0] = (struct item){&o, 0, true};
    assert_int_equal(
        gh_pwpool_submit(p, GH_PW_LOGIN_SUSPECT, run_item, &items[0], NULL, done_item), 0);
    wait_started(&o, 1);
    items[1] = (struct item){&o, 1, false};
    assert_int_equal(
        gh_pwpool_submit(p, GH_PW_LOGIN_SUSPECT, run_item, &items[1], NULL, done_item), 0);
    usleep(50000);
    pthread_mutex_lock(&o.mu);
    assert_int_equal(o.n, 0);
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(gh_pwpool_queued(p, GH_PW_LOGIN_SUSPECT), 1);
    /* a new-source login starts at once on the free thread */
    items[2] = (struct item){&o, 2, false};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_LOGIN_NEW, run_item, &items[2], NULL, done_item),
                     0);
    wait_ran(&o, 1);
    assert_int_equal(o.seq[0], 2);
    /* the blocker ends: the waiting suspect job runs */
    release(&o);
    wait_done(&o, 3);
    assert_int_equal(o.seq[1], 0);
    assert_int_equal(o.seq[2], 1);
    gh_pwpool_free(p);
}

static void full_queue_drops_late_jobs(void **state)
{
    struct gh_pwpool *p;
    assert_int_equal(gh_pwpool_new(1, 100, 60000, &p), 0);
    assert_int_equal(gh_pwpool_set_queue(p, GH_PW_LOGIN_SUSPECT, 2, 30, true), 0);
    assert_int_equal(gh_pwpool_set_queue(p, GH_PW_LOGIN_SUSPECT, 0, 30, true), GH_EINVAL);
    struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct item items[6];
    items[0] = (struct item){&o, 0, true};
    assert_int_equal(gh_pwpool_submit(p, GH_PW_LOGIN, run_item, &items[0], NULL, done_item), 0);
    wait_started(&o, 1);
    for (int i = 1; i <= 2; i++) {
        items[i] = (struct item){&o, i, false};
        assert_int_equal(
            gh_pwpool_submit(p, GH_PW_LOGIN_SUSPECT, run_item, &items[i], NULL, done_item), 0);
    }
    items[3] = (struct item){&o, 3, false};
    assert_int_equal(
        gh_pwpool_submit(p, GH_PW_LOGIN_SUSPECT, run_item, &items[3], NULL, done_item), GH_EBUSY);
    usleep(60000); /* the two queued jobs pass their 30 ms deadline */
    assert_int_equal(
        gh_pwpool_submit(p, GH_PW_LOGIN_SUSPECT, run_item, &items[3], NULL, done_item), 0);
    pthread_mutex_lock(&o.mu);
    assert_int_equal(o.busy, 2); /* answered busy at once, without a thread */
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(gh_pwpool_queued(p, GH_PW_LOGIN_SUSPECT), 1);
    release(&o);
    wait_done(&o, 4);
    assert_int_equal(o.n, 2); /* the blocker and the last job */
    assert_int_equal(o.seq[1], 3);
    gh_pwpool_free(p);
}

static void passwords(void **state)
{
    const char *why = NULL;
    assert_true(gh_password_common_count() >= 10000);
    assert_true(gh_password_is_common("password", 8));
    assert_true(gh_password_is_common("PassWord", 8));
    assert_true(gh_password_is_common("12345678", 8));
    assert_int_equal(gh_password_acceptable("iloveyou1", 9, &why), gh_password_is_common("iloveyou1", 9) ? GH_EINVAL : 0);
    assert_int_equal(gh_password_acceptable("qwertyuiop", 10, &why), GH_EINVAL);
    tu_assert_contains(why, "common");
    assert_int_equal(gh_password_acceptable("short", 5, &why), GH_EINVAL);
    tu_assert_contains(why, "short");
    /* 8 characters of Chinese: 24 bytes, 8 characters, fine */
    const char *zh = "\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81"
                     "\xe5\xaf\x86\xe7\xa0\x81";
    assert_int_equal(gh_password_acceptable(zh, strlen(zh), &why), 0);
    char big[300];
    memset(big, 'x', sizeof big);
    assert_int_equal(gh_password_acceptable(big, 257, &why), GH_EINVAL);
    tu_assert_contains(why, "long");
    assert_int_equal(gh_password_acceptable(big, 256, &why), 0);
    assert_int_equal(gh_password_acceptable("abc\xff\xfe" "defgh", 10, &why), GH_EINVAL);
    assert_int_equal(gh_password_acceptable("correct horse battery", 21, &why), 0);

    char h[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash("correct horse", 13, h), 0);
    tu_assert_prefix(h, "$argon2id$");
    assert_int_equal(gh_password_verify(h, "correct horse", 13), 0);
    assert_int_equal(gh_password_verify(h, "correct hors", 12), GH_EINVAL);
    assert_int_equal(gh_password_verify(NULL, "correct horse", 13), GH_EINVAL);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    assert_int_equal(gh_password_init(1, 8192), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(login_first),
        cmocka_unit_test(bounded_and_deadline),
        cmocka_unit_test(tiers_in_order),
        cmocka_unit_test(low_keeps_a_thread_free),
        cmocka_unit_test(full_queue_drops_late_jobs),
        cmocka_unit_test(passwords),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gh_password_dispose();
    return rc;
}
