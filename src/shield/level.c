/* This module implements the attack-level state machine of level.h. */
#include "shield/level.h"

#include "core/log.h"
#include "http/http.h"
#include "obs/metrics.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const level_names[GH_LEVEL_COUNT] = {"normal", "elevated", "under_attack"};
static const char *const signal_names[GH_LEVEL_NSIGNALS] = {
    "register_rate", "sms_rate",     "verify_fail_ratio", "login_fail_ratio",
    "distinct_prefixes", "refusal_rate", "queue_delay_ms", "loop_lag_ms", "login_fail_rate"};

const char *gh_level_name(enum gh_level l)
{
    return (unsigned)l < GH_LEVEL_COUNT ? level_names[l] : "?";
}

int gh_level_parse(const char *s, enum gh_level *out)
{
    for (int i = 0; i < GH_LEVEL_COUNT; i++)
        if (!strcmp(s, level_names[i])) {
            *out = (enum gh_level)i;
            return 0;
        }
    return GH_EINVAL;
}

const char *gh_reg_mode_name(enum gh_reg_mode m)
{
    static const char *const names[] = {"open", "restricted", "busy", "closed"};
    return (unsigned)m < GH_ARRAY_LEN(names) ? names[m] : "?";
}

void gh_level_init(struct gh_level_machine *m, const struct gh_level_config *cfg, uint64_t now_ms)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->cfg = *cfg;
    m->since_ms = now_ms;
    atomic_init(&m->effective_pub, GH_LEVEL_NORMAL);
    m->m_changes = gh_metrics_counter("gatehouse_shield_attack_level_changes_total", "",
                                      "changes of the attack level");
    m->m_level = gh_metrics_gauge("gatehouse_shield_attack_level", "",
                                  "attack level: 0 normal, 1 elevated, 2 under_attack");
    if (m->m_level)
        atomic_store(m->m_level, 0);
}

void gh_level_dispose(struct gh_level_machine *m)
{
    pthread_mutex_destroy(&m->mu);
}

void gh_level_configure(struct gh_level_machine *m, const struct gh_level_config *cfg)
{
    pthread_mutex_lock(&m->mu);
    m->cfg = *cfg;
    pthread_mutex_unlock(&m->mu);
}

int gh_level_subscribe(struct gh_level_machine *m, gh_level_listener_fn fn, void *data)
{
    if (m->nlisteners >= GH_LEVEL_LISTENERS_MAX)
        return GH_ETOOBIG;
    m->listeners[m->nlisteners].fn = fn;
    m->listeners[m->nlisteners].data = data;
    m->nlisteners++;
    return 0;
}

int gh_level_subscribe_public(struct gh_level_machine *m, gh_level_listener_fn fn, void *data)
{
    if (m->npublic >= GH_LEVEL_LISTENERS_MAX)
        return GH_ETOOBIG;
    m->public_listeners[m->npublic].fn = fn;
    m->public_listeners[m->npublic].data = data;
    m->npublic++;
    return 0;
}

enum gh_level gh_level_get_public(struct gh_level_machine *m)
{
    pthread_mutex_lock(&m->mu);
    enum gh_level l = m->public_level;
    pthread_mutex_unlock(&m->mu);
    return l;
}

enum gh_level gh_level_get(const struct gh_level_machine *m)
{
    return (enum gh_level)atomic_load_explicit(&m->effective_pub, memory_order_relaxed);
}

