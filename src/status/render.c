/* This module implements the rendering of the status model (model.h):
 * the Statuspage-shaped JSON documents and the HTML page in English and
 * Chinese. Every function runs with gh_status.mu held and writes into a
 * capped buffer; the first failed append sticks, so a document is either
 * complete or reported as failed. */
#include "status/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DAY_MS         86400000ull
#define INCIDENTS_JSON 50 /* incidents.json lists the latest 50, as Statuspage does */
#define PAST_DAYS      14 /* resolved incidents shown on the page */
#define PAST_MAX       10

struct out {
    struct gh_buf *b;
    int rc;
};

static void put(struct out *o, const char *s)
{
    if (!o->rc)
        o->rc = gh_buf_append_str(o->b, s);
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    if (o->rc)
        return;
    va_list ap;
    va_start(ap, fmt);
    o->rc = gh_buf_vprintf(o->b, fmt, ap);
    va_end(ap);
}

/* A JSON string with its quotes, or null. */
static void putj(struct out *o, const char *s)
{
    if (!s) {
        put(o, "null");
        return;
    }
    put(o, "\"");
    if (!o->rc)
        o->rc = gh_buf_append_json_str(o->b, s, strlen(s));
    put(o, "\"");
}

static void puth(struct out *o, const char *s)
{
    if (!o->rc && s)
        o->rc = gh_buf_append_html(o->b, s, strlen(s));
}

/* An ISO 8601 timestamp in quotes, or null for 0. */
static void putt(struct out *o, uint64_t ms)
{
    if (!ms) {
        put(o, "null");
        return;
    }
    char t[40];
    putf(o, "\"%s\"", gh_time_rfc3339(ms, t, sizeof t));
}

/* "2025-01-27", or "2025-01-27 10:00 UTC" with the time. */
static void fmt_date(uint64_t ms, bool with_time, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = with_time ? strftime(out, outlen, "%Y-%m-%d %H:%M UTC", &tm)
                         : strftime(out, outlen, "%Y-%m-%d", &tm);
    if (!n)
        out[0] = '\0';
}

static const char *page_id(const struct gh_status *st)
{
    (void)st;
    return "gatehouse";
}

/* ---- JSON ---- */

int gh_status_indicator_locked(const struct gh_status *st)
{
    int level = 0;
    for (int i = 0; i < GH_STATUS_NCOMP; i++)
        level = GH_MAX(level, gh_status_comp_state(&st->comps[i]));
    for (unsigned i = 0; i < st->ninc; i++)
        if (st->inc[i]->status != GH_INCIDENT_RESOLVED)
            level = GH_MAX(level, st->inc[i]->impact);
    return level;
}

static const char *const indicator_names[] = {"none", "minor", "major", "critical"};
static const char *const indicator_desc[2][4] = {
    {"All Systems Operational", "Minor Service Outage", "Partial System Outage",
     "Major Service Outage"},
    {"所有系统运行正常", "轻微服务中断", "部分系统中断", "重大服务中断"},
};

static void put_page(struct out *o, const struct gh_status *st)
{
    put(o, "\"page\":{\"id\":");
    putj(o, page_id(st));
    put(o, ",\"name\":");
    putj(o, st->page_name);
    put(o, ",\"url\":");
    putj(o, st->page_url);
    put(o, ",\"time_zone\":\"Etc/UTC\",\"updated_at\":");
    putt(o, st->updated_ms);
    put(o, "}");
}

static void put_status(struct out *o, const struct gh_status *st)
{
    int level = gh_status_indicator_locked(st);
    putf(o, "\"status\":{\"indicator\":\"%s\",\"description\":", indicator_names[level]);
    putj(o, indicator_desc[0][level]);
    put(o, "}");
}

