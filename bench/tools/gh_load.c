/* This module implements gh-load, the open-loop load generator of the
 * attack lab (bench/attack.sh, docs/internals/attack-lab.md).
 *
 *   gh_load --scenario FILE --target 127.0.0.1:PORT --out DIR
 *           [--setup-target 127.0.0.1:PORT] [--data DIR]
 *           [--admin 127.0.0.1:PORT --admin-token-file FILE]
 *           [--duration S] [--max-requests N] [--scale X] [--users N] [--seed N]
 *           [--check-phones] [--quiet]
 *
 * A scenario file (INI) names client groups; each group sends requests at
 * a constant arrival rate between its start and stop second, whatever the
 * server does (open loop): a request that cannot be sent at its intended
 * time waits in the group's backlog, and its latency is counted from the
 * intended time, so a stalled server cannot hide its delays (no
 * coordinated omission). Each group has a script (legit, l7flood,
 * regflood, smspump, stuffing), a source address range in 127.0.0.0/8
 * (bound before connect, so sprays come from many distinct clients),
 * keep-alive or a new connection per request, and a concurrency cap.
 *
 * Before the run, the legitimate users (and the stuffing group's victim
 * accounts) are registered through the real API: sms-code, the code read
 * from <data>/sms-outbox.jsonl, register (or login when the number
 * already has an account).
 *
 * Output in DIR: summary.csv (one row per group and phase: all, calm =
 * before the first attack group starts, attack = while attack groups
 * run), timeseries.csv (per second of intended send time and group:
 * sent, ok, refused, p50, p99, attack level), and a human summary on
 * stdout. Every arrival ends in exactly one of ok, refused, failed (any
 * other HTTP status), closed (the server closed without answering) or
 * error (connect failure, reset, timeout, client backlog full, still
 * running at the end).
 *
 * Safety: targets and source ranges must be loopback (127.0.0.0/8 or
 * ::1 for the target); a run stops by itself at its duration (at most
 * 600 s) and after max_requests arrivals. */
#include "core/buf.h"
#include "core/common.h"
#include "core/config.h" /* gh_parse_uint */
#include "identity/phone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_GROUPS   12
#define MAX_SECONDS  660
#define MAX_DURATION 600
#define MAX_PATHS    32
#define MAX_PREFIXES 16
#define BODY_CAP     4096
#define COOKIE_CAP   96
#define HIST_BUCKETS 1216
#define NS           1000000000ull
#define MS           1000000ull

/* ---- latency histogram: log buckets, 32 per octave (≤ 3 % error), µs ---- */

