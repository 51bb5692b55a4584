/* This module implements `gatehouse ctl top` (ctl.h): the live summary of
 * GET /admin/v1/summary as a compact screen, once, or every second with
 * --watch (until Ctrl-C) or --count N times; rates per second come from
 * the difference between two samples. With --json: the document once, or
 * one compact JSON line per sample when repeating. */
#include "admin/ctl.h"

#include "core/common.h"
#include "core/config.h"

#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static json_t *captured; /* the answer gh_ctl_call handed to capture() */

static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void capture(json_t *j)
{
    json_decref(captured);
    captured = json_incref(j);
}

static long long ival(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : (long long)json_number_value(v);
}

static const char *sval(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* Per-second rate of o[key] since prev (NULL: none yet). */
static double rate(json_t *o, json_t *prev, const char *key, double secs)
{
    if (!prev || secs <= 0)
        return -1;
    double d =
        json_number_value(json_object_get(o, key)) - json_number_value(json_object_get(prev, key));
    return d < 0 ? 0 : d / secs;
}

static void print_rate(double r)
{
    if (r < 0)
        printf("  %8s", "-");
    else
        printf("  %8.1f", r);
}

static void print_screen(json_t *s, json_t *prev, double secs)
{
    long long up = ival(s, "uptime_s");
    printf("gatehouse %s   up %lldd %02lld:%02lld:%02lld   %s\n", sval(s, "version", "?"),
           up / 86400, up / 3600 % 24, up / 60 % 60, up % 60, sval(s, "time", ""));
    json_t *pol = json_object_get(s, "policy");
    json_t *regions = json_object_get(pol, "allowed_regions");
    char rg[128] = "";
    size_t i;
    json_t *v;
    bool restricted = !strcmp(sval(pol, "mode", ""), "restricted");
    json_array_foreach(regions, i, v)
    {
        if (!restricted)
            break;
        size_t n = strlen(rg);
        snprintf(rg + n, sizeof rg - n, "%s%s", n ? "," : "", json_string_value(v));
    }
    printf("level %s   policy %s%s%s%s, pow %lld bits",
           sval(json_object_get(s, "level"), "level", "?"), sval(pol, "mode", "?"),
           rg[0] ? " (" : "", rg, rg[0] ? ")" : "", ival(pol, "pow_bits"));
    if (json_string_value(json_object_get(pol, "until")))
        printf(" until %s", sval(pol, "until", ""));
    printf("\n");
    json_t *cn = json_object_get(s, "connections");
    printf("connections %lld open, %lld waiting for headers, %lld accepted   loop lag %.1f ms\n\n",
           ival(cn, "open"), ival(cn, "pending_headers"), ival(cn, "accepted"),
           json_number_value(json_object_get(cn, "loop_lag_max_ms")));

    json_t *rq = json_object_get(s, "requests"), *prq = json_object_get(prev, "requests");
    json_t *bc = json_object_get(rq, "by_class"), *pbc = json_object_get(prq, "by_class");
    json_t *lim = json_object_get(json_object_get(s, "refusals"), "rate_limited");
    json_t *plim = json_object_get(json_object_get(prev, "refusals"), "rate_limited");
    printf("%-12s  %10s  %8s  %10s  %8s\n", "CLASS", "REQUESTS", "/s", "LIMITED", "/s");
    static const char *const classes[] = {"ops", "user", "login", "register", "anon"};
    for (size_t k = 0; k < GH_ARRAY_LEN(classes); k++) {
        printf("%-12s  %10lld", classes[k], ival(bc, classes[k]));
        print_rate(rate(bc, pbc, classes[k], secs));
        printf("  %10lld", ival(lim, classes[k]));
        print_rate(rate(lim, plim, classes[k], secs));
        printf("\n");
    }
    json_t *st = json_object_get(rq, "by_status"), *pst = json_object_get(prq, "by_status");
    printf("%-12s  %10lld", "answered", ival(rq, "total"));
    print_rate(rate(rq, prq, "total", secs));
    printf("\n");
    static const char *const fam[] = {"2xx", "3xx", "4xx", "5xx"};
    printf("   ");
    for (size_t k = 0; k < GH_ARRAY_LEN(fam); k++) {
        double r = rate(st, pst, fam[k], secs);
        printf(" %s %lld", fam[k], ival(st, fam[k]));
        if (r >= 0)
            printf(" (%.1f/s)", r);
    }
    printf("\n\n");

    json_t *rf = json_object_get(s, "refusals");
    printf("REFUSALS  429 %lld, 503 %lld\n  at accept:", ival(rf, "status_429"),
           ival(rf, "status_503"));
    const char *key;
    json_object_foreach(json_object_get(rf, "connections"), key, v)
    {
        printf(" %s %lld", key, (long long)json_integer_value(v));
    }
    printf("\n\n");

    json_t *q = json_object_get(s, "queues");
    json_t *pp = json_object_get(q, "password_pool");
    json_t *shed = json_object_get(q, "shedding");
    printf(
        "QUEUES  password pool (%lld threads): login %lld waiting, oldest %lld ms; register %lld "
        "waiting, oldest %lld ms\n",
        ival(pp, "threads"), ival(json_object_get(pp, "login"), "waiting"),
        ival(json_object_get(pp, "login"), "oldest_wait_ms"),
        ival(json_object_get(pp, "register"), "waiting"),
        ival(json_object_get(pp, "register"), "oldest_wait_ms"));
    printf("        store %lld pending; shedding pressure %.2f, level %lld\n\n",
           ival(q, "store_pending"), json_number_value(json_object_get(shed, "pressure")),
           ival(shed, "shed_levels"));

    json_t *gw = json_object_get(s, "gateway");
    json_t *ups = json_object_get(gw, "upstreams");
    static const char *const tiers[] = {"priority", "established", "new"};
    printf("MODEL QUEUE  %-11s  %7s  %11s  %9s  %9s\n", "TIER", "WAITING", "OLDEST (s)", "SERVED",
           "BUSY 503");
    for (size_t t = 0; t < sizeof tiers / sizeof tiers[0]; t++) {
        char k[4][64];
        snprintf(k[0], sizeof k[0], "queue_waiting_%s", tiers[t]);
        snprintf(k[1], sizeof k[1], "queue_oldest_wait_seconds_%s", tiers[t]);
        snprintf(k[2], sizeof k[2], "queue_served_total_%s", tiers[t]);
        snprintf(k[3], sizeof k[3], "queue_busy_total_%s_full", tiers[t]);
        char kw[64];
        snprintf(kw, sizeof kw, "queue_busy_total_%s_wait", tiers[t]);
        printf("             %-11s  %7lld  %11.1f  %9lld  %9lld\n", tiers[t], ival(gw, k[0]),
               json_number_value(json_object_get(gw, k[1])), ival(gw, k[2]),
               ival(gw, k[3]) + ival(gw, kw));
    }
    printf("\n");
    printf("UPSTREAMS  %lld, %lld circuit%s open\n", ival(gw, "upstream_count"),
           ival(gw, "circuits_open"), ival(gw, "circuits_open") == 1 ? "" : "s");
    if (json_array_size(ups))
        printf("  %-20s  %-16s  %-4s  %-7s  %6s  %9s  %8s\n", "NAME", "MODEL", "UP", "CIRCUIT",
               "ACTIVE", "REQUESTS", "FAILURES");
    json_array_foreach(ups, i, v)
    {
        printf("  %-20.20s  %-16.16s  %-4s  %-7s  %6lld  %9lld  %8lld\n", sval(v, "name", "?"),
               sval(v, "model", ""), ival(v, "up") ? "yes" : "no",
               ival(v, "circuit_open") ? "open" : "closed", ival(v, "active"), ival(v, "requests"),
               ival(v, "failures"));
    }
    fflush(stdout);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int gh_ctl_top(struct gh_ctl *c)
{
    static const char syn[] = "top [--watch] [--count N]";
    bool watch = false;
    uint64_t count = 1;
    bool counted = false;
    for (int i = 0; i < c->argc; i++) {
        if (!strcmp(c->argv[i], "--watch")) {
            watch = true;
        } else if (!strcmp(c->argv[i], "--count") && i + 1 < c->argc) {
            if (gh_parse_uint(c->argv[++i], 1000000, &count) || !count) {
                fprintf(stderr,
                        "gatehouse ctl: --count needs a number from 1 to 1000000, not "
                        "'%s'\nusage: gatehouse ctl %s\n",
                        c->argv[i], syn);
                return 2;
            }
            counted = true;
        } else {
            fprintf(stderr, "gatehouse ctl: unknown argument '%s'\nusage: gatehouse ctl %s\n",
                    c->argv[i], syn);
            return 2;
        }
    }
    if (watch && !counted)
        count = 0; /* until Ctrl-C */
    bool repeat = count != 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool json = c->json;
    bool tty = isatty(STDOUT_FILENO);
    json_t *prev = NULL;
    double prev_t = 0;
    int rc = 0;
    for (uint64_t n = 0; (count == 0 || n < count) && !stop_flag; n++) {
        if (n) {
            /* one second, cut short by Ctrl-C */
            struct timespec ts = {1, 0};
            while (nanosleep(&ts, &ts) && !stop_flag)
                ;
            if (stop_flag)
                break;
        }
        c->json = false; /* get the answer here, print it below */
        rc = gh_ctl_call(c, "GET", "/admin/v1/summary", NULL, capture);
        c->json = json;
        if (rc)
            break;
        double now = mono_s();
        if (json) {
            char *s = json_dumps(captured, repeat ? JSON_COMPACT | JSON_SORT_KEYS
                                                  : JSON_INDENT(2) | JSON_SORT_KEYS);
            if (s)
                puts(s);
            free(s);
            fflush(stdout);
        } else {
            if (repeat && tty)
                fputs("\033[H\033[2J", stdout);
            else if (n)
                fputs("\n", stdout);
            print_screen(captured, prev, prev ? now - prev_t : 0);
        }
        json_decref(prev);
        prev = captured;
        captured = NULL;
        prev_t = now;
    }
    json_decref(prev);
    json_decref(captured);
    captured = NULL;
    return rc;
}
