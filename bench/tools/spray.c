/* This program implements two load clients of the shield's benchmarks
 * (bench/shield.sh).
 *
 *   spray spray -t PORT [-n COUNT] [-c CONCURRENCY] [-d SECONDS] [-u PATH] [-o FIRST]
 *               [-a ADDRS] [-T MS] [-m MS]
 *   spray probe -t PORT [-u PATH] [-k COOKIE] [-r PER_S] [-d SECONDS] [-s SRC] [-N] [-S MS]
 *
 * spray: COUNT requests (default 1,000,000), each from its own source
 * address of 127.0.0.0/8 bound before connect (127.A.B.C with C in
 * 1..254, starting at index FIRST), each on a new connection: connect,
 * send one POST PATH (default /api/auth/sms-code) with a JSON body
 * {"phone":"+86138…","purpose":"register"} and Connection: close, read the
 * status line, close with a reset (SO_LINGER 0: no TIME_WAIT on either
 * side). At most CONCURRENCY at once (default 256); stops after SECONDS
 * (default 120) whatever is left. Prints "sent N", "status S count" lines,
 * "errors N", "timeouts N", "elapsed S" and "rate R".
 *
 * -a ADDRS: the sources cycle through ADDRS addresses (from FIRST) instead
 * of one per request: a botnet of that size that keeps sending (default 0:
 * each request its own address). -T MS: a connection with no answer (no
 * status line) MS milliseconds after its connect started is closed and
 * counted in "timeouts", not "errors" (SYNs a firewall drops; default 0:
 * wait until SECONDS). -m MS: MS milliseconds after the start, prints
 * "mark_sent N" and "mark_done N" once (what was started and finished by
 * then, so that a caller can count the attempts of a later window).
 *
 * probe: a legitimate client: PER_S requests per second (default 20) of
 * GET PATH (default /api/me) with the Cookie header COOKIE, from source
 * SRC (default 127.0.0.2), for SECONDS (or until SIGTERM); keep-alive, or
 * with -N a new connection per request. A request counts as ok when it answers 200
 * within 2 s. Prints "requests N", "ok N", "success_pct P", "p50_ms",
 * "p99_ms", "max_ms". -S MS: each request slower than MS milliseconds is
 * also told on stderr ("slow AT_MS LATENCY_MS", AT_MS since the first), to
 * find what the server was doing then.
 *
 * Only loopback targets (127.0.0.1); everything is bounded in time. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_CONC 4096

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned long num(const char *s, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > max) {
        fprintf(stderr, "spray: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

/* The source address of index i: 127.A.B.C, C in 1..254, from 127.1.0.1. */
static uint32_t src_addr(uint64_t i)
{
    uint64_t a = i / 254, c = i % 254 + 1;
    uint32_t hi = (uint32_t)(1 + a / 256), mid = (uint32_t)(a % 256);
    return (127u << 24) | ((hi & 255u) << 16) | (mid << 8) | (uint32_t)c;
}

struct slot {
    int fd;
    bool sent;
    uint64_t idx;
    uint64_t t_start; /* connect started, now_us() */
    char buf[64];
    size_t got;
};