struct hist {
    uint64_t n, max_us;
    uint32_t b[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t us)
{
    if (us < 64)
        return (unsigned)us;
    unsigned bit = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = bit - 5;
    unsigned idx = 64 + (shift - 1) * 32 + (unsigned)((us >> shift) - 32);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t hist_value(unsigned idx) /* upper bound of a bucket */
{
    if (idx < 64)
        return idx;
    unsigned shift = (idx - 64) / 32 + 1;
    uint64_t sub = (idx - 64) % 32 + 32;
    return ((sub + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t us)
{
    h->b[hist_index(us)]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_pct_ms(const struct hist *h, unsigned pct)
{
    if (!h->n)
        return 0;
    uint64_t want = (pct * h->n + 99) / 100;
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            if (v > h->max_us)
                v = h->max_us; /* never above the true maximum */
            return (double)v / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ---- counters ---- */

enum outcome { O_OK, O_REFUSED, O_FAILED, O_CLOSED, O_ERROR };
enum err_kind { E_CONNECT, E_RESET, E_TIMEOUT, E_BACKLOG, E_UNFINISHED, E_COUNT };
static const char *const err_names[E_COUNT] = {"connect", "reset", "timeout", "backlog",
                                               "unfinished"};
static const int tracked_status[] = {200, 201, 202, 204, 400, 401, 402, 403, 404, 405,
                                     408, 413, 422, 429, 431, 500, 502, 503, 504};
#define N_STATUS (sizeof tracked_status / sizeof tracked_status[0])

struct stats {
    uint64_t sent, ok, refused, failed, closed, errors;
    uint64_t status[N_STATUS + 1]; /* last: other statuses */
    uint64_t err[E_COUNT];
    struct hist lat;    /* every answered request (any status) */
    struct hist lat_ok; /* successful ones */
};

struct second { /* per group and second of intended time */
    uint32_t sent, ok, refused, failed, closed, errors;
    struct hist *lat; /* allocated on first use */
};

/* ---- scenario ---- */

enum script { S_LEGIT, S_L7FLOOD, S_REGFLOOD, S_SMSPUMP, S_STUFFING, S_LEVEL };
static const char *const script_names[] = {"legit",   "l7flood",  "regflood",
                                           "smspump", "stuffing", "level"};
enum action {
    A_LOGIN,
    A_ME,
    A_MODELS,
    A_CHAT,
    A_COUNT_LEGIT,
    A_GET = A_COUNT_LEGIT,
    A_SMS,
    A_REGISTER,
    A_STUFF,
    A_LEVEL
};

struct user {
    char phone[24];
    char password[40];
    char session[COOKIE_CAP];
    char csrf[COOKIE_CAP];
    uint32_t addr;
    bool registered;
    struct conn *idle; /* keep-alive connections of this user */
    unsigned nidle;
};

struct req {
    struct req *next;
    uint64_t intended; /* ns since t0 */
    int user;          /* index in the group's users, -1 none */
    uint32_t src;      /* source address, host order */
    uint8_t action;
    bool retried;
    size_t len;
    char text[]; /* the whole request */
};

struct group {
    char name[32];
    enum script script;
    bool internal;  /* the level poller: not reported */
    bool is_attack; /* not legit */
    double rate;
    double start, stop; /* seconds */
    uint32_t addr_base, addr_size, addr_next;
    bool addr_random;
    unsigned conns_max, conns; /* cap and open connections */
    bool keepalive;
    unsigned backlog_max, backlog_len;
    struct req *bl_head, *bl_tail;
    struct conn *idle; /* keep-alive connections (groups without users) */
    unsigned nidle;
    unsigned weights[A_COUNT_LEGIT];
    int refused_codes[12];
    unsigned n_refused_codes;
    /* users (legit) or victims (stuffing) */
    struct user *users;
    unsigned nusers, next_user;
    double real_share; /* stuffing: share of logins against existing accounts */
    char paths[MAX_PATHS][96];
    unsigned npaths;
    char prefixes[MAX_PREFIXES][20];
    unsigned nprefixes;
    uint64_t seq;
    const struct sockaddr_storage *dst; /* the listener this group talks to */
    socklen_t dst_len;
    uint64_t next_due; /* ns since t0 */
    uint64_t arrivals;
    struct stats all, calm, attack;
    struct stats act[A_COUNT_LEGIT][3]; /* legit: per action, all/calm/attack */
    struct second *sec;
};

struct scenario {
    char title[160];
    double duration;
    double attack_start, attack_stop; /* < 0: from the groups */
    uint64_t max_requests;
    double timeout, drain;
    struct group g[MAX_GROUPS];
    unsigned ng;
};

/* ---- connections ---- */

enum cstate { C_CONNECTING, C_WRITING, C_READING, C_IDLE };

struct conn {
    int fd;
    enum cstate state;
    struct group *g;
    int user;
    uint32_t src;
    unsigned served; /* requests answered on this connection */
    struct conn *next_idle;
    struct req *rq;
    size_t woff;
    uint64_t deadline; /* ns since t0 */
    uint64_t got;      /* response bytes received for rq */
    http_parser p;
    bool done, hdr_value;
    int status;
    char hname[16];
    size_t hname_len;
    char hval[COOKIE_CAP + 32];
    size_t hval_len;
    char tail[8]; /* last bytes of the body, for [DONE] across reads */
    size_t tail_len;
    bool saw_done;
    struct gh_buf body; /* captured for the level poller */
    unsigned idx;
};

static struct scenario sc;
static struct sockaddr_storage target, setup_target;
static socklen_t target_len, setup_target_len;
static char host_hdr[64];
static int ep = -1;
static uint64_t t0_abs;
static struct conn **conns;
static unsigned conns_cap, conns_used;
static unsigned *free_slots;
static unsigned nfree;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double attack_start_s, attack_stop_s;
static uint64_t attack_start_ns, attack_stop_ns;
static int level_at[MAX_SECONDS];
static const char *data_dir;
static char admin_token[128];
static bool quiet;
static uint64_t total_arrivals;
static http_parser_settings psettings;
static uint64_t t0_epoch_ms;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("gh_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t now_abs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}
static uint64_t now_rel(void)
{
    return now_abs() - t0_abs;
}

static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static unsigned rnd_below(unsigned n)
{
    return n ? (unsigned)(rnd() % n) : 0;
}
static double rnd_unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* ---- phone numbers ---- */

static void digits(char *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        out[i] = (char)('0' + rnd_below(10));
    out[n] = 0;
}

/* A random number that libphonenumber accepts as a mobile of its region. */
static void random_phone(char *out, size_t cap, unsigned region)
{
    char d[16];
    switch (region % 8) {
    case 0: { /* CN: 13x, 15[0-35-9], 18x */
        static const char *const p[] = {"130", "133", "135", "136", "138", "139", "150",
                                        "151", "152", "158", "159", "186", "187", "188"};
        digits(d, 8);
        snprintf(out, cap, "+86%s%s", p[rnd_below(14)], d);
        break;
    }
    case 1: { /* US: area code, exchange [2-9]xx, line */
        static const char *const a[] = {"212", "213", "312", "415", "617", "646", "702", "801"};
        digits(d, 6);
        snprintf(out, cap, "+1%s%c%s", a[rnd_below(8)], (char)('2' + rnd_below(8)), d);
        break;
    }
    case 2: /* GB mobile 07[7-9]xx (076 are pagers) */
        digits(d, 8);
        snprintf(out, cap, "+447%c%s", (char)('7' + rnd_below(3)), d);
        break;
    case 3: /* IN mobile 9xxxxxxxxx */
        digits(d, 9);
        snprintf(out, cap, "+919%s", d);
        break;
    case 4: /* BR São Paulo mobile 11 9xxxx xxxx */
        digits(d, 8);
        snprintf(out, cap, "+55119%s", d);
        break;
    case 5: /* DE mobile 151 / 160 / 170 */
        digits(d, 8);
        snprintf(out, cap, "+49%s%s", rnd_below(2) ? "151" : "170", d);
        break;
    case 6: /* RU mobile 9xx */
        digits(d, 9);
        snprintf(out, cap, "+79%s", d);
        break;
    default: /* ID mobile 812 */
        digits(d, 8);
        snprintf(out, cap, "+62812%s", d);
        break;
    }
}

/* A legitimate user's number: CN mobile, a different prefix per user. */
static void user_phone(char *out, size_t cap, unsigned group, unsigned i)
{
    static const char *const p[] = {"138", "139", "150", "186", "135", "158"};
    char d[8];
    digits(d, 4);
    snprintf(out, cap, "+86%s%02u%02u%s", p[(i / 100) % 6], group * 7 % 100, i % 100, d);
}

/* ---- scenario file ---- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

static double parse_num(const char *file, unsigned line, const char *v)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *trim(end) || !(d >= 0 && d < 1e15))
        die("%s:%u: '%s' is not a non-negative number", file, line, v);
    return d;
}

static bool parse_yes(const char *file, unsigned line, const char *v)
{
    bool b;
    if (gh_parse_bool(v, &b) != 0)
        die("%s:%u: '%s' is not yes/no", file, line, v);
    return b;
}

static bool loopback4(uint32_t a)
{
    return (a >> 24) == 127;
}

static void parse_cidr(const char *file, unsigned line, const char *v, struct group *g)
{
    char ip[32];
    const char *slash = strchr(v, '/');
    size_t n = slash ? (size_t)(slash - v) : strlen(v);
    if (n >= sizeof ip)
        die("%s:%u: bad address range '%s'", file, line, v);
    memcpy(ip, v, n);
    ip[n] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        die("%s:%u: bad address range '%s'", file, line, v);
    uint64_t bits = 32;
    if (slash && gh_parse_uint(slash + 1, 32, &bits) != 0)
        die("%s:%u: bad prefix length in '%s'", file, line, v);
    if (bits < 8)
        die("%s:%u: range '%s' is wider than 127.0.0.0/8", file, line, v);
    uint32_t base = ntohl(a.s_addr);
    uint32_t size = bits == 32 ? 1 : (uint32_t)1 << (32 - bits);
    base &= ~(size - 1);
    if (!loopback4(base))
        die("%s:%u: source range %s is not loopback (127.0.0.0/8 only)", file, line, v);
    g->addr_base = base;
    g->addr_size = size;
}

static void parse_list(char *v, char out[][20], unsigned max, unsigned *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && *n < max;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        size_t l = strlen(tok);
        if (!l || l >= 20)
            continue;
        memcpy(out[*n], tok, l + 1);
        (*n)++;
    }
}

static void group_defaults(struct group *g, const char *name)
{
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->script = S_L7FLOOD;
    g->rate = 10;
    g->start = 0;
    g->stop = -1;
    g->addr_base = 0x7f0a0000u; /* 127.10.0.0/16 */
    g->addr_size = 65536;
    g->conns_max = 256;
    g->keepalive = true;
    g->backlog_max = 20000;
    g->weights[A_LOGIN] = 1;
    g->weights[A_ME] = 4;
    g->weights[A_MODELS] = 2;
    g->weights[A_CHAT] = 3;
    g->real_share = 0.5;
    static const int refused[] = {403, 408, 429, 503};
    memcpy(g->refused_codes, refused, sizeof refused);
    g->n_refused_codes = 4;
}

static void parse_scenario(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        die("cannot open scenario %s: %s", file, strerror(errno));
    sc.duration = 30;
    sc.attack_start = sc.attack_stop = -1;
    sc.max_requests = 2000000;
    sc.timeout = 10;
    sc.drain = 5;
    char line[1024];
    unsigned ln = 0;
    struct group *g = NULL;
    bool in_scenario = false, in_other = false;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e)
                die("%s:%u: unterminated section", file, ln);
            *e = 0;
            char *name = trim(s + 1);
            g = NULL;
            in_scenario = !strcmp(name, "scenario");
            in_other = !strcmp(name, "slowhttptest") || !strncmp(name, "server", 6);
            if (!in_scenario && !in_other) {
                if (sc.ng == MAX_GROUPS - 1)
                    die("%s:%u: too many groups (at most %d)", file, ln, MAX_GROUPS - 1);
                g = &sc.g[sc.ng++];
                group_defaults(g, name);
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            die("%s:%u: expected key = value", file, ln);
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        char *hash = strstr(v, " #");
        if (hash) {
            *hash = 0;
            v = trim(v);
        }
        if (in_other)
            continue;
        if (in_scenario) {
            if (!strcmp(k, "title"))
                snprintf(sc.title, sizeof sc.title, "%s", v);
            else if (!strcmp(k, "duration"))
                sc.duration = parse_num(file, ln, v);
            else if (!strcmp(k, "attack_start"))
                sc.attack_start = parse_num(file, ln, v);
            else if (!strcmp(k, "attack_stop"))
                sc.attack_stop = parse_num(file, ln, v);
            else if (!strcmp(k, "max_requests"))
                sc.max_requests = (uint64_t)parse_num(file, ln, v);
            else if (!strcmp(k, "timeout"))
                sc.timeout = parse_num(file, ln, v);
            else if (!strcmp(k, "drain"))
                sc.drain = parse_num(file, ln, v);
            else if (!strcmp(k, "name") || !strcmp(k, "description"))
                ;
            else
                die("%s:%u: unknown key '%s' in [scenario]", file, ln, k);
            continue;
        }
        if (!g)
            die("%s:%u: key outside a section", file, ln);
        if (!strcmp(k, "script")) {
            unsigned i;
            for (i = 0; i < S_LEVEL; i++)
                if (!strcmp(v, script_names[i]))
                    break;
            if (i == S_LEVEL)
                die("%s:%u: unknown script '%s' (legit, l7flood, regflood, smspump, stuffing)",
                    file, ln, v);
            g->script = (enum script)i;
        } else if (!strcmp(k, "rate"))
            g->rate = parse_num(file, ln, v);
        else if (!strcmp(k, "start"))
            g->start = parse_num(file, ln, v);
        else if (!strcmp(k, "stop"))
            g->stop = parse_num(file, ln, v);
        else if (!strcmp(k, "addr"))
            parse_cidr(file, ln, v, g);
        else if (!strcmp(k, "addr_order"))
            g->addr_random = !strcmp(v, "random");
        else if (!strcmp(k, "conns"))
            g->conns_max = (unsigned)parse_num(file, ln, v);
        else if (!strcmp(k, "keepalive"))
            g->keepalive = parse_yes(file, ln, v);
        else if (!strcmp(k, "backlog"))
            g->backlog_max = (unsigned)parse_num(file, ln, v);
        else if (!strcmp(k, "users") || !strcmp(k, "victims"))
            g->nusers = (unsigned)parse_num(file, ln, v);
        else if (!strcmp(k, "real_share"))
            g->real_share = parse_num(file, ln, v);
        else if (!strcmp(k, "weights")) {
            /* login:1, me:4, models:2, chat:3 */
            static const char *const an[] = {"login", "me", "models", "chat"};
            memset(g->weights, 0, sizeof g->weights);
            for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                char *c = strchr(tok, ':');
                if (!c)
                    die("%s:%u: weights are name:number", file, ln);
                *c = 0;
                unsigned a;
                for (a = 0; a < A_COUNT_LEGIT; a++)
                    if (!strcmp(trim(tok), an[a]))
                        break;
                if (a == A_COUNT_LEGIT)
                    die("%s:%u: unknown action '%s'", file, ln, trim(tok));
                g->weights[a] = (unsigned)parse_num(file, ln, trim(c + 1));
            }
        } else if (!strcmp(k, "paths")) {
            g->npaths = 0;
            for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && g->npaths < MAX_PATHS;
                 tok = strtok_r(NULL, ",", &save)) {
                tok = trim(tok);
                if (*tok != '/' || strlen(tok) >= sizeof g->paths[0] || strpbrk(tok, " \r\n"))
                    die("%s:%u: bad path '%s'", file, ln, tok);
                snprintf(g->paths[g->npaths++], sizeof g->paths[0], "%s", tok);
            }
        } else if (!strcmp(k, "prefixes")) {
            parse_list(v, g->prefixes, MAX_PREFIXES, &g->nprefixes);
            for (unsigned i = 0; i < g->nprefixes; i++)
                if (g->prefixes[i][0] != '+' ||
                    strspn(g->prefixes[i] + 1, "0123456789") != strlen(g->prefixes[i] + 1))
                    die("%s:%u: prefix '%s' is not +digits", file, ln, g->prefixes[i]);
        } else if (!strcmp(k, "refused")) {
            g->n_refused_codes = 0;
            for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && g->n_refused_codes < 12;
                 tok = strtok_r(NULL, ",", &save))
                g->refused_codes[g->n_refused_codes++] = (int)parse_num(file, ln, trim(tok));
        } else
            die("%s:%u: unknown key '%s' in [%s]", file, ln, k, g->name);
    }
    fclose(f);
}

/* ---- request text ---- */

static struct req *req_new(struct gh_buf *b, uint64_t intended, int user, uint32_t src,
                           uint8_t action)
{
    struct req *r = malloc(sizeof *r + b->len + 1);
    if (!r)
        die("out of memory");
    memset(r, 0, sizeof *r);
    r->intended = intended;
    r->user = user;
    r->src = src;
    r->action = action;
    r->len = b->len;
    memcpy(r->text, b->data, b->len);
    r->text[b->len] = 0;
    return r;
}

/* method, path, optional cookie user, optional JSON body, optional extra header */
static void build(struct gh_buf *b, bool keepalive, const char *method, const char *path,
                  const struct user *u, bool csrf, const char *auth, const char *body)
{
    gh_buf_reset(b);
    int rc = gh_buf_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gh-load\r\n", method, path,
                           host_hdr);
    if (!keepalive)
        rc |= gh_buf_append_str(b, "Connection: close\r\n");
    if (u && u->session[0]) {
        rc |= gh_buf_printf(b, "Cookie: gh_session=%s; gh_csrf=%s\r\n", u->session, u->csrf);
        if (csrf)
            rc |= gh_buf_printf(b, "X-CSRF-Token: %s\r\n", u->csrf);
    }
    if (auth)
        rc |= gh_buf_printf(b, "Authorization: Bearer %s\r\n", auth);
    if (body)
        rc |= gh_buf_printf(b, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            strlen(body), body);
    else
        rc |= gh_buf_append_str(b, "\r\n");
    if (rc)
        die("request too large");
}

static uint32_t next_src(struct group *g)
{
    uint32_t off = g->addr_random ? (uint32_t)(rnd() % g->addr_size)
                                  : (uint32_t)(g->addr_next++ % g->addr_size);
    return g->addr_base + off;
}

static unsigned pick_action(const struct group *g)
{
    unsigned sum = 0;
    for (unsigned a = 0; a < A_COUNT_LEGIT; a++)
        sum += g->weights[a];
    unsigned x = rnd_below(sum ? sum : 1);
    for (unsigned a = 0; a < A_COUNT_LEGIT; a++) {
        if (x < g->weights[a])
            return a;
        x -= g->weights[a];
    }
    return A_ME;
}

/* Builds the next arrival of group g (intended time t). */
static struct req *make_request(struct group *g, uint64_t t)
{
    static struct gh_buf b;
    static bool init;
    if (!init) {
        gh_buf_init(&b, 8192);
        init = true;
    }
    char body[512], phone[48], d[16];
    int user = -1;
    uint8_t action = A_GET;
    switch (g->script) {
    case S_LEGIT: {
        user = (int)(g->next_user++ % g->nusers);
        struct user *u = &g->users[user];
        action = (uint8_t)pick_action(g);
        if (!u->session[0])
            action = A_LOGIN;
        switch (action) {
        case A_LOGIN:
            snprintf(body, sizeof body, "{\"phone\":\"%s\",\"password\":\"%s\"}", u->phone,
                     u->password);
            build(&b, g->keepalive, "POST", "/api/auth/login", NULL, false, NULL, body);
            break;
        case A_ME:
            build(&b, g->keepalive, "GET", "/api/me", u, false, NULL, NULL);
            break;
        case A_MODELS:
            build(&b, g->keepalive, "GET", "/v1/models", u, false, NULL, NULL);
            break;
        default:
            snprintf(body, sizeof body,
                     "{\"model\":\"echo\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                     "\"content\":\"hello from user %d, how are you\"}]}",
                     user);
            build(&b, g->keepalive, "POST", "/v1/chat/completions", u, true, NULL, body);
            break;
        }
        return req_new(&b, t, user, u->addr, action);
    }
    case S_L7FLOOD: {
        char path[160];
        if (g->npaths && rnd_below(8)) {
            snprintf(path, sizeof path, "%s", g->paths[rnd_below(g->npaths)]);
        } else {
            digits(d, 8);
            snprintf(path, sizeof path, "/x/%s?q=%s", d, d + 4);
        }
        build(&b, g->keepalive, "GET", path, NULL, false, NULL, NULL);
        break;
    }
    case S_REGFLOOD:
        random_phone(phone, sizeof phone, rnd_below(8));
        if (g->seq++ % 2 == 0) {
            action = A_SMS;
            snprintf(body, sizeof body, "{\"phone\":\"%s\",\"purpose\":\"register\"}", phone);
            build(&b, g->keepalive, "POST", "/api/auth/sms-code", NULL, false, NULL, body);
        } else {
            action = A_REGISTER;
            digits(d, 6);
            snprintf(body, sizeof body,
                     "{\"phone\":\"%s\",\"code\":\"%s\",\"password\":\"Flood-%s-pass\"}", phone, d,
                     d);
            build(&b, g->keepalive, "POST", "/api/auth/register", NULL, false, NULL, body);
        }
        break;
    case S_SMSPUMP: {
        /* sequential numbers under a few prefixes, round robin */
        const char *pfx = g->nprefixes ? g->prefixes[g->seq % g->nprefixes] : "+4477009000";
        uint64_t n = g->seq / (g->nprefixes ? g->nprefixes : 1);
        g->seq++;
        size_t plen = strlen(pfx) - 1; /* digits after '+' */
        unsigned width = plen < 12 ? (unsigned)(12 - plen) : 2;
        if (width > 8)
            width = 8;
        uint64_t mod = 1;
        for (unsigned i = 0; i < width; i++)
            mod *= 10;
        snprintf(phone, sizeof phone, "%s%0*llu", pfx, (int)width, (unsigned long long)(n % mod));
        action = A_SMS;
        snprintf(body, sizeof body, "{\"phone\":\"%s\",\"purpose\":\"%s\"}", phone,
                 rnd_below(4) ? "register" : "login");
        build(&b, g->keepalive, "POST", "/api/auth/sms-code", NULL, false, NULL, body);
        break;
    }
    case S_STUFFING:
        if (g->nusers && rnd_unit() < g->real_share)
            snprintf(phone, sizeof phone, "%s", g->users[rnd_below(g->nusers)].phone);
        else
            random_phone(phone, sizeof phone, 0);
        digits(d, 8);
        action = A_STUFF;
        snprintf(body, sizeof body, "{\"phone\":\"%s\",\"password\":\"hunter%s\"}", phone, d);
        build(&b, g->keepalive, "POST", "/api/auth/login", NULL, false, NULL, body);
        break;
    case S_LEVEL:
        action = A_LEVEL;
        build(&b, true, "GET", "/admin/v1/level", NULL, false, admin_token, NULL);
        return req_new(&b, t, -1, 0x7f000001u, action);
    }
    return req_new(&b, t, user, next_src(g), action);
}

/* ---- accounting ---- */

static struct second *sec_of(struct group *g, uint64_t intended)
{
    uint64_t s = intended / NS;
    return &g->sec[s < MAX_SECONDS ? s : MAX_SECONDS - 1];
}

static void stats_add(struct stats *s, enum outcome o, int status, int err, uint64_t lat_us)
{
    switch (o) {
    case O_OK:
        s->ok++;
        break;
    case O_REFUSED:
        s->refused++;
        break;
    case O_FAILED:
        s->failed++;
        break;
    case O_CLOSED:
        s->closed++;
        break;
    case O_ERROR:
        s->errors++;
        break;
    }
    if (status > 0) {
        unsigned i;
        for (i = 0; i < N_STATUS; i++)
            if (tracked_status[i] == status)
                break;
        s->status[i]++;
        hist_add(&s->lat, lat_us);
        if (o == O_OK)
            hist_add(&s->lat_ok, lat_us);
    }
    if (o == O_ERROR && err >= 0)
        s->err[err]++;
}

static void account(struct group *g, const struct req *r, enum outcome o, int status, int err)
{
    uint64_t lat_us = (now_rel() - r->intended) / 1000;
    stats_add(&g->all, o, status, err, lat_us);
    bool per_action = g->script == S_LEGIT && r->action < A_COUNT_LEGIT;
    if (per_action)
        stats_add(&g->act[r->action][0], o, status, err, lat_us);
    if (r->intended < attack_start_ns) {
        stats_add(&g->calm, o, status, err, lat_us);
        if (per_action)
            stats_add(&g->act[r->action][1], o, status, err, lat_us);
    } else if (r->intended < attack_stop_ns) {
        stats_add(&g->attack, o, status, err, lat_us);
        if (per_action)
            stats_add(&g->act[r->action][2], o, status, err, lat_us);
    }
    struct second *s = sec_of(g, r->intended);
    switch (o) {
    case O_OK:
        s->ok++;
        break;
    case O_REFUSED:
        s->refused++;
        break;
    case O_FAILED:
        s->failed++;
        break;
    case O_CLOSED:
        s->closed++;
        break;
    case O_ERROR:
        s->errors++;
        break;
    }
    if (status > 0) {
        if (!s->lat && !(s->lat = calloc(1, sizeof *s->lat)))
            die("out of memory");
        hist_add(s->lat, lat_us);
    }
}

/* counts r as sent (delta 1) or takes that back (delta -1, for a retry) */
static void sent_add(struct group *g, const struct req *r, int delta)
{
    bool per_action = g->script == S_LEGIT && r->action < A_COUNT_LEGIT;
    g->all.sent += (uint64_t)(int64_t)delta;
    if (per_action)
        g->act[r->action][0].sent += (uint64_t)(int64_t)delta;
    if (r->intended < attack_start_ns) {
        g->calm.sent += (uint64_t)(int64_t)delta;
        if (per_action)
            g->act[r->action][1].sent += (uint64_t)(int64_t)delta;
    } else if (r->intended < attack_stop_ns) {
        g->attack.sent += (uint64_t)(int64_t)delta;
        if (per_action)
            g->act[r->action][2].sent += (uint64_t)(int64_t)delta;
    }
    sec_of(g, r->intended)->sent += (uint32_t)(int32_t)delta;
}

static void count_sent(struct group *g, const struct req *r)
{
    sent_add(g, r, 1);
}

/* ---- the event loop ---- */

static void conn_close(struct conn *c);
static void dispatch(struct group *g, struct req *r);
static void conn_start(struct conn *c, struct req *r);

static void req_finish(struct conn *c, enum outcome o, int status, int err)
{
    struct req *r = c->rq;
    c->rq = NULL;
    if (!r)
        return;
    struct group *g = c->g;
    if (g->script == S_LEGIT && r->user >= 0 && status > 0) {
        struct user *u = &g->users[r->user];
        if (status == 401 && r->action != A_LOGIN)
            u->session[0] = 0; /* log in again next time */
    }
    if (g->script == S_LEVEL && status == 200) {
        const char *b = (const char *)c->body.data;
        const char *p = b ? memmem(b, c->body.len, "\"level\":\"", 9) : NULL;
        int lv = -1;
        if (p) {
            p += 9;
            lv = !strncmp(p, "normal", 6) ? 0 : !strncmp(p, "elevated", 8) ? 1 : 2;
        }
        uint64_t s = r->intended / NS;
        if (s < MAX_SECONDS && lv > level_at[s])
            level_at[s] = lv;
    }
    account(g, r, o, status, err);
    free(r);
}

static bool is_refused(const struct group *g, int status)
{
    for (unsigned i = 0; i < g->n_refused_codes; i++)
        if (g->refused_codes[i] == status)
            return true;
    return false;
}

static unsigned slot_alloc(void)
{
    if (nfree)
        return free_slots[--nfree];
    if (conns_used == conns_cap)
        die("connection table full");
    return conns_used++;
}

static void conn_free(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->g->conns--;
    gh_buf_dispose(&c->body);
    conns[c->idx] = NULL;
    free_slots[nfree++] = c->idx;
    free(c);
}

static void idle_unlink(struct conn *c)
{
    struct conn **head;
    unsigned *n;
    if (c->user >= 0) {
        head = &c->g->users[c->user].idle;
        n = &c->g->users[c->user].nidle;
    } else {
        head = &c->g->idle;
        n = &c->g->nidle;
    }
    for (struct conn **pp = head; *pp; pp = &(*pp)->next_idle)
        if (*pp == c) {
            *pp = c->next_idle;
            (*n)--;
            break;
        }
    c->next_idle = NULL;
}

static void conn_close(struct conn *c)
{
    if (c->state == C_IDLE)
        idle_unlink(c);
    conn_free(c);
}

/* The connection's request is over: reuse it for the backlog, park it, or close it. */
static void conn_release(struct conn *c, bool reusable)
{
    struct group *g = c->g;
    if (reusable && g->keepalive && g->bl_head &&
        (g->script != S_LEGIT || g->bl_head->user == c->user)) {
        struct req *r = g->bl_head;
        g->bl_head = r->next;
        if (!g->bl_head)
            g->bl_tail = NULL;
        g->backlog_len--;
        conn_start(c, r);
        return;
    }
    unsigned *nidle = c->user >= 0 ? &g->users[c->user].nidle : &g->nidle;
    if (reusable && g->keepalive && !g->bl_head && *nidle < (c->user >= 0 ? 2u : g->conns_max)) {
        c->state = C_IDLE;
        struct conn **head = c->user >= 0 ? &g->users[c->user].idle : &g->idle;
        c->next_idle = *head;
        *head = c;
        (*nidle)++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = c->idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    conn_free(c);
    /* a slot is free: start the next waiting request on a new connection */
    if (g->bl_head) {
        struct req *r = g->bl_head;
        g->bl_head = r->next;
        if (!g->bl_head)
            g->bl_tail = NULL;
        g->backlog_len--;
        dispatch(g, r);
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hdr_value) {
        c->hdr_value = false;
        c->hname_len = 0;
        c->hval_len = 0;
    }
    size_t room = sizeof c->hname - 1 - c->hname_len;
    size_t n = len < room ? len : room;
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += n;
    c->hname[c->hname_len] = 0;
    return 0;
}

static void take_cookie(struct conn *c)
{
    if (strcasecmp(c->hname, "set-cookie") != 0 || c->g->script != S_LEGIT || c->rq == NULL ||
        c->rq->user < 0)
        return;
    struct user *u = &c->g->users[c->rq->user];
    c->hval[c->hval_len] = 0;
    char *dst = NULL;
    const char *v = c->hval;
    if (!strncmp(v, "gh_session=", 11)) {
        dst = u->session;
        v += 11;
    } else if (!strncmp(v, "gh_csrf=", 8)) {
        dst = u->csrf;
        v += 8;
    }
    if (!dst)
        return;
    size_t n = strcspn(v, ";");
    if (n >= COOKIE_CAP)
        return;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!c->hdr_value) {
        c->hdr_value = true;
        c->hval_len = 0;
    }
    size_t room = sizeof c->hval - 1 - c->hval_len;
    size_t n = len < room ? len : room;
    memcpy(c->hval + c->hval_len, at, n);
    c->hval_len += n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->hdr_value)
        take_cookie(c);
    /* a complete header pair is processed when the next field starts */
    c->status = (int)p->status_code;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->g->script == S_LEVEL)
        (void)gh_buf_append(&c->body, at, len < BODY_CAP - c->body.len ? len : 0);
    if (c->rq && c->rq->action == A_CHAT && !c->saw_done) {
        /* look for "[DONE]" across read boundaries: the last 5 bytes of
         * what came before, then this chunk */
        char win[16];
        size_t wl = c->tail_len, head = len < 5 ? len : 5;
        memcpy(win, c->tail, wl);
        memcpy(win + wl, at, head);
        wl += head;
        if (memmem(win, wl, "[DONE]", 6) || memmem(at, len, "[DONE]", 6))
            c->saw_done = true;
        if (len >= 5) {
            memcpy(c->tail, at + len - 5, 5);
            c->tail_len = 5;
        } else {
            size_t keep = wl < 5 ? wl : 5;
            memmove(c->tail, win + (wl - keep), keep);
            c->tail_len = keep;
        }
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static int on_header_field_wrap(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hdr_value)
        take_cookie(c);
    return on_header_field(p, at, len);
}

