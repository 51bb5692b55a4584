/* The penalty box's kernel half: an nftables table `inet <table>` holding
 * two sets, ban4 and ban6 (flags interval,timeout, a bounded size), a
 * named counter and one chain on the prerouting hook at raw priority (before
 * conntrack, so a banned flood fills no connection-tracking table) that
 * drops packets from the sets' prefixes to the public listener's port on
 * local addresses. Every element carries the kernel's own timeout: a crash
 * leaves only entries that expire by themselves (and an empty table).
 *
 * libnftables talks netlink and blocks, so it is called from one thread of
 * this module: gh_nftban_add/remove put an operation on a bounded queue
 * (refused when full; the in-process penalty box still closes the source
 * at accept) and return at once. The thread applies them in batches and
 * reads the drop counter once a second.
 *
 * gh_nftban_start / stop on the main thread (start before the workers,
 * stop after they have stopped); gh_nftban_add/remove/stats from any
 * thread in between. Needs CAP_NET_ADMIN; built without libnftables,
 * start fails with a message saying so. */
#pragma once

#include "core/buf.h"
#include "core/common.h"
#include "shield/ipset.h"
#include "shield/penalty.h"

struct gh_nftban_config {
    const char *table; /* nftables table name in family inet */
    unsigned port;     /* the public listener's TCP port */
    size_t set_size;   /* elements per set (each family) */
    size_t queue_max;  /* pending operations */
};

/* Bans strictly inside a prefix, asked when adding the prefix overlaps
 * them in the kernel's interval set: they are deleted and the add retried.
 * Called on the module's thread. */
typedef size_t (*gh_nftban_inside_fn)(const struct gh_cidr *outer, struct gh_ban *out, size_t max,
                                      void *data);

struct gh_nftban;

/* Creates the table (replacing one of the same name left by an earlier
 * run), then the thread. 0 and *out, or GH_EIO with the reason (no
 * CAP_NET_ADMIN, no nf_tables in the kernel, not built with libnftables)
 * in err, or GH_ENOMEM. */
int gh_nftban_start(const struct gh_nftban_config *c, gh_nftban_inside_fn inside, void *data,
                    struct gh_nftban **out, struct gh_buf *err);
/* Stops the thread and deletes the table. NULL is fine. */
void gh_nftban_stop(struct gh_nftban *nb);

/* Queues c for ttl_ms (rounded up to whole seconds). false when the queue
 * is full. Any thread; never blocks on netlink. */
bool gh_nftban_add(struct gh_nftban *nb, const struct gh_cidr *c, uint64_t ttl_ms);
/* Queues the removal of exactly c. false when the queue is full. */
bool gh_nftban_remove(struct gh_nftban *nb, const struct gh_cidr *c);

struct gh_nftban_stats {
    uint64_t added;      /* elements the kernel took */
    uint64_t errors;     /* elements it refused (a broader ban already there) */
    uint64_t queue_full; /* operations refused by the full queue */
    uint64_t dropped;    /* packets the rule dropped, as of the last read */
};
void gh_nftban_get_stats(struct gh_nftban *nb, struct gh_nftban_stats *out);
