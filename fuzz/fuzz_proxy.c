/* This module implements the libFuzzer harness of the PROXY protocol
 * parser (http/proxy.h) and the X-Forwarded-For walk (shield/proxy.h). It checks, beyond
 * memory safety, that a complete header is reported complete at its exact
 * length and that every shorter prefix of it asks for more (so a reader
 * feeding bytes as they arrive reaches the same answer), and that the
 * consumed length never passes the input. */
#include "http/proxy.h"
#include "shield/ipset.h"
#include "shield/proxy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gh_proxy_result r;
    enum gh_proxy_status st = gh_proxy_parse(data, size, &r);
    if (st == GH_PROXY_DONE) {
        if (r.consumed == 0 || r.consumed > size || r.consumed > GH_PROXY_MAX)
            abort();
        struct gh_proxy_result r2;
        if (gh_proxy_parse(data, r.consumed, &r2) != GH_PROXY_DONE || r2.consumed != r.consumed ||
            r2.has_source != r.has_source)
            abort();
        for (size_t i = 0; i < r.consumed; i++)
            if (gh_proxy_parse(data, i, &r2) != GH_PROXY_NEED_MORE)
                abort();
    } else if (st == GH_PROXY_NEED_MORE && size > GH_PROXY_MAX) {
        abort(); /* a reader must not be asked to buffer without end */
    }

    /* the same bytes as an X-Forwarded-For value behind a trusted peer */
    static struct gh_ipset *trusted;
    if (!trusted) {
        struct gh_cidr c[2];
        gh_cidr_parse("10.0.0.0/8", 10, &c[0]);
        gh_cidr_parse("::1", 3, &c[1]);
        trusted = gh_ipset_build(c, 2);
    }
    struct gh_addr peer = {.family = AF_INET, .bytes = {10, 0, 0, 1}}, out;
    gh_proxy_xff((const char *)data, size, &peer, trusted, &out);
    if (out.family != AF_INET && out.family != AF_INET6)
        abort();
    return 0;
}
