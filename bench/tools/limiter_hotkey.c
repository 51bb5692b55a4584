/* This module implements `limiter_hotkey [THREADS [SECONDS [MODE]]]`: a
 * microbenchmark of one limiter key checked by THREADS threads at once
 * (issue 11, item 5: every worker answering 429 to one flooding address).
 * MODE is `refuse` (the key allows 100/s, so nearly every check is a
 * refusal: the flood), `allow` (a rate no thread can reach: the 200 path)
 * or `both`. Each run is measured twice in the same process: through the
 * shared table (gh_limiter_check) and through a reference copy of the
 * table's former hot path (a mutex, the 8-way scan, the GCRA step and the
 * move to the front of the bucket), and the ratio is printed. Also checks
 * that the table let through no more than the GCRA allows in the elapsed
 * time. Exit 0, 1 when that check fails, 2 on a usage error.
 *
 *   build/limiter_hotkey 16 3 both      # 16 threads, 3 s per measurement
 *   taskset -c 0-7 build/limiter_hotkey 8 3 refuse */
#include "core/config.h"
#include "shield/limiter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CLOCK_EVERY 32 /* a clock read per 32 checks: the server reads it once per request batch   \
                        */

/* The reference: the table's hot path before issue 11 (one mutex per shard,
 * the bucket kept in most-recently-used order). */
struct ref_bucket {
    pthread_mutex_t mu;
    struct {
        uint64_t key, tat;
    } s[8];
};

static void ref_check(struct ref_bucket *b, uint64_t key, const struct gh_limit *lim, uint64_t now,
                      struct gh_limit_decision *d)
{
    pthread_mutex_lock(&b->mu);
    int hit = 7;
    for (int i = 0; i < 8; i++)
        if (b->s[i].key == key) {
            hit = i;
            break;
        }
    uint64_t tat = gh_limit_gcra(b->s[hit].tat, lim, 1, now, false, d);
    memmove(&b->s[1], &b->s[0], sizeof b->s[0] * (size_t)hit);
    b->s[0].key = key;
    b->s[0].tat = tat;
    pthread_mutex_unlock(&b->mu);
}

struct run {
    struct gh_limiter *table; /* NULL: the reference */
    struct ref_bucket ref;
    uint64_t key;
    struct gh_limit lim;
    pthread_barrier_t start;
    atomic_bool stop;
    _Atomic uint64_t ops, allowed;
};

static void *worker(void *arg)
{
    struct run *r = arg;
    uint64_t ops = 0, allowed = 0;
    struct gh_limit_decision d;
    pthread_barrier_wait(&r->start);
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        uint64_t now = gh_now_ns();
        for (int i = 0; i < CLOCK_EVERY; i++) {
            if (r->table)
                gh_limiter_check(r->table, r->key, &r->lim, 1, now, false, &d);
            else
                ref_check(&r->ref, r->key, &r->lim, now, &d);
            allowed += d.allowed;
        }
        ops += CLOCK_EVERY;
    }
    atomic_fetch_add(&r->ops, ops);
    atomic_fetch_add(&r->allowed, allowed);
    return NULL;
}

/* Runs threads for secs over the table (or the reference); ops/s into
 * *rate. false when more passed than the GCRA allows. */
static bool measure(unsigned threads, unsigned secs, const struct gh_limit *lim, bool use_table,
                    double *rate)
{
    static struct run r; /* large, and zeroed per run below */
    memset(&r, 0, sizeof r);
    r.lim = *lim;
    if (use_table) {
        r.table = gh_limiter_new(1 << 20);
        if (!r.table)
            return false;
        r.key = gh_limiter_key(r.table, 1, "203.0.113.7", 11);
    } else {
        pthread_mutex_init(&r.ref.mu, NULL);
        r.key = 42;
    }
    pthread_barrier_init(&r.start, NULL, threads + 1);
    pthread_t tid[256];
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, worker, &r);
    pthread_barrier_wait(&r.start);
    uint64_t t0 = gh_now_ns();
    struct timespec ts = {.tv_sec = secs};
    nanosleep(&ts, NULL);
    atomic_store(&r.stop, true);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    uint64_t el = gh_now_ns() - t0;
    *rate = (double)atomic_load(&r.ops) * 1e9 / (double)el;
    /* what the GCRA allows over the run: the burst plus one per T, and a
     * little for the last clock batch */
    uint64_t T = lim->period_ns / lim->count;
    uint64_t bound = (lim->burst ? lim->burst : lim->count) + el / T + 1 + threads * CLOCK_EVERY;
    bool ok = !use_table || atomic_load(&r.allowed) <= bound;
    if (!ok)
        fprintf(stderr, "limiter_hotkey: %llu allowed, more than the GCRA's %llu\n",
                (unsigned long long)atomic_load(&r.allowed), (unsigned long long)bound);
    gh_limiter_free(r.table);
    pthread_barrier_destroy(&r.start);
    return ok;
}

static bool run_mode(unsigned threads, unsigned secs, const char *mode)
{
    struct gh_limit lim = {.period_ns = 1000000000ull, .count = 100};
    if (!strcmp(mode, "allow"))
        lim.count = 1000000000; /* one per ns: nobody is refused */
    double table, ref;
    bool ok = measure(threads, secs, &lim, true, &table);
    measure(threads, secs, &lim, false, &ref);
    printf("mode=%s threads=%u table=%.0f ops/s (%.1f ns per check per thread) "
           "mutex_reference=%.0f ops/s ratio=%.2f\n",
           mode, threads, table, 1e9 * threads / table, ref, table / ref);
    return ok;
}

int main(int argc, char **argv)
{
    uint64_t threads = 2, secs = 2;
    const char *mode = argc > 3 ? argv[3] : "refuse";
    if (argc > 4 || (argc > 1 && (gh_parse_uint(argv[1], 256, &threads) || threads == 0)) ||
        (argc > 2 && (gh_parse_uint(argv[2], 600, &secs) || secs == 0)) ||
        (strcmp(mode, "refuse") && strcmp(mode, "allow") && strcmp(mode, "both"))) {
        fprintf(stderr, "usage: limiter_hotkey [THREADS (1..256, default 2) [SECONDS (default 2) "
                        "[refuse|allow|both]]]\n");
        return 2;
    }
    bool ok = true;
    if (strcmp(mode, "allow"))
        ok &= run_mode((unsigned)threads, (unsigned)secs, "refuse");
    if (strcmp(mode, "refuse"))
        ok &= run_mode((unsigned)threads, (unsigned)secs, "allow");
    return ok ? 0 : 1;
}
