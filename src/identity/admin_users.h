/* The operator's user and key routes on the admin listener (bearer admin
 * token, docs/API.md):
 *   GET    /admin/v1/users?phone=+86…      find an account by phone number
 *   GET    /admin/v1/users/{id}            one account
 *   POST   /admin/v1/users/{id}/disable    no sign-in; sessions and keys stop
 *   POST   /admin/v1/users/{id}/enable     sign-in again (and the keys)
 *   GET    /admin/v1/users/{id}/keys       the account's keys, revoked too
 *   DELETE /admin/v1/keys/{id}             revoke a key now
 * Accounts are shown with a masked phone number ("+86*********00"): the
 * operator finds a number they already know, never a list of numbers.
 * Every change (and every look-up by phone) is audited.
 *
 * A disabled account (users.disabled_ms) signs in like an unknown number
 * (the same generic 401, identity.c); its sessions are deleted and its
 * sessions and keys leave the credential cache at once (the cache is the
 * one all workers read). Its keys stay in the store, unloaded while it is
 * disabled, and return to the cache when it is enabled again; its old
 * sessions do not.
 *
 * Registered on the main thread after gh_identity_init (it needs the
 * identity store); handlers run on the admin worker, database work on the
 * store threads. */
#pragma once

#include "core/server.h"

/* 0 or GH_ETOOBIG (route table full). */
int gh_admin_users_init(struct gh_server *srv);

/* Masks an E.164 number for display: the '+', the calling code (calling
 * code digits) and the last two digits kept, the rest '*'. out >= 24. */
void gh_admin_mask_phone(const char *e164, unsigned calling_code, char *out, size_t outlen);
