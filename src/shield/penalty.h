/* The penalty box's bookkeeping: which sources keep sending after being
 * refused, and which sources are banned until when. Two bounded tables,
 * each of 8-way buckets under a SipHash of the prefix with a per-table
 * random key, sharded under mutexes:
 *  - the tally: per source (an address, or the /24, /64, /48 a prefix rule
 *    refused), the refusals since its window opened. A source refused
 *    `after` times within `window_ms` of its first counted refusal earns a
 *    ban of `ban_ms`; a full bucket forgets its oldest window. Counting is
 *    one SipHash and one shard lock, and nothing when `after` is 0.
 *  - the bans: prefix -> expiry (ms on the caller's clock) and reason. An
 *    address is looked up under each prefix length the table has held
 *    (a mask of lengths), so an empty table costs one load. A full bucket
 *    refuses a new ban (GH_ETOOBIG): bans never displace each other.
 * Pure data structures with the time passed in: the shield wires them to
 * the accept filter, the limiter's refusals, the admin routes and the
 * kernel set (shield/nftban.h). Any thread; gh_penalty_new/free on one
 * thread while no one else uses the box. */
#pragma once

#include "core/common.h"
#include "http/http.h"
#include "shield/ipset.h"

enum gh_ban_reason {
    GH_BAN_REFUSALS, /* kept sending after `after` refusals */
    GH_BAN_OPERATOR, /* `gatehouse ctl block CIDR --for` */
    GH_BAN_NREASONS
};

struct gh_ban {
    struct gh_cidr cidr;
    uint64_t expires_ms;
    enum gh_ban_reason reason;
};

struct gh_penalty_config {
    unsigned after;     /* refusals that earn a ban; 0 = no automatic bans */
    uint64_t window_ms; /* ... counted within this long of the first */
    uint64_t ban_ms;    /* how long an automatic ban lasts */
};

struct gh_penalty;

/* A box holding at most about max_bans bans and max_tracked tallies (each
 * rounded up to whole buckets). NULL when out of memory. */
struct gh_penalty *gh_penalty_new(size_t max_bans, size_t max_tracked);
void gh_penalty_free(struct gh_penalty *pb);
/* Replaces the thresholds (reload); any thread. */
void gh_penalty_configure(struct gh_penalty *pb, const struct gh_penalty_config *c);

/* Counts one refusal of src at now_ms. Returns true when it completed the
 * threshold: the caller then bans src (gh_penalty_add with the ban_ms of
 * gh_penalty_ban_ms), unless src covers what must never be banned, and
 * src's count starts over. */
bool gh_penalty_refused(struct gh_penalty *pb, const struct gh_cidr *src, uint64_t now_ms);
/* The configured length of an automatic ban. */
uint64_t gh_penalty_ban_ms(struct gh_penalty *pb);

/* Bans c for ttl_ms (an existing ban of c is extended, never shortened).
 * 0 (and *out, may be NULL), or GH_ETOOBIG when its bucket is full of live
 * bans. */
int gh_penalty_add(struct gh_penalty *pb, const struct gh_cidr *c, uint64_t ttl_ms,
                   enum gh_ban_reason reason, uint64_t now_ms, struct gh_ban *out);
/* Lifts the ban of exactly c. 0 or GH_ENOTFOUND. */
int gh_penalty_remove(struct gh_penalty *pb, const struct gh_cidr *c);

/* Whether a live ban covers a. Lock-free when the box has never held a
 * ban; otherwise one shard lock per prefix length in use. */
bool gh_penalty_banned(struct gh_penalty *pb, const struct gh_addr *a, uint64_t now_ms);

/* Copies up to max live bans into out (in table order); returns how many
 * are live in all (may exceed max). */
size_t gh_penalty_list(struct gh_penalty *pb, uint64_t now_ms, struct gh_ban *out, size_t max);

/* Live bans strictly inside outer (longer prefixes it contains), up to max,
 * into out; returns how many were written. */
size_t gh_penalty_inside(struct gh_penalty *pb, const struct gh_cidr *outer, uint64_t now_ms,
                         struct gh_ban *out, size_t max);

struct gh_penalty_stats {
    uint64_t added[GH_BAN_NREASONS]; /* bans made or extended */
    uint64_t full;                   /* bans refused: bucket full */
    uint64_t tally_evictions;        /* windows forgotten for a new source */
    size_t capacity;                 /* ban slots */
};
void gh_penalty_get_stats(struct gh_penalty *pb, struct gh_penalty_stats *out);

/* The prefix a limiter key kind stands for: the address (/32, /128), its
 * /24 (/64) or its /48. */
void gh_penalty_source(const struct gh_addr *a, unsigned v4_len, unsigned v6_len,
                       struct gh_cidr *out);
/* Whether a contains b (b's prefix is as long or longer, same leading bits). */
bool gh_cidr_contains(const struct gh_cidr *a, const struct gh_cidr *b);
const char *gh_ban_reason_name(enum gh_ban_reason r);