static void conn_start(struct conn *c, struct req *r)
{
    c->rq = r;
    c->woff = 0;
    c->got = 0;
    c->done = false;
    c->hdr_value = false;
    c->hname_len = c->hval_len = 0;
    c->hname[0] = 0;
    c->status = 0;
    c->tail_len = 0;
    c->saw_done = false;
    gh_buf_reset(&c->body);
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    uint64_t now = now_rel();
    c->deadline = now + (uint64_t)(sc.timeout * (double)NS);
    if (c->state == C_IDLE)
        idle_unlink(c);
    c->state = C_WRITING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = c->idx};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Opens a new connection for r; false when the socket could not be made. */
static bool conn_open(struct group *g, struct req *r)
{
    int fd = socket(g->dst->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_sent(g, r);
        struct conn tmp = {.g = g, .rq = r};
        req_finish(&tmp, O_ERROR, 0, E_CONNECT);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g->dst->ss_family == AF_INET && r->src) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(r->src)};
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            count_sent(g, r);
            struct conn tmp = {.g = g, .rq = r};
            req_finish(&tmp, O_ERROR, 0, E_CONNECT);
            return false;
        }
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        die("out of memory");
    c->fd = fd;
    c->g = g;
    c->user = g->script == S_LEGIT ? r->user : -1;
    c->src = r->src;
    c->idx = slot_alloc();
    conns[c->idx] = c;
    gh_buf_init(&c->body, BODY_CAP);
    g->conns++;
    count_sent(g, r);
    c->state = C_CONNECTING;
    int rc = connect(fd, (const struct sockaddr *)g->dst, g->dst_len);
    if (rc != 0 && errno != EINPROGRESS) {
        c->rq = r;
        req_finish(c, O_ERROR, 0, E_CONNECT);
        conn_free(c);
        return false;
    }
    c->rq = r;
    c->woff = 0;
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    c->deadline = now_rel() + (uint64_t)(sc.timeout * (double)NS);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = c->idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->state = C_WRITING;
    return true;
}

