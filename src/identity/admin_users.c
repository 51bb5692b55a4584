/* This module implements the operator's user and key routes of
 * admin_users.h: look-ups on a store reader, changes on the store writer
 * (with their audit rows in the same transaction), and the credential
 * cache updated on the admin worker when the change is durable. */
#include "http/server.h"
#include "identity/admin_users.h"

#include "core/config.h"
#include "core/log.h"
#include "identity/audit.h"
#include "identity/identity.h"
#include "identity/phone.h"
#include "identity/tokens.h"
#include "store/store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_RESTORE_MAX 4096 /* keys put back in the cache by one enable */

enum uop { U_FIND, U_SHOW, U_DISABLE, U_ENABLE, U_KEYS, U_REVOKE };

struct ujob {
    struct gh_http_req *req;
    struct gh_server *srv;
    enum uop op;
    uint64_t id; /* user id, or key id for U_REVOKE */
    uint8_t phone_hash[32];
    char masked_query[32]; /* U_FIND: the masked number asked for, for the audit */
    struct gh_user user;
    unsigned sessions_live, keys_live;
    bool changed; /* disable/enable changed the state; revoke revoked now */
    struct gh_store_key key;
    struct gh_cred *restore; /* U_ENABLE: keys to put back in the cache */
    unsigned nrestore;
    struct gh_buf out;
};

static void ujob_free(struct ujob *j)
{
    gh_buf_dispose(&j->out);
    free(j->restore);
    free(j);
}

