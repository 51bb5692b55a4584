/* The live summary of the admin API: GET /admin/v1/summary answers one
 * JSON document gathered from what the process already counts: requests
 * per traffic class and per status family, refusals per reason
 * (connections refused at accept by limit, limiter 429s by class, 4xx/5xx
 * answers), queues (the password pool per priority with its oldest wait,
 * the store's pending jobs), load shedding, the attack level and the
 * registration policy, open connections and loop lag, the chat gateway's
 * counters and each upstream's circuit. Counters are totals since start;
 * `gatehouse ctl top` turns two samples into rates.
 *
 * gh_summary_init registers the route on the main thread after the other
 * subsystems (it reads the shield, identity and the metrics registry at
 * request time, on the admin worker). */
#pragma once

#include "core/server.h"

/* 0 or GH_ETOOBIG. */
int gh_summary_init(struct gh_server *srv);
