/* The penalty box's listening-socket filter (see sockban.h).
 *
 * A socket filter sees the segment from its TCP header (a load at k reads
 * the header's byte k) and the IP header at SKF_NET_OFF. The program:
 *
 *     ldb [13]; and #0x12; jeq #0x02, syn, pass     TCP flags: a bare SYN?
 *   pass: ret #-1
 *   syn:  ldh proto; jeq #0x86dd -> v6; jeq #0x0800 -> v4, else pass
 *   v4:   per prefix length: ld src; and mask; jeq #prefix -> drop ...
 *         (blocks of at most BLOCK compares, each followed by its own
 *         "ret #0", since a conditional jump reaches 255 ahead at most)
 *         ret #-1
 *   v6:   per ban: the prefix's words, each ld, and, jeq (a miss jumps to
 *         the next ban), then ret #0
 *         ret #-1
 *
 * A return of 0 drops the segment; -1 keeps all of it. */
#include "shield/sockban.h"

#include <stdlib.h>
#include <string.h>

#define PASS  0xffffffffu
#define BLOCK 250 /* compares before a block's "ret #0" (jt <= 255) */

static const uint8_t MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Whether c is an IPv4 prefix (in the mapped space), and its length as one. */
static bool v4_of(const struct gh_cidr *c, unsigned *len)
{
    if (c->len < 96 || memcmp(c->bytes, MAPPED, sizeof MAPPED))
        return false;
    *len = c->len - 96u;
    return true;
}

/* An IPv6 prefix shorter than 96 bits that holds the mapped space holds
 * every IPv4 address too. */
static bool holds_v4(const struct gh_cidr *c)
{
    struct gh_cidr all4 = {.len = 96};
    memcpy(all4.bytes, MAPPED, sizeof MAPPED);
    return c->len < 96 && gh_cidr_contains(c, &all4);
}

static uint32_t word_of(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint32_t mask_of(unsigned bits) /* the top bits of a word, 0..32 */
{
    return bits ? 0xffffffffu << (32 - bits) : 0;
}

struct ent {
    unsigned len; /* prefix length in its family */
    uint8_t v6;   /* 1: IPv6 */
    uint8_t bytes[16];
    uint64_t expires_ms;
};

static int by_breadth(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    if (x->v6 != y->v6)
        return x->v6 - y->v6; /* IPv4 first: the usual flood, and cheaper */
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->bytes, y->bytes, 16);
}

/* Instructions an IPv6 ban takes: per word ld, jeq (and an and when the
 * word is partial), then ret #0. A /0 is a bare ret #0. */
static unsigned v6_cost(unsigned len)
{
    unsigned words = (len + 31) / 32, cost = 1;
    for (unsigned w = 0; w < words; w++)
        cost += 2 + (len - 32 * w < 32);
    return cost;
}

/* Instructions the IPv4 section takes for the group sizes it holds:
 * counted as the entries go in (group = its length's compares so far). */
static unsigned v4_group_cost(unsigned len, size_t m)
{
    if (!len)
        return 1; /* ret #0: every address */
    return 1 + (len < 32) + (unsigned)m + 2 * (unsigned)((m + BLOCK - 1) / BLOCK);
}

struct emitter {
    struct sock_filter *out;
    unsigned n;
    bool over;
};

/* The counts above keep a program within GH_SOCKBAN_MAX_INSNS; past it
 * nothing is written (over), and the build lets everything through. */
static void emit(struct emitter *e, struct sock_filter f)
{
    if (e->n < GH_SOCKBAN_MAX_INSNS)
        e->out[e->n] = f;
    else
        e->over = true;
    e->n++;
}

/* Emits the compares of one IPv4 group ents[0..m) (all of length len). */
static void emit_v4_group(struct emitter *e, const struct ent *ents, size_t m, unsigned len)
{
    if (!len) {
        emit(e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0));
        return;
    }
    emit(e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)SKF_NET_OFF + 12));
    if (len < 32)
        emit(e, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mask_of(len)));
    for (size_t i = 0; i < m; i += BLOCK) {
        size_t b = GH_MIN((size_t)BLOCK, m - i);
        for (size_t j = 0; j < b; j++) {
            uint32_t k = word_of(ents[i + j].bytes + 12) & mask_of(len);
            /* to the block's ret #0: past the rest of the block and its ja */
            emit(e,
                 (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, (uint8_t)(b - j), 0));
        }
        emit(e, (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 1));
        emit(e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0));
    }
}