/* Sends r now if a connection is available, else queues it. */
static void dispatch(struct group *g, struct req *r)
{
    if (g->keepalive) {
        struct conn **head =
            r->user >= 0 && g->script == S_LEGIT ? &g->users[r->user].idle : &g->idle;
        if (*head) {
            struct conn *c = *head;
            count_sent(g, r);
            conn_start(c, r); /* unlinks it from the idle list */
            return;
        }
    }
    if (g->conns < g->conns_max) {
        conn_open(g, r);
        return;
    }
    /* at the cap: for a legit user, close another user's idle connection */
    if (g->script == S_LEGIT) {
        for (unsigned i = 0; i < g->nusers; i++)
            if (g->users[i].idle) {
                conn_close(g->users[i].idle);
                conn_open(g, r);
                return;
            }
    }
    if (g->backlog_len >= g->backlog_max) {
        count_sent(g, r);
        struct conn tmp = {.g = g, .rq = r};
        req_finish(&tmp, O_ERROR, 0, E_BACKLOG);
        return;
    }
    r->next = NULL;
    if (g->bl_tail)
        g->bl_tail->next = r;
    else
        g->bl_head = r;
    g->bl_tail = r;
    g->backlog_len++;
}

/* Requests still in the backlog are counted as sent when they leave it;
 * count_sent is called at that moment (dispatch/conn_open), so a request
 * is counted exactly once. */

