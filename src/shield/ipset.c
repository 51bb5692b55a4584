/* This module implements the IP sets of ipset.h: CIDR parsing, the
 * path-compressed binary tree, the list-file parser and the live lists
 * with their lock-free readers. */
#include "shield/ipset.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- prefixes ---- */

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void mask_bits(uint8_t *b, unsigned len)
{
    for (unsigned i = 0; i < 16; i++) {
        if (len >= (i + 1) * 8)
            continue;
        unsigned keep = len > i * 8 ? len - i * 8 : 0;
        b[i] &= (uint8_t)(keep ? 0xff << (8 - keep) : 0);
    }
}

int gh_cidr_parse(const char *s, size_t len, struct gh_cidr *out)
{
    char text[64];
    /* a NUL would end the C string early: "10.0.0.0\0/8" is not 10.0.0.0/32 */
    if (len == 0 || len >= sizeof text || memchr(s, '\0', len))
        return GH_EINVAL;
    memcpy(text, s, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    uint64_t plen = 0;
    if (slash) {
        *slash = '\0';
        if (gh_parse_uint(slash + 1, 128, &plen))
            return GH_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, out->bytes + 12) == 1) {
        if (slash && plen > 32)
            return GH_EINVAL;
        memcpy(out->bytes, v4mapped, 12);
        out->len = (uint8_t)(96 + (slash ? plen : 32));
    } else if (inet_pton(AF_INET6, text, out->bytes) == 1) {
        out->len = (uint8_t)(slash ? plen : 128);
    } else {
        return GH_EINVAL;
    }
    mask_bits(out->bytes, out->len);
    return 0;
}

void gh_cidr_format(const struct gh_cidr *c, char *out, size_t outlen)
{
    char a[INET6_ADDRSTRLEN];
    if (c->len >= 96 && !memcmp(c->bytes, v4mapped, 12)) {
        inet_ntop(AF_INET, c->bytes + 12, a, sizeof a);
        snprintf(out, outlen, "%s/%u", a, c->len - 96u);
    } else {
        inet_ntop(AF_INET6, c->bytes, a, sizeof a);
        snprintf(out, outlen, "%s/%u", a, (unsigned)c->len);
    }
}

void gh_cidr_from_addr(const struct gh_addr *a, struct gh_cidr *out)
{
    memset(out, 0, sizeof *out);
    if (a->family == AF_INET) {
        memcpy(out->bytes, v4mapped, 12);
        memcpy(out->bytes + 12, a->bytes, 4);
    } else {
        memcpy(out->bytes, a->bytes, 16);
    }
    out->len = 128;
}

bool gh_cidr_equal(const struct gh_cidr *a, const struct gh_cidr *b)
{
    return a->len == b->len && !memcmp(a->bytes, b->bytes, 16);
}

/* ---- the tree ---- */

struct node {
    uint8_t key[16];
    uint8_t len;
    bool term; /* a prefix of the set ends here */
    int32_t child[2];
};

struct gh_ipset {
    atomic_int refs;
    size_t count;
    uint32_t nnodes, cap;
    struct node *nodes;
};

static inline unsigned bit_at(const uint8_t *k, unsigned i)
{
    return (k[i >> 3] >> (7 - (i & 7))) & 1;
}

/* Leading bits a and b share, up to max. */
static unsigned common_bits(const uint8_t *a, const uint8_t *b, unsigned max)
{
    unsigned n = 0;
    while (n < max) {
        if (!(n & 7) && n + 8 <= max && a[n >> 3] == b[n >> 3]) {
            n += 8;
            continue;
        }
        if (bit_at(a, n) != bit_at(b, n))
            break;
        n++;
    }
    return n;
}

