/* This module implements the upstream pool of upstream.h. */
#include "gateway/upstream.h"
#include "status/status.h"

#include "core/config.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct load_ctx {
    struct gh_upstreams *out;
    char **envp;
    char *err;
    size_t errlen;
    const char *path;
};

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static int copy(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return GH_ETOOBIG;
    memcpy(dst, v, n + 1);
    return 0;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct load_ctx *c = user;
    struct gh_upstreams *u = c->out;
    if (c->err[0])
        return 0; /* inih goes on after an error: keep the first message */
    if (strncmp(section, "upstream ", 9) || !section[9]) {
        snprintf(c->err, c->errlen, "[%s]: sections are [upstream NAME]", section);
        return 0;
    }
    const char *name = section + 9;
    struct gh_upstream *up = u->n ? &u->ups[u->n - 1] : NULL;
    if (!up || strcmp(up->name, name)) {
        for (unsigned i = 0; i < u->n; i++)
            if (!strcmp(u->ups[i].name, name)) {
                snprintf(c->err, c->errlen, "[%s]: upstream '%s' appears twice", section, name);
                return 0;
            }
        if (u->n >= GH_UPSTREAMS_MAX) {
            snprintf(c->err, c->errlen, "[%s]: at most %d upstreams", section, GH_UPSTREAMS_MAX);
            return 0;
        }
        up = &u->ups[u->n++];
        memset(up, 0, sizeof *up);
        pthread_mutex_init(&up->mu, NULL);
        if (copy(up->name, sizeof up->name, name)) {
            snprintf(c->err, c->errlen, "[%s]: name too long", section);
            return 0;
        }
        up->weight = 1;
        up->max_concurrent = 64;
        up->connect_timeout_ms = 5000;
        up->timeout_ms = 600000;
    }
    uint64_t n = 0;
    int rc = 0;
    if (!strcmp(key, "model")) {
        rc = copy(up->model, sizeof up->model, value);
    } else if (!strcmp(key, "base_url")) {
        if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8)) {
            snprintf(c->err, c->errlen, "[%s] base_url: must start with http:// or https://",
                     section);
            return 0;
        }
        rc = copy(up->base_url, sizeof up->base_url, value);
        size_t l = strlen(up->base_url);
        while (l && up->base_url[l - 1] == '/')
            up->base_url[--l] = 0;
    } else if (!strcmp(key, "api_key_env")) {
        const char *v = env_get(c->envp, value);
        if (!v) {
            snprintf(c->err, c->errlen, "[%s] api_key_env: environment variable %s is not set",
                     section, value);
            return 0;
        }
        rc = copy(up->api_key, sizeof up->api_key, v);
    } else if (!strcmp(key, "upstream_model")) {
        rc = copy(up->upstream_model, sizeof up->upstream_model, value);
    } else if (!strcmp(key, "weight")) {
        rc = gh_parse_uint(value, 1000000, &n) || !n ? GH_EINVAL : 0;
        up->weight = (unsigned)n;
    } else if (!strcmp(key, "max_concurrent")) {
        rc = gh_parse_uint(value, 1000000, &n) || !n ? GH_EINVAL : 0;
        up->max_concurrent = (unsigned)n;
    } else if (!strcmp(key, "max_tokens_in_flight")) {
        rc = gh_parse_uint(value, UINT32_MAX, &up->max_tokens_in_flight);
    } else if (!strcmp(key, "priority_field")) {
        if (strcmp(value, "vllm") && strcmp(value, "none")) {
            snprintf(c->err, c->errlen, "[%s] priority_field: '%.40s' must be vllm or none",
                     section, value);
            return 0;
        }
        up->priority_vllm = !strcmp(value, "vllm");
    } else if (!strcmp(key, "connect_timeout")) {
        rc = gh_parse_duration_ms(value, &up->connect_timeout_ms);
    } else if (!strcmp(key, "timeout")) {
        rc = gh_parse_duration_ms(value, &up->timeout_ms);
    } else if (!strcmp(key, "fim")) {
        rc = gh_parse_bool(value, &up->fim);
    } else {
        snprintf(c->err, c->errlen,
                 "[%s] %s: unknown key (model, base_url, api_key_env, upstream_model, weight, "
                 "max_concurrent, max_tokens_in_flight, priority_field, connect_timeout, "
                 "timeout, fim)",
                 section, key);
        return 0;
    }
    if (rc && gh_duration_lacks_unit(value) && strstr(key, "timeout")) {
        snprintf(c->err, c->errlen, "[%s] %s: '%.40s' has no unit (write e.g. %.40ss)", section,
                 key, value, value);
        return 0;
    }
    if (rc) {
        snprintf(c->err, c->errlen, "[%s] %s: invalid value '%.80s'", section, key, value);
        return 0;
    }
    return 1;
}

