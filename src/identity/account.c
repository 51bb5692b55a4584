/* This module implements the identity subsystem's account routes:
 * GET /api/me, GET /api/me/export, DELETE /api/me and the API keys
 * (POST, GET /api/keys, DELETE /api/keys/{id}). */
#include "identity/internal.h"

/* ---- GET /api/me, GET /api/me/export, DELETE /api/me ---- */

enum { ME_READ_CACHED, ME_READ_WAITED, ME_READ_REFRESH };

static void me_count(int kind)
{
    if (ids.m_me_reads[kind])
        atomic_fetch_add_explicit(ids.m_me_reads[kind], 1, memory_order_relaxed);
}

struct me_job {
    struct gh_http_req *req;
    uint64_t user_id;
    struct gone *gone; /* delete: the account's credentials */
    bool export;
    uint64_t gen; /* the answer cache's slot generation at the read */
    struct gh_buf out;
    int rc;
};

static void export_session(const struct gh_store_session *s, void *arg)
{
    struct gh_buf *b = arg;
    char c[40], e[40];
    gh_buf_printf(b, "%s{\"id\":%llu,\"created_at\":\"%s\",\"expires_at\":\"%s\"}",
                  b->data[b->len - 1] == '[' ? "" : ",", (unsigned long long)s->id,
                  gh_time_rfc3339(s->created_ms, c, sizeof c),
                  gh_time_rfc3339(s->expires_ms, e, sizeof e));
}

static void key_json(const struct gh_store_key *k, struct gh_buf *b, uint64_t last_used)
{
    char c[40], l[40], r[40];
    uint64_t lu = GH_MAX(k->last_used_ms, last_used);
    gh_buf_printf(b, "%s{\"id\":%llu,\"name\":\"", b->data[b->len - 1] == '[' ? "" : ",",
                  (unsigned long long)k->id);
    gh_buf_append_json_str(b, k->name, strlen(k->name));
    gh_buf_printf(b, "\",\"prefix\":\"%s\",\"created_at\":\"%s\",\"last_used_at\":%s%s%s", k->prefix,
                  gh_time_rfc3339(k->created_ms, c, sizeof c), lu ? "\"" : "",
                  lu ? gh_time_rfc3339(lu, l, sizeof l) : "null", lu ? "\"" : "");
    if (k->revoked_ms)
        gh_buf_printf(b, ",\"revoked_at\":\"%s\"", gh_time_rfc3339(k->revoked_ms, r, sizeof r));
    gh_buf_append_str(b, "}");
}

static void export_key(const struct gh_store_key *k, void *arg)
{
    struct gh_cred c;
    uint64_t lu = !k->revoked_ms && gh_tokens_peek(k->hash, &c) == 0 ? c.last_seen_ms : 0;
    key_json(k, arg, lu);
}

static void export_audit(const struct gh_store_audit *a, void *arg)
{
    struct gh_buf *b = arg;
    char t[40];
    gh_buf_printf(b, "%s{\"at\":\"%s\",\"event\":\"", b->data[b->len - 1] == '[' ? "" : ",",
                  gh_time_rfc3339(a->ts_ms, t, sizeof t));
    gh_buf_append_json_str(b, a->event, strlen(a->event));
    gh_buf_printf(b, "\",\"detail\":%s}", a->detail[0] ? a->detail : "{}");
}

static int me_read_fn(struct gh_store_conn *c, void *arg)
{
    struct me_job *j = arg;
    struct gh_user u;
    int rc = gh_store_user_by_id(c, j->user_id, &u);
    if (rc)
        return rc;
    struct gh_buf *b = &j->out;
    gh_buf_append_str(b, "{\"user\":");
    id_user_json(&u, b);
    if (j->export) {
        char now[40];
        gh_buf_printf(b, ",\"exported_at\":\"%s\",\"sessions\":[",
                      gh_time_rfc3339(gh_wall_ms(), now, sizeof now));
        gh_store_sessions_each(c, j->user_id, 0, export_session, b);
        gh_buf_append_str(b, "],\"api_keys\":[");
        gh_store_keys_each(c, j->user_id, true, export_key, b);
        gh_buf_append_str(b, "],\"audit\":[");
        gh_store_audit_each(c, j->user_id, 1000, export_audit, b);
        gh_buf_append_str(b, "]");
    }
    sodium_memzero(&u, sizeof u);
    return gh_buf_append_str(b, "}");
}

