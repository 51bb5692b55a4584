/* Private declarations shared by the identity subsystem's files:
 * identity.c (the state, small helpers, credential cache misses, sessions,
 * account operations, gone markers, the policy listener, start and stop),
 * signup.c (SMS codes, registration), login.c (failure tiers, login, reset,
 * password change, logout), account.c (me, export, delete, API keys) and
 * policy_routes.c (/api/policy, /admin/v1/policy). Not for other
 * subsystems: they use identity.h and auth.h. Handlers and their
 * completions run on the request's worker loop, *_fn on store threads. */
#pragma once

#include "identity/identity.h"

#include "core/log.h"
#include "http/jsonbody.h"
#include "identity/audit.h"
#include "identity/auth.h"
#include "identity/backoff.h"
#include "identity/kvtab.h"
#include "identity/mecache.h"
#include "identity/password.h"
#include "identity/phone.h"
#include "identity/policy.h"
#include "identity/pwpool.h"
#include "identity/sms.h"
#include "identity/smssend.h"
#include "identity/tokens.h"
#include "shield/shield.h"
#include "status/status.h"
#include "store/store.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOUR_MS (3600ull * 1000)

/* The subsystem's state, defined in identity.c: one per process (the
 * admin routes' ctx must be the server, and auth.h takes no context). */
struct identity {
    struct gh_server *srv;
    struct gh_store *store;
    struct gh_pwpool *pool;
    struct gh_sms *sms;
    struct gh_smssend *sender;
    struct gh_kvtab *fails;   /* login failures per phone and per address */
    struct gh_kvtab *sources; /* per /24 (/48): unresolved logins, last success */
    bool ready;
    /* other nodes write the store too (postgres): a credential missing
     * here may be theirs, so every miss is looked up, not only after an
     * eviction */
    bool shared_store;
    _Atomic uint64_t reg_tat_ns; /* GCRA of the registration cap (level preset) */
    uv_timer_t policy_timer;     /* on the admin worker: pin expiry */
    bool timer_on;
    _Atomic uint64_t *m_policy_changes[4];
    _Atomic uint64_t *m_reg_capped;
    _Atomic uint64_t *m_reloads;   /* credential cache misses looked up in the store */
    _Atomic uint64_t *m_cred_msgs; /* credentials ended by another node (store messages) */
    _Atomic uint64_t *m_rechecks;  /* cached credentials read again past [store] cache_ttl */
    /* GET /api/me answers: from memory, after a wait for the store; and
     * store reads behind a cached answer (account.c) */
    _Atomic uint64_t *m_me_reads[3];
    /* the SMS outbox (shared store): outbox.c */
    _Atomic uint64_t outbox_lease_ms;
    _Atomic bool outbox_sweeping; /* a claim job is queued or running */
    _Atomic uint64_t *m_outbox_claimed, *m_outbox_delivered;
};
extern struct identity ids;

enum op_kind { OP_REGISTER, OP_LOGIN_PW, OP_LOGIN_CODE, OP_RESET };

struct op {
    struct gh_http_req *req;
    enum op_kind kind;
    struct gh_phone phone;
    uint8_t phone_hash[32];
    char password[GH_PASSWORD_MAX * 4 + 1];
    size_t pwlen;
    char pw_hash[GH_PWHASH_STR_MAX];
    struct gh_user user;
    bool found;
    bool verified;
    int rc;
    /* the new session */
    char token[GH_TOKEN_B64_LEN + 1];
    struct gh_store_session sess;
    uint64_t session_max_ms, session_idle_ms;
    unsigned sms_only_after;
    enum gh_pw_prio prio;  /* password login: the source's tier in the pool */
    bool revoke_keys;      /* password reset: revoke every API key too */
    int keys_revoked;      /* how many the reset revoked */
    unsigned sessions_max; /* login: live sessions kept per account */
    struct gone *gone;     /* credentials the write deleted (store thread fills) */
};

#define GONE_MAX 512 /* markers set per write; more are only deleted */

/* Hashes of sessions (and keys) a write deleted, collected on the store
 * thread and marked GH_CRED_GONE in the cache once the write is durable,
 * so that neither a cached copy nor a store look-up racing the write (a
 * reader's snapshot from before it) brings them back. */
struct gone {
    uint64_t user_id;
    unsigned n;
    unsigned total; /* seen, of which the first n are kept */
    struct {
        uint8_t hash[32];
        uint64_t expires_ms; /* 0: a key (the marker lives until evicted) */
    } e[GONE_MAX];
};

/* ---- identity.c: small helpers, sessions, operations, gone markers ---- */

void id_phone_hash(const char *e164, uint8_t out[32]);
uint64_t id_ceil_s(uint64_t ms);
bool id_field_str(struct gh_http_req *req, json_t *o, const char *name, size_t max, const char **s,
                  size_t *len);
