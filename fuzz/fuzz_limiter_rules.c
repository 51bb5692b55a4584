/* libFuzzer harness for the rate-limit rules and the GCRA step
 * (shield/limiter.h: gh_limit_rules_parse, gh_limit_gcra, and one key
 * through the table). The input is rules text, then optionally a NUL and a program of
 * GCRA steps.
 *
 * Rules: never more than GH_LIMIT_RULES_MAX; one rule per entry; every
 * accepted entry also passes a reference grammar written here
 * (CLASS:KEY:COUNT/PERIOD[:burst=N][:dry_run]) with the same values; an
 * accepted rule's name parses again to the same class, key, rate and id.
 * GCRA, on one key under one limit with a clock that only moves forward:
 * d->limit is the burst; from a fresh key the units allowed never exceed
 * burst + elapsed / T (so never more than burst at one instant); the
 * stored TAT is now + reset_ns; `remaining` unit requests pass now and one
 * more does not; a refused request passes at now + retry_after_ns and not
 * a nanosecond earlier; a dry run stores nothing that a refusal would not;
 * a cost above the burst is refused as impossible; the table
 * (gh_limiter_check on one key) decides exactly as the pure step. */
#include "shield/limiter.h"

#include "invariant.h"

#include <string.h>

#define TEXT_MAX 4096

/* Findings 1-5 (docs/internals/fuzzing.md) are fixed in limiter.c; their
 * inputs stay in the corpus (seed-f1..f5) and fail the harness if they
 * come back. -DFUZZ_STRICT_LIMITER=0 would tolerate them again. */
#ifndef FUZZ_STRICT_LIMITER
#define FUZZ_STRICT_LIMITER 1
#endif
static void known_finding(const char *what)
{
    if (FUZZ_STRICT_LIMITER) {
        fprintf(stderr, "known limiter finding: %s\n", what);
        abort();
    }
}

/* ---- the reference grammar ---- */

static const char *const class_ref[] = {"ops", "user", "login", "register", "anon"};
static const char *const kind_ref[] = {"addr",  "prefix",       "prefix48",     "account", "apikey",
                                       "phone", "phone_prefix", "calling_code", "global"};

static bool in_list(const char *s, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && !memcmp(s, list[i], n))
            return true;
    return false;
}

/* Decimal digits only, value in 1..max. */
static bool ref_number(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0)
        return false;
    unsigned __int128 v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return false;
    }
    *out = (uint64_t)v;
    return v >= 1;
}

/* PERIOD: DIGITS [UNIT] or UNIT alone (1 of it); ms, s, m, h, d; bare
 * digits are seconds; 1 ms .. 366 days. */
static bool ref_period(const char *s, size_t n, uint64_t *ms)
{
    size_t d = 0;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    const char *u = s + d;
    size_t ul = n - d;
    uint64_t mul;
    if (ul == 2 && !memcmp(u, "ms", 2))
        mul = 1;
    else if (ul == 0 || (ul == 1 && *u == 's'))
        mul = 1000;
    else if (ul == 1 && *u == 'm')
        mul = 60000;
    else if (ul == 1 && *u == 'h')
        mul = 3600000;
    else if (ul == 1 && *u == 'd')
        mul = 86400000;
    else
        return false;
    if (d == 0 && ul == 0)
        return false;
    const uint64_t max_ms = 366ull * 86400 * 1000;
    uint64_t v = 1;
    if (d > 0 && !ref_number(s, d, max_ms, &v))
        return false;
    if (v > max_ms / mul)
        return false;
    *ms = v * mul;
    return true;
}

struct ref_rule {
    uint64_t count, period_ms, burst;
    bool dry_run;
};

/* Reads one entry; with lax, as limiter.c reads it today with its known
 * findings: 2, an empty period is 1 s; 3, fields after the sixth are
 * dropped; 4, the period text is cut at 31 bytes. */
static bool ref_rule(const char *s, size_t n, bool lax, struct ref_rule *r)
{
    memset(r, 0, sizeof *r);
    const char *f[64];
    size_t fl[64], nf = 0;
    for (size_t i = 0, start = 0; i <= n; i++) {
        if (i == n || s[i] == ':') {
            if (nf == 64)
                return false;
            f[nf] = s + start;
            fl[nf++] = i - start;
            start = i + 1;
        }
    }
    if (lax && nf > 6)
        nf = 6;
    if (nf < 3 || !in_list(f[0], fl[0], class_ref, 5) || !in_list(f[1], fl[1], kind_ref, 9))
        return false;
    const char *slash = memchr(f[2], '/', fl[2]);
    if (!slash || !ref_number(f[2], (size_t)(slash - f[2]), 1000000000, &r->count))
        return false;
    const char *per = slash + 1;
    size_t pl = fl[2] - (size_t)(slash + 1 - f[2]);
    char cut[32];
    if (lax) {
        int k = snprintf(cut, sizeof cut, "%s%.*s", pl && *per >= '0' && *per <= '9' ? "" : "1",
                         (int)pl, per);
        per = cut;
        pl = GH_MIN((size_t)k, sizeof cut - 1);
    }
    if (!ref_period(per, pl, &r->period_ms))
        return false;
    for (size_t i = 3; i < nf; i++) {
        if ((fl[i] == 7 && !memcmp(f[i], "dry_run", 7)) || (fl[i] == 3 && !memcmp(f[i], "dry", 3)))
            r->dry_run = true;
        else if (!(fl[i] > 6 && !memcmp(f[i], "burst=", 6) &&
                   ref_number(f[i] + 6, fl[i] - 6, 1000000000, &r->burst)))
            return false;
    }
    return true;
}