static int32_t new_node(struct gh_ipset *s, const uint8_t *key, unsigned len, bool term)
{
    if (s->nnodes == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        struct node *n = realloc(s->nodes, sizeof *n * cap);
        if (!n)
            return -1;
        s->nodes = n;
        s->cap = cap;
    }
    struct node *n = &s->nodes[s->nnodes];
    memcpy(n->key, key, 16);
    mask_bits(n->key, len);
    n->len = (uint8_t)len;
    n->term = term;
    n->child[0] = n->child[1] = -1;
    return (int32_t)s->nnodes++;
}

/* Inserts one prefix. 0 or GH_ENOMEM. Indexes, not pointers: new_node may
 * move the array. */
static int insert(struct gh_ipset *s, const struct gh_cidr *c)
{
    unsigned len = c->len;
    int32_t n = 0;
    for (;;) {
        if (len == s->nodes[n].len) {
            s->count += !s->nodes[n].term;
            s->nodes[n].term = true;
            return 0;
        }
        unsigned b = bit_at(c->bytes, s->nodes[n].len);
        int32_t ch = s->nodes[n].child[b];
        if (ch < 0) {
            int32_t leaf = new_node(s, c->bytes, len, true);
            if (leaf < 0)
                return GH_ENOMEM;
            s->nodes[n].child[b] = leaf;
            s->count++;
            return 0;
        }
        unsigned clen = s->nodes[ch].len;
        unsigned cp = common_bits(c->bytes, s->nodes[ch].key, GH_MIN(len, clen));
        if (cp == clen) { /* the child's prefix contains ours: descend */
            n = ch;
            continue;
        }
        if (cp == len) { /* ours contains the child's: insert above it */
            int32_t mid = new_node(s, c->bytes, len, true);
            if (mid < 0)
                return GH_ENOMEM;
            s->nodes[mid].child[bit_at(s->nodes[ch].key, len)] = ch;
            s->nodes[n].child[b] = mid;
            s->count++;
            return 0;
        }
        /* they part at bit cp: a glue node holds both */
        int32_t glue = new_node(s, c->bytes, cp, false);
        int32_t leaf = glue < 0 ? -1 : new_node(s, c->bytes, len, true);
        if (leaf < 0)
            return GH_ENOMEM;
        s->nodes[glue].child[bit_at(c->bytes, cp)] = leaf;
        s->nodes[glue].child[bit_at(s->nodes[ch].key, cp)] = ch;
        s->nodes[n].child[b] = glue;
        s->count++;
        return 0;
    }
}

struct gh_ipset *gh_ipset_build(const struct gh_cidr *cidrs, size_t n)
{
    struct gh_ipset *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    static const uint8_t zero[16];
    if (new_node(s, zero, 0, false) < 0) /* the root: ::/0, not a member */
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (insert(s, &cidrs[i]))
            goto fail;
    return s;
fail:
    free(s->nodes);
    free(s);
    return NULL;
}

