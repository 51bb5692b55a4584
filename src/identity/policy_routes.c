/* This module implements the registration policy's routes: GET
 * /api/policy on the public listener, GET and PUT /admin/v1/policy on the
 * admin listener (the policy itself is policy.c). */
#include "identity/internal.h"

/* ---- policy ---- */

void id_h_policy(struct gh_http_req *req)
{
    const struct gh_policy *p = gh_policy_current();
    struct gh_buf b;
    gh_buf_init(&b, 8192);
    gh_policy_render(p, false, &b);
    gh_http_add_header(req, "Cache-Control", "no-cache");
    id_respond_json_buf(req, 200, &b);
    gh_buf_dispose(&b);
}

void id_h_admin_policy_get(struct gh_http_req *req)
{
    struct gh_buf b;
    gh_buf_init(&b, 16384);
    gh_policy_render(gh_policy_current(), true, &b);
    id_respond_json_buf(req, 200, &b);
    gh_buf_dispose(&b);
}

struct policy_job {
    struct gh_http_req *req;
    char *json;     /* the stored form */
    char *answer;   /* the admin answer */
    char detail[256];
};

static int policy_write_fn(struct gh_store_conn *c, void *arg)
{
    struct policy_job *j = arg;
    int rc = gh_store_setting_put(c, "policy", j->json);
    return rc ? rc : gh_audit_row(c, "policy_changed", 0, j->detail);
}

static void policy_write_done(struct gh_worker *w, void *arg, int rc)
{
    struct policy_job *j = arg;
    if (w) {
        if (rc)
            gh_http_respond_error(j->req, 500, "store_error",
                                  "the policy is in force but could not be saved");
        else
            gh_http_respond_json(j->req, 200, j->answer, strlen(j->answer));
    }
    free(j->json);
    free(j->answer);
    free(j);
}

void id_h_admin_policy_put(struct gh_http_req *req)
{
    struct gh_policy *p = NULL;
    const char *why = NULL;
    int rc = gh_policy_parse(req->body.data ? req->body.data : "", req->body.len, req->cfg, &p,
                             &why);
    if (rc) {
        gh_http_respond_error(req, 400, rc == GH_EINVAL ? "invalid_request" : "server_error", "%s",
                              why ? why : "cannot build the policy");
        return;
    }
    struct policy_job *j = calloc(1, sizeof *j);
    if (!j) {
        gh_policy_free(p);
        id_respond_busy(req, "the policy service");
        return;
    }
    j->req = req;
    enum gh_policy_mode mode = p->mode;
    unsigned bits = p->pow_bits;
    uint64_t until = p->until_ms;
    gh_policy_install(p); /* in force on every worker from the next request */
    struct gh_buf b;
    gh_buf_init(&b, 16384);
    gh_policy_render(p, true, &b);
    j->json = gh_buf_steal(&b, NULL);
    j->answer = j->json ? strdup(j->json) : NULL;
    snprintf(j->detail, sizeof j->detail, "{\"mode\":\"%s\",\"pow_bits\":%u,\"until_ms\":%llu}",
             gh_policy_mode_name(mode), bits, (unsigned long long)until);
    if (j->json)
        id_doc_note(&id_policy_doc,
                    j->json); /* the other nodes install it when its message arrives */
    if (!j->json || !j->answer ||
        gh_store_write(ids.store, policy_write_fn, j, req->worker, policy_write_done)) {
        free(j->json);
        free(j->answer);
        free(j);
        gh_http_respond_error(req, 500, "store_error",
                              "the policy is in force but could not be saved");
    }
}
