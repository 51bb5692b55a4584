/* This module implements `gatehouse ctl` (ctl.h): option parsing, the
 * request to the admin API through libcurl, and the command table. */
#include "admin/ctl.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/secrets.h"
#include "core/server.h"
#include "core/suggest.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctl_cmd {
    const char *name; /* "policy show": the words that select it */
    const char *usage;
    int (*run)(struct gh_ctl *c);
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct gh_buf *b = ud;
    return gh_buf_append(b, p, size * n) ? 0 : size * n;
}

/* Sends one request; fills *status and the parsed body (NULL if not JSON).
 * Returns 0, or 3 when the server cannot be reached. */
static int ctl_request(struct gh_ctl *c, const char *method, const char *path, json_t *body,
                       long *status, json_t **out)
{
    CURL *h = curl_easy_init();
    if (!h)
        return 3;
    char url[512];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    struct gh_buf resp;
    gh_buf_init(&resp, 64u << 20);
    char auth[400];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (text)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    CURLcode rc = curl_easy_perform(h);
    int result = 0;
    if (rc != CURLE_OK) {
        fprintf(stderr, "gatehouse ctl: cannot reach the admin API at %s: %s\n", c->base,
                curl_easy_strerror(rc));
        result = 3;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        *out = resp.len ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    }
    free(text);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    gh_buf_dispose(&resp);
    return result;
}

/* Prints the server's error message and returns 1. */
static int ctl_fail(long status, json_t *body)
{
    const char *msg = json_string_value(json_object_get(json_object_get(body, "error"), "message"));
    fprintf(stderr, "gatehouse ctl: %ld: %s\n", status, msg ? msg : "request failed");
    return 1;
}

int gh_ctl_call(struct gh_ctl *c, const char *method, const char *path, json_t *body,
                void (*print)(json_t *))
{
    long status = 0;
    json_t *out = NULL;
    int rc = ctl_request(c, method, path, body, &status, &out);
    if (rc)
        return rc;
    if (status >= 400) {
        rc = ctl_fail(status, out);
    } else if (c->json || !print) {
        if (out) {
            char *s = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS);
            if (s)
                puts(s);
            free(s);
        }
    } else {
        print(out);
    }
    json_decref(out);
    return rc;
}

int gh_ctl_fetch(struct gh_ctl *c, const char *path, json_t **answer)
{
    long status = 0;
    json_t *out = NULL;
    *answer = NULL;
    int rc = ctl_request(c, "GET", path, NULL, &status, &out);
    if (rc)
        return rc;
    if (status >= 400) {
        json_decref(out);
        return 1;
    }
    *answer = out;
    return 0;
}

int gh_ctl_parse_for(const char *value, uint64_t *seconds)
{
    uint64_t ms;
    if (gh_duration_lacks_unit(value)) {
        fprintf(stderr,
                "gatehouse ctl: --for '%.40s' is missing its unit: write e.g. %.40sm for minutes, "
                "%.40sh for hours or %.40ss for seconds\n",
                value, value, value, value);
        return 2;
    }
    if (gh_parse_duration_ms(value, &ms)) {
        fprintf(stderr,
                "gatehouse ctl: --for expects a duration with its unit (e.g. 90s, 30m, 2h, 1d), "
                "not '%.40s'\n",
                value);
        return 2;
    }
    if (ms < 1000) {
        fprintf(stderr, "gatehouse ctl: --for expects at least 1s, not '%.40s'\n", value);
        return 2;
    }
    *seconds = ms / 1000;
    return 0;
}

int gh_ctl_unknown_option(const char *opt, const char *const *options, const char *usage)
{
    struct gh_suggest s;
    gh_suggest_init(&s, opt);
    for (size_t i = 0; options[i]; i++)
        gh_suggest_add(&s, options[i]);
    const char *near = gh_suggest_result(&s);
    if (near)
        fprintf(stderr, "gatehouse ctl: unknown option '%s' (did you mean %s?)\n%s", opt, near,
                usage);
    else
        fprintf(stderr, "gatehouse ctl: unknown option '%s'\n%s", opt, usage);
    return 2;
}

static void print_ok(json_t *j)
{
    const char *s = json_string_value(json_object_get(j, "status"));
    printf("%s\n", s ? s : "unexpected answer");
}

static int cmd_health(struct gh_ctl *c)
{
    if (c->argc) {
        fprintf(stderr, "gatehouse ctl: unexpected argument '%s'\nusage: gatehouse ctl health\n",
                c->argv[0]);
        return 2;
    }
    return gh_ctl_call(c, "GET", "/healthz", NULL, print_ok);
}

