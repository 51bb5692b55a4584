/* This module implements SMS codes and budgets (sms.h) over two kvtabs:
 * one for codes (blob = keyed hash of the code, v[0] = tries left), one
 * for budget counters (fixed windows: v[0] = window start, v[1] = count;
 * cooldowns: v[0] = last send). */
#include "identity/sms.h"

#include "identity/kvtab.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define HOUR_MS (3600ull * 1000)
#define DAY_MS  (24ull * HOUR_MS)

struct gh_sms {
    struct gh_kvtab *codes, *budgets;
    pthread_mutex_t lmu;
    struct gh_sms_limits lim;
    uint8_t key[32];
};

static const char *const purpose_names[] = {"register", "login", "reset"};

int gh_sms_purpose_parse(const char *s, size_t len)
{
    for (int i = 0; i < GH_SMS_NPURPOSE; i++)
        if (strlen(purpose_names[i]) == len && !memcmp(purpose_names[i], s, len))
            return i;
    return -1;
}

const char *gh_sms_purpose_name(enum gh_sms_purpose p)
{
    return (unsigned)p < GH_SMS_NPURPOSE ? purpose_names[p] : "?";
}

int gh_sms_new(const struct gh_sms_limits *l, const uint8_t key[32], unsigned capacity,
               struct gh_sms **out)
{
    struct gh_sms *s = calloc(1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    if (gh_kvtab_new(capacity, &s->codes) || gh_kvtab_new(capacity * 4, &s->budgets)) {
        gh_kvtab_free(s->codes);
        free(s);
        return GH_ENOMEM;
    }
    pthread_mutex_init(&s->lmu, NULL);
    s->lim = *l;
    memcpy(s->key, key, 32);
    *out = s;
    return 0;
}

void gh_sms_free(struct gh_sms *s)
{
    if (!s)
        return;
    gh_kvtab_free(s->codes);
    gh_kvtab_free(s->budgets);
    pthread_mutex_destroy(&s->lmu);
    sodium_memzero(s->key, sizeof s->key);
    free(s);
}

void gh_sms_set_limits(struct gh_sms *s, const struct gh_sms_limits *l)
{
    pthread_mutex_lock(&s->lmu);
    s->lim = *l;
    pthread_mutex_unlock(&s->lmu);
}

static struct gh_sms_limits limits(struct gh_sms *s)
{
    pthread_mutex_lock(&s->lmu);
    struct gh_sms_limits l = s->lim;
    pthread_mutex_unlock(&s->lmu);
    return l;
}

/* ---- budgets ---- */

struct window {
    const char *name;
    uint8_t key[16];
    uint64_t period_ms;
    unsigned cap;
};

enum { REQUESTER = 1, SEND = 2 };

/* A budget key of kind for text, separate per purpose and per class
 * (owner or outsider) where class_sep: the budgets of an account owner's
 * codes are never charged by anybody else. */
static void class_key(uint8_t out[16], const char *kind, const char *text,
                      const struct gh_sms_req *r, bool class_sep)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%s/%d/%d", text, (int)r->purpose,
                     class_sep && r->owner ? 1 : 0);
    gh_kvtab_key(out, kind, buf, (size_t)GH_MIN(n, (int)sizeof buf - 1));
}

/* The windows of r's budgets named by what (REQUESTER: address and
 * network; SEND: number, prefix, calling code, global) into w (6 at
 * most), and the cooldown's key. Returns how many. */
static unsigned windows(const struct gh_sms_limits *lp, const struct gh_sms_req *r, unsigned what,
                        struct window *w, uint8_t cdkey[16])
{
    struct gh_sms_limits l = *lp;
    unsigned n = 0;
    if (what & SEND) {
        w[n] = (struct window){"number_day", {0}, DAY_MS, l.per_number_day};
        class_key(w[n++].key, "n", r->e164, r, true);
        /* an owner's codes skip the shared prefix and calling-code caps
         * (an outsider can spend those) and have a global cap of their own */
        if (!r->owner) {
            w[n] = (struct window){"prefix", {0}, HOUR_MS, l.per_prefix_hour};
            class_key(w[n++].key, "p", r->prefix, r, false);
            char cc[16];
            int cl = snprintf(cc, sizeof cc, "%u", r->calling_code);
            w[n] = (struct window){"calling_code", {0}, HOUR_MS, l.per_cc_hour};
            gh_kvtab_key(w[n++].key, "c", cc, (size_t)cl);
        }
        w[n] = (struct window){"global", {0}, HOUR_MS, l.global_hour};
        gh_kvtab_key(w[n++].key, r->owner ? "g-owner" : "g", "", 0);
        class_key(cdkey, "cooldown", r->e164, r, true);
    }
    if (what & REQUESTER) {
        size_t alen = r->client.family == AF_INET ? 4 : 16;
        w[n] = (struct window){"address", {0}, HOUR_MS, l.per_addr_hour};
        gh_kvtab_key(w[n++].key, "a", r->client.bytes, alen);
        /* /24 for IPv4, /48 for IPv6 */
        w[n] = (struct window){"network", {0}, HOUR_MS, l.per_net_hour};
        gh_kvtab_key(w[n++].key, alen == 4 ? "net4" : "net6", r->client.bytes,
                     alen == 4 ? 3 : 6);
    }
    return n;
}

