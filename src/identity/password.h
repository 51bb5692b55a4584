/* Passwords: the acceptance rules (8 to 256 characters, not among the
 * most common passwords of data/common-passwords.txt, embedded at build)
 * and argon2id hashing and verification through libsodium. The common
 * list is loaded once by gh_password_init on the main thread and read-only
 * afterwards; hashing and verification are CPU-heavy and belong on the
 * password pool's threads (pwpool.h), never on a loop. */
#pragma once

#include "core/common.h"

#define GH_PASSWORD_MIN 8
#define GH_PASSWORD_MAX 256
#define GH_PWHASH_STR_MAX 128

/* Loads the common-password set and sets the argon2id cost (ops 0 and mem
 * 0: libsodium's interactive defaults). 0 or GH_ENOMEM. */
int gh_password_init(unsigned ops, size_t mem);
void gh_password_dispose(void);

/* Checks pw (len bytes, UTF-8) against the rules. 0, or GH_EINVAL with *why
 * a sentence for the user naming the field. */
int gh_password_acceptable(const char *pw, size_t len, const char **why);
/* True when pw (case-insensitively) is in the common list. */
bool gh_password_is_common(const char *pw, size_t len);
/* Entries in the common list. */
unsigned gh_password_common_count(void);

/* Hashes pw into out (argon2id string). 0 or GH_ENOMEM. */
int gh_password_hash(const char *pw, size_t len, char out[GH_PWHASH_STR_MAX]);
/* 0 when pw matches hash, GH_EINVAL otherwise. With hash NULL it verifies
 * against a fixed dummy hash of the same cost and returns GH_EINVAL: an
 * unknown account costs the same time as a known one. */
int gh_password_verify(const char *hash, const char *pw, size_t len);
