/* This module implements the back-off arithmetic of backoff.h. */
#include "identity/backoff.h"

uint64_t gh_backoff_ms(unsigned n, uint64_t base, uint64_t max)
{
    if (!n || !base)
        return 0;
    uint64_t d = base;
    for (unsigned i = 1; i < n && d < max; i++)
        d *= 2;
    return GH_MIN(d, max);
}
