/* Unit tests of the status model (status/status.h): the overall indicator
 * from components and incidents, operator overrides over automatic state,
 * the daily history roll-up, the automatic attack incident, persistence,
 * input limits, and the Statuspage JSON shapes. A fake clock drives time. */
#include "test_util.h"

#include "status/model.h"

#include <jansson.h>

#define HOUR_MS (3600ull * 1000ull)
#define DAY     (24 * HOUR_MS)

struct fake_clock {
    uint64_t now;
};

static uint64_t fake_now(void *data)
{
    return ((struct fake_clock *)data)->now;
}

struct fixture {
    struct fake_clock clock;
    struct gh_status *st;
    char dir[256];
};

static struct gh_status *make(struct fixture *f, const char *data_dir, uint64_t delay_ms,
                              bool on_elevated)
{
    struct gh_status_opts o = {0};
    o.data_dir = data_dir;
    o.page_name = "test page";
    o.page_url = "http://status.test/status";
    o.clock = fake_now;
    o.clock_data = &f->clock;
    o.auto_resolve_delay_ms = delay_ms;
    o.incident_on_elevated = on_elevated;
    o.attack_title[0] = "Registration temporarily limited";
    o.attack_body[0] = "Due to large-scale malicious attacks, registration is temporarily "
                       "limited. Existing users can log in as usual.";
    o.attack_body[1] = "由于遭受大规模恶意攻击，注册暂时受限。";
    o.attack_resolved[0] = "Registration is open again.";
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_status *st = NULL;
    int rc = gh_status_new(&o, &st, &err);
    if (rc)
        print_error("gh_status_new: %d %s\n", rc, err.data ? err.data : "");
    assert_int_equal(rc, 0);
    gh_buf_dispose(&err);
    return st;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    /* 2025-01-27 10:00 UTC */
    f->clock.now = 1737972000000ull;
    f->st = make(f, NULL, 0, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gh_status_free(f->st);
    if (f->dir[0])
        tu_rmtree(f->dir);
    free(f);
    return 0;
}

/* The current snapshot's document as parsed JSON. */
static json_t *doc_json(struct gh_status *st, enum gh_status_doc d)
{
    struct gh_status_snap *s = gh_status_snap_get(st);
    json_error_t je;
    json_t *j = json_loadb(s->doc[d].data, s->doc[d].len, 0, &je);
    if (!j)
        print_error("doc %d: %s: %.300s\n", d, je.text, s->doc[d].data);
    assert_non_null(j);
    gh_status_snap_unref(s);
    return j;
}

static char *doc_text(struct gh_status *st, enum gh_status_doc d)
{
    struct gh_status_snap *s = gh_status_snap_get(st);
    char *t = strndup(s->doc[d].data, s->doc[d].len);
    gh_status_snap_unref(s);
    return t;
}

static const char *indicator(struct gh_status *st)
{
    static char out[32];
    json_t *j = doc_json(st, GH_DOC_STATUS);
    snprintf(out, sizeof out, "%s",
             json_string_value(json_object_get(json_object_get(j, "status"), "indicator")));
    json_decref(j);
    return out;
}

static const char *component_status(struct gh_status *st, const char *id)
{
    static char out[64];
    out[0] = '\0';
    json_t *j = doc_json(st, GH_DOC_COMPONENTS);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "components"), i, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "id")), id))
            snprintf(out, sizeof out, "%s", json_string_value(json_object_get(c, "status")));
    }
    json_decref(j);
    return out;
}

static size_t count_incidents(struct gh_status *st, enum gh_status_doc d)
{
    json_t *j = doc_json(st, d);
    size_t n = json_array_size(json_object_get(j, "incidents"));
    json_decref(j);
    return n;
}

/* Creates an incident and returns its id (static storage). */
static const char *create(struct gh_status *st, const char *name, int impact, int status)
{
    static char id[32];
    struct gh_status_incident_in in = {
        .name = name, .body = "We are looking into it.", .status = status, .impact = impact};
    struct gh_buf b;
    gh_buf_init(&b, 1 << 20);
    assert_int_equal(gh_status_incident_create(st, &in, &b), 0);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(j);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    gh_buf_dispose(&b);
    return id;
}

static void update(struct gh_status *st, const char *id, int status, const char *body)
{
    struct gh_status_incident_in in = {
        .body = body, .status = status, .impact = -1, .ncomponents = -1};
    assert_int_equal(gh_status_incident_update(st, id, &in, NULL), 0);
}

