/* This program implements the store benchmark's load (bench/store.sh):
 * registrations written through gh_store_write exactly as the identity
 * module writes them (a user with a sealed phone, its login result, a
 * session, an audit row: one job), against either backend.
 *
 *   store_bench sqlite PATH N CONCURRENCY
 *   store_bench postgres URL N CONCURRENCY
 *
 * Keeps CONCURRENCY jobs queued at once (the writer groups them into
 * transactions, up to 128 a transaction) until N have finished, then
 * prints one JSON line {"backend","n","concurrency","ok","seconds","per_s"}.
 * No worker loop: callbacks run on the store thread (w = NULL). */
#include "store/store.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned inflight, done, ok;
};

struct reg {
    struct bench *b;
    unsigned seq;
};

static int reg_fn(struct gh_store_conn *c, void *arg)
{
    struct reg *r = arg;
    struct gh_user u = {0};
    snprintf(u.phone, sizeof u.phone, "+8613%09u", r->seq);
    crypto_generichash(u.phone_hash, 32, (const uint8_t *)u.phone, strlen(u.phone), NULL, 0);
    snprintf(u.region, sizeof u.region, "CN");
    u.calling_code = 86;
    snprintf(u.pw_hash, sizeof u.pw_hash,
             "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
             "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g");
    u.created_ms = gh_wall_ms();
    int rc = gh_store_user_insert(c, &u);
    if (rc)
        return rc;
    gh_store_user_login_result(c, u.id, true, u.created_ms);
    struct gh_store_session s = {
        .user_id = u.id, .created_ms = u.created_ms, .expires_ms = u.created_ms + 86400000};
    randombytes_buf(s.hash, sizeof s.hash);
    rc = gh_store_session_insert(c, &s);
    if (rc)
        return rc;
    struct gh_store_audit a = {.ts_ms = u.created_ms, .user_id = u.id};
    snprintf(a.event, sizeof a.event, "register");
    snprintf(a.detail, sizeof a.detail, "{\"phone\":\"+86 138****%04u\",\"region\":\"CN\"}",
             r->seq % 10000);
    return gh_store_audit_insert(c, &a);
}

static void reg_done(struct gh_worker *w, void *arg, int rc)
{
    struct reg *r = arg;
    struct bench *b = r->b;
    pthread_mutex_lock(&b->mu);
    b->inflight--;
    b->done++;
    b->ok += rc == 0;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    free(r);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "sqlite") && strcmp(argv[1], "postgres"))) {
        fprintf(stderr, "usage: store_bench sqlite PATH|postgres URL N CONCURRENCY\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    unsigned n = (unsigned)strtoul(argv[3], NULL, 10);
    unsigned conc = (unsigned)strtoul(argv[4], NULL, 10);
    if (!n || !conc || conc > 100000)
        return 2;
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    bool pg = !strcmp(argv[1], "postgres");
    struct gh_store_options o = {.backend = argv[1],
                                 .path = pg ? NULL : argv[2],
                                 .url = pg ? argv[2] : NULL,
                                 .connect_timeout_ms = 5000,
                                 .statement_timeout_ms = 10000,
                                 .enc_key = key,
                                 .queue_max = conc + 16,
                                 .readers = 1};
    struct gh_store *s = NULL;
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    if (gh_store_open(&o, &s, &err)) {
        fprintf(stderr, "store_bench: %s\n", err.data ? err.data : "cannot open");
        return 1;
    }
    struct bench b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    unsigned base = (unsigned)(randombytes_uniform(90000) * 10000u);
    uint64_t t0 = gh_now_ns();
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&b.mu);
        while (b.inflight >= conc)
            pthread_cond_wait(&b.cv, &b.mu);
        b.inflight++;
        pthread_mutex_unlock(&b.mu);
        struct reg *r = malloc(sizeof *r);
        if (!r)
            return 1;
        r->b = &b;
        r->seq = base + i;
        if (gh_store_write(s, reg_fn, r, NULL, reg_done))
            reg_done(NULL, r, GH_EBUSY);
    }
    pthread_mutex_lock(&b.mu);
    while (b.done < n)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    double secs = (double)(gh_now_ns() - t0) / 1e9;
    gh_store_close(s);
    gh_buf_dispose(&err);
    printf("{\"backend\":\"%s\",\"n\":%u,\"concurrency\":%u,\"ok\":%u,\"seconds\":%.3f,"
           "\"per_s\":%.1f}\n",
           argv[1], n, conc, b.ok, secs, (double)n / secs);
    return b.ok == n ? 0 : 1;
}
