/* This module implements the shield's wiring (shield.h): configuration,
 * the accept and request filters, the attack-level signals and timer, the
 * proof-of-work challenge route and the admin routes. */
#include "http/server.h"
#include "shield/shield.h"

#include "core/log.h"
#include "http/jsonbody.h"
#include "shield/admission.h"
#include "shield/cluster.h"
#include "shield/ipset.h"
#include "shield/level_redis.h"
#include "shield/limiter.h"
#include "shield/nftban.h"
#include "shield/sockban.h"
#include "shield/penalty.h"
#include "shield/proxy.h"
#include "shield/refusing.h"
#include "status/status.h"

#include <jansson.h>
#include <sodium.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#define RETIRED_MAX 64
#define QUEUES_MAX  4
#define SHED_EVERY_MS 50
#define SHED_RETRY_S  5
#define SOCKBAN_EVERY_MS 100   /* the listening sockets' filter: see sockban_rebuild */
#define SOCKBAN_LIST_MAX 16384 /* bans read for it: far more than a program holds */

struct gh_shield {
    struct gh_server *srv;
    struct gh_limiter *lim;
    _Atomic(struct gh_limit_rules *) rules;
    _Atomic(struct gh_ipset *) trusted;
    _Atomic(struct gh_ipset *) proxy_from; /* PROXY protocol balancers */
    /* replaced rules and trusted lists: a worker may still be reading one,
     * and they are small, so they are kept until dispose (or 64 reloads) */
    struct gh_limit_rules *retired[RETIRED_MAX];
    unsigned nretired;
    struct gh_ipset *retired_sets[RETIRED_MAX];
    unsigned nretired_sets;
    bool level_ready;
    struct gh_iplist *block, *allow;
    struct gh_pow *pow;
    struct gh_level_machine level;
    struct gh_level_presets presets;
    char attack_regions[256];
    uint64_t pow_ttl_ms;
    /* identity's credential checks (gh_shield_set_principal_lookup): set
     * before the workers start, read-only while they run */
    struct gh_shield_principals principals;
    atomic_int policy_pow_bits; /* registration policy's pow_bits; -1 = none */
    uv_timer_t timer; /* on the admin worker */
    bool timer_on;
    uint64_t interval_ms, last_feed_ms;

    /* signals of the current period (none while shield.enabled is off:
     * the level then stays normal and asks nothing of anyone) */
    atomic_bool enabled;
    atomic_ullong refusals;
    struct gh_level_tally *tally; /* events by source /24 (/48): breadth, caps */
    /* aggregate keys that refuse every request now: the header filter
     * refuses under them before a body is read */
    struct gh_refusing refusing;

    /* metrics */
    _Atomic uint64_t *m_class[GH_NCLASSES];
    _Atomic uint64_t *m_limited[GH_NCLASSES];
    _Atomic uint64_t *m_blocked_xff, *m_evictions, *m_pow[GH_POW_BUSY + 1];
    _Atomic uint64_t *m_before_body;
    _Atomic uint64_t *m_sig_register, *m_sig_prefixes;

    /* shedding: targets (set at init and reload), the last evaluation */
    atomic_bool shed_on;
    _Atomic uint64_t shed_queue_ms, shed_lag_ms;
    atomic_uint max_conns;
    _Atomic uint64_t shed_eval_ms;
    atomic_uint shed_general; /* bit per class refused by the request filter */
    atomic_uint shed_admit;   /* bit per class refused before its queue */
    _Atomic uint64_t shed_pressure_milli;
    atomic_uint shed_idle_milli;
    _Atomic uint64_t queue_delay_max_ms; /* the period's worst, for the level */
    struct {
        gh_shield_queue_delay_fn fn;
        void *data;
    } queues[QUEUES_MAX];
    unsigned nqueues;
    _Atomic uint64_t *m_shed[GH_NCLASSES];
    _Atomic uint64_t *m_pressure, *m_idle_factor;

    /* the penalty box: bans in memory, and in the kernel when it lets us */
    struct gh_penalty *box;
    struct gh_nftban *nft;
    _Atomic uint64_t *m_bans[GH_BAN_NREASONS], *m_ban_refused, *m_ban_full;
    /* without the kernel's set, the listening sockets' filter (sockban.h),
     * rebuilt on the admin worker when the bans change or one expires */
    uv_timer_t sock_timer;
    bool sock_timer_on;
    int sock_refused; /* errno of the kernel's refusal of a socket filter; 0 = it takes one */
    atomic_bool sock_dirty;
    uint64_t sock_expires_ms; /* the filter's earliest expiry; 0 = none */
    /* bans in the newest filter (its generation) and in the one before,
     * for the gauge until every socket has attached the newest */
    _Atomic uint64_t sock_gen, sock_entries, sock_entries_before;
    struct gh_sockban_prog *sock_prog;
};

/* The process's shield (see shield.h): set once by init, cleared by dispose. */
static struct gh_shield *the_shield;

/* ---- configuration ---- */

static int parse_thresholds(const char *text, struct gh_level_config *lc, struct gh_buf *err)
{
    static const char *const names[GH_LEVEL_NSIGNALS] = {
        "register_rate", "sms_rate",     "verify_fail_ratio", "login_fail_ratio",
        "distinct_prefixes", "refusal_rate", "queue_delay_ms", "loop_lag_ms", "login_fail_rate"};
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == ';')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ;");
        char item[96];
        if (len >= sizeof item)
            goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        char *c1 = strchr(item, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            goto bad;
        *c1 = *c2 = '\0';
        int idx = -1;
        for (int i = 0; i < GH_LEVEL_NSIGNALS; i++)
            if (!strcmp(item, names[i]))
                idx = i;
        char *e1, *e2;
        double a = strtod(c1 + 1, &e1), b = strtod(c2 + 1, &e2);
        if (idx < 0 || *e1 || *e2 || e1 == c1 + 1 || e2 == c2 + 1 || a < 0 || b < 0 ||
            !isfinite(a) || !isfinite(b))
            goto bad;
        lc->threshold[idx][0] = a;
        lc->threshold[idx][1] = b;
        p += len;
        continue;
    bad:
        gh_buf_printf(err,
                      "[shield] level_thresholds: '%.*s' is not SIGNAL:ELEVATED:UNDER_ATTACK "
                      "(signals: register_rate, sms_rate, verify_fail_ratio, login_fail_ratio, "
                      "distinct_prefixes, refusal_rate, queue_delay_ms, loop_lag_ms, "
                      "login_fail_rate)",
                      (int)GH_MIN(len, (size_t)60), p);
        return GH_EINVAL;
    }
    return 0;
}

static int level_config(const struct gh_config *cfg, struct gh_level_config *lc,
                        struct gh_buf *err)
{
    memset(lc, 0, sizeof *lc);
    lc->calm_periods = cfg->shield.level_calm_periods;
    lc->ratio_min_rate = 1; /* a ratio needs one event a second (of its kind) */
    lc->min_events = cfg->shield.level_min_events;
    lc->min_prefixes = cfg->shield.level_min_prefixes;
    lc->source_cap = cfg->shield.level_source_cap;
    lc->incident_after_ms = cfg->shield.incident_after_ms;
    return parse_thresholds(cfg->shield.level_thresholds, lc, err);
}

/* Parses a comma-separated CIDR list into a tree. */
static int parse_trusted(const char *key, const char *text, struct gh_ipset **out,
                         struct gh_buf *err)
{
    struct gh_cidr *cs = NULL;
    size_t n = 0;
    struct gh_buf report;
    gh_buf_init(&report, 1024);
    /* one entry a line, the list format's comments allowed */
    char *copy = strdup(text ? text : "");
    if (!copy)
        return GH_ENOMEM;
    for (char *c = copy; *c; c++)
        if (*c == ',')
            *c = '\n';
    int rc = gh_ipset_parse_list(copy, strlen(copy), key, &cs, &n, 4096, &report);
    free(copy);
    if (rc > 0) {
        gh_buf_printf(err, "[shield] %s: %s", key, report.data ? report.data : "");
        rc = GH_EINVAL;
    }
    gh_buf_dispose(&report);
    if (rc) {
        free(cs);
        return rc < 0 ? rc : GH_EINVAL;
    }
    *out = n ? gh_ipset_build(cs, n) : NULL;
    free(cs);
    return n && !*out ? GH_ENOMEM : 0;
}

static void presets_from(struct gh_shield *sh, const struct gh_config *cfg)
{
    snprintf(sh->attack_regions, sizeof sh->attack_regions, "%s", cfg->shield.attack_regions);
    struct gh_level_policy *p = sh->presets.level;
    p[GH_LEVEL_NORMAL] = (struct gh_level_policy){GH_REG_OPEN, "", cfg->shield.pow_bits, 0};
    p[GH_LEVEL_ELEVATED] =
        (struct gh_level_policy){GH_REG_OPEN, "", cfg->shield.elevated_pow_bits, 0};
    p[GH_LEVEL_UNDER_ATTACK] = (struct gh_level_policy){
        sh->attack_regions[0] ? GH_REG_RESTRICTED : GH_REG_OPEN, sh->attack_regions,
        cfg->shield.attack_pow_bits, cfg->shield.attack_register_per_minute};
}

static void retire(struct gh_shield *sh, struct gh_limit_rules *p)
{
    if (!p)
        return;
    if (sh->nretired == RETIRED_MAX) { /* 64 reloads later, nobody reads the oldest */
        free(sh->retired[0]);
        memmove(sh->retired, sh->retired + 1, sizeof sh->retired[0] * (RETIRED_MAX - 1));
        sh->nretired--;
    }
    sh->retired[sh->nretired++] = p;
}

static void retire_set(struct gh_shield *sh, struct gh_ipset *p)
{
    if (!p)
        return;
    if (sh->nretired_sets == RETIRED_MAX) {
        gh_ipset_unref(sh->retired_sets[0]);
        memmove(sh->retired_sets, sh->retired_sets + 1,
                sizeof sh->retired_sets[0] * (RETIRED_MAX - 1));
        sh->nretired_sets--;
    }
    sh->retired_sets[sh->nretired_sets++] = p;
}

