/* Unit tests of the penalty box's listening-socket filter
 * (shield/sockban.h), two ways:
 *  - the built program run by a small classic-BPF interpreter here, on
 *    made-up segments: which SYNs it drops (IPv4 and IPv6 prefixes, words
 *    cut by a mask, a /0), that nothing but a bare SYN is ever dropped,
 *    that a list too long for one program keeps the broadest bans, and
 *    that every jump lands inside the program;
 *  - the kernel itself: the program attached to a real listening socket
 *    on loopback, a banned source's connect gets no SYN-ACK while another
 *    connects. Skipped (said) where the kernel refuses this process a
 *    socket filter (recent kernels want CAP_NET_ADMIN for a TCP socket). */
#include "test_util.h"

#include "shield/sockban.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>

static struct gh_sockban_prog prog;

/* ---- a classic BPF interpreter for what the builder emits ---- */

struct seg {
    uint8_t flags;   /* TCP flags */
    uint16_t proto;  /* 0x0800 or 0x86dd */
    uint8_t net[40]; /* the IP header: only the source address matters */
};

static uint32_t load(const struct seg *s, uint32_t k, unsigned size, bool *ok)
{
    if (k == (uint32_t)SKF_AD_OFF + SKF_AD_PROTOCOL)
        return s->proto;
    const uint8_t *b;
    uint32_t off;
    if (k >= (uint32_t)SKF_NET_OFF && k < (uint32_t)SKF_NET_OFF + sizeof s->net) {
        b = s->net;
        off = k - (uint32_t)SKF_NET_OFF;
        if (off + size > sizeof s->net) {
            *ok = false;
            return 0;
        }
    } else if (k == 13 && size == 1) {
        return s->flags;
    } else {
        *ok = false; /* the builder reads nothing else */
        return 0;
    }
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v = v << 8 | b[off + i];
    return v;
}

/* Runs p on s: what the filter returns (0 drops). Fails the test on an
 * instruction the builder should not emit or a jump out of the program. */
static uint32_t run(const struct gh_sockban_prog *p, const struct seg *s)
{
    uint32_t a = 0;
    for (unsigned pc = 0; pc < p->len;) {
        const struct sock_filter *f = &p->insns[pc];
        bool ok = true;
        switch (f->code) {
        case BPF_LD | BPF_B | BPF_ABS:
            a = load(s, f->k, 1, &ok);
            pc++;
            break;
        case BPF_LD | BPF_H | BPF_ABS:
            a = load(s, f->k, 2, &ok);
            pc++;
            break;
        case BPF_LD | BPF_W | BPF_ABS:
            a = load(s, f->k, 4, &ok);
            pc++;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= f->k;
            pc++;
            break;
        case BPF_JMP | BPF_JA:
            pc += 1 + f->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += 1 + (a == f->k ? f->jt : f->jf);
            break;
        case BPF_RET | BPF_K:
            return f->k;
        default:
            fail_msg("unexpected instruction %#x at %u", f->code, pc);
        }
        assert_true(ok);
    }
    fail_msg("ran off the end of the program");
    return 0;
}

static struct seg v4seg(const char *src, uint8_t flags)
{
    struct seg s = {.flags = flags, .proto = 0x0800};
    assert_int_equal(inet_pton(AF_INET, src, s.net + 12), 1);
    return s;
}

static struct seg v6seg(const char *src, uint8_t flags)
{
    struct seg s = {.flags = flags, .proto = 0x86dd};
    assert_int_equal(inet_pton(AF_INET6, src, s.net + 8), 1);
    return s;
}

#define SYN 0x02
#define ACK 0x10

static bool drops_v4(const char *src)
{
    struct seg s = v4seg(src, SYN);
    return run(&prog, &s) == 0;
}

static bool drops_v6(const char *src)
{
    struct seg s = v6seg(src, SYN);
    return run(&prog, &s) == 0;
}

static struct gh_ban ban_of(const char *cidr, uint64_t expires)
{
    struct gh_ban b = {.expires_ms = expires, .reason = GH_BAN_REFUSALS};
    assert_int_equal(gh_cidr_parse(cidr, strlen(cidr), &b.cidr), 0);
    return b;
}

/* Every jump lands inside the program and it ends in a return: what the
 * kernel's checker asks too (the kernel test below attaches it). */
