/* This module implements the attack-level state machine of level.h. */
#include "shield/level.h"

#include "core/log.h"
#include "obs/metrics.h"

#include <stdio.h>
#include <string.h>

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
    m->m_changes = gh_metrics_counter("gh_shield_attack_level_changes_total", "",
                                      "changes of the attack level");
    m->m_level = gh_metrics_gauge("gh_shield_attack_level", "",
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

/* Recomputes the effective level; records a change. */
static void settle_locked(struct gh_level_machine *m, uint64_t now_ms, const char *reason,
                          struct change *ch)
{
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
    if (m->pinned && m->pin_until_ms && now_ms >= m->pin_until_ms) {
        m->pinned = false;
        gh_log(GH_LOG_INFO, "attack_level", "pin of %s expired", level_names[m->pin_level]);
        settle_locked(m, now_ms, "pin expired", ch);
    }
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
    struct change pin_ch = {0}, ch = {0};
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
    enum gh_level eff = m->effective;
    char reason[96];
    snprintf(reason, sizeof reason, "%s", m->last_reason);
    pthread_mutex_unlock(&m->mu);
    announce(m, &pin_ch, NULL);
    announce(m, &ch, reason);
    return eff;
}

void gh_level_pin(struct gh_level_machine *m, enum gh_level level, uint64_t for_ms, uint64_t now_ms)
{
    struct change ch = {0};
    pthread_mutex_lock(&m->mu);
    m->pinned = true;
    m->pin_level = level;
    m->pin_until_ms = for_ms ? now_ms + for_ms : 0;
    settle_locked(m, now_ms, "pin", &ch);
    pthread_mutex_unlock(&m->mu);
    if (for_ms)
        gh_log(GH_LOG_WARN, "attack_level", "level pinned to %s for %llu s", level_names[level],
               (unsigned long long)(for_ms / 1000));
    else
        gh_log(GH_LOG_WARN, "attack_level", "level pinned to %s until unpinned",
               level_names[level]);
    announce(m, &ch, NULL);
}

void gh_level_unpin(struct gh_level_machine *m, uint64_t now_ms)
{
    struct change ch = {0};
    pthread_mutex_lock(&m->mu);
    bool was = m->pinned;
    m->pinned = false;
    settle_locked(m, now_ms, "unpin", &ch);
    pthread_mutex_unlock(&m->mu);
    if (was)
        gh_log(GH_LOG_WARN, "attack_level", "level unpinned");
    announce(m, &ch, NULL);
}

void gh_level_tick(struct gh_level_machine *m, uint64_t now_ms)
{
    struct change ch = {0};
    pthread_mutex_lock(&m->mu);
    expire_pin_locked(m, now_ms, &ch);
    pthread_mutex_unlock(&m->mu);
    announce(m, &ch, NULL);
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
        rc = gh_buf_append_str(out, "\"}");
    pthread_mutex_unlock(&m->mu);
    return rc;
}
