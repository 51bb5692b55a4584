/* The client address reported by a proxy in front of us in the
 * X-Forwarded-For header of a request, believed only from the shield's
 * trusted proxies: gh_proxy_xff takes the list itself. (The PROXY protocol
 * header at the start of a connection is http/proxy.h.)
 *
 * Pure functions: no allocation, no I/O, any thread. The fuzzer drives
 * them directly (fuzz/fuzz_proxy.c). */
#pragma once

#include "core/addr.h"
#include "http/http.h"

struct gh_ipset;

/* The client address from an X-Forwarded-For value (len bytes, a comma
 * separated list, each element an IPv4 or IPv6 address, optionally with a
 * port "1.2.3.4:5", "[2001:db8::1]:5"). When peer is not in trusted, the
 * header is ignored and *out = *peer. Otherwise the list is walked from
 * the right, past trusted proxies, to the first untrusted address; an
 * element that does not parse stops the walk at the trusted hop to its
 * right (a client can write anything to the left). Returns true when the
 * address came from the header. */
bool gh_proxy_xff(const char *value, size_t len, const struct gh_addr *peer,
                  const struct gh_ipset *trusted, struct gh_addr *out);

/* The client address from every X-Forwarded-For field line of req, joined
 * in order (what a chain of proxies that each append a line, as HAProxy's
 * "option forwardfor" does, means) and walked like gh_proxy_xff: from the
 * right, past trusted proxies, to the first untrusted address. A client's
 * own line, which comes first, cannot hide the address a trusted proxy
 * appended after it. */
bool gh_proxy_xff_req(const struct gh_http_req *req, const struct gh_addr *peer,
                      const struct gh_ipset *trusted, struct gh_addr *out);

/* One element's address forms: gh_addr_parse (core/addr.h), under the
 * name shield.c knows it by. */
static inline int gh_proxy_parse_addr(const char *s, size_t len, struct gh_addr *out)
{
    return gh_addr_parse(s, len, out);
}
