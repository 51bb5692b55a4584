/* This module implements the status page's HTTP side (status.h): the
 * server's one instance, the public routes that answer from the current
 * snapshot (in the language and with the security headers of the site's
 * pages), the embedded web assets under /static/ (served by http/assets.c),
 * and the admin routes that change incidents and component overrides. */
#include "http/server.h"
#include "status/model.h"

#include "core/log.h"
#include "http/jsonbody.h"
#include "core/server.h"
#include "http/assets.h"
#include "http/pages.h"
#include "http/websec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The process's one status page, like the logger is its one log: other
 * subsystems report to it without holding a handle. Set before the workers
 * start, cleared after they stopped. */
static _Atomic(struct gh_status *) g_status;

/* ---- caller-side API ---- */

int gh_status_component_auto(const char *id, enum gh_component_status status, const char *reason)
{
    struct gh_status *st = atomic_load(&g_status);
    if (!st)
        return gh_status_component_index(id) < 0 ? GH_ENOTFOUND : 0;
    return gh_status_set_auto(st, id, status, reason);
}

int gh_status_attack_level(const char *level)
{
    static const char *const names[] = {"normal", "elevated", "under_attack"};
    int l = -1;
    for (int i = 0; level && i < 3; i++)
        if (!strcmp(level, names[i]))
            l = i;
    if (l < 0)
        return GH_EINVAL;
    struct gh_status *st = atomic_load(&g_status);
    return st ? gh_status_set_attack(st, l) : 0;
}

/* ---- public routes ---- */

static void send_doc(struct gh_http_req *req, enum gh_status_doc doc)
{
    struct gh_status *st = req->route->ctx;
    struct gh_status_snap *s = gh_status_snap_get(st);
    bool html = doc >= GH_DOC_HTML_EN;
    if (html) {
        gh_websec_page_headers(req);
    } else {
        gh_http_add_header(req, "X-Content-Type-Options", "nosniff");
        /* Statuspage's API is readable from any origin, for widgets */
        gh_http_add_header(req, "Access-Control-Allow-Origin", "*");
    }
    gh_http_add_header(req, "Cache-Control", "public, max-age=10");
    gh_http_add_header(req, "ETag", "%s", s->etag[doc]);
    if (gh_http_etag_matches(req, s->etag[doc]))
        gh_http_respond(req, 304, NULL, NULL, 0);
    else
        gh_http_respond(req, 200, html ? "text/html; charset=utf-8" : "application/json",
                        s->doc[doc].data, s->doc[doc].len);
    gh_status_snap_unref(s);
}

static void get_page(struct gh_http_req *req)
{
    /* the site's choice, cookie included, and its Vary */
    send_doc(req, gh_pages_lang(req) ? GH_DOC_HTML_ZH : GH_DOC_HTML_EN);
}
static void get_summary(struct gh_http_req *req)
{
    send_doc(req, GH_DOC_SUMMARY);
}
static void get_status(struct gh_http_req *req)
{
    send_doc(req, GH_DOC_STATUS);
}
static void get_components(struct gh_http_req *req)
{
    send_doc(req, GH_DOC_COMPONENTS);
}
static void get_incidents(struct gh_http_req *req)
{
    send_doc(req, GH_DOC_INCIDENTS);
}
static void get_unresolved(struct gh_http_req *req)
{
    send_doc(req, GH_DOC_UNRESOLVED);
}

/* ---- static assets ---- */

/* GET /static/{name}: the embedded file web/{name} (top level only: the
 * router never lets a decoded '/' into name). */
static void get_static(struct gh_http_req *req)
{
    char path[256];
    int n = snprintf(path, sizeof path, "/%s", req->params[0]);
    gh_assets_send(req, path, n > 0 && (size_t)n < sizeof path ? (size_t)n : 0, 300);
}

/* ---- admin routes ---- */

static struct gh_status *admin_status(struct gh_http_req *req)
{
    if (!atomic_load(&g_status)) {
        gh_http_respond_error(req, 503, "unavailable", "the status page is not running");
        return NULL;
    }
    return req->route->ctx;
}

static void answer_buf(struct gh_http_req *req, int status, int rc, struct gh_buf *b)
{
    if (rc || !b->data)
        gh_http_respond_error(req, 500, "internal_error", "cannot render the answer");
    else
        gh_http_respond_json(req, status, b->data, b->len);
    gh_buf_dispose(b);
}

/* Refuses fields other than those listed (a typo must not pass
 * silently). Returns false after answering. */
static bool only_fields(struct gh_http_req *req, json_t *o, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok |= !strcmp(*a, key);
        if (!ok) {
            char msg[200];
            snprintf(msg, sizeof msg, "unknown field '%.60s'", key);
            gh_http_respond_error_param(req, 400, "invalid_request", key, msg);
            return false;
        }
    }
    return true;
}

/* Reads string field into *out (NULL when absent). Returns false after
 * answering 400/422 when it is missing but required, not a string, empty,
 * or longer than max bytes. */
