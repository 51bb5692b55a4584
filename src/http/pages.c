/* This module implements the web pages and static assets of pages.h:
 * template rendering at start, language choice, caching headers. */
#include "http/pages.h"

#include "core/log.h"
#include "http/assets.h"
#include "http/router.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

#define NLANG      2
#define PAGE_MAX   (1u << 20) /* a rendered page */
#define ASSETS_MAX 256

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
    char etag[24];
};

/* Everything rendered at start; read-only afterwards. */
static struct {
    size_t nassets;
    char etag[ASSETS_MAX][24]; /* "\"<16 hex>\"" per gh_assets[] entry */
    char ver[ASSETS_MAX][12];  /* the first 8 hex digits, for ?v= */
    json_t *strings[NLANG];
    struct page_doc doc[NPAGES][NLANG];
} pg;

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int asset_find(const char *path, size_t len)
{
    for (size_t i = 0; i < pg.nassets; i++)
        if (strlen(gh_assets[i].path) == len && !memcmp(gh_assets[i].path, path, len))
            return (int)i;
    return -1;
}

bool gh_pages_asset_public(const char *path)
{
    static const char *const dirs[] = {"/css/", "/js/", "/img/"};
    if (path[0] != '/')
        return false;
    const char *rest = path + 1;
    for (size_t i = 0; i < GH_ARRAY_LEN(dirs); i++) {
        size_t n = strlen(dirs[i]);
        if (!strncmp(path, dirs[i], n)) {
            rest = path + n;
            break;
        }
    }
    return rest[0] && rest[0] != '.' && !strchr(rest, '/');
}

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".html", "text/html; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < GH_ARRAY_LEN(types); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

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
        int i = asset_find(key, n);
        if (i < 0) {
            gh_log(GH_LOG_ERROR, "pages_template", "%s: no asset %s", name, key);
            return GH_ENOTFOUND;
        }
        return gh_buf_printf(out, "%s?v=%s", key, pg.ver[i]);
    }
    if (key[0] == '>') { /* a partial */
        char path[160];
        snprintf(path, sizeof path, "/pages/%s.html", key + 1);
        int i = asset_find(path, strlen(path));
        if (i < 0 || depth >= 3) {
            gh_log(GH_LOG_ERROR, "pages_template", "%s: no partial %s (or nested too deep)", name,
                   path);
            return GH_ENOTFOUND;
        }
        return render(out, (const char *)gh_assets[i].data, gh_assets[i].len, lang, depth + 1,
                      path);
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
        int i = asset_find(path, strlen(path));
        if (i < 0) {
            gh_log(GH_LOG_ERROR, "pages_init", "web%s is missing", path);
            return GH_ENOTFOUND;
        }
        json_error_t je;
        pg.strings[l] = json_loadb((const char *)gh_assets[i].data, gh_assets[i].len, 0, &je);
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
        int i = asset_find(PAGES[p].tpl, strlen(PAGES[p].tpl));
        if (i < 0) {
            gh_log(GH_LOG_ERROR, "pages_init", "web%s is missing", PAGES[p].tpl);
            return GH_ENOTFOUND;
        }
        for (int l = 0; l < NLANG; l++) {
            struct gh_buf b;
            gh_buf_init(&b, PAGE_MAX);
            int rc =
                render(&b, (const char *)gh_assets[i].data, gh_assets[i].len, l, 0, PAGES[p].tpl);
            if (rc) {
                gh_buf_dispose(&b);
                return rc;
            }
            struct page_doc *d = &pg.doc[p][l];
            d->data = gh_buf_steal(&b, &d->len);
            if (!d->data)
                return GH_ENOMEM;
            snprintf(d->etag, sizeof d->etag, "\"%016llx\"",
                     (unsigned long long)fnv1a((const unsigned char *)d->data, d->len));
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

/* The language of this request; remembers an explicit ?lang= in a cookie. */
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


static void security_headers(struct gh_http_req *req)
{
    gh_http_add_header(req, "Content-Security-Policy", "%s", CSP);
    gh_http_add_header(req, "X-Frame-Options", "DENY");
    gh_http_add_header(req, "Referrer-Policy", "no-referrer");
    gh_http_add_header(req, "X-Content-Type-Options", "nosniff");
    gh_http_add_header(req, "Cross-Origin-Opener-Policy", "same-origin");
}

static void get_page(struct gh_http_req *req)
{
    size_t p = (size_t)(uintptr_t)req->route->ctx;
    int lang = pick_lang(req);
    const struct page_doc *d = &pg.doc[p][lang];
    security_headers(req);
    gh_http_add_header(req, "Content-Language", "%s", LANGS[lang]);
    gh_http_add_header(req, "Vary", "Accept-Language, Cookie");
    gh_http_add_header(req, "Cache-Control", "no-cache");
    gh_http_add_header(req, "ETag", "%s", d->etag);
    if (gh_http_etag_matches(req, d->etag))
        gh_http_respond(req, 304, NULL, NULL, 0);
    else
        gh_http_respond(req, 200, "text/html; charset=utf-8", d->data, d->len);
}

/* Answers with embedded asset path (len bytes), or 404. */
static void serve_asset(struct gh_http_req *req, const char *path, size_t len)
{
    int i = asset_find(path, len);
    gh_http_add_header(req, "X-Content-Type-Options", "nosniff");
    if (i < 0 || !gh_pages_asset_public(gh_assets[i].path)) {
        gh_http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    char v[16];
    bool versioned = !gh_http_query_get(req, "v", v, sizeof v) && !strcmp(v, pg.ver[i]);
    gh_http_add_header(req, "Cache-Control", "%s",
                       versioned ? "public, max-age=31536000, immutable" : "no-cache");
    gh_http_add_header(req, "ETag", "%s", pg.etag[i]);
    if (gh_http_etag_matches(req, pg.etag[i]))
        gh_http_respond(req, 304, NULL, NULL, 0);
    else
        gh_http_respond(req, 200, content_type(gh_assets[i].path), gh_assets[i].data,
                        gh_assets[i].len);
}

/* GET /css/{name}, /js/{name}, /img/{name}: the embedded web/<dir>/<name>. */
static void get_asset(struct gh_http_req *req)
{
    const char *dir = req->route->ctx;
    char path[256];
    int n = snprintf(path, sizeof path, "/%s/%s", dir, req->params[0]);
    if (n > 0 && (size_t)n < sizeof path)
        serve_asset(req, path, (size_t)n);
    else
        gh_http_respond_error(req, 404, "not_found", "no such file");
}

/* GET /favicon.ico: what browsers ask for by themselves (web/favicon.ico). */
static void get_favicon(struct gh_http_req *req)
{
    serve_asset(req, "/favicon.ico", strlen("/favicon.ico"));
}

int gh_pages_init(struct gh_server *srv)
{
    pg.nassets = 0;
    while (gh_assets[pg.nassets].path) {
        if (pg.nassets >= ASSETS_MAX) {
            gh_log(GH_LOG_ERROR, "pages_init", "more than %u files in web/", ASSETS_MAX);
            fprintf(stderr, "gatehouse: pages: more than %u files in web/\n", ASSETS_MAX);
            return GH_ETOOBIG;
        }
        size_t i = pg.nassets++;
        uint64_t h = fnv1a(gh_assets[i].data, gh_assets[i].len);
        snprintf(pg.etag[i], sizeof pg.etag[i], "\"%016llx\"", (unsigned long long)h);
        snprintf(pg.ver[i], sizeof pg.ver[i], "%08llx", (unsigned long long)(h >> 32));
    }
    int rc = load_strings();
    rc = rc ? rc : render_all();
    if (rc) {
        fprintf(stderr, "gatehouse: the web pages do not render (see the log)\n");
        return rc;
    }
    for (size_t p = 0; p < NPAGES; p++) {
        struct gh_route *r =
            gh_router_add(&srv->router, "GET", PAGES[p].route, get_page, (void *)(uintptr_t)p);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_ANON;
    }
    struct gh_route *fav = gh_router_add(&srv->router, "GET", "/favicon.ico", get_favicon, NULL);
    if (!fav)
        return GH_ETOOBIG;
    fav->cls = GH_CLASS_ANON;
    static const char *const dirs[][2] = {
        {"/css/{name}", "css"}, {"/js/{name}", "js"}, {"/img/{name}", "img"}};
    for (size_t i = 0; i < GH_ARRAY_LEN(dirs); i++) {
        struct gh_route *r =
            gh_router_add(&srv->router, "GET", dirs[i][0], get_asset, (void *)dirs[i][1]);
        if (!r)
            return GH_ETOOBIG;
        r->cls = GH_CLASS_ANON;
    }
    return 0;
}