static int open_conn(uint32_t src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    struct sockaddr_in da = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&da, sizeof da) && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void close_rst(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

struct spray_opts {
    uint16_t port;
    uint64_t count, first, addrs;
    unsigned conc, secs, timeout_ms, mark_ms;
    const char *path;
};

static int spray_main(const struct spray_opts *o)
{
    uint16_t port = o->port;
    uint64_t count = o->count, first = o->first;
    unsigned conc = o->conc, secs = o->secs;
    const char *path = o->path;
    uint64_t timeouts = 0, tmo_us = (uint64_t)o->timeout_ms * 1000u;
    bool marked = !o->mark_ms;
    int wait_ms = o->timeout_ms && o->timeout_ms < 100 ? (int)o->timeout_ms : 100;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    static struct slot slots[MAX_CONC];
    uint64_t next = 0, done = 0, errors = 0, status[6] = {0};
    unsigned active = 0;
    uint64_t t0 = now_us(), end = t0 + (uint64_t)secs * 1000000u;
    for (unsigned i = 0; i < conc; i++)
        slots[i].fd = -1;
    char req[512];
    while ((done < count || active) && now_us() < end) {
        /* fill free slots */
        for (unsigned i = 0; i < conc && next < count; i++) {
            if (slots[i].fd >= 0)
                continue;
            uint64_t idx = first + (o->addrs ? next % o->addrs : next);
            next++;
            int fd = open_conn(src_addr(idx), port);
            if (fd < 0) {
                errors++;
                done++;
                continue;
            }
            slots[i] = (struct slot){.fd = fd, .idx = idx, .t_start = now_us()};
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            active++;
        }
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, wait_ms);
        for (int k = 0; k < n; k++) {
            struct slot *s = &slots[evs[k].data.u32];
            if (s->fd < 0)
                continue;
            bool fin = false, err = false;
            if (!s->sent && (evs[k].events & EPOLLOUT)) {
                char body[96];
                int bl = snprintf(body, sizeof body,
                                  "{\"phone\":\"+86138%08llu\",\"purpose\":\"register\"}",
                                  (unsigned long long)(s->idx % 100000000ull));
                int rl = snprintf(req, sizeof req,
                                  "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                  "application/json\r\nContent-Length: %d\r\nConnection: "
                                  "close\r\n\r\n%s",
                                  path, bl, body);
                ssize_t w = send(s->fd, req, (size_t)rl, MSG_NOSIGNAL);
                if (w != rl) {
                    err = true;
                } else {
                    s->sent = true;
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            }
            if (!err && s->sent && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t r = recv(s->fd, s->buf + s->got, sizeof s->buf - 1 - s->got, 0);
                if (r > 0)
                    s->got += (size_t)r;
                if (s->got >= 12) {
                    s->buf[s->got] = 0;
                    int st = (int)strtol(s->buf + 9, NULL, 10); /* "HTTP/1.1 429" */
                    status[st >= 100 && st < 600 ? st / 100 : 0]++;
                    if (st == 429)
                        status[0]++; /* counted apart below */
                    fin = true;
                } else if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    err = true;
                }
            } else if (!s->sent && (evs[k].events & (EPOLLHUP | EPOLLERR))) {
                err = true;
            }
            if (fin || err) {
                if (err)
                    errors++;
                close_rst(s->fd);
                s->fd = -1;
                active--;
                done++;
            }
        }
        uint64_t t = now_us();
        if (tmo_us) /* no answer in time: given up, like a client would */
            for (unsigned i = 0; i < conc; i++) {
                if (slots[i].fd < 0 || t - slots[i].t_start < tmo_us)
                    continue;
                close_rst(slots[i].fd);
                slots[i].fd = -1;
                active--;
                done++;
                timeouts++;
            }
        if (!marked && t - t0 >= (uint64_t)o->mark_ms * 1000u) {
            marked = true;
            printf("mark_sent %llu\nmark_done %llu\n", (unsigned long long)next,
                   (unsigned long long)done);
        }
    }
    double el = (double)(now_us() - t0) / 1e6;
    printf("sent %llu\n", (unsigned long long)next);
    printf("done %llu\n", (unsigned long long)done);
    for (int c = 1; c < 6; c++)
        printf("status %dxx %llu\n", c, (unsigned long long)status[c]);
    printf("status 429 %llu\n", (unsigned long long)status[0]);
    printf("errors %llu\n", (unsigned long long)errors);
    printf("timeouts %llu\n", (unsigned long long)timeouts);
    printf("elapsed %.2f\n", el);
    printf("rate %.0f\n", el > 0 ? (double)done / el : 0);
    for (unsigned i = 0; i < conc; i++)
        if (slots[i].fd >= 0)
            close_rst(slots[i].fd);
    return 0;
}

/* ---- probe ---- */

static volatile sig_atomic_t probe_stop; /* SIGTERM: print what was measured and exit */

