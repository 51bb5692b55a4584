/* This module implements the embedded web files' lookup and serving of
 * assets.h. */
#include "http/assets.h"

#include "http/websec.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const struct gh_asset *gh_assets_find(const char *path, size_t len)
{
    for (const struct gh_asset *a = gh_assets; a->path; a++)
        if (strlen(a->path) == len && !memcmp(a->path, path, len))
            return a;
    return NULL;
}

bool gh_assets_public(const char *path)
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

const char *gh_assets_content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".html", "text/html; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
        {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < GH_ARRAY_LEN(types); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

void gh_assets_etag(const void *data, size_t len, char out[GH_ASSETS_ETAG_SIZE])
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    snprintf(out, GH_ASSETS_ETAG_SIZE, "\"%016llx\"", (unsigned long long)h);
}

void gh_assets_send(struct gh_http_req *req, const char *path, size_t len, unsigned max_age)
{
    const struct gh_asset *a = gh_assets_find(path, len);
    gh_websec_page_headers(req);
    if (!a || !gh_assets_public(a->path)) {
        gh_http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    char v[16];
    if (!gh_http_query_get(req, "v", v, sizeof v) && !strcmp(v, a->version))
        gh_http_add_header(req, "Cache-Control", "public, max-age=31536000, immutable");
    else if (max_age)
        gh_http_add_header(req, "Cache-Control", "public, max-age=%u", max_age);
    else
        gh_http_add_header(req, "Cache-Control", "no-cache");
    gh_http_add_header(req, "ETag", "%s", a->etag);
    if (gh_http_etag_matches(req, a->etag))
        gh_http_respond(req, 304, NULL, NULL, 0);
    else
        gh_http_respond(req, 200, gh_assets_content_type(a->path), a->data, a->len);
}
