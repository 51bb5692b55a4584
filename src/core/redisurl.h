/* Redis URLs as the configuration writes them: redis://HOST[:PORT][/DB],
 * HOST an IPv4 address, a bracketed IPv6 address or a DNS name, PORT 1 to
 * 65535 (6379 when absent), DB 0 to 15 (0 when absent). A password in the
 * URL is refused: it would show in configuration dumps and logs (the
 * password comes from the environment, GATEHOUSE_REDIS_PASSWORD). Pure
 * functions, any thread. */
#pragma once

#include "core/common.h"
#include "core/buf.h"

#define GH_REDIS_HOST_MAX 256

struct gh_redis_url {
    char host[GH_REDIS_HOST_MAX]; /* without brackets */
    unsigned port;
    unsigned db;
};

/* Parses len bytes of text into *out. 0, or GH_EINVAL with the reason in
 * err (which may be NULL). */
int gh_redis_url_parse(const char *text, size_t len, struct gh_redis_url *out, struct gh_buf *err);
