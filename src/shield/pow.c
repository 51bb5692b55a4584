/* This module implements the stateless proof of work of pow.h: issuing
 * and verifying signed challenges, the hash check, the solver and the
 * bounded replay cache. */
#include "shield/pow.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAC_BYTES   16
#define NONCE_BYTES 12
#define WAYS        8
#define NSHARDS     16

struct rslot {
    uint64_t key;
    uint64_t expires; /* Unix s */
};

struct rbucket {
    struct rslot s[WAYS];
};

struct rshard {
    pthread_mutex_t mu;
    struct rbucket *b;
} __attribute__((aligned(64)));

struct gh_pow {
    unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
    uint32_t nbuckets; /* per shard */
    struct rshard shards[NSHARDS];
};

static const char *const scope_names[GH_POW_SCOPE_COUNT] = {"register", "sms", "login"};

const char *gh_pow_scope_name(enum gh_pow_scope s)
{
    return (unsigned)s < GH_POW_SCOPE_COUNT ? scope_names[s] : "?";
}

int gh_pow_scope_parse(const char *s, enum gh_pow_scope *out)
{
    for (int i = 0; i < GH_POW_SCOPE_COUNT; i++)
        if (!strcmp(s, scope_names[i])) {
            *out = (enum gh_pow_scope)i;
            return 0;
        }
    return GH_EINVAL;
}

const char *gh_pow_result_name(enum gh_pow_result r)
{
    static const char *const names[] = {"ok",       "malformed", "bad signature", "wrong scope",
                                        "wrong network", "expired", "too easy",  "unsolved",
                                        "replayed", "busy"};
    return (unsigned)r < GH_ARRAY_LEN(names) ? names[r] : "?";
}

struct gh_pow *gh_pow_new(const unsigned char *hmac_key, size_t replay_max)
{
    struct gh_pow *p = aligned_alloc(64, sizeof *p);
    if (!p)
        return NULL;
    memset(p, 0, sizeof *p);
    /* a key of its own, so a PoW MAC can never be confused with another
     * use of hmac_key */
    static const char label[] = "gatehouse pow v1";
    crypto_auth_hmacsha256(p->key, (const unsigned char *)label, sizeof label - 1, hmac_key);
    size_t nb = replay_max / WAYS / NSHARDS;
    p->nbuckets = (uint32_t)(nb ? GH_MIN(nb, (size_t)UINT32_MAX) : 1);
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_init(&p->shards[i].mu, NULL);
        p->shards[i].b = calloc(p->nbuckets, sizeof(struct rbucket));
        if (!p->shards[i].b) {
            gh_pow_free(p);
            return NULL;
        }
    }
    return p;
}

void gh_pow_free(struct gh_pow *p)
{
    if (!p)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        free(p->shards[i].b);
        pthread_mutex_destroy(&p->shards[i].mu);
    }
    sodium_memzero(p->key, sizeof p->key);
    free(p);
}

/* The client's /24 or /48 as bytes; returns their number. */
static size_t client_prefix(const struct gh_addr *a, uint8_t *out)
{
    size_t n = a->family == AF_INET ? 3 : 6;
    memcpy(out, a->bytes, n);
    return n;
}

static void mac_of(const struct gh_pow *p, const char *text, size_t len, unsigned char *out)
{
    unsigned char full[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, p->key, sizeof p->key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)text, len);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(out, full, MAC_BYTES);
}

int gh_pow_issue(struct gh_pow *p, enum gh_pow_scope scope, const struct gh_addr *client,
                 unsigned bits, uint64_t ttl_ms, uint64_t now_ms, char *out, size_t outlen,
                 uint64_t *expires_at)
{
    if (bits > GH_POW_BITS_MAX || (unsigned)scope >= GH_POW_SCOPE_COUNT ||
        outlen < GH_POW_CHALLENGE_MAX)
        return GH_EINVAL;
    uint8_t prefix[6], nonce[NONCE_BYTES];
    size_t plen = client_prefix(client, prefix);
    randombytes_buf(nonce, sizeof nonce);
    char phex[13], nhex[2 * NONCE_BYTES + 1], mhex[2 * MAC_BYTES + 1];
    sodium_bin2hex(phex, sizeof phex, prefix, plen);
    sodium_bin2hex(nhex, sizeof nhex, nonce, sizeof nonce);
    uint64_t exp = (now_ms + ttl_ms + 999) / 1000;
    int n = snprintf(out, outlen, "1.%s.%llu.%u.%s.%s", scope_names[scope],
                     (unsigned long long)exp, bits, phex, nhex);
    if (n < 0 || (size_t)n + 1 + 2 * MAC_BYTES >= outlen)
        return GH_EINVAL;
    unsigned char mac[MAC_BYTES];
    mac_of(p, out, (size_t)n, mac);
    sodium_bin2hex(mhex, sizeof mhex, mac, sizeof mac);
    snprintf(out + n, outlen - (size_t)n, ".%s", mhex);
    if (expires_at)
        *expires_at = exp;
    return 0;
}

static void sha_prefix(crypto_hash_sha256_state *st, const char *challenge, size_t len)
{
    crypto_hash_sha256_init(st);
    crypto_hash_sha256_update(st, (const unsigned char *)challenge, len);
    crypto_hash_sha256_update(st, (const unsigned char *)":", 1);
}

static bool leading_zero_bits(const unsigned char *h, unsigned bits)
{
    unsigned i = 0;
    for (; bits >= 8; bits -= 8, i++)
        if (h[i])
            return false;
    return bits == 0 || (h[i] >> (8 - bits)) == 0;
}