static int load_lists(struct gh_shield *sh, const struct gh_config *cfg, bool strict,
                      struct gh_buf *err)
{
    struct {
        struct gh_iplist *l;
        const char *path, *key;
    } lists[] = {{sh->block, cfg->shield.block_file, "block_file"},
                 {sh->allow, cfg->shield.allow_file, "allow_file"}};
    for (size_t i = 0; i < GH_ARRAY_LEN(lists); i++) {
        char path[4200];
        const char *p = lists[i].path;
        if (p && *p && p[0] != '/') {
            snprintf(path, sizeof path, "%s/%s", cfg->server.data_dir, p);
            p = path;
        }
        struct gh_buf report;
        gh_buf_init(&report, 8192);
        unsigned bad = 0;
        int rc = gh_iplist_load_file(lists[i].l, p, &report, &bad);
        if (bad)
            gh_log(GH_LOG_WARN, "ip_list", "%u malformed line(s) skipped: %s", bad,
                   report.data ? report.data : "");
        if (rc) {
            gh_log(GH_LOG_ERROR, "ip_list", "[shield] %s: cannot load %s: %s", lists[i].key, p,
                   report.data ? report.data : "");
            if (strict) {
                gh_buf_printf(err, "[shield] %s: cannot load %s", lists[i].key, p);
                gh_buf_dispose(&report);
                return GH_EINVAL;
            }
        } else if (p && *p) {
            struct gh_iplist_info info;
            gh_iplist_info(lists[i].l, &info);
            gh_log(GH_LOG_INFO, "ip_list", "%s: %zu entries from %s", lists[i].key,
                   info.file_entries, p);
        }
        gh_buf_dispose(&report);
    }
    return 0;
}

/* ---- signals ---- */

void gh_shield_signal(const struct gh_http_req *req, enum gh_shield_signal s)
{
    static const int ev[GH_SIGNAL_COUNT] = {
        [GH_SIGNAL_SMS_SENT] = GH_LEVEL_EV_SMS,         [GH_SIGNAL_VERIFY_OK] = GH_LEVEL_EV_VERIFY_OK,
        [GH_SIGNAL_VERIFY_FAIL] = GH_LEVEL_EV_VERIFY_FAIL, [GH_SIGNAL_LOGIN_OK] = GH_LEVEL_EV_LOGIN_OK,
        [GH_SIGNAL_LOGIN_FAIL] = GH_LEVEL_EV_LOGIN_FAIL,
        /* the service's own refusals are never evidence of an attack:
         * counted, they let one client hold the level up by being refused */
        [GH_SIGNAL_REGISTERED] = -1,                     [GH_SIGNAL_LOGIN_REFUSED] = -1,
    };
    struct gh_shield *sh = the_shield;
    if (sh && req && (unsigned)s < GH_SIGNAL_COUNT && ev[s] >= 0 &&
        atomic_load_explicit(&sh->enabled, memory_order_relaxed))
        gh_level_tally_add(sh->tally, (enum gh_level_event)ev[s], &req->client, 1);
}

static double take(atomic_ullong *c)
{
    return (double)atomic_exchange_explicit(c, 0, memory_order_relaxed);
}

/* The period's signals that are not events (the worst queue delay, taken,
 * and loop lag) into s; false while the shield is off (s is then to be
 * ignored). */
static bool level_pressure(struct gh_shield *sh, struct gh_level_signals *s)
{
    /* limiter refusals are the service's own answers, never evidence:
     * refusal_rate stays 0 */
    take(&sh->refusals);
    s->queue_delay_ms = (double)atomic_exchange(&sh->queue_delay_max_ms, 0);
    uint64_t lag_us = 0;
    for (unsigned i = 0; i < sh->srv->nworkers; i++)
        lag_us = GH_MAX(lag_us, GH_STAT_GET(&sh->srv->workers[i].stats.loop_lag_us));
    s->loop_lag_ms = (double)lag_us / 1000.0;
    return atomic_load(&sh->enabled);
}

static void level_fed(struct gh_shield *sh, const struct gh_level_signals *s)
{
    if (sh->m_sig_register)
        atomic_store(sh->m_sig_register, (uint64_t)(s->register_rate * 1000));
    if (sh->m_sig_prefixes)
        atomic_store(sh->m_sig_prefixes, (uint64_t)s->distinct_prefixes);
}

static void feed_level(struct gh_shield *sh, uint64_t now)
{
    double dt = (double)(now - sh->last_feed_ms) / 1000.0;
    sh->last_feed_ms = now;
    if (dt <= 0)
        dt = 1e-3;
    /* the event signals come from the tally (gh_level_feed_tally): capped
     * per /24 (/48), ignored without volume and breadth */
    struct gh_level_signals s = {0};
    if (!level_pressure(sh, &s))
        s = (struct gh_level_signals){0};
    gh_level_feed_tally(&sh->level, sh->tally, dt, &s, now);
    level_fed(sh, &s);
}

static void on_timer(uv_timer_t *t)
{
    /* in a cluster the level is fed from the cluster's sums (level_redis.c) */
    if (!gh_level_redis_on())
        feed_level(t->data, gh_now_ms());
}

/* ---- lent to level_redis.c ---- */

struct gh_level_machine *gh_shield_level_machine(void)
{
    return the_shield ? &the_shield->level : NULL;
}

struct gh_level_tally *gh_shield_level_tally(void)
{
    return the_shield ? the_shield->tally : NULL;
}

bool gh_shield_level_pressure(struct gh_level_signals *s)
{
    return the_shield && level_pressure(the_shield, s);
}

void gh_shield_level_fed(const struct gh_level_signals *s)
{
    if (the_shield)
        level_fed(the_shield, s);
}

static void level_to_status(enum gh_level from, enum gh_level to, const char *reason,
                            void *data)
{
    (void)from, (void)reason, (void)data;
    gh_status_attack_level(gh_level_name(to));
}

static void on_sock_timer(uv_timer_t *t);

static int worker_init(struct gh_worker *w, void *data)
{
    struct gh_shield *sh = data;
    if (!w->admin)
        return 0;
    /* every subsystem is up now: the status page hears the level once */
    gh_status_attack_level(gh_level_name(gh_level_get_public(&sh->level)));
    int rc = uv_timer_init(&w->loop, &sh->timer);
    sh->timer.data = sh;
    sh->last_feed_ms = gh_now_ms();
    if (!rc)
        rc = uv_timer_start(&sh->timer, on_timer, sh->interval_ms, sh->interval_ms);
    sh->timer_on = rc == 0;
    /* bans reach the listening sockets through a filter when the kernel's
     * set does not hold them */
    if (!rc && !sh->nft && !sh->sock_refused && sh->sock_prog) {
        sh->sock_timer.data = sh;
        rc = uv_timer_init(&w->loop, &sh->sock_timer);
        if (!rc)
            rc = uv_timer_start(&sh->sock_timer, on_sock_timer, SOCKBAN_EVERY_MS, SOCKBAN_EVERY_MS);
        sh->sock_timer_on = rc == 0;
    }
    return rc ? GH_EIO : 0; /* hooks answer GH_E* codes, not libuv's */
}

static void worker_dispose(struct gh_worker *w, void *data)
{
    struct gh_shield *sh = data;
    if (w->admin && sh->timer_on) {
        uv_close((uv_handle_t *)&sh->timer, NULL);
        sh->timer_on = false;
    }
    if (w->admin && sh->sock_timer_on) {
        uv_close((uv_handle_t *)&sh->sock_timer, NULL);
        sh->sock_timer_on = false;
    }
}

/* ---- shedding ---- */

static void shed_targets(struct gh_shield *sh, const struct gh_config *cfg)
{
    atomic_store(&sh->shed_on, cfg->shield.shed);
    atomic_store(&sh->shed_queue_ms, cfg->shield.shed_queue_delay_ms);
    atomic_store(&sh->shed_lag_ms, cfg->shield.shed_loop_lag_ms);
    atomic_store(&sh->max_conns, cfg->limits.max_conns);
}

static unsigned refused_mask(const struct gh_shed_state *st)
{
    unsigned m = 0;
    for (int c = 0; c < GH_NCLASSES; c++)
        if (gh_shed_refuses(st, (enum gh_class)c))
            m |= 1u << c;
    return m;
}

/* Re-evaluates the pressure when the last evaluation is older than
 * SHED_EVERY_MS (one thread wins the race; the others keep the state). */
static void shed_eval(struct gh_shield *sh, uint64_t now_ms)
{
    uint64_t last = atomic_load_explicit(&sh->shed_eval_ms, memory_order_relaxed);
    if (now_ms < last + SHED_EVERY_MS ||
        !atomic_compare_exchange_strong(&sh->shed_eval_ms, &last, now_ms))
        return;
    struct gh_shed_config c;
    gh_shed_config_default(&c);
    c.queue_delay_ms = (double)atomic_load(&sh->shed_queue_ms);
    c.loop_lag_ms = (double)atomic_load(&sh->shed_lag_ms);
    uint64_t d[GH_NCLASSES] = {0};
    for (unsigned q = 0; q < sh->nqueues; q++)
        for (int cls = 0; cls < GH_NCLASSES; cls++)
            d[cls] = GH_MAX(d[cls], sh->queues[q].fn((enum gh_class)cls, sh->queues[q].data));
    uint64_t lag_us = 0;
    for (unsigned i = 0; i < sh->srv->nworkers; i++)
        lag_us = GH_MAX(lag_us, GH_STAT_GET(&sh->srv->workers[i].stats.loop_lag_us));
    /* the delay of important work counts against every class */
    struct gh_shed_input in = {.queue_delay_ms = (double)GH_MAX(d[GH_CLASS_USER],
                                                                d[GH_CLASS_LOGIN]),
                               .loop_lag_ms = (double)lag_us / 1000.0,
                               .conns = atomic_load(&sh->srv->conns_total),
                               .max_conns = atomic_load(&sh->max_conns)};
    struct gh_shed_state st;
    gh_shed_evaluate(&c, &in, &st);
    unsigned general = refused_mask(&st), admit = general;
    /* a class's own queue counts only against that class */
    for (int cls = 0; cls < GH_NCLASSES; cls++) {
        struct gh_shed_input own = in;
        own.queue_delay_ms = (double)d[cls];
        struct gh_shed_state ost;
        gh_shed_evaluate(&c, &own, &ost);
        if (gh_shed_refuses(&ost, (enum gh_class)cls))
            admit |= 1u << cls;
    }
    unsigned idle = (unsigned)(st.idle_factor * 1000.0);
    if (!atomic_load(&sh->shed_on)) {
        general = admit = 0;
        idle = 1000;
    }
    uint64_t worst = 0;
    for (int cls = 0; cls < GH_NCLASSES; cls++)
        worst = GH_MAX(worst, d[cls]);
    uint64_t prev = atomic_load(&sh->queue_delay_max_ms);
    while (worst > prev && !atomic_compare_exchange_weak(&sh->queue_delay_max_ms, &prev, worst))
        ;
    atomic_store_explicit(&sh->shed_general, general, memory_order_relaxed);
    atomic_store_explicit(&sh->shed_admit, admit, memory_order_relaxed);
    atomic_store_explicit(&sh->shed_pressure_milli, (uint64_t)(st.pressure * 1000.0),
                          memory_order_relaxed);
    atomic_store_explicit(&sh->shed_idle_milli, idle, memory_order_relaxed);
    atomic_store_explicit(&sh->srv->http->idle_factor_milli, idle, memory_order_relaxed);
    if (sh->m_pressure)
        atomic_store_explicit(sh->m_pressure, (uint64_t)(st.pressure * 1000.0),
                              memory_order_relaxed);
    if (sh->m_idle_factor)
        atomic_store_explicit(sh->m_idle_factor, idle, memory_order_relaxed);
}

