/* The penalty box below the application, for a process without
 * CAP_NET_ADMIN: a classic BPF program on each public listening socket
 * (SO_ATTACH_FILTER, which needs no privilege) that drops a bare SYN (SYN
 * set, ACK clear) from a banned prefix. The kernel runs a listening
 * socket's filter before it answers a SYN, so a banned source gets no
 * SYN-ACK, as with the nftables set (shield/nftban.h), and costs the
 * server no accept, no close and no turn of a worker's loop. Every other
 * segment is let through by the program's first four instructions: the
 * connections accepted from the socket inherit its filter, and their
 * traffic pays only that.
 *
 * A program holds at most GH_SOCKBAN_MAX_INSNS instructions (the kernel's
 * BPF_MAXINSNS), so a few thousand IPv4 prefixes, or fewer IPv6 ones: the
 * broadest bans go in first, and the bans left out are still closed at
 * accept. An IPv4 ban costs one compare, an IPv6 one up to four words.
 *
 * Pure: builds instructions. The shield publishes them and each worker
 * attaches them to its own listening socket (gh_http_listen_filter). */
#pragma once

#include "core/common.h"
#include "shield/penalty.h"

#include <linux/filter.h>

#define GH_SOCKBAN_MAX_INSNS 4096

struct gh_sockban_prog {
    struct sock_filter insns[GH_SOCKBAN_MAX_INSNS];
    unsigned len;        /* instructions used */
    size_t entries;      /* bans the program drops */
    uint64_t expires_ms; /* the earliest expiry among them; 0 when none */
};

/* Builds into p a program dropping bare SYNs from the prefixes of
 * bans[0..n), as many as fit: IPv4 before IPv6, and in each the broadest
 * first. With n = 0 (or out of memory) the program lets everything
 * through (p->entries = 0). Returns p->entries. */
size_t gh_sockban_build(const struct gh_ban *bans, size_t n, struct gh_sockban_prog *p);
