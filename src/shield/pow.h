/* Proof of work, stateless for the server (docs/API.md, "Proof of work").
 *
 * A challenge is an opaque ASCII string
 *   1.<scope>.<expires_at unix s>.<bits>.<prefix hex>.<nonce hex>.<mac hex>
 * binding a scope (register, sms, login), the client's network prefix
 * (/24 of IPv4, /48 of IPv6), an expiry, the difficulty and 96 random bits,
 * signed with a truncated HMAC-SHA256 under a key derived from the server's
 * hmac_key. A solution is a decimal nonce such that SHA-256(challenge ":"
 * nonce) starts with `bits` zero bits. Verifying costs one HMAC and one
 * hash, plus one look-up in a bounded replay cache that accepts each
 * challenge once.
 *
 * Threads: a gh_pow is made and freed on one thread (start and end); issue
 * and verify may then be called from any thread at once (the replay cache
 * is sharded under mutexes). Time is a parameter (wall-clock ms, since
 * challenges outlive a restart), so tests drive a simulated clock. */
#pragma once

#include "core/common.h"
#include "http/http.h"

#define GH_POW_CHALLENGE_MAX 128
#define GH_POW_BITS_MAX      32

enum gh_pow_scope { GH_POW_REGISTER, GH_POW_SMS, GH_POW_LOGIN, GH_POW_SCOPE_COUNT };

enum gh_pow_result {
    GH_POW_OK = 0,
    GH_POW_MALFORMED,     /* not a challenge of ours, or a nonce that is not a number */
    GH_POW_BAD_SIGNATURE, /* tampered with */
    GH_POW_WRONG_SCOPE,
    GH_POW_WRONG_PREFIX, /* issued to another network */
    GH_POW_EXPIRED,
    GH_POW_TOO_EASY,  /* fewer bits than now required */
    GH_POW_UNSOLVED,  /* the hash lacks the zero bits */
    GH_POW_REPLAYED,  /* already used */
    GH_POW_BUSY,      /* the replay cache is full of live entries */
};

struct gh_pow;

/* A verifier whose key is derived from hmac_key (32 bytes), with a replay
 * cache of replay_max entries. NULL when out of memory. */
struct gh_pow *gh_pow_new(const unsigned char *hmac_key, size_t replay_max);
void gh_pow_free(struct gh_pow *p);

/* Writes a challenge for scope, client and bits valid ttl_ms from now_ms
 * (wall clock) into out (GH_POW_CHALLENGE_MAX bytes). *expires_at gets the
 * expiry in Unix seconds. 0 or GH_EINVAL (bits > GH_POW_BITS_MAX). */
int gh_pow_issue(struct gh_pow *p, enum gh_pow_scope scope, const struct gh_addr *client,
                 unsigned bits, uint64_t ttl_ms, uint64_t now_ms, char *out, size_t outlen,
                 uint64_t *expires_at);

/* Verifies a solution for scope from client, needing at least min_bits.
 * On GH_POW_OK the challenge is recorded and any later use is refused. */
enum gh_pow_result gh_pow_verify(struct gh_pow *p, enum gh_pow_scope scope,
                                 const struct gh_addr *client, unsigned min_bits,
                                 const char *challenge, size_t challenge_len, const char *nonce,
                                 size_t nonce_len, uint64_t now_ms);

/* True when SHA-256(challenge ":" nonce) starts with bits zero bits; the
 * nonce's bytes are hashed as given. */
bool gh_pow_check_hash(const char *challenge, size_t len, const char *nonce, size_t nonce_len,
                       unsigned bits);
/* Finds a nonce (the C solver): tries start, start+1 … (written in decimal
 * without leading zeros) up to max_tries. 0 and *nonce, or GH_ENOTFOUND. */
int gh_pow_solve(const char *challenge, size_t len, unsigned bits, uint64_t start,
                 uint64_t max_tries, uint64_t *nonce);

const char *gh_pow_scope_name(enum gh_pow_scope s);
int gh_pow_scope_parse(const char *s, enum gh_pow_scope *out);
/* A short text for users and logs ("expired", "replayed" …). */
const char *gh_pow_result_name(enum gh_pow_result r);