/* ---- indicator ---- */

static void test_indicator_components(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(indicator(f->st), "none");
    json_t *j = doc_json(f->st, GH_DOC_STATUS);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "status"), "description")),
        "All Systems Operational");
    json_decref(j);

    assert_int_equal(gh_status_set_auto(f->st, "registration", GH_STATUS_DEGRADED_PERFORMANCE,
                                        "policy restricted"),
                     0);
    assert_string_equal(indicator(f->st), "minor");
    assert_int_equal(gh_status_set_auto(f->st, "api", GH_STATUS_PARTIAL_OUTAGE, "circuits"), 0);
    assert_string_equal(indicator(f->st), "major");
    j = doc_json(f->st, GH_DOC_STATUS);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "status"), "description")),
        "Partial System Outage");
    json_decref(j);
    assert_int_equal(gh_status_set_auto(f->st, "login", GH_STATUS_MAJOR_OUTAGE, NULL), 0);
    assert_string_equal(indicator(f->st), "critical");
    for (int i = 0; i < GH_STATUS_NCOMP; i++)
        gh_status_set_auto(f->st, gh_status_component_id(i), GH_STATUS_OPERATIONAL, NULL);
    assert_string_equal(indicator(f->st), "none");

    assert_int_equal(gh_status_set_auto(f->st, "nope", GH_STATUS_OPERATIONAL, NULL), GH_ENOTFOUND);
    assert_int_equal(gh_status_set_auto(f->st, "api", (enum gh_component_status)7, NULL),
                     GH_EINVAL);
}

static void test_indicator_incidents(void **state)
{
    struct fixture *f = *state;
    const char *id = create(f->st, "Slow answers", GH_IMPACT_CRITICAL, -1);
    char saved[32];
    snprintf(saved, sizeof saved, "%s", id);
    assert_string_equal(indicator(f->st), "critical");
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    update(f->st, saved, GH_INCIDENT_MONITORING, "A fix is out.");
    assert_string_equal(indicator(f->st), "critical");
    update(f->st, saved, GH_INCIDENT_RESOLVED, "Fixed.");
    assert_string_equal(indicator(f->st), "none");
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 0);
    assert_int_equal(count_incidents(f->st, GH_DOC_INCIDENTS), 1);

    /* an impact of none leaves the indicator alone */
    create(f->st, "Heads-up", GH_IMPACT_NONE, -1);
    assert_string_equal(indicator(f->st), "none");
    create(f->st, "Minor thing", GH_IMPACT_MINOR, -1);
    assert_string_equal(indicator(f->st), "minor");
}

/* ---- overrides ---- */

static void test_override_precedence(void **state)
{
    struct fixture *f = *state;
    gh_status_set_auto(f->st, "registration", GH_STATUS_PARTIAL_OUTAGE, "busy");
    assert_string_equal(component_status(f->st, "registration"), "partial_outage");
    struct gh_buf b;
    gh_buf_init(&b, 1 << 16);
    assert_int_equal(gh_status_set_override(f->st, "registration", GH_STATUS_OPERATIONAL, &b), 0);
    tu_assert_contains(b.data, "\"override\":\"operational\"");
    tu_assert_contains(b.data, "\"auto_status\":\"partial_outage\"");
    gh_buf_dispose(&b);
    assert_string_equal(component_status(f->st, "registration"), "operational");
    /* automatic changes do not show while the override holds */
    gh_status_set_auto(f->st, "registration", GH_STATUS_MAJOR_OUTAGE, "closed");
    assert_string_equal(component_status(f->st, "registration"), "operational");
    assert_string_equal(indicator(f->st), "none");
    /* clearing returns to the automatic state */
    assert_int_equal(gh_status_set_override(f->st, "registration", -1, NULL), 0);
    assert_string_equal(component_status(f->st, "registration"), "major_outage");
    assert_string_equal(indicator(f->st), "critical");
    assert_int_equal(gh_status_set_override(f->st, "nope", 1, NULL), GH_ENOTFOUND);
}

/* ---- history ---- */

