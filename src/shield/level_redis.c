/* This module implements the attack level of a cluster (level_redis.h):
 * periods aligned on the wall clock, each node's events and pressure added
 * to the period's hash in Redis every [redis] level_flush, the cluster's
 * sums read back once the period is over and fed to the level machine,
 * and this node's own signals for a period whose sums Redis could not
 * give. */
#include "shield/level_redis.h"

#include "core/log.h"
#include "obs/metrics.h"
#include "shield/cluster.h"
#include "shield/redis.h"
#include "shield/shield.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS GH_LEVEL_TALLY_SLOTS
#define NEV   GH_LEVEL_EV_COUNT
/* the sums' answer: per event its capped events and its slots, then the
 * nodes' mean queue delay and loop lag */
#define NSUMS (2 * NEV + 2)
/* "FIELD COUNT " at most: a field below NEV × SLOTS, a 32-bit count */
#define PACK_ENTRY 18

/* KEYS[1] a period's hash; ARGV: its lifetime in ms, this node's worst
 * queue delay of the period so far and its loop lag now in ms, "FIELD
 * COUNT …" pairs (field = event × slots + slot) added to the sums, and
 * this node's id: its pressure is kept as its own fields "q.ID" (the
 * period's worst) and "l.ID" (the last sample). */
static const char add_lua[] =
    "local k = KEYS[1]\n"
    "for f, n in string.gmatch(ARGV[4], '(%d+) (%d+)') do redis.call('HINCRBY', k, f, n) end\n"
    "local q, qf = tonumber(ARGV[2]), 'q.' .. ARGV[5]\n"
    "if q > tonumber(redis.call('HGET', k, qf) or '-1') then redis.call('HSET', k, qf, q) end\n"
    "redis.call('HSET', k, 'l.' .. ARGV[5], ARGV[3])\n"
    "redis.call('PEXPIRE', k, ARGV[1])\n"
    "return {1}\n";

/* KEYS[1] a period's hash; ARGV: the events one slot adds at most (0 = no
 * cap), the slots per event, the events. Answers per event {capped sum,
 * slots used}, then the nodes' mean queue delay and loop lag. */
static const char sum_lua[] =
    "local cap, slots, nev = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local r, qs, qn, ls, ln = {}, 0, 0, 0, 0\n"
    "for i = 1, 2 * nev + 2 do r[i] = 0 end\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #h, 2 do\n"
    "  local f, v = h[i], tonumber(h[i + 1])\n"
    "  local p = string.sub(f, 1, 2)\n"
    "  if p == 'q.' then qs, qn = qs + v, qn + 1\n"
    "  elseif p == 'l.' then ls, ln = ls + v, ln + 1\n"
    "  elseif v > 0 then\n"
    "    local ev = math.floor(tonumber(f) / slots)\n"
    "    if ev < nev then\n"
    "      if cap > 0 and v > cap then v = cap end\n"
    "      r[2 * ev + 1] = r[2 * ev + 1] + v\n"
    "      r[2 * ev + 2] = r[2 * ev + 2] + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if qn > 0 then r[2 * nev + 1] = math.floor(qs / qn) end\n"
    "if ln > 0 then r[2 * nev + 2] = math.floor(ls / ln) end\n"
    "return r\n";

struct lvl {
    struct gh_redis *redis;
    struct gh_worker *w; /* the first public worker */
    uint64_t interval_ms, flush_ms, settle_ms;
    uv_timer_t timer;
    bool timer_on;
    /* this node's own signals per period, by the period's parity: what
     * the level is fed when the cluster's sums are missing */
    struct {
        uint64_t period; /* which period it holds (UINT64_MAX: none) */
        struct gh_level_tally *tally;
        double queue_ms, lag_ms;
        bool failed; /* an addition of this node's did not reach Redis */
    } own[2];
    uint64_t last_fed; /* the last period fed */
    bool reading;
    bool local;   /* the last period was fed from this node's own signals */
    bool enabled; /* the shield was on at the last flush */
    char *pack;
    char id[17]; /* this node's, in the periods' hashes */
    atomic_bool on;
    _Atomic uint64_t *m_feeds[2]; /* cluster, local */
};

static struct lvl *the_lvl;

bool gh_level_redis_on(void)
{
    struct lvl *L = the_lvl;
    return L && atomic_load_explicit(&L->on, memory_order_relaxed);
}

static void period_key(struct lvl *L, uint64_t period, char out[GH_REDIS_KEY_MAX])
{
    gh_redis_key(L->redis, "level", &period, sizeof period, out);
}

static void own_reset(struct lvl *L, unsigned i, uint64_t period)
{
    for (unsigned ev = 0; ev < NEV; ev++)
        for (unsigned s = 0; s < SLOTS; s++)
            atomic_store_explicit(&L->own[i].tally->slot[ev][s], 0, memory_order_relaxed);
    L->own[i].period = period;
    L->own[i].queue_ms = L->own[i].lag_ms = 0;
    L->own[i].failed = false;
}