static void emit_v6(struct emitter *e, const struct ent *x)
{
    unsigned words = (x->len + 31) / 32, end = e->n + v6_cost(x->len);
    for (unsigned w = 0; w < words; w++) {
        unsigned bits = GH_MIN(32u, x->len - 32 * w);
        emit(e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                             (uint32_t)SKF_NET_OFF + 8 + 4 * w));
        if (bits < 32)
            emit(e, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mask_of(bits)));
        uint32_t k = word_of(x->bytes + 4 * w) & mask_of(bits);
        /* a miss goes to the next ban, past this one's ret #0 */
        emit(e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, 0,
                                             (uint8_t)(end - (e->n + 1))));
    }
    emit(e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0));
}

size_t gh_sockban_build(const struct gh_ban *bans, size_t n, struct gh_sockban_prog *p)
{
    /* the fixed part: 9 of the head, a pass after each family's section */
    const unsigned fixed = 9 + 2;
    /* an IPv6 ban that holds the mapped space is also an IPv4 one: two each */
    struct ent *ents = n ? calloc(2 * n, sizeof *ents) : NULL;
    size_t ne = 0;
    for (size_t i = 0; ents && i < n; i++) {
        struct ent x = {.expires_ms = bans[i].expires_ms};
        unsigned len;
        if (v4_of(&bans[i].cidr, &len)) {
            x.len = len;
            memcpy(x.bytes, bans[i].cidr.bytes, 16);
        } else {
            x.v6 = 1;
            x.len = bans[i].cidr.len;
            memcpy(x.bytes, bans[i].cidr.bytes, 16);
            if (holds_v4(&bans[i].cidr)) /* and every IPv4 address */
                ents[ne++] = (struct ent){.len = 0, .expires_ms = x.expires_ms};
        }
        ents[ne++] = x;
    }
    if (ents)
        qsort(ents, ne, sizeof *ents, by_breadth);

    /* how many fit, broadest first: IPv4 groups, then IPv6 bans */
    unsigned used = fixed, v4_cost = 0;
    size_t take = 0, group_start = 0;
    bool v4_all = false;
    for (; take < ne && !ents[take].v6; take++) {
        if (v4_all)
            continue; /* under a ban of every IPv4 address: nothing to add */
        if (take > group_start && ents[take].len != ents[group_start].len) {
            v4_cost += v4_group_cost(ents[group_start].len, take - group_start);
            group_start = take;
        }
        unsigned c = v4_group_cost(ents[take].len, take + 1 - group_start);
        if (used + v4_cost + c > GH_SOCKBAN_MAX_INSNS)
            break;
        v4_all = ents[take].len == 0;
    }
    size_t v4_end = take;
    if (v4_end > group_start)
        v4_cost += v4_group_cost(ents[group_start].len, v4_end - group_start);
    used += v4_cost;
    size_t v6_start = v4_end;
    while (v6_start < ne && !ents[v6_start].v6)
        v6_start++; /* IPv4 bans that did not fit */
    size_t v6_end = v6_start;
    bool v6_all = false;
    for (; v6_end < ne && !v6_all; v6_end++) {
        unsigned c = v6_cost(ents[v6_end].len);
        if (used + c > GH_SOCKBAN_MAX_INSNS)
            break;
        used += c;
        v6_all = ents[v6_end].len == 0;
    }

    struct emitter e = {p->insns, 0, false};
    emit(&e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13));
    emit(&e, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12));
    emit(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 1, 0));
    emit(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, PASS));
    emit(&e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS,
                                          (uint32_t)SKF_AD_OFF + SKF_AD_PROTOCOL));
    emit(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x86dd, 0, 1));
    unsigned ja_v6 = e.n;
    emit(&e, (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 0)); /* set below */
    emit(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 1, 0));
    emit(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, PASS));
    size_t entries = 0;
    uint64_t expires = 0;
    for (size_t i = 0; i < v4_end;) {
        size_t j = i;
        while (j < v4_end && ents[j].len == ents[i].len)
            j++;
        emit_v4_group(&e, ents + i, j - i, ents[i].len);
        for (size_t k = i; k < j; k++) {
            entries++;
            if (!expires || ents[k].expires_ms < expires)
                expires = ents[k].expires_ms;
        }
        if (!ents[i].len)
            break; /* every IPv4 address: the rest cannot be reached */
        i = j;
    }
    emit(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, PASS));
    p->insns[ja_v6].k = e.n - (ja_v6 + 1);
    for (size_t i = v6_start; i < v6_end; i++) {
        emit_v6(&e, &ents[i]);
        entries++;
        if (!expires || ents[i].expires_ms < expires)
            expires = ents[i].expires_ms;
    }
    emit(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, PASS));
    free(ents);
    if (e.over) { /* a miscount: never a program cut short */
        p->insns[0] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, PASS);
        e.n = 1;
        entries = 0;
        expires = 0;
    }
    p->len = e.n;
    p->entries = entries;
    p->expires_ms = expires;
    return entries;
}