static int worst_of(struct gh_status *st, const char *id, uint64_t ms)
{
    const struct gh_status_component *c = &st->comps[gh_status_component_index(id)];
    uint32_t day = (uint32_t)(ms / DAY);
    unsigned slot = day % GH_STATUS_DAYS;
    return c->hday[slot] == day ? c->hworst[slot] : -1;
}

static void test_history_rollup(void **state)
{
    struct fixture *f = *state;
    uint64_t d0 = f->clock.now;
    assert_int_equal(worst_of(f->st, "api", d0), GH_STATUS_OPERATIONAL);
    f->clock.now += HOUR_MS;
    gh_status_set_auto(f->st, "api", GH_STATUS_PARTIAL_OUTAGE, NULL);
    f->clock.now += HOUR_MS;
    gh_status_set_auto(f->st, "api", GH_STATUS_DEGRADED_PERFORMANCE, NULL);
    f->clock.now += HOUR_MS;
    gh_status_set_auto(f->st, "api", GH_STATUS_OPERATIONAL, NULL);
    /* the day keeps its worst */
    assert_int_equal(worst_of(f->st, "api", d0), GH_STATUS_PARTIAL_OUTAGE);
    assert_int_equal(worst_of(f->st, "web", d0), GH_STATUS_OPERATIONAL);

    /* a degraded state spans midnight: both days carry it */
    gh_status_set_auto(f->st, "login", GH_STATUS_DEGRADED_PERFORMANCE, NULL);
    f->clock.now = d0 + DAY;
    gh_status_tick(f->st);
    assert_int_equal(worst_of(f->st, "login", d0 + DAY), GH_STATUS_DEGRADED_PERFORMANCE);
    assert_int_equal(worst_of(f->st, "api", d0 + DAY), GH_STATUS_OPERATIONAL);
    gh_status_set_auto(f->st, "login", GH_STATUS_OPERATIONAL, NULL);

    /* days without a tick are filled with the state that held */
    f->clock.now = d0 + 4 * DAY;
    gh_status_tick(f->st);
    assert_int_equal(worst_of(f->st, "login", d0 + 2 * DAY), GH_STATUS_OPERATIONAL);
    assert_int_equal(worst_of(f->st, "login", d0 + 3 * DAY), GH_STATUS_OPERATIONAL);
    assert_int_equal(worst_of(f->st, "api", d0), GH_STATUS_PARTIAL_OUTAGE);

    /* the page draws 90 bars per component, today's last */
    char *html = doc_text(f->st, GH_DOC_HTML_EN);
    size_t bars = 0;
    for (const char *p = html; (p = strstr(p, "class=\"b ")) != NULL; p++)
        bars++;
    assert_int_equal(bars, 90 * GH_STATUS_NCOMP);
    tu_assert_contains(html, "<span class=\"b s2\" title=\"2025-01-27: Partial outage\">");
    tu_assert_contains(html, "<span class=\"b nd\" title=\"2025-01-26: No data\">");
    free(html);

    /* after 90 days the oldest day falls off */
    f->clock.now = d0 + 91 * DAY;
    gh_status_tick(f->st);
    assert_int_equal(worst_of(f->st, "api", d0), -1);
    assert_int_equal(worst_of(f->st, "api", d0 + 91 * DAY), GH_STATUS_OPERATIONAL);
}

/* ---- the automatic incident ---- */

static void test_attack_incident(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(gh_status_set_attack(f->st, 1), 0); /* elevated: not enough by default */
    assert_int_equal(count_incidents(f->st, GH_DOC_INCIDENTS), 0);
    assert_int_equal(gh_status_set_attack(f->st, 2), 0);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    assert_int_equal(gh_status_set_attack(f->st, 2), 0); /* still one */
    assert_int_equal(gh_status_set_attack(f->st, 1), 0); /* falls below: delay 0 closes it */
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 0);
    json_t *j = doc_json(f->st, GH_DOC_INCIDENTS);
    json_t *x = json_array_get(json_object_get(j, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(x, "name")),
                        "Registration temporarily limited");
    assert_string_equal(json_string_value(json_object_get(x, "status")), "resolved");
    assert_true(json_is_true(json_object_get(x, "automatic")));
    json_t *ups = json_object_get(x, "incident_updates");
    assert_int_equal(json_array_size(ups), 2);
    /* newest first */
    assert_string_equal(json_string_value(json_object_get(json_array_get(ups, 0), "body")),
                        "Registration is open again.");
    tu_assert_prefix(json_string_value(json_object_get(json_array_get(ups, 1), "body")),
                     "Due to large-scale malicious attacks");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(x, "components"), 0), "id")),
                        "registration");
    json_decref(j);

    /* a new attack opens a new incident */
    gh_status_set_attack(f->st, 2);
    assert_int_equal(count_incidents(f->st, GH_DOC_INCIDENTS), 2);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    char *zh = doc_text(f->st, GH_DOC_HTML_ZH);
    tu_assert_contains(zh, "由于遭受大规模恶意攻击");
    tu_assert_contains(zh, "lang=\"zh-CN\"");
    free(zh);
    assert_int_equal(gh_status_set_attack(f->st, 3), GH_EINVAL);
}