/* ---- feeding ---- */

static void feed(struct lvl *L, uint64_t period, const long long *v)
{
    struct gh_level_machine *m = gh_shield_level_machine();
    unsigned i = period & 1;
    bool mine = L->own[i].period == period;
    /* the cluster's sums are whole only if this node's additions landed */
    bool cluster = v && !(mine && L->own[i].failed);
    L->reading = false;
    L->last_fed = period;
    if (!m)
        return;
    struct gh_level_signals s = {0};
    bool enabled = L->enabled;
    double dt = (double)L->interval_ms / 1000.0;
    uint64_t now = gh_now_ms();
    if (cluster) {
        struct gh_level_counts c = {0};
        for (unsigned ev = 0; ev < NEV && enabled; ev++) {
            c.events[ev] = v[2 * ev] > 0 ? (double)v[2 * ev] : 0;
            c.slots[ev] = v[2 * ev + 1] > 0 ? (unsigned)GH_MIN(v[2 * ev + 1], (long long)SLOTS) : 0;
        }
        s.queue_delay_ms = enabled && v[2 * NEV] > 0 ? (double)v[2 * NEV] : 0;
        s.loop_lag_ms = enabled && v[2 * NEV + 1] > 0 ? (double)v[2 * NEV + 1] : 0;
        gh_level_feed_counts(m, &c, dt, &s, now);
    } else {
        if (mine && enabled) {
            s.queue_delay_ms = L->own[i].queue_ms;
            s.loop_lag_ms = L->own[i].lag_ms;
        }
        if (mine && enabled) {
            gh_level_feed_tally(m, L->own[i].tally, dt, &s, now);
        } else {
            struct gh_level_counts c = {0};
            gh_level_feed_counts(m, &c, dt, &s, now);
        }
    }
    if (mine)
        own_reset(L, i, UINT64_MAX);
    gh_shield_level_fed(&s);
    if (L->m_feeds[cluster ? 0 : 1])
        atomic_fetch_add_explicit(L->m_feeds[cluster ? 0 : 1], 1, memory_order_relaxed);
    if (cluster == !L->local)
        return;
    L->local = !cluster;
    if (cluster)
        gh_log(GH_LOG_INFO, "level_cluster",
               "the attack level follows the cluster's signals again (Redis answers)");
    else
        gh_log(GH_LOG_WARN, "level_local",
               "the attack level follows this node's own signals: the cluster's sums are "
               "missing from Redis until it answers");
}

static void on_sums(void *arg, int status, const long long *v, size_t n)
{
    struct lvl *L = the_lvl;
    if (!L || L->w->stopping)
        return;
    feed(L, (uint64_t)(uintptr_t)arg, status || n != NSUMS ? NULL : v);
}

static void on_added(void *arg, int status, const long long *v, size_t n)
{
    (void)v, (void)n;
    struct lvl *L = the_lvl;
    uint64_t period = (uint64_t)(uintptr_t)arg;
    if (L && status && L->own[period & 1].period == period)
        L->own[period & 1].failed = true;
}

/* Asks for the cluster's sums of period (fed when they come, or at once
 * from this node's own signals when Redis cannot be asked). */
static void read_sums(struct lvl *L, uint64_t period)
{
    char key[GH_REDIS_KEY_MAX], cap[16], slots[16], nev[16];
    period_key(L, period, key);
    snprintf(cap, sizeof cap, "%u",
             gh_shield_level_machine() ? gh_level_source_cap(gh_shield_level_machine()) : 0);
    snprintf(slots, sizeof slots, "%u", SLOTS);
    snprintf(nev, sizeof nev, "%u", NEV);
    const char *args[3] = {cap, slots, nev};
    L->reading = true;
    if (gh_redis_eval_send(L->redis, L->w, sum_lua, key, 3, args, on_sums,
                           (void *)(uintptr_t)period))
        feed(L, period, NULL);
}

/* Moves the events counted since the last flush from the shield's tally
 * into this node's own tally of period and, with its pressure, into the
 * period's sums in Redis: one command. */