static void conn_error(struct conn *c, int err)
{
    struct req *r = c->rq;
    /* a reused keep-alive connection the server had closed: retry once */
    if (r && c->served > 0 && c->got == 0 && !r->retried && err == E_RESET) {
        struct group *g = c->g;
        c->rq = NULL;
        r->retried = true;
        conn_close(c);
        /* it was counted as sent on the first try: undo, dispatch counts again */
        sent_add(g, r, -1);
        dispatch(g, r);
        return;
    }
    if (r)
        req_finish(c, c->got == 0 && err == E_RESET ? O_CLOSED : O_ERROR, 0, err);
    conn_close(c);
}

static void on_response_done(struct conn *c, bool eof)
{
    struct group *g = c->g;
    int st = c->status;
    enum outcome o;
    if (st >= 200 && st < 300)
        o = (c->rq && c->rq->action == A_CHAT && !c->saw_done) ? O_FAILED : O_OK;
    else if (is_refused(g, st))
        o = O_REFUSED;
    else
        o = O_FAILED;
    bool keep = !eof && http_should_keep_alive(&c->p) && g->keepalive;
    req_finish(c, o, st, -1);
    c->served++;
    conn_release(c, keep);
}

static void handle_io(struct conn *c, uint32_t events)
{
    if (c->state == C_IDLE) {
        /* the server closed (or wrote to) an idle connection */
        char tmp[512];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN) || n > 0)
            conn_close(c);
        return;
    }
    if (c->state == C_WRITING || c->state == C_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            int e = 0;
            socklen_t el = sizeof e;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
            conn_error(c, c->served == 0 && c->got == 0 && c->woff == 0 && e ? E_CONNECT : E_RESET);
            return;
        }
        if (events & EPOLLOUT) {
            struct req *r = c->rq;
            while (c->woff < r->len) {
                ssize_t n = send(c->fd, r->text + c->woff, r->len - c->woff, MSG_NOSIGNAL);
                if (n > 0) {
                    c->woff += (size_t)n;
                    continue;
                }
                if (n < 0 && errno == EAGAIN)
                    return;
                conn_error(c, c->woff == 0 && c->served == 0 && errno == ECONNREFUSED ? E_CONNECT
                                                                                      : E_RESET);
                return;
            }
            c->state = C_READING;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = c->idx};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        if (!(events & (EPOLLIN | EPOLLRDHUP)))
            return;
    }
    /* reading */
    char buf[16384];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            c->got += (uint64_t)n;
            size_t used = http_parser_execute(&c->p, &psettings, buf, (size_t)n);
            if (c->done) {
                on_response_done(c, false);
                return;
            }
            if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK || used != (size_t)n) {
                req_finish(c, O_ERROR, 0, E_RESET);
                conn_close(c);
                return;
            }
            continue;
        }
        if (n == 0) {
            http_parser_execute(&c->p, &psettings, NULL, 0);
            if (c->done) {
                on_response_done(c, true);
                return;
            }
            conn_error(c, E_RESET);
            return;
        }
        if (errno == EAGAIN)
            return;
        conn_error(c, E_RESET);
        return;
    }
}

