/* The attack level: a state machine normal / elevated / under_attack fed
 * every few seconds with signals (registration and SMS request rates,
 * verification and login failure ratios, distinct prefixes among
 * registrations, limiter refusals, queue delay, event-loop lag). It rises
 * at once when a signal crosses a threshold and falls one level only after
 * `calm_periods` consecutive periods below it (hysteresis, so it does not
 * flap). Operators pin a level for a time or until unpinned; the computed
 * level keeps being tracked underneath and takes over when the pin ends.
 * Each level maps to a registration policy preset (gh_level_policy).
 *
 * Every change of the effective level is logged (event "attack_level"),
 * counted (gatehouse_shield_attack_level_changes_total, gauge
 * gatehouse_shield_attack_level) and handed to the listeners (the status page).
 *
 * Attack evidence must be broad (docs/internals/shield.md, "Attack level"):
 * the event signals come from a tally (gh_level_tally) that counts each
 * event under its source's /24 (IPv6 /48), caps what one source adds to a
 * period, and ignores a signal whose events are too few or come from too
 * few prefixes. One address, or one /24, cannot raise the level however
 * it behaves. The callers never tally the service's own refusals (429,
 * 403 policy or proof of work, 503 busy).
 *
 * The public level (what the status page hears, the automatic incident)
 * follows the effective level up only once it has held for
 * `incident_after_ms`, unless an operator pinned it; it follows it down
 * at once.
 *
 * Threads: the machine holds a mutex; any thread may feed, pin, unpin and
 * read it. Listeners run on the thread that caused the change, outside
 * the mutex, and must not block. The caller owns the struct (init/dispose);
 * time is a parameter (ms, monotonic) so tests drive a simulated clock. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

#include <pthread.h>

struct gh_addr;

enum gh_level { GH_LEVEL_NORMAL, GH_LEVEL_ELEVATED, GH_LEVEL_UNDER_ATTACK, GH_LEVEL_COUNT };

/* One period's signals. Rates are per second, ratios 0..1. */
struct gh_level_signals {
    double register_rate;    /* registration attempts */
    double sms_rate;         /* SMS code requests */
    double verify_fail_ratio; /* wrong SMS codes / code checks */
    double login_fail_ratio;  /* failed logins / logins */
    double distinct_prefixes; /* distinct /24 or /48 among registrations this period */
    double refusal_rate;      /* limiter refusals */
    double queue_delay_ms;    /* admission queue delay */
    double loop_lag_ms;       /* worst event-loop lag */
    double login_fail_rate;   /* failed and refused password logins */
    /* not thresholds: the event rates under which each ratio is ignored */
    double verify_rate; /* SMS code checks */
    double login_rate;  /* login outcomes (ok, failed, refused) */
};

#define GH_LEVEL_NSIGNALS 9

/* Thresholds per signal to reach elevated [0] and under_attack [1]; 0
 * leaves that signal out. In the order of struct gh_level_signals. */
struct gh_level_config {
    double threshold[GH_LEVEL_NSIGNALS][2];
    unsigned calm_periods; /* periods below a level before falling from it */
    /* ratios only count once there are enough events to mean something */
    double ratio_min_rate; /* events/s (of that ratio: verify_rate, login_rate) under which
                              a ratio is ignored */
    /* breadth, applied by gh_level_feed_tally to the event signals */
    unsigned min_events;   /* capped events a signal needs in a period */
    unsigned min_prefixes; /* distinct /24 (/48) a signal needs in a period */
    unsigned source_cap;   /* events one /24 (/48) adds to a signal per period */
    uint64_t incident_after_ms; /* a computed rise goes public after holding this long */
};

/* What a level asks of registration. */
enum gh_reg_mode { GH_REG_OPEN, GH_REG_RESTRICTED, GH_REG_BUSY, GH_REG_CLOSED };

struct gh_level_policy {
    enum gh_reg_mode mode;
    const char *regions; /* "CN,HK" for restricted, "" for all */
    unsigned pow_bits;
    unsigned register_per_minute; /* 0 = no cap */
};

/* Presets from configuration: what each level asks. */
struct gh_level_presets {
    struct gh_level_policy level[GH_LEVEL_COUNT];
};

/* Called after the effective level changed (reason: "signals", "pin",
 * "unpin", "pin expired"). */
typedef void (*gh_level_listener_fn)(enum gh_level from, enum gh_level to, const char *reason,
                                     void *data);

#define GH_LEVEL_LISTENERS_MAX 8

struct gh_level_machine {
    pthread_mutex_t mu;
    struct gh_level_config cfg;
    enum gh_level computed;  /* from the signals */
    enum gh_level effective; /* what everybody uses */
    enum gh_level public_level; /* effective once held (incident_after_ms) or pinned */
    uint64_t above_since_ms[GH_LEVEL_COUNT]; /* effective >= l since then (0 = not) */
    atomic_int effective_pub; /* effective, readable without the mutex */
    unsigned calm;            /* consecutive periods below computed */
    bool pinned;
    enum gh_level pin_level;
    uint64_t pin_until_ms; /* 0 = until unpinned */
    uint64_t since_ms;     /* when effective last changed */
    char last_reason[96];  /* the signal that raised it, for operators */
    struct {
        gh_level_listener_fn fn;
        void *data;
    } listeners[GH_LEVEL_LISTENERS_MAX];
    unsigned nlisteners;
    struct {
        gh_level_listener_fn fn;
        void *data;
    } public_listeners[GH_LEVEL_LISTENERS_MAX];
    unsigned npublic;
    _Atomic uint64_t *m_changes, *m_level;
};

