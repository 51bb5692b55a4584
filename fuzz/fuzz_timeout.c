/* libFuzzer harness for a client's deadline hint (gh_fairq_parse_timeout
 * in gateway/fairq.h, X-Request-Timeout / X-Stainless-Timeout).
 * Invariants: 0 or GH_EINVAL; a refusal leaves 0, an acceptance a
 * positive delay; an accepted text holds only digits and at most one
 * point, and a second reading (whole seconds and the first three digits
 * of the fraction, by strtoull) gives the same milliseconds. */
#include "gateway/fairq.h"

#include "invariant.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64)
        return 0;
    const char *v = (const char *)data;
    uint64_t ms = 1;
    int rc = gh_fairq_parse_timeout(v, size, &ms);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    FUZZ_CHECK(rc ? ms == 0 : ms > 0);
    if (rc)
        return 0;
    FUZZ_CHECK(size <= 16);
    char text[17], whole[17] = "0", frac[4] = "000";
    memcpy(text, v, size);
    text[size] = 0;
    const char *dot = memchr(text, '.', size);
    size_t nw = dot ? (size_t)(dot - text) : size;
    FUZZ_CHECK(nw <= 9);
    if (nw) {
        memcpy(whole, text, nw);
        whole[nw] = 0;
    }
    for (size_t i = 0; dot && i < 3 && dot[1 + i]; i++)
        frac[i] = dot[1 + i];
    FUZZ_CHECK(!dot || !memchr(dot + 1, '.', size - nw - 1));
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK((text[i] >= '0' && text[i] <= '9') || text + i == dot);
    FUZZ_CHECK(ms == strtoull(whole, NULL, 10) * 1000 + strtoull(frac, NULL, 10));
    return 0;
}
