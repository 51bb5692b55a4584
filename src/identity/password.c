/* This module implements password.h: the embedded common-password list in
 * an open-addressing set of 64-bit hashes, and argon2id via libsodium. */
#include "identity/password.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char gh_common_passwords[];
extern const size_t gh_common_passwords_len;

static struct {
    uint64_t *set; /* 0 = empty */
    unsigned mask;
    unsigned count;
    unsigned long long ops;
    size_t mem;
    char dummy[GH_PWHASH_STR_MAX];
    uint8_t sip_key[crypto_shorthash_KEYBYTES];
} pw;

static uint64_t fold_hash(const char *s, size_t len)
{
    /* lower-case ASCII letters, so "Password1" matches "password1" */
    uint8_t buf[GH_PASSWORD_MAX];
    size_t n = GH_MIN(len, sizeof buf);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    uint8_t out[8];
    crypto_shorthash(out, buf, n, pw.sip_key);
    uint64_t h;
    memcpy(&h, out, 8);
    return h ? h : 1;
}

static void set_add(uint64_t h)
{
    unsigned i = (unsigned)h & pw.mask;
    while (pw.set[i] && pw.set[i] != h)
        i = (i + 1) & pw.mask;
    if (!pw.set[i]) {
        pw.set[i] = h;
        pw.count++;
    }
}

int gh_password_init(unsigned ops, size_t mem)
{
    pw.ops = ops ? ops : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    pw.mem = mem ? GH_MAX(mem, (size_t)crypto_pwhash_MEMLIMIT_MIN)
                 : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    randombytes_buf(pw.sip_key, sizeof pw.sip_key);
    unsigned lines = 0;
    for (size_t i = 0; i < gh_common_passwords_len; i++)
        lines += gh_common_passwords[i] == '\n';
    unsigned slots = 1024;
    while (slots < lines * 2)
        slots <<= 1;
    pw.set = calloc(slots, sizeof *pw.set);
    if (!pw.set)
        return GH_ENOMEM;
    pw.mask = slots - 1;
    pw.count = 0;
    const char *p = (const char *)gh_common_passwords;
    const char *end = p + gh_common_passwords_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        size_t len = (size_t)(nl - p);
        if (len && p[len - 1] == '\r')
            len--;
        if (len && p[0] != '#')
            set_add(fold_hash(p, len));
        p = nl + 1;
    }
    /* the dummy hash for unknown accounts: same algorithm, same cost */
    char junk[32];
    randombytes_buf(junk, sizeof junk);
    if (crypto_pwhash_str_alg(pw.dummy, junk, sizeof junk, pw.ops, pw.mem,
                              crypto_pwhash_ALG_ARGON2ID13))
        return GH_ENOMEM;
    return 0;
}

void gh_password_dispose(void)
{
    free(pw.set);
    pw.set = NULL;
    pw.count = 0;
}

bool gh_password_is_common(const char *s, size_t len)
{
    if (!pw.set || len > GH_PASSWORD_MAX)
        return false;
    uint64_t h = fold_hash(s, len);
    unsigned i = (unsigned)h & pw.mask;
    while (pw.set[i]) {
        if (pw.set[i] == h)
            return true;
        i = (i + 1) & pw.mask;
    }
    return false;
}

unsigned gh_password_common_count(void)
{
    return pw.count;
}

/* Characters (UTF-8 code points) in s; SIZE_MAX when s is not UTF-8. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > len)
            return SIZE_MAX;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] >> 6) != 2)
                return SIZE_MAX;
        i += k;
        n++;
    }
    return n;
}

int gh_password_acceptable(const char *s, size_t len, const char **why)
{
    if (len > GH_PASSWORD_MAX * 4) {
        *why = "password: too long (at most 256 characters)";
        return GH_EINVAL;
    }
    size_t n = utf8_chars(s, len);
    if (n == SIZE_MAX) {
        *why = "password: not valid UTF-8";
        return GH_EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if (s[i] == 0) {
            *why = "password: must not contain NUL characters";
            return GH_EINVAL;
        }
    if (n < GH_PASSWORD_MIN) {
        *why = "password: too short (at least 8 characters)";
        return GH_EINVAL;
    }
    if (n > GH_PASSWORD_MAX) {
        *why = "password: too long (at most 256 characters)";
        return GH_EINVAL;
    }
    if (gh_password_is_common(s, len)) {
        *why = "password: too common (it is among the most used passwords); choose another";
        return GH_EINVAL;
    }
    return 0;
}

int gh_password_hash(const char *s, size_t len, char out[GH_PWHASH_STR_MAX])
{
    return crypto_pwhash_str_alg(out, s, len, pw.ops, pw.mem, crypto_pwhash_ALG_ARGON2ID13)
               ? GH_ENOMEM
               : 0;
}

int gh_password_verify(const char *hash, const char *s, size_t len)
{
    if (!hash || !*hash) {
        /* the result does not matter, only the time it takes */
        if (crypto_pwhash_str_verify(pw.dummy, s, len) == 0)
            return GH_EINVAL;
        return GH_EINVAL;
    }
    return crypto_pwhash_str_verify(hash, s, len) == 0 ? 0 : GH_EINVAL;
}