static void check_timeouts(uint64_t now)
{
    for (unsigned i = 0; i < conns_used; i++) {
        struct conn *c = conns[i];
        if (!c || c->state == C_IDLE || !c->rq || now < c->deadline)
            continue;
        req_finish(c, O_ERROR, 0, E_TIMEOUT);
        conn_close(c);
    }
}

/* ---- setup: register the users through the real API (blocking) ---- */

struct sresp {
    int status;
    char session[COOKIE_CAP], csrf[COOKIE_CAP];
    struct conn c; /* reuse the parser plumbing */
};

static int s_on_header_value(http_parser *p, const char *at, size_t len)
{
    return on_header_value(p, at, len);
}

static void s_take(struct sresp *sr)
{
    struct conn *c = &sr->c;
    if (strcasecmp(c->hname, "set-cookie") != 0)
        return;
    c->hval[c->hval_len] = 0;
    const char *v = c->hval;
    char *dst = NULL;
    if (!strncmp(v, "gh_session=", 11)) {
        dst = sr->session;
        v += 11;
    } else if (!strncmp(v, "gh_csrf=", 8)) {
        dst = sr->csrf;
        v += 8;
    }
    size_t n = strcspn(v, ";");
    if (dst && n < COOKIE_CAP) {
        memcpy(dst, v, n);
        dst[n] = 0;
    }
}

static struct sresp *s_cur;
static int s_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->hdr_value) {
        s_take(s_cur);
        c->hdr_value = false;
        c->hname_len = 0;
        c->hval_len = 0;
    }
    return on_header_field(p, at, len);
}
static int s_on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->hdr_value)
        s_take(s_cur);
    c->status = (int)p->status_code;
    return 0;
}

/* One blocking request from source address src; the answer's status and cookies. */
static int setup_request(uint32_t src, const char *path, const char *body, struct sresp *sr)
{
    memset(sr, 0, sizeof *sr);
    int fd = socket(setup_target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    if (setup_target.ss_family == AF_INET && src) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&setup_target, setup_target_len) != 0) {
        close(fd);
        return -1;
    }
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    build(&b, false, "POST", path, NULL, false, NULL, body);
    ssize_t w = send(fd, b.data, b.len, MSG_NOSIGNAL);
    gh_buf_dispose(&b);
    if (w < 0) {
        close(fd);
        return -1;
    }
    static http_parser_settings ss;
    ss.on_header_field = s_on_header_field;
    ss.on_header_value = s_on_header_value;
    ss.on_headers_complete = s_on_headers_complete;
    ss.on_message_complete = on_message_complete;
    s_cur = sr;
    struct group dummy = {.script = S_L7FLOOD};
    sr->c.g = &dummy;
    http_parser_init(&sr->c.p, HTTP_RESPONSE);
    sr->c.p.data = &sr->c;
    char buf[8192];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            http_parser_execute(&sr->c.p, &ss, NULL, 0);
            break;
        }
        http_parser_execute(&sr->c.p, &ss, buf, (size_t)n);
        if (sr->c.done)
            break;
    }
    close(fd);
    sr->status = sr->c.done ? sr->c.status : -1;
    return sr->status;
}

static long outbox_off;

