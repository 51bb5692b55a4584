/* libFuzzer harness for proof-of-work verification (shield/pow.h). The
 * random bytes of challenges come from a generator seeded by the input, so
 * every run reproduces. For one issued challenge:
 * - any other text (the input itself, or the challenge with an edit the
 *   input picks) is refused as malformed or badly signed, never verified;
 * - the right challenge with the wrong scope, another network, past its
 *   expiry or under a higher difficulty is refused with that reason, and
 *   those refusals do not use it up;
 * - a nonce is malformed unless it is 1..20 decimal digits, unsolved
 *   unless SHA-256(challenge ":" nonce) has the zero bits (checked here
 *   with libsodium directly), and the solver's nonce verifies;
 * - a verified challenge verifies once: every later use is replayed, also
 *   from another host of the same network and with another nonce;
 * - with a tiny replay cache, many challenges verify or are refused as
 *   busy, and none that verified is ever forgotten while it is live. */
#include "shield/pow.h"

#include "invariant.h"

#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#define T0_MS 1700000000000ull

/* ---- a seeded generator for libsodium ---- */

static uint64_t rng_state;

static uint64_t splitmix(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fuzz_buf(void *const buf, const size_t size)
{
    unsigned char *b = buf;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t v = splitmix();
        memcpy(b + i, &v, GH_MIN((size_t)8, size - i));
    }
}

static uint32_t fuzz_random(void)
{
    return (uint32_t)splitmix();
}

static const char *fuzz_name(void)
{
    return "fuzz-seeded";
}

static randombytes_implementation fuzz_rng = {
    .implementation_name = fuzz_name, .random = fuzz_random, .buf = fuzz_buf};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    randombytes_set_implementation(&fuzz_rng);
    FUZZ_CHECK(sodium_init() >= 0);
    return 0;
}

/* ---- references ---- */

static bool ref_solved(const char *c, size_t len, const char *nonce, size_t nl, unsigned bits)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)c, len);
    crypto_hash_sha256_update(&st, (const unsigned char *)":", 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)nonce, nl);
    crypto_hash_sha256_final(&st, h);
    for (unsigned i = 0; i < bits; i++)
        if (h[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

/* 1..20 decimal digits whose value fits in 64 bits */
static bool ref_nonce_ok(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return false;
    unsigned __int128 v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= UINT64_MAX;
}

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static void client_of(struct input *in, struct gh_addr *a)
{
    memset(a, 0, sizeof *a);
    uint8_t b = take(in);
    a->family = (b & 1) ? AF_INET6 : AF_INET;
    for (int i = 0; i < 16; i++)
        a->bytes[i] = take(in);
}

/* Another host of the same /24 or /48, and a client of another network. */
static void neighbours(const struct gh_addr *a, uint8_t pick, struct gh_addr *same,
                       struct gh_addr *other)
{
    *same = *a;
    same->bytes[a->family == AF_INET ? 3 : 15] ^= (uint8_t)(pick | 1);
    *other = *a;
    other->bytes[pick % (a->family == AF_INET ? 3 : 6)] ^= (uint8_t)(1u << (pick % 8));
}

static void solve(const char *c, size_t len, unsigned bits, char *nonce, size_t *nl)
{
    uint64_t v;
    FUZZ_CHECK(gh_pow_solve(c, len, bits, 0, 1u << 22, &v) == 0);
    *nl = (size_t)snprintf(nonce, 24, "%llu", (unsigned long long)v);
    FUZZ_CHECK(ref_solved(c, len, nonce, *nl, bits));
}

static const unsigned char KEY[32] = "fuzz-hmac-key-0123456789abcdef!";

static void one_challenge(struct input *in)
{
    struct gh_pow *p = gh_pow_new(KEY, 1024);
    FUZZ_CHECK(p);
    enum gh_pow_scope scope = (enum gh_pow_scope)(take(in) % GH_POW_SCOPE_COUNT);
    unsigned bits = take(in) % 9; /* solvable at once */
    uint64_t ttl = 1000ull * (1 + take(in));
    uint64_t now = T0_MS + 1000ull * take(in);
    struct gh_addr client, same, other;
    client_of(in, &client);
    neighbours(&client, take(in), &same, &other);

    char c[GH_POW_CHALLENGE_MAX];
    uint64_t exp;
    FUZZ_CHECK(gh_pow_issue(p, scope, &client, bits, ttl, now, c, sizeof c, &exp) == 0);
    size_t cl = strlen(c);
    FUZZ_CHECK(cl > 0 && cl < GH_POW_CHALLENGE_MAX && exp * 1000 >= now + ttl);
    char spare[GH_POW_CHALLENGE_MAX];
    FUZZ_CHECK(gh_pow_issue(p, scope, &client, GH_POW_BITS_MAX + 1, ttl, now, spare, sizeof spare,
                            NULL) == GH_EINVAL);
    char nonce[24];
    size_t nl;
    solve(c, cl, bits, nonce, &nl);

    /* an edit of the challenge the input picks: never verified */
    char m[GH_POW_CHALLENGE_MAX + 8];
    memcpy(m, c, cl);
    size_t ml = cl;
    uint8_t op = take(in), pos = (uint8_t)(take(in) % (cl + 1)), byte = take(in);
    switch (op % 4) {
    case 0:
        if (pos < cl)
            m[pos] = (char)byte;
        break;
    case 1:
        memmove(m + pos + 1, m + pos, cl - pos);
        m[pos] = (char)byte;
        ml++;
        break;
    case 2:
        if (pos < cl) {
            memmove(m + pos, m + pos + 1, cl - pos - 1);
            ml--;
        }
        break;
    default:
        ml = pos;
        break;
    }
    if (ml != cl || memcmp(m, c, cl)) {
        enum gh_pow_result r = gh_pow_verify(p, scope, &client, 0, m, ml, nonce, nl, now);
        FUZZ_CHECK(r == GH_POW_MALFORMED || r == GH_POW_BAD_SIGNATURE);
    }
    /* the rest of the input as a challenge: never verified */
    if (in->n != cl || memcmp(in->p, c, cl)) {
        enum gh_pow_result r =
            gh_pow_verify(p, scope, &client, 0, (const char *)in->p, in->n, nonce, nl, now);
        FUZZ_CHECK(r == GH_POW_MALFORMED || r == GH_POW_BAD_SIGNATURE);
    }

    /* right challenge, wrong circumstances: refused with the reason, not used up */
    enum gh_pow_scope wrong = (enum gh_pow_scope)((scope + 1) % GH_POW_SCOPE_COUNT);
    FUZZ_CHECK(gh_pow_verify(p, wrong, &client, 0, c, cl, nonce, nl, now) == GH_POW_WRONG_SCOPE);
    FUZZ_CHECK(gh_pow_verify(p, scope, &other, 0, c, cl, nonce, nl, now) == GH_POW_WRONG_PREFIX);
    struct gh_addr fam = client;
    fam.family = client.family == AF_INET ? AF_INET6 : AF_INET;
    FUZZ_CHECK(gh_pow_verify(p, scope, &fam, 0, c, cl, nonce, nl, now) == GH_POW_WRONG_PREFIX);
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, 0, c, cl, nonce, nl, exp * 1000) ==
               GH_POW_EXPIRED);
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, bits + 1, c, cl, nonce, nl, now) ==
               GH_POW_TOO_EASY);
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, 0, c, cl, NULL, 0, now) == GH_POW_MALFORMED);

    /* nonces from the input: malformed, unsolved or (rarely) the answer */
    bool used = false;
    for (int k = 0; k < 4 && in->n; k++) {
        size_t want_n = take(in) % 24; /* GH_MIN evaluates twice */
        size_t take_n = GH_MIN(want_n, in->n);
        const char *fn = (const char *)in->p;
        in->p += take_n;
        in->n -= take_n;
        enum gh_pow_result r = gh_pow_verify(p, scope, &client, 0, c, cl, fn, take_n, now);
        enum gh_pow_result want = !ref_nonce_ok(fn, take_n)             ? GH_POW_MALFORMED
                                  : !ref_solved(c, cl, fn, take_n, bits) ? GH_POW_UNSOLVED
                                  : used                                 ? GH_POW_REPLAYED
                                                                         : GH_POW_OK;
        FUZZ_CHECK(r == want);
        used = used || r == GH_POW_OK;
    }

    /* once, from any host of the network, then never again */
    enum gh_pow_result r = gh_pow_verify(p, scope, &same, bits, c, cl, nonce, nl, now);
    FUZZ_CHECK(r == (used ? GH_POW_REPLAYED : GH_POW_OK));
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, 0, c, cl, nonce, nl, now) == GH_POW_REPLAYED);
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, 0, c, cl, nonce, nl, exp * 1000 - 1) ==
               GH_POW_REPLAYED);
    char other_nonce[24];
    size_t onl;
    uint64_t v;
    FUZZ_CHECK(gh_pow_solve(c, cl, bits, strtoull(nonce, NULL, 10) + 1, 1u << 22, &v) == 0);
    onl = (size_t)snprintf(other_nonce, sizeof other_nonce, "%llu", (unsigned long long)v);
    FUZZ_CHECK(gh_pow_verify(p, scope, &client, 0, c, cl, other_nonce, onl, now) ==
               GH_POW_REPLAYED);
    gh_pow_free(p);
}

