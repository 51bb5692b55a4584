/* IP sets: CIDR prefixes of IPv4 and IPv6 in one path-compressed binary
 * tree (IPv4 lives in the IPv4-mapped IPv6 space ::ffff:0:0/96, so
 * ::ffff:192.0.2.1 and 192.0.2.1 are the same address), looked up in
 * O(prefix bits).
 *
 * Two layers:
 * - struct gh_ipset: an immutable tree built from a list of CIDRs,
 *   reference counted; any thread may read it, the last unref frees it.
 * - struct gh_iplist: a live list (the block list, the allow list) made of
 *   entries loaded from a file (FireHOL / Spamhaus DROP format) plus
 *   entries added at run time. Every change builds a new tree and swaps it
 *   in atomically; readers (gh_iplist_contains) never lock: they announce
 *   themselves on one of two reader counters, and a writer frees the old
 *   tree only after both counters have drained once since the swap (a
 *   small RCU). Changes (load, add, remove) may come from any thread and
 *   are serialised by a mutex; they wait a few microseconds for readers.
 *   gh_iplist_new/free on one thread while no one else uses the list. */
#pragma once

#include "core/buf.h"
#include "core/common.h"
#include "http/http.h"

/* A prefix in the mapped IPv6 space: len 96..128 for IPv4. */
struct gh_cidr {
    uint8_t bytes[16];
    uint8_t len;
};

/* Parses "192.0.2.0/24", "2001:db8::/32", a bare address (/32, /128) or
 * "::ffff:192.0.2.0/120" of len bytes; host bits past the prefix are
 * cleared. 0 or GH_EINVAL. */
int gh_cidr_parse(const char *s, size_t len, struct gh_cidr *out);
/* Writes the canonical text ("192.0.2.0/24", "2001:db8::/32"). */
void gh_cidr_format(const struct gh_cidr *c, char *out, size_t outlen);
/* The address as a /32 or /128 prefix. */
void gh_cidr_from_addr(const struct gh_addr *a, struct gh_cidr *out);
bool gh_cidr_equal(const struct gh_cidr *a, const struct gh_cidr *b);

struct gh_ipset;

/* Builds a tree from n prefixes (duplicates and overlaps are fine). NULL
 * when out of memory. refs = 1. */
struct gh_ipset *gh_ipset_build(const struct gh_cidr *cidrs, size_t n);
struct gh_ipset *gh_ipset_ref(struct gh_ipset *s);
void gh_ipset_unref(struct gh_ipset *s);
/* True when a prefix of s contains the address. NULL s holds nothing. */
bool gh_ipset_contains(const struct gh_ipset *s, const struct gh_addr *a);
/* The same for an address given as a mapped-space prefix of 128 bits. */
bool gh_ipset_contains_cidr(const struct gh_ipset *s, const struct gh_cidr *c);
/* True when a prefix of s and c share an address (one holds the other). */
bool gh_ipset_overlaps(const struct gh_ipset *s, const struct gh_cidr *c);
/* Distinct prefixes in s, and its tree nodes (for memory figures). */
size_t gh_ipset_count(const struct gh_ipset *s);
size_t gh_ipset_nodes(const struct gh_ipset *s);

/* Parses a list in FireHOL / Spamhaus DROP format: one prefix or address a
 * line, '#' and ';' start comments, blank lines are skipped. Appends good
 * entries to *out (grown with realloc, capped at max entries) and, for
 * each malformed line, "ORIGIN:LINE: reason" to report (which stays within
 * its cap; later lines are then only counted). Returns the number of
 * malformed lines, or GH_ENOMEM / GH_ETOOBIG. */
int gh_ipset_parse_list(const char *text, size_t len, const char *origin, struct gh_cidr **out,
                        size_t *n, size_t max, struct gh_buf *report);

/* ---- the live list ---- */

struct gh_iplist;

/* An empty list. max caps the entries (file and run time together). */
struct gh_iplist *gh_iplist_new(size_t max);
void gh_iplist_free(struct gh_iplist *l);
/* Lock-free: is a in the current tree? Any thread. */
bool gh_iplist_contains(struct gh_iplist *l, const struct gh_addr *a);
/* A reference to the current tree (unref it when done). Any thread. */
struct gh_ipset *gh_iplist_snapshot(struct gh_iplist *l);

/* Replaces the file entries with those of path (NULL or "" clears them).
 * Malformed lines are reported in report and skipped; *nbad gets their
 * count. 0, or GH_EIO when the file cannot be read (the list is then
 * unchanged), GH_ENOMEM, GH_ETOOBIG. Blocking file I/O: main thread or
 * a thread that may block. */
int gh_iplist_load_file(struct gh_iplist *l, const char *path, struct gh_buf *report,
                        unsigned *nbad);
/* Same from text in memory (tests). */
int gh_iplist_load_text(struct gh_iplist *l, const char *text, size_t len, const char *origin,
                        struct gh_buf *report, unsigned *nbad);
/* Adds a run-time entry. 0, GH_EEXIST (already a run-time entry), GH_ETOOBIG,
 * GH_ENOMEM. */
int gh_iplist_add(struct gh_iplist *l, const struct gh_cidr *c);
/* Removes an exact prefix from the run-time entries and the file entries
 * (a file entry comes back when the file is loaded again). 0 or
 * GH_ENOTFOUND. */
int gh_iplist_remove(struct gh_iplist *l, const struct gh_cidr *c);

/* Replaces the run-time entries with c[0..n) (another node's list). 0,
 * GH_ETOOBIG or GH_ENOMEM (then the list is unchanged). */
int gh_iplist_set_runtime(struct gh_iplist *l, const struct gh_cidr *c, size_t n);

struct gh_iplist_info {
    size_t file_entries;
    size_t runtime_entries;
    size_t nodes;
    unsigned bad_lines; /* at the last file load */
};
void gh_iplist_info(struct gh_iplist *l, struct gh_iplist_info *out);
/* Appends the run-time entries as a JSON array of strings to out. */
int gh_iplist_runtime_json(struct gh_iplist *l, struct gh_buf *out);
