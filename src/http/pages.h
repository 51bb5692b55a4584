/* The web pages (/, /register, /login, /chat, /keys, /account) and the
 * static assets under /css/, /js/ and /img/, all from the embedded
 * gh_assets[] table (web/, see scripts/embed-web.sh).
 *
 * Pages are templates (web/pages/NAME.html) rendered once per language at
 * start, with the strings of web/i18n/{en,zh}.json:
 *   {{key}}          the string `key` of the page's language, HTML-escaped
 *   {{/css/x.css}}   the asset's URL with its version (?v=<hash>)
 *   {{>_partial}}    web/pages/_partial.html, rendered in place
 *   {{=lang}}, {{=other_lang}}, {{=i18n}} (the language's strings as JSON
 *   for a <script type="application/json"> data block)
 * The language: ?lang=en|zh (remembered in the cookie gh_lang), else the
 * cookie, else Accept-Language, else English.
 *
 * Every page carries the security headers (a strict Content-Security-Policy,
 * X-Frame-Options, Referrer-Policy, X-Content-Type-Options). Assets carry an
 * ETag; a versioned URL is cached for a year, an unversioned one is
 * revalidated.
 *
 * Ownership and threads: gh_pages_init runs on the main thread before the
 * server starts and renders everything into memory that lives as long as
 * the process and is read-only afterwards, so the handlers run on any
 * worker without locks. */
#pragma once

#include "core/server.h"

/* Renders the pages and registers the routes on srv->router. 0, or a
 * negative code with a message logged and printed (a template or string
 * table that does not render is a build mistake: the server must not
 * start). */
int gh_pages_init(struct gh_server *srv);

/* Whether an embedded file may be served as it is: the top-level files of
 * web/ and those of web/css, web/js and web/img. Templates (web/pages) and
 * string catalogues (web/i18n) are rendered into pages, never served raw.
 * path as in gh_assets[] ("/css/site.css"). Any thread. */
bool gh_pages_asset_public(const char *path);

/* Which language Accept-Language (h, len bytes, may be NULL) prefers: 1
 * for Chinese, 0 for English (also when the header is absent or names
 * neither). The elements are comma-separated language-range [; q=qvalue]
 * as RFC 9110 writes them (range 1*8ALPHA *("-" 1*8alphanum) or "*",
 * q 0..1 with at most 3 decimals); malformed elements are skipped; the
 * zh or en range (primary subtag, any case) of highest q > 0 wins, the
 * first among equals. Any thread. */
int gh_pages_lang_from_accept(const char *h, size_t len);