/* Checks the budgets of r named by what and charges them all when all
 * allow; each cap divided by share (a node's share of a cluster's). */
static int budget(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms, unsigned what,
                  unsigned share, uint64_t *retry_after_ms, const char **which)
{
    struct gh_sms_limits l = limits(s);
    struct window w[6];
    uint8_t cdkey[16];
    bool cooldown = (what & SEND) && l.cooldown_ms;
    unsigned n = windows(&l, r, what, w, cdkey);
    for (unsigned i = 0; share > 1 && i < n; i++)
        w[i].cap = GH_MAX(w[i].cap / share, 1u);

    uint64_t wait = 0;
    const char *name = NULL;
    gh_kvtab_lock(s->budgets);
    struct gh_kv *cd = cooldown ? gh_kvtab_find_locked(s->budgets, cdkey, now_ms, false, 0) : NULL;
    if (cd && now_ms < cd->v[0] + l.cooldown_ms) {
        wait = cd->v[0] + l.cooldown_ms - now_ms;
        name = "cooldown";
    }
    for (unsigned i = 0; i < n; i++) {
        struct gh_kv *e = gh_kvtab_find_locked(s->budgets, w[i].key, now_ms, false, 0);
        if (!e || now_ms >= e->v[0] + w[i].period_ms || e->v[1] < w[i].cap)
            continue;
        uint64_t until = e->v[0] + w[i].period_ms - now_ms;
        if (until > wait) {
            wait = until;
            name = w[i].name;
        }
    }
    if (name) {
        gh_kvtab_unlock(s->budgets);
        *retry_after_ms = wait;
        *which = name;
        return GH_EBUSY;
    }
    for (unsigned i = 0; i < n; i++) {
        struct gh_kv *e = gh_kvtab_find_locked(s->budgets, w[i].key, now_ms, true, w[i].period_ms);
        if (!e)
            continue;
        if (e->v[2] == 0 || now_ms >= e->v[0] + w[i].period_ms) {
            e->v[0] = now_ms;
            e->v[1] = 0;
            e->v[2] = 1;
            e->expires_ms = now_ms + w[i].period_ms;
        }
        e->v[1]++;
    }
    if (cooldown) {
        cd = gh_kvtab_find_locked(s->budgets, cdkey, now_ms, true, l.cooldown_ms);
        if (cd) {
            cd->v[0] = now_ms;
            cd->expires_ms = now_ms + l.cooldown_ms;
        }
    }
    gh_kvtab_unlock(s->budgets);
    *retry_after_ms = 0;
    *which = NULL;
    return 0;
}

int gh_sms_budget(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                  uint64_t *retry_after_ms, const char **which)
{
    return budget(s, r, now_ms, REQUESTER | SEND, 1, retry_after_ms, which);
}

int gh_sms_budget_requester(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                            uint64_t *retry_after_ms, const char **which)
{
    return budget(s, r, now_ms, REQUESTER, 1, retry_after_ms, which);
}

int gh_sms_budget_send(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                       uint64_t *retry_after_ms, const char **which)
{
    return budget(s, r, now_ms, SEND, 1, retry_after_ms, which);
}

int gh_sms_budget_send_share(struct gh_sms *s, const struct gh_sms_req *r, uint64_t now_ms,
                             unsigned share, uint64_t *retry_after_ms, const char **which)
{
    return budget(s, r, now_ms, SEND, share, retry_after_ms, which);
}