static void shed_answer(struct gh_shield *sh, struct gh_http_req *req, enum gh_class cls)
{
    if (sh->m_shed[cls])
        atomic_fetch_add_explicit(sh->m_shed[cls], 1, memory_order_relaxed);
    gh_http_add_header(req, "Retry-After", "%u", SHED_RETRY_S);
    gh_http_respond_error(req, 503, "busy", "the service is busy; please retry in %u seconds",
                          SHED_RETRY_S);
}

int gh_shield_watch_queue(gh_shield_queue_delay_fn fn, void *data)
{
    struct gh_shield *sh = the_shield;
    if (!sh || !fn)
        return GH_EINVAL;
    if (sh->nqueues == QUEUES_MAX)
        return GH_ETOOBIG;
    sh->queues[sh->nqueues].fn = fn;
    sh->queues[sh->nqueues].data = data;
    sh->nqueues++;
    return 0;
}

bool gh_shield_admit(struct gh_http_req *req, enum gh_class cls)
{
    struct gh_shield *sh = the_shield;
    if (!sh || (unsigned)cls >= GH_NCLASSES || cls == GH_CLASS_OPS)
        return true;
    shed_eval(sh, gh_now_ms());
    if (!(atomic_load_explicit(&sh->shed_admit, memory_order_relaxed) & (1u << cls)))
        return true;
    shed_answer(sh, req, cls);
    return false;
}

void gh_shield_shed_state(struct gh_shed_state *out)
{
    struct gh_shield *sh = the_shield;
    memset(out, 0, sizeof *out);
    out->idle_factor = 1;
    if (!sh)
        return;
    shed_eval(sh, gh_now_ms());
    out->pressure = (double)atomic_load(&sh->shed_pressure_milli) / 1000.0;
    unsigned g = atomic_load(&sh->shed_general);
    out->shed_levels = g & (1u << GH_CLASS_USER)       ? 4
                       : g & (1u << GH_CLASS_LOGIN)    ? 3
                       : g & (1u << GH_CLASS_REGISTER) ? 2
                       : g & (1u << GH_CLASS_ANON)     ? 1
                                                       : 0;
    out->idle_factor = (double)atomic_load(&sh->shed_idle_milli) / 1000.0;
}

/* ---- filters ---- */

static bool accept_filter(const struct gh_addr *a, void *data)
{
    struct gh_shield *sh = data;
    if (gh_iplist_contains(sh->allow, a))
        return true;
    if (gh_iplist_contains(sh->block, a))
        return false;
    if (!gh_penalty_banned(sh->box, a, gh_now_ms()))
        return true;
    if (sh->m_ban_refused)
        atomic_fetch_add_explicit(sh->m_ban_refused, 1, memory_order_relaxed);
    return false;
}

static bool proxy_trusted(const struct gh_addr *peer, void *data)
{
    struct gh_shield *sh = data;
    return gh_ipset_contains(atomic_load_explicit(&sh->proxy_from, memory_order_acquire), peer);
}

/* ---- the penalty box ---- */

/* Whether c covers an address that must never be banned: the allow list,
 * the trusted proxies and the PROXY-protocol balancers. */
static bool ban_exempt(struct gh_shield *sh, const struct gh_cidr *c)
{
    struct gh_ipset *allow = gh_iplist_snapshot(sh->allow);
    bool hit = gh_ipset_overlaps(allow, c) ||
               gh_ipset_overlaps(atomic_load_explicit(&sh->trusted, memory_order_acquire), c) ||
               gh_ipset_overlaps(atomic_load_explicit(&sh->proxy_from, memory_order_acquire), c);
    gh_ipset_unref(allow);
    return hit;
}

/* Bans c for ttl_ms, in memory and (queued) in the kernel. 0, GH_EEXIST
 * (c covers an exempt address: not banned) or GH_ETOOBIG (the box is full). */
static int ban(struct gh_shield *sh, const struct gh_cidr *c, uint64_t ttl_ms,
               enum gh_ban_reason why, uint64_t now_ms, struct gh_ban *out)
{
    if (ban_exempt(sh, c))
        return GH_EEXIST;
    struct gh_ban b;
    if (gh_penalty_add(sh->box, c, ttl_ms, why, now_ms, &b)) {
        if (sh->m_ban_full)
            atomic_fetch_add_explicit(sh->m_ban_full, 1, memory_order_relaxed);
        return GH_ETOOBIG;
    }
    if (sh->m_bans[why])
        atomic_fetch_add_explicit(sh->m_bans[why], 1, memory_order_relaxed);
    if (sh->nft)
        gh_nftban_add(sh->nft, &b.cidr, b.expires_ms > now_ms ? b.expires_ms - now_ms : 1);
    else
        atomic_store_explicit(&sh->sock_dirty, true, memory_order_relaxed);
    if (out)
        *out = b;
    return 0;
}

/* A refusal by an address or prefix rule of client (the request's, or the
 * one a trusted balancer reports) counts against its source, before the
 * body as after; the one that completes shield.ban_after within ban_window
 * bans it. A prefix that holds an exempt address bans only the address
 * refused. */
static void penalty_note(struct gh_shield *sh, const struct gh_http_req *req,
                         const struct gh_addr *client, enum gh_limit_keykind kind)
{
    if (!req->cfg->shield.ban_after ||
        (kind != GH_LKEY_ADDR && kind != GH_LKEY_PREFIX && kind != GH_LKEY_PREFIX48))
        return;
    struct gh_cidr src;
    unsigned v6 = kind == GH_LKEY_PREFIX ? 64 : 48;
    gh_penalty_source(client, kind == GH_LKEY_ADDR ? 32 : 24,
                      kind == GH_LKEY_ADDR ? 128 : v6, &src);
    uint64_t now = gh_now_ms();
    if (!gh_penalty_refused(sh->box, &src, now))
        return;
    uint64_t ttl = gh_penalty_ban_ms(sh->box);
    if (ban(sh, &src, ttl, GH_BAN_REFUSALS, now, NULL) == GH_EEXIST && src.len < 128) {
        gh_cidr_from_addr(client, &src);
        ban(sh, &src, ttl, GH_BAN_REFUSALS, now, NULL);
    }
}

/* The kernel set's question: live bans inside a prefix being added. */
static size_t bans_inside(const struct gh_cidr *outer, struct gh_ban *out, size_t max, void *data)
{
    struct gh_shield *sh = data;
    return gh_penalty_inside(sh->box, outer, gh_now_ms(), out, max);
}

static void penalty_config(struct gh_shield *sh, const struct gh_config *cfg)
{
    struct gh_penalty_config pc = {cfg->shield.ban_after, cfg->shield.ban_window_ms,
                                   cfg->shield.ban_time_ms};
    gh_penalty_configure(sh->box, &pc);
}

/* Whether this process may put a filter on a TCP socket: 0, or the
 * kernel's errno. Linux 6.1 lets any process; recent kernels want
 * CAP_NET_ADMIN for a TCP socket. Asked once at start, of a socket of
 * its own. */
static int sock_filter_refused(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    struct sock_filter pass = BPF_STMT(BPF_RET | BPF_K, 0xffffffffu);
    struct sock_fprog fp = {.len = 1, .filter = &pass};
    int rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) ? errno : 0;
    close(fd);
    return rc;
}

/* Makes the kernel table when shield.kernel_ban asks for it; without the
 * right or the kernel's support it says so once, and the listening
 * sockets' filter holds the bans (sockban_rebuild) where the kernel lets
 * this process have one, else they are closed at accept. */
static void kernel_start(struct gh_shield *sh, const struct gh_config *cfg)
{
    sh->sock_refused = sock_filter_refused();
    if (!cfg->shield.kernel_ban) {
        if (sh->sock_refused && cfg->shield.ban_after)
            gh_log(GH_LOG_INFO, "penalty_box",
                   "banned sources are closed at accept: the kernel refuses this process a "
                   "filter on its listening sockets (%s%s)",
                   strerror(sh->sock_refused),
                   sh->sock_refused == EPERM ? "; recent kernels want CAP_NET_ADMIN for it" : "");
        return;
    }
    struct sockaddr_storage ss;
    unsigned port = 0;
    if (!gh_parse_hostport(cfg->server.listen, &ss))
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    struct gh_nftban_config nc = {cfg->shield.kernel_ban_table, port, cfg->shield.ban_max, 4096};
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    int rc = gh_nftban_start(&nc, bans_inside, sh, &sh->nft, &err);
    if (rc)
        gh_log(GH_LOG_WARN, "kernel_ban",
               "kernel_ban is on but the nftables table inet %s cannot be made (%s%s): %s",
               cfg->shield.kernel_ban_table, err.data ? err.data : "",
               rc == GH_EIO ? "; it needs CAP_NET_ADMIN and nf_tables" : "",
               sh->sock_refused ? "banned sources are closed at accept instead (the kernel "
                                  "refuses a filter on the listening sockets too)"
                                : "the listening sockets' filter drops banned sources' SYNs "
                                  "instead");
    else
        gh_log(GH_LOG_INFO, "kernel_ban",
               "nftables table inet %s drops banned sources on port %u (sets of %zu)",
               cfg->shield.kernel_ban_table, port, cfg->shield.ban_max);
    gh_buf_dispose(&err);
}

/* The listening sockets' filter, for a process without the kernel's set:
 * rebuilt from the live bans when one was made or lifted, or when one in
 * it expired, at most every SOCKBAN_EVERY_MS; bans that overlap an exempt
 * address now (an allow-list entry added after the ban) stay out of it
 * and are closed at accept, where the allow list is asked first. */
static void sockban_rebuild(struct gh_shield *sh, uint64_t now)
{
    /* one pass over the box (pages of the list it does not fill are never touched) */
    struct gh_ban *list = malloc(sizeof *list * SOCKBAN_LIST_MAX);
    if (!list) { /* out of memory: try again at the next tick */
        atomic_store_explicit(&sh->sock_dirty, true, memory_order_relaxed);
        return;
    }
    size_t n =
        GH_MIN(gh_penalty_list(sh->box, now, list, SOCKBAN_LIST_MAX), (size_t)SOCKBAN_LIST_MAX);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!ban_exempt(sh, &list[i].cidr))
            list[k++] = list[i];
    size_t in = gh_sockban_build(list, k, sh->sock_prog);
    free(list);
    atomic_store(&sh->sock_entries_before, atomic_load(&sh->sock_entries));
    atomic_store(&sh->sock_entries, in);
    atomic_store(&sh->sock_gen,
                 gh_http_listen_filter(sh->srv, sh->sock_prog->insns, in ? sh->sock_prog->len : 0));
    sh->sock_expires_ms = sh->sock_prog->expires_ms;
}

