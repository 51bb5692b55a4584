/* Shared by the libFuzzer harnesses in fuzz/: an invariant check that
 * aborts (so libFuzzer saves the input) with the failed condition, in
 * every build type. Not part of the library. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(c)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
