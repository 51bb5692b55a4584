/* This module implements the web pages of pages.h: template rendering at
 * start, language choice, the pages' routes and those of their assets
 * (served by assets.c). */
#include "http/pages.h"

#include "core/log.h"
#include "http/assets.h"
#include "http/router.h"
#include "http/server.h"
#include "http/websec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NLANG    2
#define PAGE_MAX (1u << 20) /* a rendered page */

static const char *const LANGS[NLANG] = {"en", "zh"};

/* The pages: route and template. */
static const struct {
    const char *route, *tpl;
} PAGES[] = {
    {"/", "/pages/index.html"},      {"/register", "/pages/register.html"},
    {"/login", "/pages/login.html"}, {"/chat", "/pages/chat.html"},
    {"/keys", "/pages/keys.html"},   {"/account", "/pages/account.html"},
    {"/reset-password", "/pages/reset-password.html"},
};
#define NPAGES GH_ARRAY_LEN(PAGES)

struct page_doc {
    char *data;
    size_t len;
    char etag[GH_ASSETS_ETAG_SIZE];
};

/* Everything rendered at start; read-only afterwards. */
static struct {
    json_t *strings[NLANG];
    struct page_doc doc[NPAGES][NLANG];
} pg;

/* ---- rendering (main thread, at start) ---- */

static int render(struct gh_buf *out, const char *tpl, size_t len, int lang, int depth,
                  const char *name);

static int render_tag(struct gh_buf *out, const char *t, size_t n, int lang, int depth,
                      const char *name)
{
    char key[128];
    if (!n || n >= sizeof key) {
        gh_log(GH_LOG_ERROR, "pages_template", "%s: empty or long {{…}} tag", name);
        return GH_EINVAL;
    }
    memcpy(key, t, n);
    key[n] = 0;
    if (key[0] == '/') { /* an asset URL with its version */
        const struct gh_asset *a = gh_assets_find(key, n);
        if (!a) {
            gh_log(GH_LOG_ERROR, "pages_template", "%s: no asset %s", name, key);
            return GH_ENOTFOUND;
        }
        return gh_buf_printf(out, "%s?v=%s", key, a->version);
    }
    if (key[0] == '>') { /* a partial */
        char path[160];
        snprintf(path, sizeof path, "/pages/%s.html", key + 1);
        const struct gh_asset *a = gh_assets_find(path, strlen(path));
        if (!a || depth >= 3) {
            gh_log(GH_LOG_ERROR, "pages_template", "%s: no partial %s (or nested too deep)", name,
                   path);
            return GH_ENOTFOUND;
        }
        return render(out, (const char *)a->data, a->len, lang, depth + 1, path);
    }
    if (key[0] == '=') {
        if (!strcmp(key, "=lang"))
            return gh_buf_append_str(out, LANGS[lang]);
        if (!strcmp(key, "=other_lang"))
            return gh_buf_append_str(out, LANGS[!lang]);
        if (!strcmp(key, "=i18n")) {
            char *s = json_dumps(pg.strings[lang], JSON_COMPACT | JSON_ESCAPE_SLASH);
            if (!s)
                return GH_ENOMEM;
            int rc = gh_buf_append_str(out, s);
            free(s);
            return rc;
        }
        gh_log(GH_LOG_ERROR, "pages_template", "%s: unknown variable %s", name, key);
        return GH_EINVAL;
    }
    json_t *v = json_object_get(pg.strings[lang], key);
    if (!json_is_string(v)) {
        gh_log(GH_LOG_ERROR, "pages_template", "%s: no string '%s' in i18n/%s.json", name, key,
               LANGS[lang]);
        return GH_ENOTFOUND;
    }
    return gh_buf_append_html(out, json_string_value(v), json_string_length(v));
}

static int render(struct gh_buf *out, const char *tpl, size_t len, int lang, int depth,
                  const char *name)
{
    size_t i = 0;
    while (i < len) {
        const char *open = memmem(tpl + i, len - i, "{{", 2);
        if (!open)
            return gh_buf_append(out, tpl + i, len - i);
        int rc = gh_buf_append(out, tpl + i, (size_t)(open - (tpl + i)));
        if (rc)
            return rc;
        size_t at = (size_t)(open - tpl) + 2;
        const char *close = memmem(tpl + at, len - at, "}}", 2);
        if (!close) {
            gh_log(GH_LOG_ERROR, "pages_template", "%s: unclosed {{", name);
            return GH_EINVAL;
        }
        rc = render_tag(out, tpl + at, (size_t)(close - (tpl + at)), lang, depth, name);
        if (rc)
            return rc;
        i = (size_t)(close - tpl) + 2;
    }
    return 0;
}