static void on_sock_timer(uv_timer_t *t)
{
    struct gh_shield *sh = t->data;
    int err = atomic_load(&sh->srv->http->lf_errno);
    if (err && !sh->sock_refused) { /* said once */
        gh_log(GH_LOG_WARN, "penalty_box",
               "the listening sockets refused the ban filter (%s): banned sources are closed "
               "at accept instead",
               strerror(err));
        sh->sock_refused = err;
    }
    uint64_t now = gh_now_ms();
    bool due = sh->sock_expires_ms && now >= sh->sock_expires_ms;
    if (atomic_exchange_explicit(&sh->sock_dirty, false, memory_order_relaxed) || due)
        sockban_rebuild(sh, now);
}

/* Bans the listening sockets' filter drops now: the newest program's once
 * every socket has attached it. */
static uint64_t sock_entries_now(struct gh_shield *sh)
{
    uint64_t gen = atomic_load(&sh->sock_gen);
    bool all = gh_http_listen_filter_applied(sh->srv) >= gen;
    return atomic_load(all ? &sh->sock_entries : &sh->sock_entries_before);
}

static double sock_entries(void *data)
{
    return (double)sock_entries_now(data);
}

static uint64_t kernel_stat(void *data, size_t off)
{
    struct gh_shield *sh = data;
    struct gh_nftban_stats st;
    gh_nftban_get_stats(sh->nft, &st);
    return *(const uint64_t *)((const char *)&st + off);
}
static uint64_t kernel_dropped(void *data)
{
    return kernel_stat(data, offsetof(struct gh_nftban_stats, dropped));
}
static uint64_t kernel_added(void *data)
{
    return kernel_stat(data, offsetof(struct gh_nftban_stats, added));
}
static uint64_t kernel_refused(void *data)
{
    return kernel_stat(data, offsetof(struct gh_nftban_stats, errors));
}
static uint64_t kernel_queue_full(void *data)
{
    return kernel_stat(data, offsetof(struct gh_nftban_stats, queue_full));
}
static double kernel_active(void *data)
{
    return ((struct gh_shield *)data)->nft ? 1 : 0;
}
static double bans_live(void *data)
{
    struct gh_shield *sh = data;
    return (double)gh_penalty_list(sh->box, gh_now_ms(), NULL, 0);
}

static void penalty_metrics(struct gh_shield *sh)
{
    for (int r = 0; r < GH_BAN_NREASONS; r++) {
        char labels[48];
        snprintf(labels, sizeof labels, "reason=\"%s\"", gh_ban_reason_name((enum gh_ban_reason)r));
        sh->m_bans[r] = gh_metrics_counter("gatehouse_shield_bans_total", labels,
                                           "sources put in the penalty box (or their ban "
                                           "extended), by reason");
    }
    sh->m_ban_refused = gh_metrics_counter(
        "gatehouse_shield_ban_refused_total", "",
        "connections closed at accept (and proxied requests refused 403) because their source "
        "is in the penalty box");
    sh->m_ban_full = gh_metrics_counter("gatehouse_shield_ban_table_full_total", "",
                                        "bans not made because the penalty box was full");
    gh_metrics_gauge_func("gatehouse_shield_penalty_box_entries", "",
                          "sources in the penalty box now", bans_live, sh);
    gh_metrics_gauge_func("gatehouse_shield_kernel_ban_active", "",
                          "1 when banned sources are dropped by the kernel's nftables set",
                          kernel_active, sh);
    gh_metrics_counter_func("gatehouse_shield_kernel_ban_dropped_packets_total", "",
                            "packets from banned sources the kernel dropped", kernel_dropped, sh);
    gh_metrics_counter_func("gatehouse_shield_kernel_ban_added_total", "",
                            "elements added to the kernel's ban sets", kernel_added, sh);
    gh_metrics_counter_func("gatehouse_shield_kernel_ban_refused_total", "",
                            "elements the kernel refused (a broader ban already held them)",
                            kernel_refused, sh);
    gh_metrics_counter_func("gatehouse_shield_kernel_ban_queue_full_total", "",
                            "kernel-set operations dropped because their queue was full",
                            kernel_queue_full, sh);
    gh_metrics_gauge_func("gatehouse_shield_socket_ban_entries", "",
                          "bans whose SYNs the listening sockets' filter drops (without the "
                          "kernel's set)",
                          sock_entries, sh);
}

/* Ceiling of ns in whole seconds, at least 1. */
static unsigned long long secs_up(uint64_t ns)
{
    uint64_t s = (ns + 999999999ull) / 1000000000ull;
    return s ? s : 1;
}