void gh_admin_mask_phone(const char *e164, unsigned calling_code, char *out, size_t outlen)
{
    char cc[16];
    int cclen = snprintf(cc, sizeof cc, "%u", calling_code);
    size_t n = strlen(e164);
    size_t keep_head = 1 + (calling_code ? (size_t)cclen : 0); /* '+' and the code */
    if (n < keep_head + 2 || outlen < n + 1) {
        snprintf(out, outlen, "%s", n ? "*" : "");
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = i < keep_head || i >= n - 2 ? e164[i] : '*';
    out[n] = 0;
}

/* The same keyed hash identity.c looks accounts up by. */
static void phone_hash(const char *e164, uint8_t out[32])
{
    char buf[40];
    int n = snprintf(buf, sizeof buf, "phone:%s", e164);
    gh_token_hash(buf, (size_t)n, out);
}

static void count_live_session(const struct gh_store_session *s, void *arg)
{
    uint64_t *a = arg; /* [0] now, [1] count */
    if (s->expires_ms > a[0])
        a[1]++;
}

/* Fills the counts shown beside an account. */
static int user_counts(struct gh_store_conn *c, struct ujob *j)
{
    uint64_t a[2] = {gh_wall_ms(), 0};
    int rc = gh_store_sessions_each(c, j->user.id, 0, count_live_session, a);
    j->sessions_live = (unsigned)a[1];
    j->keys_live = gh_store_keys_live_count(c, j->user.id);
    return rc;
}

static void time_or_null(struct gh_buf *b, const char *name, uint64_t ms)
{
    char t[40];
    if (ms)
        gh_buf_printf(b, ",\"%s\":\"%s\"", name, gh_time_rfc3339(ms, t, sizeof t));
    else
        gh_buf_printf(b, ",\"%s\":null", name);
}

static int user_json(const struct ujob *j, struct gh_buf *b)
{
    const struct gh_user *u = &j->user;
    char masked[GH_PHONE_MAX + 8], t[40];
    gh_admin_mask_phone(u->phone, u->calling_code, masked, sizeof masked);
    gh_buf_printf(b,
                  "{\"id\":%llu,\"phone_masked\":\"%s\",\"region\":\"%s\",\"calling_code\":%u,"
                  "\"created_at\":\"%s\"",
                  (unsigned long long)u->id, masked, u->region, u->calling_code,
                  gh_time_rfc3339(u->created_ms, t, sizeof t));
    time_or_null(b, "last_login_at", u->last_login_ms);
    gh_buf_printf(b, ",\"failed_logins\":%u,\"disabled\":%s", u->failed_logins,
                  u->disabled_ms ? "true" : "false");
    time_or_null(b, "disabled_at", u->disabled_ms);
    return gh_buf_printf(b, ",\"sessions\":%u,\"keys\":%u}", j->sessions_live, j->keys_live);
}

static void key_json(const struct gh_store_key *k, struct gh_buf *b)
{
    struct gh_cred c;
    uint64_t lu = k->last_used_ms;
    if (!k->revoked_ms && gh_tokens_peek(k->hash, &c) == 0 && c.last_seen_ms > lu)
        lu = c.last_seen_ms;
    char t[40];
    gh_buf_printf(b, "{\"id\":%llu,\"user_id\":%llu,\"name\":\"", (unsigned long long)k->id,
                  (unsigned long long)k->user_id);
    gh_buf_append_json_str(b, k->name, strlen(k->name));
    gh_buf_printf(b, "\",\"prefix\":\"%s\",\"created_at\":\"%s\"", k->prefix,
                  gh_time_rfc3339(k->created_ms, t, sizeof t));
    time_or_null(b, "last_used_at", lu);
    gh_buf_printf(b, ",\"revoked\":%s", k->revoked_ms ? "true" : "false");
    time_or_null(b, "revoked_at", k->revoked_ms);
    gh_buf_append_str(b, "}");
}

static void list_key(const struct gh_store_key *k, void *arg)
{
    struct gh_buf *b = arg;
    if (b->data[b->len - 1] != '[')
        gh_buf_append_str(b, ",");
    key_json(k, b);
}

static void collect_key(const struct gh_store_key *k, void *arg)
{
    struct ujob *j = arg;
    if (j->nrestore >= KEYS_RESTORE_MAX)
        return;
    if (!j->restore) {
        j->restore = calloc(KEYS_RESTORE_MAX, sizeof *j->restore);
        if (!j->restore)
            return;
    }
    struct gh_cred *c = &j->restore[j->nrestore++];
    c->kind = GH_CRED_KEY;
    c->user_id = k->user_id;
    c->id = k->id;
    memcpy(c->hash, k->hash, sizeof c->hash);
}

/* ---- store jobs ---- */

static int read_fn(struct gh_store_conn *c, void *arg)
{
    struct ujob *j = arg;
    int rc = j->op == U_FIND ? gh_store_user_by_phone(c, j->phone_hash, &j->user)
                             : gh_store_user_by_id(c, j->id, &j->user);
    if (rc)
        return rc;
    if (j->op == U_KEYS) {
        gh_buf_printf(&j->out, "{\"user_id\":%llu,\"keys\":[", (unsigned long long)j->user.id);
        rc = gh_store_keys_each(c, j->user.id, true, list_key, &j->out);
        return rc ? rc : gh_buf_append_str(&j->out, "]}");
    }
    rc = user_counts(c, j);
    return rc ? rc : user_json(j, &j->out);
}

static int write_fn(struct gh_store_conn *c, void *arg)
{
    struct ujob *j = arg;
    int rc;
    char d[256];
    if (j->op == U_REVOKE) {
        rc = gh_store_key_get(c, j->id, &j->key);
        if (rc || j->key.revoked_ms)
            return rc;
        rc = gh_store_key_revoke(c, j->key.user_id, j->key.id, gh_wall_ms(), &j->key);
        if (rc)
            return rc;
        j->changed = true;
        snprintf(d, sizeof d, "{\"key_id\":%llu,\"prefix\":\"%s\",\"by\":\"operator\"}",
                 (unsigned long long)j->key.id, j->key.prefix);
        rc = gh_audit_row(c, "key_revoked", j->key.user_id, d);
        return rc;
    }
    rc = gh_store_user_by_id(c, j->id, &j->user);
    if (rc)
        return rc;
    bool disable = j->op == U_DISABLE;
    int dropped = 0;
    if (disable != (j->user.disabled_ms != 0)) {
        j->user.disabled_ms = disable ? gh_wall_ms() : 0;
        rc = gh_store_user_set_disabled(c, j->id, j->user.disabled_ms);
        if (rc)
            return rc;
        j->changed = true;
    }
    if (disable) {
        /* every session, also when it was disabled already (belt and braces) */
        dropped = gh_store_sessions_delete_user(c, j->id);
        if (dropped < 0)
            return dropped;
    } else if (j->changed) {
        rc = gh_store_keys_each(c, j->id, false, collect_key, j);
        if (rc)
            return rc;
    }
    if (j->changed) {
        if (disable)
            snprintf(d, sizeof d, "{\"by\":\"operator\",\"sessions_ended\":%d}", dropped);
        else
            snprintf(d, sizeof d, "{\"by\":\"operator\",\"keys_restored\":%u}", j->nrestore);
        rc = gh_audit_row(c, disable ? "user_disabled" : "user_enabled", j->id, d);
        if (rc)
            return rc;
    }
    rc = user_counts(c, j);
    return rc ? rc : user_json(j, &j->out);
}

/* ---- answers ---- */

static void respond_out(struct gh_http_req *req, struct gh_buf *b)
{
    gh_http_respond_json(req, 200, b->data ? b->data : "{}", b->data ? b->len : 2);
}

static void sweep_task(struct gh_worker *w, void *data)
{
    (void)w;
    gh_tokens_del_user((uint64_t)(uintptr_t)data, 0);
}

/* Removes the user's credentials from the cache now and once more on every
 * public worker after the tasks already queued there: a sign-in or a key
 * creation that committed just before the disable posted its "put in the
 * cache" task to its worker before this runs, so the sweep comes after it. */
static void sweep_user(struct gh_server *srv, uint64_t id)
{
    gh_tokens_del_user(id, 0);
    if ((uint64_t)(uintptr_t)id != id)
        return;
    for (unsigned i = 0; i < srv->nworkers; i++)
        gh_worker_post(&srv->workers[i], sweep_task, (void *)(uintptr_t)id);
}

static void done_fn(struct gh_worker *w, void *arg, int rc)
{
    struct ujob *j = arg;
    /* the cache first, whether or not the client is still there */
    if (!rc && j->op == U_DISABLE)
        sweep_user(j->srv, j->id);
    if (!rc && j->op == U_ENABLE && j->changed) {
        for (unsigned i = 0; i < j->nrestore; i++)
            if (gh_tokens_put(&j->restore[i]))
                gh_log(GH_LOG_WARN, "cache_full", "key %llu of user %llu not restored",
                       (unsigned long long)j->restore[i].id, (unsigned long long)j->id);
    }
    if (!rc && j->op == U_REVOKE)
        gh_tokens_del(j->key.hash);
    if (!w)
        goto out;
    struct gh_http_req *req = j->req;
    if (rc == GH_ENOTFOUND) {
        if (j->op == U_FIND)
            gh_http_respond_error(req, 404, "not_found", "no account with the number %s",
                                  j->masked_query);
        else if (j->op == U_REVOKE)
            gh_http_respond_error(req, 404, "not_found", "no key with id %llu",
                                  (unsigned long long)j->id);
        else
            gh_http_respond_error(req, 404, "not_found", "no user with id %llu",
                                  (unsigned long long)j->id);
        goto out;
    }
    if (rc) {
        gh_http_add_header(req, "Retry-After", "1");
        gh_http_respond_error(req, 503, "busy", "the account store is busy, please retry");
        goto out;
    }
    if (j->op == U_REVOKE) {
        gh_buf_reset(&j->out);
        gh_buf_printf(&j->out, "{\"revoked_now\":%s,\"key\":", j->changed ? "true" : "false");
        key_json(&j->key, &j->out);
        gh_buf_append_str(&j->out, "}");
    } else if (j->op == U_DISABLE || j->op == U_ENABLE) {
        /* {"changed":…,"user":{…}} around the user object */
        struct gh_buf b;
        gh_buf_init(&b, 1u << 16);
        gh_buf_printf(&b, "{\"changed\":%s,\"user\":", j->changed ? "true" : "false");
        gh_buf_append(&b, j->out.data ? j->out.data : "{}", j->out.data ? j->out.len : 2);
        gh_buf_append_str(&b, "}");
        respond_out(req, &b);
        gh_buf_dispose(&b);
        goto out;
    }
    respond_out(req, &j->out);
out:
    ujob_free(j);
}

static struct ujob *ujob_new(struct gh_http_req *req, enum uop op)
{
    struct ujob *j = calloc(1, sizeof *j);
    if (!j) {
        gh_http_respond_error(req, 503, "busy", "out of memory, please retry");
        return NULL;
    }
    j->req = req;
    j->srv = req->route->ctx;
    j->op = op;
    gh_buf_init(&j->out, 4u << 20);
    return j;
}

static void submit(struct ujob *j, bool write)
{
    struct gh_store *s = gh_identity_store();
    int rc = !s      ? GH_EIO
             : write ? gh_store_write(s, write_fn, j, j->req->worker, done_fn)
                     : gh_store_read(s, read_fn, j, j->req->worker, done_fn);
    if (rc) {
        gh_http_add_header(j->req, "Retry-After", "1");
        gh_http_respond_error(j->req, 503, "busy", "the account store is busy, please retry");
        ujob_free(j);
    }
}

/* The {id} parameter; false after answering 404. */
static bool param_id(struct gh_http_req *req, const char *what, uint64_t *id)
{
    if (req->nparams < 1 || gh_parse_uint(req->params[0], INT64_MAX, id) || !*id) {
        gh_http_respond_error(req, 404, "not_found", "no %s with id '%s'", what,
                              req->nparams ? req->params[0] : "");
        return false;
    }
    return true;
}

/* ---- handlers ---- */

static void h_find(struct gh_http_req *req)
{
    char in[GH_PHONE_INPUT_MAX + 1];
    int qrc = gh_http_query_get(req, "phone", in, sizeof in);
    if (qrc == GH_ENOTFOUND || (!qrc && !in[0])) {
        gh_http_respond_error_param(req, 400, "invalid_request", "phone",
                                    "phone: required (GET /admin/v1/users?phone=+86…); accounts "
                                    "are found by number, never listed");
        return;
    }
    struct gh_phone p;
    const char *why = "not a phone number";
    if (qrc || gh_phone_parse(in, strlen(in), true, &p, &why)) {
        char msg[200];
        snprintf(msg, sizeof msg, "phone: %s", why);
        gh_http_respond_error_param(req, 400, "invalid_phone", "phone", msg);
        return;
    }
    struct ujob *j = ujob_new(req, U_FIND);
    if (!j)
        return;
    phone_hash(p.e164, j->phone_hash);
    gh_admin_mask_phone(p.e164, p.calling_code, j->masked_query, sizeof j->masked_query);
    char d[96];
    snprintf(d, sizeof d, "{\"phone\":\"%s\",\"by\":\"operator\"}", j->masked_query);
    gh_audit_log("admin_user_lookup", 0, d);
    submit(j, false);
}

static void h_show(struct gh_http_req *req)
{
    uint64_t id;
    if (!param_id(req, "user", &id))
        return;
    struct ujob *j = ujob_new(req, U_SHOW);
    if (!j)
        return;
    j->id = id;
    submit(j, false);
}

static void h_keys(struct gh_http_req *req)
{
    uint64_t id;
    if (!param_id(req, "user", &id))
        return;
    struct ujob *j = ujob_new(req, U_KEYS);
    if (!j)
        return;
    j->id = id;
    submit(j, false);
}

static void h_set(struct gh_http_req *req, enum uop op)
{
    uint64_t id;
    if (!param_id(req, "user", &id))
        return;
    struct ujob *j = ujob_new(req, op);
    if (!j)
        return;
    j->id = id;
    /* disabling takes effect now, before the write is durable: a request
     * already on its way with one of these credentials is refused */
    if (op == U_DISABLE)
        gh_tokens_del_user(id, 0);
    submit(j, true);
}

static void h_disable(struct gh_http_req *req)
{
    h_set(req, U_DISABLE);
}

static void h_enable(struct gh_http_req *req)
{
    h_set(req, U_ENABLE);
}

static void h_revoke(struct gh_http_req *req)
{
    uint64_t id;
    if (!param_id(req, "key", &id))
        return;
    struct ujob *j = ujob_new(req, U_REVOKE);
    if (!j)
        return;
    j->id = id;
    submit(j, true);
}

int gh_admin_users_init(struct gh_server *srv)
{
    static const struct {
        const char *method, *path;
        gh_http_handler fn;
    } routes[] = {
        {"GET", "/admin/v1/users", h_find},
        {"GET", "/admin/v1/users/{id}", h_show},
        {"POST", "/admin/v1/users/{id}/disable", h_disable},
        {"POST", "/admin/v1/users/{id}/enable", h_enable},
        {"GET", "/admin/v1/users/{id}/keys", h_keys},
        {"DELETE", "/admin/v1/keys/{id}", h_revoke},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(routes); i++) {
        struct gh_route *r =
            gh_router_add(&srv->http->admin_router, routes[i].method, routes[i].path, routes[i].fn, srv);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_OPS;
        r->body_max = 4096;
    }
    return 0;
}
