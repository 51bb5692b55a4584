/* Quotas of the chat API, per API key and per user: requests per minute
 * and tokens per minute (GCRA, one timestamp each), tokens per UTC day, and
 * concurrent requests. A request is admitted on an estimate (prompt tokens
 * + max_tokens), which is reserved, and settled later on the real usage.
 *
 * The table owns the state of every key and user seen (sharded, each shard
 * under its own mutex, a fixed capacity: when a shard is full an idle entry
 * is replaced) and the operators' overrides (a jansson object under a
 * rwlock, persisted as JSON by gh_quota_save). Any thread may call
 * anything here; gh_quota_save/_load do file I/O: never on a loop. */
#pragma once

#include "core/common.h"

#include <jansson.h>

/* A limit field left to the configured default. 0 means unlimited. */
#define GH_QUOTA_UNSET UINT32_MAX

struct gh_quota_limits {
    unsigned rpm, tpm, tpd, concurrency;
};

enum gh_quota_kind { GH_QUOTA_KEY = 1, GH_QUOTA_USER = 2 };

enum gh_quota_verdict {
    GH_QUOTA_OK,
    GH_QUOTA_REQUESTS,    /* 429: requests per minute */
    GH_QUOTA_TOKENS,      /* 429: tokens per minute */
    GH_QUOTA_CONCURRENCY, /* 429: concurrent requests */
    GH_QUOTA_BALANCE,     /* 402: tokens of the day spent */
    GH_QUOTA_FULL         /* 429: the table is full of busy entries */
};

/* One key's or user's state. */
struct gh_quota_state {
    int64_t tat_req_ns; /* GCRA theoretical arrival times (monotonic ns) */
    int64_t tat_tok_ns;
    uint32_t day;        /* UTC day (days since the epoch) of day_tokens */
    uint64_t day_tokens; /* settled today */
    uint64_t reserved;   /* estimates of admitted, unsettled requests */
    unsigned active;     /* admitted, unsettled requests */
};

/* What the x-ratelimit-* headers and Retry-After say. */
struct gh_quota_info {
    uint64_t retry_after_ms;
    bool has_requests, has_tokens;
    unsigned limit_requests, remaining_requests;
    uint64_t reset_requests_ms;
    unsigned limit_tokens, remaining_tokens;
    uint64_t reset_tokens_ms;
};

/* The arithmetic on one state (pure; the caller holds whatever lock).
 * Checks whether a request of est tokens fits l at now_ns on day; when it
 * does and commit is set, takes it (rate, reservation, concurrency).
 * Fills info (may be NULL). */
enum gh_quota_verdict gh_quota_check(struct gh_quota_state *s, const struct gh_quota_limits *l,
                                     int64_t now_ns, uint32_t day, unsigned est, bool commit,
                                     struct gh_quota_info *info);
/* Settles an admitted request: releases its reservation and concurrency,
 * charges actual tokens to the day and corrects the token rate by
 * actual - est. */
void gh_quota_settle(struct gh_quota_state *s, const struct gh_quota_limits *l, int64_t now_ns,
                     uint32_t day, unsigned est, unsigned actual);

struct gh_quota_table;

/* A table for about capacity keys and users. NULL when out of memory. */
struct gh_quota_table *gh_quota_table_new(unsigned capacity);
void gh_quota_table_free(struct gh_quota_table *t);

/* gh_quota_check on the state of (kind, id), created if missing. */
enum gh_quota_verdict gh_quota_admit(struct gh_quota_table *t, enum gh_quota_kind kind,
                                     uint64_t id, const struct gh_quota_limits *l,
                                     int64_t now_ns, uint32_t day, unsigned est, bool commit,
                                     struct gh_quota_info *info);
/* gh_quota_settle on the state of (kind, id). */
void gh_quota_release(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                      const struct gh_quota_limits *l, int64_t now_ns, uint32_t day,
                      unsigned est, unsigned actual);
/* Adds tokens already spent on day (usage replayed at start). */
void gh_quota_prime(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                    uint32_t day, uint64_t tokens);

/* Tokens (kind, id) spent on day plus those reserved by requests in
 * flight (0 for one the table does not hold); creates nothing. For GET
 * /user/balance. */
uint64_t gh_quota_spent(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                        uint32_t day);

/* The effective limits of (kind, id): its override's fields, the
 * defaults for fields left GH_QUOTA_UNSET. */
void gh_quota_limits_of(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                        const struct gh_quota_limits *defaults, struct gh_quota_limits *out);
/* True when (kind, id) has an override (the fair queue's priority tier). */
bool gh_quota_has_override(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id);
/* Sets (kind, id)'s override; fields GH_QUOTA_UNSET keep their previous
 * override (or the default). l NULL removes the override. 0, GH_ENOTFOUND
 * (removing a missing one) or GH_ETOOBIG (too many overrides). */
int gh_quota_set(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                 const struct gh_quota_limits *l);
/* A new JSON array of every override: [{"kind":"key","id":…,"rpm":…}]
 * (fields left to the default are absent). The caller decrefs it. */
json_t *gh_quota_list(struct gh_quota_table *t);
/* Writes the overrides to path (atomically: a temporary file renamed) /
 * reads them from path (a missing file is no error). 0 or GH_EIO/GH_EINVAL. */
int gh_quota_save(struct gh_quota_table *t, const char *path);
int gh_quota_load(struct gh_quota_table *t, const char *path);
/* The overrides as JSON text (malloc'd; compact or indented, keys
 * sorted), or NULL when out of memory. */
char *gh_quota_dump(struct gh_quota_table *t, bool compact);
/* Replaces the overrides with those of text (another node's, as
 * gh_quota_dump wrote them). 0, GH_EINVAL or GH_ETOOBIG (then unchanged). */
int gh_quota_load_text(struct gh_quota_table *t, const char *text);