/* Appends the decimal digits of v. */
static void put_u64(struct gh_buf *b, unsigned long long v)
{
    char num[24];
    size_t i = sizeof num;
    do {
        num[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    gh_buf_append(b, num + i, sizeof num - i);
}

/* The 429 answer, assembled without printf: under a flood this is the
 * answer gatehouse gives most, so it must cost less than serving. */
static void answer_429(struct gh_http_req *req, unsigned long long retry, unsigned limit,
                       unsigned long long reset)
{
    struct gh_buf *h = &req->res_headers;
    gh_buf_append_str(h, "Retry-After: ");
    put_u64(h, retry);
    gh_buf_append_str(h, "\r\nX-RateLimit-Limit: ");
    put_u64(h, limit);
    gh_buf_append_str(h, "\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: ");
    put_u64(h, reset);
    gh_buf_append(h, "\r\n", 2);
    if (!gh_http_path_is_api(req->path)) {
        gh_http_respond_error(req, 429, "rate_limited", "too many requests; retry in %llu s",
                              retry);
        return;
    }
    char body[200];
    struct gh_buf b = {body, 0, sizeof body, sizeof body - 1};
    gh_buf_append_str(&b, "{\"error\":{\"message\":\"too many requests; retry in ");
    put_u64(&b, retry);
    gh_buf_append_str(&b, retry == 1 ? " second" : " seconds");
    gh_buf_append_str(&b, "\",\"type\":\"rate_limit_error\",\"param\":null,"
                          "\"code\":\"rate_limited\"}}\n");
    gh_http_respond(req, 429, "application/json", b.data, b.len);
}

/* Keys that many addresses share: a refusal under one of them is noted
 * for the header filter (refusing.h). */
static bool address_aggregate(enum gh_limit_keykind k)
{
    return k == GH_LKEY_PREFIX || k == GH_LKEY_PREFIX48 || k == GH_LKEY_GLOBAL;
}

bool gh_shield_rule_decided(struct gh_http_req *req, enum gh_class cls,
                            const struct gh_limit_rule *r, uint64_t key, uint64_t now_ns,
                            const struct gh_limit_decision *d)
{
    struct gh_shield *sh = the_shield;
    if (d->limited && r->dry_run) {
        if (r->m_would_refuse)
            atomic_fetch_add_explicit(r->m_would_refuse, 1, memory_order_relaxed);
        return true;
    }
    if (d->allowed) {
        if (r->m_allowed)
            atomic_fetch_add_explicit(r->m_allowed, 1, memory_order_relaxed);
        return true;
    }
    if (r->m_refused)
        atomic_fetch_add_explicit(r->m_refused, 1, memory_order_relaxed);
    if (sh->m_limited[cls])
        atomic_fetch_add_explicit(sh->m_limited[cls], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->refusals, 1, memory_order_relaxed);
    if (address_aggregate(r->kind)) /* refuses everyone until then */
        gh_refusing_note(&sh->refusing, key, now_ns + d->retry_after_ns);
    penalty_note(sh, req, &req->client, r->kind);
    answer_429(req, secs_up(d->retry_after_ns), d->limit, secs_up(d->reset_ns));
    return false;
}

const struct gh_limit_rules *gh_shield_rules_now(void)
{
    return atomic_load_explicit(&the_shield->rules, memory_order_acquire);
}

struct gh_limiter *gh_shield_limiter(void)
{
    return the_shield->lim;
}

bool gh_shield_allowed(const struct gh_http_req *req)
{
    return the_shield && gh_iplist_contains(the_shield->allow, &req->client);
}

/* Checks the rules of cls that the subject offers keys for (those shared
 * through Redis are the gate's: cluster.c). Returns true when every rule
 * lets it pass; otherwise answers 429. */
static bool apply_rules(struct gh_shield *sh, struct gh_http_req *req, enum gh_class cls,
                        const struct gh_limit_subject *subj, bool phone_rules)
{
    const struct gh_limit_rules *rs = atomic_load_explicit(&sh->rules, memory_order_acquire);
    /* the request's first byte is "now" closely enough, and costs no clock read */
    uint64_t now = req->start_ns ? req->start_ns : gh_now_ns();
    for (unsigned i = 0; i < rs->n; i++) {
        const struct gh_limit_rule *r = &rs->rules[i];
        bool is_phone = r->kind == GH_LKEY_PHONE || r->kind == GH_LKEY_PHONE_PREFIX ||
                        r->kind == GH_LKEY_CALLING_CODE;
        uint64_t key;
        if (r->cls != cls || is_phone != phone_rules || gh_cluster_owns(r) ||
            !gh_limit_rule_key(sh->lim, r, subj, &key))
            continue;
        struct gh_limit_decision d;
        gh_limiter_check(sh->lim, key, &r->lim, 1, now, r->dry_run, &d);
        if (!gh_shield_rule_decided(req, cls, r, key, now, &d))
            return false;
    }
    /* no X-RateLimit-* on answers that pass: they would vary from one
     * answer to the next and tell apart what must look identical (the
     * sms-code answer for known and unknown numbers) */
    return true;
}

/* The class of req: its route's, raised to user by valid credentials; a
 * user route without them counts as anon. Fills the principal's ids. */
/* Whether req's headers carry a valid API key or session, checked once per
 * request into req->cred: the connection asks before the body is read (a
 * route's large body cap is for credentials only), classify after. Also
 * the server's credentials hook. */
static bool credentials(struct gh_http_req *req, void *data)
{
    struct gh_shield *sh = data;
    if (req->cred.state)
        return req->cred.state > 0;
    const struct gh_shield_principals *pr = &sh->principals;
    uint64_t user_id = 0, key_id = 0;
    bool valid = pr->lookup && pr->lookup(req, &user_id, &key_id, pr->data);
    req->cred.state = valid ? 1 : -1;
    if (valid) {
        req->cred.user_id = user_id;
        req->cred.key_id = key_id;
    }
    return valid;
}

/* Whether a credential lookup missed may be in the store (not final). */
static bool may_reload(const struct gh_shield *sh, const struct gh_http_req *req)
{
    const struct gh_shield_principals *pr = &sh->principals;
    return pr->may_reload && pr->may_reload(req, pr->data);
}

/* The server's credentials_fetch hook: an evicted session or key is read
 * back from the store before the checks that need it; then the request's
 * remembered answer is forgotten so that the next check asks again. */
static int credentials_fetch(struct gh_http_req *req, void (*wake)(void *arg), void *arg,
                             void **job, void *data)
{
    struct gh_shield *sh = data;
    const struct gh_shield_principals *pr = &sh->principals;
    int rc = pr->prefetch ? pr->prefetch(req, wake, arg, job, pr->data) : GH_ENOTFOUND;
    if (!rc)
        req->cred.state = 0;
    return rc;
}

/* The server's credentials_cancel hook (it takes no data: the shield's). */
static void credentials_cancel(void *job)
{
    struct gh_shield *sh = the_shield;
    if (sh && sh->principals.prefetch_cancel)
        sh->principals.prefetch_cancel(job);
}

static enum gh_class classify(struct gh_shield *sh, struct gh_http_req *req,
                              struct gh_limit_subject *subj)
{
    enum gh_class cls = req->route->cls;
    if (cls == GH_CLASS_OPS)
        return cls;
    if (credentials(req, sh)) {
        subj->account_id = req->cred.user_id;
        subj->apikey_id = req->cred.key_id;
        return GH_CLASS_USER;
    }
    return cls == GH_CLASS_USER ? GH_CLASS_ANON : cls;
}

/* The address a trusted balancer reports for req into *real: false when
 * its peer is not one (then *real is untouched). */
static bool xff_client(struct gh_shield *sh, const struct gh_http_req *req, struct gh_addr *real)
{
    struct gh_ipset *trusted = atomic_load_explicit(&sh->trusted, memory_order_acquire);
    return trusted && gh_proxy_xff_req(req, &req->client, trusted, real);
}

/* The server's header filter: a request with a body whose class's
 * aggregate keys (prefix, prefix48, global) refused a request and refuse
 * every request until a time still ahead is refused now, before its body
 * is read or parsed (429 with Retry-After; the connection closes). Only
 * what the request filter would refuse as well: the allow list, ops routes,
 * dry-run rules and credentials the store may hold pass on to it. */
static int header_filter(struct gh_http_req *req, unsigned *retry_after_s, void *data)
{
    struct gh_shield *sh = data;
    if (!req->cfg->shield.enabled || req->route->cls == GH_CLASS_OPS)
        return 0;
    struct gh_addr client = req->client;
    xff_client(sh, req, &client);
    if (gh_iplist_contains(sh->allow, &client))
        return 0;
    struct gh_limit_subject subj = {.addr = &client};
    enum gh_class cls = classify(sh, req, &subj);
    if (cls != GH_CLASS_USER && req->route->cls == GH_CLASS_USER)
        return 0; /* its handler answers 401 cheaply, or an evicted user is read back */
    if (cls == GH_CLASS_ANON && may_reload(sh, req))
        return 0;
    const struct gh_limit_rules *rs = atomic_load_explicit(&sh->rules, memory_order_acquire);
    uint64_t now = req->start_ns ? req->start_ns : gh_now_ns();
    for (unsigned i = 0; i < rs->n; i++) {
        const struct gh_limit_rule *r = &rs->rules[i];
        uint64_t key, left;
        if (r->cls != cls || r->dry_run || !address_aggregate(r->kind) ||
            !gh_limit_rule_key(sh->lim, r, &subj, &key))
            continue;
        left = gh_refusing_left(&sh->refusing, key, now);
        if (!left)
            continue;
        if (r->m_refused)
            atomic_fetch_add_explicit(r->m_refused, 1, memory_order_relaxed);
        if (sh->m_limited[cls])
            atomic_fetch_add_explicit(sh->m_limited[cls], 1, memory_order_relaxed);
        if (sh->m_before_body)
            atomic_fetch_add_explicit(sh->m_before_body, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sh->refusals, 1, memory_order_relaxed);
        penalty_note(sh, req, &client, r->kind); /* it kept sending after a refusal */
        *retry_after_s = (unsigned)secs_up(left);
        return 429;
    }
    return 0;
}

/* An anonymous request the anon class's shared rules let through: its
 * handler runs now, on the worker. */
static void anon_gated(struct gh_http_req *req, bool go_on, void *arg)
{
    (void)arg;
    if (go_on)
        req->route->handler(req);
}

/* Asks Redis for the anon class's shared rules (prefix, prefix48, global:
 * cluster.c); true when the request waits for them (anon_gated goes on)
 * or was answered, false when there is nothing to ask. */
static bool anon_gate(struct gh_http_req *req)
{
    int rc = gh_shield_cluster_gate(req, GH_CLASS_ANON, NULL, NULL, NULL, anon_gated, NULL);
    if (rc == GH_ENOTFOUND)
        return false;
    if (rc) {
        gh_http_add_header(req, "Retry-After", "%u", SHED_RETRY_S);
        gh_http_respond_error(req, 503, "busy", "the service is busy; please retry in %u seconds",
                              SHED_RETRY_S);
    }
    return true;
}

static bool request_filter(struct gh_http_req *req, void *data)
{
    struct gh_shield *sh = data;
    if (!req->cfg->shield.enabled)
        return true;
    /* the address a trusted balancer reports */
    struct gh_addr real;
    if (xff_client(sh, req, &real)) {
        req->client = real;
        if (!gh_iplist_contains(sh->allow, &real) &&
            (gh_iplist_contains(sh->block, &real) ||
             gh_penalty_banned(sh->box, &real, gh_now_ms()))) {
            if (sh->m_blocked_xff)
                atomic_fetch_add_explicit(sh->m_blocked_xff, 1, memory_order_relaxed);
            gh_http_respond_error(req, 403, "forbidden", "your network is blocked");
            return false;
        }
    }
    struct gh_limit_subject subj = {.addr = &req->client};
    enum gh_class cls = classify(sh, req, &subj);
    if (sh->m_class[cls])
        atomic_fetch_add_explicit(sh->m_class[cls], 1, memory_order_relaxed);
    if (cls == GH_CLASS_OPS || gh_iplist_contains(sh->allow, &req->client))
        return true;
    shed_eval(sh, req->start_ns / 1000000u);
    /* an account route without a credential the store could hold (none,
     * malformed, or deleted with its account) is answered 401 from memory
     * by its handler, as cheaply as a 503 and truthfully, whatever the load */
    bool final_401 =
        req->route->cls == GH_CLASS_USER && cls == GH_CLASS_ANON && !may_reload(sh, req);
    if (!final_401 &&
        (atomic_load_explicit(&sh->shed_general, memory_order_relaxed) & (1u << cls))) {
        shed_answer(sh, req, cls);
        return false;
    }
    if (!apply_rules(sh, req, cls, &subj, false))
        return false;
    /* after the limiter: its 429s are not registration traffic */
    if (cls == GH_CLASS_REGISTER)
        gh_level_tally_add(sh->tally, GH_LEVEL_EV_REGISTER, &req->client, 1);
    return cls != GH_CLASS_ANON || !anon_gate(req);
}

bool gh_shield_limit_phone(struct gh_http_req *req, enum gh_class cls, const char *e164,
                           const char *calling_code)
{
    struct gh_shield *sh = the_shield;
    if (!sh || !req->cfg->shield.enabled || gh_iplist_contains(sh->allow, &req->client))
        return true;
    struct gh_limit_subject subj = {.addr = &req->client, .phone = e164,
                                    .calling_code = calling_code};
    return apply_rules(sh, req, cls, &subj, true);
}

/* ---- level, policy, proof of work ---- */

enum gh_level gh_shield_level(void)
{
    return the_shield ? gh_level_get(&the_shield->level) : GH_LEVEL_NORMAL;
}

void gh_shield_level_policy(enum gh_level level, struct gh_level_policy *out)
{
    static const struct gh_level_policy none = {GH_REG_OPEN, "", 0, 0};
    *out = the_shield && (unsigned)level < GH_LEVEL_COUNT ? the_shield->presets.level[level]
                                                          : none;
}

int gh_shield_subscribe_level(gh_level_listener_fn fn, void *data)
{
    return the_shield ? gh_level_subscribe(&the_shield->level, fn, data) : GH_EINVAL;
}

unsigned gh_shield_pow_bits(enum gh_pow_scope scope)
{
    struct gh_level_policy p;
    gh_shield_level_policy(gh_shield_level(), &p);
    unsigned bits = p.pow_bits;
    /* registration and its SMS codes: the effective registration policy,
     * which holds the level's preset unless an operator pinned another */
    int pol_bits =
        the_shield ? atomic_load_explicit(&the_shield->policy_pow_bits, memory_order_relaxed) : -1;
    if (pol_bits >= 0 && (scope == GH_POW_REGISTER || scope == GH_POW_SMS))
        bits = (unsigned)pol_bits;
    return GH_MIN(bits, (unsigned)GH_POW_BITS_MAX);
}

void gh_shield_set_pow(int register_bits)
{
    if (the_shield)
        atomic_store_explicit(&the_shield->policy_pow_bits, register_bits < 0 ? -1 : register_bits,
                              memory_order_relaxed);
}

int gh_shield_set_principal_lookup(const struct gh_shield_principals *p)
{
    struct gh_shield *sh = the_shield;
    if (!sh)
        return GH_EINVAL;
    static const struct gh_shield_principals none;
    sh->principals = p ? *p : none;
    return 0;
}

enum gh_pow_result gh_shield_pow_verify(const struct gh_http_req *req, enum gh_pow_scope scope,
                                        unsigned min_bits, const char *challenge, size_t clen,
                                        const char *nonce, size_t nlen)
{
    struct gh_shield *sh = the_shield;
    if (!sh)
        return GH_POW_MALFORMED;
    enum gh_pow_result r = gh_pow_verify(sh->pow, scope, &req->client, min_bits, challenge, clen,
                                         nonce, nlen, gh_wall_ms());
    if (sh->m_pow[r])
        atomic_fetch_add_explicit(sh->m_pow[r], 1, memory_order_relaxed);
    return r;
}

static void pow_challenge(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    char scope_s[16];
    enum gh_pow_scope scope = GH_POW_REGISTER;
    int rc = gh_http_query_get(req, "scope", scope_s, sizeof scope_s);
    if (rc == 0 ? gh_pow_scope_parse(scope_s, &scope) != 0 : rc != GH_ENOTFOUND) {
        gh_http_respond_error(req, 400, "invalid_request",
                              "scope must be register, sms or login");
        return;
    }
    char ch[GH_POW_CHALLENGE_MAX];
    uint64_t exp;
    unsigned bits = gh_shield_pow_bits(scope);
    if (gh_pow_issue(sh->pow, scope, &req->client, bits, sh->pow_ttl_ms, gh_wall_ms(), ch,
                     sizeof ch, &exp)) {
        gh_http_respond_error(req, 500, "internal_error", "cannot issue a challenge");
        return;
    }
    char body[GH_POW_CHALLENGE_MAX + 96];
    int n = snprintf(body, sizeof body, "{\"challenge\":\"%s\",\"bits\":%u,\"expires_at\":%llu}\n",
                     ch, bits, (unsigned long long)exp);
    gh_http_add_header(req, "Cache-Control", "no-store");
    gh_http_respond_json(req, 200, body, (size_t)n);
}

/* ---- admin routes ---- */

static void respond_buf(struct gh_http_req *req, int status, struct gh_buf *b)
{
    gh_buf_append_str(b, "\n");
    gh_http_respond_json(req, status, b->data ? b->data : "{}", b->len);
    gh_buf_dispose(b);
}

static void level_answer(struct gh_http_req *req, struct gh_shield *sh)
{
    uint64_t now = gh_now_ms();
    gh_level_tick(&sh->level, now);
    struct gh_buf b;
    gh_buf_init(&b, 8192);
    gh_level_json(&sh->level, now, &b);
    /* add the preset of the effective level */
    struct gh_level_policy p = sh->presets.level[gh_level_get(&sh->level)];
    if (b.len && b.data[b.len - 1] == '}') {
        b.len--;
        gh_buf_printf(&b,
                      ",\"policy\":{\"mode\":\"%s\",\"allowed_regions\":\"%s\",\"pow_bits\":%u,"
                      "\"register_per_minute\":%u}}",
                      gh_reg_mode_name(p.mode), p.regions, p.pow_bits, p.register_per_minute);
    }
    respond_buf(req, 200, &b);
}

/* ---- sharing with the other nodes of a cluster ---- */

/* Who stores the operator's lists and pin for the other nodes (identity,
 * on a store they share); NULL on one node. */
static void (*share_fn)(const char *doc, void *data);
static void *share_data;

void gh_shield_share(void (*fn)(const char *doc, void *data), void *data)
{
    share_fn = fn;
    share_data = data;
}

/* The live bans of the penalty box (malloc'd, *n of them; NULL when
 * none or out of memory). */
static struct gh_ban *live_bans(struct gh_shield *sh, uint64_t now, size_t *n)
{
    size_t want = gh_penalty_list(sh->box, now, NULL, 0);
    struct gh_ban *b = want ? calloc(want, sizeof *b) : NULL;
    *n = b ? GH_MIN(gh_penalty_list(sh->box, now, b, want), want) : 0;
    return b;
}

/* ,"bans":[{"cidr","until_ms"}…]: the operators' bans (ctl block --for);
 * the automatic ones stay each node's. */
static int bans_json(struct gh_shield *sh, struct gh_buf *b)
{
    uint64_t now = gh_now_ms(), wall = gh_wall_ms();
    size_t n;
    struct gh_ban *bans = live_bans(sh, now, &n);
    int rc = gh_buf_append_str(b, ",\"bans\":[");
    bool first = true;
    for (size_t i = 0; !rc && i < n; i++) {
        if (bans[i].reason != GH_BAN_OPERATOR)
            continue;
        char canon[64];
        gh_cidr_format(&bans[i].cidr, canon, sizeof canon);
        rc = gh_buf_printf(
            b, "%s{\"cidr\":\"%s\",\"until_ms\":%llu}", first ? "" : ",", canon,
            (unsigned long long)(wall + (bans[i].expires_ms > now ? bans[i].expires_ms - now : 0)));
        first = false;
    }
    free(bans);
    return rc ? rc : gh_buf_append_str(b, "]");
}

/* Another node's operator bans on this node's box: those it no longer
 * has are lifted, the others set (again when their end moved). */
static void apply_bans(struct gh_shield *sh, json_t *list)
{
    uint64_t now = gh_now_ms(), wall = gh_wall_ms();
    size_t nw = json_array_size(list), k = 0, i, nh;
    struct gh_ban *want = calloc(nw ? nw : 1, sizeof *want);
    struct gh_ban *have = live_bans(sh, now, &nh);
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *t = json_string_value(json_object_get(v, "cidr"));
        json_t *u = json_object_get(v, "until_ms");
        uint64_t until =
            json_is_integer(u) && json_integer_value(u) > 0 ? (uint64_t)json_integer_value(u) : 0;
        if (want && t && until > wall && !gh_cidr_parse(t, strlen(t), &want[k].cidr))
            want[k++].expires_ms = now + (until - wall);
    }
    for (size_t h = 0; h < nh; h++) {
        bool keep = have[h].reason != GH_BAN_OPERATOR;
        for (size_t w = 0; !keep && w < k; w++)
            keep = gh_cidr_equal(&have[h].cidr, &want[w].cidr);
        if (!keep && !gh_penalty_remove(sh->box, &have[h].cidr)) {
            if (sh->nft)
                gh_nftban_remove(sh->nft, &have[h].cidr);
            atomic_store_explicit(&sh->sock_dirty, true, memory_order_relaxed);
        }
    }
    for (size_t w = 0; w < k; w++) {
        bool same = false;
        for (size_t h = 0; !same && h < nh; h++)
            same = have[h].reason == GH_BAN_OPERATOR &&
                   gh_cidr_equal(&have[h].cidr, &want[w].cidr) &&
                   have[h].expires_ms + 2000 > want[w].expires_ms &&
                   want[w].expires_ms + 2000 > have[h].expires_ms;
        if (!same)
            ban(sh, &want[w].cidr, want[w].expires_ms - now, GH_BAN_OPERATOR, now, NULL);
    }
    free(want);
    free(have);
}

/* The operator's part: {"version":1,"block":[run-time entries],"pin":null
 * or {"level","until_ms"},"bans":[{"cidr","until_ms"}…]} (until_ms: wall
 * clock; a pin's 0 = until unpinned), handed to share_fn after a change
 * made here. */
static void share_now(struct gh_shield *sh)
{
    if (!share_fn)
        return;
    struct gh_buf b;
    gh_buf_init(&b, 16u << 20);
    int rc = gh_buf_append_str(&b, "{\"version\":1,\"block\":");
    rc = rc ? rc : gh_iplist_runtime_json(sh->block, &b);
    pthread_mutex_lock(&sh->level.mu);
    bool pinned = sh->level.pinned;
    enum gh_level lv = sh->level.pin_level;
    uint64_t until = sh->level.pin_until_ms, now = gh_now_ms();
    pthread_mutex_unlock(&sh->level.mu);
    uint64_t wall_until = until ? gh_wall_ms() + (until > now ? until - now : 0) : 0;
    if (!rc && pinned)
        rc = gh_buf_printf(&b, ",\"pin\":{\"level\":\"%s\",\"until_ms\":%llu}", gh_level_name(lv),
                           (unsigned long long)wall_until);
    else if (!rc)
        rc = gh_buf_append_str(&b, ",\"pin\":null");
    rc = rc ? rc : bans_json(sh, &b);
    if (!rc && !gh_buf_append(&b, "}", 2))
        share_fn(b.data, share_data);
    gh_buf_dispose(&b);
}

/* The pin of another node's document (NULL: none) on this node's level,
 * unless it is the one in force (a change of the block list carries the
 * same pin). */
static void apply_pin(struct gh_shield *sh, json_t *pin)
{
    enum gh_level lv = GH_LEVEL_NORMAL;
    json_t *u = json_object_get(pin, "until_ms");
    uint64_t until =
        json_is_integer(u) && json_integer_value(u) > 0 ? (uint64_t)json_integer_value(u) : 0;
    uint64_t wall = gh_wall_ms(), now = gh_now_ms();
    bool want = json_is_object(pin) &&
                !gh_level_parse(json_string_value(json_object_get(pin, "level")), &lv) &&
                (!until || until > wall);
    uint64_t for_ms = want && until ? until - wall : 0;
    pthread_mutex_lock(&sh->level.mu);
    bool pinned = sh->level.pinned;
    uint64_t have = sh->level.pin_until_ms;
    bool same =
        pinned == want &&
        (!want || (sh->level.pin_level == lv &&
                   (have ? now + for_ms + 2000 > have && have + 2000 > now + for_ms : !for_ms)));
    pthread_mutex_unlock(&sh->level.mu);
    if (same)
        return;
    if (want)
        gh_level_pin(&sh->level, lv, for_ms, now);
    else
        gh_level_unpin(&sh->level, now);
}

int gh_shield_apply_shared(const char *doc)
{
    struct gh_shield *sh = the_shield;
    json_t *root = sh ? json_loads(doc, 0, NULL) : NULL;
    json_t *bl = json_object_get(root, "block");
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_array(bl)) {
        json_decref(root);
        return GH_EINVAL;
    }
    size_t n = json_array_size(bl), k = 0, i;
    struct gh_cidr *c = malloc(sizeof *c * (n ? n : 1));
    json_t *v;
    json_array_foreach(bl, i, v)
    {
        const char *t = json_string_value(v);
        if (c && t && !gh_cidr_parse(t, strlen(t), &c[k]))
            k++;
    }
    int rc = c ? gh_iplist_set_runtime(sh->block, c, k) : GH_ENOMEM;
    free(c);
    if (!rc) {
        apply_pin(sh, json_object_get(root, "pin"));
        apply_bans(sh, json_object_get(root, "bans"));
    }
    json_decref(root);
    return rc;
}