/* ---- the tally of one period's events, by source ---- */

enum gh_level_event {
    GH_LEVEL_EV_REGISTER,    /* a register-class request the limiter let through */
    GH_LEVEL_EV_SMS,         /* an SMS code sent */
    GH_LEVEL_EV_VERIFY_OK,   /* an SMS code checked right */
    GH_LEVEL_EV_VERIFY_FAIL, /* an SMS code checked wrong */
    GH_LEVEL_EV_LOGIN_OK,
    GH_LEVEL_EV_LOGIN_FAIL, /* a login judged and failed (never a refusal) */
    GH_LEVEL_EV_COUNT
};

/* Counters per event and per slot; a slot is a keyed hash of the source's
 * /24 (/48). Fixed size (GH_LEVEL_EV_COUNT × GH_LEVEL_TALLY_SLOTS × 4
 * bytes, 96 KiB) whatever the number of sources: prefixes that share a
 * slot share its cap, which only ever undercounts. The distinct prefixes
 * of an event are estimated from its empty slots (linear counting). */
#define GH_LEVEL_TALLY_SLOTS 4096

struct gh_level_tally {
    uint8_t key[16];
    _Atomic uint32_t slot[GH_LEVEL_EV_COUNT][GH_LEVEL_TALLY_SLOTS];
};

/* A tally keyed with key (16 bytes), or a random key when key is NULL.
 * NULL when out of memory. Freed by gh_level_tally_free. */
struct gh_level_tally *gh_level_tally_new(const uint8_t *key);
void gh_level_tally_free(struct gh_level_tally *t);
/* Counts n events ev from a's /24 (/48). Lock-free; any thread. */
void gh_level_tally_add(struct gh_level_tally *t, enum gh_level_event ev, const struct gh_addr *a,
                        unsigned n);
/* Empties the tally into the event signals of s (register_rate, sms_rate,
 * the ratios and their rates, distinct_prefixes, login_fail_rate) for a
 * period of dt_s seconds, with the machine's breadth settings, then feeds
 * s like gh_level_feed. Signals that are not events (queue delay, lag,
 * refusal_rate) are taken from s as they are. Call from one thread. */
enum gh_level gh_level_feed_tally(struct gh_level_machine *m, struct gh_level_tally *t,
                                  double dt_s, struct gh_level_signals *s, uint64_t now_ms);

/* A period's events summed elsewhere (the cluster's, level_redis.c): per
 * event, the events with each slot capped at source_cap, and the slots
 * that held any (the distinct prefixes are estimated from them as from a
 * tally's). */
struct gh_level_counts {
    double events[GH_LEVEL_EV_COUNT];
    unsigned slots[GH_LEVEL_EV_COUNT];
};
/* Like gh_level_feed_tally, from counts. Any thread. */
enum gh_level gh_level_feed_counts(struct gh_level_machine *m, const struct gh_level_counts *c,
                                   double dt_s, struct gh_level_signals *s, uint64_t now_ms);
/* The events one /24 (/48) adds to a signal per period (configured). */
unsigned gh_level_source_cap(struct gh_level_machine *m);

void gh_level_init(struct gh_level_machine *m, const struct gh_level_config *cfg, uint64_t now_ms);
void gh_level_dispose(struct gh_level_machine *m);
/* Replaces the thresholds (reload). */
void gh_level_configure(struct gh_level_machine *m, const struct gh_level_config *cfg);
/* Adds a listener; before the machine is shared. 0 or GH_ETOOBIG. */
int gh_level_subscribe(struct gh_level_machine *m, gh_level_listener_fn fn, void *data);
/* Adds a listener of the public level (the status page): told when it
 * changes (reason "held", "pin", "unpin", "pin expired", "signals" when
 * falling). Before the machine is shared. 0 or GH_ETOOBIG. */
int gh_level_subscribe_public(struct gh_level_machine *m, gh_level_listener_fn fn, void *data);

/* Feeds one period's signals; returns the effective level. Also ends an
 * expired pin. */
enum gh_level gh_level_feed(struct gh_level_machine *m, const struct gh_level_signals *s,
                            uint64_t now_ms);
/* Pins level for for_ms (0 = until unpinned). */
void gh_level_pin(struct gh_level_machine *m, enum gh_level level, uint64_t for_ms, uint64_t now_ms);
/* Ends a pin: the computed level applies again. */
void gh_level_unpin(struct gh_level_machine *m, uint64_t now_ms);
/* Ends the pin when it has expired (called by feed; also by readers that
 * want to be exact between periods). */
void gh_level_tick(struct gh_level_machine *m, uint64_t now_ms);
/* The effective level, lock-free. */
enum gh_level gh_level_get(const struct gh_level_machine *m);
/* The public level (see above). */
enum gh_level gh_level_get_public(struct gh_level_machine *m);

/* The state as JSON: {"level","computed","pinned","pinned_for_ms"
 * (remaining ms of a timed pin, else null),"since_ms" (since the last
 * change),"reason" (what last moved the computed level),"public" (what
 * the status page shows)}. */
int gh_level_json(struct gh_level_machine *m, uint64_t now_ms, struct gh_buf *out);

const char *gh_level_name(enum gh_level l);
int gh_level_parse(const char *s, enum gh_level *out);
const char *gh_reg_mode_name(enum gh_reg_mode m);