/* The newest code sent to phone for purpose, waiting up to 5 s. */
static bool outbox_code(const char *phone, const char *purpose, char *code, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sms-outbox.jsonl", data_dir);
    char want_to[64], want_p[48];
    snprintf(want_to, sizeof want_to, "\"to\":\"%s\"", phone);
    snprintf(want_p, sizeof want_p, "\"purpose\":\"%s\"", purpose);
    for (int tries = 0; tries < 250; tries++) {
        FILE *f = fopen(path, "r");
        if (f) {
            char line[1024];
            bool found = false;
            if (fseek(f, outbox_off, SEEK_SET) != 0)
                rewind(f);
            while (fgets(line, sizeof line, f)) {
                if (!strstr(line, want_to) || !strstr(line, want_p))
                    continue;
                const char *p = strstr(line, "\"code\":\"");
                if (!p)
                    continue;
                p += 8;
                size_t n = strspn(p, "0123456789");
                if (n && n < cap) {
                    memcpy(code, p, n);
                    code[n] = 0;
                    found = true;
                }
            }
            fclose(f);
            if (found)
                return true;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static bool setup_user(struct user *u)
{
    char body[256], code[16];
    struct sresp sr;
    for (int attempt = 0; attempt < 3; attempt++) {
        snprintf(body, sizeof body, "{\"phone\":\"%s\",\"purpose\":\"register\"}", u->phone);
        int st = setup_request(u->addr, "/api/auth/sms-code", body, &sr);
        if (st == 202 && outbox_code(u->phone, "register", code, sizeof code)) {
            snprintf(body, sizeof body, "{\"phone\":\"%s\",\"code\":\"%s\",\"password\":\"%s\"}",
                     u->phone, code, u->password);
            st = setup_request(u->addr, "/api/auth/register", body, &sr);
            if (st == 201) {
                memcpy(u->session, sr.session, sizeof u->session);
                memcpy(u->csrf, sr.csrf, sizeof u->csrf);
                return u->registered = true;
            }
        }
        /* an existing account, or registration refused: try logging in */
        snprintf(body, sizeof body, "{\"phone\":\"%s\",\"password\":\"%s\"}", u->phone,
                 u->password);
        st = setup_request(u->addr, "/api/auth/login", body, &sr);
        if (st == 200) {
            memcpy(u->session, sr.session, sizeof u->session);
            memcpy(u->csrf, sr.csrf, sizeof u->csrf);
            return u->registered = true;
        }
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void setup_users(void)
{
    if (data_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sms-outbox.jsonl", data_dir);
        struct stat st;
        outbox_off = stat(path, &st) == 0 ? (long)st.st_size : 0;
    }
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        struct group *g = &sc.g[gi];
        if (g->script != S_LEGIT && g->script != S_STUFFING)
            continue;
        if (g->script == S_LEGIT && !g->nusers)
            g->nusers = 20;
        if (!g->nusers)
            continue;
        g->users = calloc(g->nusers, sizeof *g->users);
        if (!g->users)
            die("out of memory");
        uint64_t t = now_abs();
        unsigned ok = 0;
        for (unsigned i = 0; i < g->nusers; i++) {
            struct user *u = &g->users[i];
            user_phone(u->phone, sizeof u->phone, gi + 1, i);
            char d[8];
            digits(d, 6);
            snprintf(u->password, sizeof u->password, "legit-%s-%u-pass", d, i);
            /* a /24 of its own per user, inside the group's range */
            uint32_t off = (uint32_t)((i * 257u + 1u) % g->addr_size);
            u->addr = g->addr_base + off;
            if (!data_dir)
                die("group %s needs accounts: give --data (the server's data dir)", g->name);
            if (setup_user(u))
                ok++;
            if (now_abs() - t > 120 * NS)
                die("setup of %s took more than 120 s (%u of %u users ready)", g->name, ok,
                    g->nusers);
        }
        if (!quiet)
            fprintf(stderr, "gh_load: %s: %u of %u accounts ready in %.1f s\n", g->name, ok,
                    g->nusers, (double)(now_abs() - t) / NS);
        if (ok < g->nusers)
            die("group %s: only %u of %u accounts could be registered or logged in", g->name, ok,
                g->nusers);
        if (g->script == S_STUFFING) /* victims keep no session */
            for (unsigned i = 0; i < g->nusers; i++)
                g->users[i].session[0] = 0;
    }
}

/* ---- output ---- */

static void write_stats_row(FILE *f, const struct group *g, const char *action, const char *phase,
                            const struct stats *s)
{
    fprintf(f, "%s%s%s,%s,%s,%.3f,%llu,%llu,%llu,%llu,%llu,%llu", g->name, action ? "/" : "",
            action ? action : "", action ? "action" : script_names[g->script], phase, g->rate,
            (unsigned long long)s->sent, (unsigned long long)s->ok, (unsigned long long)s->refused,
            (unsigned long long)s->failed, (unsigned long long)s->closed,
            (unsigned long long)s->errors);
    for (unsigned i = 0; i <= N_STATUS; i++)
        fprintf(f, ",%llu", (unsigned long long)s->status[i]);
    for (unsigned i = 0; i < E_COUNT; i++)
        fprintf(f, ",%llu", (unsigned long long)s->err[i]);
    fprintf(f, ",%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", hist_pct_ms(&s->lat, 50),
            hist_pct_ms(&s->lat, 90), hist_pct_ms(&s->lat, 99), (double)s->lat.max_us / 1000.0,
            hist_pct_ms(&s->lat_ok, 99), (double)s->lat_ok.max_us / 1000.0);
}

static void write_outputs(const char *dir, double run_s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fprintf(f, "group,script,phase,rate,sent,ok,refused,failed,closed,errors");
    for (unsigned i = 0; i < N_STATUS; i++)
        fprintf(f, ",s%d", tracked_status[i]);
    fprintf(f, ",s_other");
    for (unsigned i = 0; i < E_COUNT; i++)
        fprintf(f, ",e_%s", err_names[i]);
    fprintf(f, ",p50_ms,p90_ms,p99_ms,max_ms,ok_p99_ms,ok_max_ms\n");
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        const struct group *g = &sc.g[gi];
        if (g->internal)
            continue;
        write_stats_row(f, g, NULL, "all", &g->all);
        write_stats_row(f, g, NULL, "calm", &g->calm);
        write_stats_row(f, g, NULL, "attack", &g->attack);
        static const char *const an[] = {"login", "me", "models", "chat"};
        static const char *const ph[] = {"all", "calm", "attack"};
        if (g->script == S_LEGIT)
            for (unsigned a = 0; a < A_COUNT_LEGIT; a++)
                for (unsigned i = 0; i < 3; i++)
                    write_stats_row(f, g, an[a], ph[i], &g->act[a][i]);
    }
    fclose(f);

    snprintf(path, sizeof path, "%s/timeseries.csv", dir);
    f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fprintf(f, "t,group,sent,ok,refused,failed,closed,errors,p50_ms,p99_ms,level,script\n");
    unsigned secs = (unsigned)run_s + ((double)(unsigned)run_s < run_s);
    if (secs > MAX_SECONDS)
        secs = MAX_SECONDS;
    for (unsigned s = 0; s < secs; s++)
        for (unsigned gi = 0; gi < sc.ng; gi++) {
            const struct group *g = &sc.g[gi];
            if (g->internal)
                continue;
            const struct second *x = &g->sec[s];
            fprintf(f, "%u,%s,%u,%u,%u,%u,%u,%u,%.3f,%.3f,%d,%s\n", s, g->name, x->sent, x->ok,
                    x->refused, x->failed, x->closed, x->errors,
                    x->lat ? hist_pct_ms(x->lat, 50) : 0.0, x->lat ? hist_pct_ms(x->lat, 99) : 0.0,
                    level_at[s], script_names[g->script]);
        }
    fclose(f);

    snprintf(path, sizeof path, "%s/run.txt", dir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "title=%s\nduration=%.3f\nattack_start=%.3f\nattack_stop=%.3f\n"
                "t0_epoch_ms=%llu\n",
                sc.title, run_s, attack_start_s, attack_stop_s, (unsigned long long)t0_epoch_ms);
        fclose(f);
    }
}

static void print_summary(void)
{
    printf("%-10s %-9s %8s %8s %8s %8s %7s %7s %9s %9s %9s %9s\n", "group", "phase", "sent", "ok",
           "refused", "failed", "closed", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms");
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        const struct group *g = &sc.g[gi];
        if (g->internal)
            continue;
        const struct stats *ss[3] = {&g->all, &g->calm, &g->attack};
        const char *names[3] = {"all", "calm", "attack"};
        for (int i = 0; i < 3; i++) {
            const struct stats *s = ss[i];
            if (!s->sent && i)
                continue;
            printf("%-10s %-9s %8llu %8llu %8llu %8llu %7llu %7llu %9.2f %9.2f %9.2f %9.2f\n",
                   g->name, names[i], (unsigned long long)s->sent, (unsigned long long)s->ok,
                   (unsigned long long)s->refused, (unsigned long long)s->failed,
                   (unsigned long long)s->closed, (unsigned long long)s->errors,
                   hist_pct_ms(&s->lat, 50), hist_pct_ms(&s->lat, 90), hist_pct_ms(&s->lat, 99),
                   (double)s->lat.max_us / 1000.0);
        }
    }
}

/* ---- main ---- */

static void parse_target(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
    if (gh_parse_hostport(s, out) != 0)
        die("bad address '%s' (want 127.0.0.1:PORT)", s);
    if (out->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)out;
        if (!loopback4(ntohl(a->sin_addr.s_addr)))
            die("refusing target %s: loopback (127.0.0.0/8 or ::1) only", s);
        *len = sizeof *a;
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)out;
        if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            die("refusing target %s: loopback (127.0.0.0/8 or ::1) only", s);
        *len = sizeof *a;
    }
}

static void usage(void)
{
    fputs("usage: gh_load --scenario FILE --target 127.0.0.1:PORT --out DIR [--data DIR]\n"
          "               [--setup-target ADDR] [--admin ADDR --admin-token-file FILE]\n"
          "               [--duration S] [--max-requests N] [--scale X] [--users N] [--seed N]\n"
          "               [--quiet] | --check-phones\n",
          stderr);
    exit(2);
}

static void check_phones(void)
{
    gh_phone_init();
    for (unsigned r = 0; r < 8; r++) {
        unsigned ok = 0;
        char p[32], first[32] = "";
        for (int i = 0; i < 200; i++) {
            random_phone(p, sizeof p, r);
            struct gh_phone ph;
            const char *why = NULL;
            if (gh_phone_parse(p, strlen(p), false, &ph, &why) == 0 &&
                (ph.type == GH_PHONE_MOBILE || ph.type == GH_PHONE_FIXED_LINE_OR_MOBILE))
                ok++;
            else if (!first[0])
                snprintf(first, sizeof first, "%s", p);
        }
        printf("region %u: %u/200 valid mobiles%s%s\n", r, ok, first[0] ? ", e.g. bad " : "",
               first);
    }
}