/* The level the signals ask for, and in why the first signal that asks it. */
static enum gh_level level_of(const struct gh_level_config *c, const struct gh_level_signals *s,
                              char *why, size_t whylen)
{
    double v[GH_LEVEL_NSIGNALS] = {s->register_rate,     s->sms_rate,     s->verify_fail_ratio,
                                   s->login_fail_ratio,  s->distinct_prefixes,
                                   s->refusal_rate,      s->queue_delay_ms, s->loop_lag_ms,
                                   s->login_fail_rate};
    /* a ratio of 3 failures in 4 tries says nothing: each ratio counts
     * once its own events are frequent enough */
    enum gh_level best = GH_LEVEL_NORMAL;
    why[0] = '\0';
    for (int i = 0; i < GH_LEVEL_NSIGNALS; i++) {
        if ((i == 2 && s->verify_rate < c->ratio_min_rate) ||
            (i == 3 && s->login_rate < c->ratio_min_rate))
            continue;
        for (int l = 1; l >= 0; l--) {
            double t = c->threshold[i][l];
            if (t > 0 && v[i] >= t) {
                enum gh_level lv = l ? GH_LEVEL_UNDER_ATTACK : GH_LEVEL_ELEVATED;
                if (lv > best) {
                    best = lv;
                    snprintf(why, whylen, "%s %.2f >= %.2f", signal_names[i], v[i], t);
                }
                break;
            }
        }
    }
    return best;
}

struct change {
    bool happened;
    enum gh_level from, to;
    const char *reason;
};

/* Moves the public level after the effective one: up once the effective
 * level has held for incident_after_ms (at once when an operator pinned
 * it), down at once. One address flapping the computed level for a
 * period never reaches the status page. */
static void publish_locked(struct gh_level_machine *m, uint64_t now_ms, const char *reason,
                           struct change *ch)
{
    GH_ASSERT_LOCKED(&m->mu);
    enum gh_level eff = m->effective, pub = GH_LEVEL_NORMAL;
    /* since + 1: 0 means "not at this level" even on a clock that starts at 0 */
    for (unsigned l = 1; l < GH_LEVEL_COUNT; l++) {
        if ((unsigned)eff < l)
            m->above_since_ms[l] = 0;
        else if (!m->above_since_ms[l])
            m->above_since_ms[l] = now_ms + 1;
    }
    for (unsigned l = GH_LEVEL_COUNT - 1; l > 0; l--)
        if ((unsigned)eff >= l &&
            (m->pinned || now_ms + 1 - m->above_since_ms[l] >= m->cfg.incident_after_ms)) {
            pub = (enum gh_level)l;
            break;
        }
    if (pub == m->public_level)
        return;
    ch->happened = true;
    ch->from = m->public_level;
    ch->to = pub;
    ch->reason = pub > m->public_level && !m->pinned ? "held" : reason;
    m->public_level = pub;
}

/* Recomputes the effective level; records a change. */
static void settle_locked(struct gh_level_machine *m, uint64_t now_ms, const char *reason,
                          struct change *ch)
{
    GH_ASSERT_LOCKED(&m->mu);
    enum gh_level eff = m->pinned ? m->pin_level : m->computed;
    if (eff == m->effective)
        return;
    ch->happened = true;
    ch->from = m->effective;
    ch->to = eff;
    ch->reason = reason;
    m->effective = eff;
    m->since_ms = now_ms;
    atomic_store_explicit(&m->effective_pub, (int)eff, memory_order_relaxed);
}

static void expire_pin_locked(struct gh_level_machine *m, uint64_t now_ms, struct change *ch)
{
    GH_ASSERT_LOCKED(&m->mu);
    if (m->pinned && m->pin_until_ms && now_ms >= m->pin_until_ms) {
        m->pinned = false;
        gh_log(GH_LOG_INFO, "attack_level", "pin of %s expired", level_names[m->pin_level]);
        settle_locked(m, now_ms, "pin expired", ch);
    }
}

/* Tells the public listeners (the status page), outside the mutex. */
static void announce_public(struct gh_level_machine *m, const struct change *ch)
{
    if (!ch->happened)
        return;
    gh_log(GH_LOG_INFO, "attack_level_public", "public attack level %s -> %s (%s)",
           level_names[ch->from], level_names[ch->to], ch->reason);
    for (unsigned i = 0; i < m->npublic; i++)
        m->public_listeners[i].fn(ch->from, ch->to, ch->reason, m->public_listeners[i].data);
}

