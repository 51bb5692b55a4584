/* Session tokens and API keys, and the in-memory credential cache that
 * answers every look-up on the request path (auth.h). The cache is one
 * process-wide table (auth.h's functions take no context), sharded with a
 * mutex per shard and a fixed capacity; any thread may call any function
 * here once gh_tokens_init has run on the main thread. Tokens are 256-bit
 * random values; only their keyed hashes (BLAKE2b with the server's HMAC
 * key) are kept, here and in the store. Callers own the strings they pass
 * and receive copies. */
#pragma once

#include "core/common.h"

#define GH_TOKEN_BYTES      32 /* random bytes in a token */
#define GH_TOKEN_HASH_BYTES 32
#define GH_TOKEN_B64_LEN    43 /* base64url without padding of 32 bytes */
#define GH_API_KEY_LEN      (3 + GH_TOKEN_B64_LEN) /* "sk-" + 43 */
#define GH_API_KEY_PREFIX_LEN 11 /* "sk-" + 8 characters shown in listings */

/* GH_CRED_GONE: a credential deleted with its account, kept until its
 * expiry so that its next use answers "not found" from memory, without a
 * store look-up, however busy the store is. */
enum gh_cred_kind { GH_CRED_SESSION = 1, GH_CRED_KEY = 2, GH_CRED_GONE = 3 };

/* One cached credential. */
struct gh_cred {
    uint8_t hash[GH_TOKEN_HASH_BYTES];
    uint8_t kind;         /* enum gh_cred_kind */
    uint64_t user_id;
    uint64_t id;          /* session or key id (store row) */
    uint64_t expires_ms;  /* wall clock; 0 = never */
    uint64_t idle_ms;     /* idle expiry; 0 = none */
    uint64_t last_seen_ms; /* wall clock; updated by gh_tokens_get */
    uint64_t checked_ms;   /* wall clock of the last store read or write; 0 = now at put */
};

/* Sets up the cache for about capacity credentials and keeps a copy of the
 * hashing key. Main thread, once. 0 or GH_ENOMEM. */
int gh_tokens_init(const uint8_t key[32], unsigned capacity);
/* Frees the cache. Main thread, after every other thread stopped. */
void gh_tokens_dispose(void);

/* The keyed hash of a token (len bytes) into out. */
void gh_token_hash(const char *token, size_t len, uint8_t out[GH_TOKEN_HASH_BYTES]);
/* A new session token: 43 base64url characters and a NUL. */
void gh_token_new_session(char out[GH_TOKEN_B64_LEN + 1]);
/* A new API key: "sk-" + 43 base64url characters and a NUL. */
void gh_token_new_api_key(char out[GH_API_KEY_LEN + 1]);
/* True when s (len bytes) has the shape of an API key. */
bool gh_token_api_key_wellformed(const char *s, size_t len);
/* True when s (len bytes) has the shape of a session token. */
bool gh_token_session_wellformed(const char *s, size_t len);
/* The CSRF token bound to a session token: a keyed hash of it, as 43
 * base64url characters and a NUL (the value of cookie gh_csrf). */
void gh_token_csrf(const char *session, size_t len, char out[GH_TOKEN_B64_LEN + 1]);

/* Adds or replaces a credential; returns 0. A full shard drops its expired
 * entries and then its least recently used one (never refuses): the owner
 * of an evicted credential is found again in the store (gh_auth_reload). */
int gh_tokens_put(const struct gh_cred *c);
/* Replaces the credential of hash (if cached) by a GH_CRED_GONE marker of
 * user_id that lives until expires_ms (wall clock; 0 = until evicted). 0. */
int gh_tokens_bury(const uint8_t hash[GH_TOKEN_HASH_BYTES], uint64_t user_id,
                   uint64_t expires_ms);
/* Live credentials evicted since start; while 0, a miss is final. */
uint64_t gh_tokens_evictions(void);
/* Looks up a live credential by hash at wall time now_ms and marks it seen.
 * 0 with *out filled, or GH_ENOTFOUND (unknown, buried or expired: then
 * removed). */
int gh_tokens_get(const uint8_t hash[GH_TOKEN_HASH_BYTES], uint64_t now_ms, struct gh_cred *out);
/* Like gh_tokens_get without touching or expiring anything; finds
 * GH_CRED_GONE markers too. */
int gh_tokens_peek(const uint8_t hash[GH_TOKEN_HASH_BYTES], struct gh_cred *out);
/* Removes one credential. 0 or GH_ENOTFOUND. */
int gh_tokens_del(const uint8_t hash[GH_TOKEN_HASH_BYTES]);
/* Removes every credential of user_id (kind 0 = sessions and keys, not
 * GH_CRED_GONE markers). Returns how many were removed. Walks every shard:
 * for rare events (deletion, reset, disable). */
unsigned gh_tokens_del_user(uint64_t user_id, int kind);
/* On a store other nodes write: a cached session or key is trusted for
 * ttl_ms after it was last read from (or written to) the store; the first
 * gh_tokens_get past that still answers with it and calls recheck(c)
 * (outside the lock) to have it read again, which restarts the TTL. So a
 * change whose message never came is seen within ttl_ms and one store
 * read. ttl_ms 0 = forever (the default). Main thread, at start. */
void gh_tokens_set_ttl(uint64_t ttl_ms, void (*recheck)(const struct gh_cred *c));
/* Turns the live credential of hash into a GH_CRED_GONE marker until its
 * own expiry (another node ended it). 0, or GH_ENOTFOUND when it is not
 * cached live (then nothing is added). */
int gh_tokens_forget(const uint8_t hash[GH_TOKEN_HASH_BYTES]);
/* The answer of a recheck: fresh (the credential as the store has it now)
 * replaces or adds it, trusted from now; NULL (gone from the store)
 * removes a cached live one. A GH_CRED_GONE marker always stays. Returns
 * whether a live credential of hash is cached after. */
bool gh_tokens_refresh(const uint8_t hash[GH_TOKEN_HASH_BYTES], const struct gh_cred *fresh);
/* Credentials cached now (for metrics and tests). */
unsigned gh_tokens_count(void);
