/* This module implements the status page's model (status.h): components
 * with automatic and overridden states, incidents, the daily history, the
 * automatic attack incident, the immutable snapshots readers share, and
 * the persistence of it all by a helper thread. */
#include "status/model.h"

#include "core/log.h"
#include "http/assets.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS   86400000ull
#define SNAP_CAP (8u << 20)

static const char *const comp_names[] = {"operational", "degraded_performance", "partial_outage",
                                         "major_outage"};
static const char *const inc_names[] = {"investigating", "identified", "monitoring", "resolved"};
static const char *const impact_names[] = {"none", "minor", "major", "critical"};

static const struct {
    const char *id, *name_en, *name_zh, *desc_en, *desc_zh;
} comp_defs[GH_STATUS_NCOMP] = {
    {"web", "Web", "网页", "The website and its pages", "网站及其页面"},
    {"api", "API", "API", "The OpenAI-compatible API", "兼容 OpenAI 的 API"},
    {"login", "Login", "登录", "Signing in to existing accounts", "已有账户登录"},
    {"registration", "Registration", "注册", "Creating new accounts", "注册新账户"},
    {"models", "Chat models", "对话模型", "The chat models and their answers", "对话模型及其回答"},
};

static int parse_name(const char *const *names, int n, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

const char *gh_status_component_name(int s)
{
    return s >= 0 && s < 4 ? comp_names[s] : "unknown";
}
const char *gh_status_incident_status_name(int s)
{
    return s >= 0 && s < 4 ? inc_names[s] : "unknown";
}
const char *gh_status_impact_name(int s)
{
    return s >= 0 && s < 4 ? impact_names[s] : "unknown";
}
int gh_status_parse_component_status(const char *s)
{
    return parse_name(comp_names, 4, s);
}
int gh_status_parse_incident_status(const char *s)
{
    return parse_name(inc_names, 4, s);
}
int gh_status_parse_impact(const char *s)
{
    return parse_name(impact_names, 4, s);
}
int gh_status_component_index(const char *id)
{
    for (int i = 0; id && i < GH_STATUS_NCOMP; i++)
        if (!strcmp(comp_defs[i].id, id))
            return i;
    return -1;
}
const char *gh_status_component_id(int i)
{
    return i >= 0 && i < GH_STATUS_NCOMP ? comp_defs[i].id : NULL;
}

uint64_t gh_status_now(const struct gh_status *st)
{
    return st->clock ? st->clock(st->clock_data) : gh_wall_ms();
}

void gh_status_opts_from_config(struct gh_status_opts *o, const struct gh_config *cfg)
{
    memset(o, 0, sizeof *o);
    o->data_dir = cfg->server.data_dir;
    o->page_name = cfg->status.page_name;
    o->page_url = cfg->status.page_url;
    if (!*o->page_url) {
        snprintf(o->url_buf, sizeof o->url_buf, "http://%s/status", cfg->server.listen);
        o->page_url = o->url_buf;
    }
    o->incident_on_elevated = cfg->status.incident_on_elevated;
    o->auto_resolve_delay_ms = cfg->status.auto_resolve_delay_ms;
    o->attack_title[0] = cfg->status.attack_title_en;
    o->attack_title[1] = cfg->status.attack_title_zh;
    o->attack_body[0] = cfg->status.attack_body_en;
    o->attack_body[1] = cfg->status.attack_body_zh;
    o->attack_resolved[0] = cfg->status.attack_resolved_en;
    o->attack_resolved[1] = cfg->status.attack_resolved_zh;
}

/* strdup with a cap: NULL stays NULL; longer text is cut at a UTF-8
 * character boundary. */
static char *dup_capped(const char *s, size_t cap)
{
    if (!s)
        return NULL;
    size_t n = strnlen(s, cap + 1);
    if (n > cap) {
        n = cap;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void random_id(char out[GH_STATUS_ID_LEN + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < GH_STATUS_ID_LEN; i++)
        out[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    out[GH_STATUS_ID_LEN] = '\0';
}

/* ---- history ---- */

static uint32_t day_of(uint64_t ms)
{
    return (uint32_t)(ms / DAY_MS);
}

/* Raises the worst state of day to s (a day seen for the first time
 * starts at s). */
static void history_note(struct gh_status_component *c, uint32_t day, int s)
{
    unsigned slot = day % GH_STATUS_DAYS;
    if (c->hday[slot] != day) {
        c->hday[slot] = day;
        c->hworst[slot] = (uint8_t)s;
    } else if (c->hworst[slot] == GH_STATUS_NODATA || s > c->hworst[slot]) {
        c->hworst[slot] = (uint8_t)s;
    }
}

/* Brings every component's history up to today: the days since the last
 * note held the state in effect then (or no data, right after a load: the
 * server was not running). A clock that went back notes nothing. */
static void history_roll_locked(struct gh_status *st, uint32_t today)
{
    for (int i = 0; i < GH_STATUS_NCOMP; i++) {
        struct gh_status_component *c = &st->comps[i];
        int cur = gh_status_comp_state(c);
        if (c->last_day > today)
            continue;
        if (c->last_day) {
            uint32_t from = c->last_day + 1;
            if (today - c->last_day > GH_STATUS_DAYS)
                from = today - GH_STATUS_DAYS + 1;
            for (uint32_t d = from; d < today; d++) {
                c->hday[d % GH_STATUS_DAYS] = d;
                c->hworst[d % GH_STATUS_DAYS] =
                    (uint8_t)(st->history_gap_unknown ? GH_STATUS_NODATA : cur);
            }
        }
        history_note(c, today, cur);
        c->last_day = today;
    }
    st->history_gap_unknown = false;
}

/* ---- snapshots ---- */

static void snap_free(struct gh_status_snap *s)
{
    for (int i = 0; i < GH_DOC_COUNT; i++)
        free(s->doc[i].data);
    free(s);
}

void gh_status_snap_unref(struct gh_status_snap *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snap_free(s);
}

struct gh_status_snap *gh_status_snap_get(struct gh_status *st)
{
    /* the lock covers two instructions, so that a writer cannot free the
     * snapshot between our load and our reference */
    pthread_mutex_lock(&st->snap_mu);
    struct gh_status_snap *s = st->snap;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&st->snap_mu);
    return s;
}

static const struct gh_status_html_links served_links = {
    "/static/status.css", "?lang=en",     "?lang=zh", "/api/v2/summary.json",
    "/static/status.js",  "/favicon.ico", "/"};

/* Renders every document into a new snapshot and swaps it in. On failure
 * (out of memory) the old snapshot stays: stale beats absent. */
static int publish_locked(struct gh_status *st)
{
    struct gh_status_snap *s = calloc(1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    atomic_init(&s->refs, 1);
    s->seq = st->seq;
    s->indicator = gh_status_indicator_locked(st);
    for (int d = 0; d < GH_DOC_COUNT; d++) {
        struct gh_buf b;
        gh_buf_init(&b, SNAP_CAP);
        int rc = gh_status_render_locked(st, (enum gh_status_doc)d, &served_links, &b);
        if (rc || !b.data) {
            gh_buf_dispose(&b);
            snap_free(s);
            return rc ? rc : GH_ENOMEM;
        }
        gh_assets_etag(b.data, b.len, s->etag[d]);
        s->doc[d].data = gh_buf_steal(&b, &s->doc[d].len);
    }
    pthread_mutex_lock(&st->snap_mu);
    struct gh_status_snap *old = st->snap;
    st->snap = s;
    pthread_mutex_unlock(&st->snap_mu);
    gh_status_snap_unref(old);
    st->snap_day = day_of(gh_status_now(st));
    return 0;
}

/* Every change ends here: a new snapshot, and the state marked for
 * writing. */
static void changed_locked(struct gh_status *st, uint64_t now)
{
    st->seq++;
    if (now > st->updated_ms)
        st->updated_ms = now;
    if (publish_locked(st))
        gh_log(GH_LOG_ERROR, "status_render", "cannot render the status page (out of memory)");
    pthread_cond_signal(&st->cond);
}

/* ---- components ---- */

/* Sets one of the two states of c through setter and records the change
 * when the effective state moved. */
static void comp_apply_locked(struct gh_status *st, struct gh_status_component *c, int auto_state,
                              int override, const char *reason)
{
    uint64_t now = gh_status_now(st);
    history_roll_locked(st, day_of(now));
    int before = gh_status_comp_state(c);
    bool admin_changed = c->override != override || c->auto_state != auto_state;
    c->auto_state = auto_state;
    c->override = override;
    if (reason)
        snprintf(c->auto_reason, sizeof c->auto_reason, "%s", reason);
    int after = gh_status_comp_state(c);
    if (after != before) {
        c->updated_ms = now;
        history_note(c, day_of(now), after);
    }
    if (after != before || admin_changed)
        changed_locked(st, after != before ? now : st->updated_ms);
}

int gh_status_set_auto(struct gh_status *st, const char *id, enum gh_component_status s,
                       const char *reason)
{
    int i = gh_status_component_index(id);
    if (i < 0)
        return GH_ENOTFOUND;
    if ((int)s < 0 || s > GH_STATUS_MAJOR_OUTAGE)
        return GH_EINVAL;
    pthread_mutex_lock(&st->mu);
    struct gh_status_component *c = &st->comps[i];
    comp_apply_locked(st, c, (int)s, c->override, reason ? reason : "");
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int gh_status_set_override(struct gh_status *st, const char *id, int s, struct gh_buf *out)
{
    int i = gh_status_component_index(id);
    if (i < 0)
        return GH_ENOTFOUND;
    if (s > GH_STATUS_MAJOR_OUTAGE)
        return GH_EINVAL;
    pthread_mutex_lock(&st->mu);
    struct gh_status_component *c = &st->comps[i];
    st->op_seq++;
    comp_apply_locked(st, c, c->auto_state, s < 0 ? -1 : s, NULL);
    int rc = out ? gh_status_render_component_locked(st, c, true, out) : 0;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- incidents ---- */

static void incident_free(struct gh_status_incident *in)
{
    if (!in)
        return;
    for (unsigned i = 0; i < in->nupdates; i++) {
        free(in->updates[i].body);
        free(in->updates[i].body_zh);
    }
    free(in->name);
    free(in->name_zh);
    free(in);
}

static struct gh_status_incident *incident_find_locked(struct gh_status *st, const char *id)
{
    for (unsigned i = 0; id && i < st->ninc; i++)
        if (!strcmp(st->inc[i]->id, id))
            return st->inc[i];
    return NULL;
}

/* Makes room for one more incident by dropping the oldest resolved one. */
static int incident_room_locked(struct gh_status *st)
{
    if (st->ninc < GH_STATUS_INCIDENTS_MAX)
        return 0;
    for (unsigned i = 0; i < st->ninc; i++) {
        if (st->inc[i]->status != GH_INCIDENT_RESOLVED)
            continue;
        incident_free(st->inc[i]);
        memmove(&st->inc[i], &st->inc[i + 1], (st->ninc - i - 1) * sizeof st->inc[0]);
        st->ninc--;
        return 0;
    }
    return GH_EBUSY;
}

/* Appends an update; sets the incident's status and timestamps. */
static int incident_add_update(struct gh_status_incident *in, int status, const char *body,
                               const char *body_zh, uint64_t now)
{
    if (in->nupdates >= GH_STATUS_UPDATES_MAX)
        return GH_ETOOBIG;
    struct gh_status_update *u = &in->updates[in->nupdates];
    memset(u, 0, sizeof *u);
    random_id(u->id);
    u->status = status;
    u->body = dup_capped(body, GH_STATUS_BODY_MAX);
    u->body_zh = body_zh && *body_zh ? dup_capped(body_zh, GH_STATUS_BODY_MAX) : NULL;
    if (!u->body || (body_zh && *body_zh && !u->body_zh)) {
        free(u->body);
        free(u->body_zh);
        return GH_ENOMEM;
    }
    u->created_ms = u->display_ms = now;
    in->nupdates++;
    in->status = status;
    in->updated_ms = now;
    if (status == GH_INCIDENT_MONITORING && !in->monitoring_ms)
        in->monitoring_ms = now;
    in->resolved_ms = status == GH_INCIDENT_RESOLVED ? now : 0;
    return 0;
}

static int incident_create_locked(struct gh_status *st, const struct gh_status_incident_in *in,
                                  bool is_auto, uint64_t now, struct gh_status_incident **out)
{
    if (!in->name || !*in->name || !in->body || !*in->body)
        return GH_EINVAL;
    int rc = incident_room_locked(st);
    if (rc)
        return rc;
    struct gh_status_incident *x = calloc(1, sizeof *x);
    if (!x)
        return GH_ENOMEM;
    random_id(x->id);
    x->name = dup_capped(in->name, GH_STATUS_NAME_MAX);
    x->name_zh = in->name_zh && *in->name_zh ? dup_capped(in->name_zh, GH_STATUS_NAME_MAX) : NULL;
    x->impact = in->impact >= 0 ? in->impact : GH_IMPACT_MINOR;
    x->created_ms = now;
    x->is_auto = is_auto;
    for (int i = 0; i < in->ncomponents && i < GH_STATUS_NCOMP; i++) {
        int ci = in->components[i];
        bool dup = false;
        for (unsigned k = 0; k < x->ncomponents; k++)
            dup |= x->components[k] == ci;
        if (ci >= 0 && ci < GH_STATUS_NCOMP && !dup)
            x->components[x->ncomponents++] = ci;
    }
    rc = x->name ? incident_add_update(x, in->status >= 0 ? in->status : GH_INCIDENT_INVESTIGATING,
                                       in->body, in->body_zh, now)
                 : GH_ENOMEM;
    if (rc) {
        incident_free(x);
        return rc;
    }
    st->inc[st->ninc++] = x;
    *out = x;
    return 0;
}

int gh_status_incident_create(struct gh_status *st, const struct gh_status_incident_in *in,
                              struct gh_buf *out)
{
    pthread_mutex_lock(&st->mu);
    uint64_t now = gh_status_now(st);
    struct gh_status_incident *x = NULL;
    int rc = incident_create_locked(st, in, false, now, &x);
    if (!rc) {
        st->op_seq++;
        changed_locked(st, now);
        if (out)
            rc = gh_status_render_incident_locked(st, x, out);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int gh_status_incident_update(struct gh_status *st, const char *id,
                              const struct gh_status_incident_in *in, struct gh_buf *out)
{
    if (!in->body || !*in->body || in->status < 0)
        return GH_EINVAL;
    pthread_mutex_lock(&st->mu);
    uint64_t now = gh_status_now(st);
    int rc = GH_ENOTFOUND;
    struct gh_status_incident *x = incident_find_locked(st, id);
    if (x) {
        rc = incident_add_update(x, in->status, in->body, in->body_zh, now);
        if (!rc) {
            if (in->impact >= 0)
                x->impact = in->impact;
            if (in->ncomponents >= 0) {
                x->ncomponents = 0;
                for (int i = 0; i < in->ncomponents && i < GH_STATUS_NCOMP; i++)
                    x->components[x->ncomponents++] = in->components[i];
            }
            /* an operator who resolves the automatic incident has the last
             * word: calm no longer needs to close it */
            if (x->is_auto && x->status == GH_INCIDENT_RESOLVED && !strcmp(st->auto_incident, id))
                st->auto_incident[0] = '\0';
            if (!x->is_auto)
                st->op_seq++;
            changed_locked(st, now);
            if (out)
                rc = gh_status_render_incident_locked(st, x, out);
        }
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- the attack level ---- */

/* Closes the automatic incident once calm has lasted the configured delay. */
static void auto_resolve_locked(struct gh_status *st, uint64_t now)
{
    if (!st->auto_incident[0] || !st->calm_since_ms)
        return;
    struct gh_status_incident *x = incident_find_locked(st, st->auto_incident);
    if (!x || x->status == GH_INCIDENT_RESOLVED) {
        st->auto_incident[0] = '\0';
        st->calm_since_ms = 0;
        return;
    }
    if (now - st->calm_since_ms < st->auto_resolve_delay_ms)
        return;
    if (incident_add_update(x, GH_INCIDENT_RESOLVED, st->attack_resolved[0], st->attack_resolved[1],
                            now))
        return; /* full of updates: an operator must close it */
    gh_log(GH_LOG_INFO, "status_incident_closed", "automatic incident %s resolved", x->id);
    st->auto_incident[0] = '\0';
    st->calm_since_ms = 0;
    changed_locked(st, now);
}

int gh_status_set_attack(struct gh_status *st, int level)
{
    if (level < 0 || level > 2)
        return GH_EINVAL;
    pthread_mutex_lock(&st->mu);
    uint64_t now = gh_status_now(st);
    int threshold = st->incident_on_elevated ? 1 : 2;
    st->attack_level = level;
    if (level >= threshold) {
        st->calm_since_ms = 0;
        struct gh_status_incident *x = incident_find_locked(st, st->auto_incident);
        if (!x || x->status == GH_INCIDENT_RESOLVED) {
            struct gh_status_incident_in in = {
                .name = st->attack_title[0],
                .name_zh = st->attack_title[1],
                .body = st->attack_body[0],
                .body_zh = st->attack_body[1],
                .status = GH_INCIDENT_IDENTIFIED,
                .impact = GH_IMPACT_MINOR,
                .ncomponents = 1,
                .components = {gh_status_component_index("registration")},
            };
            int rc = incident_create_locked(st, &in, true, now, &x);
            if (rc) {
                gh_log(GH_LOG_WARN, "status_incident_failed",
                       "cannot open the automatic incident (%d)", rc);
                st->auto_incident[0] = '\0';
            } else {
                gh_log(GH_LOG_INFO, "status_incident_opened", "automatic incident %s opened",
                       x->id);
                snprintf(st->auto_incident, sizeof st->auto_incident, "%s", x->id);
                changed_locked(st, now);
            }
        }
    } else if (st->auto_incident[0]) {
        if (!st->calm_since_ms)
            st->calm_since_ms = now ? now : 1;
        auto_resolve_locked(st, now);
    }
    pthread_mutex_unlock(&st->mu);
    return 0;
}

/* ---- admin listings ---- */

int gh_status_admin_incidents(struct gh_status *st, struct gh_buf *out)
{
    pthread_mutex_lock(&st->mu);
    int rc = gh_buf_append_str(out, "{\"incidents\":[");
    for (unsigned i = st->ninc; !rc && i-- > 0;) {
        rc = gh_status_render_incident_locked(st, st->inc[i], out);
        if (!rc && i)
            rc = gh_buf_append_str(out, ",");
    }
    if (!rc)
        rc = gh_buf_printf(out, "],\"attack_level\":\"%s\",\"auto_incident\":%s%s%s}\n",
                           st->attack_level == 2   ? "under_attack"
                           : st->attack_level == 1 ? "elevated"
                                                   : "normal",
                           st->auto_incident[0] ? "\"" : "",
                           st->auto_incident[0] ? st->auto_incident : "null",
                           st->auto_incident[0] ? "\"" : "");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int gh_status_admin_components(struct gh_status *st, struct gh_buf *out)
{
    pthread_mutex_lock(&st->mu);
    int rc = gh_buf_append_str(out, "{\"components\":[");
    for (int i = 0; !rc && i < GH_STATUS_NCOMP; i++) {
        if (i)
            rc = gh_buf_append_str(out, ",");
        if (!rc)
            rc = gh_status_render_component_locked(st, &st->comps[i], true, out);
    }
    if (!rc)
        rc = gh_buf_append_str(out, "]}\n");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int gh_status_render(struct gh_status *st, enum gh_status_doc doc,
                     const struct gh_status_html_links *links, struct gh_buf *out)
{
    pthread_mutex_lock(&st->mu);
    history_roll_locked(st, day_of(gh_status_now(st)));
    int rc = gh_status_render_locked(st, doc, links ? links : &served_links, out);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- persistence ---- */

static json_t *ms_or_null(uint64_t ms)
{
    return ms ? json_integer((json_int_t)ms) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* One incident as the state file (and the shared document) keep it. */
static json_t *incident_json(const struct gh_status_incident *x)
{
    json_t *cl = json_array(), *ul = json_array();
    for (unsigned k = 0; k < x->ncomponents; k++)
        json_array_append_new(cl, json_string(comp_defs[x->components[k]].id));
    for (unsigned k = 0; k < x->nupdates; k++) {
        const struct gh_status_update *u = &x->updates[k];
        json_array_append_new(
            ul, json_pack("{s:s,s:s,s:s,s:o,s:I,s:I}", "id", u->id, "status", inc_names[u->status],
                          "body", u->body, "body_zh", str_or_null(u->body_zh), "created_ms",
                          (json_int_t)u->created_ms, "display_ms", (json_int_t)u->display_ms));
    }
    return json_pack("{s:s,s:s,s:o,s:s,s:s,s:I,s:I,s:o,s:o,s:b,s:o,s:o}", "id", x->id, "name",
                     x->name, "name_zh", str_or_null(x->name_zh), "status", inc_names[x->status],
                     "impact", impact_names[x->impact], "created_ms", (json_int_t)x->created_ms,
                     "updated_ms", (json_int_t)x->updated_ms, "monitoring_ms",
                     ms_or_null(x->monitoring_ms), "resolved_ms", ms_or_null(x->resolved_ms),
                     "auto", x->is_auto, "components", cl, "updates", ul);
}

/* The state as JSON text (malloc'd), or NULL when out of memory. */
static char *serialize_locked(const struct gh_status *st)
{
    json_t *root = json_object();
    json_t *comps = json_array(), *incs = json_array();
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "updated_ms", json_integer((json_int_t)st->updated_ms));
    json_object_set_new(root, "auto_incident", json_string(st->auto_incident));
    json_object_set_new(root, "components", comps);
    json_object_set_new(root, "incidents", incs);
    for (int i = 0; i < GH_STATUS_NCOMP; i++) {
        const struct gh_status_component *c = &st->comps[i];
        json_t *h = json_array();
        for (int k = 0; k < GH_STATUS_DAYS; k++)
            if (c->hday[k])
                json_array_append_new(
                    h, json_pack("[I,i]", (json_int_t)c->hday[k], (int)c->hworst[k]));
        json_array_append_new(
            comps, json_pack("{s:s,s:I,s:I,s:o,s:I,s:o}", "id", c->id, "created_ms",
                             (json_int_t)c->created_ms, "updated_ms", (json_int_t)c->updated_ms,
                             "override",
                             c->override >= 0 ? json_string(comp_names[c->override]) : json_null(),
                             "last_day", (json_int_t)c->last_day, "history", h));
    }
    for (unsigned i = 0; i < st->ninc; i++)
        json_array_append_new(incs, incident_json(st->inc[i]));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static uint64_t jms(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* Appends incident i of a state (what: where it comes from, for err) to
 * st->inc (the caller made room). 0, GH_EINVAL or GH_ENOMEM. */
static int incident_load(struct gh_status *st, json_t *v, size_t i, const char *what,
                         struct gh_buf *err)
{
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *name = json_string_value(json_object_get(v, "name"));
    int impact = gh_status_parse_impact(json_string_value(json_object_get(v, "impact")));
    json_t *ul = json_object_get(v, "updates");
    if (!id || strlen(id) != GH_STATUS_ID_LEN || !name || impact < 0 || !json_array_size(ul)) {
        gh_buf_printf(err, "%s: incident %zu is malformed", what, i);
        return GH_EINVAL;
    }
    struct gh_status_incident *x = calloc(1, sizeof *x);
    if (!x)
        return GH_ENOMEM;
    st->inc[st->ninc++] = x;
    memcpy(x->id, id, GH_STATUS_ID_LEN + 1);
    x->name = dup_capped(name, GH_STATUS_NAME_MAX);
    x->name_zh = dup_capped(json_string_value(json_object_get(v, "name_zh")), GH_STATUS_NAME_MAX);
    x->impact = impact;
    x->is_auto = json_is_true(json_object_get(v, "auto"));
    x->created_ms = jms(v, "created_ms");
    size_t k;
    json_t *cv;
    json_array_foreach(json_object_get(v, "components"), k, cv)
    {
        int ci = gh_status_component_index(json_string_value(cv));
        if (ci >= 0 && x->ncomponents < GH_STATUS_NCOMP)
            x->components[x->ncomponents++] = ci;
    }
    json_array_foreach(ul, k, cv)
    {
        int s = gh_status_parse_incident_status(json_string_value(json_object_get(cv, "status")));
        const char *body = json_string_value(json_object_get(cv, "body"));
        if (s < 0 || !body || x->nupdates >= GH_STATUS_UPDATES_MAX)
            continue;
        if (incident_add_update(x, s, body, json_string_value(json_object_get(cv, "body_zh")),
                                jms(cv, "created_ms")))
            return GH_ENOMEM;
        struct gh_status_update *u = &x->updates[x->nupdates - 1];
        const char *uid = json_string_value(json_object_get(cv, "id"));
        if (uid && strlen(uid) == GH_STATUS_ID_LEN)
            memcpy(u->id, uid, GH_STATUS_ID_LEN + 1);
        u->display_ms = jms(cv, "display_ms") ? jms(cv, "display_ms") : u->created_ms;
    }
    if (!x->name || !x->nupdates) {
        gh_buf_printf(err, "%s: incident %s has no valid update", what, id);
        return GH_EINVAL;
    }
    x->updated_ms = jms(v, "updated_ms");
    x->monitoring_ms = jms(v, "monitoring_ms");
    x->resolved_ms = jms(v, "resolved_ms");
    return 0;
}

/* Reads the state written by serialize_locked into st (fresh). */
static int load_json(struct gh_status *st, json_t *root, struct gh_buf *err)
{
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1) {
        gh_buf_printf(err, "%s: not a status state file of version 1", st->path);
        return GH_EINVAL;
    }
    st->updated_ms = jms(root, "updated_ms");
    const char *ai = json_string_value(json_object_get(root, "auto_incident"));
    snprintf(st->auto_incident, sizeof st->auto_incident, "%s", ai ? ai : "");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(root, "components"), i, v)
    {
        int ci = gh_status_component_index(json_string_value(json_object_get(v, "id")));
        if (ci < 0)
            continue; /* a component this version no longer has */
        struct gh_status_component *c = &st->comps[ci];
        if (jms(v, "created_ms"))
            c->created_ms = jms(v, "created_ms");
        if (jms(v, "updated_ms"))
            c->updated_ms = jms(v, "updated_ms");
        c->override =
            gh_status_parse_component_status(json_string_value(json_object_get(v, "override")));
        c->last_day = (uint32_t)jms(v, "last_day");
        size_t k;
        json_t *h;
        json_array_foreach(json_object_get(v, "history"), k, h)
        {
            json_int_t day = json_integer_value(json_array_get(h, 0));
            json_int_t worst = json_integer_value(json_array_get(h, 1));
            if (day <= 0 || day > UINT32_MAX || (worst > 3 && worst != GH_STATUS_NODATA) ||
                worst < 0)
                continue;
            c->hday[day % GH_STATUS_DAYS] = (uint32_t)day;
            c->hworst[day % GH_STATUS_DAYS] = (uint8_t)worst;
        }
    }
    json_array_foreach(json_object_get(root, "incidents"), i, v)
    {
        if (st->ninc >= GH_STATUS_INCIDENTS_MAX)
            break;
        int rc = incident_load(st, v, i, st->path, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int load_file(struct gh_status *st, struct gh_buf *err)
{
    json_error_t je;
    FILE *f = fopen(st->path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        gh_buf_printf(err, "%s: %s", st->path, strerror(errno));
        return GH_EIO;
    }
    json_t *root = json_loadf(f, 0, &je);
    fclose(f);
    if (!root) {
        gh_buf_printf(err, "%s:%d: %s", st->path, je.line, je.text);
        return GH_EINVAL;
    }
    int rc = load_json(st, root, err);
    json_decref(root);
    st->history_gap_unknown = true;
    return rc;
}

/* A crash leaves the old file or the new one, never half of one. */
int gh_status_write_atomic(const char *dir, const char *path, const char *data, size_t len,
                           unsigned mode)
{
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return GH_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return GH_EIO;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        off += (size_t)w;
    }
    if (fsync(fd))
        goto fail;
    close(fd);
    fd = -1;
    if (rename(tmp, path))
        goto fail;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return GH_EIO;
}

int gh_status_flush(struct gh_status *st)
{
    if (!st->path || st->read_only)
        return 0;
    pthread_mutex_lock(&st->mu);
    if (st->seq == st->saved_seq) {
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
    uint64_t seq = st->seq;
    char *text = serialize_locked(st);
    pthread_mutex_unlock(&st->mu);
    if (!text)
        return GH_ENOMEM;
    int rc = gh_status_write_atomic(st->data_dir, st->path, text, strlen(text), 0600);
    free(text);
    if (rc) {
        gh_log(GH_LOG_ERROR, "status_write", "cannot write %s: %s", st->path, strerror(errno));
        return rc;
    }
    pthread_mutex_lock(&st->mu);
    if (seq > st->saved_seq)
        st->saved_seq = seq;
    pthread_mutex_unlock(&st->mu);
    return 0;
}

void gh_status_tick(struct gh_status *st)
{
    pthread_mutex_lock(&st->mu);
    uint64_t now = gh_status_now(st);
    uint32_t today = day_of(now);
    if (today != st->snap_day) {
        history_roll_locked(st, today);
        changed_locked(st, st->updated_ms);
    }
    auto_resolve_locked(st, now);
    pthread_mutex_unlock(&st->mu);
}

static void share_flush(struct gh_status *st);

static void *status_thread(void *arg)
{
    struct gh_status *st = arg;
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&st->cond, &st->mu, &ts);
        if (st->stopping)
            break;
        pthread_mutex_unlock(&st->mu);
        gh_status_tick(st);
        /* a write failure is logged and retried at the next change */
        gh_status_flush(st);
        share_flush(st);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- the operator's part, shared with the other nodes of a cluster ---- */

/* {"version":1,"incidents":[…],"overrides":{id:state}}: what operators
 * made (automatic incidents and the histories stay each node's). Text
 * (malloc'd) or NULL. */
static char *share_doc_locked(const struct gh_status *st)
{
    json_t *root = json_object(), *incs = json_array(), *ov = json_object();
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "incidents", incs);
    json_object_set_new(root, "overrides", ov);
    for (unsigned i = 0; i < st->ninc; i++)
        if (!st->inc[i]->is_auto)
            json_array_append_new(incs, incident_json(st->inc[i]));
    for (int i = 0; i < GH_STATUS_NCOMP; i++)
        if (st->comps[i].override >= 0)
            json_object_set_new(ov, st->comps[i].id,
                                json_string(comp_names[st->comps[i].override]));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* Hands the operator's part to st->share after a change made here. */
static void share_flush(struct gh_status *st)
{
    pthread_mutex_lock(&st->mu);
    if (!st->share || st->op_seq == st->op_shared) {
        pthread_mutex_unlock(&st->mu);
        return;
    }
    st->op_shared = st->op_seq;
    char *doc = share_doc_locked(st);
    void (*fn)(const char *, void *) = st->share;
    void *data = st->share_data;
    pthread_mutex_unlock(&st->mu);
    if (doc)
        fn(doc, data);
    free(doc);
}

void gh_status_set_share(struct gh_status *st, void (*fn)(const char *doc, void *data), void *data)
{
    pthread_mutex_lock(&st->mu);
    st->share = fn;
    st->share_data = data;
    st->op_shared = st->op_seq; /* what is here now came from the file */
    pthread_mutex_unlock(&st->mu);
}

static int by_created(const void *a, const void *b)
{
    const struct gh_status_incident *x = *(struct gh_status_incident *const *)a;
    const struct gh_status_incident *y = *(struct gh_status_incident *const *)b;
    return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
}

int gh_status_apply_shared(struct gh_status *st, const char *doc, struct gh_buf *err)
{
    json_t *root = json_loads(doc, 0, NULL);
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1) {
        json_decref(root);
        gh_buf_printf(err, "shared status: not a document of version 1");
        return GH_EINVAL;
    }
    pthread_mutex_lock(&st->mu);
    uint64_t now = gh_status_now(st);
    /* this node's automatic incidents stay; the operators' are replaced */
    struct gh_status_incident *old[GH_STATUS_INCIDENTS_MAX];
    unsigned nold = 0, n = 0;
    for (unsigned i = 0; i < st->ninc; i++) {
        if (st->inc[i]->is_auto)
            st->inc[n++] = st->inc[i];
        else
            old[nold++] = st->inc[i];
    }
    st->ninc = n;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(root, "incidents"), i, v)
    {
        if (st->ninc >= GH_STATUS_INCIDENTS_MAX)
            break;
        unsigned before = st->ninc;
        if (json_is_true(json_object_get(v, "auto")) ||
            !incident_load(st, v, i, "shared status", err))
            continue;
        while (st->ninc > before) /* a malformed one is left out */
            incident_free(st->inc[--st->ninc]);
    }
    qsort(st->inc, st->ninc, sizeof st->inc[0], by_created);
    for (unsigned k = 0; k < nold; k++)
        incident_free(old[k]);
    json_t *ov = json_object_get(root, "overrides");
    for (int k = 0; k < GH_STATUS_NCOMP; k++) {
        struct gh_status_component *c = &st->comps[k];
        int want = gh_status_parse_component_status(json_string_value(json_object_get(ov, c->id)));
        if (want != c->override)
            comp_apply_locked(st, c, c->auto_state, want, NULL);
    }
    changed_locked(st, now);
    pthread_mutex_unlock(&st->mu);
    json_decref(root);
    return 0;
}

/* ---- lifecycle ---- */

int gh_status_reconfigure(struct gh_status *st, const struct gh_status_opts *o)
{
    char *name = strdup(o->page_name ? o->page_name : "gatehouse");
    char *url = strdup(o->page_url ? o->page_url : "");
    char *texts[6] = {0};
    const char *src[6] = {o->attack_title[0], o->attack_title[1],    o->attack_body[0],
                          o->attack_body[1],  o->attack_resolved[0], o->attack_resolved[1]};
    bool ok = name && url;
    for (int i = 0; i < 6; i++) {
        texts[i] =
            src[i] ? dup_capped(src[i], i < 2 ? GH_STATUS_NAME_MAX : GH_STATUS_BODY_MAX) : NULL;
        ok &= texts[i] || !src[i];
    }
    if (!ok) {
        free(name);
        free(url);
        for (int i = 0; i < 6; i++)
            free(texts[i]);
        return GH_ENOMEM;
    }
    pthread_mutex_lock(&st->mu);
    char **dst[6] = {&st->attack_title[0], &st->attack_title[1],    &st->attack_body[0],
                     &st->attack_body[1],  &st->attack_resolved[0], &st->attack_resolved[1]};
    for (int i = 0; i < 6; i++) {
        if (!texts[i])
            continue;
        free(*dst[i]);
        *dst[i] = texts[i];
    }
    free(st->page_name);
    free(st->page_url);
    st->page_name = name;
    st->page_url = url;
    st->incident_on_elevated = o->incident_on_elevated;
    st->auto_resolve_delay_ms = o->auto_resolve_delay_ms;
    if (publish_locked(st))
        gh_log(GH_LOG_ERROR, "status_render", "cannot render the status page (out of memory)");
    pthread_mutex_unlock(&st->mu);
    return 0;
}

void gh_status_free(struct gh_status *st)
{
    if (!st)
        return;
    if (st->thread_started) {
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
    }
    gh_status_flush(st);
    for (unsigned i = 0; i < st->ninc; i++)
        incident_free(st->inc[i]);
    gh_status_snap_unref(st->snap);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->snap_mu);
    pthread_mutex_destroy(&st->mu);
    free(st->data_dir);
    free(st->path);
    free(st->page_name);
    free(st->page_url);
    for (int i = 0; i < 2; i++) {
        free(st->attack_title[i]);
        free(st->attack_body[i]);
        free(st->attack_resolved[i]);
    }
    free(st);
}

int gh_status_new(const struct gh_status_opts *o, struct gh_status **out, struct gh_buf *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return GH_ENOMEM;
    struct gh_status *st = calloc(1, sizeof *st);
    if (!st)
        return GH_ENOMEM;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->snap_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cond, &ca);
    pthread_condattr_destroy(&ca);
    st->clock = o->clock;
    st->clock_data = o->clock_data;
    st->incident_on_elevated = o->incident_on_elevated;
    st->auto_resolve_delay_ms = o->auto_resolve_delay_ms;
    st->page_name = strdup(o->page_name ? o->page_name : "gatehouse");
    st->page_url = strdup(o->page_url ? o->page_url : "");
    static const char *const def_title[2] = {"Registration temporarily limited", "注册暂时受限"};
    static const char *const def_body[2] = {
        "Due to large-scale malicious attacks, registration is temporarily limited. Existing "
        "users can log in as usual.",
        "由于遭受大规模恶意攻击，注册暂时受限。已注册用户可以正常登录。"};
    static const char *const def_res[2] = {"Registration is open again.", "注册已恢复开放。"};
    int rc = GH_ENOMEM;
    for (int i = 0; i < 2; i++) {
        st->attack_title[i] =
            dup_capped(o->attack_title[i] ? o->attack_title[i] : def_title[i], GH_STATUS_NAME_MAX);
        st->attack_body[i] =
            dup_capped(o->attack_body[i] ? o->attack_body[i] : def_body[i], GH_STATUS_BODY_MAX);
        st->attack_resolved[i] = dup_capped(
            o->attack_resolved[i] ? o->attack_resolved[i] : def_res[i], GH_STATUS_BODY_MAX);
        if (!st->attack_title[i] || !st->attack_body[i] || !st->attack_resolved[i])
            goto fail;
    }
    if (!st->page_name || !st->page_url)
        goto fail;
    if (o->data_dir) {
        st->read_only = o->read_only;
        st->data_dir = strdup(o->data_dir);
        size_t n = strlen(o->data_dir) + sizeof "/status-state.json";
        st->path = malloc(n);
        if (!st->data_dir || !st->path)
            goto fail;
        snprintf(st->path, n, "%s/status-state.json", o->data_dir);
    }
    uint64_t now = gh_status_now(st);
    for (int i = 0; i < GH_STATUS_NCOMP; i++) {
        struct gh_status_component *c = &st->comps[i];
        c->id = comp_defs[i].id;
        c->name[0] = comp_defs[i].name_en;
        c->name[1] = comp_defs[i].name_zh;
        c->desc[0] = comp_defs[i].desc_en;
        c->desc[1] = comp_defs[i].desc_zh;
        c->position = (unsigned)i + 1;
        c->created_ms = c->updated_ms = now;
        c->override = -1;
    }
    st->updated_ms = now;
    if (st->path) {
        rc = load_file(st, err);
        if (rc)
            goto fail;
    }
    pthread_mutex_lock(&st->mu);
    history_roll_locked(st, day_of(now));
    rc = publish_locked(st);
    /* a fresh file is written at once, so that `status export` finds one */
    st->seq = 1;
    pthread_mutex_unlock(&st->mu);
    if (rc)
        goto fail;
    if (o->start_thread) {
        if (pthread_create(&st->thread, NULL, status_thread, st)) {
            rc = GH_ENOMEM;
            goto fail;
        }
        st->thread_started = true;
    }
    *out = st;
    return 0;
fail:
    if (rc == GH_ENOMEM && !err->len)
        gh_buf_append_str(err, "out of memory");
    st->seq = st->saved_seq; /* nothing to write */
    gh_status_free(st);
    return rc;
}
