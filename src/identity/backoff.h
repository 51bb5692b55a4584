/* The per-account login back-off arithmetic: after n consecutive failures
 * the next password attempt waits base × 2^(n-1), at most max (AWS
 * Cognito's 1 s doubling to 15 min by default). Pure; any thread. */
#pragma once

#include "core/common.h"

/* The wait in ms after n consecutive failures (0 when n or base is 0). */
uint64_t gh_backoff_ms(unsigned n, uint64_t base_ms, uint64_t max_ms);