static void admin_level(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    if (!strcmp(req->method_name, "PUT")) {
        json_t *j = gh_http_body_object(req);
        if (!j)
            return;
        enum gh_level lv;
        const char *name = json_string_value(json_object_get(j, "level"));
        json_t *fs = json_object_get(j, "for_seconds");
        if (!name || gh_level_parse(name, &lv)) {
            json_decref(j);
            gh_http_respond_error(req, 400, "invalid_request",
                                  "level must be normal, elevated or under_attack");
            return;
        }
        if (fs && !json_is_null(fs) &&
            (!json_is_integer(fs) || json_integer_value(fs) <= 0 ||
             json_integer_value(fs) > 366 * 86400)) {
            json_decref(j);
            gh_http_respond_error(req, 400, "invalid_request",
                                  "for_seconds must be a positive whole number of seconds");
            return;
        }
        uint64_t for_ms = fs && json_is_integer(fs) ? (uint64_t)json_integer_value(fs) * 1000 : 0;
        json_decref(j);
        gh_level_pin(&sh->level, lv, for_ms, gh_now_ms());
    } else if (!strcmp(req->method_name, "DELETE")) {
        gh_level_unpin(&sh->level, gh_now_ms());
    }
    if (strcmp(req->method_name, "GET"))
        share_now(sh);
    level_answer(req, sh);
}

