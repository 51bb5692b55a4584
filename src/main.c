/* This module implements the command line: serve, config, version, help
 * (and hands `ctl` to the admin client). */
#include "admin/admin.h"
#include "admin/ctl.h"
#include "admin/summary.h"
#include "core/log.h"
#include "core/server.h"
#include "core/suggest.h"
#include "identity/identity.h"
#include "identity/admin_users.h"
#include "shield/shield.h"
#include "gateway/gateway.h"
#include "http/pages.h"
#include "http/server.h"
#include "status/status.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern char **environ;

static const char usage[] =
    "gatehouse " GH_VERSION " - the fortified front door of an AI chat service\n"
    "\n"
    "Usage:\n"
    "  gatehouse serve [options]     run the server\n"
    "  gatehouse config [options]    check the configuration and print it as INI\n"
    "  gatehouse ctl COMMAND ...     operator commands through the admin API\n"
    "                                (gatehouse ctl help lists them)\n"
    "  gatehouse status export DIR [--config FILE] [--data DIR]\n"
    "                                write the status page and its JSON as static files\n"
    "  gatehouse version             print the version\n"
    "  gatehouse --help              this text\n"
    "\n"
    "Options (serve, config):\n"
    "  --config FILE         INI file (default: $GATEHOUSE_CONFIG, else built-in defaults)\n"
    "  --listen HOST:PORT    public listener        (default 127.0.0.1:8080)\n"
    "  --admin-listen H:P    admin API and /metrics (default 127.0.0.1:9091)\n"
    "  --data DIR            data directory         (default ./var)\n"
    "  --workers N           event-loop threads     (default: one per core)\n"
    "  --set SECTION.KEY=VALUE   any configuration key; may repeat\n"
    "\n"
    "Precedence: built-in defaults < FILE < options < environment. The environment\n"
    "knows GATEHOUSE_CONFIG, GATEHOUSE_LISTEN, GATEHOUSE_ADMIN_LISTEN, GATEHOUSE_DATA,\n"
    "GATEHOUSE_WORKERS, GATEHOUSE_ADMIN_TOKEN and GATEHOUSE_<SECTION>__<KEY> for any\n"
    "key (e.g. GATEHOUSE_LIMITS__HEADER_MAX=32k).\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop gracefully (a second one stops at once);\n"
    "SIGHUP reloads the configuration (an invalid file keeps the running one).\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.\n"
    "Documentation: README.md and docs/ in the source tree.\n";

struct options {
    const char *config;
    char **overrides;
    unsigned n;
};

static int add_override(struct options *o, const char *section_key, const char *value)
{
    size_t len = strlen(section_key) + strlen(value) + 2;
    char *s = malloc(len);
    char **grown = realloc(o->overrides, sizeof *grown * (o->n + 1));
    if (!s || !grown) {
        free(s);
        return -1;
    }
    o->overrides = grown;
    snprintf(s, len, "%s=%s", section_key, value);
    o->overrides[o->n++] = s;
    return 0;
}

static void free_options(struct options *o)
{
    for (unsigned i = 0; i < o->n; i++)
        free(o->overrides[i]);
    free(o->overrides);
}

/* Parses serve/config options. Returns 0 or 2 (usage error, printed). */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct {
        const char *flag, *key;
    } map[] = {{"--listen", "server.listen"},
               {"--admin-listen", "server.admin_listen"},
               {"--data", "server.data_dir"},
               {"--workers", "server.workers"}};
    o->config = getenv("GATEHOUSE_CONFIG");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = false;
        if (!strcmp(a, "--config")) {
            if (!val)
                goto missing;
            o->config = val;
            i++;
            continue;
        }
        if (!strcmp(a, "--set")) {
            if (!val)
                goto missing;
            const char *eq = strchr(val, '=');
            if (!eq) {
                fprintf(stderr, "gatehouse: --set expects SECTION.KEY=VALUE, got '%s'\n", val);
                return 2;
            }
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)GH_MIN((size_t)(eq - val), sizeof key - 1),
                     val);
            if (add_override(o, key, eq + 1))
                return 2;
            i++;
            continue;
        }
        for (size_t k = 0; k < GH_ARRAY_LEN(map); k++) {
            if (strcmp(a, map[k].flag))
                continue;
            if (!val)
                goto missing;
            if (add_override(o, map[k].key, val))
                return 2;
            i++;
            known = true;
        }
        if (!known) {
            fprintf(stderr, "gatehouse: unknown option '%s' (see gatehouse --help)\n", a);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "gatehouse: %s needs a value (see gatehouse --help)\n", a);
        return 2;
    }
    return 0;
}

