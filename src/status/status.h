/* The public status page: five components (Web, API, Login, Registration,
 * Chat models), incidents with timestamped updates, 90 days of daily
 * history per component, in Atlassian Statuspage's JSON shapes and as an
 * HTML page in English and Chinese.
 *
 * Ownership and threads. A struct gh_status owns the model behind one
 * mutex. Every change (admin API on the admin worker, automatic state from
 * any thread) re-renders the public documents into an immutable snapshot
 * that is swapped in whole; a public read is a pointer load and a
 * reference (gh_status_snap_get), never a render, so the page stays cheap
 * under attack. A helper thread persists the model to
 * <data_dir>/status-state.json (temp file, fsync, rename), rolls the daily
 * history over at midnight UTC and closes the automatic incident once calm
 * has lasted long enough.
 *
 * The server has one instance, made by gh_status_init (routes.c); the
 * caller-side functions gh_status_component_auto and gh_status_attack_level
 * act on it and are no-ops (returning 0) when no status page runs, so any
 * subsystem may call them unconditionally. */
#pragma once

#include "core/buf.h"
#include "core/common.h"
#include "core/config.h"

struct gh_server;
struct gh_status;

/* Component states, mildest first (the order is the severity order). */
enum gh_component_status {
    GH_STATUS_OPERATIONAL,
    GH_STATUS_DEGRADED_PERFORMANCE,
    GH_STATUS_PARTIAL_OUTAGE,
    GH_STATUS_MAJOR_OUTAGE,
};
enum gh_incident_status {
    GH_INCIDENT_INVESTIGATING,
    GH_INCIDENT_IDENTIFIED,
    GH_INCIDENT_MONITORING,
    GH_INCIDENT_RESOLVED,
};
enum gh_incident_impact { GH_IMPACT_NONE, GH_IMPACT_MINOR, GH_IMPACT_MAJOR, GH_IMPACT_CRITICAL };

/* Component ids, stable across versions: "web", "api", "login",
 * "registration", "models". */
#define GH_STATUS_NCOMP 5

/* ---- what other subsystems call (any thread, any time) ---- */

/* Reports the automatic (live) state of component id ("registration",
 * "api", …) with a short reason for operators (may be NULL; not shown to
 * the public). Call it on every change of the underlying state, and once
 * at start; repeated calls with the same state cost a mutex and nothing
 * else. An operator override (PUT /admin/v1/components/{id}) wins until
 * cleared. Suggested mapping: registration policy open → operational,
 * restricted → degraded_performance, busy → partial_outage, closed →
 * major_outage; API: some upstream circuits open → partial_outage, all
 * open → major_outage. Returns 0, GH_ENOTFOUND (unknown id) or GH_EINVAL
 * (state out of range); 0 when no status page runs. */
int gh_status_component_auto(const char *id, enum gh_component_status status, const char *reason);

/* Reports the shield's attack level: "normal", "elevated" or
 * "under_attack". When it rises to under_attack (or elevated, with
 * status.incident_on_elevated) and no automatic incident is open, an
 * incident opens with the templated text of the status.attack_* keys
 * (impact minor, status identified, component registration). When the
 * level has stayed below that threshold for status.auto_resolve_delay, a
 * resolving update is posted and the incident closes. Call it on each
 * change and once at start. Returns 0 or GH_EINVAL (unknown level). */
int gh_status_attack_level(const char *level);

/* ---- the server side ---- */

/* Creates the server's instance from srv's configuration (loading the
 * persisted state from data_dir), starts its helper thread and registers
 * the routes: public /status, /api/v2/…json, /static/{name} on
 * srv->http->router; /admin/v1/incidents… and /admin/v1/components… on
 * srv->http->admin_router. Main thread, before gh_server_run. 0 or a negative
 * code (logged). */
int gh_status_init(struct gh_server *srv);
/* The server's instance (NULL before gh_status_init): main.c hands it to
 * what shares it with the other nodes of a cluster. */
struct gh_status *gh_status_instance(void);
/* Stops the helper thread after a last write of the state and frees the
 * instance. Main thread, after gh_server_run. Safe when init never ran. */
void gh_status_stop(void);

/* `gatehouse status export DIR [--config FILE] [--data DIR]`: writes the
 * page and its JSON as static files from the persisted state. Returns the
 * exit code (0, 1 failure, 2 usage). */
int gh_status_export_main(int argc, char **argv, char **envp);

/* ---- the model (used by the routes, the export and the tests) ---- */

struct gh_status_opts {
    const char *data_dir; /* NULL: nothing persisted */
    const char *page_name;
    const char *page_url;
    bool incident_on_elevated;
    uint64_t auto_resolve_delay_ms;
    const char *attack_title[2]; /* [0] English, [1] Chinese */
    const char *attack_body[2];
    const char *attack_resolved[2];
    /* wall clock in ms since the epoch; NULL = gh_wall_ms (tests pass a fake) */
    uint64_t (*clock)(void *clock_data);
    void *clock_data;
    bool start_thread; /* false: the caller calls gh_status_tick/_flush itself */
    bool read_only;    /* load the state but never write it (the export) */
    char url_buf[600]; /* holds the derived page_url of gh_status_opts_from_config */
};

/* Fills o from cfg (strings point into cfg, which must outlive o's use;
 * an empty status.page_url becomes http://<server.listen>/status). */
void gh_status_opts_from_config(struct gh_status_opts *o, const struct gh_config *cfg);
/* Makes an instance, loading <data_dir>/status-state.json if present (a
 * damaged file is an error, not silently replaced). Copies what it keeps
 * of o. 0, GH_EIO or GH_EINVAL with a message in err, GH_ENOMEM. */