int gh_upstreams_load(const char *path, char **envp, struct gh_upstreams *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path)
        return 0;
    out->ups = calloc(GH_UPSTREAMS_MAX, sizeof *out->ups);
    if (!out->ups) {
        snprintf(err, errlen, "out of memory");
        return GH_ENOMEM;
    }
    char msg[512] = "";
    struct load_ctx c = {out, envp, msg, sizeof msg, path};
    int line = ini_parse(path, on_key, &c);
    if (line < 0) {
        snprintf(err, errlen, "%s: cannot read the upstreams file", path);
        gh_upstreams_dispose(out);
        return GH_EIO;
    }
    if (line > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line, msg[0] ? msg : "syntax error");
        gh_upstreams_dispose(out);
        return GH_EINVAL;
    }
    for (unsigned i = 0; i < out->n; i++) {
        struct gh_upstream *up = &out->ups[i];
        if (!up->model[0] || !up->base_url[0]) {
            snprintf(err, errlen, "%s: [upstream %s]: model and base_url are required", path,
                     up->name);
            gh_upstreams_dispose(out);
            return GH_EINVAL;
        }
        if (!up->upstream_model[0])
            copy(up->upstream_model, sizeof up->upstream_model, up->model);
    }
    return 0;
}

void gh_upstreams_dispose(struct gh_upstreams *u)
{
    for (unsigned i = 0; i < u->n; i++)
        pthread_mutex_destroy(&u->ups[i].mu);
    free(u->ups);
    memset(u, 0, sizeof *u);
}

void gh_upstreams_report_status(struct gh_upstreams *u, uint64_t now_ms)
{
    if (!u->n)
        return; /* the echo model alone: nothing can fail */
    unsigned out = 0;
    for (unsigned i = 0; i < u->n; i++) {
        struct gh_upstream *up = &u->ups[i];
        pthread_mutex_lock(&up->mu);
        if (up->disabled || (up->circuit == GH_CIRCUIT_OPEN && now_ms < up->open_until_ms))
            out++;
        pthread_mutex_unlock(&up->mu);
    }
    enum gh_component_status st = out == 0        ? GH_STATUS_OPERATIONAL
                                  : out < u->n ? GH_STATUS_PARTIAL_OUTAGE
                                               : GH_STATUS_MAJOR_OUTAGE;
    if (atomic_exchange(&u->reported, (int)st) == (int)st)
        return;
    char reason[96];
    snprintf(reason, sizeof reason, "%u of %u model servers out of rotation", out, u->n);
    gh_status_component_auto("api", st, reason);
    gh_status_component_auto("models", st, reason);
}

bool gh_upstreams_has_model(const struct gh_upstreams *u, const char *model)
{
    for (unsigned i = 0; i < u->n; i++)
        if (!strcmp(u->ups[i].model, model))
            return true;
    return false;
}

/* In rotation now? May start the half-open probe (then the caller must
 * use the slot or give it back). Under up->mu. */
static bool eligible_locked(struct gh_upstream *up, uint64_t now, bool take_probe)
{
    if (up->disabled || now < up->cooldown_until_ms)
        return false;
    if (up->circuit == GH_CIRCUIT_OPEN) {
        if (now < up->open_until_ms)
            return false;
        up->circuit = GH_CIRCUIT_HALF_OPEN;
        up->probing = false;
    }
    if (up->circuit == GH_CIRCUIT_HALF_OPEN) {
        if (up->probing)
            return false;
        if (take_probe)
            up->probing = true;
    }
    return true;
}

/* Room for a call of est tokens beside the tokens in flight (an idle
 * upstream takes any call: one larger than the cap runs alone). */