static int cmd_config(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    struct gh_buf err, out;
    gh_buf_init(&err, 4096);
    gh_buf_init(&out, 1 << 20);
    struct gh_config *cfg = NULL;
    if (gh_server_build_config(o.config, o.overrides, o.n, environ, &cfg, &err)) {
        fprintf(stderr, "gatehouse: invalid configuration: %s\n", err.data ? err.data : "");
        rc = 2;
    } else {
        gh_config_dump(cfg, &out);
        fputs(out.data ? out.data : "", stdout);
        gh_config_unref(cfg);
    }
    gh_buf_dispose(&err);
    gh_buf_dispose(&out);
    free_options(&o);
    return rc;
}

static int cmd_serve(int argc, char **argv)
{
    /* everything the server creates (database and its -wal/-shm, usage,
     * outbox, logs, keys) is for this user alone: 0600 files, 0700 dirs.
     * Set before any thread or file exists. (`status export` keeps the
     * caller's umask: its files are for a web server to read.) */
    umask(077);
    struct options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_config *cfg = NULL;
    struct gh_server srv;
    struct gh_http_server http; /* srv.http: routers and listener hooks */
    if (gh_server_build_config(o.config, o.overrides, o.n, environ, &cfg, &err)) {
        fprintf(stderr, "gatehouse: invalid configuration: %s\n", err.data ? err.data : "");
        gh_buf_dispose(&err);
        free_options(&o);
        return 2;
    }
    rc = gh_server_init(&srv, cfg, &err);
    if (rc) {
        fprintf(stderr, "gatehouse: cannot start: %s\n", err.data ? err.data : "");
        rc = 1;
        goto out;
    }
    gh_http_server_attach(&srv, &http);
    srv.config_path = (char *)o.config;
    srv.overrides = o.overrides;
    srv.noverrides = o.n;
    srv.envp = environ;
    if (gh_admin_init(&srv)) {
        fprintf(stderr, "gatehouse: cannot register routes\n");
        rc = 1;
        goto out;
    }
    rc = gh_shield_init(&srv, &err);
    if (rc) {
        fprintf(stderr, "gatehouse: %s%s\n", rc == GH_EINVAL ? "invalid configuration: " : "",
                err.data ? err.data : "cannot start the shield");
        rc = rc == GH_EINVAL ? 2 : 1;
        goto out;
    }
    if (gh_identity_init(&srv, &err)) {
        fprintf(stderr, "gatehouse: cannot start accounts: %s\n", err.data ? err.data : "");
        rc = 1;
        goto out;
    }
    if (gh_gateway_init(&srv) || gh_pages_init(&srv) || gh_status_init(&srv)) {
        rc = 1;
        goto out;
    }
    /* the operator's routes that read the subsystems above */
    if (gh_admin_users_init(&srv) || gh_summary_init(&srv)) {
        fprintf(stderr, "gatehouse: cannot register the admin routes\n");
        rc = 1;
        goto out;
    }
    /* every subsystem subscribed to the other nodes' changes: hear them */
    if (gh_identity_share_state() || gh_store_listen_start(gh_identity_store())) {
        fprintf(stderr, "gatehouse: cannot start the store's listener\n");
        rc = 1;
        goto out;
    }
    rc = gh_server_run(&srv);
out:
    /* one exit, in the reverse order of the inits; each stop is safe when
     * its init never ran or failed half-way, so a late failure (the
     * gateway's, say) still stops identity's threads and closes its
     * store. The gateway frees itself (when its last worker stops, or in
     * its failed init); the pages hold nothing. The other nodes' news
     * stops first: it is applied to the subsystems below. */
    gh_store_listen_stop(gh_identity_store());
    gh_status_stop();
    gh_identity_dispose();
    gh_shield_dispose();
    gh_log_stop();
    gh_server_dispose(&srv);
    gh_buf_dispose(&err);
    free_options(&o);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("gatehouse %s\n", GH_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "config"))
        return cmd_config(argc - 2, argv + 2);
    if (!strcmp(cmd, "ctl"))
        return gh_ctl_main(argc - 2, argv + 2, environ);
    if (!strcmp(cmd, "status"))
        return gh_status_export_main(argc - 2, argv + 2, environ);
    static const char *const commands[] = {"serve", "config", "ctl", "status", "version", "help"};
    struct gh_suggest s;
    gh_suggest_init(&s, cmd);
    for (size_t i = 0; i < GH_ARRAY_LEN(commands); i++)
        gh_suggest_add(&s, commands[i]);
    const char *near = gh_suggest_result(&s);
    if (near)
        fprintf(stderr, "gatehouse: unknown command '%s' (did you mean %s? see gatehouse --help)\n",
                cmd, near);
    else
        fprintf(stderr, "gatehouse: unknown command '%s' (see gatehouse --help)\n", cmd);
    return 2;
}
