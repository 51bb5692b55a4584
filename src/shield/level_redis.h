/* The attack level of a cluster (level_redis.c): each node adds its
 * level signals to per-period sums in Redis and feeds its level machine
 * from the cluster's sums, so every node computes the same level from the
 * same evidence. Private to src/shield/.
 *
 * Threads: init/dispose on the main thread; the work runs on the first
 * public worker's loop; gh_level_redis_on from any thread. */
#pragma once

#include "core/config.h"
#include "core/server.h"
#include "shield/level.h"

#include <stdbool.h>

/* Starts the shared level when [redis] url is set (nothing otherwise).
 * 0 or GH_ENOMEM / GH_ETOOBIG. Main thread, after gh_cluster_init. */
int gh_level_redis_init(struct gh_server *srv, const struct gh_config *cfg);
void gh_level_redis_dispose(void);
/* True when the level is fed from the cluster's sums (then the shield's
 * own timer does not feed it). Any thread. */
bool gh_level_redis_on(void);

/* ---- lent by shield.c ---- */

struct gh_level_machine *gh_shield_level_machine(void);
/* The tally the request paths count events in. */
struct gh_level_tally *gh_shield_level_tally(void);
/* Takes the period's queue delay and reads the loop lag into s; false
 * while the shield is off. */
bool gh_shield_level_pressure(struct gh_level_signals *s);
/* The signals a period was fed with (gauges). */
void gh_shield_level_fed(const struct gh_level_signals *s);
