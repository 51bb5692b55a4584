/* The account store: users, sessions, API keys, the audit trail and small
 * settings (the registration policy). No SQL exists outside src/store/.
 *
 * Threads: every call that touches the database runs on a store thread,
 * never on an event loop. gh_store_write queues a job for the one writer
 * thread, which runs queued jobs in one transaction (group commit, a
 * savepoint per job, synchronous=FULL: when the job's callback runs, what
 * it wrote is durable). gh_store_read queues a job for the reader threads
 * (their own connections; WAL lets them read while the writer writes).
 * A job is fn(conn, arg) run on the store thread, then done(w, arg, rc)
 * posted to worker w with fn's result. The gh_store_* data functions below
 * take that conn and are called from inside fn only.
 *
 * Personal data: phone numbers are stored encrypted (secretbox with the
 * server's encryption key) with a keyed hash column for look-ups; the
 * store encrypts and decrypts, callers pass and get E.164 text.
 *
 * Backends: sqlite.c (a file in data_dir, the default) and postgres.c
 * (libpq; a bounded pool: one connection per store thread, reconnecting by
 * itself). store.c dispatches every data function to the backend of the
 * connection (backend.h). While PostgreSQL cannot be reached, jobs end
 * with GH_EBUSY without running fn (callers answer 503 busy). */
#pragma once

#include "core/buf.h"
#include "core/common.h"

struct gh_worker;
struct gh_store;
struct gh_store_conn;

#define GH_PHONE_MAX    24 /* E.164: '+' and at most 15 digits, NUL */
#define GH_PWHASH_MAX   128
#define GH_KEY_NAME_MAX 64

struct gh_user {
    uint64_t id;
    uint8_t phone_hash[32];
    char phone[GH_PHONE_MAX]; /* E.164 */
    char region[4];           /* "CN" */
    unsigned calling_code;
    char pw_hash[GH_PWHASH_MAX]; /* argon2id string */
    uint64_t created_ms;         /* wall clock */
    uint64_t last_login_ms;
    unsigned failed_logins; /* consecutive */
    uint64_t disabled_ms;   /* wall clock of an operator's disable; 0 = active */
};

struct gh_store_session {
    uint64_t id;
    uint64_t user_id;
    uint8_t hash[32];
    uint64_t created_ms;
    uint64_t expires_ms;
};

struct gh_store_key {
    uint64_t id;
    uint64_t user_id;
    uint8_t hash[32];
    char prefix[16];
    char name[GH_KEY_NAME_MAX + 1];
    uint64_t created_ms;
    uint64_t last_used_ms;
    uint64_t revoked_ms; /* 0 = live */
};

struct gh_store_audit {
    uint64_t ts_ms;
    char event[32];
    uint64_t user_id;
    char detail[512]; /* JSON object text */
};

typedef int (*gh_store_fn)(struct gh_store_conn *c, void *arg);
/* w is the worker named at submission, or NULL when the job could not be
 * delivered there (the worker stopped): then it runs on the store thread
 * and must only free arg. */
typedef void (*gh_store_done_fn)(struct gh_worker *w, void *arg, int rc);

struct gh_store_options {
    const char *backend;           /* "sqlite" (default when NULL) or "postgres" */
    const char *path;              /* sqlite: database file */
    const char *url;               /* postgres: postgresql:// URL or libpq conninfo */
    uint64_t connect_timeout_ms;   /* postgres: one connection attempt */
    uint64_t statement_timeout_ms; /* postgres: per statement; 0 = the server's */
    const uint8_t *enc_key;        /* 32 bytes, for phone numbers */
    /* 32 bytes, the node's keyed-hash key: with enc_key, checked at open
     * against the key check value the database holds (written by the
     * first node to open it); NULL = no check */
    const uint8_t *hmac_key;
    unsigned queue_max;            /* jobs waiting per queue (writer, readers) */
    unsigned readers;              /* reader threads */
    /* postgres: hear the other nodes' messages (a listener thread with its
     * own connection, LISTEN); false = rely on the credential cache's TTL
     * alone (e.g. behind a pooler in transaction mode, where LISTEN does
     * not work) */
    bool listen;
};