static void put_component(struct out *o, const struct gh_status *st,
                          const struct gh_status_component *c, bool admin)
{
    char day[16];
    fmt_date(c->created_ms, false, day, sizeof day);
    put(o, "{\"id\":");
    putj(o, c->id);
    put(o, ",\"name\":");
    putj(o, c->name[0]);
    putf(o,
         ",\"status\":\"%s\",\"created_at\":", gh_status_component_name(gh_status_comp_state(c)));
    putt(o, c->created_ms);
    put(o, ",\"updated_at\":");
    putt(o, c->updated_ms);
    putf(o, ",\"position\":%u,\"description\":", c->position);
    putj(o, c->desc[0]);
    putf(o, ",\"showcase\":true,\"start_date\":\"%s\",\"group_id\":null,\"page_id\":", day);
    putj(o, page_id(st));
    put(o, ",\"group\":false,\"only_show_if_degraded\":false,\"name_zh\":");
    putj(o, c->name[1]);
    if (admin) {
        putf(o,
             ",\"auto_status\":\"%s\",\"auto_reason\":", gh_status_component_name(c->auto_state));
        putj(o, c->auto_reason);
        put(o, ",\"override\":");
        putj(o, c->override >= 0 ? gh_status_component_name(c->override) : NULL);
    }
    put(o, "}");
}

int gh_status_render_component_locked(const struct gh_status *st,
                                      const struct gh_status_component *c, bool admin,
                                      struct gh_buf *b)
{
    struct out o = {b, 0};
    put_component(&o, st, c, admin);
    return o.rc;
}

static void put_incident(struct out *o, const struct gh_status *st,
                         const struct gh_status_incident *x)
{
    put(o, "{\"id\":");
    putj(o, x->id);
    put(o, ",\"name\":");
    putj(o, x->name);
    put(o, ",\"name_zh\":");
    putj(o, x->name_zh);
    putf(o, ",\"status\":\"%s\",\"impact\":\"%s\",\"created_at\":",
         gh_status_incident_status_name(x->status), gh_status_impact_name(x->impact));
    putt(o, x->created_ms);
    put(o, ",\"updated_at\":");
    putt(o, x->updated_ms);
    put(o, ",\"monitoring_at\":");
    putt(o, x->monitoring_ms);
    put(o, ",\"resolved_at\":");
    putt(o, x->resolved_ms);
    put(o, ",\"started_at\":");
    putt(o, x->created_ms);
    put(o, ",\"shortlink\":");
    putj(o, st->page_url);
    put(o, ",\"page_id\":");
    putj(o, page_id(st));
    putf(o, ",\"automatic\":%s,\"incident_updates\":[", x->is_auto ? "true" : "false");
    for (unsigned k = x->nupdates; k-- > 0;) {
        const struct gh_status_update *u = &x->updates[k];
        put(o, "{\"id\":");
        putj(o, u->id);
        putf(o, ",\"status\":\"%s\",\"body\":", gh_status_incident_status_name(u->status));
        putj(o, u->body);
        put(o, ",\"body_zh\":");
        putj(o, u->body_zh);
        put(o, ",\"incident_id\":");
        putj(o, x->id);
        put(o, ",\"created_at\":");
        putt(o, u->created_ms);
        put(o, ",\"updated_at\":");
        putt(o, u->created_ms);
        put(o, ",\"display_at\":");
        putt(o, u->display_ms);
        put(o, ",\"affected_components\":null,\"deliver_notifications\":false}");
        if (k)
            put(o, ",");
    }
    put(o, "],\"components\":[");
    for (unsigned k = 0; k < x->ncomponents; k++) {
        if (k)
            put(o, ",");
        put_component(o, st, &st->comps[x->components[k]], false);
    }
    put(o, "]}");
}

int gh_status_render_incident_locked(const struct gh_status *st, const struct gh_status_incident *x,
                                     struct gh_buf *b)
{
    struct out o = {b, 0};
    put_incident(&o, st, x);
    return o.rc;
}

static void put_components(struct out *o, const struct gh_status *st)
{
    put(o, "\"components\":[");
    for (int i = 0; i < GH_STATUS_NCOMP; i++) {
        if (i)
            put(o, ",");
        put_component(o, st, &st->comps[i], false);
    }
    put(o, "]");
}