/* The command table; subsystems add their rows here. */
static const struct ctl_cmd commands[] = {
    {"health", "health                      check that the admin API answers", cmd_health},
    /* @ctl-commands */
    {"users find", "users find PHONE            the account of a phone number (shown masked)",
     gh_ctl_users_find},
    {"users show", "users show ID               one account: state, last login, sessions, keys",
     gh_ctl_users_show},
    {"users disable", "users disable ID            refuse sign-in; end sessions, stop keys now",
     gh_ctl_users_disable},
    {"users enable", "users enable ID             allow sign-in again (keys work again)",
     gh_ctl_users_enable},
    {"keys list", "keys list --user ID         an account's API keys, revoked ones too",
     gh_ctl_keys_list},
    {"keys revoke", "keys revoke ID              revoke an API key now", gh_ctl_keys_revoke},
    {"top", "top [--watch] [--count N]   live summary: requests, refusals, queues, level",
     gh_ctl_top},
    {"level show", "level show                  the attack level, its reason and policy preset",
     gh_ctl_level_show},
    {"level pin", "level pin normal|elevated|under_attack [--for 2h]   pin the attack level",
     gh_ctl_level_pin},
    {"level unpin", "level unpin                 back to the level the signals compute",
     gh_ctl_level_unpin},
    {"block", "block CIDR [--for 1h]       close CIDR at accept; --for: a ban that expires",
     gh_ctl_block},
    {"unblock", "unblock CIDR                remove CIDR from the block list and the penalty box",
     gh_ctl_unblock},
    {"lists", "lists                       the block and allow lists", gh_ctl_lists},
    {"bans", "bans                        the penalty box: banned sources, time left", gh_ctl_bans},
    {"quota set", "quota set (--key ID | --user ID) [--rpm N] [--tpm N] [--tpd N] [--concurrency N]",
     gh_ctl_quota_set},
    {"quota unset", "quota unset (--key ID | --user ID)   back to the configured defaults",
     gh_ctl_quota_unset},
    {"quota show", "quota show                  the defaults and every override", gh_ctl_quota_show},
    {"upstreams", "upstreams                   the model servers and their health", gh_ctl_upstreams},
    {"policy show", "policy show                 the registration policy in force", gh_ctl_policy_show},
    {"policy set", "policy set open|restricted|busy|closed [--regions CN,HK] [--pow-bits N] [--for 2h]"
     " [--message-en T] [--message-zh T]", gh_ctl_policy_set},
    {"incident create", "incident create --title T --impact I [--status S] --body B [--components a,b]",
     gh_ctl_incident_create},
    {"incident update", "incident update ID --status S --body B [--impact I]",
     gh_ctl_incident_update},
    {"incident list", "incident list               incidents, newest first", gh_ctl_incident_list},
    {"component list", "component list              status components: state, auto, override",
     gh_ctl_component_list},
    {"component set", "component set ID STATUS     override a component's status",
     gh_ctl_component_set},
    {"component clear", "component clear ID          back to the automatic status",
     gh_ctl_component_clear},
};

/* Explains why argv (the words after the options) names no command: the
 * nearest command when one is close ("polcy show"), else the subcommands
 * of a known first word ("policy"). */