/* Logs, counts and tells the listeners, outside the mutex. */
static void announce(struct gh_level_machine *m, const struct change *ch, const char *why)
{
    if (!ch->happened)
        return;
    gh_log(ch->to > ch->from ? GH_LOG_WARN : GH_LOG_INFO, "attack_level",
           "attack level %s -> %s (%s%s%s)", level_names[ch->from], level_names[ch->to],
           ch->reason, why && *why ? ": " : "", why ? why : "");
    if (m->m_changes)
        atomic_fetch_add(m->m_changes, 1);
    if (m->m_level)
        atomic_store(m->m_level, (uint64_t)ch->to);
    for (unsigned i = 0; i < m->nlisteners; i++)
        m->listeners[i].fn(ch->from, ch->to, ch->reason, m->listeners[i].data);
}

enum gh_level gh_level_feed(struct gh_level_machine *m, const struct gh_level_signals *s,
                            uint64_t now_ms)
{
    struct change pin_ch = {0}, ch = {0}, pub_ch = {0};
    char why[96];
    pthread_mutex_lock(&m->mu);
    expire_pin_locked(m, now_ms, &pin_ch);
    enum gh_level want = level_of(&m->cfg, s, why, sizeof why);
    if (want > m->computed) { /* rise at once */
        m->computed = want;
        m->calm = 0;
        snprintf(m->last_reason, sizeof m->last_reason, "%s", why);
    } else if (want < m->computed) { /* fall one level after enough calm */
        if (++m->calm >= GH_MAX(m->cfg.calm_periods, 1u)) {
            m->computed = (enum gh_level)(m->computed - 1);
            m->calm = 0;
            snprintf(m->last_reason, sizeof m->last_reason, "calm for %u periods",
                     GH_MAX(m->cfg.calm_periods, 1u));
        }
    } else {
        m->calm = 0;
    }
    settle_locked(m, now_ms, "signals", &ch);
    publish_locked(m, now_ms, pin_ch.happened ? "pin expired" : "signals", &pub_ch);
    enum gh_level eff = m->effective;
    char reason[96];
    snprintf(reason, sizeof reason, "%s", m->last_reason);
    pthread_mutex_unlock(&m->mu);
    announce(m, &pin_ch, NULL);
    announce(m, &ch, reason);
    announce_public(m, &pub_ch);
    return eff;
}

void gh_level_pin(struct gh_level_machine *m, enum gh_level level, uint64_t for_ms, uint64_t now_ms)
{
    struct change ch = {0}, pub_ch = {0};
    pthread_mutex_lock(&m->mu);
    m->pinned = true;
    m->pin_level = level;
    m->pin_until_ms = for_ms ? now_ms + for_ms : 0;
    settle_locked(m, now_ms, "pin", &ch);
    publish_locked(m, now_ms, "pin", &pub_ch);
    pthread_mutex_unlock(&m->mu);
    if (for_ms)
        gh_log(GH_LOG_WARN, "attack_level", "level pinned to %s for %llu s", level_names[level],
               (unsigned long long)(for_ms / 1000));
    else
        gh_log(GH_LOG_WARN, "attack_level", "level pinned to %s until unpinned",
               level_names[level]);
    announce(m, &ch, NULL);
    announce_public(m, &pub_ch);
}

void gh_level_unpin(struct gh_level_machine *m, uint64_t now_ms)
{
    struct change ch = {0}, pub_ch = {0};
    pthread_mutex_lock(&m->mu);
    bool was = m->pinned;
    m->pinned = false;
    settle_locked(m, now_ms, "unpin", &ch);
    publish_locked(m, now_ms, "unpin", &pub_ch);
    pthread_mutex_unlock(&m->mu);
    if (was)
        gh_log(GH_LOG_WARN, "attack_level", "level unpinned");
    announce(m, &ch, NULL);
    announce_public(m, &pub_ch);
}

