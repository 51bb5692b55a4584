/* The files of web/, embedded into the binary at build time by
 * scripts/embed-web.sh, and the one way they are served: lookup, which of
 * them are public, their content type, ETag and If-None-Match, caching.
 * The site's pages (pages.c: /css/, /js/, /img/, /favicon.ico) and the
 * status page (status/routes.c: /static/) both answer through
 * gh_assets_send, so the two cannot drift apart.
 *
 * Everything here is read-only data made at build time (the table, each
 * file's ETag and version): any thread, no init, nothing to free. */
#pragma once

#include "http/http.h"

#include <stdbool.h>
#include <stddef.h>

struct gh_asset {
    const char *path; /* "/css/site.css" */
    const unsigned char *data;
    size_t len;
    const char *etag;    /* "\"<16 hex>\"": the first 64 bits of the file's SHA-256 */
    const char *version; /* the first 8 hex digits of etag, for ?v= */
};

/* Terminated by an entry with path NULL. */
extern const struct gh_asset gh_assets[];

/* Bytes of an ETag written by gh_assets_etag, the NUL included. */
#define GH_ASSETS_ETAG_SIZE 19

/* The embedded file whose path is path[0..len) ("/css/site.css"), public
 * or not (templates and catalogues are found too: pages renders them), or
 * NULL. */
const struct gh_asset *gh_assets_find(const char *path, size_t len);

/* Whether an embedded file may be served as it is: the top-level files of
 * web/ and those of web/css, web/js and web/img. Templates (web/pages) and
 * string catalogues (web/i18n) are rendered into pages, never served raw.
 * path as in gh_assets[] ("/css/site.css"). */
bool gh_assets_public(const char *path);

/* The Content-Type of a file by its extension; application/octet-stream
 * for one it does not know. */
const char *gh_assets_content_type(const char *path);

/* Writes the strong ETag of generated content (a rendered page, a status
 * document) into out: "\"<16 hex>\"", FNV-1a of the bytes, so equal
 * content keeps its ETag across restarts. */
void gh_assets_etag(const void *data, size_t len, char out[GH_ASSETS_ETAG_SIZE]);

/* Answers req with the public embedded file path[0..len), or 404
 * not_found. The pages' security headers (gh_websec_page_headers), the
 * Content-Type by extension, the file's ETag (304 when If-None-Match
 * names it), Cache-Control: a year and immutable when ?v= equals the
 * file's version, else public with max_age seconds, or no-cache when
 * max_age is 0. Loop thread of req. */
void gh_assets_send(struct gh_http_req *req, const char *path, size_t len, unsigned max_age);
