/* The web pages (/, /register, /login, /chat, /keys, /account) and the
 * routes of their static assets under /css/, /js/, /img/ and
 * /favicon.ico, all from the embedded gh_assets[] table (web/, see
 * scripts/embed-web.sh; the assets are served by assets.h).
 *
 * Pages are templates (web/pages/NAME.html) rendered once per language at
 * start, with the strings of web/i18n/{en,zh}.json:
 *   {{key}}          the string `key` of the page's language, HTML-escaped
 *   {{/css/x.css}}   the asset's URL with its version (?v=<hash>)
 *   {{>_partial}}    web/pages/_partial.html, rendered in place
 *   {{=lang}}, {{=other_lang}}, {{=i18n}} (the language's strings as JSON
 *   for a <script type="application/json"> data block)
 * The language: gh_pages_lang, which the status page shares.
 *
 * Every page and asset carries the security headers of
 * gh_websec_page_headers (a strict Content-Security-Policy,
 * X-Frame-Options, Referrer-Policy, X-Content-Type-Options,
 * Cross-Origin-Opener-Policy). Assets carry an ETag; a versioned URL is
 * cached for a year, an unversioned one is revalidated.
 *
 * Ownership and threads: gh_pages_init runs on the main thread before the
 * server starts and renders everything into memory that lives as long as
 * the process and is read-only afterwards, so the handlers run on any
 * worker without locks. */
#pragma once

#include "core/server.h"
#include "http/http.h"

/* Renders the pages and registers the routes on srv->http->router. 0, or a
 * negative code with a message logged and printed (a template or string
 * table that does not render is a build mistake: the server must not
 * start). */
int gh_pages_init(struct gh_server *srv);

/* The language of a page request, for every page the public listener
 * renders (the site's and the status page): 1 for Chinese, 0 for English.
 * In order: ?lang=en|zh (exactly; remembered by a Set-Cookie gh_lang for
 * a year), the cookie gh_lang=en|zh, Accept-Language
 * (gh_pages_lang_from_accept), English. Adds Content-Language and Vary:
 * Accept-Language, Cookie to the answer. Loop thread of req. */
int gh_pages_lang(struct gh_http_req *req);

/* Which language Accept-Language (h, len bytes, may be NULL) prefers: 1
 * for Chinese, 0 for English (also when the header is absent or names
 * neither). The elements are comma-separated language-range [; q=qvalue]
 * as RFC 9110 writes them (range 1*8ALPHA *("-" 1*8alphanum) or "*",
 * q 0..1 with at most 3 decimals); malformed elements are skipped; the
 * zh or en range (primary subtag, any case) of highest q > 0 wins, the
 * first among equals. Any thread. */
int gh_pages_lang_from_accept(const char *h, size_t len);
