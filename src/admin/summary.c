/* This module implements the live summary of summary.h: one pass over the
 * public workers' statistics, one over the metrics registry, and the
 * accessors of the shield, the registration policy and identity, built
 * into a JSON document with jansson on the admin worker. */
#include "admin/summary.h"

#include "admin/admin.h"
#include "http/server.h"
#include "identity/identity.h"
#include "identity/policy.h"
#include "identity/pwpool.h"
#include "shield/shield.h"
#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of label key in a registry labels text (`a="x",b="y"`), copied
 * into out; false when absent. */
static bool label_value(const char *labels, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *p = labels; p && *p;) {
        if (!strncmp(p, key, klen) && p[klen] == '=' && p[klen + 1] == '"') {
            const char *v = p + klen + 2, *e = strchr(v, '"');
            if (!e)
                return false;
            snprintf(out, outlen, "%.*s", (int)(e - v), v);
            return true;
        }
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return false;
}

static json_t *num(double v)
{
    return v == (double)(json_int_t)v ? json_integer((json_int_t)v) : json_real(v);
}

struct gather {
    json_t *by_class;  /* requests per class (the shield's count) */
    json_t *limited;   /* 429 by the limiters, per class */
    json_t *gateway;   /* gatehouse_chat_* and upstream totals */
    json_t *upstreams; /* "upstream/model" -> object */
    json_t *shield;    /* other shield counters of interest */
};

/* "gatehouse_upstream_circuit_open" -> "circuit_open" */
static const char *upstream_field(const char *name)
{
    static const char pfx[] = "gatehouse_upstream_";
    if (strncmp(name, pfx, sizeof pfx - 1))
        return NULL;
    const char *f = name + sizeof pfx - 1;
    if (!strcmp(f, "requests_total"))
        return "requests";
    if (!strcmp(f, "failures_total"))
        return "failures";
    if (!strcmp(f, "rate_limited_total"))
        return "rate_limited";
    return f;
}

static void on_metric(const char *name, const char *labels, double v, void *data)
{
    struct gather *g = data;
    char cls[32], up[128], model[128];
    if (!strcmp(name, "gatehouse_shield_requests_total") &&
        label_value(labels, "class", cls, sizeof cls)) {
        json_object_set_new(g->by_class, cls, num(v));
    } else if (!strcmp(name, "gatehouse_shield_rate_limited_total") &&
               label_value(labels, "class", cls, sizeof cls)) {
        json_object_set_new(g->limited, cls, num(v));
    } else if (!strcmp(name, "gatehouse_shield_blocked_requests_total")) {
        json_object_set_new(g->shield, "blocked_forwarded_address", num(v));
    } else if (!strcmp(name, "gatehouse_shield_pow_verifications_total") &&
               label_value(labels, "result", cls, sizeof cls)) {
        json_t *pow = json_object_get(g->shield, "pow_verifications");
        if (!pow) {
            pow = json_object();
            json_object_set_new(g->shield, "pow_verifications", pow);
        }
        json_object_set_new(pow, cls, num(v));
    } else if (!strncmp(name, "gatehouse_chat_", 15)) {
        /* the labels join the key: tokens_total_prompt,
         * queue_waiting_new, queue_busy_total_new_full */
        char key[200];
        int n = snprintf(key, sizeof key, "%s", name + 15);
        static const char *const keyed[] = {"kind", "tier", "reason"};
        for (size_t i = 0; i < GH_ARRAY_LEN(keyed); i++)
            if (n > 0 && (size_t)n < sizeof key && label_value(labels, keyed[i], cls, sizeof cls))
                n += snprintf(key + n, sizeof key - (size_t)n, "_%s", cls);
        json_object_set_new(g->gateway, key, num(v));
    } else if (label_value(labels, "upstream", up, sizeof up)) {
        const char *f = upstream_field(name);
        if (!f)
            return;
        if (!label_value(labels, "model", model, sizeof model))
            model[0] = 0;
        char key[260];
        snprintf(key, sizeof key, "%s/%s", up, model);
        json_t *o = json_object_get(g->upstreams, key);
        if (!o) {
            o = json_pack("{ssss}", "name", up, "model", model);
            json_object_set_new(g->upstreams, key, o);
        }
        json_object_set_new(o, f, num(v));
    } else if (!strncmp(name, "gatehouse_upstream_", 19)) {
        json_object_set_new(g->gateway, name + 10, num(v)); /* "upstream_failovers_total" */
    }
}

static json_t *policy_json(void)
{
    const struct gh_policy *p = gh_policy_current();
    if (!p)
        return json_null();
    json_t *regions = json_array();
    for (unsigned i = 0; i < p->nregions; i++)
        json_array_append_new(regions, json_string(p->regions[i]));
    char until[40];
    return json_pack(
        "{sssosisiss?so}", "mode", gh_policy_mode_name(p->mode), "allowed_regions", regions,
        "pow_bits", (int)p->pow_bits, "register_per_minute", (int)p->register_per_minute, "source",
        p->source[0] ? p->source : NULL, "until",
        p->until_ms ? json_string(gh_time_rfc3339(p->until_ms, until, sizeof until)) : json_null());
}

static json_t *password_pool_json(void)
{
    struct gh_pwpool *pool = gh_identity_pwpool();
    if (!pool)
        return json_null();
    uint64_t now = gh_now_ms();
    return json_pack("{sis{sisI}s{sisI}}", "threads", (int)gh_pwpool_threads(pool), "login",
                     "waiting", (int)gh_pwpool_queued(pool, GH_PW_LOGIN), "oldest_wait_ms",
                     (json_int_t)gh_pwpool_delay_ms(pool, GH_PW_LOGIN, now), "register", "waiting",
                     (int)gh_pwpool_queued(pool, GH_PW_REGISTER), "oldest_wait_ms",
                     (json_int_t)gh_pwpool_delay_ms(pool, GH_PW_REGISTER, now));
}