static int load_strings(void)
{
    for (int l = 0; l < NLANG; l++) {
        char path[32];
        snprintf(path, sizeof path, "/i18n/%s.json", LANGS[l]);
        const struct gh_asset *a = gh_assets_find(path, strlen(path));
        if (!a) {
            gh_log(GH_LOG_ERROR, "pages_init", "web%s is missing", path);
            return GH_ENOTFOUND;
        }
        json_error_t je;
        pg.strings[l] = json_loadb((const char *)a->data, a->len, 0, &je);
        if (!json_is_object(pg.strings[l])) {
            gh_log(GH_LOG_ERROR, "pages_init", "web%s:%d: %s", path, je.line, je.text);
            return GH_EINVAL;
        }
    }
    /* every English string has a Chinese one and back */
    for (int l = 0; l < NLANG; l++) {
        const char *k;
        json_t *v;
        json_object_foreach(pg.strings[l], k, v)
        {
            if (!json_is_string(json_object_get(pg.strings[!l], k))) {
                gh_log(GH_LOG_ERROR, "pages_init", "string '%s' is in i18n/%s.json, not in %s.json",
                       k, LANGS[l], LANGS[!l]);
                return GH_EINVAL;
            }
        }
    }
    return 0;
}

static int render_all(void)
{
    for (size_t p = 0; p < NPAGES; p++) {
        const struct gh_asset *a = gh_assets_find(PAGES[p].tpl, strlen(PAGES[p].tpl));
        if (!a) {
            gh_log(GH_LOG_ERROR, "pages_init", "web%s is missing", PAGES[p].tpl);
            return GH_ENOTFOUND;
        }
        for (int l = 0; l < NLANG; l++) {
            struct gh_buf b;
            gh_buf_init(&b, PAGE_MAX);
            int rc = render(&b, (const char *)a->data, a->len, l, 0, PAGES[p].tpl);
            if (rc) {
                gh_buf_dispose(&b);
                return rc;
            }
            struct page_doc *d = &pg.doc[p][l];
            d->data = gh_buf_steal(&b, &d->len);
            if (!d->data)
                return GH_ENOMEM;
            gh_assets_etag(d->data, d->len, d->etag);
        }
    }
    return 0;
}

/* ---- serving (any worker) ---- */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* One Accept-Language element s[0..n) without surrounding OWS:
 * language-range [OWS ";" OWS "q=" qvalue] (RFC 9110 12.4.2, 12.5.4).
 * Returns 1 for a zh range, 0 for en, -1 for any other or a malformed
 * element; *q gets the weight in thousandths. */
static int accept_element(const char *s, size_t n, unsigned *q)
{
    size_t i = 0, primary = 0;
    if (n > 0 && s[0] == '*') {
        i = 1;
    } else {
        for (size_t sub = 0;; sub++) { /* 1*8ALPHA *("-" 1*8alphanum) */
            size_t k = 0;
            while (i < n && k < 9 && (is_alpha(s[i]) || (sub && s[i] >= '0' && s[i] <= '9')))
                i++, k++;
            if (k == 0 || k > 8)
                return -1;
            if (sub == 0)
                primary = k;
            if (i == n || s[i] != '-')
                break;
            i++;
        }
    }
    *q = 1000;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n) {
        if (s[i++] != ';')
            return -1;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (n - i < 3 || (s[i] != 'q' && s[i] != 'Q') || s[i + 1] != '=' ||
            (s[i + 2] != '0' && s[i + 2] != '1'))
            return -1;
        bool one = s[i + 2] == '1';
        unsigned v = 0, digits = 0;
        i += 3;
        if (i < n && s[i] == '.') /* "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")] */
            for (i++; i < n && digits < 3 && s[i] >= '0' && s[i] <= '9'; i++, digits++)
                v = v * 10 + (unsigned)(s[i] - '0');
        if (i != n || (one && v != 0))
            return -1;
        while (digits++ < 3)
            v *= 10;
        *q = one ? 1000 : v;
    }
    if (primary != 2)
        return -1;
    if (!strncasecmp(s, "zh", 2))
        return 1;
    return !strncasecmp(s, "en", 2) ? 0 : -1;
}

