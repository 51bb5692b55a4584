/* The client address reported by a load balancer in front of us: the
 * PROXY protocol header (v1 text and v2 binary, as HAProxy specifies them)
 * at the start of a connection. It is believed only from trusted
 * addresses; the caller (conn.c) checks the peer with the listener's
 * proxy_trusted hook before calling the parser. The X-Forwarded-For walk,
 * which needs the shield's trusted list, is shield/proxy.h.
 *
 * Pure functions on byte buffers: no allocation, no I/O, any thread. The
 * fuzzer drives them directly (fuzz/fuzz_proxy.c). */
#pragma once

#include "core/addr.h"
#include "core/common.h"

/* The longest header accepted: a v1 line is at most 107 bytes; a v2 header
 * 16 bytes plus addresses and TLVs, which we cap here. */
#define GH_PROXY_V1_MAX 107
#define GH_PROXY_MAX    (16 + 1024)

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
