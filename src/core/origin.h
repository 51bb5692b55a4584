/* Web origins ("https://chat.example.com") in a canonical form, shared by
 * the configuration check of [server] public_origin (config.c) and the
 * same-origin check of the public listener (http/websec.c).
 * Pure functions: any thread; nothing is allocated. */
#pragma once

#include "core/common.h"

/* Room for a canonical origin and its NUL. */
#define GH_ORIGIN_MAX 300

/* Writes "scheme://host:port" of an origin (scheme http or https, then an
 * authority without path, user info or whitespace; lowercase scheme and
 * host, the default port written out, leading zeros of a port dropped)
 * into out. Returns the length, or 0 when s (len bytes) is not such an
 * origin. */
size_t gh_origin_canon(const char *s, size_t len, char out[GH_ORIGIN_MAX]);

/* True when public_origin is a valid setting: empty (or NULL), or
 * scheme://host[:port] with scheme http or https and no path, query,
 * fragment or user info. */
bool gh_origin_setting_ok(const char *public_origin);
