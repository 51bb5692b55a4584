/* The registration policy: open, restricted (to a list of regions), busy
 * (503 with Retry-After) or closed; the proof-of-work difficulty the shield
 * enforces; the message users see, in English and Chinese. The current
 * policy is an immutable struct behind an atomic pointer: readers on any
 * thread get it with one load, a change swaps the pointer (main or admin
 * thread), and replaced policies are freed a minute later, long after any
 * reader let go (readers keep the pointer only within one callback). A
 * policy set "for" a duration falls back by itself to the one before. */
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
    struct gh_policy *fallback;    /* in force after until_ms (owned) */
};

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
/* Makes p current (taking ownership). A temporary p falls back to the
 * policy in force before it. One thread at a time (admin). */
void gh_policy_install(struct gh_policy *p);
void gh_policy_free(struct gh_policy *p);

/* The public JSON of /api/policy: {mode, allowed_regions, pow_bits,
 * message:{en,zh}}; with full, also set_at, until and fallback (what the
 * admin API shows and the store keeps). */
int gh_policy_render(const struct gh_policy *p, bool full, struct gh_buf *out);
/* True when registration from region is allowed by p's regions (always
 * true outside restricted mode). */
bool gh_policy_region_allowed(const struct gh_policy *p, const char *region);
const char *gh_policy_mode_name(enum gh_policy_mode m);