/* Opens (creating if needed) the database, applies pending migrations,
 * checks the keys (o->hmac_key) and starts the threads. Main thread (it
 * blocks: start-up only). 0 or a negative code with err set (GH_EINVAL: an
 * unknown backend; GH_EPERM: the database was written with other keys, a
 * node whose secrets differ from the cluster's). */
int gh_store_open(const struct gh_store_options *o, struct gh_store **out, struct gh_buf *err);
/* Runs the queued jobs, stops the threads and closes. Main thread. */
void gh_store_close(struct gh_store *s);

/* Queues a write job. done may be NULL (fire and forget: audit rows).
 * 0, or GH_EBUSY when the queue is full (fn and done never run). */
int gh_store_write(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                   gh_store_done_fn done);
/* Queues a read job for a reader thread; same convention. While it is
 * out, w's loop, when saturated, gives way to the store's threads at the
 * end of each turn (gh_worker_job_begin): a request waits for it. */
int gh_store_read(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                  gh_store_done_fn done);
/* The same for a read that no request waits for (a cache refreshed
 * behind its answer): the loop does not give way to it. */
int gh_store_read_behind(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                         gh_store_done_fn done);
/* Runs fn on a private read connection of the calling thread, now, for
 * start-up loading on the main thread (it blocks). */
int gh_store_read_now(struct gh_store *s, gh_store_fn fn, void *arg);
/* Jobs waiting, for metrics. */
unsigned gh_store_pending(struct gh_store *s);

/* ---- data functions: only inside a job's fn ---- */

/* Inserts u (id ignored; filled). GH_EEXIST when the phone is taken. */
int gh_store_user_insert(struct gh_store_conn *c, struct gh_user *u);
/* 0 and *out, or GH_ENOTFOUND. */
int gh_store_user_by_phone(struct gh_store_conn *c, const uint8_t phone_hash[32],
                           struct gh_user *out);
int gh_store_user_by_id(struct gh_store_conn *c, uint64_t id, struct gh_user *out);
/* The largest id of a user created before before_ms (wall clock) in *id,
 * 0 when none (ids grow with creation: the fair queue's established tier). */
int gh_store_user_newest_before(struct gh_store_conn *c, uint64_t before_ms, uint64_t *id);
int gh_store_user_set_password(struct gh_store_conn *c, uint64_t id, const char *pw_hash);
/* Records a login attempt: success resets the consecutive failures and sets
 * last_login; failure increments them. */
int gh_store_user_login_result(struct gh_store_conn *c, uint64_t id, bool success, uint64_t now_ms);
/* Disables (disabled_ms = wall clock) or enables (0) the account.
 * GH_ENOTFOUND. A disabled account gets no new session or key, and its
 * sessions and keys are left out of the start-up load (each with
 * user_id 0 below). */
int gh_store_user_set_disabled(struct gh_store_conn *c, uint64_t id, uint64_t disabled_ms);
/* Deletes the user with their sessions and keys. GH_ENOTFOUND. */
int gh_store_user_delete(struct gh_store_conn *c, uint64_t id);

/* GH_ENOTFOUND when the user is disabled (or gone). */
int gh_store_session_insert(struct gh_store_conn *c, struct gh_store_session *s);
int gh_store_session_delete(struct gh_store_conn *c, const uint8_t hash[32]);
/* Deletes every session of user_id; returns how many (>= 0) or GH_EIO. */
int gh_store_sessions_delete_user(struct gh_store_conn *c, uint64_t user_id);
/* The session of hash, live at now_ms, of an account that is not
 * disabled: 0 and *out, or GH_ENOTFOUND (the credential cache's miss path). */
int gh_store_session_by_hash(struct gh_store_conn *c, const uint8_t hash[32], uint64_t now_ms,
                             struct gh_store_session *out);
/* Calls fn for every session of user_id (0 = every live one at now_ms of
 * every account that is not disabled). */
int gh_store_sessions_each(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms,
                           void (*fn)(const struct gh_store_session *, void *), void *arg);

/* GH_ENOTFOUND when the user is disabled (or gone). */
int gh_store_key_insert(struct gh_store_conn *c, struct gh_store_key *k);
/* Any key by id, revoked or not, whoever owns it. GH_ENOTFOUND. */
int gh_store_key_get(struct gh_store_conn *c, uint64_t id, struct gh_store_key *out);
/* Revokes key id of user_id; *out gets the key. GH_ENOTFOUND when there is
 * no live key of that user with that id. */