static void ctl_unknown_command(int argc, char **argv)
{
    const char *near = NULL, *typed = argv[0];
    unsigned near_dist = ~0u;
    char phrase[GH_SUGGEST_MAX + 1], best_phrase[GH_SUGGEST_MAX + 1] = "";
    for (size_t k = 0; k < GH_ARRAY_LEN(commands); k++) {
        /* as many of the user's words as the command has */
        const char *name = commands[k].name;
        int words = 1;
        for (const char *p = name; *p; p++)
            words += *p == ' ';
        if (words > argc)
            continue;
        size_t len = 0;
        bool fits = true;
        for (int w = 0; w < words && fits; w++) {
            int n = snprintf(phrase + len, sizeof phrase - len, "%s%s", w ? " " : "", argv[w]);
            fits = n >= 0 && (size_t)n < sizeof phrase - len;
            len += fits ? (size_t)n : 0;
        }
        if (!fits)
            continue;
        struct gh_suggest s;
        gh_suggest_init(&s, phrase);
        gh_suggest_add(&s, name);
        if (gh_suggest_result(&s) && s.best_dist < near_dist) {
            near = name;
            near_dist = s.best_dist;
            snprintf(best_phrase, sizeof best_phrase, "%s", phrase);
        }
    }
    if (near) {
        fprintf(stderr, "gatehouse ctl: unknown command '%s' (did you mean '%s'?)\n", best_phrase,
                near);
        return;
    }
    /* a family's name alone or with a wrong second word: list the family */
    char family[256] = "";
    size_t flen = 0, tlen = strlen(typed);
    for (size_t k = 0; k < GH_ARRAY_LEN(commands); k++) {
        const char *name = commands[k].name;
        if (!strncmp(name, typed, tlen) && name[tlen] == ' ') {
            int n = snprintf(family + flen, sizeof family - flen, "%s%s", flen ? ", " : "",
                             name + tlen + 1);
            if (n > 0 && (size_t)n < sizeof family - flen)
                flen += (size_t)n;
        }
    }
    if (flen && argc == 1)
        fprintf(stderr, "gatehouse ctl: '%s' needs one of: %s\n", typed, family);
    else if (flen)
        fprintf(stderr, "gatehouse ctl: unknown command '%s %s' ('%s' takes %s)\n", typed, argv[1],
                typed, family);
    else
        fprintf(stderr, "gatehouse ctl: unknown command '%s'\n", typed);
}

static void ctl_usage(FILE *f)
{
    fputs("Usage: gatehouse ctl [--config FILE] [--admin URL|HOST:PORT] [--token T] [--json] "
          "COMMAND ...\n\nCommands:\n",
          f);
    for (size_t i = 0; i < GH_ARRAY_LEN(commands); i++)
        fprintf(f, "  %s\n", commands[i].usage);
}

int gh_ctl_main(int argc, char **argv, char **envp)
{
    struct gh_ctl c = {0};
    const char *config = getenv("GATEHOUSE_CONFIG");
    const char *admin = NULL, *token = NULL;
    int i = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            c.json = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ctl_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "--config") || !strcmp(a, "--admin") || !strcmp(a, "--token")) &&
                   i + 1 < argc) {
            const char **slot = a[2] == 'c' ? &config : a[2] == 'a' ? &admin : &token;
            *slot = argv[++i];
        } else {
            fprintf(stderr, "gatehouse ctl: unknown option '%s'\n", a);
            ctl_usage(stderr);
            return 2;
        }
    }
    if (i >= argc || !strcmp(argv[i], "help")) {
        ctl_usage(i >= argc ? stderr : stdout);
        return i >= argc ? 2 : 0;
    }
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_config *cfg = NULL;
    if (gh_server_build_config(config, NULL, 0, envp, &cfg, &err)) {
        fprintf(stderr, "gatehouse ctl: invalid configuration: %s\n", err.data ? err.data : "");
        gh_buf_dispose(&err);
        return 2;
    }
    gh_buf_dispose(&err);
    if (!admin)
        admin = cfg->server.admin_listen;
    snprintf(c.base, sizeof c.base, "%s%s", strncmp(admin, "http", 4) ? "http://" : "", admin);
    if (token)
        snprintf(c.token, sizeof c.token, "%s", token);
    else if (gh_secrets_admin_token(cfg, c.token, sizeof c.token)) {
        fprintf(stderr,
                "gatehouse ctl: no admin token: set GATEHOUSE_ADMIN_TOKEN, pass --token, or run "
                "where %s/admin.token is readable\n",
                cfg->server.data_dir);
        gh_config_unref(cfg);
        return 2;
    }
    gh_config_unref(cfg);
    /* match the longest command name: "policy set" before "policy" */
    const struct ctl_cmd *best = NULL;
    int best_words = 0;
    for (size_t k = 0; k < GH_ARRAY_LEN(commands); k++) {
        char name[64];
        snprintf(name, sizeof name, "%s", commands[k].name);
        int words = 0;
        bool ok = true;
        for (char *save = NULL, *w = strtok_r(name, " ", &save); w;
             w = strtok_r(NULL, " ", &save)) {
            if (i + words >= argc || strcmp(argv[i + words], w)) {
                ok = false;
                break;
            }
            words++;
        }
        if (ok && words > best_words) {
            best = &commands[k];
            best_words = words;
        }
    }
    if (!best) {
        ctl_unknown_command(argc - i, argv + i);
        ctl_usage(stderr);
        return 2;
    }
    c.argc = argc - i - best_words;
    c.argv = argv + i + best_words;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = best->run(&c);
    curl_global_cleanup();
    return rc;
}