static void list_json(struct gh_buf *b, const char *name, struct gh_iplist *l, const char *file)
{
    struct gh_iplist_info info;
    gh_iplist_info(l, &info);
    gh_buf_printf(b, "\"%s\":{\"file\":\"", name);
    gh_buf_append_json_str(b, file ? file : "", file ? strlen(file) : 0);
    gh_buf_printf(b, "\",\"file_entries\":%zu,\"bad_lines\":%u,\"nodes\":%zu,\"runtime\":",
                  info.file_entries, info.bad_lines, info.nodes);
    gh_iplist_runtime_json(l, b);
    gh_buf_append_str(b, "}");
}

static void admin_lists(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    struct gh_buf b;
    gh_buf_init(&b, 16u << 20);
    gh_buf_append_str(&b, "{");
    list_json(&b, "block", sh->block, req->cfg->shield.block_file);
    gh_buf_append_str(&b, ",");
    list_json(&b, "allow", sh->allow, req->cfg->shield.allow_file);
    gh_buf_append_str(&b, ",\"trusted_proxies\":\"");
    const char *tp = req->cfg->shield.trusted_proxies;
    gh_buf_append_json_str(&b, tp, strlen(tp));
    gh_buf_append_str(&b, "\",\"proxy_protocol_from\":\"");
    const char *pf = req->cfg->shield.proxy_protocol_from;
    gh_buf_append_json_str(&b, pf, strlen(pf));
    gh_buf_append_str(&b, "\"}");
    respond_buf(req, 200, &b);
}

static void admin_ban(struct gh_http_req *req, struct gh_shield *sh, const struct gh_cidr *c,
                      const char *canon, uint64_t for_s);

static void admin_block(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    json_t *j = gh_http_body_object(req);
    if (!j)
        return;
    const char *text = json_string_value(json_object_get(j, "cidr"));
    json_t *fs = json_object_get(j, "for_seconds");
    bool add = !strcmp(req->method_name, "POST");
    struct gh_cidr c;
    if (!text || gh_cidr_parse(text, strlen(text), &c)) {
        json_decref(j);
        gh_http_respond_error(req, 400, "invalid_request",
                              "cidr must be an address or prefix such as 192.0.2.0/24");
        return;
    }
    if (fs && !json_is_null(fs) &&
        (!add || !json_is_integer(fs) || json_integer_value(fs) <= 0 ||
         json_integer_value(fs) > 366 * 86400)) {
        json_decref(j);
        gh_http_respond_error(req, 400, "invalid_request",
                              "for_seconds must be a positive whole number of seconds, at most "
                              "a year, and only when blocking");
        return;
    }
    uint64_t for_s = json_is_integer(fs) ? (uint64_t)json_integer_value(fs) : 0;
    json_decref(j);
    char canon[64];
    gh_cidr_format(&c, canon, sizeof canon);
    if (for_s) {
        admin_ban(req, sh, &c, canon, for_s);
        return;
    }
    int rc = add ? gh_iplist_add(sh->block, &c) : gh_iplist_remove(sh->block, &c);
    if (!add && !gh_penalty_remove(sh->box, &c)) {
        gh_nftban_remove(sh->nft, &c);
        atomic_store_explicit(&sh->sock_dirty, true, memory_order_relaxed);
        gh_log(GH_LOG_WARN, "penalty_box", "%s released from the penalty box", canon);
        if (rc == GH_ENOTFOUND)
            rc = 0;
    }
    if (rc == GH_ENOTFOUND) {
        gh_http_respond_error(req, 404, "not_found",
                              "%s is neither in the block list nor in the penalty box", canon);
        return;
    }
    if (rc && rc != GH_EEXIST) {
        gh_http_respond_error(req, rc == GH_ETOOBIG ? 422 : 500,
                              rc == GH_ETOOBIG ? "invalid_parameter" : "internal_error",
                              rc == GH_ETOOBIG ? "the block list is full" : "cannot change the "
                                                                           "block list");
        return;
    }
    gh_log(GH_LOG_WARN, "ip_list", "%s %s the block list", canon,
           add ? (rc ? "already in" : "added to") : "removed from");
    if (!rc)
        share_now(sh);
    char body[160];
    int n = snprintf(body, sizeof body, "{\"cidr\":\"%s\",\"%s\":%s}\n", canon,
                     add ? "added" : "removed", rc ? "false" : "true");
    gh_http_respond_json(req, add && !rc ? 201 : 200, body, (size_t)n);
}

/* `ctl block CIDR --for`: a ban with a timeout, in the penalty box (and
 * the kernel set), not the permanent block list. */
static void admin_ban(struct gh_http_req *req, struct gh_shield *sh, const struct gh_cidr *c,
                      const char *canon, uint64_t for_s)
{
    struct gh_ban b;
    int rc = ban(sh, c, for_s * 1000, GH_BAN_OPERATOR, gh_now_ms(), &b);
    if (rc == GH_EEXIST) {
        gh_http_respond_error(req, 422, "invalid_parameter",
                              "%s holds an allow-listed address or a trusted balancer: not banned",
                              canon);
        return;
    }
    if (rc) {
        gh_http_respond_error(req, 422, "invalid_parameter",
                              "the penalty box is full (shield.ban_max)");
        return;
    }
    gh_log(GH_LOG_WARN, "penalty_box", "%s banned for %llu s by the operator", canon,
           (unsigned long long)for_s);
    share_now(sh);
    char body[192];
    int n = snprintf(body, sizeof body,
                     "{\"cidr\":\"%s\",\"added\":true,\"for_seconds\":%llu,\"kernel\":%s}\n", canon,
                     (unsigned long long)for_s, sh->nft ? "true" : "false");
    gh_http_respond_json(req, 201, body, (size_t)n);
}

#define BANS_LIST_MAX 10000

static void admin_bans(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    uint64_t now = gh_now_ms();
    struct gh_ban *list = malloc(sizeof *list * BANS_LIST_MAX);
    if (!list) {
        gh_http_respond_error(req, 503, "busy", "out of memory");
        return;
    }
    size_t live = gh_penalty_list(sh->box, now, list, BANS_LIST_MAX);
    size_t n = GH_MIN(live, (size_t)BANS_LIST_MAX);
    struct gh_penalty_stats st;
    gh_penalty_get_stats(sh->box, &st);
    struct gh_buf b;
    gh_buf_init(&b, 16u << 20);
    const char *kernel = req->cfg->shield.kernel_ban ? "unavailable" : "off";
    gh_buf_printf(&b, "{\"kernel\":\"%s\",\"table\":\"", sh->nft ? "on" : kernel);
    const char *t = req->cfg->shield.kernel_ban_table;
    gh_buf_append_json_str(&b, t, strlen(t));
    const char *sock = sh->nft ? "off" : sh->sock_refused ? "refused" : "on";
    gh_buf_printf(&b,
                  "\",\"socket_filter\":\"%s\",\"socket_filter_bans\":%llu,\"capacity\":%zu,"
                  "\"count\":%zu,\"truncated\":%s,\"bans\":[",
                  sock, (unsigned long long)sock_entries_now(sh), st.capacity, live,
                  live > n ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        char cidr[64];
        gh_cidr_format(&list[i].cidr, cidr, sizeof cidr);
        uint64_t left = list[i].expires_ms > now ? list[i].expires_ms - now : 0;
        gh_buf_printf(&b, "%s{\"cidr\":\"%s\",\"reason\":\"%s\",\"remaining_s\":%llu}",
                      i ? "," : "", cidr, gh_ban_reason_name(list[i].reason),
                      (unsigned long long)((left + 999) / 1000));
    }
    gh_buf_append_str(&b, "]}");
    free(list);
    respond_buf(req, 200, &b);
}

static void admin_pow_verify(struct gh_http_req *req)
{
    struct gh_shield *sh = req->route->ctx;
    json_t *j = gh_http_body_object(req);
    if (!j)
        return;
    const char *scope_s = json_string_value(json_object_get(j, "scope"));
    const char *ch = json_string_value(json_object_get(j, "challenge"));
    json_t *nj = json_object_get(j, "nonce");
    const char *client = json_string_value(json_object_get(j, "client"));
    char nonce[32];
    if (json_is_integer(nj))
        snprintf(nonce, sizeof nonce, "%lld", (long long)json_integer_value(nj));
    else
        snprintf(nonce, sizeof nonce, "%s", json_string_value(nj) ? json_string_value(nj) : "");
    enum gh_pow_scope scope = GH_POW_REGISTER;
    struct gh_addr addr = req->client;
    if ((scope_s && gh_pow_scope_parse(scope_s, &scope)) || !ch ||
        (client && gh_proxy_parse_addr(client, strlen(client), &addr))) {
        json_decref(j);
        gh_http_respond_error(req, 400, "invalid_request",
                              "expected {scope, challenge, nonce, client?}");
        return;
    }
    enum gh_pow_result r = gh_pow_verify(sh->pow, scope, &addr, 0, ch, strlen(ch), nonce,
                                         strlen(nonce), gh_wall_ms());
    json_decref(j);
    if (sh->m_pow[r])
        atomic_fetch_add_explicit(sh->m_pow[r], 1, memory_order_relaxed);
    char body[96];
    int n = snprintf(body, sizeof body, "{\"valid\":%s,\"result\":\"%s\"}\n",
                     r == GH_POW_OK ? "true" : "false", gh_pow_result_name(r));
    gh_http_respond_json(req, 200, body, (size_t)n);
}

/* ---- reload ---- */

static void on_reload(struct gh_server *srv, const struct gh_config *cfg, void *data)
{
    struct gh_shield *sh = data;
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_limit_rules *rules = calloc(1, sizeof *rules);
    struct gh_ipset *trusted = NULL, *pfrom = NULL;
    struct gh_level_config lc;
    if (!rules || gh_limit_rules_parse(cfg->shield.rules, rules, &err) ||
        parse_trusted("trusted_proxies", cfg->shield.trusted_proxies, &trusted, &err) ||
        parse_trusted("proxy_protocol_from", cfg->shield.proxy_protocol_from, &pfrom, &err) ||
        level_config(cfg, &lc, &err)) {
        gh_log(GH_LOG_ERROR, "shield_reload", "shield configuration kept: %s",
               err.data ? err.data : "out of memory");
        free(rules);
        gh_ipset_unref(trusted);
        gh_ipset_unref(pfrom);
        gh_buf_dispose(&err);
        return;
    }
    retire(sh, atomic_exchange(&sh->rules, rules));
    retire_set(sh, atomic_exchange(&sh->trusted, trusted));
    retire_set(sh, atomic_exchange(&sh->proxy_from, pfrom));
    gh_level_configure(&sh->level, &lc);
    atomic_store(&sh->enabled, cfg->shield.enabled);
    shed_targets(sh, cfg);
    penalty_config(sh, cfg);
    gh_cluster_reload(cfg);
    load_lists(sh, cfg, false, &err);
    gh_buf_dispose(&err);
    (void)srv;
}

