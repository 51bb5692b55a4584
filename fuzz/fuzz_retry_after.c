/* libFuzzer harness for an upstream's Retry-After value
 * (gh_upstream_retry_after in gateway/upstream.h): the first 4 bytes are
 * the current time, the rest the header value. Invariants: the delay is
 * never above GH_RETRY_AFTER_MAX_S and is 0 on a refusal; spaces and a
 * CRLF around the value change nothing; delay-seconds give min(value,
 * max) (checked against a second reading of the digits); an accepted date
 * formats back (strftime of gmtime) to the very text given. */
#include "gateway/upstream.h"

#include "invariant.h"

#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > 256)
        return 0;
    uint32_t now;
    memcpy(&now, data, 4);
    const char *v = (const char *)data + 4;
    size_t n = size - 4;

    uint64_t ms;
    int rc = gh_upstream_retry_after(v, n, now, &ms);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    FUZZ_CHECK(ms <= GH_RETRY_AFTER_MAX_S * 1000ull && ms % 1000 == 0);
    FUZZ_CHECK(!rc || !ms);

    char padded[300];
    memcpy(padded, " \t", 2);
    memcpy(padded + 2, v, n);
    memcpy(padded + 2 + n, " \r\n", 3);
    uint64_t ms2;
    FUZZ_CHECK(gh_upstream_retry_after(padded, n + 5, now, &ms2) == rc && ms2 == ms);
    if (rc)
        return 0;

    /* the value without the spaces around it */
    size_t a = 0, b = n;
    while (a < b && (v[a] == ' ' || v[a] == '\t'))
        a++;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == '\r' || v[b - 1] == '\n'))
        b--;
    FUZZ_CHECK(b > a);
    if (v[a] >= '0' && v[a] <= '9') {
        size_t sig = a;
        while (sig + 1 < b && v[sig] == '0')
            sig++;
        uint64_t secs = 0;
        bool big = b - sig > 6; /* 7+ significant digits exceed the cap */
        for (size_t i = sig; i < b; i++) {
            FUZZ_CHECK(v[i] >= '0' && v[i] <= '9');
            if (!big)
                secs = secs * 10 + (uint64_t)(v[i] - '0');
        }
        FUZZ_CHECK(ms == (big || secs > GH_RETRY_AFTER_MAX_S ? GH_RETRY_AFTER_MAX_S : secs) * 1000);
        return 0;
    }
    /* a date: when it lies ahead within the cap, it is now + delay */
    FUZZ_CHECK(b - a == 29);
    if (ms && ms < GH_RETRY_AFTER_MAX_S * 1000ull) {
        time_t t = (time_t)now + (time_t)(ms / 1000);
        struct tm tm;
        char back[40];
        FUZZ_CHECK(gmtime_r(&t, &tm));
        FUZZ_CHECK(strftime(back, sizeof back, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 29);
        FUZZ_CHECK(!memcmp(back, v + a, 29));
    }
    return 0;
}
