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
