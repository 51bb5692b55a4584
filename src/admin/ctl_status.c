/* This module implements the status page's `gatehouse ctl` commands
 * (declared in admin/ctl.h): incident create/update/list and component
 * list/set/clear. Runs in the ctl process; arguments are checked here so
 * that a usage error (exit 2) never reaches the server. */
#include "admin/ctl.h"
#include "status/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a usage error and returns 2. */
static int usage(const char *msg, const char *arg, const char *synopsis)
{
    fprintf(stderr, "gatehouse ctl: %s%s%s%s\nusage: gatehouse ctl %s\n", msg, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "", synopsis);
    return 2;
}

/* Incident ids are what the server makes: lowercase letters and digits. */
static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

/* "2025-01-27T10:00:00.000Z" → "2025-01-27 10:00". */
static void short_time(const char *iso, char *out, size_t outlen)
{
    if (strlen(iso) >= 16 && iso[10] == 'T')
        snprintf(out, outlen, "%.10s %.5s", iso, iso + 11);
    else
        snprintf(out, outlen, "%s", iso);
}

static void print_incident(json_t *x)
{
    json_t *ups = json_object_get(x, "incident_updates");
    printf("incident %s: %s\n  status %s, impact %s, %zu update%s\n", str(x, "id"), str(x, "name"),
           str(x, "status"), str(x, "impact"), json_array_size(ups),
           json_array_size(ups) == 1 ? "" : "s");
    json_t *u = json_array_get(ups, 0); /* newest first */
    if (u)
        printf("  latest: [%s] %s\n", str(u, "status"), str(u, "body"));
}

static void print_incidents(json_t *j)
{
    json_t *list = json_object_get(j, "incidents");
    printf("%-12s  %-13s  %-8s  %-16s  %s\n", "ID", "STATUS", "IMPACT", "UPDATED", "NAME");
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        char t[40];
        short_time(str(x, "updated_at"), t, sizeof t);
        printf("%-12s  %-13s  %-8s  %-16s  %s%s\n", str(x, "id"), str(x, "status"),
               str(x, "impact"), t, str(x, "name"),
               json_is_true(json_object_get(x, "automatic")) ? " (automatic)" : "");
    }
    if (!json_array_size(list))
        printf("(no incidents)\n");
    const char *level = json_string_value(json_object_get(j, "attack_level"));
    if (level)
        printf("\nattack level: %s\n", level);
}

static void print_component(json_t *c)
{
    const char *ov = json_string_value(json_object_get(c, "override"));
    printf("%-13s  %-21s  %-21s  %-21s  %s\n", str(c, "id"), str(c, "status"),
           str(c, "auto_status"), ov ? ov : "-", str(c, "auto_reason"));
}

static void print_components(json_t *j)
{
    printf("%-13s  %-21s  %-21s  %-21s  %s\n", "ID", "STATUS", "AUTO", "OVERRIDE", "REASON");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "components"), i, c) print_component(c);
}

static void print_one_component(json_t *c)
{
    printf("%-13s  %-21s  %-21s  %-21s  %s\n", "ID", "STATUS", "AUTO", "OVERRIDE", "REASON");
    print_component(c);
}

/* Reads "--name value" options listed in names into vals; anything else is
 * a usage error. Positional arguments go to pos (at most npos). */
static int parse_opts(struct gh_ctl *c, const char *const *names, const char **vals,
                      const char **pos, int npos, const char *synopsis)
{
    int np = 0;
    for (int i = 0; i < c->argc; i++) {
        const char *a = c->argv[i];
        if (a[0] == '-' && a[1] == '-') {
            int k = 0;
            while (names[k] && strcmp(names[k], a + 2))
                k++;
            if (!names[k])
                return usage("unknown option", a, synopsis);
            if (i + 1 >= c->argc)
                return usage("missing value for", a, synopsis);
            vals[k] = c->argv[++i];
        } else if (np < npos) {
            pos[np++] = a;
        } else {
            return usage("unexpected argument", a, synopsis);
        }
    }
    if (np < npos)
        return usage("missing argument", NULL, synopsis);
    return 0;
}

static const char CREATE_SYN[] =
    "incident create --title T --impact none|minor|major|critical "
    "[--status investigating|identified|monitoring|resolved] --body B [--title-zh T] "
    "[--body-zh B] [--components web,api,login,registration,models]";
static const char UPDATE_SYN[] =
    "incident update ID --status investigating|identified|monitoring|resolved --body B "
    "[--body-zh B] [--impact none|minor|major|critical]";

/* Adds {"components": [...]} from "web,api". 0 or 2. */
static int add_components(json_t *body, const char *list, const char *synopsis)
{
    json_t *arr = json_array();
    json_object_set_new(body, "components", arr);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (gh_status_component_index(w) < 0)
            return usage("unknown component", w, synopsis);
        json_array_append_new(arr, json_string(w));
    }
    return 0;
}