struct gh_ipset *gh_ipset_ref(struct gh_ipset *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void gh_ipset_unref(struct gh_ipset *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(s->nodes);
    free(s);
}

bool gh_ipset_contains_cidr(const struct gh_ipset *s, const struct gh_cidr *c)
{
    if (!s)
        return false;
    int32_t n = 0;
    unsigned matched = 0; /* bits of c known to equal the path so far */
    while (n >= 0) {
        const struct node *nd = &s->nodes[n];
        if (nd->len > c->len)
            return false;
        matched = GH_MAX(matched, common_bits(c->bytes, nd->key, nd->len));
        if (matched < nd->len)
            return false; /* the path leaves the address */
        if (nd->term)
            return true; /* the shortest containing prefix answers */
        if (nd->len == 128)
            return false;
        n = nd->child[bit_at(c->bytes, nd->len)];
    }
    return false;
}

bool gh_ipset_overlaps(const struct gh_ipset *s, const struct gh_cidr *c)
{
    if (!s || !s->count)
        return false;
    int32_t n = 0;
    while (n >= 0) {
        const struct node *nd = &s->nodes[n];
        unsigned len = GH_MIN((unsigned)nd->len, (unsigned)c->len);
        if (common_bits(c->bytes, nd->key, len) < len)
            return false; /* the path leaves c */
        if (nd->len >= c->len || nd->term)
            return true; /* a subtree inside c (every subtree ends in a prefix), or one holding c */
        n = nd->child[bit_at(c->bytes, nd->len)];
    }
    return false;
}

bool gh_ipset_contains(const struct gh_ipset *s, const struct gh_addr *a)
{
    struct gh_cidr c;
    gh_cidr_from_addr(a, &c);
    return gh_ipset_contains_cidr(s, &c);
}

size_t gh_ipset_count(const struct gh_ipset *s)
{
    return s ? s->count : 0;
}

size_t gh_ipset_nodes(const struct gh_ipset *s)
{
    return s ? s->nnodes : 0;
}

/* ---- list files ---- */

int gh_ipset_parse_list(const char *text, size_t len, const char *origin, struct gh_cidr **out,
                        size_t *n, size_t max, struct gh_buf *report)
{
    size_t cap = *n;
    int bad = 0;
    unsigned line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        line++;
        const char *q = p, *stop = eol;
        for (const char *c = p; c < eol; c++)
            if (*c == '#' || *c == ';') {
                stop = c;
                break;
            }
        while (q < stop && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        const char *tok_end = q;
        while (tok_end < stop && *tok_end != ' ' && *tok_end != '\t' && *tok_end != '\r')
            tok_end++;
        const char *rest = tok_end;
        while (rest < stop && (*rest == ' ' || *rest == '\t' || *rest == '\r'))
            rest++;
        if (q < stop) {
            struct gh_cidr c;
            if (rest < stop || gh_cidr_parse(q, (size_t)(tok_end - q), &c)) {
                bad++;
                if (report)
                    gh_buf_printf(report, "%s:%u: malformed entry '%.*s' skipped\n", origin, line,
                                  (int)GH_MIN((size_t)(stop - q), (size_t)60), q);
            } else {
                if (*n >= max)
                    return GH_ETOOBIG;
                if (*n == cap) {
                    size_t ncap = cap ? cap * 2 : 256;
                    struct gh_cidr *g = realloc(*out, sizeof *g * ncap);
                    if (!g)
                        return GH_ENOMEM;
                    *out = g;
                    cap = ncap;
                }
                (*out)[(*n)++] = c;
            }
        }
        p = eol + 1;
    }
    return bad;
}

/* ---- live lists ---- */

struct readers {
    atomic_uint n;
    char pad[60];
};

struct gh_iplist {
    _Atomic(struct gh_ipset *) cur;
    atomic_uint epoch;
    struct readers readers[2];
    pthread_mutex_t wmu; /* serialises writers; guards the entry arrays */
    struct gh_cidr *file;
    size_t nfile;
    struct gh_cidr *runtime;
    size_t nruntime, runtime_cap;
    size_t max;
    unsigned bad_lines;
};

struct gh_iplist *gh_iplist_new(size_t max)
{
    struct gh_iplist *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    struct gh_ipset *empty = gh_ipset_build(NULL, 0);
    if (!empty) {
        free(l);
        return NULL;
    }
    atomic_init(&l->cur, empty);
    pthread_mutex_init(&l->wmu, NULL);
    l->max = max;
    return l;
}

void gh_iplist_free(struct gh_iplist *l)
{
    if (!l)
        return;
    gh_ipset_unref(atomic_load(&l->cur));
    pthread_mutex_destroy(&l->wmu);
    free(l->file);
    free(l->runtime);
    free(l);
}

bool gh_iplist_contains(struct gh_iplist *l, const struct gh_addr *a)
{
    unsigned e = atomic_load(&l->epoch) & 1;
    atomic_fetch_add(&l->readers[e].n, 1);
    bool r = gh_ipset_contains(atomic_load(&l->cur), a);
    atomic_fetch_sub_explicit(&l->readers[e].n, 1, memory_order_release);
    return r;
}

struct gh_ipset *gh_iplist_snapshot(struct gh_iplist *l)
{
    unsigned e = atomic_load(&l->epoch) & 1;
    atomic_fetch_add(&l->readers[e].n, 1);
    struct gh_ipset *s = gh_ipset_ref(atomic_load(&l->cur));
    atomic_fetch_sub_explicit(&l->readers[e].n, 1, memory_order_release);
    return s;
}

/* Waits until every reader that could have seen the old tree has left:
 * flip the epoch and let the previous counter drain, twice, so that a
 * reader who read the epoch just before a flip is covered too. */
static void synchronize_locked(struct gh_iplist *l)
{
    GH_ASSERT_LOCKED(&l->wmu);
    for (int round = 0; round < 2; round++) {
        unsigned old = atomic_fetch_add(&l->epoch, 1) & 1;
        while (atomic_load_explicit(&l->readers[old].n, memory_order_acquire) != 0)
            sched_yield();
    }
}

/* Builds the tree of the current entries and swaps it in. */
static int publish_locked(struct gh_iplist *l)
{
    GH_ASSERT_LOCKED(&l->wmu);
    size_t n = l->nfile + l->nruntime;
    struct gh_cidr *all = malloc(sizeof *all * (n ? n : 1));
    if (!all)
        return GH_ENOMEM;
    if (l->nfile)
        memcpy(all, l->file, sizeof *all * l->nfile);
    if (l->nruntime)
        memcpy(all + l->nfile, l->runtime, sizeof *all * l->nruntime);
    struct gh_ipset *s = gh_ipset_build(all, n);
    free(all);
    if (!s)
        return GH_ENOMEM;
    struct gh_ipset *old = atomic_exchange(&l->cur, s);
    synchronize_locked(l);
    gh_ipset_unref(old);
    return 0;
}

int gh_iplist_load_text(struct gh_iplist *l, const char *text, size_t len, const char *origin,
                        struct gh_buf *report, unsigned *nbad)
{
    struct gh_cidr *entries = NULL;
    size_t n = 0;
    int rc = gh_ipset_parse_list(text, len, origin, &entries, &n, l->max, report);
    if (rc < 0) {
        free(entries);
        return rc;
    }
    if (nbad)
        *nbad = (unsigned)rc;
    pthread_mutex_lock(&l->wmu);
    if (n + l->nruntime > l->max) {
        pthread_mutex_unlock(&l->wmu);
        free(entries);
        return GH_ETOOBIG;
    }
    struct gh_cidr *old = l->file;
    size_t nold = l->nfile;
    unsigned oldbad = l->bad_lines;
    l->file = entries;
    l->nfile = n;
    l->bad_lines = (unsigned)rc;
    int prc = publish_locked(l);
    if (prc) { /* keep what was there */
        l->file = old;
        l->nfile = nold;
        l->bad_lines = oldbad;
        old = entries;
    }
    pthread_mutex_unlock(&l->wmu);
    free(old);
    return prc;
}

int gh_iplist_load_file(struct gh_iplist *l, const char *path, struct gh_buf *report,
                        unsigned *nbad)
{
    if (!path || !*path)
        return gh_iplist_load_text(l, "", 0, "", report, nbad);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (report)
            gh_buf_printf(report, "%s: cannot open: %s\n", path, strerror(errno));
        return GH_EIO;
    }
    struct gh_buf b;
    gh_buf_init(&b, 256u << 20);
    char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = gh_buf_append(&b, chunk, got);
    if (!rc && ferror(f))
        rc = GH_EIO;
    fclose(f);
    if (rc) {
        if (report)
            gh_buf_printf(report, "%s: cannot read the file\n", path);
        gh_buf_dispose(&b);
        return rc == GH_EIO ? GH_EIO : rc;
    }
    rc = gh_iplist_load_text(l, b.data ? b.data : "", b.len, path, report, nbad);
    gh_buf_dispose(&b);
    return rc;
}