int gh_store_key_revoke(struct gh_store_conn *c, uint64_t user_id, uint64_t id, uint64_t now_ms,
                        struct gh_store_key *out);
/* The live key of hash of an account that is not disabled: 0 and *out, or
 * GH_ENOTFOUND. */
int gh_store_key_by_hash(struct gh_store_conn *c, const uint8_t hash[32], struct gh_store_key *out);
int gh_store_key_touch(struct gh_store_conn *c, uint64_t id, uint64_t last_used_ms);
/* Revokes every live key of user_id at now_ms; returns how many (>= 0) or
 * GH_EIO. */
int gh_store_keys_revoke_user(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms);
/* Calls fn for the keys of user_id (0 = every live key of every account
 * that is not disabled). */
int gh_store_keys_each(struct gh_store_conn *c, uint64_t user_id, bool include_revoked,
                       void (*fn)(const struct gh_store_key *, void *), void *arg);
unsigned gh_store_keys_live_count(struct gh_store_conn *c, uint64_t user_id);

int gh_store_audit_insert(struct gh_store_conn *c, const struct gh_store_audit *a);
/* Calls fn for the audit rows of user_id, newest first, at most limit. */
int gh_store_audit_each(struct gh_store_conn *c, uint64_t user_id, unsigned limit,
                        void (*fn)(const struct gh_store_audit *, void *), void *arg);

/* Usage of the chat API per UTC day, API key (0: the web chat) and user:
 * totals that every node adds its counts to. */
struct gh_store_usage {
    uint32_t day; /* UTC days since the epoch */
    uint64_t key_id, user_id;
    uint64_t requests, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens;
    uint64_t cut_short;
};

/* Adds u's counts to the row of (day, key_id, user_id), created at zero. */
int gh_store_usage_add(struct gh_store_conn *c, const struct gh_store_usage *u);
/* Calls fn for the rows of day from on, newest day first, at most limit. */
int gh_store_usage_each(struct gh_store_conn *c, uint32_t from, unsigned limit,
                        void (*fn)(const struct gh_store_usage *, void *), void *arg);

/* Small settings: value text under a name. GH_ENOTFOUND. */
int gh_store_setting_get(struct gh_store_conn *c, const char *name, struct gh_buf *out);
int gh_store_setting_put(struct gh_store_conn *c, const char *name, const char *value);

/* ---- SMS codes shared by the nodes (postgres only) ----
 *
 * The live code of a number and purpose under key (the caller's keyed hash
 * of both): the code's keyed hash (never the code), its expiry (wall clock)
 * and the tries left; one live code per key. On sqlite (one node) codes
 * stay in the node's memory (identity/sms.c): both return GH_EINVAL. */

/* Stores the code of key, replacing any live one (and dropping expired
 * codes of every number). */
int gh_store_sms_code_put(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                          uint64_t expires_ms, unsigned tries);
/* Checks hash against the live code of key at now_ms and consumes it:
 * *result 0 (right: deleted), GH_EINVAL (wrong: a try used, the last one
 * deletes it) or GH_ENOTFOUND (none live). Returns 0 (*result set) or the
 * store's error. */
int gh_store_sms_code_check(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                            uint64_t now_ms, int *result);

/* ---- the SMS outbox (postgres only) ----
 *
 * Messages accepted but maybe not delivered yet: a row per message (the
 * message sealed with the encryption key: it holds a phone number and a
 * code) with a lease. The node that adds a row leases it and hands it to
 * its sender; a row whose lease ran out (its node died, or stopped before
 * delivering) is claimed by any node's sweeper. Delivered (or given up):
 * deleted. On sqlite: GH_EINVAL. */

#define GH_STORE_OUTBOX_MSG_MAX 1024 /* a message's bytes */

/* Adds msg (len bytes, at most GH_STORE_OUTBOX_MSG_MAX) leased until
 * lease_ms (wall clock); *id gets the row's id. */
int gh_store_sms_outbox_add(struct gh_store_conn *c, const void *msg, size_t len, uint64_t lease_ms,
                            uint64_t *id);