static void flush(struct lvl *L, uint64_t period)
{
    struct gh_level_tally *t = gh_shield_level_tally();
    unsigned i = period & 1;
    if (!t)
        return;
    size_t len = 0;
    for (unsigned ev = 0; ev < NEV; ev++)
        for (unsigned s = 0; s < SLOTS; s++) {
            uint32_t c = atomic_exchange_explicit(&t->slot[ev][s], 0, memory_order_relaxed);
            if (!c)
                continue;
            atomic_fetch_add_explicit(&L->own[i].tally->slot[ev][s], c, memory_order_relaxed);
            len += (size_t)snprintf(L->pack + len, PACK_ENTRY + 1, "%u %u ", ev * SLOTS + s, c);
        }
    L->pack[len] = '\0';
    struct gh_level_signals p = {0};
    L->enabled = gh_shield_level_pressure(&p);
    /* as the shield's own feed has them: the period's worst queue delay,
     * the loop lag sampled once (the last flush's stands) */
    L->own[i].queue_ms = GH_MAX(L->own[i].queue_ms, p.queue_delay_ms);
    L->own[i].lag_ms = p.loop_lag_ms;
    char key[GH_REDIS_KEY_MAX], ttl[24], q[24], l[24];
    period_key(L, period, key);
    /* the hash outlives the period by two: late readers still find it */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)(3 * L->interval_ms + L->settle_ms));
    snprintf(q, sizeof q, "%.0f", L->own[i].queue_ms);
    snprintf(l, sizeof l, "%.0f", p.loop_lag_ms);
    const char *args[5] = {ttl, q, l, L->pack, L->id};
    if (gh_redis_eval_send(L->redis, L->w, add_lua, key, 5, args, on_added,
                           (void *)(uintptr_t)period))
        L->own[i].failed = true;
}

static void on_tick(uv_timer_t *timer)
{
    struct lvl *L = timer->data;
    uint64_t wall = gh_wall_ms(), period = wall / L->interval_ms;
    unsigned i = period & 1;
    if (L->own[i].period != period) /* a period never fed (it is two old): forgotten */
        own_reset(L, i, period);
    flush(L, period);
    /* every node reads a period once all have added to it (their last
     * flush of it is at most level_flush late): the same sums, the same
     * level, at the same moment give or take a tick */
    if (!L->reading && period > L->last_fed + 1 && wall - period * L->interval_ms >= L->settle_ms)
        read_sums(L, period - 1);
}

/* ---- lifecycle ---- */

static int worker_init(struct gh_worker *w, void *data)
{
    struct lvl *L = data;
    if (w->admin || w->id != 0)
        return 0;
    L->w = w;
    /* the period under way is read too: its sums are the cluster's,
     * whenever this node joined it */
    L->last_fed = gh_wall_ms() / L->interval_ms - 1;
    if (uv_timer_init(&w->loop, &L->timer))
        return GH_EIO;
    L->timer.data = L;
    if (uv_timer_start(&L->timer, on_tick, L->flush_ms, L->flush_ms)) {
        uv_close((uv_handle_t *)&L->timer, NULL);
        return GH_EIO;
    }
    L->timer_on = true;
    atomic_store(&L->on, true);
    return 0;
}

static void worker_dispose(struct gh_worker *w, void *data)
{
    struct lvl *L = data;
    if (w != L->w || !L->timer_on)
        return;
    atomic_store(&L->on, false);
    uv_close((uv_handle_t *)&L->timer, NULL);
    L->timer_on = false;
}

static void lvl_free(struct lvl *L)
{
    if (!L)
        return;
    for (int i = 0; i < 2; i++)
        gh_level_tally_free(L->own[i].tally);
    free(L->pack);
    free(L);
}

int gh_level_redis_init(struct gh_server *srv, const struct gh_config *cfg)
{
    struct gh_redis *redis = gh_shield_cluster_redis();
    if (!redis)
        return 0;
    struct lvl *L = calloc(1, sizeof *L);
    if (!L)
        return GH_ENOMEM;
    L->redis = redis;
    L->interval_ms = GH_MAX(cfg->shield.level_interval_ms, 100ull);
    L->flush_ms = GH_MIN(cfg->redis.level_flush_ms, L->interval_ms / 2);
    L->settle_ms = GH_MIN(2 * L->flush_ms + cfg->redis.timeout_ms, L->interval_ms / 2);
    L->pack = malloc((size_t)NEV * SLOTS * PACK_ENTRY + 1);
    uint8_t id[8];
    randombytes_buf(id, sizeof id);
    sodium_bin2hex(L->id, sizeof L->id, id, sizeof id);
    for (int i = 0; i < 2; i++) {
        L->own[i].tally = gh_level_tally_new(NULL);
        L->own[i].period = UINT64_MAX;
    }
    if (!L->pack || !L->own[0].tally || !L->own[1].tally) {
        lvl_free(L);
        return GH_ENOMEM;
    }
    static const char help[] =
        "attack-level periods fed, by the source of their signals (the "
        "cluster's sums in Redis, or this node's own while they are missing)";
    L->m_feeds[0] =
        gh_metrics_counter("gatehouse_shield_level_feeds_total", "source=\"cluster\"", help);
    L->m_feeds[1] =
        gh_metrics_counter("gatehouse_shield_level_feeds_total", "source=\"local\"", help);
    if (gh_server_add_worker_hook(srv, worker_init, worker_dispose, L)) {
        lvl_free(L);
        return GH_ETOOBIG;
    }
    the_lvl = L;
    return 0;
}

void gh_level_redis_dispose(void)
{
    struct lvl *L = the_lvl;
    the_lvl = NULL;
    lvl_free(L);
}
