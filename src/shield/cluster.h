/* The shield's limits shared by a cluster's nodes (cluster.c), and what
 * shield.c lends it. Private to src/shield/: other subsystems use the
 * gh_shield_cluster_* functions of shield.h.
 *
 * Which rules are shared: with [redis] url set, the register and login
 * classes' aggregate rules (prefix, prefix48, global, phone_prefix,
 * calling_code) are applied in Redis by gh_shield_cluster_gate (identity
 * calls it from the registration, SMS-code, sign-in and reset handlers)
 * and skipped by the request filter; every other rule stays in this
 * process's table. */
#pragma once

#include "shield/limiter.h"
#include "shield/shield.h"

/* Makes the shared limits from cfg ([redis]); nothing when its url is
 * empty. Main thread, from gh_shield_init. 0, GH_EINVAL (err) or GH_ENOMEM. */
int gh_cluster_init(struct gh_server *srv, const struct gh_config *cfg, struct gh_buf *err);
void gh_cluster_dispose(void);
/* Takes the failure modes of a reloaded configuration (main thread). */
void gh_cluster_reload(const struct gh_config *cfg);

/* True when rule r is applied in Redis (then the request filter and
 * gh_shield_limit_phone skip it). Any thread. */
bool gh_cluster_owns(const struct gh_limit_rule *r);

/* ---- lent by shield.c ---- */

/* The rules in force now (any thread; valid until 64 reloads later). */
const struct gh_limit_rules *gh_shield_rules_now(void);
/* The process's limiter table (the local share while Redis is away). */
struct gh_limiter *gh_shield_limiter(void);
/* Counts rule r's decision d for a request of class cls: allowed,
 * would_refuse (dry run) or refused; a refusal also notes the key for the
 * header filter and the source for the penalty box, and answers 429.
 * Returns false when it answered. */
bool gh_shield_rule_decided(struct gh_http_req *req, enum gh_class cls,
                            const struct gh_limit_rule *r, uint64_t key, uint64_t now_ns,
                            const struct gh_limit_decision *d);
