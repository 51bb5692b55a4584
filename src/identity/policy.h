/* The registration policy: open, restricted (to a list of regions), busy
 * (503 with Retry-After) or closed; the proof-of-work difficulty the shield
 * enforces; the message users see, in English and Chinese. The current
 * policy is an immutable struct behind an atomic pointer: readers on any
 * thread get it with one load, a change swaps the pointer (main or admin
 * thread), and replaced policies are freed a minute later, long after any
 * reader let go (readers keep the pointer only within one callback).
 *
 * Three layers make the effective policy, the first present wins:
 *  1. an operator policy set "for" a duration (a pin): in force until it
 *     expires, then the layers below apply again;
 *  2. the attack level's preset (gh_policy_set_overlay), applied over the
 *     standing policy and never loosening it: the stricter mode, the
 *     larger pow_bits, the regions both allow, the registration cap;
 *  3. the standing policy: the configured default (identity.policy …), or
 *     what an operator set without a duration (persisted).
 * Every change of the effective policy calls the listener. */
#pragma once

#include "core/buf.h"
#include "core/common.h"
#include "core/config.h"

enum gh_policy_mode { GH_POLICY_OPEN, GH_POLICY_RESTRICTED, GH_POLICY_BUSY, GH_POLICY_CLOSED };

#define GH_POLICY_REGIONS_MAX 32
#define GH_POLICY_MSG_MAX     512

struct gh_policy {
    enum gh_policy_mode mode;
    char regions[GH_POLICY_REGIONS_MAX][4]; /* ISO codes, upper case */
    unsigned nregions;
    unsigned pow_bits;
    char msg_en[GH_POLICY_MSG_MAX]; /* what users see for this mode */
    char msg_zh[GH_POLICY_MSG_MAX];
    bool custom_msg;               /* the messages were set explicitly */
    uint64_t set_ms;               /* wall clock of the change */
    uint64_t until_ms;             /* wall clock; 0 = until changed */
    uint64_t retry_after_s;        /* of busy answers */
    unsigned register_per_minute;  /* registration cap (level preset); 0 = none */
    char source[32];               /* "config", "operator", "level elevated" */
    struct gh_policy *fallback;    /* the standing policy, shown after until_ms (owned) */
};

/* What an attack level asks of registration (the shield's presets). */
struct gh_policy_overlay {
    enum gh_policy_mode mode;
    char regions[256]; /* "CN,HK" for restricted */
    unsigned pow_bits;
    unsigned register_per_minute;
    char level[16]; /* its name, for the source and the audit */
};

/* Called after the effective policy changed (why: "operator", "operator
 * (temporary)", "level", "expired"), outside the module's lock, on the
 * thread that changed it. */
typedef void (*gh_policy_listener_fn)(const struct gh_policy *eff, const char *why, void *data);

/* Installs the first policy: the stored JSON (from a previous run) when
 * given and valid, else the one configured in cfg (identity.policy …).
 * Main thread, before the workers start. 0 or GH_ENOMEM. */
int gh_policy_init(const struct gh_config *cfg, const char *stored_json);
void gh_policy_dispose(void);

/* The policy in force now. Any thread; valid until the caller's callback
 * returns (never keep it). NULL before gh_policy_init. */
const struct gh_policy *gh_policy_current(void);

/* Builds a new policy from a JSON body ({mode, allowed_regions?, pow_bits?,
 * message?{en,zh}, for_seconds?}), taking unset fields from the current
 * policy and the messages from cfg. 0 and *out (caller frees with
 * gh_policy_free or hands to gh_policy_install), or GH_EINVAL with *why
 * naming the field. */
int gh_policy_parse(const char *json, size_t len, const struct gh_config *cfg,
                    struct gh_policy **out, const char **why);
/* Makes p current (taking ownership). A temporary p (until_ms) pins it
 * until then; a permanent one becomes the standing policy. Any thread
 * (serialised inside); p stays valid until the caller's callback returns. */
void gh_policy_install(struct gh_policy *p);
/* Installs the policy another node's operator stored (the full JSON of
 * gh_policy_render, as the store keeps it), pin and standing policy, as
 * gh_policy_install would there. Any thread. 0 or GH_EINVAL. */
int gh_policy_apply_stored(const char *stored);
/* Applies an attack level's preset over the standing policy (NULL:
 * none). A pinned operator policy stays in force. Any thread. */
void gh_policy_set_overlay(const struct gh_policy_overlay *o);
/* Ends an expired pin now so the listener hears of it (call every
 * second). Any thread. */
void gh_policy_tick(void);
/* One listener (identity: status page, audit, metrics). Before the
 * workers start. */
void gh_policy_set_listener(gh_policy_listener_fn fn, void *data);
void gh_policy_free(struct gh_policy *p);

/* The public JSON of /api/policy: {mode, allowed_regions, pow_bits,
 * message:{en,zh}}; with full, also set_at, until and fallback (what the
 * admin API shows and the store keeps). */
int gh_policy_render(const struct gh_policy *p, bool full, struct gh_buf *out);
/* True when registration from region is allowed by p's regions (always
 * true outside restricted mode). */
bool gh_policy_region_allowed(const struct gh_policy *p, const char *region);
const char *gh_policy_mode_name(enum gh_policy_mode m);
