/* The identity subsystem: accounts (phone + SMS code + password),
 * sessions, API keys, the registration policy and the audit trail, with
 * their routes on the public and admin listeners. gh_identity_init runs on
 * the main thread before the server starts: it opens the store
 * (<data>/gatehouse.db), loads live sessions and keys into the credential
 * cache (tokens.h), starts the password pool and the SMS sender, and
 * registers the routes. Everything it creates lives until
 * gh_identity_dispose (main thread, after the server stopped). */
#pragma once

#include "core/server.h"

struct gh_store;
struct gh_pwpool;

/* 0, or a negative code with a message in err. */
int gh_identity_init(struct gh_server *srv, struct gh_buf *err);
void gh_identity_dispose(void);

/* The subsystem's store and password pool, for its other modules (the
 * admin user routes, the live summary). NULL before gh_identity_init and
 * after gh_identity_dispose; any thread in between. */
struct gh_store *gh_identity_store(void);
struct gh_pwpool *gh_identity_pwpool(void);

/* On a store other nodes write (postgres): the status page's incidents and
 * overrides become a document every node keeps the same (the policy is
 * shared from gh_identity_init on). Main thread, after gh_status_init and
 * before gh_store_listen_start. 0 or a GH_E* code. */
int gh_identity_share_state(void);

/* A document (a settings row of the store) that every node of a cluster
 * keeps the same, for the subsystems above identity: apply(text, arg)
 * installs another node's version (on the store's listener thread, and
 * now with what the store holds); gh_shared_doc_save stores this node's
 * (already in force here; any thread). NULL on a store no other node
 * writes (then save does nothing). Main thread, before
 * gh_store_listen_start. */
struct gh_shared_doc;
struct gh_shared_doc *gh_identity_share_doc(const char *name,
                                            int (*apply)(const char *text, void *arg), void *arg);
void gh_shared_doc_save(struct gh_shared_doc *d, const char *text);
/* No other node's version is applied after this returns (the owner is
 * going away). NULL does nothing. */
void gh_shared_doc_close(struct gh_shared_doc *d);
