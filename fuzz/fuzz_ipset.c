/* libFuzzer harness for IP sets (shield/ipset.h). The rest of the input
 * after its first byte, as one prefix, parses only when it is made of
 * address characters (no NUL: a C string would hide what follows). The
 * first byte picks the form of the rest:
 * - even: a list file (FireHOL / Spamhaus DROP text) for
 *   gh_ipset_parse_list; every accepted entry formats to text that parses
 *   back to itself, and the line count of good plus bad entries is right;
 * - odd: binary prefixes, 17 bytes each (length, 16 address bytes), many
 *   of them IPv4 in the mapped space and sharing leading bits.
 * Either way the prefixes are built into a tree and every lookup (each
 * prefix's first and last address, their neighbours just outside, and
 * addresses from the input) must agree with a linear scan over the same
 * prefixes; gh_ipset_count is the number of distinct prefixes; a live list
 * (gh_iplist) loaded with them, then with one removed, agrees too. */
#include "shield/ipset.h"

#include "invariant.h"

#include <string.h>
#include <sys/socket.h>

#define MAX_CIDRS 512

static bool contains_ref(const struct gh_cidr *c, const uint8_t *addr)
{
    unsigned full = c->len / 8, rest = c->len % 8;
    if (memcmp(c->bytes, addr, full))
        return false;
    return rest == 0 || ((c->bytes[full] ^ addr[full]) >> (8 - rest)) == 0;
}

static bool scan(const struct gh_cidr *cs, size_t n, const uint8_t *addr)
{
    for (size_t i = 0; i < n; i++)
        if (contains_ref(&cs[i], addr))
            return true;
    return false;
}

static size_t distinct(const struct gh_cidr *cs, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = gh_cidr_equal(&cs[i], &cs[j]);
        d += !seen;
    }
    return d;
}

/* addr as a gh_addr: IPv4 when it is in the mapped space */
static void to_addr(const uint8_t *b, struct gh_addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a, 0, sizeof *a);
    if (!memcmp(b, mapped, 12)) {
        a->family = AF_INET;
        memcpy(a->bytes, b + 12, 4);
    } else {
        a->family = AF_INET6;
        memcpy(a->bytes, b, 16);
    }
}

static void check_addr(const struct gh_ipset *s, struct gh_iplist *l, const struct gh_cidr *cs,
                       size_t n, const uint8_t *b)
{
    bool want = scan(cs, n, b);
    struct gh_addr a;
    to_addr(b, &a);
    struct gh_cidr host;
    memcpy(host.bytes, b, 16);
    host.len = 128;
    FUZZ_CHECK(gh_ipset_contains_cidr(s, &host) == want);
    FUZZ_CHECK(gh_ipset_contains(s, &a) == want);
    if (l)
        FUZZ_CHECK(gh_iplist_contains(l, &a) == want);
}

/* first, last and just outside each prefix; then the input's own bytes */
static void check_all(const struct gh_ipset *s, struct gh_iplist *l, const struct gh_cidr *cs,
                      size_t n, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t lo[16], hi[16];
        memcpy(lo, cs[i].bytes, 16);
        memcpy(hi, cs[i].bytes, 16);
        for (unsigned bit = cs[i].len; bit < 128; bit++)
            hi[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
        check_addr(s, l, cs, n, lo);
        check_addr(s, l, cs, n, hi);
        /* lo - 1 and hi + 1, wrapping */
        for (int k = 15; k >= 0 && lo[k]-- == 0; k--)
            ;
        for (int k = 15; k >= 0 && ++hi[k] == 0; k--)
            ;
        check_addr(s, l, cs, n, lo);
        check_addr(s, l, cs, n, hi);
    }
    for (size_t off = 0; off + 16 <= size && off < 16 * 64; off += 16)
        check_addr(s, l, cs, n, data + off);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 14)
        return 0;
    static struct gh_cidr fixed[MAX_CIDRS];
    struct gh_cidr *cs = NULL;
    size_t n = 0;
    bool text = !(data[0] & 1);
    data++;
    size--;
    /* one prefix as text: only address characters and at most one '/' */
    struct gh_cidr one;
    if (gh_cidr_parse((const char *)data, GH_MIN(size, (size_t)63), &one) == 0) {
        unsigned slashes = 0;
        for (size_t i = 0; i < GH_MIN(size, (size_t)63); i++) {
            uint8_t c = data[i];
            FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                       c == '.' || c == ':' || c == '/');
            slashes += c == '/';
        }
        FUZZ_CHECK(slashes <= 1 && one.len <= 128);
    }
    if (text) {
        struct gh_buf report;
        gh_buf_init(&report, 1024);
        int bad = gh_ipset_parse_list((const char *)data, size, "fuzz", &cs, &n, MAX_CIDRS,
                                      &report);
        FUZZ_CHECK(bad >= 0 || bad == GH_ETOOBIG);
        FUZZ_CHECK(n <= MAX_CIDRS);
        FUZZ_CHECK(bad <= 0 || report.len > 0);
        gh_buf_dispose(&report);
        if (bad < 0)
            goto out;
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(cs[i].len <= 128);
            char t[64];
            gh_cidr_format(&cs[i], t, sizeof t);
            struct gh_cidr back;
            FUZZ_CHECK(gh_cidr_parse(t, strlen(t), &back) == 0);
            FUZZ_CHECK(gh_cidr_equal(&back, &cs[i]));
        }
    } else {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        for (size_t off = 0; off + 17 <= size && n < MAX_CIDRS; off += 17) {
            struct gh_cidr *c = &fixed[n++];
            uint8_t l = data[off];
            memcpy(c->bytes, data + off + 1, 16);
            if (l & 0x80) { /* IPv4 */
                memcpy(c->bytes, mapped, 12);
                c->len = (uint8_t)(96 + (l & 0x7f) % 33);
            } else {
                c->len = (uint8_t)(l % 129);
            }
            /* canonical: host bits clear, as gh_cidr_parse leaves them */
            for (unsigned bit = c->len; bit < 128; bit++)
                c->bytes[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
        }
        cs = fixed;
    }

    struct gh_ipset *s = gh_ipset_build(cs, n);
    FUZZ_CHECK(s);
    FUZZ_CHECK(gh_ipset_count(s) == distinct(cs, n));
    FUZZ_CHECK(gh_ipset_nodes(s) <= 2 * gh_ipset_count(s) + 1);
    check_all(s, NULL, cs, n, data, size);
    gh_ipset_unref(s);

    /* the live list over the same prefixes (text form only: it parses) */
    if (text && n > 0) {
        struct gh_iplist *l = gh_iplist_new(MAX_CIDRS);
        FUZZ_CHECK(l);
        unsigned nbad = 0;
        FUZZ_CHECK(gh_iplist_load_text(l, (const char *)data, size, "fuzz", NULL, &nbad) == 0);
        struct gh_ipset *snap = gh_iplist_snapshot(l);
        check_all(snap, l, cs, n, data, size);
        gh_ipset_unref(snap);
        /* remove every copy of the first prefix */
        struct gh_cidr gone = cs[0];
        FUZZ_CHECK(gh_iplist_remove(l, &gone) == 0);
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (!gh_cidr_equal(&cs[i], &gone))
                cs[w++] = cs[i];
        n = w;
        snap = gh_iplist_snapshot(l);
        check_all(snap, l, cs, n, data, size);
        gh_ipset_unref(snap);
        gh_iplist_free(l);
    }
out:
    if (text)
        free(cs);
    return 0;
}
