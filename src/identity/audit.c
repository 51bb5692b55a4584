/* This module implements the audit trail of audit.h. */
#include "identity/audit.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gh_audit_log(const char *event, uint64_t user_id, const char *detail)
{
    gh_log(GH_LOG_INFO, "audit", "%s user=%llu %s", event, (unsigned long long)user_id,
           detail ? detail : "{}");
}

int gh_audit_row(struct gh_store_conn *c, const char *event, uint64_t user_id,
                 const char *detail)
{
    struct gh_store_audit a = {.ts_ms = gh_wall_ms(), .user_id = user_id};
    snprintf(a.event, sizeof a.event, "%s", event);
    snprintf(a.detail, sizeof a.detail, "%s", detail ? detail : "{}");
    gh_audit_log(event, user_id, detail);
    return gh_store_audit_insert(c, &a);
}

static int audit_fn(struct gh_store_conn *c, void *arg)
{
    return gh_store_audit_insert(c, arg);
}

static void audit_done(struct gh_worker *w, void *arg, int rc)
{
    free(arg);
}

void gh_audit_queue(struct gh_store *s, const char *event, uint64_t user_id, const char *detail)
{
    gh_audit_log(event, user_id, detail);
    struct gh_store_audit *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->ts_ms = gh_wall_ms();
    a->user_id = user_id;
    snprintf(a->event, sizeof a->event, "%s", event);
    snprintf(a->detail, sizeof a->detail, "%s", detail ? detail : "{}");
    if (gh_store_write(s, audit_fn, a, NULL, audit_done))
        free(a);
}

void gh_audit_mask_phone(const char *e164, char *out, size_t outlen)
{
    size_t n = strlen(e164);
    snprintf(out, outlen, "...%s", n >= 2 ? e164 + n - 2 : "");
}