/* Incidents newest first: all (at most max) or only the unresolved. */
static void put_incidents(struct out *o, const struct gh_status *st, bool unresolved, unsigned max)
{
    put(o, "\"incidents\":[");
    unsigned n = 0;
    for (unsigned i = st->ninc; i-- > 0 && n < max;) {
        const struct gh_status_incident *x = st->inc[i];
        if (unresolved && x->status == GH_INCIDENT_RESOLVED)
            continue;
        if (n++)
            put(o, ",");
        put_incident(o, st, x);
    }
    put(o, "]");
}

/* ---- HTML ---- */

struct words {
    const char *lang, *status, *active, *components, *past, *none_active, *none_past, *ago, *today,
        *nodata, *updated, *impact, *affected, *json, *switch_to, *home, *auto_refresh, *checked;
    const char *state[4], *inc[4], *impacts[4];
};

static const struct words words[2] = {
    {"en",
     "Status",
     "Active incidents",
     "Components",
     "Past incidents",
     "No active incidents.",
     "No incidents in the last 14 days.",
     "90 days ago",
     "Today",
     "No data",
     "Updated",
     "Impact",
     "Affected",
     "JSON",
     "Language",
     "Back to the site",
     "Refresh every minute",
     "Checked",
     {"Operational", "Degraded performance", "Partial outage", "Major outage"},
     {"Investigating", "Identified", "Monitoring", "Resolved"},
     {"none", "minor", "major", "critical"}},
    {"zh-CN",
     "服务状态",
     "当前事件",
     "组件",
     "过往事件",
     "当前没有事件。",
     "最近 14 天没有事件。",
     "90 天前",
     "今天",
     "无数据",
     "更新于",
     "影响",
     "受影响组件",
     "JSON",
     "语言",
     "返回网站",
     "每分钟自动刷新",
     "检查于",
     {"正常运行", "性能下降", "部分中断", "严重中断"},
     {"调查中", "已确认", "监控中", "已解决"},
     {"无", "轻微", "严重", "危急"}},
};

static const char *const state_class[] = {"operational", "degraded_performance", "partial_outage",
                                          "major_outage"};

static void put_when(struct out *o, uint64_t ms)
{
    char iso[40], human[40];
    gh_time_rfc3339(ms, iso, sizeof iso);
    fmt_date(ms, true, human, sizeof human);
    putf(o, "<time datetime=\"%s\">%s</time>", iso, human);
}

static void put_html_incident(struct out *o, const struct gh_status *st,
                              const struct gh_status_incident *x, int lang, bool open)
{
    const struct words *w = &words[lang];
    const char *name = lang && x->name_zh ? x->name_zh : x->name;
    putf(o, "<article class=\"incident impact-%s\" id=\"incident-%s\">",
         gh_status_impact_name(x->impact), x->id);
    if (!open)
        put(o, "<details><summary>");
    put(o, "<h3>");
    puth(o, name);
    put(o, "</h3>");
    if (!open)
        put(o, "</summary>");
    putf(o, "<p class=\"meta\">%s: %s", w->impact, w->impacts[x->impact]);
    if (x->ncomponents) {
        putf(o, " · %s: ", w->affected);
        for (unsigned k = 0; k < x->ncomponents; k++) {
            if (k)
                put(o, lang ? "、" : ", ");
            puth(o, st->comps[x->components[k]].name[lang]);
        }
    }
    put(o, "</p><ol class=\"updates\">");
    for (unsigned k = x->nupdates; k-- > 0;) {
        const struct gh_status_update *u = &x->updates[k];
        putf(o, "<li class=\"update st-%s\"><strong>%s</strong> <span class=\"body\">",
             gh_status_incident_status_name(u->status), w->inc[u->status]);
        puth(o, lang && u->body_zh ? u->body_zh : u->body);
        put(o, "</span> ");
        put_when(o, u->display_ms);
        put(o, "</li>");
    }
    put(o, "</ol>");
    if (!open)
        put(o, "</details>");
    put(o, "</article>");
}