/* Many challenges through a cache of 8 ways x 16 shards. */
static void tiny_cache(struct input *in)
{
    struct gh_pow *p = gh_pow_new(KEY, 1);
    FUZZ_CHECK(p);
    struct gh_addr client;
    client_of(in, &client);
    unsigned count = take(in) % 200;
    static char cs[200][GH_POW_CHALLENGE_MAX];
    static uint64_t exps[200];
    static bool ok[200];
    uint64_t now = T0_MS;
    for (unsigned i = 0; i < count; i++) {
        uint64_t ttl = 1000ull * (1 + take(in) % 8);
        now += 100ull * (take(in) % 4);
        FUZZ_CHECK(gh_pow_issue(p, GH_POW_LOGIN, &client, 0, ttl, now, cs[i], sizeof cs[i],
                                &exps[i]) == 0);
        enum gh_pow_result r =
            gh_pow_verify(p, GH_POW_LOGIN, &client, 0, cs[i], strlen(cs[i]), "0", 1, now);
        FUZZ_CHECK(r == GH_POW_OK || r == GH_POW_BUSY);
        ok[i] = r == GH_POW_OK;
        /* no live verified challenge is forgotten, full cache or not */
        for (unsigned j = 0; (i % 16 == 15 || i + 1 == count) && j <= i; j++) {
            if (!ok[j] || exps[j] * 1000 <= now)
                continue;
            r = gh_pow_verify(p, GH_POW_LOGIN, &client, 0, cs[j], strlen(cs[j]), "1", 1, now);
            FUZZ_CHECK(r == GH_POW_REPLAYED);
        }
    }
    gh_pow_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* the generator's seed is the input's hash: the same input, the same run */
    unsigned char h[crypto_generichash_BYTES_MIN];
    crypto_generichash(h, sizeof h, data, size, NULL, 0);
    memcpy(&rng_state, h, sizeof rng_state);
    struct input in = {data, size};
    if (take(&in) == 0xff)
        tiny_cache(&in);
    else
        one_challenge(&in);
    return 0;
}
