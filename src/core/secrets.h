/* The data directory and the server's secrets. At start the data directory
 * is created with mode 0700; the HMAC and encryption keys (data_dir/secrets)
 * and the admin token (data_dir/admin.token) are generated on first start
 * with mode 0600, or taken from configuration. Main thread only; the result
 * is read-only afterwards and may be shared by every thread. */
#pragma once

#include "core/buf.h"
#include "core/config.h"

#define GH_KEY_BYTES 32

struct gh_secrets {
    unsigned char hmac_key[GH_KEY_BYTES]; /* keyed hashes, signatures (PoW, webhooks) */
    unsigned char enc_key[GH_KEY_BYTES];  /* secretbox of personal data */
    char admin_token[257];
};

/* Creates dir (and parents) with mode 0700 if missing; tightens a directory
 * that others can write to. 0 or GH_EIO with a message in err. */
int gh_datadir_prepare(const char *dir, struct gh_buf *err);
/* Fills s from cfg, generating and persisting what is missing. */
int gh_secrets_load(const struct gh_config *cfg, struct gh_secrets *s, struct gh_buf *err);
/* Reads the admin token the way `gatehouse ctl` finds it: cfg's value, else
 * data_dir/admin.token. 0 or GH_ENOTFOUND. */
int gh_secrets_admin_token(const struct gh_config *cfg, char *out, size_t outlen);