static void put_html_component(struct out *o, const struct gh_status_component *c, int lang,
                               uint32_t today)
{
    const struct words *w = &words[lang];
    int s = gh_status_comp_state(c);
    unsigned seen = 0, ok = 0;
    for (uint32_t d = today - (GH_STATUS_DAYS - 1); d <= today; d++) {
        unsigned slot = d % GH_STATUS_DAYS;
        if (c->hday[slot] != d || c->hworst[slot] == GH_STATUS_NODATA)
            continue;
        seen++;
        ok += c->hworst[slot] <= GH_STATUS_DEGRADED_PERFORMANCE;
    }
    char summary[128], label[320];
    /* the two languages order the numbers differently */
    if (lang)
        snprintf(summary, sizeof summary, "%u 天中 %u 天无中断", seen, ok);
    else
        snprintf(summary, sizeof summary, "%u of %u days without outage", ok, seen);
    snprintf(label, sizeof label, lang ? "%s 的 90 天记录：%s" : "90-day history of %s: %s",
             c->name[lang], summary);
    putf(o,
         "<li class=\"component st-%s\" id=\"component-%s\"><div class=\"row\"><span "
         "class=\"name\">",
         state_class[s], c->id);
    puth(o, c->name[lang]);
    putf(o,
         "</span><span class=\"state\">%s</span></div><div class=\"bars\" role=\"img\" "
         "aria-label=\"",
         w->state[s]);
    puth(o, label);
    put(o, "\">");
    for (uint32_t d = today - (GH_STATUS_DAYS - 1); d <= today; d++) {
        unsigned slot = d % GH_STATUS_DAYS;
        int v = c->hday[slot] == d ? c->hworst[slot] : GH_STATUS_NODATA;
        char date[16];
        fmt_date((uint64_t)d * DAY_MS, false, date, sizeof date);
        if (v == GH_STATUS_NODATA)
            putf(o, "<span class=\"b nd\" title=\"%s: %s\"></span>", date, w->nodata);
        else
            putf(o, "<span class=\"b s%d\" title=\"%s: %s\"></span>", v, date, w->state[v]);
    }
    putf(o, "</div><div class=\"legend\"><span>%s</span><span>", w->ago);
    puth(o, summary);
    putf(o, "</span><span>%s</span></div></li>", w->today);
}

