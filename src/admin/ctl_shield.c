/* This module implements the shield's `gatehouse ctl` commands (ctl.h):
 * level show|pin|unpin, block [--for], unblock, lists, bans. */
#include "admin/ctl.h"

#include "core/common.h"
#include "core/config.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void print_level(json_t *j)
{
    const char *level = json_string_value(json_object_get(j, "level"));
    const char *computed = json_string_value(json_object_get(j, "computed"));
    json_t *pf = json_object_get(j, "pinned_for_ms");
    printf("level      %s\n", level ? level : "?");
    printf("computed   %s\n", computed ? computed : "?");
    if (json_is_true(json_object_get(j, "pinned"))) {
        if (json_is_integer(pf))
            printf("pinned     for %lld s more\n", (long long)json_integer_value(pf) / 1000);
        else
            printf("pinned     until unpinned\n");
    } else {
        printf("pinned     no\n");
    }
    const char *reason = json_string_value(json_object_get(j, "reason"));
    if (reason && *reason)
        printf("reason     %s\n", reason);
    json_t *p = json_object_get(j, "policy");
    if (p)
        printf("policy     %s, regions '%s', pow %lld bits, %lld registrations/min cap\n",
               json_string_value(json_object_get(p, "mode")),
               json_string_value(json_object_get(p, "allowed_regions")),
               (long long)json_integer_value(json_object_get(p, "pow_bits")),
               (long long)json_integer_value(json_object_get(p, "register_per_minute")));
}

int gh_ctl_level_show(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "usage: gatehouse ctl level show\n");
        return 2;
    }
    return gh_ctl_call(c, "GET", "/admin/v1/level", NULL, print_level);
}

int gh_ctl_level_pin(struct gh_ctl *c)
{
    uint64_t for_s = 0;
    if (c->argc == 3 && !strcmp(c->argv[1], "--for")) {
        int rc = gh_ctl_parse_for(c->argv[2], &for_s);
        if (rc)
            return rc;
    } else if (c->argc != 1) {
        fprintf(stderr, "usage: gatehouse ctl level pin normal|elevated|under_attack [--for 2h]\n");
        return 2;
    }
    json_t *body = json_pack("{ss}", "level", c->argv[0]);
    if (for_s)
        json_object_set_new(body, "for_seconds", json_integer((json_int_t)for_s));
    int rc = gh_ctl_call(c, "PUT", "/admin/v1/level", body, print_level);
    json_decref(body);
    return rc;
}

int gh_ctl_level_unpin(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "usage: gatehouse ctl level unpin\n");
        return 2;
    }
    return gh_ctl_call(c, "DELETE", "/admin/v1/level", NULL, print_level);
}

static void print_block(json_t *j)
{
    const char *cidr = json_string_value(json_object_get(j, "cidr"));
    json_t *fs = json_object_get(j, "for_seconds");
    if (json_is_integer(fs))
        printf("%s banned for %lld s%s\n", cidr ? cidr : "?", (long long)json_integer_value(fs),
               json_is_true(json_object_get(j, "kernel")) ? " (dropped by the kernel)"
                                                          : " (closed at accept)");
    else if (json_object_get(j, "added"))
        printf("%s %s\n", cidr ? cidr : "?",
               json_is_true(json_object_get(j, "added")) ? "blocked" : "was already blocked");
    else
        printf("%s unblocked\n", cidr ? cidr : "?");
}

static int block_call(struct gh_ctl *c, const char *method, const char *verb)
{
    uint64_t for_ms = 0;
    bool add = !strcmp(method, "POST");
    if (c->argc != 1 && !(add && c->argc == 3 && !strcmp(c->argv[1], "--for") &&
                          !gh_parse_duration_ms(c->argv[2], &for_ms) && for_ms >= 1000)) {
        fprintf(stderr, "usage: gatehouse ctl %s CIDR%s\n", verb, add ? " [--for 1h]" : "");
        return 2;
    }
    json_t *body = json_pack("{ss}", "cidr", c->argv[0]);
    if (for_ms)
        json_object_set_new(body, "for_seconds", json_integer((json_int_t)(for_ms / 1000)));
    int rc = gh_ctl_call(c, method, "/admin/v1/lists/block", body, print_block);
    json_decref(body);
    return rc;
}

int gh_ctl_block(struct gh_ctl *c)
{
    return block_call(c, "POST", "block");
}

int gh_ctl_unblock(struct gh_ctl *c)
{
    return block_call(c, "DELETE", "unblock");
}

static void print_list(const char *name, json_t *l)
{
    const char *file = json_string_value(json_object_get(l, "file"));
    printf("%s list: %lld entries from %s", name,
           (long long)json_integer_value(json_object_get(l, "file_entries")),
           file && *file ? file : "(no file)");
    long long bad = (long long)json_integer_value(json_object_get(l, "bad_lines"));
    if (bad)
        printf(" (%lld malformed lines skipped)", bad);
    printf("\n");
    json_t *rt = json_object_get(l, "runtime");
    size_t i;
    json_t *v;
    json_array_foreach(rt, i, v)
    {
        printf("  %s (added at run time)\n", json_string_value(v));
    }
}

static void print_lists(json_t *j)
{
    print_list("block", json_object_get(j, "block"));
    print_list("allow", json_object_get(j, "allow"));
    const char *tp = json_string_value(json_object_get(j, "trusted_proxies"));
    printf("trusted proxies: %s\n", tp && *tp ? tp : "(none)");
}

int gh_ctl_lists(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "usage: gatehouse ctl lists\n");
        return 2;
    }
    return gh_ctl_call(c, "GET", "/admin/v1/lists", NULL, print_lists);
}

static void print_bans(json_t *j)
{
    const char *kernel = json_string_value(json_object_get(j, "kernel"));
    const char *table = json_string_value(json_object_get(j, "table"));
    printf("penalty box: %lld of %lld; kernel set: %s",
           (long long)json_integer_value(json_object_get(j, "count")),
           (long long)json_integer_value(json_object_get(j, "capacity")), kernel ? kernel : "?");
    if (kernel && !strcmp(kernel, "on"))
        printf(" (table inet %s)", table ? table : "?");
    const char *sock = json_string_value(json_object_get(j, "socket_filter"));
    if (sock && !strcmp(sock, "on"))
        printf("; socket filter: %lld",
               (long long)json_integer_value(json_object_get(j, "socket_filter_bans")));
    else if (sock && !strcmp(sock, "refused"))
        printf("; socket filter: refused by the kernel (closed at accept)");
    printf("\n");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "bans"), i, v)
    {
        printf("  %-43s %-9s %lld s left\n", json_string_value(json_object_get(v, "cidr")),
               json_string_value(json_object_get(v, "reason")),
               (long long)json_integer_value(json_object_get(v, "remaining_s")));
    }
    if (json_is_true(json_object_get(j, "truncated")))
        printf("  (more not shown)\n");
}

int gh_ctl_bans(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "usage: gatehouse ctl bans\n");
        return 2;
    }
    return gh_ctl_call(c, "GET", "/admin/v1/bans", NULL, print_bans);
}