static bool tokens_fit(struct gh_upstream *up, unsigned est)
{
    if (!up->max_tokens_in_flight)
        return true;
    uint64_t f = atomic_load(&up->tokens_in_flight);
    return !f || f + est <= up->max_tokens_in_flight;
}

/* Takes a slot and est tokens. Under up->mu (the token check and add are
 * one step; active is atomic for the readers). */
static bool take_slot_locked(struct gh_upstream *up, unsigned est)
{
    if (!tokens_fit(up, est))
        return false;
    unsigned a = atomic_load(&up->active);
    while (a < up->max_concurrent)
        if (atomic_compare_exchange_weak(&up->active, &a, a + 1)) {
            atomic_fetch_add(&up->tokens_in_flight, est);
            return true;
        }
    return false;
}

int gh_upstreams_model_index(const struct gh_upstreams *u, const char *model)
{
    for (unsigned i = 0; i < u->n; i++)
        if (!strcmp(u->ups[i].model, model))
            return (int)i;
    return -1;
}

unsigned gh_upstreams_slots(struct gh_upstreams *u, const char *model, uint64_t now_ms)
{
    unsigned n = 0;
    for (unsigned i = 0; i < u->n; i++) {
        struct gh_upstream *up = &u->ups[i];
        if (strcmp(up->model, model))
            continue;
        pthread_mutex_lock(&up->mu);
        bool out = up->disabled || (up->circuit == GH_CIRCUIT_OPEN && now_ms < up->open_until_ms);
        pthread_mutex_unlock(&up->mu);
        if (!out)
            n += up->max_concurrent;
    }
    return n;
}

int gh_upstream_acquire(struct gh_upstreams *u, const char *model, uint64_t tried, uint64_t now_ms,
                        uint32_t rnd, unsigned est)
{
    unsigned cand[GH_UPSTREAMS_MAX], load[GH_UPSTREAMS_MAX];
    unsigned nc = 0;
    bool any = false;
    for (unsigned i = 0; i < u->n; i++) {
        struct gh_upstream *up = &u->ups[i];
        if ((tried >> i & 1) || strcmp(up->model, model))
            continue;
        pthread_mutex_lock(&up->mu);
        bool ok = eligible_locked(up, now_ms, false);
        pthread_mutex_unlock(&up->mu);
        if (!ok)
            continue;
        any = true;
        unsigned a = atomic_load(&up->active);
        if (a < up->max_concurrent && tokens_fit(up, est)) {
            load[nc] = a;
            cand[nc++] = i;
        }
    }
    if (!nc)
        return any ? GH_EBUSY : GH_ENOTFOUND;
    /* least outstanding requests per weight: (active + 1) / weight, compared
     * as cross products; candidates in order of load, ties from rnd */
    for (unsigned k = 0; k < nc; k++) {
        unsigned best = k;
        for (unsigned j = k + 1; j < nc; j++) {
            uint64_t lj = (uint64_t)(load[j] + 1) * u->ups[cand[best]].weight;
            uint64_t lb = (uint64_t)(load[best] + 1) * u->ups[cand[j]].weight;
            if (lj < lb || (lj == lb && ((rnd >> (j & 31)) & 1)))
                best = j;
        }
        unsigned tc = cand[k], tl = load[k];
        cand[k] = cand[best], load[k] = load[best];
        cand[best] = tc, load[best] = tl;
    }
    for (unsigned k = 0; k < nc; k++) {
        struct gh_upstream *up = &u->ups[cand[k]];
        pthread_mutex_lock(&up->mu);
        bool in = eligible_locked(up, now_ms, true);
        bool ok = in && take_slot_locked(up, est);
        if (in && !ok && up->circuit == GH_CIRCUIT_HALF_OPEN)
            up->probing = false; /* took the probe but no slot: give it back */
        pthread_mutex_unlock(&up->mu);
        if (ok) {
            atomic_fetch_add(&up->requests, 1);
            return (int)cand[k];
        }
    }
    return GH_EBUSY;
}