static void me_done(struct gh_worker *w, void *arg, int rc)
{
    struct me_job *j = arg;
    /* {"user":…}: the cache keeps the user object */
    if (w && !rc && !j->export && j->out.len > 9)
        gh_mecache_put(j->user_id, j->gen, gh_now_ms(), j->out.data + 8, j->out.len - 9);
    if (w && !j->req) {
        /* a refresh behind a cached answer: only the cache hears it; a
         * record deleted elsewhere drops the entry (the next ask reads) */
        if (rc == GH_ENOTFOUND)
            gh_mecache_drop(j->user_id);
    } else if (w) {
        if (rc == GH_ENOTFOUND)
            gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        else if (rc)
            id_respond_busy(j->req, "the account service");
        else {
            if (j->export) {
                gh_http_add_header(j->req, "Content-Disposition",
                                   "attachment; filename=\"gatehouse-export.json\"");
                gh_audit_queue(ids.store, "export", j->user_id, NULL);
            }
            gh_http_add_header(j->req, "Cache-Control", "no-store");
            id_respond_json_buf(j->req, 200, &j->out);
        }
    }
    gh_buf_dispose(&j->out);
    free(j);
}

/* Reads user_id's record on the store's reader pool for req (NULL: a
 * refresh of the answer cache, answered to no one), back on w's loop. 0
 * or GH_E* (nothing started). */
static int me_read(struct gh_worker *w, struct gh_http_req *req, uint64_t user_id, bool export)
{
    struct me_job *j = calloc(1, sizeof *j);
    if (!j)
        return GH_ENOMEM;
    j->req = req;
    j->user_id = user_id;
    j->export = export;
    j->gen = gh_mecache_gen(user_id);
    gh_buf_init(&j->out, export ? 16u << 20 : 64u << 10);
    int rc = req ? gh_store_read(ids.store, me_read_fn, j, w, me_done)
                 : gh_store_read_behind(ids.store, me_read_fn, j, w, me_done);
    if (rc) {
        gh_buf_dispose(&j->out);
        free(j);
    }
    return rc;
}

static void me_common(struct gh_http_req *req, bool export)
{
    struct gh_principal pr;
    if (!id_authed(req, false, &pr))
        return;
    if (!export) {
        char json[GH_MECACHE_MAX];
        bool refresh;
        size_t n = gh_mecache_get(pr.user_id, gh_now_ms(), json, &refresh);
        if (n) {
            struct gh_worker *w = req->worker;
            gh_http_add_header(req, "Cache-Control", "no-store");
            char body[GH_MECACHE_MAX + 16];
            int len = snprintf(body, sizeof body, "{\"user\":%.*s}", (int)n, json);
            gh_http_respond_json(req, 200, body, (size_t)len);
            me_count(ME_READ_CACHED);
            /* the answer is out; the read behind it (its failure leaves the
             * entry to expire, and the next ask after that waits) */
            if (refresh && !me_read(w, NULL, pr.user_id, false))
                me_count(ME_READ_REFRESH);
            return;
        }
    }
    if (!export)
        me_count(ME_READ_WAITED);
    if (me_read(req->worker, req, pr.user_id, export))
        id_respond_busy(req, "the account service");
}

void id_h_me(struct gh_http_req *req)
{
    me_common(req, false);
}

void id_h_export(struct gh_http_req *req)
{
    me_common(req, true);
}