static void well_formed(const struct gh_sockban_prog *p)
{
    assert_true(p->len >= 1 && p->len <= GH_SOCKBAN_MAX_INSNS);
    for (unsigned pc = 0; pc < p->len; pc++) {
        const struct sock_filter *f = &p->insns[pc];
        if (f->code == (BPF_JMP | BPF_JA))
            assert_true(pc + 1 + f->k < p->len);
        else if (BPF_CLASS(f->code) == BPF_JMP)
            assert_true(pc + 1 + f->jt < p->len && pc + 1 + f->jf < p->len);
    }
    assert_int_equal(BPF_CLASS(p->insns[p->len - 1].code), BPF_RET);
}

static void empty_passes_everything(void **state)
{
    (void)state;
    assert_int_equal(gh_sockban_build(NULL, 0, &prog), 0);
    well_formed(&prog);
    assert_int_equal(prog.expires_ms, 0);
    assert_false(drops_v4("192.0.2.1"));
    assert_false(drops_v6("2001:db8::1"));
}

static void ipv4_prefixes(void **state)
{
    (void)state;
    struct gh_ban bans[] = {ban_of("192.0.2.0/24", 900), ban_of("198.51.100.7", 500),
                            ban_of("10.0.0.0/8", 700)};
    assert_int_equal(gh_sockban_build(bans, 3, &prog), 3);
    well_formed(&prog);
    assert_int_equal(prog.expires_ms, 500);
    assert_true(drops_v4("192.0.2.0"));
    assert_true(drops_v4("192.0.2.255"));
    assert_false(drops_v4("192.0.3.0"));
    assert_true(drops_v4("198.51.100.7"));
    assert_false(drops_v4("198.51.100.8"));
    assert_true(drops_v4("10.255.0.1"));
    assert_false(drops_v4("11.0.0.1"));
    /* only a bare SYN: a banned source's other segments pass (the
     * connections accepted before its ban inherit the filter) */
    struct seg s = v4seg("192.0.2.9", ACK);
    assert_int_not_equal(run(&prog, &s), 0);
    s = v4seg("192.0.2.9", SYN | ACK);
    assert_int_not_equal(run(&prog, &s), 0);
    s = v4seg("192.0.2.9", 0x01 /* FIN */);
    assert_int_not_equal(run(&prog, &s), 0);
    s = v4seg("192.0.2.9", SYN | 0x08 /* PSH */);
    assert_int_equal(run(&prog, &s), 0);
    /* an IPv6 segment is not read as IPv4 */
    assert_false(drops_v6("c000:0201::1"));
    s = (struct seg){.flags = SYN, .proto = 0x0806};
    assert_int_not_equal(run(&prog, &s), 0);
}

static void ipv6_prefixes(void **state)
{
    (void)state;
    struct gh_ban bans[] = {ban_of("2001:db8:1::/48", 1), ban_of("2001:db8:2:3::/64", 1),
                            ban_of("2001:db8:5::9", 1), ban_of("2001:db8:7000::/36", 1)};
    assert_int_equal(gh_sockban_build(bans, 4, &prog), 4);
    well_formed(&prog);
    assert_true(drops_v6("2001:db8:1::1"));
    assert_true(drops_v6("2001:db8:1:ffff::1"));
    assert_false(drops_v6("2001:db8:2::1"));
    assert_true(drops_v6("2001:db8:2:3:abcd::1"));
    assert_false(drops_v6("2001:db8:2:4::1"));
    assert_true(drops_v6("2001:db8:5::9"));
    assert_false(drops_v6("2001:db8:5::8"));
    assert_false(drops_v6("2001:db8:5:0:1::9"));
    assert_true(drops_v6("2001:db8:7fff::1")); /* the /36 cuts the second word */
    assert_false(drops_v6("2001:db8:8000::1"));
    assert_false(drops_v4("32.1.13.184")); /* 2001:0db8 read as IPv4 */
}

static void everything_bans(void **state)
{
    (void)state;
    struct gh_ban bans[] = {ban_of("::/0", 1), ban_of("192.0.2.1", 1)};
    gh_sockban_build(bans, 2, &prog);
    well_formed(&prog);
    assert_true(drops_v6("2001:db8::1"));
    assert_true(drops_v4("203.0.113.1")); /* the mapped space is inside ::/0 */
    struct gh_ban v4all[] = {ban_of("0.0.0.0/0", 1), ban_of("192.0.2.1", 1)};
    gh_sockban_build(v4all, 2, &prog);
    well_formed(&prog);
    assert_true(drops_v4("203.0.113.1"));
    assert_false(drops_v6("2001:db8::1"));
}