bool id_field_phone(struct gh_http_req *req, json_t *o, struct gh_phone *p);
bool id_field_code(struct gh_http_req *req, json_t *o, const char **code, size_t *len);
bool id_field_password(struct gh_http_req *req, json_t *o, const char **pw, size_t *len);
bool id_policy_allows(struct gh_http_req *req, const struct gh_phone *p);
void id_respond_busy(struct gh_http_req *req, const char *what);
bool id_pow_ok(struct gh_http_req *req, json_t *o, enum gh_pow_scope scope, unsigned bits);
bool id_limit_phone(struct gh_http_req *req, enum gh_class cls, const struct gh_phone *p);
bool id_register_cap_ok(struct gh_http_req *req, const struct gh_policy *pol);
void id_respond_json_buf(struct gh_http_req *req, int status, struct gh_buf *b);
int id_user_json(const struct gh_user *u, struct gh_buf *b);
void id_audit_detail(char *out, size_t outlen, const char *e164, const char *region,
                     const char *extra);
bool id_authed(struct gh_http_req *req, bool need_csrf, struct gh_principal *pr);
void id_clear_session_cookies(struct gh_http_req *req);
void id_op_free(struct op *op);
struct op *id_op_new(struct gh_http_req *req, enum op_kind kind, const struct gh_phone *p);
void id_op_new_session(struct op *op);
void id_op_finish_session(struct op *op, int status);
int id_gone_collect(struct gh_store_conn *c, uint64_t user_id, bool keys, struct gone **out);
void id_gone_bury(const struct gone *g);
int id_sessions_cap(struct gh_store_conn *c, uint64_t user_id, unsigned max, struct gone **out);
bool id_account_login_rate_ok(struct op *op);

/* ---- shared.c: documents every node of a cluster keeps the same ---- */

struct id_doc;
extern struct id_doc id_policy_doc; /* the registration policy's stored JSON */
/* Notes text as d's version in force here; true when it differs from the
 * last noted (then it is news). Any thread. */
bool id_doc_note(struct id_doc *d, const char *text);
/* Hears other nodes' versions of d (main thread, before the listener). */
int id_doc_subscribe(struct id_doc *d);
void id_docs_dispose(void);

/* ---- login.c ---- */

bool id_source_vouched(const struct gh_http_req *req, const uint8_t phone_hash[32]);
void id_source_success(const struct gh_http_req *req, const uint8_t phone_hash[32]);
void id_h_login(struct gh_http_req *req);
void id_h_reset(struct gh_http_req *req);
void id_h_password_change(struct gh_http_req *req);
void id_h_logout(struct gh_http_req *req);

/* ---- outbox.c: the SMS outbox on a shared store ---- */

/* Metrics and the lease; main thread, at start. */
void id_outbox_init(const struct gh_config *cfg);
/* Adds msg to the outbox in c's transaction, leased to this node: *id. */
int id_outbox_add(struct gh_store_conn *c, const struct gh_smssend_msg *msg, uint64_t *id);
/* Hands row id's message to this node's sender. Any thread. */
void id_outbox_send(uint64_t id, const struct gh_smssend_msg *msg);
/* The sender's verdict on row id (sender thread): the row is deleted. */
void id_outbox_done(uint64_t id, bool delivered, void *arg);
/* Claims the rows whose lease ended (other nodes' or this one's, after a
 * stop or a crash) and hands them to the sender; w runs the answer. Once a
 * second on the admin worker. */
void id_outbox_sweep(struct gh_worker *w);

/* ---- signup.c ---- */

void id_h_sms_code(struct gh_http_req *req);
void id_hash_fn(void *arg);
void id_respond_bad_code(struct gh_http_req *req);
/* Checks (and consumes) a code: in the cluster's shared store when there
 * is one (a store job), else in this node's memory (at once). Answers 400
 * invalid_code for a wrong one (503 busy when the store cannot tell), then
 * calls then(req, ok, arg) on req's worker, or then(NULL, false, arg) on a
 * store thread when the worker stopped (only to free arg). */
typedef void (*id_code_fn)(struct gh_http_req *req, bool ok, void *arg);
void id_check_code(struct gh_http_req *req, const char *e164, enum gh_sms_purpose p,
                   const char *code, size_t len, id_code_fn then, void *arg);
void id_h_register(struct gh_http_req *req);

/* ---- account.c (route handlers) ---- */

void id_h_me(struct gh_http_req *req);
void id_h_export(struct gh_http_req *req);
void id_h_delete_me(struct gh_http_req *req);
void id_h_key_create(struct gh_http_req *req);
void id_h_key_list(struct gh_http_req *req);
void id_h_key_delete(struct gh_http_req *req);

/* ---- policy_routes.c (route handlers) ---- */

void id_h_policy(struct gh_http_req *req);
void id_h_admin_policy_get(struct gh_http_req *req);
void id_h_admin_policy_put(struct gh_http_req *req);
