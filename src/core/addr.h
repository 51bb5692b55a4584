/* A client address in compact form (struct gh_addr, kept only in memory)
 * and the conversions every layer needs: from a socket address, from text
 * ("1.2.3.4", "2001:db8::1", with an optional port), and to text, whole or
 * as the network prefix the logs keep. IPv4-mapped IPv6 addresses are
 * always stored as IPv4, so one client has one form.
 *
 * Pure functions: no allocation, no I/O, any thread. */
#pragma once

#include "core/common.h"

#include <netinet/in.h>
#include <sys/socket.h>

struct gh_addr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bytes[16];
};

/* Sets a from the 4 (AF_INET) or 16 (AF_INET6) network-order bytes at b;
 * a v4-mapped IPv6 address becomes IPv4. */
void gh_addr_set(struct gh_addr *a, int family, const uint8_t *b);
/* Sets a from a socket address (AF_INET or AF_INET6; anything else leaves
 * a zeroed, family 0). */
void gh_addr_from_sockaddr(const struct sockaddr_storage *ss, struct gh_addr *a);
/* Parses an address of family (AF_INET or AF_INET6) written in len bytes,
 * without port or brackets. True on success. */
bool gh_addr_parse_ip(int family, const char *s, size_t len, struct gh_addr *out);
/* Parses a decimal port of len bytes (1..5 digits, no leading zero,
 * at most 65535). True on success. */
bool gh_addr_parse_port(const char *s, size_t len, uint16_t *out);
/* Parses one address ("1.2.3.4", "2001:db8::1", "1.2.3.4:5",
 * "[2001:db8::1]", "[2001:db8::1]:5"; blanks around it are ignored) of
 * len bytes; a port is checked and dropped. 0 or GH_EINVAL. */
int gh_addr_parse(const char *s, size_t len, struct gh_addr *out);

/* Formats the address ("203.0.113.7", "2001:db8::1"); "unknown" when it
 * has no family. */
void gh_addr_format(const struct gh_addr *a, char *out, size_t outlen);
/* The network prefix (/24 for IPv4, /48 for IPv6) as text. */
void gh_addr_format_prefix(const struct gh_addr *a, char *out, size_t outlen);