/* IPv6 bans that hold the mapped space count for IPv4 as well: several
 * of them, and random mixes of lengths near the cap, stay well formed. */
static void mixes_stay_in_bounds(void **state)
{
    (void)state;
    struct gh_ban held[] = {ban_of("::/0", 1), ban_of("::/8", 1), ban_of("::/48", 1),
                            ban_of("::ffff:0:0/80", 1)};
    gh_sockban_build(held, 4, &prog);
    well_formed(&prog);
    assert_true(drops_v4("198.51.100.1"));
    enum { N = 5000 };
    struct gh_ban *bans = calloc(N, sizeof *bans);
    assert_non_null(bans);
    unsigned seed = 12345;
    for (unsigned round = 0; round < 40; round++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % N);
        for (size_t i = 0; i < n; i++) {
            struct gh_ban *b = &bans[i];
            b->expires_ms = 1 + (uint64_t)(rand_r(&seed) % 1000);
            for (unsigned k = 0; k < 16; k++)
                b->cidr.bytes[k] = (uint8_t)rand_r(&seed);
            if (rand_r(&seed) % 3) { /* IPv4, /0 to /32 */
                memset(b->cidr.bytes, 0, 10);
                b->cidr.bytes[10] = b->cidr.bytes[11] = 0xff;
                b->cidr.len = (uint8_t)(96 + rand_r(&seed) % 33);
            } else {
                b->cidr.len = (uint8_t)(rand_r(&seed) % 129);
            }
        }
        size_t in = gh_sockban_build(bans, n, &prog);
        well_formed(&prog);
        assert_true(in <= 2 * n);
        assert_true(prog.len >= 11); /* not the pass-all of a miscount */
        /* a SYN-ACK or an ACK always passes */
        struct seg s = v4seg("203.0.113.9", ACK);
        assert_int_not_equal(run(&prog, &s), 0);
    }
    free(bans);
}

/* More than a program holds: the broadest go in, the rest are left to the
 * accept check, and blocks of compares keep every jump in reach. */
static void too_many_keeps_the_broadest(void **state)
{
    (void)state;
    enum { N = 6000 };
    struct gh_ban *bans = calloc(N + 2, sizeof *bans);
    assert_non_null(bans);
    char cidr[64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(cidr, sizeof cidr, "10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
        bans[i] = ban_of(cidr, 1000 + i);
    }
    bans[N] = ban_of("172.16.0.0/12", 50);
    bans[N + 1] = ban_of("2001:db8::/32", 60);
    size_t in = gh_sockban_build(bans, N + 2, &prog);
    well_formed(&prog);
    assert_true(in > 3000 && in < N);
    assert_true(prog.len > GH_SOCKBAN_MAX_INSNS - 8);
    assert_int_equal(prog.expires_ms, 50);
    assert_true(drops_v4("172.31.255.255")); /* the /12 went in first */
    /* /32s in address order: the first ones are in, the last ones not */
    assert_true(drops_v4("10.0.0.0"));
    assert_true(drops_v4("10.0.1.17"));
    assert_false(drops_v4("10.0.23.111")); /* the 6000th: left out */
    assert_false(drops_v6("2001:db8::1")); /* IPv6 after IPv4: no room left */
    /* a list of IPv6 bans alone fits as far as its words allow */
    for (unsigned i = 0; i < N; i++) {
        snprintf(cidr, sizeof cidr, "2001:db8:%x::/48", i);
        bans[i] = ban_of(cidr, 1);
    }
    in = gh_sockban_build(bans, N, &prog);
    well_formed(&prog);
    assert_true(in > 500 && in < N);
    assert_true(drops_v6("2001:db8:0::1"));
    assert_true(drops_v6("2001:db8:1f::1"));
    free(bans);
}

/* ---- the kernel ---- */

static int listener(int family, const char *addr, uint16_t *port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, addr, &a->sin_addr), 1);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, addr, &a->sin6_addr), 1);
        sl = sizeof *a;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, sl), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

/* Whether a connection from src to dst:port opens within ms. A SYN the
 * filter drops is sent again only after a second, so a short wait tells. */