int gh_status_new(const struct gh_status_opts *o, struct gh_status **out, struct gh_buf *err);
/* Applies new options (page name and URL, attack texts, thresholds) after
 * a configuration reload; the model itself is kept. 0 or GH_ENOMEM. */
int gh_status_reconfigure(struct gh_status *st, const struct gh_status_opts *o);
/* Stops the thread (writing the state a last time) and frees st. */
void gh_status_free(struct gh_status *st);
/* Periodic work: day roll-over, closing the automatic incident after the
 * calm delay. The helper thread calls it every second. */
void gh_status_tick(struct gh_status *st);
/* Writes the state now if it changed since the last write. 0 or GH_EIO. */
int gh_status_flush(struct gh_status *st);

int gh_status_set_auto(struct gh_status *st, const char *id, enum gh_component_status s,
                       const char *reason);
/* Operator override of component id; s < 0 clears it. The component's JSON
 * (with auto and override fields) is appended to out when out is not NULL.
 * 0, GH_ENOTFOUND, GH_EINVAL. */
int gh_status_set_override(struct gh_status *st, const char *id, int s, struct gh_buf *out);
/* Attack level as an index: 0 normal, 1 elevated, 2 under_attack. */
int gh_status_set_attack(struct gh_status *st, int level);

/* A new incident or an update, as the admin API receives them. Strings are
 * copied; NULL for what is absent. */
struct gh_status_incident_in {
    const char *name, *name_zh;      /* name required for create */
    const char *body, *body_zh;      /* body required */
    int status;                      /* enum gh_incident_status, or -1: investigating / unchanged */
    int impact;                      /* enum gh_incident_impact, or -1: minor / unchanged */
    int ncomponents;                 /* -1: unchanged (updates) */
    int components[GH_STATUS_NCOMP]; /* component indexes */
};
/* Opens an incident; appends its JSON to out. 0, GH_EINVAL (missing
 * name/body), GH_EBUSY (the table is full of open incidents). */
int gh_status_incident_create(struct gh_status *st, const struct gh_status_incident_in *in,
                              struct gh_buf *out);
/* Adds an update to incident id (status, body, optionally a new impact);
 * resolved sets resolved_at, any other status after resolved reopens it.
 * 0, GH_ENOTFOUND, GH_ETOOBIG (too many updates), GH_EINVAL. */
int gh_status_incident_update(struct gh_status *st, const char *id,
                              const struct gh_status_incident_in *in, struct gh_buf *out);
/* Admin listings: {"incidents":[…]} (all kept, newest first) and
 * {"components":[…]} with auto_status, auto_reason, override. */
int gh_status_admin_incidents(struct gh_status *st, struct gh_buf *out);
int gh_status_admin_components(struct gh_status *st, struct gh_buf *out);

/* Sharing with the other nodes of a cluster: the operators' part of the
 * page (their incidents and the component overrides, not the automatic
 * incident nor the histories) as a JSON document. fn(doc, data) runs on
 * the status thread after each change of it made on this node; apply
 * replaces it with another node's (any thread). 0 or GH_EINVAL. */
void gh_status_set_share(struct gh_status *st, void (*fn)(const char *doc, void *data), void *data);
int gh_status_apply_shared(struct gh_status *st, const char *doc, struct gh_buf *err);

/* Enum names; the parse functions return -1 for an unknown name. */
const char *gh_status_component_name(int s);
const char *gh_status_incident_status_name(int s);
const char *gh_status_impact_name(int s);
int gh_status_parse_component_status(const char *s);
int gh_status_parse_incident_status(const char *s);
int gh_status_parse_impact(const char *s);
/* Index of component id, or -1. */
int gh_status_component_index(const char *id);
const char *gh_status_component_id(int i);

/* The documents of a snapshot. */
enum gh_status_doc {
    GH_DOC_SUMMARY,
    GH_DOC_STATUS,
    GH_DOC_COMPONENTS,
    GH_DOC_INCIDENTS,
    GH_DOC_UNRESOLVED,
    GH_DOC_HTML_EN,
    GH_DOC_HTML_ZH,
    GH_DOC_COUNT,
};

/* An immutable rendering of the model; shared by reference. */
struct gh_status_snap {
    atomic_int refs;
    uint64_t seq;
    int indicator; /* 0 none, 1 minor, 2 major, 3 critical */
    struct {
        char *data;
        size_t len;
    } doc[GH_DOC_COUNT];
    char etag[GH_DOC_COUNT][32];
};

/* The current snapshot, referenced (any thread). Never NULL after new. */
struct gh_status_snap *gh_status_snap_get(struct gh_status *st);
void gh_status_snap_unref(struct gh_status_snap *s);

/* How the HTML links its stylesheet and language versions. */
struct gh_status_html_links {
    const char *css;     /* "/static/status.css" or "status.css" */
    const char *lang_en; /* "?lang=en" or "index.html" */
    const char *lang_zh; /* "?lang=zh" or "zh.html" */
    const char *json;    /* "/api/v2/summary.json" or "api/v2/summary.json" */
    const char *js;      /* "/static/status.js" or "status.js" (the refresh) */
    const char *icon;    /* "/favicon.ico" or "favicon.ico" */
    const char *home;    /* the site: "/" or server.public_origin; NULL = no link */
};
/* Renders one document now (doc < GH_DOC_HTML_EN uses no links). Used by
 * the export, which wants relative links. 0 or GH_ETOOBIG/GH_ENOMEM. */
int gh_status_render(struct gh_status *st, enum gh_status_doc doc,
                     const struct gh_status_html_links *links, struct gh_buf *out);
