/* This module implements `gatehouse status export DIR` (status.h): the
 * status page and its JSON written as static files from the persisted
 * state, with relative links, so that any web server (or a bucket) can
 * serve them while gatehouse itself is under attack. Runs in its own
 * process; blocking file I/O is fine here. */
#include "status/model.h"

#include "core/server.h"
#include "http/assets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char export_usage[] =
    "Usage: gatehouse status export DIR [--config FILE] [--data DIR] [--set SECTION.KEY=VALUE]\n"
    "\n"
    "Writes DIR/index.html (English), DIR/zh.html (Chinese), DIR/status.css,\n"
    "DIR/status.js, DIR/favicon.ico and\n"
    "DIR/api/v2/{summary,status,components,incidents}.json and\n"
    "DIR/api/v2/incidents/unresolved.json from the state in the data directory\n"
    "(read from the same configuration sources as `gatehouse serve`).\n";

/* mkdir -p for path (every component). */
static int mkdirs(const char *path)
{
    char p[4096];
    int n = snprintf(p, sizeof p, "%s", path);
    if (n < 0 || (size_t)n >= sizeof p)
        return GH_EINVAL;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST)
            return GH_EIO;
        *s = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST)
        return GH_EIO;
    return 0;
}

static int write_one(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096], sub[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return GH_EINVAL;
    snprintf(sub, sizeof sub, "%s", path);
    char *slash = strrchr(sub, '/');
    *slash = '\0';
    int rc = mkdirs(sub);
    if (!rc)
        /* for a web server running as another user to read: 0644 less
         * the operator's umask, like any file they create */
        rc = gh_status_write_atomic(sub, path, data, len, 0644);
    if (rc)
        fprintf(stderr, "gatehouse status export: cannot write %s: %s\n", path, strerror(errno));
    return rc;
}

int gh_status_export_main(int argc, char **argv, char **envp)
{
    if (argc < 1 || strcmp(argv[0], "export")) {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "help"))) {
            fputs(export_usage, stdout);
            return 0;
        }
        fputs(export_usage, stderr);
        return 2;
    }
    const char *dir = NULL, *config = NULL;
    for (const char **e = (const char **)envp; e && *e; e++)
        if (!strncmp(*e, "GATEHOUSE_CONFIG=", 17))
            config = *e + 17;
    char *overrides[16];
    unsigned nover = 0;
    char data_set[4200];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(export_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--config") && has) {
            config = argv[++i];
        } else if (!strcmp(a, "--data") && has && nover < GH_ARRAY_LEN(overrides)) {
            snprintf(data_set, sizeof data_set, "server.data_dir=%s", argv[++i]);
            overrides[nover++] = data_set;
        } else if (!strcmp(a, "--set") && has && nover < GH_ARRAY_LEN(overrides)) {
            overrides[nover++] = argv[++i];
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "gatehouse status export: unexpected argument '%s'\n\n%s", a,
                    export_usage);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "gatehouse status export: DIR is missing\n\n%s", export_usage);
        return 2;
    }
    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_config *cfg = NULL;
    if (gh_server_build_config(config, overrides, nover, envp, &cfg, &err)) {
        fprintf(stderr, "gatehouse status export: invalid configuration: %s\n",
                err.data ? err.data : "");
        gh_buf_dispose(&err);
        return 2;
    }
    struct gh_status_opts o;
    gh_status_opts_from_config(&o, cfg);
    o.read_only = true;
    struct gh_status *st = NULL;
    char state[4200];
    snprintf(state, sizeof state, "%s/status-state.json", cfg->server.data_dir);
    struct stat sb;
    if (stat(state, &sb))
        fprintf(stderr,
                "gatehouse status export: warning: no state at %s; exporting the default page\n",
                state);
    int rc = gh_status_new(&o, &st, &err);
    if (rc) {
        fprintf(stderr, "gatehouse status export: cannot read the state: %s\n",
                err.data ? err.data : "");
        gh_buf_dispose(&err);
        gh_config_unref(cfg);
        return 1;
    }
    gh_buf_dispose(&err);

    const char *origin = cfg->server.public_origin;
    const struct gh_status_html_links links = {"status.css",
                                               "index.html",
                                               "zh.html",
                                               "api/v2/summary.json",
                                               "status.js",
                                               "favicon.ico",
                                               origin && origin[0] ? origin : NULL};
    static const struct {
        enum gh_status_doc doc;
        const char *name;
    } files[] = {
        {GH_DOC_HTML_EN, "index.html"},
        {GH_DOC_HTML_ZH, "zh.html"},
        {GH_DOC_SUMMARY, "api/v2/summary.json"},
        {GH_DOC_STATUS, "api/v2/status.json"},
        {GH_DOC_COMPONENTS, "api/v2/components.json"},
        {GH_DOC_INCIDENTS, "api/v2/incidents.json"},
        {GH_DOC_UNRESOLVED, "api/v2/incidents/unresolved.json"},
    };
    rc = mkdirs(dir);
    if (rc)
        fprintf(stderr, "gatehouse status export: cannot create %s: %s\n", dir, strerror(errno));
    for (size_t i = 0; !rc && i < GH_ARRAY_LEN(files); i++) {
        struct gh_buf b;
        gh_buf_init(&b, 16u << 20);
        rc = gh_status_render(st, files[i].doc, &links, &b);
        if (!rc && b.data)
            rc = write_one(dir, files[i].name, b.data, b.len);
        gh_buf_dispose(&b);
    }
    /* the page's own files, beside it */
    static const char *const assets[] = {"status.css", "status.js", "favicon.ico"};
    for (size_t k = 0; !rc && k < GH_ARRAY_LEN(assets); k++) {
        char path[32];
        snprintf(path, sizeof path, "/%s", assets[k]);
        const struct gh_asset *a = gh_assets_find(path, strlen(path));
        if (!a) {
            fprintf(stderr, "gatehouse status export: %s is not embedded in this binary\n",
                    assets[k]);
            rc = GH_ENOTFOUND;
            break;
        }
        rc = write_one(dir, assets[k], (const char *)a->data, a->len);
    }
    gh_status_free(st);
    gh_config_unref(cfg);
    if (rc)
        return 1;
    printf("exported the status page to %s (index.html, zh.html, status.css, status.js, "
           "favicon.ico, api/v2/)\n",
           dir);
    return 0;
}
