/* This module implements typo suggestions (suggest.h): the optimal string
 * alignment distance (Levenshtein with swaps of neighbours) on short,
 * bounded names, computed on the stack. */
#include "core/suggest.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

static unsigned min3(unsigned a, unsigned b, unsigned c)
{
    unsigned m = a < b ? a : b;
    return m < c ? m : c;
}

unsigned gh_suggest_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > GH_SUGGEST_MAX || lb > GH_SUGGEST_MAX)
        return UINT_MAX;
    /* three rows of the dynamic-programming table: two back for swaps */
    unsigned rows[3][GH_SUGGEST_MAX + 1];
    unsigned *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (unsigned)i;
        int ca = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int cb = tolower((unsigned char)b[j - 1]);
            unsigned d = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb));
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        unsigned *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

void gh_suggest_init(struct gh_suggest *s, const char *word)
{
    s->word = word;
    s->best = NULL;
    s->best_dist = UINT_MAX;
}

void gh_suggest_add(struct gh_suggest *s, const char *candidate)
{
    unsigned d = gh_suggest_distance(s->word, candidate);
    if (d < s->best_dist) {
        s->best = candidate;
        s->best_dist = d;
    }
}

const char *gh_suggest_result(const struct gh_suggest *s)
{
    size_t len = strlen(s->word);
    unsigned limit = (unsigned)(len / 3);
    if (limit < 1)
        limit = 1;
    if (limit > 3)
        limit = 3;
    if (!s->best || s->best_dist == 0 || s->best_dist > limit || s->best_dist >= strlen(s->best))
        return NULL;
    return s->best;
}