int gh_iplist_add(struct gh_iplist *l, const struct gh_cidr *c)
{
    pthread_mutex_lock(&l->wmu);
    int rc = 0;
    for (size_t i = 0; i < l->nruntime; i++)
        if (gh_cidr_equal(&l->runtime[i], c)) {
            rc = GH_EEXIST;
            goto out;
        }
    if (l->nruntime + l->nfile >= l->max) {
        rc = GH_ETOOBIG;
        goto out;
    }
    if (l->nruntime == l->runtime_cap) {
        size_t cap = l->runtime_cap ? l->runtime_cap * 2 : 16;
        struct gh_cidr *g = realloc(l->runtime, sizeof *g * cap);
        if (!g) {
            rc = GH_ENOMEM;
            goto out;
        }
        l->runtime = g;
        l->runtime_cap = cap;
    }
    l->runtime[l->nruntime++] = *c;
    rc = publish_locked(l);
    if (rc)
        l->nruntime--;
out:
    pthread_mutex_unlock(&l->wmu);
    return rc;
}

/* Removes every copy of c from arr; returns how many. */
static size_t remove_from(struct gh_cidr *arr, size_t *n, const struct gh_cidr *c)
{
    size_t w = 0, removed = 0;
    for (size_t i = 0; i < *n; i++) {
        if (gh_cidr_equal(&arr[i], c))
            removed++;
        else
            arr[w++] = arr[i];
    }
    *n = w;
    return removed;
}