static int delete_fn(struct gh_store_conn *c, void *arg)
{
    struct me_job *j = arg;
    int rc = id_gone_collect(c, j->user_id, true, &j->gone);
    rc = rc ? rc : gh_store_user_delete(c, j->user_id);
    if (rc)
        return rc;
    return gh_audit_row(c, "account_deleted", j->user_id, NULL);
}

static void delete_done(struct gh_worker *w, void *arg, int rc)
{
    struct me_job *j = arg;
    /* again after the write: a login that raced the deletion; then every
     * credential of the account answers 401 from memory, never from the
     * store (however busy it is) */
    gh_tokens_del_user(j->user_id, 0);
    if (!rc)
        id_gone_bury(j->gone);
    free(j->gone);
    j->gone = NULL;
    if (w) {
        if (rc && rc != GH_ENOTFOUND) {
            id_respond_busy(j->req, "the account service");
        } else {
            id_clear_session_cookies(j->req);
            gh_http_respond(j->req, 204, NULL, NULL, 0);
        }
    }
    free(j);
}

void id_h_delete_me(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!id_authed(req, true, &pr))
        return;
    struct me_job *j = calloc(1, sizeof *j);
    if (!j) {
        id_respond_busy(req, "the account service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    /* sessions and keys stop working on every worker now */
    gh_tokens_del_user(pr.user_id, 0);
    if (gh_store_write(ids.store, delete_fn, j, req->worker, delete_done)) {
        free(j);
        id_respond_busy(req, "the account service");
    }
}

/* ---- API keys ---- */

struct key_job {
    struct gh_http_req *req;
    uint64_t user_id;
    unsigned max;
    char token[GH_API_KEY_LEN + 1];
    struct gh_store_key key;
    struct gh_buf out;
};

static void key_job_free(struct key_job *j)
{
    sodium_memzero(j->token, sizeof j->token);
    gh_buf_dispose(&j->out);
    free(j);
}

static int key_create_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    if (gh_store_keys_live_count(c, j->user_id) >= j->max)
        return GH_ETOOBIG;
    struct gh_user u;
    if (gh_store_user_by_id(c, j->user_id, &u))
        return GH_ENOTFOUND;
    int rc = gh_store_key_insert(c, &j->key);
    if (rc)
        return rc;
    char d[128];
    snprintf(d, sizeof d, "{\"key_id\":%llu,\"prefix\":\"%s\"}", (unsigned long long)j->key.id,
             j->key.prefix);
    return gh_audit_row(c, "key_created", j->user_id, d);
}

static void key_create_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (!w)
        goto out;
    if (rc == GH_ETOOBIG) {
        gh_http_respond_error(j->req, 422, "invalid_parameter",
                              "name: you already have the maximum number of keys (%u); revoke one",
                              j->max);
        goto out;
    }
    if (rc == GH_ENOTFOUND) {
        gh_http_respond_error(j->req, 401, "unauthorized", "sign in first");
        goto out;
    }
    struct gh_cred c = {.kind = GH_CRED_KEY, .user_id = j->user_id, .id = j->key.id};
    memcpy(c.hash, j->key.hash, 32);
    if (rc || gh_tokens_put(&c)) {
        id_respond_busy(j->req, "the key service");
        goto out;
    }
    char ts[40];
    gh_buf_printf(&j->out, "{\"id\":%llu,\"key\":\"%s\",\"prefix\":\"%s\",\"name\":\"",
                  (unsigned long long)j->key.id, j->token, j->key.prefix);
    gh_buf_append_json_str(&j->out, j->key.name, strlen(j->key.name));
    gh_buf_printf(&j->out, "\",\"created_at\":\"%s\"}",
                  gh_time_rfc3339(j->key.created_ms, ts, sizeof ts));
    gh_http_add_header(j->req, "Cache-Control", "no-store");
    id_respond_json_buf(j->req, 201, &j->out);
out:
    key_job_free(j);
}