/* ---- init ---- */

static const char *const class_label[GH_NCLASSES] = {"ops", "user", "login", "register",
                                                            "anon"};

static uint64_t limiter_evictions(void *data)
{
    struct gh_limiter_stats st;
    gh_limiter_get_stats(data, &st);
    return st.evictions;
}

static double limiter_capacity(void *data)
{
    struct gh_limiter_stats st;
    gh_limiter_get_stats(data, &st);
    return (double)st.capacity;
}

int gh_shield_init(struct gh_server *srv, struct gh_buf *err)
{
    struct gh_config *cfg = gh_server_config(srv);
    struct gh_shield *sh = calloc(1, sizeof *sh);
    int rc = GH_ENOMEM;
    if (!sh)
        goto fail;
    sh->srv = srv;
    struct gh_limit_rules *rules = calloc(1, sizeof *rules);
    if (!rules)
        goto fail;
    atomic_init(&sh->rules, rules);
    rc = gh_limit_rules_parse(cfg->shield.rules, rules, err);
    if (rc) {
        struct gh_buf tmp;
        gh_buf_init(&tmp, 1024);
        gh_buf_printf(&tmp, "[shield] rules: %s", err->data ? err->data : "");
        gh_buf_reset(err);
        gh_buf_append_str(err, tmp.data ? tmp.data : "");
        gh_buf_dispose(&tmp);
        goto fail;
    }
    struct gh_level_config lc;
    struct gh_ipset *trusted = NULL, *pfrom = NULL;
    rc = level_config(cfg, &lc, err);
    if (!rc)
        rc = parse_trusted("trusted_proxies", cfg->shield.trusted_proxies, &trusted, err);
    atomic_init(&sh->trusted, trusted);
    if (!rc)
        rc = parse_trusted("proxy_protocol_from", cfg->shield.proxy_protocol_from, &pfrom, err);
    atomic_init(&sh->proxy_from, pfrom);
    if (rc)
        goto fail;
    rc = GH_ENOMEM;
    sh->lim = gh_limiter_new(cfg->shield.limiter_memory);
    sh->block = gh_iplist_new(cfg->shield.list_max);
    sh->allow = gh_iplist_new(cfg->shield.list_max);
    sh->pow = gh_pow_new(srv->secrets.hmac_key, cfg->shield.pow_replay_entries);
    /* a cluster's nodes slot a prefix alike, so that their tallies add up
     * (level_redis.c); the key is secret all the same */
    static const char tally_ctx[] = "gatehouse level tally";
    uint8_t tally_key[16];
    crypto_generichash(tally_key, sizeof tally_key, (const unsigned char *)tally_ctx,
                       sizeof tally_ctx - 1, srv->secrets.hmac_key, sizeof srv->secrets.hmac_key);
    sh->tally = gh_level_tally_new(*cfg->redis.url ? tally_key : NULL);
    sh->box = gh_penalty_new(cfg->shield.ban_max, cfg->shield.ban_max);
    sh->sock_prog = malloc(sizeof *sh->sock_prog);
    if (!sh->lim || !sh->block || !sh->allow || !sh->pow || !sh->tally || !sh->box ||
        !sh->sock_prog)
        goto fail;
    penalty_config(sh, cfg);
    rc = load_lists(sh, cfg, true, err);
    if (rc)
        goto fail;
    gh_level_init(&sh->level, &lc, gh_now_ms());
    sh->level_ready = true;
    presets_from(sh, cfg);
    sh->pow_ttl_ms = cfg->shield.pow_ttl_ms;
    atomic_init(&sh->policy_pow_bits, -1);
    sh->interval_ms = cfg->shield.level_interval_ms;
    atomic_store(&sh->enabled, cfg->shield.enabled);
    shed_targets(sh, cfg);
    atomic_store(&sh->shed_idle_milli, 1000);
    if (gh_level_subscribe_public(&sh->level, level_to_status, sh)) {
        rc = GH_ETOOBIG;
        goto fail;
    }

    for (int c = 0; c < GH_NCLASSES; c++) {
        char labels[64];
        snprintf(labels, sizeof labels, "class=\"%s\"", class_label[c]);
        sh->m_class[c] = gh_metrics_counter("gatehouse_shield_requests_total", labels,
                                            "public requests by traffic class");
        sh->m_limited[c] = gh_metrics_counter("gatehouse_shield_rate_limited_total", labels,
                                              "requests refused 429 by the limiters, by class");
        sh->m_shed[c] = gh_metrics_counter("gatehouse_shield_shed_total", labels,
                                           "requests refused 503 busy by load shedding, by class");
    }
    for (int r = 0; r <= GH_POW_BUSY; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "result=\"%s\"", gh_pow_result_name((enum gh_pow_result)r));
        for (char *p = labels; *p; p++)
            if (*p == ' ')
                *p = '_';
        sh->m_pow[r] = gh_metrics_counter("gatehouse_shield_pow_verifications_total", labels,
                                          "proof-of-work verifications by result");
    }
    sh->m_before_body = gh_metrics_counter(
        "gatehouse_shield_refused_before_body_total", "",
        "requests refused 429 from their headers, their body never read: an aggregate limit "
        "(prefix, global) of their class refused already");
    sh->m_blocked_xff = gh_metrics_counter(
        "gatehouse_shield_blocked_requests_total", "",
        "requests refused because the address reported by a trusted proxy is blocked");
    sh->m_sig_register =
        gh_metrics_gauge_scaled("gatehouse_shield_signal_register_per_second", "",
                                "registration-class requests per second, last period", 1000);
    sh->m_sig_prefixes = gh_metrics_gauge("gatehouse_shield_signal_distinct_prefixes", "",
                                          "distinct prefixes among registrations, last period");
    sh->m_pressure = gh_metrics_gauge_scaled("gatehouse_shield_pressure_ratio", "",
                                             "load-shedding pressure (1 = at target)", 1000);
    sh->m_idle_factor =
        gh_metrics_gauge_scaled("gatehouse_shield_idle_factor_ratio", "",
                                "keep-alive idle timeout factor (1 = configured)", 1000);
    gh_metrics_counter_func("gatehouse_shield_limiter_evictions_total", "",
                            "limiter entries evicted since start", limiter_evictions, sh->lim);
    gh_metrics_gauge_func("gatehouse_shield_limiter_capacity", "", "limiter table capacity in keys",
                          limiter_capacity, sh->lim);
    penalty_metrics(sh);

    struct gh_route *r1 = gh_router_add(&srv->http->router, "GET", "/api/pow/challenge",
                                        pow_challenge, sh);
    struct gh_route *a[8] = {
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/level", admin_level, sh),
        gh_router_add(&srv->http->admin_router, "PUT", "/admin/v1/level", admin_level, sh),
        gh_router_add(&srv->http->admin_router, "DELETE", "/admin/v1/level", admin_level, sh),
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/lists", admin_lists, sh),
        gh_router_add(&srv->http->admin_router, "POST", "/admin/v1/lists/block", admin_block, sh),
        gh_router_add(&srv->http->admin_router, "DELETE", "/admin/v1/lists/block", admin_block, sh),
        gh_router_add(&srv->http->admin_router, "POST", "/admin/v1/pow/verify", admin_pow_verify, sh),
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/bans", admin_bans, sh),
    };
    rc = GH_ETOOBIG;
    if (!r1)
        goto fail_routes;
    r1->cls = GH_CLASS_ANON;
    r1->body_max = 1; /* a GET: no body */
    for (size_t i = 0; i < GH_ARRAY_LEN(a); i++) {
        if (!a[i])
            goto fail_routes;
        a[i]->cls = GH_CLASS_OPS;
    }
    if (gh_server_add_worker_hook(srv, worker_init, worker_dispose, sh) ||
        gh_server_add_reload_hook(srv, on_reload, sh))
        goto fail_routes;
    rc = gh_cluster_init(srv, cfg, err); /* [redis]: limits shared by the nodes */
    if (!rc)
        rc = gh_level_redis_init(srv, cfg); /* and the attack level's signals */
    if (rc)
        goto fail;
    srv->http->accept_filter = accept_filter;
    srv->http->accept_filter_data = sh;
    srv->http->router.filter = request_filter;
    srv->http->router.filter_data = sh;
    srv->http->header_filter = header_filter;
    srv->http->header_filter_data = sh;
    srv->http->credentials = credentials;
    srv->http->credentials_data = sh;
    srv->http->credentials_fetch = credentials_fetch;
    srv->http->credentials_cancel = credentials_cancel;
    srv->http->proxy_trusted = proxy_trusted;
    srv->http->proxy_trusted_data = sh;
    kernel_start(sh, cfg); /* last: nothing after it can fail and leave the table */
    the_shield = sh;
    gh_config_unref(cfg);
    return 0;
fail_routes:
    gh_buf_printf(err, "cannot register the shield's routes and hooks");
fail:
    the_shield = sh; /* so dispose frees what was made */
    gh_shield_dispose();
    gh_config_unref(cfg);
    return rc;
}

void gh_shield_dispose(void)
{
    struct gh_shield *sh = the_shield;
    if (!sh)
        return;
    the_shield = NULL;
    gh_level_redis_dispose();
    gh_cluster_dispose();
    free(atomic_load(&sh->rules));
    gh_ipset_unref(atomic_load(&sh->trusted));
    gh_ipset_unref(atomic_load(&sh->proxy_from));
    for (unsigned i = 0; i < sh->nretired; i++)
        free(sh->retired[i]);
    for (unsigned i = 0; i < sh->nretired_sets; i++)
        gh_ipset_unref(sh->retired_sets[i]);
    gh_limiter_free(sh->lim);
    gh_iplist_free(sh->block);
    gh_iplist_free(sh->allow);
    gh_pow_free(sh->pow);
    gh_level_tally_free(sh->tally);
    gh_nftban_stop(sh->nft); /* the table goes; its bans were in the kernel only */
    gh_penalty_free(sh->box);
    free(sh->sock_prog);
    if (sh->level_ready)
        gh_level_dispose(&sh->level);
    free(sh);
}