static void on_term(int sig)
{
    (void)sig;
    probe_stop = 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_blocking(uint32_t src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
    struct sockaddr_in da = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        connect(fd, (struct sockaddr *)&da, sizeof da)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request on *fd (opened when < 0); true on 200. The response is read
 * whole (Content-Length framing). */
static bool probe_once(int *fd, uint32_t src, uint16_t port, const char *path, const char *cookie,
                       bool newconn)
{
    if (*fd < 0)
        *fd = connect_blocking(src, port);
    if (*fd < 0)
        return false;
    char req[1024];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s%s\r\n", path,
                      cookie && *cookie ? "Cookie: " : "", cookie ? cookie : "",
                      cookie && *cookie ? "\r\n" : "", newconn ? "Connection: close\r\n" : "");
    bool ok = false;
    if (send(*fd, req, (size_t)rl, MSG_NOSIGNAL) == rl) {
        char buf[16384];
        size_t got = 0;
        long clen = -1;
        size_t hdr_end = 0;
        for (;;) {
            ssize_t r = recv(*fd, buf + got, sizeof buf - 1 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = 0;
            if (!hdr_end) {
                char *e = strstr(buf, "\r\n\r\n");
                if (e) {
                    hdr_end = (size_t)(e - buf) + 4;
                    char *cl = strcasestr(buf, "\r\ncontent-length:");
                    clen = cl && cl < e ? strtol(cl + 17, NULL, 10) : 0;
                }
            }
            if (hdr_end && got >= hdr_end + (size_t)clen) {
                ok = got >= 12 && !strncmp(buf + 9, "200", 3);
                break;
            }
            if (got >= sizeof buf - 1)
                break;
        }
    }
    if (!ok || newconn) {
        close(*fd);
        *fd = -1;
    }
    return ok;
}

static int probe_main(uint16_t port, const char *path, const char *cookie, unsigned rate,
                      unsigned secs, uint32_t src, bool newconn, unsigned slow_ms)
{
    uint64_t n = (uint64_t)rate * secs, ok = 0, i = 0;
    uint64_t *lat = calloc(n ? n : 1, sizeof *lat);
    if (!lat)
        return 1;
    uint64_t t0 = now_us(), step = 1000000u / (rate ? rate : 1);
    int fd = -1;
    signal(SIGTERM, on_term);
    for (; i < n && !probe_stop; i++) {
        uint64_t at = t0 + i * step, t = now_us();
        if (t < at)
            usleep((useconds_t)(at - t));
        if (probe_stop)
            break;
        uint64_t s = now_us();
        bool good = probe_once(&fd, src, port, path, cookie, newconn);
        lat[i] = now_us() - s;
        ok += good;
        if (slow_ms && lat[i] > (uint64_t)slow_ms * 1000)
            fprintf(stderr, "slow %.1f %.3f\n", (double)(s - t0) / 1000, (double)lat[i] / 1000);
        if (now_us() > t0 + (uint64_t)(secs + 5) * 1000000u) {
            i++;
            break;
        }
    }
    if (fd >= 0)
        close(fd);
    qsort(lat, i, sizeof *lat, cmp_u64);
    printf("requests %llu\n", (unsigned long long)i);
    printf("ok %llu\n", (unsigned long long)ok);
    printf("success_pct %.3f\n", i ? 100.0 * (double)ok / (double)i : 0);
    printf("p50_ms %.3f\n", i ? (double)lat[i / 2] / 1000 : 0);
    printf("p99_ms %.3f\n", i ? (double)lat[(i * 99) / 100] / 1000 : 0);
    printf("max_ms %.3f\n", i ? (double)lat[i - 1] / 1000 : 0);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "spray") && strcmp(argv[1], "probe"))) {
        fprintf(stderr, "usage: spray spray|probe -t PORT [options] (see the source)\n");
        return 2;
    }
    bool spray = !strcmp(argv[1], "spray");
    uint16_t port = 0;
    uint64_t count = 1000000, first = 0, addrs = 0;
    unsigned conc = 256, secs = spray ? 120 : 30, rate = 20, timeout_ms = 0, mark_ms = 0;
    unsigned slow_ms = 0;
    const char *path = spray ? "/api/auth/sms-code" : "/api/me", *cookie = NULL;
    uint32_t src = 0x7f000002;
    bool newconn = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-N")) {
            newconn = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "spray: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-t"))
            port = (uint16_t)num(v, 65535);
        else if (!strcmp(a, "-n"))
            count = num(v, 100000000);
        else if (!strcmp(a, "-c"))
            conc = (unsigned)num(v, MAX_CONC);
        else if (!strcmp(a, "-d"))
            secs = (unsigned)num(v, 600);
        else if (!strcmp(a, "-u"))
            path = v;
        else if (!strcmp(a, "-o"))
            first = num(v, 100000000);
        else if (!strcmp(a, "-a"))
            addrs = num(v, 100000000);
        else if (!strcmp(a, "-T"))
            timeout_ms = (unsigned)num(v, 600000);
        else if (!strcmp(a, "-m"))
            mark_ms = (unsigned)num(v, 600000);
        else if (!strcmp(a, "-k"))
            cookie = v;
        else if (!strcmp(a, "-S"))
            slow_ms = (unsigned)num(v, 600000);
        else if (!strcmp(a, "-r"))
            rate = (unsigned)num(v, 100000);
        else if (!strcmp(a, "-s")) {
            struct in_addr in;
            if (inet_pton(AF_INET, v, &in) != 1 || (ntohl(in.s_addr) >> 24) != 127) {
                fprintf(stderr, "spray: -s must be a 127.0.0.0/8 address\n");
                return 2;
            }
            src = ntohl(in.s_addr);
        } else {
            fprintf(stderr, "spray: unknown option %s\n", a);
            return 2;
        }
    }
    if (!port || !conc) {
        fprintf(stderr, "spray: -t PORT is required\n");
        return 2;
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct spray_opts so = {port, count, first, addrs, conc, secs, timeout_ms, mark_ms, path};
    return spray ? spray_main(&so) : probe_main(port, path, cookie, rate, secs, src, newconn, slow_ms);
}