static void put_html(struct out *o, const struct gh_status *st, int lang,
                     const struct gh_status_html_links *links)
{
    const struct words *w = &words[lang];
    uint64_t now = gh_status_now(st);
    uint32_t today = (uint32_t)(now / DAY_MS);
    int level = gh_status_indicator_locked(st);
    putf(o,
         "<!doctype html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
         w->lang);
    puth(o, st->page_name);
    putf(o, " · %s</title><link rel=\"stylesheet\" href=\"", w->status);
    puth(o, links->css);
    put(o, "\"><link rel=\"icon\" href=\"");
    puth(o, links->icon);
    put(o, "\"><link rel=\"alternate\" type=\"application/json\" href=\"");
    puth(o, links->json);
    /* the page refreshes itself by script (status.js), which the reader
     * can turn off: no <meta http-equiv=refresh> (WCAG 2.2.1) */
    put(o, "\"><script defer src=\"");
    puth(o, links->js);
    put(o, "\"></script></head><body><header>");
    if (links->home) {
        put(o, "<a class=\"home\" href=\"");
        puth(o, links->home);
        putf(o, "\">%s</a>", w->home);
    }
    put(o, "<h1>");
    puth(o, st->page_name);
    putf(o, " <span>%s</span></h1><nav class=\"lang\" aria-label=\"%s\">", w->status, w->switch_to);
    putf(o,
         "<a href=\"%s\" hreflang=\"en\" lang=\"en\"%s>English</a> <a href=\"%s\" "
         "hreflang=\"zh\" lang=\"zh-CN\"%s>中文</a>",
         links->lang_en, lang == 0 ? " aria-current=\"page\"" : "", links->lang_zh,
         lang == 1 ? " aria-current=\"page\"" : "");
    putf(o,
         "</nav></header><main><section class=\"overall ind-%s\" aria-live=\"polite\"><p>%s</p>"
         "</section>",
         indicator_names[level], indicator_desc[lang][level]);

    putf(o, "<section class=\"incidents\"><h2>%s</h2>", w->active);
    unsigned n = 0;
    for (unsigned i = st->ninc; i-- > 0;) {
        if (st->inc[i]->status == GH_INCIDENT_RESOLVED)
            continue;
        put_html_incident(o, st, st->inc[i], lang, true);
        n++;
    }
    if (!n)
        putf(o, "<p class=\"none\">%s</p>", w->none_active);
    put(o, "</section>");

    putf(o, "<section class=\"components\"><h2>%s</h2><ul>", w->components);
    for (int i = 0; i < GH_STATUS_NCOMP; i++)
        put_html_component(o, &st->comps[i], lang, today);
    put(o, "</ul></section>");

    putf(o, "<section class=\"past\"><h2>%s</h2>", w->past);
    n = 0;
    for (unsigned i = st->ninc; i-- > 0 && n < PAST_MAX;) {
        const struct gh_status_incident *x = st->inc[i];
        if (x->status != GH_INCIDENT_RESOLVED || x->resolved_ms + PAST_DAYS * DAY_MS < now)
            continue;
        put_html_incident(o, st, x, lang, false);
        n++;
    }
    if (!n)
        putf(o, "<p class=\"none\">%s</p>", w->none_past);
    putf(o, "</section></main><footer><p><span id=\"updated\">%s ", w->updated);
    put_when(o, st->updated_ms);
    put(o, "</span> · <a href=\"");
    puth(o, links->json);
    putf(o, "\">%s</a></p>", w->json);
    /* shown by status.js: when it last checked, and the switch */
    putf(o,
         "<p id=\"refresh\" hidden>%s <time id=\"checked\"></time><label><input "
         "type=\"checkbox\" id=\"auto-refresh\" checked> %s</label></p></footer></body></html>\n",
         w->checked, w->auto_refresh);
}

int gh_status_render_locked(const struct gh_status *st, enum gh_status_doc doc,
                            const struct gh_status_html_links *links, struct gh_buf *b)
{
    struct out o = {b, 0};
    switch (doc) {
    case GH_DOC_SUMMARY:
        put(&o, "{");
        put_page(&o, st);
        put(&o, ",");
        put_components(&o, st);
        put(&o, ",");
        put_incidents(&o, st, true, GH_STATUS_INCIDENTS_MAX);
        put(&o, ",\"scheduled_maintenances\":[],");
        put_status(&o, st);
        put(&o, "}\n");
        break;
    case GH_DOC_STATUS:
        put(&o, "{");
        put_page(&o, st);
        put(&o, ",");
        put_status(&o, st);
        put(&o, "}\n");
        break;
    case GH_DOC_COMPONENTS:
        put(&o, "{");
        put_page(&o, st);
        put(&o, ",");
        put_components(&o, st);
        put(&o, "}\n");
        break;
    case GH_DOC_INCIDENTS:
    case GH_DOC_UNRESOLVED:
        put(&o, "{");
        put_page(&o, st);
        put(&o, ",");
        put_incidents(&o, st, doc == GH_DOC_UNRESOLVED,
                      doc == GH_DOC_UNRESOLVED ? GH_STATUS_INCIDENTS_MAX : INCIDENTS_JSON);
        put(&o, "}\n");
        break;
    case GH_DOC_HTML_EN:
    case GH_DOC_HTML_ZH:
        put_html(&o, st, doc == GH_DOC_HTML_ZH, links);
        break;
    default:
        return GH_EINVAL;
    }
    return o.rc;
}