static bool same_rule(const struct gh_limit_rule *r, const struct ref_rule *ref)
{
    return r->lim.count == ref->count && r->lim.period_ns == ref->period_ms * 1000000ull &&
           r->lim.burst == ref->burst && r->dry_run == ref->dry_run;
}

static bool is_sep(char c)
{
    return c == ',' || c == ';' || c == ' ' || c == '\t' || c == '\n';
}

static void check_rules(const char *text)
{
    static struct gh_limit_rules rules, again; /* 64 rules: too big for the stack under ASan */
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    int rc = gh_limit_rules_parse(text, &rules, &err);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc) {
        FUZZ_CHECK(err.len > 0);
        gh_buf_dispose(&err);
        return;
    }
    FUZZ_CHECK(rules.n <= GH_LIMIT_RULES_MAX);
    /* one rule per entry, in order, each as the reference grammar reads it */
    const char *p = text;
    unsigned i = 0;
    for (;;) {
        while (*p && is_sep(*p))
            p++;
        if (!*p)
            break;
        size_t n = 0;
        while (p[n] && !is_sep(p[n]))
            n++;
        FUZZ_CHECK(i < rules.n);
        const struct gh_limit_rule *r = &rules.rules[i++];
        struct ref_rule ref;
        if (!ref_rule(p, n, false, &ref) || !same_rule(r, &ref)) {
            /* findings 2-4 (see ref_rule); anything else is new */
            FUZZ_CHECK(ref_rule(p, n, true, &ref) && same_rule(r, &ref));
            known_finding("2-4: an entry outside the grammar is accepted or misread");
        }
        FUZZ_CHECK((unsigned)r->cls <= GH_CLASS_ANON && (unsigned)r->kind < GH_LKEY_COUNT);
        /* the name is a rule that parses again to the same rule */
        size_t nl = strnlen(r->name, sizeof r->name);
        FUZZ_CHECK(nl > 0 && nl < sizeof r->name);
        gh_buf_reset(&err);
        rc = gh_limit_rules_parse(r->name, &again, &err);
        if (rc) {
            /* finding 1: periods over 2^34 ms (~198 days) name themselves
             * in ms, which the duration parser refuses */
            FUZZ_CHECK(r->lim.period_ns / 1000000 > (1ull << 34));
            known_finding("1: the name of a long period does not parse");
        } else {
            FUZZ_CHECK(again.n == 1);
            const struct gh_limit_rule *a = &again.rules[0];
            FUZZ_CHECK(!strcmp(a->name, r->name) && a->id == r->id);
            FUZZ_CHECK(a->cls == r->cls && a->kind == r->kind);
            FUZZ_CHECK(a->lim.count == r->lim.count && a->lim.period_ns == r->lim.period_ns);
        }
        p += n;
    }
    FUZZ_CHECK(i == rules.n);
    gh_buf_dispose(&err);
}

/* ---- GCRA ---- */

struct lim_ref {
    unsigned __int128 T, tau;
    uint32_t burst;
};

static struct lim_ref lim_ref(const struct gh_limit *lim)
{
    struct lim_ref r;
    uint32_t count = lim->count ? lim->count : 1;
    r.burst = lim->burst ? lim->burst : count;
    r.T = lim->period_ns / count;
    if (r.T == 0)
        r.T = 1;
    r.tau = r.T * r.burst;
    return r;
}

/* Exact arithmetic: products below 2^62, where the library does not
 * saturate. */
static bool exact(const struct lim_ref *r, uint32_t cost)
{
    return r->tau < ((unsigned __int128)1 << 62) && r->T * cost < ((unsigned __int128)1 << 62);
}