static void test_attack_calm_delay(void **state)
{
    struct fixture *f = *state;
    gh_status_free(f->st);
    f->st = make(f, NULL, 10 * 60 * 1000, true);
    gh_status_set_attack(f->st, 1); /* elevated is enough here */
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    gh_status_set_attack(f->st, 0);
    f->clock.now += 5 * 60 * 1000;
    gh_status_tick(f->st);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    /* the attack comes back before the delay: the same incident stays */
    gh_status_set_attack(f->st, 2);
    gh_status_set_attack(f->st, 0);
    f->clock.now += 9 * 60 * 1000;
    gh_status_tick(f->st);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1);
    f->clock.now += 2 * 60 * 1000;
    gh_status_tick(f->st);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 0);
    assert_int_equal(count_incidents(f->st, GH_DOC_INCIDENTS), 1);
}

static void test_operator_resolves_auto(void **state)
{
    struct fixture *f = *state;
    gh_status_set_attack(f->st, 2);
    json_t *j = doc_json(f->st, GH_DOC_UNRESOLVED);
    char id[32];
    snprintf(id, sizeof id, "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(j, "incidents"), 0), "id")));
    json_decref(j);
    update(f->st, id, GH_INCIDENT_RESOLVED, "Resolved by hand.");
    gh_status_set_attack(f->st, 0);
    j = doc_json(f->st, GH_DOC_INCIDENTS);
    json_t *x = json_array_get(json_object_get(j, "incidents"), 0);
    /* calm adds no second resolution */
    assert_int_equal(json_array_size(json_object_get(x, "incident_updates")), 2);
    json_decref(j);
}

/* ---- JSON shapes ---- */

static void assert_time(json_t *v, bool nullable)
{
    if (nullable && json_is_null(v))
        return;
    const char *s = json_string_value(v);
    assert_non_null(s);
    /* 2025-01-27T10:00:00.000Z */
    assert_true(strlen(s) >= 20);
    assert_true(s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':');
    assert_true(s[strlen(s) - 1] == 'Z');
}

static void assert_in(const char *s, const char *const *set)
{
    assert_non_null(s);
    for (; *set; set++)
        if (!strcmp(s, *set))
            return;
    print_error("unexpected value '%s'\n", s);
    fail();
}

static void assert_page(json_t *j)
{
    json_t *p = json_object_get(j, "page");
    assert_true(json_is_object(p));
    assert_string_equal(json_string_value(json_object_get(p, "id")), "gatehouse");
    assert_string_equal(json_string_value(json_object_get(p, "name")), "test page");
    assert_string_equal(json_string_value(json_object_get(p, "url")), "http://status.test/status");
    assert_string_equal(json_string_value(json_object_get(p, "time_zone")), "Etc/UTC");
    assert_time(json_object_get(p, "updated_at"), false);
}

static void assert_component(json_t *c)
{
    static const char *const states[] = {"operational", "degraded_performance", "partial_outage",
                                         "major_outage", NULL};
    assert_non_null(json_string_value(json_object_get(c, "id")));
    assert_non_null(json_string_value(json_object_get(c, "name")));
    assert_in(json_string_value(json_object_get(c, "status")), states);
    assert_time(json_object_get(c, "created_at"), false);
    assert_time(json_object_get(c, "updated_at"), false);
    assert_true(json_is_integer(json_object_get(c, "position")));
    assert_true(json_is_string(json_object_get(c, "description")));
    assert_null(json_object_get(c, "override")); /* admin-only fields stay private */
    assert_null(json_object_get(c, "auto_reason"));
}

static void assert_incident(json_t *x)
{
    static const char *const statuses[] = {"investigating", "identified", "monitoring", "resolved",
                                           NULL};
    static const char *const impacts[] = {"none", "minor", "major", "critical", NULL};
    assert_non_null(json_string_value(json_object_get(x, "id")));
    assert_non_null(json_string_value(json_object_get(x, "name")));
    assert_in(json_string_value(json_object_get(x, "status")), statuses);
    assert_in(json_string_value(json_object_get(x, "impact")), impacts);
    assert_time(json_object_get(x, "created_at"), false);
    assert_time(json_object_get(x, "updated_at"), false);
    assert_time(json_object_get(x, "resolved_at"), true);
    json_t *ups = json_object_get(x, "incident_updates");
    assert_true(json_array_size(ups) > 0);
    size_t i;
    json_t *u;
    json_array_foreach(ups, i, u)
    {
        assert_non_null(json_string_value(json_object_get(u, "body")));
        assert_in(json_string_value(json_object_get(u, "status")), statuses);
        assert_time(json_object_get(u, "created_at"), false);
        assert_time(json_object_get(u, "display_at"), false);
    }
}

static void test_json_shapes(void **state)
{
    struct fixture *f = *state;
    const char *id = create(f->st, "Login errors", GH_IMPACT_MAJOR, GH_INCIDENT_IDENTIFIED);
    char saved[32];
    snprintf(saved, sizeof saved, "%s", id);
    update(f->st, saved, GH_INCIDENT_RESOLVED, "Fixed.");
    create(f->st, "Chat slow", GH_IMPACT_MINOR, -1);
    gh_status_set_auto(f->st, "models", GH_STATUS_DEGRADED_PERFORMANCE, NULL);

    for (int d = GH_DOC_SUMMARY; d <= GH_DOC_UNRESOLVED; d++) {
        json_t *j = doc_json(f->st, (enum gh_status_doc)d);
        assert_page(j);
        if (d == GH_DOC_SUMMARY || d == GH_DOC_STATUS) {
            static const char *const inds[] = {"none", "minor", "major", "critical", NULL};
            json_t *s = json_object_get(j, "status");
            assert_in(json_string_value(json_object_get(s, "indicator")), inds);
            assert_non_null(json_string_value(json_object_get(s, "description")));
        }
        if (d == GH_DOC_SUMMARY || d == GH_DOC_COMPONENTS) {
            json_t *cl = json_object_get(j, "components");
            assert_int_equal(json_array_size(cl), GH_STATUS_NCOMP);
            size_t i;
            json_t *c;
            json_array_foreach(cl, i, c) assert_component(c);
            assert_string_equal(json_string_value(json_object_get(json_array_get(cl, 0), "id")),
                                "web");
            assert_int_equal(json_integer_value(json_object_get(json_array_get(cl, 4), "position")),
                             5);
        }
        if (d == GH_DOC_SUMMARY || d == GH_DOC_INCIDENTS || d == GH_DOC_UNRESOLVED) {
            json_t *il = json_object_get(j, "incidents");
            assert_true(json_is_array(il));
            assert_int_equal(json_array_size(il), d == GH_DOC_INCIDENTS ? 2 : 1);
            size_t i;
            json_t *x;
            json_array_foreach(il, i, x) assert_incident(x);
            /* newest first */
            assert_string_equal(json_string_value(json_object_get(json_array_get(il, 0), "name")),
                                "Chat slow");
        }
        if (d == GH_DOC_SUMMARY)
            assert_true(json_is_array(json_object_get(j, "scheduled_maintenances")));
        json_decref(j);
    }
    assert_string_equal(indicator(f->st), "minor");
}

static void test_html_escaping_and_headers(void **state)
{
    struct fixture *f = *state;
    create(f->st, "<script>alert(1)</script> & \"x\"", GH_IMPACT_MINOR, -1);
    char *html = doc_text(f->st, GH_DOC_HTML_EN);
    assert_null(strstr(html, "<script>")); /* the one script is status.js, by src */
    tu_assert_contains(html, "&lt;script&gt;");
    tu_assert_contains(html, "<script defer src=\"/static/status.js\"></script>");
    tu_assert_contains(html, "<a class=\"home\" href=\"/\">");
    tu_assert_contains(html, "href=\"/favicon.ico\"");
    tu_assert_contains(html, "href=\"/static/status.css\"");
    tu_assert_contains(html, "Minor Service Outage");
    assert_null(strstr(html, "style=")); /* the CSP forbids inline styles */
    free(html);
    /* the export's relative links */
    struct gh_buf b;
    gh_buf_init(&b, 1 << 20);
    static const struct gh_status_html_links rel = {
        "status.css", "index.html",  "zh.html", "api/v2/summary.json",
        "status.js",  "favicon.ico", NULL};
    assert_int_equal(gh_status_render(f->st, GH_DOC_HTML_ZH, &rel, &b), 0);
    tu_assert_contains(b.data, "href=\"status.css\"");
    tu_assert_contains(b.data, "href=\"index.html\"");
    tu_assert_contains(b.data, "轻微服务中断");
    tu_assert_contains(b.data, "src=\"status.js\"");
    assert_null(strstr(b.data, "http-equiv")); /* refreshed by status.js, which can be stopped */
    assert_null(strstr(b.data, "class=\"home\"")); /* no site to link back to */
    gh_buf_dispose(&b);
}

/* ---- input limits ---- */

static void test_validation_and_caps(void **state)
{
    struct fixture *f = *state;
    struct gh_status_incident_in in = {.name = "x", .status = -1, .impact = -1};
    assert_int_equal(gh_status_incident_create(f->st, &in, NULL), GH_EINVAL); /* no body */
    in.body = "b";
    in.name = NULL;
    assert_int_equal(gh_status_incident_create(f->st, &in, NULL), GH_EINVAL);
    struct gh_status_incident_in up = {
        .body = "b", .status = GH_INCIDENT_IDENTIFIED, .impact = -1, .ncomponents = -1};
    assert_int_equal(gh_status_incident_update(f->st, "nosuchincide", &up, NULL), GH_ENOTFOUND);

    char id[32];
    snprintf(id, sizeof id, "%s", create(f->st, "many updates", GH_IMPACT_NONE, -1));
    for (int i = 1; i < GH_STATUS_UPDATES_MAX; i++)
        assert_int_equal(gh_status_incident_update(f->st, id, &up, NULL), 0);
    assert_int_equal(gh_status_incident_update(f->st, id, &up, NULL), GH_ETOOBIG);

    /* the table holds 100; the oldest resolved incident makes room */
    for (int i = 1; i < GH_STATUS_INCIDENTS_MAX; i++)
        create(f->st, "open", GH_IMPACT_NONE, -1);
    in.name = "one too many";
    assert_int_equal(gh_status_incident_create(f->st, &in, NULL), GH_EBUSY);
    up.status = GH_INCIDENT_RESOLVED;
    json_t *j = doc_json(f->st, GH_DOC_UNRESOLVED);
    const char *other = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "incidents"), 0), "id"));
    assert_int_equal(gh_status_incident_update(f->st, other, &up, NULL), 0);
    json_decref(j);
    assert_int_equal(gh_status_incident_create(f->st, &in, NULL), 0);
    assert_int_equal(f->st->ninc, GH_STATUS_INCIDENTS_MAX);

    /* long text is cut at a character boundary, never inside a UTF-8 sequence */
    char longname[GH_STATUS_NAME_MAX + 10];
    memset(longname, 'a', sizeof longname);
    memcpy(longname + GH_STATUS_NAME_MAX - 1, "中", 3); /* straddles the cap */
    longname[sizeof longname - 1] = '\0';
    struct gh_status_incident *last = f->st->inc[f->st->ninc - 1];
    in.name = longname;
    up.status = GH_INCIDENT_RESOLVED;
    assert_int_equal(gh_status_incident_update(f->st, last->id, &up, NULL), 0);
    assert_int_equal(gh_status_incident_create(f->st, &in, NULL), 0);
    last = f->st->inc[f->st->ninc - 1];
    assert_int_equal(strlen(last->name), GH_STATUS_NAME_MAX - 1);
}