int gh_pages_lang_from_accept(const char *h, size_t len)
{
    int best = 0;
    unsigned best_q = 0;
    for (size_t i = 0; h && i < len;) {
        size_t j = i;
        while (j < len && h[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (h[a] == ' ' || h[a] == '\t'))
            a++;
        while (b > a && (h[b - 1] == ' ' || h[b - 1] == '\t'))
            b--;
        unsigned q;
        int lang = a < b ? accept_element(h + a, b - a, &q) : -1;
        if (lang >= 0 && q > best_q) { /* the first among equals */
            best = lang;
            best_q = q;
        }
        i = j + 1;
    }
    return best;
}

static int lang_code(const char *s)
{
    return !strcmp(s, "zh") ? 1 : !strcmp(s, "en") ? 0 : -1;
}

static int pick_lang(struct gh_http_req *req)
{
    char v[8];
    int l;
    if (!gh_http_query_get(req, "lang", v, sizeof v) && (l = lang_code(v)) >= 0) {
        gh_http_add_header(req, "Set-Cookie", "gh_lang=%s; Path=/; Max-Age=31536000; SameSite=Lax",
                           LANGS[l]);
        return l;
    }
    if (!gh_http_cookie_get(req, "gh_lang", v, sizeof v) && (l = lang_code(v)) >= 0)
        return l;
    size_t len = 0;
    const char *h = gh_http_header_get(req, "accept-language", &len);
    return gh_pages_lang_from_accept(h, len);
}

int gh_pages_lang(struct gh_http_req *req)
{
    int lang = pick_lang(req);
    gh_http_add_header(req, "Content-Language", "%s", LANGS[lang]);
    gh_http_add_header(req, "Vary", "Accept-Language, Cookie");
    return lang;
}

static void get_page(struct gh_http_req *req)
{
    size_t p = (size_t)(uintptr_t)req->route->ctx;
    int lang = gh_pages_lang(req);
    const struct page_doc *d = &pg.doc[p][lang];
    gh_websec_page_headers(req);
    gh_http_add_header(req, "Cache-Control", "no-cache");
    gh_http_add_header(req, "ETag", "%s", d->etag);
    if (gh_http_etag_matches(req, d->etag))
        gh_http_respond(req, 304, NULL, NULL, 0);
    else
        gh_http_respond(req, 200, "text/html; charset=utf-8", d->data, d->len);
}

/* GET /css/{name}, /js/{name}, /img/{name}: the embedded web/<dir>/<name>. */
static void get_asset(struct gh_http_req *req)
{
    const char *dir = req->route->ctx;
    char path[256];
    int n = snprintf(path, sizeof path, "/%s/%s", dir, req->params[0]);
    gh_assets_send(req, path, n > 0 && (size_t)n < sizeof path ? (size_t)n : 0, 0);
}

/* GET /favicon.ico: what browsers ask for by themselves (web/favicon.ico). */
static void get_favicon(struct gh_http_req *req)
{
    gh_assets_send(req, "/favicon.ico", strlen("/favicon.ico"), 0);
}

int gh_pages_init(struct gh_server *srv)
{
    int rc = load_strings();
    rc = rc ? rc : render_all();
    if (rc) {
        fprintf(stderr, "gatehouse: the web pages do not render (see the log)\n");
        return rc;
    }
    for (size_t p = 0; p < NPAGES; p++) {
        struct gh_route *r =
            gh_router_add(&srv->http->router, "GET", PAGES[p].route, get_page, (void *)(uintptr_t)p);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_ANON;
    }
    struct gh_route *fav = gh_router_add(&srv->http->router, "GET", "/favicon.ico", get_favicon, NULL);
    if (!fav)
        return GH_ETOOBIG;
    fav->cls = GH_CLASS_ANON;
    static const char *const dirs[][2] = {
        {"/css/{name}", "css"}, {"/js/{name}", "js"}, {"/img/{name}", "img"}};
    for (size_t i = 0; i < GH_ARRAY_LEN(dirs); i++) {
        struct gh_route *r =
            gh_router_add(&srv->http->router, "GET", dirs[i][0], get_asset, (void *)dirs[i][1]);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_ANON;
    }
    return 0;
}
