/* The client address reported by a load balancer or proxy in front of us:
 * the PROXY protocol header (v1 text and v2 binary, as HAProxy specifies
 * them) at the start of a connection, and the X-Forwarded-For header of a
 * request. Both are believed only from trusted addresses; the caller
 * checks the peer against its trusted list before calling the parser, and
 * gh_proxy_xff takes the list itself.
 *
 * Pure functions on byte buffers: no allocation, no I/O, any thread. The
 * fuzzer drives them directly (fuzz/fuzz_proxy.c). */
#pragma once

#include "core/common.h"
#include "http/http.h"

struct gh_ipset;

/* The longest header accepted: a v1 line is at most 107 bytes; a v2 header
 * 16 bytes plus addresses and TLVs, which we cap here. */
#define GH_PROXY_V1_MAX  107
#define GH_PROXY_MAX     (16 + 1024)

enum gh_proxy_status {
    GH_PROXY_NEED_MORE, /* a valid beginning: read more bytes */
    GH_PROXY_DONE,      /* a complete header of out->consumed bytes */
    GH_PROXY_INVALID,   /* not a PROXY header, or a malformed one: close */
};

struct gh_proxy_result {
    size_t consumed; /* header bytes; the request starts after them */
    int version;     /* 1 or 2 */
    bool has_source; /* false for LOCAL, UNKNOWN, UNSPEC, UNIX: keep the peer's address */
    struct gh_addr src, dst;
    uint16_t src_port, dst_port;
};

/* Parses the header at the start of buf (len bytes so far). v4-mapped
 * IPv6 sources come back as IPv4. */
enum gh_proxy_status gh_proxy_parse(const uint8_t *buf, size_t len, struct gh_proxy_result *out);

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

/* Parses one address ("1.2.3.4", "2001:db8::1", with the optional port
 * forms above) of len bytes. 0 or GH_EINVAL. */
int gh_proxy_parse_addr(const char *s, size_t len, struct gh_addr *out);