/* ---- persistence ---- */

static void test_persistence(void **state)
{
    struct fixture *f = *state;
    tu_mkdtemp(f->dir, sizeof f->dir);
    gh_status_free(f->st);
    f->st = make(f, f->dir, 0, false);
    char id[32];
    snprintf(id, sizeof id, "%s", create(f->st, "Persisted", GH_IMPACT_MAJOR, -1));
    update(f->st, id, GH_INCIDENT_MONITORING, "watching");
    gh_status_set_override(f->st, "web", GH_STATUS_PARTIAL_OUTAGE, NULL);
    gh_status_set_auto(f->st, "api", GH_STATUS_MAJOR_OUTAGE, "all circuits open");
    gh_status_set_attack(f->st, 2);
    assert_int_equal(gh_status_flush(f->st), 0);
    char *before = doc_text(f->st, GH_DOC_INCIDENTS);
    gh_status_free(f->st);

    f->clock.now += 2 * DAY; /* the server was off for two days */
    f->st = make(f, f->dir, 0, false);
    char *after = doc_text(f->st, GH_DOC_INCIDENTS);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_string_equal(component_status(f->st, "web"), "partial_outage");
    /* automatic state is live state: it is reported again, not restored */
    assert_string_equal(component_status(f->st, "api"), "operational");
    assert_int_equal(worst_of(f->st, "api", f->clock.now - 2 * DAY), GH_STATUS_MAJOR_OUTAGE);
    assert_int_equal(worst_of(f->st, "api", f->clock.now - DAY), GH_STATUS_NODATA);
    /* the automatic incident is still known, so calm closes it */
    gh_status_set_attack(f->st, 0);
    assert_int_equal(count_incidents(f->st, GH_DOC_UNRESOLVED), 1); /* the operator's one */

    /* a damaged file is an error, not silently replaced */
    gh_status_free(f->st);
    f->st = NULL;
    char p[512];
    tu_write_file(f->dir, "status-state.json", "{\"version\":1,\"incidents\":[{}]}", p, sizeof p);
    struct gh_status_opts o = {.data_dir = f->dir};
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_status *st = NULL;
    assert_int_equal(gh_status_new(&o, &st, &err), GH_EINVAL);
    tu_assert_contains(err.data, "status-state.json");
    gh_buf_dispose(&err);
    tu_write_file(f->dir, "status-state.json", "{not json", p, sizeof p);
    gh_buf_init(&err, 1024);
    assert_int_equal(gh_status_new(&o, &st, &err), GH_EINVAL);
    gh_buf_dispose(&err);
    f->st = make(f, NULL, 0, false);
}

