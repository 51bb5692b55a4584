/* This module implements the libFuzzer harness of the Redis URL parser
 * (core/redisurl.h). Beyond memory safety: a URL that parses has a host
 * that is NUL-terminated within its buffer and free of '@', '/' and
 * brackets, a port in 1..65535 and a database in 0..15; and the URL
 * rebuilt from the parts parses to the same parts. */
#include "core/redisurl.h"
#include "invariant.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gh_redis_url u;
    struct gh_buf err;
    gh_buf_init(&err, 512);
    int rc = gh_redis_url_parse((const char *)data, size, &u, &err);
    if (rc == 0) {
        size_t hl = strnlen(u.host, sizeof u.host);
        FUZZ_CHECK(hl > 0 && hl < sizeof u.host);
        FUZZ_CHECK(!strpbrk(u.host, "@/[]"));
        FUZZ_CHECK(u.port >= 1 && u.port <= 65535 && u.db <= 15);
        char again[GH_REDIS_HOST_MAX + 40];
        int n = snprintf(again, sizeof again,
                         strchr(u.host, ':') ? "redis://[%s]:%u/%u" : "redis://%s:%u/%u", u.host,
                         u.port, u.db);
        struct gh_redis_url v;
        FUZZ_CHECK(gh_redis_url_parse(again, (size_t)n, &v, NULL) == 0);
        FUZZ_CHECK(!strcmp(u.host, v.host) && u.port == v.port && u.db == v.db);
    } else {
        FUZZ_CHECK(rc == GH_EINVAL && err.len > 0);
    }
    gh_buf_dispose(&err);
    return 0;
}
