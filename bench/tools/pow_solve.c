/* This module implements `pow_solve CHALLENGE BITS [START]`: the C solver
 * of the proof of work (shield/pow.h) for tests and benchmarks. Prints the
 * decimal nonce on stdout; exit 0, 1 when none was found within 2^40
 * tries, 2 on a usage error. */
#include "shield/pow.h"

#include "core/config.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    uint64_t bits, start = 0, nonce;
    if (argc < 3 || argc > 4 || gh_parse_uint(argv[2], GH_POW_BITS_MAX, &bits) ||
        (argc == 4 && gh_parse_uint(argv[3], UINT64_MAX / 2, &start))) {
        fprintf(stderr, "usage: pow_solve CHALLENGE BITS [START]\n"
                        "  prints a decimal nonce such that SHA-256(CHALLENGE \":\" nonce)\n"
                        "  starts with BITS zero bits (BITS <= %d)\n",
                GH_POW_BITS_MAX);
        return 2;
    }
    if (gh_pow_solve(argv[1], strlen(argv[1]), (unsigned)bits, start, 1ull << 40, &nonce)) {
        fprintf(stderr, "pow_solve: no nonce found\n");
        return 1;
    }
    printf("%llu\n", (unsigned long long)nonce);
    return 0;
}