int gh_iplist_remove(struct gh_iplist *l, const struct gh_cidr *c)
{
    pthread_mutex_lock(&l->wmu);
    size_t removed = remove_from(l->runtime, &l->nruntime, c);
    removed += remove_from(l->file, &l->nfile, c);
    int rc = removed ? publish_locked(l) : GH_ENOTFOUND;
    pthread_mutex_unlock(&l->wmu);
    return rc;
}

void gh_iplist_info(struct gh_iplist *l, struct gh_iplist_info *out)
{
    pthread_mutex_lock(&l->wmu);
    out->file_entries = l->nfile;
    out->runtime_entries = l->nruntime;
    out->nodes = gh_ipset_nodes(atomic_load(&l->cur));
    out->bad_lines = l->bad_lines;
    pthread_mutex_unlock(&l->wmu);
}

int gh_iplist_runtime_json(struct gh_iplist *l, struct gh_buf *out)
{
    pthread_mutex_lock(&l->wmu);
    int rc = gh_buf_append_str(out, "[");
    for (size_t i = 0; !rc && i < l->nruntime; i++) {
        char t[64];
        gh_cidr_format(&l->runtime[i], t, sizeof t);
        rc = gh_buf_printf(out, "%s\"%s\"", i ? "," : "", t);
    }
    if (!rc)
        rc = gh_buf_append_str(out, "]");
    pthread_mutex_unlock(&l->wmu);
    return rc;
}

int gh_iplist_set_runtime(struct gh_iplist *l, const struct gh_cidr *c, size_t n)
{
    struct gh_cidr *copy = malloc(sizeof *copy * (n ? n : 1));
    if (!copy)
        return GH_ENOMEM;
    if (n)
        memcpy(copy, c, sizeof *copy * n);
    pthread_mutex_lock(&l->wmu);
    if (n + l->nfile > l->max) {
        pthread_mutex_unlock(&l->wmu);
        free(copy);
        return GH_ETOOBIG;
    }
    struct gh_cidr *old = l->runtime;
    size_t nold = l->nruntime, capold = l->runtime_cap;
    l->runtime = copy;
    l->nruntime = l->runtime_cap = n;
    int rc = publish_locked(l);
    if (rc) { /* keep what was there */
        l->runtime = old;
        l->nruntime = nold;
        l->runtime_cap = capold;
        old = copy;
    }
    pthread_mutex_unlock(&l->wmu);
    free(old);
    return rc;
}