void gh_upstream_release(struct gh_upstream *up, const struct gh_breaker *b,
                         enum gh_upstream_outcome outcome, uint64_t retry_after_ms, uint64_t now_ms,
                         unsigned est)
{
    pthread_mutex_lock(&up->mu);
    atomic_fetch_sub(&up->tokens_in_flight, est);
    atomic_fetch_sub(&up->active, 1);
    bool was_probe = up->circuit == GH_CIRCUIT_HALF_OPEN && up->probing;
    switch (outcome) {
    case GH_UP_SUCCESS:
        up->circuit = GH_CIRCUIT_CLOSED;
        up->probing = false;
        up->window_failures = 0;
        break;
    case GH_UP_RATE_LIMITED:
        atomic_fetch_add(&up->rate_limited, 1);
        up->cooldown_until_ms =
            now_ms + (retry_after_ms ? GH_MIN(retry_after_ms, 300000) : b->cooldown_ms);
        if (was_probe)
            up->probing = false;
        break;
    case GH_UP_AUTH:
        atomic_fetch_add(&up->failures, 1);
        up->disabled = true;
        break;
    case GH_UP_FAILURE:
        atomic_fetch_add(&up->failures, 1);
        if (was_probe) {
            up->circuit = GH_CIRCUIT_OPEN;
            up->open_until_ms = now_ms + b->open_ms;
            up->probing = false;
            break;
        }
        if (now_ms - up->window_start_ms > b->window_ms) {
            up->window_start_ms = now_ms;
            up->window_failures = 0;
        }
        if (++up->window_failures >= b->failures && up->circuit == GH_CIRCUIT_CLOSED) {
            up->circuit = GH_CIRCUIT_OPEN;
            up->open_until_ms = now_ms + b->open_ms;
        }
        break;
    case GH_UP_NEUTRAL:
        if (was_probe)
            up->probing = false;
        break;
    }
    pthread_mutex_unlock(&up->mu);
}

const char *gh_upstream_state(struct gh_upstream *up, uint64_t now_ms)
{
    pthread_mutex_lock(&up->mu);
    const char *s = up->disabled                       ? "disabled"
                    : up->circuit == GH_CIRCUIT_OPEN &&
                            now_ms < up->open_until_ms ? "circuit_open"
                    : up->circuit != GH_CIRCUIT_CLOSED ? "half_open"
                    : now_ms < up->cooldown_until_ms   ? "cooling_down"
                                                       : "up";
    pthread_mutex_unlock(&up->mu);
    return s;
}

/* ---- Retry-After ---- */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes) into Unix seconds. */
static int imf_fixdate(const char *s, size_t n, int64_t *t)
{
    static const char days[] = "ThuFriSatSunMonTueWed"; /* 1970-01-01 was a Thursday */
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 29 || memcmp(s + 3, ", ", 2) || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4))
        return GH_EINVAL;
    unsigned d, y, hh, mm, ss, m = 0;
    if (!digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) || !digits(s + 17, 2, &hh) ||
        !digits(s + 20, 2, &mm) || !digits(s + 23, 2, &ss))
        return GH_EINVAL;
    while (m < 12 && memcmp(months + 3 * m, s + 8, 3))
        m++;
    if (m == 12 || !d || d > mdays[m] || hh > 23 || mm > 59 || ss > 59)
        return GH_EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 1 && d == 29 && !leap)
        return GH_EINVAL;
    int64_t day = days_from_civil(y, m + 1, d);
    int64_t wd = ((day % 7) + 7) % 7;
    if (memcmp(days + 3 * wd, s, 3))
        return GH_EINVAL;
    *t = day * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

int gh_upstream_retry_after(const char *v, size_t n, uint64_t now_s, uint64_t *ms)
{
    *ms = 0;
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    if (!n)
        return GH_EINVAL;
    uint64_t secs = 0;
    if (*v >= '0' && *v <= '9') {
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9')
                return GH_EINVAL;
            if (secs <= GH_RETRY_AFTER_MAX_S) /* saturates; the rest is only checked */
                secs = secs * 10 + (uint64_t)(v[i] - '0');
        }
    } else {
        int64_t t;
        if (imf_fixdate(v, n, &t))
            return GH_EINVAL;
        secs = t > (int64_t)now_s ? (uint64_t)(t - (int64_t)now_s) : 0;
    }
    *ms = GH_MIN(secs, (uint64_t)GH_RETRY_AFTER_MAX_S) * 1000;
    return 0;
}