void id_h_key_create(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!id_authed(req, true, &pr))
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    const char *name;
    size_t nlen;
    if (!id_field_str(req, o, "name", GH_KEY_NAME_MAX, &name, &nlen))
        goto out;
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            gh_http_respond_error(req, 400, "invalid_request", "name: no control characters");
            goto out;
        }
    if (!nlen) {
        gh_http_respond_error(req, 400, "invalid_request", "name: must not be empty");
        goto out;
    }
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        id_respond_busy(req, "the key service");
        goto out;
    }
    j->req = req;
    j->user_id = pr.user_id;
    j->max = req->cfg->identity.keys_per_user;
    gh_buf_init(&j->out, 4096);
    gh_token_new_api_key(j->token);
    gh_token_hash(j->token, GH_API_KEY_LEN, j->key.hash);
    memcpy(j->key.prefix, j->token, GH_API_KEY_PREFIX_LEN);
    memcpy(j->key.name, name, nlen);
    j->key.user_id = pr.user_id;
    j->key.created_ms = gh_wall_ms();
    if (gh_store_write(ids.store, key_create_fn, j, req->worker, key_create_done)) {
        key_job_free(j);
        id_respond_busy(req, "the key service");
    }
out:
    json_decref(o);
}

static void list_key(const struct gh_store_key *k, void *arg)
{
    struct gh_cred c;
    uint64_t lu = gh_tokens_peek(k->hash, &c) == 0 ? c.last_seen_ms : 0;
    key_json(k, arg, lu);
}

static int key_list_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    gh_buf_append_str(&j->out, "{\"object\":\"list\",\"data\":[");
    int rc = gh_store_keys_each(c, j->user_id, false, list_key, &j->out);
    return rc ? rc : gh_buf_append_str(&j->out, "]}");
}

static void key_list_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (w) {
        if (rc)
            id_respond_busy(j->req, "the key service");
        else
            id_respond_json_buf(j->req, 200, &j->out);
    }
    key_job_free(j);
}

void id_h_key_list(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!id_authed(req, false, &pr))
        return;
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        id_respond_busy(req, "the key service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    gh_buf_init(&j->out, 1u << 20);
    if (gh_store_read(ids.store, key_list_fn, j, req->worker, key_list_done)) {
        key_job_free(j);
        id_respond_busy(req, "the key service");
    }
}

static int key_revoke_fn(struct gh_store_conn *c, void *arg)
{
    struct key_job *j = arg;
    int rc = gh_store_key_revoke(c, j->user_id, j->key.id, gh_wall_ms(), &j->key);
    if (rc)
        return rc;
    char d[128];
    snprintf(d, sizeof d, "{\"key_id\":%llu,\"prefix\":\"%s\"}", (unsigned long long)j->key.id,
             j->key.prefix);
    return gh_audit_row(c, "key_revoked", j->user_id, d);
}

static void key_revoke_done(struct gh_worker *w, void *arg, int rc)
{
    struct key_job *j = arg;
    if (!rc)
        gh_tokens_del(j->key.hash);
    if (w) {
        if (rc == GH_ENOTFOUND)
            gh_http_respond_error(j->req, 404, "not_found", "no such key");
        else if (rc)
            id_respond_busy(j->req, "the key service");
        else
            gh_http_respond(j->req, 204, NULL, NULL, 0);
    }
    key_job_free(j);
}

void id_h_key_delete(struct gh_http_req *req)
{
    struct gh_principal pr;
    if (!id_authed(req, true, &pr))
        return;
    uint64_t id = 0;
    if (req->nparams < 1 || gh_parse_uint(req->params[0], UINT32_MAX * 1024ull, &id) || !id) {
        gh_http_respond_error(req, 404, "not_found", "no such key");
        return;
    }
    struct key_job *j = calloc(1, sizeof *j);
    if (!j) {
        id_respond_busy(req, "the key service");
        return;
    }
    j->req = req;
    j->user_id = pr.user_id;
    j->key.id = id;
    gh_buf_init(&j->out, 64);
    if (gh_store_write(ids.store, key_revoke_fn, j, req->worker, key_revoke_done)) {
        key_job_free(j);
        id_respond_busy(req, "the key service");
    }
}
