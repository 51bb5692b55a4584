/* The store's backends (sqlite.c, postgres.c) seen from store.c: a table
 * of functions per backend, the connection every data function takes, and
 * the phone sealing both share. Private to src/store/: store.c dispatches
 * each gh_store_* data function through c->be, so neither backend's SQL
 * leaves its own file. A connection belongs to the one store thread that
 * opened it. */
#pragma once

#include "store/store.h"

struct gh_store_conn {
    const struct gh_store_backend *be;
    const uint8_t *enc_key; /* 32 bytes, owned by the gh_store */
    bool writer;
    bool listener; /* the listener thread's connection (set before open) */
    uint64_t node; /* the node's id, the sender of its messages */
    void *db;      /* the backend's handle: sqlite3 *, or postgres.c's struct pg */
};

/* Transaction steps store.c's threads drive. BEGIN opens a write
 * transaction on the writer and a read-only snapshot on a reader. */
enum gh_store_tx {
    GH_TX_BEGIN,
    GH_TX_SAVEPOINT,
    GH_TX_ROLLBACK_TO,
    GH_TX_RELEASE,
    GH_TX_COMMIT,
    GH_TX_ROLLBACK
};

struct gh_store_backend {
    const char *name;
    /* Opens c (c->enc_key and c->be set by the caller); the writer creates
     * the database where that is the backend's job and applies the pending
     * migrations. 0 or GH_EIO with err set. */
    int (*open)(struct gh_store_conn *c, const struct gh_store_options *o, bool writer,
                struct gh_buf *err);
    /* Closes c; c->db is NULL after. Safe on a closed connection. */
    void (*close)(struct gh_store_conn *c);
    /* One transaction step: 0, GH_EBUSY when the database cannot be reached
     * now (the caller answers 503 and the backend reconnects by itself), or
     * GH_EIO. */
    int (*tx)(struct gh_store_conn *c, enum gh_store_tx step);

    int (*user_insert)(struct gh_store_conn *c, struct gh_user *u);
    int (*user_by_phone)(struct gh_store_conn *c, const uint8_t phone_hash[32],
                         struct gh_user *out);
    int (*user_by_id)(struct gh_store_conn *c, uint64_t id, struct gh_user *out);
    int (*user_newest_before)(struct gh_store_conn *c, uint64_t before_ms, uint64_t *id);
    int (*user_set_password)(struct gh_store_conn *c, uint64_t id, const char *pw_hash);
    int (*user_login_result)(struct gh_store_conn *c, uint64_t id, bool success, uint64_t now_ms);
    int (*user_set_disabled)(struct gh_store_conn *c, uint64_t id, uint64_t disabled_ms);
    int (*user_delete)(struct gh_store_conn *c, uint64_t id);

    int (*session_insert)(struct gh_store_conn *c, struct gh_store_session *s);
    int (*session_delete)(struct gh_store_conn *c, const uint8_t hash[32]);
    int (*sessions_delete_user)(struct gh_store_conn *c, uint64_t user_id);
    int (*session_by_hash)(struct gh_store_conn *c, const uint8_t hash[32], uint64_t now_ms,
                           struct gh_store_session *out);
    int (*sessions_each)(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms,
                         void (*fn)(const struct gh_store_session *, void *), void *arg);

    int (*key_insert)(struct gh_store_conn *c, struct gh_store_key *k);
    int (*key_get)(struct gh_store_conn *c, uint64_t id, struct gh_store_key *out);
    int (*key_revoke)(struct gh_store_conn *c, uint64_t user_id, uint64_t id, uint64_t now_ms,
                      struct gh_store_key *out);
    int (*key_by_hash)(struct gh_store_conn *c, const uint8_t hash[32], struct gh_store_key *out);
    int (*key_touch)(struct gh_store_conn *c, uint64_t id, uint64_t last_used_ms);
    int (*keys_revoke_user)(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms);
    int (*keys_each)(struct gh_store_conn *c, uint64_t user_id, bool include_revoked,
                     void (*fn)(const struct gh_store_key *, void *), void *arg);
    unsigned (*keys_live_count)(struct gh_store_conn *c, uint64_t user_id);

    int (*audit_insert)(struct gh_store_conn *c, const struct gh_store_audit *a);
    int (*audit_each)(struct gh_store_conn *c, uint64_t user_id, unsigned limit,
                      void (*fn)(const struct gh_store_audit *, void *), void *arg);

    int (*usage_add)(struct gh_store_conn *c, const struct gh_store_usage *u);
    int (*usage_each)(struct gh_store_conn *c, uint32_t from, unsigned limit,
                      void (*fn)(const struct gh_store_usage *, void *), void *arg);
    int (*setting_get)(struct gh_store_conn *c, const char *name, struct gh_buf *out);
    int (*setting_put)(struct gh_store_conn *c, const char *name, const char *value);

    /* SMS codes shared by the nodes; NULL on a backend of one node. */
    int (*sms_code_put)(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                        uint64_t expires_ms, unsigned tries);
    int (*sms_code_check)(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                          uint64_t now_ms, int *result);
    int (*sms_outbox_add)(struct gh_store_conn *c, const void *msg, size_t len, uint64_t lease_ms,
                          uint64_t *id);
    int (*sms_outbox_delete)(struct gh_store_conn *c, uint64_t id);
    int (*sms_outbox_claim)(struct gh_store_conn *c, uint64_t now_ms, uint64_t lease_ms,
                            unsigned max,
                            void (*fn)(uint64_t id, const void *msg, size_t len, void *arg),
                            void *arg);

    /* Messages between nodes; NULL on a backend of one node. notify sends
     * payload on the cluster's channel in the current transaction (at its
     * commit). listen waits on c (LISTEN issued on each new connection, and
     * *fresh set then) at most wait_ms or until stop_fd is readable, and
     * calls fn for each payload received: 0, or GH_EBUSY while the server
     * cannot be reached (it paused before returning). */
    int (*notify)(struct gh_store_conn *c, const char *payload);
    int (*listen)(struct gh_store_conn *c, int stop_fd, uint64_t wait_ms,
                  void (*fn)(const char *payload, size_t len, void *arg), void *arg, bool *fresh);
};

extern const struct gh_store_backend gh_store_sqlite;
extern const struct gh_store_backend gh_store_postgres;

/* Sealed phone numbers: crypto_secretbox with a random nonce in front. */
#define GH_STORE_SEAL_MAX (24 + 16 + GH_PHONE_MAX)

/* Seals the E.164 text phone with key into out (GH_STORE_SEAL_MAX bytes);
 * returns the sealed length. */
size_t gh_store_phone_seal(const uint8_t key[32], const char *phone, uint8_t *out);
/* Seals len bytes of in with key into out (GH_STORE_SEAL_OVERHEAD + len
 * bytes); returns the sealed length. */
#define GH_STORE_SEAL_OVERHEAD (24 + 16)
size_t gh_store_seal(const uint8_t key[32], const void *in, size_t len, uint8_t *out);
/* Opens sealed (len bytes) into out (cap bytes): the opened length, or -1
 * (wrong key, damaged, too long). */
long gh_store_unseal(const uint8_t key[32], const uint8_t *sealed, size_t len, uint8_t *out,
                     size_t cap);

/* Opens sealed into phone (GH_PHONE_MAX bytes, NUL-terminated); an
 * unreadable value (wrong key, damaged) leaves phone empty. */
void gh_store_phone_open(const uint8_t key[32], const uint8_t *sealed, size_t len, char *phone);