bool gh_pow_check_hash(const char *challenge, size_t len, const char *nonce, size_t nonce_len,
                       unsigned bits)
{
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    sha_prefix(&st, challenge, len);
    crypto_hash_sha256_update(&st, (const unsigned char *)nonce, nonce_len);
    crypto_hash_sha256_final(&st, h);
    return leading_zero_bits(h, bits);
}

int gh_pow_solve(const char *challenge, size_t len, unsigned bits, uint64_t start,
                 uint64_t max_tries, uint64_t *nonce)
{
    crypto_hash_sha256_state base, st;
    unsigned char h[crypto_hash_sha256_BYTES];
    sha_prefix(&base, challenge, len);
    for (uint64_t i = 0; i < max_tries; i++) {
        uint64_t v = start + i;
        char digits[24];
        int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
        st = base;
        crypto_hash_sha256_update(&st, (const unsigned char *)digits, (size_t)n);
        crypto_hash_sha256_final(&st, h);
        if (leading_zero_bits(h, bits)) {
            *nonce = v;
            return 0;
        }
    }
    return GH_ENOTFOUND;
}

/* Parses a decimal field of at most maxdigits. */
static bool parse_dec(const char *s, size_t len, size_t maxdigits, uint64_t *out)
{
    if (len == 0 || len > maxdigits)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_hex(const char *s, size_t len, uint8_t *out, size_t outlen)
{
    size_t bin = 0;
    if (len != 2 * outlen)
        return false;
    for (size_t i = 0; i < len; i++) /* lowercase only: one spelling per challenge */
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return sodium_hex2bin(out, outlen, s, len, NULL, &bin, NULL) == 0 && bin == outlen;
}

/* Records key until expires; GH_POW_OK, GH_POW_REPLAYED or GH_POW_BUSY. */
static enum gh_pow_result replay_insert(struct gh_pow *p, uint64_t key, uint64_t expires,
                                        uint64_t now_s)
{
    struct rshard *sh = &p->shards[key >> 60];
    struct rbucket *b = &sh->b[((uint64_t)(uint32_t)key * p->nbuckets) >> 32];
    enum gh_pow_result r = GH_POW_BUSY;
    pthread_mutex_lock(&sh->mu);
    int free_slot = -1;
    for (int i = 0; i < WAYS; i++) {
        if (b->s[i].key == key && b->s[i].expires > now_s) {
            r = GH_POW_REPLAYED;
            goto out;
        }
        if (free_slot < 0 && b->s[i].expires <= now_s)
            free_slot = i; /* empty (0) or expired */
    }
    if (free_slot >= 0) {
        b->s[free_slot].key = key;
        b->s[free_slot].expires = expires;
        r = GH_POW_OK;
    }
out:
    pthread_mutex_unlock(&sh->mu);
    return r;
}

enum gh_pow_result gh_pow_verify(struct gh_pow *p, enum gh_pow_scope scope,
                                 const struct gh_addr *client, unsigned min_bits,
                                 const char *challenge, size_t len, const char *nonce,
                                 size_t nonce_len, uint64_t now_ms)
{
    /* 1.<scope>.<exp>.<bits>.<prefix>.<nonce>.<mac> */
    const char *f[7];
    size_t fl[7];
    unsigned nf = 0;
    if (!challenge || len == 0 || len >= GH_POW_CHALLENGE_MAX)
        return GH_POW_MALFORMED;
    const char *s = challenge, *end = challenge + len;
    while (nf < 7) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        f[nf] = s;
        fl[nf] = (size_t)((dot ? dot : end) - s);
        nf++;
        if (!dot)
            break;
        s = dot + 1;
    }
    if (nf != 7 || f[6] + fl[6] != end || fl[0] != 1 || f[0][0] != '1')
        return GH_POW_MALFORMED;
    uint8_t mac[MAC_BYTES], want[MAC_BYTES], nbytes[NONCE_BYTES], prefix[6], mine[6];
    uint64_t exp, bits;
    if (!parse_hex(f[6], fl[6], mac, sizeof mac) || !parse_dec(f[2], fl[2], 12, &exp) ||
        !parse_dec(f[3], fl[3], 2, &bits) || !parse_hex(f[5], fl[5], nbytes, sizeof nbytes) ||
        (fl[4] != 6 && fl[4] != 12) || !parse_hex(f[4], fl[4], prefix, fl[4] / 2))
        return GH_POW_MALFORMED;
    mac_of(p, challenge, (size_t)(f[6] - 1 - challenge), want);
    if (sodium_memcmp(mac, want, MAC_BYTES) != 0)
        return GH_POW_BAD_SIGNATURE;
    /* signed by us from here on: the fields are as we wrote them */
    const char *sn = gh_pow_scope_name(scope);
    if (fl[1] != strlen(sn) || memcmp(f[1], sn, fl[1]))
        return GH_POW_WRONG_SCOPE;
    size_t mlen = client_prefix(client, mine);
    if (mlen != fl[4] / 2 || memcmp(mine, prefix, mlen))
        return GH_POW_WRONG_PREFIX;
    uint64_t now_s = now_ms / 1000;
    if (now_s >= exp)
        return GH_POW_EXPIRED;
    if (bits < min_bits)
        return GH_POW_TOO_EASY;
    uint64_t nv;
    if (!nonce || !parse_dec(nonce, nonce_len, 20, &nv))
        return GH_POW_MALFORMED;
    if (!gh_pow_check_hash(challenge, len, nonce, nonce_len, (unsigned)bits))
        return GH_POW_UNSOLVED;
    uint64_t key;
    memcpy(&key, nbytes, sizeof key);
    return replay_insert(p, key ? key : 1, exp, now_s);
}
