/* The audit trail: security events (register, login success and failure,
 * password reset, key create and revoke, policy change, export, deletion)
 * as JSON lines in the error log (event "audit") and as rows of the
 * store's audit table. Never secrets, never a full phone number: at most
 * its last two digits. Any thread. */
#pragma once

#include "store/store.h"

/* Writes the log line now. detail is a JSON object text or NULL. */
void gh_audit_log(const char *event, uint64_t user_id, const char *detail);
/* Inside a write job: the row and the log line. */
int gh_audit_row(struct gh_store_conn *c, const char *event, uint64_t user_id,
                 const char *detail);
/* Queues a row (its own write job) and logs the line. */
void gh_audit_queue(struct gh_store *s, const char *event, uint64_t user_id, const char *detail);
/* Writes {"phone":"…NN","region":"CN"}-style details: the last two digits
 * of e164 masked into out (at least 16 bytes): "+86…00". */
void gh_audit_mask_phone(const char *e164, char *out, size_t outlen);
