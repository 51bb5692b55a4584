/* This module implements the `gatehouse ctl policy …` commands (admin/ctl.h):
 * they read and replace the registration policy through the admin API. */
#include "admin/ctl.h"

#include "core/config.h"

#include <stdio.h>
#include <string.h>

static void print_policy(json_t *p)
{
    json_t *regions = json_object_get(p, "allowed_regions");
    const char *mode = json_string_value(json_object_get(p, "mode"));
    printf("mode:      %s\n", mode);
    /* regions limit registration in restricted mode only: elsewhere a
     * "regions: CN" line would read as a restriction that is not there */
    if (mode && !strcmp(mode, "restricted")) {
        printf("regions:   ");
        size_t i;
        json_t *r;
        json_array_foreach(regions, i, r) printf("%s%s", i ? "," : "", json_string_value(r));
        printf("%s\n", json_array_size(regions) ? "" : "(any)");
    }
    printf("pow_bits:  %lld\n", (long long)json_integer_value(json_object_get(p, "pow_bits")));
    json_t *m = json_object_get(p, "message");
    printf("message:   %s\n", json_string_value(json_object_get(m, "en")));
    printf("           %s\n", json_string_value(json_object_get(m, "zh")));
    const char *until = json_string_value(json_object_get(p, "until"));
    if (until) {
        json_t *f = json_object_get(p, "fallback");
        printf("until:     %s, then %s\n", until, json_string_value(json_object_get(f, "mode")));
    }
}

int gh_ctl_policy_show(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "usage: gatehouse ctl policy show\n");
        return 2;
    }
    return gh_ctl_call(c, "GET", "/admin/v1/policy", NULL, print_policy);
}

int gh_ctl_policy_set(struct gh_ctl *c)
{
    static const char usage[] = "usage: gatehouse ctl policy set open|restricted|busy|closed "
                                "[--regions CN,HK] [--pow-bits N] [--for 2h] [--message-en T] "
                                "[--message-zh T]\n";
    if (c->argc < 1) {
        fputs(usage, stderr);
        return 2;
    }
    const char *mode = c->argv[0];
    if (strcmp(mode, "open") && strcmp(mode, "restricted") && strcmp(mode, "busy") &&
        strcmp(mode, "closed")) {
        fprintf(stderr, "gatehouse ctl: unknown mode '%s'\n%s", mode, usage);
        return 2;
    }
    json_t *body = json_object();
    json_object_set_new(body, "mode", json_string(mode));
    json_t *msg = NULL;
    for (int i = 1; i < c->argc; i++) {
        const char *a = c->argv[i];
        const char *v = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "gatehouse ctl: %s needs a value\n%s", a, usage);
            json_decref(body);
            return 2;
        }
        i++;
        if (!strcmp(a, "--regions")) {
            json_t *arr = json_array();
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
                 t = strtok_r(NULL, ", ", &save))
                json_array_append_new(arr, json_string(t));
            json_object_set_new(body, "allowed_regions", arr);
        } else if (!strcmp(a, "--pow-bits")) {
            uint64_t n;
            if (gh_parse_uint(v, 32, &n)) {
                fprintf(stderr, "gatehouse ctl: --pow-bits expects 0 to 32\n");
                json_decref(body);
                return 2;
            }
            json_object_set_new(body, "pow_bits", json_integer((json_int_t)n));
        } else if (!strcmp(a, "--for")) {
            uint64_t secs;
            if (gh_ctl_parse_for(v, &secs)) {
                json_decref(body);
                json_decref(msg);
                return 2;
            }
            json_object_set_new(body, "for_seconds", json_integer((json_int_t)secs));
        } else if (!strcmp(a, "--message-en") || !strcmp(a, "--message-zh")) {
            if (!msg)
                msg = json_object();
            json_object_set_new(msg, a[10] == 'e' ? "en" : "zh", json_string(v));
        } else {
            static const char *const options[] = {"--regions",    "--pow-bits",   "--for",
                                                  "--message-en", "--message-zh", NULL};
            json_decref(body);
            json_decref(msg);
            return gh_ctl_unknown_option(a, options, usage);
        }
    }
    if (msg)
        json_object_set_new(body, "message", msg);
    /* a pinned policy ends when another is set: say which, so that a window
     * set by someone else does not vanish unnoticed */
    json_t *before = NULL;
    if (!c->json && gh_ctl_fetch(c, "/admin/v1/policy", &before) == 0 &&
        !json_string_value(json_object_get(before, "until"))) {
        json_decref(before);
        before = NULL;
    }
    int rc = gh_ctl_call(c, "PUT", "/admin/v1/policy", body, print_policy);
    if (!rc && before)
        printf("replaced:  %s until %s\n", json_string_value(json_object_get(before, "mode")),
               json_string_value(json_object_get(before, "until")));
    json_decref(before);
    json_decref(body);
    return rc;
}