static bool connects(int family, const char *src, const char *dst, uint16_t port, int ms)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage from = {0}, to = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *f = (struct sockaddr_in *)&from, *t = (struct sockaddr_in *)&to;
        f->sin_family = t->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, src, &f->sin_addr), 1);
        assert_int_equal(inet_pton(AF_INET, dst, &t->sin_addr), 1);
        t->sin_port = htons(port);
        sl = sizeof *f;
    } else {
        struct sockaddr_in6 *f = (struct sockaddr_in6 *)&from, *t = (struct sockaddr_in6 *)&to;
        f->sin6_family = t->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, src, &f->sin6_addr), 1);
        assert_int_equal(inet_pton(AF_INET6, dst, &t->sin6_addr), 1);
        t->sin6_port = htons(port);
        sl = sizeof *f;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&from, sl), 0);
    int rc = connect(fd, (struct sockaddr *)&to, sl);
    assert_true(rc == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    bool open = rc == 0;
    if (!open && poll(&p, 1, ms) == 1) {
        int err = 0;
        socklen_t el = sizeof err;
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el), 0);
        open = err == 0;
    }
    close(fd);
    return open;
}

static bool attach(int fd)
{
    struct sock_fprog fp = {.len = (unsigned short)prog.len, .filter = prog.insns};
    if (!setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp))
        return true;
    assert_int_equal(errno, EPERM); /* anything else: the program is wrong */
    return false;
}

static void kernel_drops_banned_syns(void **state)
{
    (void)state;
    struct gh_ban bans[4000];
    char cidr[64];
    bans[0] = ban_of("127.0.5.0/24", 1);
    bans[1] = ban_of("127.0.6.7", 1);
    bans[2] = ban_of("::1", 1);
    for (unsigned i = 3; i < 4000; i++) { /* a long program the kernel must take */
        snprintf(cidr, sizeof cidr, "10.1.%u.%u", i >> 8, i & 255);
        bans[i] = ban_of(cidr, 1);
    }
    assert_true(gh_sockban_build(bans, 4000, &prog) > 3000);
    uint16_t port;
    int fd = listener(AF_INET, "127.0.0.1", &port);
    if (!attach(fd)) {
        close(fd);
        skip(); /* EPERM: the kernel wants CAP_NET_ADMIN for this */
    }
    assert_false(connects(AF_INET, "127.0.5.9", "127.0.0.1", port, 300));
    assert_false(connects(AF_INET, "127.0.6.7", "127.0.0.1", port, 300));
    assert_true(connects(AF_INET, "127.0.6.8", "127.0.0.1", port, 3000));
    assert_true(connects(AF_INET, "127.0.4.9", "127.0.0.1", port, 3000));
    /* accepted connections inherit the filter: their traffic still flows */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(connect(c, (struct sockaddr *)&to, sizeof to), 0);
    struct sockaddr_in mine, peer;
    socklen_t ml = sizeof mine, pl = sizeof peer;
    assert_int_equal(getsockname(c, (struct sockaddr *)&mine, &ml), 0);
    int a;
    for (;;) { /* the probes above wait in the queue first */
        a = accept(fd, (struct sockaddr *)&peer, &pl);
        assert_true(a >= 0);
        if (peer.sin_port == mine.sin_port)
            break;
        close(a);
        pl = sizeof peer;
    }
    assert_int_equal(write(c, "ping", 4), 4);
    char buf[8];
    assert_int_equal(read(a, buf, sizeof buf), 4);
    close(a);
    close(c);
    /* detached: the banned source connects again */
    int unused = 0;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof unused), 0);
    assert_true(connects(AF_INET, "127.0.5.9", "127.0.0.1", port, 3000));
    close(fd);

    /* IPv6, where the host has ::1 */
    int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have6 = fd6 >= 0 && bind(fd6, (struct sockaddr *)&lo6, sizeof lo6) == 0;
    if (fd6 >= 0)
        close(fd6);
    if (!have6)
        return;
    fd6 = listener(AF_INET6, "::1", &port);
    assert_true(attach(fd6));
    assert_false(connects(AF_INET6, "::1", "::1", port, 300));
    struct gh_ban other = ban_of("2001:db8::/32", 1);
    gh_sockban_build(&other, 1, &prog);
    assert_true(attach(fd6));
    assert_true(connects(AF_INET6, "::1", "::1", port, 3000));
    close(fd6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_passes_everything),
        cmocka_unit_test(ipv4_prefixes),
        cmocka_unit_test(ipv6_prefixes),
        cmocka_unit_test(everything_bans),
        cmocka_unit_test(mixes_stay_in_bounds),
        cmocka_unit_test(too_many_keeps_the_broadest),
        cmocka_unit_test(kernel_drops_banned_syns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