/* Builds the summary document (caller frees). */
static json_t *summary_build(struct gh_server *srv)
{
    uint64_t families[6] = {0}; /* 1xx..5xx, other */
    uint64_t s429 = 0, s503 = 0, total = 0;
    uint64_t open = 0, accepted = 0, pending = 0, lag_us = 0;
    uint64_t refused[GH_REFUSE_COUNT] = {0};
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct gh_worker_stats *st = &srv->workers[i].stats;
        if (!st->requests)
            continue;
        for (unsigned rt = 0; rt < st->nroutes; rt++)
            for (unsigned s = 0; s < GH_METRICS_NSTATUS; s++) {
                uint64_t v = GH_STAT_GET(&st->requests[(size_t)rt * GH_METRICS_NSTATUS + s]);
                if (!v)
                    continue;
                int code = gh_metrics_statuses[s];
                families[code >= 100 && code < 600 ? code / 100 - 1 : 5] += v;
                total += v;
                if (code == 429)
                    s429 += v;
                else if (code == 503)
                    s503 += v;
            }
        open += GH_STAT_GET(&st->conns_open);
        accepted += GH_STAT_GET(&st->conns_accepted);
        pending += GH_STAT_GET(&st->pending_headers);
        lag_us = GH_MAX(lag_us, (uint64_t)GH_STAT_GET(&st->loop_lag_max_us));
        for (unsigned k = 0; k < GH_REFUSE_COUNT; k++)
            refused[k] += GH_STAT_GET(&st->refused[k]);
    }
    struct gather g = {.by_class = json_object(),
                       .limited = json_object(),
                       .gateway = json_object(),
                       .upstreams = json_object(),
                       .shield = json_object()};
    gh_metrics_each(on_metric, &g);

    json_t *conn_refused = json_object();
    for (unsigned k = 0; k < GH_REFUSE_COUNT; k++)
        if (k != GH_REFUSE_IDLE_TIMEOUT) /* not a refusal */
            json_object_set_new(conn_refused, gh_refusal_name((enum gh_refusal)k),
                                json_integer((json_int_t)refused[k]));
    json_t *ups = json_array();
    const char *key;
    json_t *v;
    unsigned circuits_open = 0;
    json_object_foreach(g.upstreams, key, v)
    {
        if (json_number_value(json_object_get(v, "circuit_open")) > 0)
            circuits_open++;
        json_array_append(ups, v);
    }
    json_decref(g.upstreams);

    struct gh_shed_state shed;
    memset(&shed, 0, sizeof shed);
    gh_shield_shed_state(&shed);
    struct gh_store *store = gh_identity_store();
    char now[40];
    json_t *doc = json_pack(
        "{ss sI ss s{ss} so"
        " s{sI so s{sIsIsIsIsIsI}}"
        " s{so so sI sI}"
        " s{so sI s{sfsisf}}"
        " s{sIsIsIsf}"
        " so s{sisI so}}",
        "time", gh_time_rfc3339(gh_wall_ms(), now, sizeof now), "uptime_s",
        (json_int_t)((gh_wall_ms() - srv->started_ms) / 1000), "version", GH_VERSION, "level",
        "level", gh_level_name(gh_shield_level()), "policy", policy_json(),
        /* requests */
        "requests", "total", (json_int_t)total, "by_class", g.by_class, "by_status", "1xx",
        (json_int_t)families[0], "2xx", (json_int_t)families[1], "3xx", (json_int_t)families[2],
        "4xx", (json_int_t)families[3], "5xx", (json_int_t)families[4], "other",
        (json_int_t)families[5],
        /* refusals */
        "refusals", "connections", conn_refused, "rate_limited", g.limited, "status_429",
        (json_int_t)s429, "status_503", (json_int_t)s503,
        /* queues */
        "queues", "password_pool", password_pool_json(), "store_pending",
        (json_int_t)(store ? gh_store_pending(store) : 0), "shedding", "pressure", shed.pressure,
        "shed_levels", (int)shed.shed_levels, "idle_factor", shed.idle_factor,
        /* connections */
        "connections", "open", (json_int_t)open, "accepted", (json_int_t)accepted,
        "pending_headers", (json_int_t)pending, "loop_lag_max_ms", (double)(lag_us / 100) / 10.0,
        /* gateway */
        "shield", g.shield, "gateway", "circuits_open", (int)circuits_open, "upstream_count",
        (json_int_t)json_array_size(ups), "upstreams", ups);
    if (doc && json_object_size(g.gateway))
        json_object_update(json_object_get(doc, "gateway"), g.gateway);
    json_decref(g.gateway);
    return doc;
}

static void h_summary(struct gh_http_req *req)
{
    json_t *doc = summary_build(req->route->ctx);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        gh_http_respond_error(req, 500, "internal", "cannot build the summary");
        return;
    }
    gh_http_add_header(req, "Cache-Control", "no-store");
    gh_http_respond_json(req, 200, text, strlen(text));
    free(text);
}

int gh_summary_init(struct gh_server *srv)
{
    struct gh_route *r =
        gh_router_add(&srv->http->admin_router, "GET", "/admin/v1/summary", h_summary, srv);
    if (!r)
        return GH_ETOOBIG;
    r->cls = GH_CLASS_OPS;
    return 0;
}