static bool passes(uint64_t tat, const struct gh_limit *lim, uint32_t cost, uint64_t now)
{
    struct gh_limit_decision d;
    (void)gh_limit_gcra(tat, lim, cost, now, false, &d);
    FUZZ_CHECK(d.allowed == !d.limited);
    return d.allowed;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t rd64(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void check_gcra(const struct gh_limit *lim, const uint8_t *prog, size_t n)
{
    const struct lim_ref lr = lim_ref(lim);
    /* the same steps through the table (its lock-free path after the first
     * stored step) decide exactly as the pure step does */
    struct gh_limiter *table = gh_limiter_new(1);
    FUZZ_CHECK(table != NULL);
    uint64_t key = gh_limiter_key(table, 1, prog, GH_MIN(n, (size_t)4));
    uint64_t t0 = rd64(prog, GH_MIN(n, (size_t)4)) * 1000003ull; /* a start anywhere */
    uint64_t now = t0, tat = 0;
    unsigned __int128 allowed_units = 0;
    bool all_exact = true;
    for (size_t i = 4; i + 3 <= n; i += 3) {
        uint8_t dt = prog[i], c = prog[i + 1], fl = prog[i + 2];
        /* time: none, fractions of T, or many T */
        uint64_t T64 = (uint64_t)GH_MIN(lr.T, (unsigned __int128)UINT64_MAX / 4096);
        uint64_t delta = dt == 0 ? 0 : dt < 128 ? dt * (T64 / 16 + 1) : (uint64_t)(dt - 127) * T64;
        now = sat_add(now, delta);
        if (now > UINT64_MAX / 2)
            break; /* the clock is ns since boot: decades of range are plenty */
        uint32_t cost = c < 250    ? c % 8
                        : c == 250 ? lr.burst
                        : c == 251 ? lr.burst + 1u
                                   : c * 1000u;
        bool dry = fl & 1;
        all_exact = all_exact && exact(&lr, cost);

        struct gh_limit_decision d, td;
        uint64_t nt = gh_limit_gcra(tat, lim, cost, now, dry, &d);
        gh_limiter_check(table, key, lim, cost, now, dry, &td);
        FUZZ_CHECK(d.allowed == td.allowed && d.limited == td.limited &&
                   d.impossible == td.impossible && d.limit == td.limit &&
                   d.remaining == td.remaining && d.reset_ns == td.reset_ns &&
                   d.retry_after_ns == td.retry_after_ns);
        FUZZ_CHECK(d.limit == lr.burst);
        FUZZ_CHECK(!d.allowed || !d.limited || dry); /* refused for real only without dry run */
        if (!d.limited) {
            FUZZ_CHECK(d.allowed && !d.impossible && d.retry_after_ns == 0);
            FUZZ_CHECK(nt == now + d.reset_ns);
            FUZZ_CHECK(nt >= tat);
            if (cost > lr.burst) {
                /* finding 5: when T * burst and T * cost both pass 2^63 ns
                 * they saturate to the same value, and a cost above the
                 * burst passes */
                FUZZ_CHECK(!exact(&lr, cost));
                known_finding("5: a cost above the burst passes when tau saturates");
            }
            if (exact(&lr, cost)) {
                FUZZ_CHECK(d.reset_ns <= lr.tau);
            }
            allowed_units += cost;
        } else {
            FUZZ_CHECK(nt == tat); /* nothing stored, dry run or not */
            FUZZ_CHECK(d.impossible == (cost > lr.burst) || !exact(&lr, cost));
            if (exact(&lr, cost) && !d.impossible) {
                FUZZ_CHECK(d.retry_after_ns > 0);
                FUZZ_CHECK(passes(tat, lim, cost, now + d.retry_after_ns));
                FUZZ_CHECK(!passes(tat, lim, cost, now + d.retry_after_ns - 1));
            }
        }
        /* `remaining` unit requests pass now, one more does not */
        if (exact(&lr, d.remaining + 1u) && d.remaining < UINT32_MAX) {
            if (d.remaining)
                FUZZ_CHECK(passes(nt, lim, d.remaining, now));
            FUZZ_CHECK(!passes(nt, lim, d.remaining + 1, now));
        }
        tat = nt;
        /* conformance: from a fresh key, units allowed <= burst + elapsed / T */
        if (all_exact)
            FUZZ_CHECK(allowed_units * lr.T <= lr.tau + (now - t0));
    }
    gh_limiter_free(table);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[TEXT_MAX + 1];
    size_t tl = 0;
    while (tl < size && tl < TEXT_MAX && data[tl])
        tl++;
    memcpy(text, data, tl);
    text[tl] = '\0';
    check_rules(text);
    if (tl >= size)
        return 0;

    /* after the NUL: a limit (from the first rule when there is one) and
     * a program of steps */
    const uint8_t *prog = data + tl + 1;
    size_t n = size - tl - 1;
    struct gh_limit lim;
    static struct gh_limit_rules rules;
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    if (gh_limit_rules_parse(text, &rules, &err) == 0 && rules.n > 0) {
        lim = rules.rules[0].lim;
    } else {
        if (n < 12)
            goto out;
        lim.period_ns = rd64(prog, 4) * 1000000ull; /* up to ~50 days in ms */
        lim.count = (uint32_t)rd64(prog + 4, 4);
        lim.burst = (uint32_t)rd64(prog + 8, 4);
        prog += 12;
        n -= 12;
    }
    check_gcra(&lim, prog, n);
out:
    gh_buf_dispose(&err);
    return 0;
}
