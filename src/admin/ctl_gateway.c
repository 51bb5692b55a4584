/* This module implements the gateway's `gatehouse ctl` commands (ctl.h):
 * quota set/unset/show and upstreams, through /admin/v1/quotas and
 * /admin/v1/upstreams. Runs in the ctl process; blocking is fine. */
#include "admin/ctl.h"

#include "core/config.h"

#include <stdio.h>
#include <string.h>

/* Parses --key ID | --user ID and the limit flags into path and body.
 * Returns 0 or 2 (usage error, printed). */
static int parse_target(struct gh_ctl *c, bool limits, char *path, size_t pathlen, json_t *body)
{
    const char *kind = NULL, *id = NULL;
    for (int i = 0; i < c->argc; i++) {
        const char *a = c->argv[i];
        const char *v = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "gatehouse ctl: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--key") || !strcmp(a, "--user")) {
            kind = a[2] == 'k' ? "keys" : "users";
            id = v;
            continue;
        }
        static const char *const names[] = {"--rpm", "--tpm", "--tpd", "--concurrency"};
        bool known = false;
        for (size_t k = 0; limits && k < GH_ARRAY_LEN(names); k++) {
            if (strcmp(a, names[k]))
                continue;
            uint64_t n;
            if (gh_parse_uint(v, 4000000000u, &n)) {
                fprintf(stderr, "gatehouse ctl: %s expects a whole number (0 = unlimited)\n", a);
                return 2;
            }
            json_object_set_new(body, names[k] + 2, json_integer((json_int_t)n));
            known = true;
        }
        if (!known) {
            fprintf(stderr, "gatehouse ctl: unknown option '%s'\n", a);
            return 2;
        }
    }
    uint64_t n;
    if (!kind || gh_parse_uint(id, UINT64_MAX >> 8, &n) || !n) {
        fprintf(stderr, "gatehouse ctl: name the target with --key ID or --user ID\n");
        return 2;
    }
    if (limits && !json_object_size(body)) {
        fprintf(stderr, "gatehouse ctl: give at least one of --rpm --tpm --tpd --concurrency\n");
        return 2;
    }
    snprintf(path, pathlen, "/admin/v1/quotas/%s/%llu", kind, (unsigned long long)n);
    return 0;
}

static void print_limit(const char *name, json_t *v)
{
    json_int_t n = json_integer_value(v);
    if (!v)
        printf("  %-12s default\n", name);
    else if (!n)
        printf("  %-12s unlimited\n", name);
    else
        printf("  %-12s %lld\n", name, (long long)n);
}

static void print_quota(json_t *j)
{
    printf("%s %lld:\n", json_string_value(json_object_get(j, "kind")),
           (long long)json_integer_value(json_object_get(j, "id")));
    print_limit("rpm", json_object_get(j, "rpm"));
    print_limit("tpm", json_object_get(j, "tpm"));
    print_limit("tpd", json_object_get(j, "tpd"));
    print_limit("concurrency", json_object_get(j, "concurrency"));
}

int gh_ctl_quota_set(struct gh_ctl *c)
{
    char path[128];
    json_t *body = json_object();
    int rc = parse_target(c, true, path, sizeof path, body);
    if (!rc)
        rc = gh_ctl_call(c, "PUT", path, body, print_quota);
    json_decref(body);
    return rc;
}

static void print_unset(json_t *j)
{
    (void)j;
    printf("override removed: the defaults apply\n");
}

int gh_ctl_quota_unset(struct gh_ctl *c)
{
    char path[128];
    json_t *body = json_object();
    int rc = parse_target(c, false, path, sizeof path, body);
    if (!rc)
        rc = gh_ctl_call(c, "DELETE", path, NULL, print_unset);
    json_decref(body);
    return rc;
}

static void print_quotas(json_t *j)
{
    json_t *d = json_object_get(j, "defaults");
    const char *kinds[] = {"key", "user"};
    for (size_t i = 0; i < 2; i++) {
        json_t *k = json_object_get(d, kinds[i]);
        printf("default per %s:\n", kinds[i]);
        print_limit("rpm", json_object_get(k, "rpm"));
        print_limit("tpm", json_object_get(k, "tpm"));
        print_limit("tpd", json_object_get(k, "tpd"));
        print_limit("concurrency", json_object_get(k, "concurrency"));
    }
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(j, "overrides"), i, o)
    {
        print_quota(o);
    }
}

int gh_ctl_quota_show(struct gh_ctl *c)
{
    return gh_ctl_call(c, "GET", "/admin/v1/quotas", NULL, print_quotas);
}

static void print_upstreams(json_t *j)
{
    json_t *ups = json_object_get(j, "upstreams");
    printf("%-16s %-20s %-13s %9s %9s %9s %7s\n", "UPSTREAM", "MODEL", "STATE", "ACTIVE",
           "REQUESTS", "FAILURES", "429s");
    size_t i;
    json_t *u;
    json_array_foreach(ups, i, u)
    {
        char active[32];
        snprintf(active, sizeof active, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(u, "active")),
                 (long long)json_integer_value(json_object_get(u, "max_concurrent")));
        printf("%-16s %-20s %-13s %9s %9lld %9lld %7lld\n",
               json_string_value(json_object_get(u, "name")),
               json_string_value(json_object_get(u, "model")),
               json_string_value(json_object_get(u, "state")), active,
               (long long)json_integer_value(json_object_get(u, "requests")),
               (long long)json_integer_value(json_object_get(u, "failures")),
               (long long)json_integer_value(json_object_get(u, "rate_limited")));
    }
    if (!json_array_size(ups))
        printf("(no upstreams configured)\n");
    printf("echo model: %s\n", json_is_true(json_object_get(j, "echo")) ? "on" : "off");
}

int gh_ctl_upstreams(struct gh_ctl *c)
{
    return gh_ctl_call(c, "GET", "/admin/v1/upstreams", NULL, print_upstreams);
}