int gh_ctl_incident_create(struct gh_ctl *c)
{
    static const char *const names[] = {"title",    "impact",  "status",     "body",
                                        "title-zh", "body-zh", "components", NULL};
    const char *v[7] = {0};
    int rc = parse_opts(c, names, v, NULL, 0, CREATE_SYN);
    if (rc)
        return rc;
    if (!v[0] || !*v[0])
        return usage("--title is required", NULL, CREATE_SYN);
    if (!v[3] || !*v[3])
        return usage("--body is required", NULL, CREATE_SYN);
    if (v[1] && gh_status_parse_impact(v[1]) < 0)
        return usage("unknown impact", v[1], CREATE_SYN);
    if (v[2] && gh_status_parse_incident_status(v[2]) < 0)
        return usage("unknown status", v[2], CREATE_SYN);
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(v[0]));
    json_object_set_new(body, "body", json_string(v[3]));
    json_object_set_new(body, "impact", json_string(v[1] ? v[1] : "minor"));
    json_object_set_new(body, "status", json_string(v[2] ? v[2] : "investigating"));
    if (v[4])
        json_object_set_new(body, "name_zh", json_string(v[4]));
    if (v[5])
        json_object_set_new(body, "body_zh", json_string(v[5]));
    rc = v[6] ? add_components(body, v[6], CREATE_SYN) : 0;
    if (!rc)
        rc = gh_ctl_call(c, "POST", "/admin/v1/incidents", body, print_incident);
    json_decref(body);
    return rc;
}

int gh_ctl_incident_update(struct gh_ctl *c)
{
    static const char *const names[] = {"status", "body", "body-zh", "impact", NULL};
    const char *v[4] = {0}, *id = NULL;
    int rc = parse_opts(c, names, v, &id, 1, UPDATE_SYN);
    if (rc)
        return rc;
    if (!valid_id(id))
        return usage("invalid incident id", id, UPDATE_SYN);
    if (!v[0])
        return usage("--status is required", NULL, UPDATE_SYN);
    if (gh_status_parse_incident_status(v[0]) < 0)
        return usage("unknown status", v[0], UPDATE_SYN);
    if (!v[1] || !*v[1])
        return usage("--body is required", NULL, UPDATE_SYN);
    if (v[3] && gh_status_parse_impact(v[3]) < 0)
        return usage("unknown impact", v[3], UPDATE_SYN);
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(v[0]));
    json_object_set_new(body, "body", json_string(v[1]));
    if (v[2])
        json_object_set_new(body, "body_zh", json_string(v[2]));
    if (v[3])
        json_object_set_new(body, "impact", json_string(v[3]));
    char path[128];
    snprintf(path, sizeof path, "/admin/v1/incidents/%s/updates", id);
    rc = gh_ctl_call(c, "POST", path, body, print_incident);
    json_decref(body);
    return rc;
}

int gh_ctl_incident_list(struct gh_ctl *c)
{
    if (c->argc)
        return usage("unexpected argument", c->argv[0], "incident list");
    return gh_ctl_call(c, "GET", "/admin/v1/incidents", NULL, print_incidents);
}

int gh_ctl_component_list(struct gh_ctl *c)
{
    if (c->argc)
        return usage("unexpected argument", c->argv[0], "component list");
    return gh_ctl_call(c, "GET", "/admin/v1/components", NULL, print_components);
}

static const char SET_SYN[] =
    "component set ID operational|degraded_performance|partial_outage|major_outage";

int gh_ctl_component_set(struct gh_ctl *c)
{
    const char *pos[2] = {0};
    static const char *const none[] = {NULL};
    int rc = parse_opts(c, none, NULL, pos, 2, SET_SYN);
    if (rc)
        return rc;
    if (gh_status_component_index(pos[0]) < 0)
        return usage("unknown component", pos[0], SET_SYN);
    if (gh_status_parse_component_status(pos[1]) < 0)
        return usage("unknown status", pos[1], SET_SYN);
    json_t *body = json_pack("{s:s}", "status", pos[1]);
    char path[128];
    snprintf(path, sizeof path, "/admin/v1/components/%s", pos[0]);
    rc = gh_ctl_call(c, "PUT", path, body, print_one_component);
    json_decref(body);
    return rc;
}

int gh_ctl_component_clear(struct gh_ctl *c)
{
    const char *id = NULL;
    static const char *const none[] = {NULL};
    int rc = parse_opts(c, none, NULL, &id, 1, "component clear ID");
    if (rc)
        return rc;
    if (gh_status_component_index(id) < 0)
        return usage("unknown component", id, "component clear ID");
    char path[128];
    snprintf(path, sizeof path, "/admin/v1/components/%s", id);
    return gh_ctl_call(c, "DELETE", path, NULL, print_one_component);
}