/* Deletes row id (delivered or given up). GH_ENOTFOUND. */
int gh_store_sms_outbox_delete(struct gh_store_conn *c, uint64_t id);
/* Claims at most max rows whose lease ended by now_ms (rows another node
 * is claiming are skipped, never waited for), leases them until lease_ms
 * and calls fn for each with its opened message (a row that cannot be
 * opened, written with other keys or damaged, is deleted: no node could
 * send it). Returns how many were claimed (>= 0) or an error. */
int gh_store_sms_outbox_claim(struct gh_store_conn *c, uint64_t now_ms, uint64_t lease_ms,
                              unsigned max,
                              void (*fn)(uint64_t id, const void *msg, size_t len, void *arg),
                              void *arg);

/* ---- messages between the nodes of a cluster ----
 *
 * On the postgres backend the data functions that end a credential
 * (session_delete, sessions_delete_user, key_revoke, keys_revoke_user,
 * user_set_disabled with a time, user_delete) and setting_put send a small
 * message with NOTIFY in the job's own transaction: PostgreSQL delivers it
 * at COMMIT only (never for a job rolled back) to every node's listener
 * thread. A node ignores its own messages (it changed its memory itself).
 * A message holds a kind, a keyed hash or a user id or a setting's name:
 * never a phone number nor a secret. On sqlite (one node) nothing is sent. */

#define GH_STORE_SETTING_NAME_MAX 48
#define GH_STORE_MSG_MAX          128 /* encoded, with the NUL */

enum gh_store_msg_kind {
    GH_STORE_MSG_SESSION = 's', /* hash: a session ended */
    GH_STORE_MSG_KEY = 'k',     /* hash: an API key revoked */
    GH_STORE_MSG_USER = 'u',    /* user_id: every credential of the account to be read again */
    GH_STORE_MSG_SETTING = 'd', /* name: a setting (document) changed */
};

struct gh_store_msg {
    uint64_t node; /* the sending node (random at start) */
    char kind;     /* enum gh_store_msg_kind */
    uint8_t hash[32];
    uint64_t user_id;
    char name[GH_STORE_SETTING_NAME_MAX + 1];
};

/* "v1:<node, 16 hex>:<kind>:<64 hex | decimal id | name>" into out (cap
 * bytes, GH_STORE_MSG_MAX is enough). Its length, or GH_EINVAL. */
int gh_store_msg_encode(const struct gh_store_msg *m, char *out, size_t cap);
/* Parses what gh_store_msg_encode wrote (s, len bytes, not necessarily
 * NUL-terminated). 0 or GH_EINVAL for anything else. */
int gh_store_msg_decode(const char *s, size_t len, struct gh_store_msg *m);
/* A setting name a message may carry: 1..48 of [a-z0-9_.-]. */
bool gh_store_setting_name_ok(const char *name);

/* Called on the listener thread for each credential message of another
 * node (kinds s, k, u). */
typedef void (*gh_store_cred_fn)(const struct gh_store_msg *m, void *arg);
/* Called on the listener thread when another node changed setting name,
 * and for every subscribed name each time the listener (re)connects
 * (messages may have been missed meanwhile): c is the listener's own
 * connection, to read the setting again with gh_store_setting_get. */
typedef void (*gh_store_setting_fn)(struct gh_store_conn *c, const char *name, void *arg);

/* Subscribes; main thread, before serving. The credential subscriber is
 * one; setting subscribers are at most 16. 0, GH_ETOOBIG or GH_EINVAL. */
int gh_store_on_credentials(struct gh_store *s, gh_store_cred_fn fn, void *arg);
int gh_store_on_setting(struct gh_store *s, const char *name, gh_store_setting_fn fn, void *arg);
/* Starts the listener thread (postgres with o->listen; otherwise nothing).
 * Main thread, after the subscriptions. 0 or GH_EIO. */
int gh_store_listen_start(struct gh_store *s);
/* Stops the listener thread (gh_store_close does too): no subscriber is
 * called after it returns. Main thread; NULL or not started: nothing. */
void gh_store_listen_stop(struct gh_store *s);
/* Whether other nodes may write this store (postgres). */
bool gh_store_shared(const struct gh_store *s);