static bool get_string(struct gh_http_req *req, json_t *o, const char *field, bool required,
                       size_t max, const char **out)
{
    json_t *v = json_object_get(o, field);
    char msg[200];
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required)
            return true;
        snprintf(msg, sizeof msg, "%s is required", field);
        gh_http_respond_error_param(req, 400, "invalid_request", field, msg);
        return false;
    }
    if (!json_is_string(v)) {
        snprintf(msg, sizeof msg, "%s must be a string", field);
        gh_http_respond_error_param(req, 400, "invalid_request", field, msg);
        return false;
    }
    size_t len = json_string_length(v);
    if (len == 0 || len > max) {
        snprintf(msg, sizeof msg, "%s must be 1 to %zu bytes long", field, max);
        gh_http_respond_error_param(req, 422, "invalid_parameter", field, msg);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Reads an enum field: *out = its index, or -1 when absent and optional. */
static bool get_enum(struct gh_http_req *req, json_t *o, const char *field, bool required,
                     int (*parse)(const char *), const char *choices, int *out)
{
    const char *s;
    *out = -1;
    if (!get_string(req, o, field, required, 64, &s))
        return false;
    if (!s)
        return true;
    *out = parse(s);
    if (*out < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s must be one of %s", field, choices);
        gh_http_respond_error_param(req, 422, "invalid_parameter", field, msg);
        return false;
    }
    return true;
}

static bool get_components_field(struct gh_http_req *req, json_t *o,
                                 struct gh_status_incident_in *in)
{
    json_t *v = json_object_get(o, "components");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v) || json_array_size(v) > GH_STATUS_NCOMP) {
        gh_http_respond_error_param(req, 400, "invalid_request", "components",
                                    "components must be an array of at most 5 component ids");
        return false;
    }
    in->ncomponents = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        int ci = gh_status_component_index(json_string_value(e));
        if (ci < 0) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "components[%zu] is not a component id (web, api, login, registration, "
                     "models)",
                     i);
            gh_http_respond_error_param(req, 422, "invalid_parameter", "components", msg);
            return false;
        }
        in->components[in->ncomponents++] = ci;
    }
    return true;
}

static const char IMPACTS[] = "none, minor, major, critical";
static const char STATUSES[] = "investigating, identified, monitoring, resolved";
static const char COMP_STATES[] = "operational, degraded_performance, partial_outage, major_outage";

static void post_incident(struct gh_http_req *req)
{
    struct gh_status *st = admin_status(req);
    if (!st)
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    static const char *const fields[] = {"name",   "name_zh", "body",       "body_zh",
                                         "impact", "status",  "components", NULL};
    struct gh_status_incident_in in = {.status = -1, .impact = -1, .ncomponents = 0};
    if (only_fields(req, o, fields) &&
        get_string(req, o, "name", true, GH_STATUS_NAME_MAX, &in.name) &&
        get_string(req, o, "name_zh", false, GH_STATUS_NAME_MAX, &in.name_zh) &&
        get_string(req, o, "body", true, GH_STATUS_BODY_MAX, &in.body) &&
        get_string(req, o, "body_zh", false, GH_STATUS_BODY_MAX, &in.body_zh) &&
        get_enum(req, o, "impact", false, gh_status_parse_impact, IMPACTS, &in.impact) &&
        get_enum(req, o, "status", false, gh_status_parse_incident_status, STATUSES, &in.status) &&
        get_components_field(req, o, &in)) {
        struct gh_buf b;
        gh_buf_init(&b, 1u << 20);
        int rc = gh_status_incident_create(st, &in, &b);
        if (rc == GH_EBUSY) {
            gh_buf_dispose(&b);
            gh_http_respond_error(req, 422, "invalid_parameter",
                                  "too many open incidents (%d): resolve some first",
                                  GH_STATUS_INCIDENTS_MAX);
        } else {
            if (!rc)
                gh_log(GH_LOG_INFO, "status_incident_created", "incident created by an operator");
            answer_buf(req, 201, rc, &b);
        }
    }
    json_decref(o);
}

static void post_update(struct gh_http_req *req)
{
    struct gh_status *st = admin_status(req);
    if (!st)
        return;
    json_t *o = gh_http_body_object(req);
    if (!o)
        return;
    static const char *const fields[] = {"status", "body", "body_zh", "impact", "components", NULL};
    struct gh_status_incident_in in = {.status = -1, .impact = -1, .ncomponents = -1};
    if (only_fields(req, o, fields) &&
        get_enum(req, o, "status", true, gh_status_parse_incident_status, STATUSES, &in.status) &&
        get_string(req, o, "body", true, GH_STATUS_BODY_MAX, &in.body) &&
        get_string(req, o, "body_zh", false, GH_STATUS_BODY_MAX, &in.body_zh) &&
        get_enum(req, o, "impact", false, gh_status_parse_impact, IMPACTS, &in.impact) &&
        get_components_field(req, o, &in)) {
        struct gh_buf b;
        gh_buf_init(&b, 1u << 20);
        int rc = gh_status_incident_update(st, req->params[0], &in, &b);
        if (rc == GH_ENOTFOUND) {
            gh_buf_dispose(&b);
            gh_http_respond_error(req, 404, "not_found", "no incident with id '%.40s'",
                                  req->params[0]);
        } else if (rc == GH_ETOOBIG) {
            gh_buf_dispose(&b);
            gh_http_respond_error(req, 422, "invalid_parameter",
                                  "the incident has the maximum of %d updates",
                                  GH_STATUS_UPDATES_MAX);
        } else {
            answer_buf(req, 201, rc, &b);
        }
    }
    json_decref(o);
}

