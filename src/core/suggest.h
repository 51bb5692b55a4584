/* Typo suggestions for names the user wrote (configuration keys and
 * sections, ctl commands and options): "did you mean idle_timeout?". The
 * caller offers each known name in turn and asks for the nearest one; the
 * state lives in the caller's struct, nothing is allocated, any thread may
 * use its own instance. */
#pragma once

#include <stddef.h>

/* Names longer than this are never suggested nor compared. */
#define GH_SUGGEST_MAX 64

struct gh_suggest {
    const char *word; /* what the user wrote (not copied) */
    const char *best; /* nearest candidate so far, or NULL */
    unsigned best_dist;
};

/* Starts a search for the name nearest to word (not copied: it must live
 * until gh_suggest_result). */
void gh_suggest_init(struct gh_suggest *s, const char *word);

/* Offers a known name (not copied). The first of equally near names wins. */
void gh_suggest_add(struct gh_suggest *s, const char *candidate);

/* Returns the nearest name offered, or NULL when none is close enough to
 * be a likely typo (edit distance, a swap of neighbours counting one, of
 * at most a third of the word's length, 1 to 3) or the word itself was
 * offered. Case is ignored. */
const char *gh_suggest_result(const struct gh_suggest *s);

/* Edit distance between a and b (insertions, deletions, substitutions and
 * swaps of neighbouring characters each count one), ignoring case; names
 * longer than GH_SUGGEST_MAX count as infinitely far (UINT_MAX). */
unsigned gh_suggest_distance(const char *a, const char *b);