int main(int argc, char **argv)
{
    const char *scen = NULL, *tgt = NULL, *out = NULL, *setup = NULL, *admin = NULL,
               *token_file = NULL;
    double duration = -1, scale = 1, users = -1;
    uint64_t max_req = 0, seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--check-phones")) {
            check_phones();
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--scenario"))
            scen = v;
        else if (!strcmp(a, "--target"))
            tgt = v;
        else if (!strcmp(a, "--setup-target"))
            setup = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--data"))
            data_dir = v;
        else if (!strcmp(a, "--admin"))
            admin = v;
        else if (!strcmp(a, "--admin-token-file"))
            token_file = v;
        else if (!strcmp(a, "--duration"))
            duration = parse_num("--duration", 0, v);
        else if (!strcmp(a, "--users"))
            users = parse_num("--users", 0, v);
        else if (!strcmp(a, "--scale"))
            scale = parse_num("--scale", 0, v);
        else if (!strcmp(a, "--max-requests")) {
            if (gh_parse_uint(v, UINT64_MAX, &max_req) != 0)
                usage();
        } else if (!strcmp(a, "--seed")) {
            if (gh_parse_uint(v, UINT64_MAX, &seed) != 0)
                usage();
        } else
            usage();
    }
    if (!scen || !tgt || !out)
        usage();
    parse_target(tgt, &target, &target_len);
    if (setup)
        parse_target(setup, &setup_target, &setup_target_len);
    else {
        setup_target = target;
        setup_target_len = target_len;
    }
    if (target.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&target;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(host_hdr, sizeof host_hdr, "%s:%u", ip, ntohs(a->sin_port));
    } else
        snprintf(host_hdr, sizeof host_hdr, "[::1]:%u",
                 ntohs(((const struct sockaddr_in6 *)&target)->sin6_port));
    rng_state ^= seed ? seed * 0x9e3779b97f4a7c15ull : (uint64_t)getpid() << 20 ^ now_abs();
    if (!rng_state)
        rng_state = 1;

    parse_scenario(scen);
    if (duration > 0) {
        /* the whole timeline shrinks or stretches with the duration */
        double k = duration / sc.duration;
        for (unsigned gi = 0; gi < sc.ng; gi++) {
            sc.g[gi].start *= k;
            if (sc.g[gi].stop >= 0)
                sc.g[gi].stop *= k;
        }
        if (sc.attack_start >= 0)
            sc.attack_start *= k;
        if (sc.attack_stop >= 0)
            sc.attack_stop *= k;
        sc.duration = duration;
    }
    if (max_req)
        sc.max_requests = max_req;
    if (sc.duration <= 0 || sc.duration > MAX_DURATION)
        die("duration %.1f s out of range (0, %d]", sc.duration, MAX_DURATION);
    if (!sc.ng)
        die("%s names no client group", scen);
    if (sc.timeout <= 0)
        sc.timeout = 10;
    if (sc.drain > 10)
        sc.drain = 10;

    /* the level poller */
    if (admin && token_file) {
        FILE *tf = fopen(token_file, "r");
        if (!tf)
            die("cannot read %s: %s", token_file, strerror(errno));
        if (!fgets(admin_token, sizeof admin_token, tf))
            admin_token[0] = 0;
        fclose(tf);
        admin_token[strcspn(admin_token, "\r\n ")] = 0;
    }
    struct sockaddr_storage admin_addr;
    socklen_t admin_len = 0;
    if (admin)
        parse_target(admin, &admin_addr, &admin_len);

    /* attack window, scaling, sanity */
    double a0 = 1e9, a1 = 0;
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        struct group *g = &sc.g[gi];
        if (g->stop < 0 || g->stop > sc.duration)
            g->stop = sc.duration;
        if (g->start > g->stop)
            g->start = g->stop;
        g->is_attack = g->script != S_LEGIT;
        if (users >= 1 && g->script == S_LEGIT)
            g->nusers = (unsigned)users;
        if (g->is_attack) {
            g->rate *= scale;
            if (g->start < a0)
                a0 = g->start;
            if (g->stop > a1)
                a1 = g->stop;
        }
        if (g->script == S_LEGIT && target.ss_family != AF_INET)
            die("source ranges need an IPv4 target");
        if (g->conns_max < 1)
            g->conns_max = 1;
        g->dst = &target;
        g->dst_len = target_len;
    }
    attack_start_s = sc.attack_start >= 0 ? sc.attack_start : (a1 > 0 ? a0 : sc.duration);
    attack_stop_s = sc.attack_stop >= 0 ? sc.attack_stop : (a1 > 0 ? a1 : sc.duration);
    attack_start_ns = (uint64_t)(attack_start_s * (double)NS);
    attack_stop_ns = (uint64_t)(attack_stop_s * (double)NS);
    if (admin_len) {
        struct group *g = &sc.g[sc.ng++];
        group_defaults(g, "level");
        g->script = S_LEVEL;
        g->internal = true;
        g->rate = 1;
        g->stop = sc.duration;
        g->conns_max = 2;
        g->addr_base = 0x7f000001u;
        g->addr_size = 1;
        g->dst = &admin_addr;
        g->dst_len = admin_len;
    }
    for (unsigned gi = 0; gi < MAX_SECONDS; gi++)
        level_at[gi] = -1;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    conns_cap = 0;
    for (unsigned gi = 0; gi < sc.ng; gi++)
        conns_cap += sc.g[gi].conns_max + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && conns_cap + 64 > rl.rlim_cur)
        die("the groups' connection caps (%u) exceed the file limit (%llu)", conns_cap,
            (unsigned long long)rl.rlim_cur);
    conns = calloc(conns_cap, sizeof *conns);
    free_slots = calloc(conns_cap, sizeof *free_slots);
    if (!conns || !free_slots)
        die("out of memory");
    for (unsigned gi = 0; gi < sc.ng; gi++)
        if (!(sc.g[gi].sec = calloc(MAX_SECONDS, sizeof(struct second))))
            die("out of memory");

    psettings.on_header_field = on_header_field_wrap;
    psettings.on_header_value = on_header_value;
    psettings.on_headers_complete = on_headers_complete;
    psettings.on_body = on_body;
    psettings.on_message_complete = on_message_complete;

    setup_users();

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    if (!quiet)
        fprintf(stderr, "gh_load: %s: %.0f s, attack %.0f-%.0f s, %u groups\n",
                sc.title[0] ? sc.title : scen, sc.duration, attack_start_s, attack_stop_s, sc.ng);

    t0_abs = now_abs();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    t0_epoch_ms = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
    {
        /* tells bench/attack.sh that the run has begun (slowhttptest starts from it) */
        char path[4096];
        snprintf(path, sizeof path, "%s/t0", out);
        FILE *tf = fopen(path, "w");
        if (tf) {
            fprintf(tf, "%llu\n", (unsigned long long)t0_epoch_ms);
            fclose(tf);
        }
    }
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        struct group *g = &sc.g[gi];
        g->next_due = (uint64_t)(g->start * (double)NS);
        if (g->is_attack && g->next_due < attack_start_ns)
            g->next_due = attack_start_ns;
    }
    uint64_t end = (uint64_t)(sc.duration * (double)NS);
    uint64_t hard_end = end + (uint64_t)(sc.drain * (double)NS);
    uint64_t last_timeout_scan = 0;
    bool generating = true;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = now_rel();
        if (generating && (now >= end || total_arrivals >= sc.max_requests))
            generating = false;
        if (!generating) {
            bool busy = false;
            for (unsigned gi = 0; gi < sc.ng && !busy; gi++)
                busy = sc.g[gi].backlog_len > 0;
            for (unsigned i = 0; i < conns_used && !busy; i++)
                busy = conns[i] && conns[i]->state != C_IDLE && conns[i]->rq;
            if (!busy || now >= hard_end)
                break;
        }
        uint64_t wake = now + 20 * MS;
        if (generating) {
            for (unsigned gi = 0; gi < sc.ng; gi++) {
                struct group *g = &sc.g[gi];
                if (g->rate <= 0)
                    continue;
                uint64_t stop = (uint64_t)(g->stop * (double)NS);
                uint64_t interval = (uint64_t)((double)NS / g->rate);
                if (!interval)
                    interval = 1;
                while (g->next_due <= now && g->next_due < stop &&
                       total_arrivals < sc.max_requests) {
                    dispatch(g, make_request(g, g->next_due));
                    g->arrivals++;
                    if (!g->internal)
                        total_arrivals++;
                    g->next_due += interval;
                }
                if (g->next_due < stop && g->next_due < wake)
                    wake = g->next_due;
            }
        }
        if (now - last_timeout_scan > 50 * MS) {
            check_timeouts(now);
            last_timeout_scan = now;
        }
        now = now_rel();
        int wait_ms = wake > now ? (int)((wake - now + MS - 1) / MS) : 0;
        int n = epoll_wait(ep, evs, 256, wait_ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = conns[evs[i].data.u32];
            if (!c)
                continue;
            handle_io(c, evs[i].events);
        }
    }
    /* whatever is left did not finish in time */
    for (unsigned i = 0; i < conns_used; i++) {
        struct conn *c = conns[i];
        if (!c)
            continue;
        if (c->rq && c->state != C_IDLE)
            req_finish(c, O_ERROR, 0, E_UNFINISHED);
        conn_close(c);
    }
    for (unsigned gi = 0; gi < sc.ng; gi++) {
        struct group *g = &sc.g[gi];
        while (g->bl_head) {
            struct req *r = g->bl_head;
            g->bl_head = r->next;
            count_sent(g, r);
            struct conn tmp = {.g = g, .rq = r};
            req_finish(&tmp, O_ERROR, 0, E_UNFINISHED);
        }
    }
    write_outputs(out, sc.duration);
    if (!quiet)
        print_summary();
    return 0;
}
