/* This program opens many idle keep-alive connections to one HTTP server,
 * for measuring what an idle connection costs the server (bench/idle.sh).
 *
 *   idle_conns [-n N] [-p PARALLEL] [-s SOURCES] [-t HOLD_S] [-T SETUP_S]
 *              [-u PATH] HOST PORT
 *
 * It opens N connections (nonblocking, one epoll loop), at most PARALLEL
 * of them being set up at a time so the server's accept backlog never
 * overflows. Each is bound before connect to a source address in
 * 127.0.0.2 … 127.0.0.(1+SOURCES) (HOST must be a loopback IPv4 address),
 * so that no single source address runs out of ephemeral ports. Each sends
 * one "GET PATH HTTP/1.1" and reads the whole answer (Content-Length
 * framing), then stays open and idle. When all are idle (or the setup time
 * is over) it prints "ready M" (M = connections idle, the others failed),
 * then holds them, watching for the server closing any, until stdin closes
 * or HOLD_S seconds have passed; then it prints "open K" (connections
 * still open) and exits. A line "status" on stdin prints "open K" at once.
 * Exit status: 0 when all N were ready and still open at the end, 1
 * otherwise, 2 for usage errors. */
#include "core/config.h" /* gh_parse_uint */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define HEAD_CAP 1024 /* response head kept per connection while reading */
#define STDIN_TAG UINT32_MAX

enum cstate { C_FREE, C_CONNECTING, C_READING, C_IDLE, C_DEAD };

struct cn {
    int fd;
    uint8_t state;
    uint16_t head_len;
    bool head_done;
    uint64_t body_left;
    char *head; /* HEAD_CAP bytes while reading, freed once idle */
};

struct run {
    struct sockaddr_in dst;
    unsigned nsrc;
    const char *req;
    size_t req_len;
    int ep;
    struct cn *cs;
    unsigned n, launched, inflight, idle, failed, closed_idle;
};

static unsigned nerrors;

/* Reports the first few errors only: thousands of connections tend to fail
 * for the same reason. */
static void report(const char *what, int err)
{
    if (nerrors++ < 5)
        fprintf(stderr, "idle_conns: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void usage(void)
{
    fprintf(stderr, "usage: idle_conns [-n N] [-p PARALLEL] [-s SOURCES] [-t HOLD_S] "
                    "[-T SETUP_S] [-u PATH] HOST PORT\n");
    exit(2);
}

static unsigned arg_uint(const char *s, uint64_t max)
{
    uint64_t v;
    if (gh_parse_uint(s, max, &v) || v == 0)
        usage();
    return (unsigned)v;
}

static void raise_nofile(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    rlim_t need = (rlim_t)want;
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (!setrlimit(RLIMIT_NOFILE, &up))
            return; /* allowed to raise the hard limit (CAP_SYS_RESOURCE) */
    }
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void fail_conn(struct run *r, struct cn *c)
{
    if (c->state == C_CONNECTING || c->state == C_READING) {
        r->inflight--;
        r->failed++;
    } else if (c->state == C_IDLE) {
        r->idle--;
        r->closed_idle++;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->head);
    c->head = NULL;
    c->state = C_DEAD;
}

static int launch(struct run *r, unsigned i)
{
    struct cn *c = &r->cs[i];
    c->fd = -1;
    c->state = C_CONNECTING;
    r->inflight++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        report("socket", errno);
        fail_conn(r, c);
        return -1;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002u + i % r->nsrc); /* 127.0.0.2 + k */
    if (bind(fd, (struct sockaddr *)&src, sizeof src)) {
        report("bind", errno);
        fail_conn(r, c);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&r->dst, sizeof r->dst) && errno != EINPROGRESS) {
        report("connect", errno);
        fail_conn(r, c);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev)) {
        fail_conn(r, c);
        return -1;
    }
    return 0;
}

/* Finds Content-Length in a complete response head; 0 when absent. */
static uint64_t content_length(const char *h, size_t len)
{
    const char *p = h, *end = h + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && !strncasecmp(p, "content-length:", 15)) {
            uint64_t v = 0;
            for (const char *q = p + 15; q < eol; q++) {
                if (*q >= '0' && *q <= '9')
                    v = v * 10 + (uint64_t)(*q - '0');
            }
            return v;
        }
        p = eol + 1;
    }
    return 0;
}

static void became_idle(struct run *r, struct cn *c, unsigned i)
{
    free(c->head);
    c->head = NULL;
    c->state = C_IDLE;
    r->inflight--;
    r->idle++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = i};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(struct run *r, struct cn *c, unsigned i)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n == 0) {
            fail_conn(r, c);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fail_conn(r, c);
            return;
        }
        if (c->state == C_IDLE)
            continue; /* unexpected bytes on an idle connection: ignored */
        size_t off = 0;
        if (!c->head_done) {
            size_t take = (size_t)n;
            size_t room = (size_t)HEAD_CAP - c->head_len;
            if (take > room)
                take = room;
            memcpy(c->head + c->head_len, buf, take);
            size_t before = c->head_len;
            c->head_len = (uint16_t)(c->head_len + take);
            const char *e = memmem(c->head, c->head_len, "\r\n\r\n", 4);
            if (!e) {
                if (c->head_len == HEAD_CAP) {
                    report("response head too large", 0);
                    fail_conn(r, c);
                    return;
                }
                continue;
            }
            size_t head_end = (size_t)(e - c->head) + 4;
            if (c->head_len < 12 || strncmp(c->head + 9, "200", 3)) {
                if (nerrors++ < 5)
                    fprintf(stderr, "idle_conns: answer was not 200: %.*s\n", 40, c->head);
                fail_conn(r, c);
                return;
            }
            c->head_done = true;
            c->body_left = content_length(c->head, head_end);
            off = head_end - before;
        }
        size_t rest = (size_t)n - off;
        if (rest >= c->body_left) {
            became_idle(r, c, i);
            continue; /* drain to EAGAIN */
        }
        c->body_left -= rest;
    }
}