void gh_level_tick(struct gh_level_machine *m, uint64_t now_ms)
{
    struct change ch = {0}, pub_ch = {0};
    pthread_mutex_lock(&m->mu);
    expire_pin_locked(m, now_ms, &ch);
    publish_locked(m, now_ms, "pin expired", &pub_ch);
    pthread_mutex_unlock(&m->mu);
    announce(m, &ch, NULL);
    announce_public(m, &pub_ch);
}

int gh_level_json(struct gh_level_machine *m, uint64_t now_ms, struct gh_buf *out)
{
    pthread_mutex_lock(&m->mu);
    int rc = gh_buf_printf(out, "{\"level\":\"%s\",\"computed\":\"%s\",\"pinned\":%s,",
                           level_names[m->effective], level_names[m->computed],
                           m->pinned ? "true" : "false");
    if (!rc && m->pinned && m->pin_until_ms)
        rc = gh_buf_printf(out, "\"pinned_for_ms\":%llu,",
                           (unsigned long long)(m->pin_until_ms > now_ms
                                                    ? m->pin_until_ms - now_ms
                                                    : 0));
    else if (!rc)
        rc = gh_buf_append_str(out, "\"pinned_for_ms\":null,");
    if (!rc)
        rc = gh_buf_printf(out, "\"since_ms\":%llu,\"reason\":\"",
                           (unsigned long long)(now_ms - GH_MIN(m->since_ms, now_ms)));
    if (!rc)
        rc = gh_buf_append_json_str(out, m->last_reason, strlen(m->last_reason));
    if (!rc)
        rc = gh_buf_printf(out, "\",\"public\":\"%s\"}", level_names[m->public_level]);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- the tally ---- */

struct gh_level_tally *gh_level_tally_new(const uint8_t *key)
{
    struct gh_level_tally *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (key)
        memcpy(t->key, key, sizeof t->key);
    else
        randombytes_buf(t->key, sizeof t->key);
    return t;
}

void gh_level_tally_free(struct gh_level_tally *t)
{
    free(t);
}

/* The slot of a's /24 (/48): keyed, so nobody picks prefixes that share
 * (or avoid) a slot. */
static unsigned slot_of(const struct gh_level_tally *t, const struct gh_addr *a)
{
    uint8_t pfx[7] = {a->family};
    size_t n = a->family == AF_INET ? 3 : 6;
    memcpy(pfx + 1, a->bytes, n);
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, pfx, 1 + n, t->key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (unsigned)(v % GH_LEVEL_TALLY_SLOTS);
}

void gh_level_tally_add(struct gh_level_tally *t, enum gh_level_event ev, const struct gh_addr *a,
                        unsigned n)
{
    GH_ASSERT((unsigned)ev < GH_LEVEL_EV_COUNT);
    if (!t || !a || (unsigned)ev >= GH_LEVEL_EV_COUNT)
        return;
    atomic_fetch_add_explicit(&t->slot[ev][slot_of(t, a)], n, memory_order_relaxed);
}

struct taken {
    double events;   /* with each slot capped at source_cap */
    double prefixes; /* estimated distinct prefixes */
};

/* linear counting: n ~ -m ln(V/m), V the empty slots; rounded, so that
 * k prefixes in k slots read k */
static double prefixes_of(unsigned used)
{
    double m = GH_LEVEL_TALLY_SLOTS;
    unsigned zero = GH_LEVEL_TALLY_SLOTS - GH_MIN(used, (unsigned)GH_LEVEL_TALLY_SLOTS);
    double p = zero ? -m * log((double)zero / m) : m * log(m);
    return floor(p + 0.5);
}

/* Empties one event's slots. */
static struct taken take_event(struct gh_level_tally *t, enum gh_level_event ev, unsigned cap)
{
    uint64_t sum = 0;
    unsigned used = 0;
    for (unsigned i = 0; i < GH_LEVEL_TALLY_SLOTS; i++) {
        /* most slots are empty: a plain read skips them, where a swap is
         * a locked instruction per slot (24,576 a second on the admin
         * worker, which shares the workers' CPUs); an event counted
         * between the read and the next look waits for the next take */
        if (!atomic_load_explicit(&t->slot[ev][i], memory_order_relaxed))
            continue;
        uint32_t c = atomic_exchange_explicit(&t->slot[ev][i], 0, memory_order_relaxed);
        if (c) {
            used++;
            sum += cap ? GH_MIN(c, cap) : c;
        }
    }
    return (struct taken){(double)sum, prefixes_of(used)};
}

/* The event signals of s from each event's capped events and distinct
 * prefixes, then feeds s. */
static enum gh_level feed_taken(struct gh_level_machine *m, const struct taken *e, double dt_s,
                                struct gh_level_signals *s, uint64_t now_ms)
{
    pthread_mutex_lock(&m->mu);
    unsigned min_ev = GH_MAX(m->cfg.min_events, 1u), min_pfx = m->cfg.min_prefixes;
    pthread_mutex_unlock(&m->mu);
    if (dt_s <= 0)
        dt_s = 1e-3;
    bool broad[GH_LEVEL_EV_COUNT];
    for (int i = 0; i < GH_LEVEL_EV_COUNT; i++)
        broad[i] = e[i].events >= min_ev && e[i].prefixes >= min_pfx;
    /* a signal without volume and breadth says nothing about an attack:
     * it reads 0, whatever one source did */
    s->register_rate = broad[GH_LEVEL_EV_REGISTER] ? e[GH_LEVEL_EV_REGISTER].events / dt_s : 0;
    s->distinct_prefixes = e[GH_LEVEL_EV_REGISTER].prefixes;
    s->sms_rate = broad[GH_LEVEL_EV_SMS] ? e[GH_LEVEL_EV_SMS].events / dt_s : 0;
    double vok = e[GH_LEVEL_EV_VERIFY_OK].events, vfail = e[GH_LEVEL_EV_VERIFY_FAIL].events;
    s->verify_rate = (vok + vfail) / dt_s;
    s->verify_fail_ratio = broad[GH_LEVEL_EV_VERIFY_FAIL] ? vfail / (vok + vfail) : 0;
    double lok = e[GH_LEVEL_EV_LOGIN_OK].events, lfail = e[GH_LEVEL_EV_LOGIN_FAIL].events;
    s->login_rate = (lok + lfail) / dt_s;
    s->login_fail_ratio = broad[GH_LEVEL_EV_LOGIN_FAIL] ? lfail / (lok + lfail) : 0;
    s->login_fail_rate = broad[GH_LEVEL_EV_LOGIN_FAIL] ? lfail / dt_s : 0;
    return gh_level_feed(m, s, now_ms);
}

enum gh_level gh_level_feed_tally(struct gh_level_machine *m, struct gh_level_tally *t,
                                  double dt_s, struct gh_level_signals *s, uint64_t now_ms)
{
    unsigned cap = gh_level_source_cap(m);
    struct taken e[GH_LEVEL_EV_COUNT];
    for (int i = 0; i < GH_LEVEL_EV_COUNT; i++)
        e[i] = take_event(t, (enum gh_level_event)i, cap);
    return feed_taken(m, e, dt_s, s, now_ms);
}

enum gh_level gh_level_feed_counts(struct gh_level_machine *m, const struct gh_level_counts *c,
                                   double dt_s, struct gh_level_signals *s, uint64_t now_ms)
{
    struct taken e[GH_LEVEL_EV_COUNT];
    for (int i = 0; i < GH_LEVEL_EV_COUNT; i++)
        e[i] = (struct taken){c->events[i], prefixes_of(c->slots[i])};
    return feed_taken(m, e, dt_s, s, now_ms);
}

unsigned gh_level_source_cap(struct gh_level_machine *m)
{
    pthread_mutex_lock(&m->mu);
    unsigned cap = m->cfg.source_cap;
    pthread_mutex_unlock(&m->mu);
    return cap;
}