unsigned gh_sms_send_windows(struct gh_sms *s, const struct gh_sms_req *r,
                             struct gh_sms_window out[GH_SMS_WINDOWS_MAX])
{
    struct gh_sms_limits l = limits(s);
    struct window w[6];
    uint8_t cdkey[16];
    unsigned n = windows(&l, r, SEND, w, cdkey);
    for (unsigned i = 0; i < n; i++) {
        out[i].name = w[i].name;
        memcpy(out[i].key, w[i].key, sizeof out[i].key);
        out[i].period_ms = w[i].period_ms;
        out[i].cap = w[i].cap;
    }
    /* the cooldown is a window that holds one send */
    if (l.cooldown_ms) {
        out[n].name = "cooldown";
        memcpy(out[n].key, cdkey, sizeof out[n].key);
        out[n].period_ms = l.cooldown_ms;
        out[n++].cap = 1;
    }
    return n;
}

/* ---- codes ---- */

static void code_key(uint8_t out[16], const char *e164, enum gh_sms_purpose p)
{
    char buf[40];
    int n = snprintf(buf, sizeof buf, "%s/%d", e164, (int)p);
    gh_kvtab_key(out, "code", buf, (size_t)n);
}

static void code_hash(struct gh_sms *s, const char *code, size_t len, uint8_t out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)code, len, s->key, sizeof s->key);
}

int gh_sms_code_issue(struct gh_sms *s, const char *e164, enum gh_sms_purpose p, uint64_t now_ms,
                      char code[7])
{
    struct gh_sms_limits l = limits(s);
    snprintf(code, 7, "%06u", (unsigned)randombytes_uniform(1000000));
    uint8_t key[16];
    code_key(key, e164, p);
    gh_kvtab_lock(s->codes);
    gh_kvtab_del_locked(s->codes, key); /* one live code per number and purpose */
    struct gh_kv *e = gh_kvtab_find_locked(s->codes, key, now_ms, true, l.code_ttl_ms);
    if (e) {
        code_hash(s, code, 6, e->blob);
        e->v[0] = l.code_tries;
    }
    gh_kvtab_unlock(s->codes);
    return e ? 0 : GH_ENOMEM;
}

int gh_sms_code_check(struct gh_sms *s, const char *e164, enum gh_sms_purpose p,
                      const char *code, size_t len, uint64_t now_ms)
{
    uint8_t key[16], h[32];
    code_key(key, e164, p);
    code_hash(s, code, len, h);
    int rc;
    gh_kvtab_lock(s->codes);
    struct gh_kv *e = gh_kvtab_find_locked(s->codes, key, now_ms, false, 0);
    if (!e || e->v[0] == 0) {
        /* the same comparison against a keyed dummy: a number that got no
         * SMS takes the path of one that did */
        uint8_t dummy[32];
        code_hash(s, (const char *)key, sizeof key, dummy);
        volatile int same = sodium_memcmp(dummy, h, 32);
        (void)same;
        rc = GH_ENOTFOUND;
    } else if (len == 6 && sodium_memcmp(e->blob, h, 32) == 0) {
        gh_kvtab_del_locked(s->codes, key);
        rc = 0;
    } else {
        if (--e->v[0] == 0)
            gh_kvtab_del_locked(s->codes, key);
        rc = GH_EINVAL;
    }
    gh_kvtab_unlock(s->codes);
    return rc;
}

void gh_sms_code_hashes(struct gh_sms *s, const char *e164, enum gh_sms_purpose p, const char *code,
                        size_t len, uint8_t key[32], uint8_t hash[32])
{
    char buf[48];
    int n = snprintf(buf, sizeof buf, "code/%s/%d", e164, (int)p);
    crypto_generichash(key, 32, (const unsigned char *)buf, (size_t)n, s->key, sizeof s->key);
    /* bound to the number: the same code for two numbers is two hashes */
    crypto_generichash_state st;
    crypto_generichash_init(&st, s->key, sizeof s->key, 32);
    crypto_generichash_update(&st, key, 32);
    crypto_generichash_update(&st, (const unsigned char *)code, len);
    crypto_generichash_final(&st, hash, 32);
}

void gh_sms_code_new(struct gh_sms *s, char code[7], uint64_t *ttl_ms, unsigned *tries)
{
    struct gh_sms_limits l = limits(s);
    snprintf(code, 7, "%06u", (unsigned)randombytes_uniform(1000000));
    *ttl_ms = l.code_ttl_ms;
    *tries = l.code_tries;
}