static void test_reconfigure(void **state)
{
    struct fixture *f = *state;
    struct gh_status_opts o = {.page_name = "renamed",
                               .page_url = "https://s.example/",
                               .attack_title = {"Edited title", "编辑后的标题"}};
    assert_int_equal(gh_status_reconfigure(f->st, &o), 0);
    json_t *j = doc_json(f->st, GH_DOC_STATUS);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "page"), "name")),
                        "renamed");
    json_decref(j);
    gh_status_set_attack(f->st, 2);
    j = doc_json(f->st, GH_DOC_UNRESOLVED);
    json_t *x = json_array_get(json_object_get(j, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(x, "name")), "Edited title");
    assert_string_equal(json_string_value(json_object_get(x, "name_zh")), "编辑后的标题");
    /* texts not given keep their values */
    tu_assert_prefix(json_string_value(json_object_get(
                         json_array_get(json_object_get(x, "incident_updates"), 0), "body")),
                     "Due to large-scale malicious attacks");
    json_decref(j);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(gh_status_parse_component_status("partial_outage"), GH_STATUS_PARTIAL_OUTAGE);
    assert_int_equal(gh_status_parse_component_status("down"), -1);
    assert_int_equal(gh_status_parse_incident_status("monitoring"), GH_INCIDENT_MONITORING);
    assert_int_equal(gh_status_parse_impact("critical"), GH_IMPACT_CRITICAL);
    assert_int_equal(gh_status_parse_impact(NULL), -1);
    assert_int_equal(gh_status_component_index("models"), 4);
    assert_int_equal(gh_status_component_index("Models"), -1);
    /* with no status page running, the caller-side functions are no-ops */
    assert_int_equal(gh_status_component_auto("api", GH_STATUS_MAJOR_OUTAGE, "x"), 0);
    assert_int_equal(gh_status_component_auto("nope", GH_STATUS_MAJOR_OUTAGE, "x"), GH_ENOTFOUND);
    assert_int_equal(gh_status_attack_level("under_attack"), 0);
    assert_int_equal(gh_status_attack_level("panic"), GH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_indicator_components, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indicator_incidents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_rollup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attack_incident, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attack_calm_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_resolves_auto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_html_escaping_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