static void list_incidents(struct gh_http_req *req)
{
    struct gh_status *st = admin_status(req);
    if (!st)
        return;
    struct gh_buf b;
    gh_buf_init(&b, 16u << 20);
    answer_buf(req, 200, gh_status_admin_incidents(st, &b), &b);
}

static void list_components(struct gh_http_req *req)
{
    struct gh_status *st = admin_status(req);
    if (!st)
        return;
    struct gh_buf b;
    gh_buf_init(&b, 1u << 20);
    answer_buf(req, 200, gh_status_admin_components(st, &b), &b);
}

/* PUT sets the override ({"status": …}); DELETE clears it. */
static void override_component(struct gh_http_req *req)
{
    struct gh_status *st = admin_status(req);
    if (!st)
        return;
    const char *id = req->params[0];
    if (gh_status_component_index(id) < 0) {
        gh_http_respond_error(req, 404, "not_found",
                              "no component '%.40s' (web, api, login, registration, models)", id);
        return;
    }
    int s = -1;
    json_t *o = NULL;
    if (strcmp(req->method_name, "DELETE")) {
        static const char *const fields[] = {"status", NULL};
        o = gh_http_body_object(req);
        if (!o)
            return;
        if (!only_fields(req, o, fields) ||
            !get_enum(req, o, "status", true, gh_status_parse_component_status, COMP_STATES, &s)) {
            json_decref(o);
            return;
        }
    }
    struct gh_buf b;
    gh_buf_init(&b, 64u << 10);
    int rc = gh_status_set_override(st, id, s, &b);
    if (!rc)
        gh_log(GH_LOG_INFO, "status_override", "component %s override %s", id,
               s < 0 ? "cleared" : gh_status_component_name(s));
    answer_buf(req, 200, rc, &b);
    json_decref(o);
}

/* ---- lifecycle ---- */

/* SIGHUP: the page's texts and thresholds follow the new configuration. */
static void on_reload(struct gh_server *srv, const struct gh_config *cfg, void *data)
{
    (void)srv;
    struct gh_status_opts o;
    gh_status_opts_from_config(&o, cfg);
    if (gh_status_reconfigure(data, &o))
        gh_log(GH_LOG_ERROR, "status_reload", "status page kept its old settings (out of memory)");
}

int gh_status_init(struct gh_server *srv)
{
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_status_opts o;
    gh_status_opts_from_config(&o, srv->cfg);
    o.start_thread = true;
    struct gh_status *st = NULL;
    int rc = gh_status_new(&o, &st, &err);
    if (rc) {
        gh_log(GH_LOG_ERROR, "status_init", "cannot start the status page: %s",
               err.data ? err.data : "");
        fprintf(stderr, "gatehouse: status page: %s\n", err.data ? err.data : "");
        gh_buf_dispose(&err);
        return rc;
    }
    gh_buf_dispose(&err);

    atomic_store(&g_status, st);
    if (gh_server_add_reload_hook(srv, on_reload, st))
        return GH_ETOOBIG;

    static const struct {
        const char *path;
        gh_http_handler h;
    } pub[] = {
        {"/status", get_page},
        {"/api/v2/summary.json", get_summary},
        {"/api/v2/status.json", get_status},
        {"/api/v2/components.json", get_components},
        {"/api/v2/incidents.json", get_incidents},
        {"/api/v2/incidents/unresolved.json", get_unresolved},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(pub); i++) {
        struct gh_route *r = gh_router_add(&srv->http->router, "GET", pub[i].path, pub[i].h, st);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_ANON;
    }
    struct gh_route *r = gh_router_add(&srv->http->router, "GET", "/static/{name}", get_static, NULL);
    if (!r)
        return GH_ETOOBIG;
    r->cls = GH_CLASS_ANON;

    static const struct {
        const char *method, *path;
        gh_http_handler h;
    } adm[] = {
        {"POST", "/admin/v1/incidents", post_incident},
        {"GET", "/admin/v1/incidents", list_incidents},
        {"POST", "/admin/v1/incidents/{id}/updates", post_update},
        {"GET", "/admin/v1/components", list_components},
        {"PUT", "/admin/v1/components/{id}", override_component},
        {"DELETE", "/admin/v1/components/{id}", override_component},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(adm); i++) {
        r = gh_router_add(&srv->http->admin_router, adm[i].method, adm[i].path, adm[i].h, st);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_OPS;
    }
    return 0;
}

struct gh_status *gh_status_instance(void)
{
    return atomic_load(&g_status);
}

void gh_status_stop(void)
{
    struct gh_status *st = atomic_exchange(&g_status, NULL);
    gh_status_free(st);
}
