/* PostgreSQL connection strings as the configuration and the logs see
 * them: a postgresql:// (or postgres://) URL or a libpq key=value
 * conninfo, checked for shape and copied with the password hidden. libpq
 * itself parses the string when connecting; this module only has to know
 * where a password can sit, so no log line and no configuration dump ever
 * shows it. Pure functions, any thread. */
#pragma once

#include "core/common.h"

/* Copies url into out (cap bytes, NUL-terminated) with every password
 * (the URL's user:password@, a password= query parameter, a conninfo
 * password=… value) replaced by "***". 0, GH_EINVAL when url is neither
 * form (an unknown scheme, an unterminated quote, a key without '='), or
 * GH_ETOOBIG when out is too small; out holds "" on failure. */
int gh_pgurl_redact(const char *url, char *out, size_t cap);
/* True when url carries a password itself (rather than PGPASSWORD or a
 * password file). */
bool gh_pgurl_has_password(const char *url);