static void on_event(struct run *r, unsigned i, uint32_t events)
{
    struct cn *c = &r->cs[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            report("connect", err);
            fail_conn(r, c);
            return;
        }
        /* the request is tiny: the fresh socket buffer takes it whole */
        if (write(c->fd, r->req, r->req_len) != (ssize_t)r->req_len) {
            fail_conn(r, c);
            return;
        }
        c->head = malloc(HEAD_CAP);
        if (!c->head) {
            fail_conn(r, c);
            return;
        }
        c->state = C_READING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = i};
        epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    if (c->state == C_READING || c->state == C_IDLE) {
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            on_readable(r, c, i);
    }
}

int main(int argc, char **argv)
{
    unsigned n = 10000, parallel = 256, nsrc = 50, hold_s = 600, setup_s = 120;
    const char *path = "/healthz";
    int opt;
    while ((opt = getopt(argc, argv, "n:p:s:t:T:u:")) != -1) {
        switch (opt) {
        case 'n': n = arg_uint(optarg, 1000000); break;
        case 'p': parallel = arg_uint(optarg, 100000); break;
        case 's': nsrc = arg_uint(optarg, 250); break;
        case 't': hold_s = arg_uint(optarg, 86400); break;
        case 'T': setup_s = arg_uint(optarg, 86400); break;
        case 'u': path = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 2)
        usage();
    struct run r = {.n = n, .nsrc = nsrc};
    r.dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[optind], &r.dst.sin_addr) != 1 ||
        (ntohl(r.dst.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "idle_conns: HOST must be a loopback IPv4 address\n");
        return 2;
    }
    r.dst.sin_port = htons((uint16_t)arg_uint(argv[optind + 1], 65535));
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: idle_conns\r\n\r\n",
                      path, argv[optind]);
    if (rl < 0 || (size_t)rl >= sizeof req)
        usage();
    r.req = req;
    r.req_len = (size_t)rl;
    raise_nofile(n + 64);
    r.cs = calloc(n, sizeof *r.cs);
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!r.cs || r.ep < 0) {
        fprintf(stderr, "idle_conns: out of memory\n");
        return 1;
    }

    /* setup: keep PARALLEL connections in progress until all are idle */
    struct epoll_event evs[256];
    uint64_t deadline = now_ms() + (uint64_t)setup_s * 1000;
    while (r.idle + r.failed + r.closed_idle < n) {
        while (r.launched < n && r.inflight < parallel)
            launch(&r, r.launched++);
        uint64_t t = now_ms();
        if (t >= deadline) {
            fprintf(stderr, "idle_conns: setup time over with %u of %u idle\n", r.idle, n);
            break;
        }
        int k = epoll_wait(r.ep, evs, 256, (int)GH_MIN(deadline - t, 1000));
        for (int j = 0; j < k; j++)
            on_event(&r, evs[j].data.u32, evs[j].events);
    }
    if (r.failed)
        fprintf(stderr, "idle_conns: %u connections failed during setup\n", r.failed);
    printf("ready %u\n", r.idle);
    fflush(stdout);

    /* hold: watch for closes by the server until stdin closes */
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    bool watch_stdin = !epoll_ctl(r.ep, EPOLL_CTL_ADD, 0, &sev);
    deadline = now_ms() + (uint64_t)hold_s * 1000;
    bool done = false;
    char line[256];
    size_t line_len = 0;
    while (!done) {
        uint64_t t = now_ms();
        if (t >= deadline)
            break;
        int k = epoll_wait(r.ep, evs, 256, (int)GH_MIN(deadline - t, 1000));
        for (int j = 0; j < k; j++) {
            if (evs[j].data.u32 != STDIN_TAG) {
                on_event(&r, evs[j].data.u32, evs[j].events);
                continue;
            }
            ssize_t got = read(0, line + line_len, sizeof line - 1 - line_len);
            if (got <= 0) {
                if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                    done = true;
                    if (watch_stdin)
                        epoll_ctl(r.ep, EPOLL_CTL_DEL, 0, NULL);
                    watch_stdin = false;
                }
                continue;
            }
            line_len += (size_t)got;
            char *nl;
            while ((nl = memchr(line, '\n', line_len))) {
                if (!strncmp(line, "status", 6)) {
                    printf("open %u\n", r.idle);
                    fflush(stdout);
                }
                size_t used = (size_t)(nl - line) + 1;
                memmove(line, nl + 1, line_len - used);
                line_len -= used;
            }
            if (line_len == sizeof line - 1)
                line_len = 0;
        }
    }
    if (r.closed_idle)
        fprintf(stderr, "idle_conns: the server closed %u idle connections\n", r.closed_idle);
    printf("open %u\n", r.idle);
    fflush(stdout);
    int rc = r.idle == n ? 0 : 1;
    for (unsigned i = 0; i < n; i++) {
        if (r.cs[i].fd >= 0 && r.cs[i].state != C_FREE)
            close(r.cs[i].fd);
        free(r.cs[i].head);
    }
    free(r.cs);
    close(r.ep);
    return rc;
}
