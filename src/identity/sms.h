/* SMS codes and SMS budgets. Codes: 6 digits from a CSPRNG, kept only as
 * keyed hashes in memory, expiring, killed after a number of wrong tries,
 * one live code per number and purpose. Budgets: the requester's (hourly
 * caps per client address and per /24 or /48 network), charged for every
 * request; the number's (a resend cooldown and a daily cap per number and
 * purpose, hourly caps per number prefix — the number without its last 4
 * digits —, per calling code, and a global hourly cap), charged only when
 * a code is sent, with an account owner's codes on budgets of their own. Any thread; times are passed in (monotonic ms)
 * so tests control the clock. The module owns its tables. */
#pragma once

#include "core/common.h"
#include "http/http.h"

struct gh_sms;

enum gh_sms_purpose { GH_SMS_REGISTER, GH_SMS_LOGIN, GH_SMS_RESET, GH_SMS_NPURPOSE };

struct gh_sms_limits {
    uint64_t code_ttl_ms;
    unsigned code_tries;
    uint64_t cooldown_ms;
    unsigned per_number_day;
    unsigned per_addr_hour;
    unsigned per_net_hour;
    unsigned per_prefix_hour;
    unsigned per_cc_hour;
    unsigned global_hour;
};

/* What a request for a code is charged to. */
struct gh_sms_req {
    const char *e164;   /* "+8613800138000" */
    const char *prefix; /* e164 without its last 4 digits */
    unsigned calling_code;
    struct gh_addr client;
    enum gh_sms_purpose purpose; /* number and prefix budgets are per purpose */
    /* the requester signed in to the number's account from this address
     * recently: its codes are charged to the owner's own number budget and
     * global cap, which nobody else's requests can spend */
    bool owner;
};

/* key: 32 bytes for hashing codes. 0 or GH_ENOMEM. */
int gh_sms_new(const struct gh_sms_limits *l, const uint8_t key[32], unsigned capacity,
               struct gh_sms **out);
void gh_sms_free(struct gh_sms *s);
/* Replaces the limits (reload). */
void gh_sms_set_limits(struct gh_sms *s, const struct gh_sms_limits *l);

/* Checks every budget for r at now_ms and, when all allow, charges them.
 * 0, or GH_EBUSY with *retry_after_ms (how long until the tightest refusing
 * budget allows) and *which naming it ("cooldown", "number_day", "address",
 * "network", "prefix", "calling_code", "global"). */
int gh_sms_budget(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                  uint64_t *retry_after_ms, const char **which);
/* The requester's budgets only (address, network): charged for every
 * request, whatever the number. Same returns. */
int gh_sms_budget_requester(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                            uint64_t *retry_after_ms, const char **which);
/* The number's budgets only (cooldown and daily cap per number, purpose
 * and class; prefix per purpose and calling code for outsiders; global):
 * charged only when an SMS is actually sent. Same returns. */
int gh_sms_budget_send(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                       uint64_t *retry_after_ms, const char **which);

/* The number's budgets (what gh_sms_budget_send charges) as fixed
 * windows, for a cluster that keeps them in one shared store: each with
 * its name, a 16-byte key, its period and cap; the cooldown is a window of
 * cap 1. Returns how many (GH_SMS_WINDOWS_MAX at most). */
#define GH_SMS_WINDOWS_MAX 6
struct gh_sms_window {
    const char *name;
    uint8_t key[16];
    uint64_t period_ms;
    unsigned cap;
};
unsigned gh_sms_send_windows(struct gh_sms *s, const struct gh_sms_req *r,
                             struct gh_sms_window out[GH_SMS_WINDOWS_MAX]);
/* gh_sms_budget_send with each cap divided by share (at least 1): a
 * node's share of a cluster's budgets while the shared store is away. */
int gh_sms_budget_send_share(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                             unsigned share, uint64_t *retry_after_ms, const char **which);

/* Makes a new code for (e164, purpose), replacing any live one, into code
 * (6 digits and a NUL). 0 or GH_ENOMEM. */
int gh_sms_code_issue(struct gh_sms *s, const char *e164, enum gh_sms_purpose p, uint64_t now_ms,
                      char code[7]);
/* Checks a code entered for (e164, purpose). 0: right, and the code is
 * consumed. GH_EINVAL: wrong (a try is used; the last try kills it).
 * GH_ENOTFOUND: no live code (never sent, expired, used or dead). */
int gh_sms_code_check(struct gh_sms *s, const char *e164, enum gh_sms_purpose p,
                      const char *code, size_t len, uint64_t now_ms);

/* For codes kept in a cluster's shared store (the store checks them):
 * key, the keyed hash of (e164, p) the code is stored under; hash, the
 * keyed hash of key and code (len bytes), what is stored instead of the
 * code. */
void gh_sms_code_hashes(struct gh_sms *s, const char *e164, enum gh_sms_purpose p, const char *code,
                        size_t len, uint8_t key[32], uint8_t hash[32]);
/* A new code (6 digits and a NUL) for the shared store, with its lifetime
 * and tries from the limits. */
void gh_sms_code_new(struct gh_sms *s, char code[7], uint64_t *ttl_ms, unsigned *tries);

/* "register" → GH_SMS_REGISTER …; -1 when unknown. */
int gh_sms_purpose_parse(const char *s, size_t len);
const char *gh_sms_purpose_name(enum gh_sms_purpose p);
