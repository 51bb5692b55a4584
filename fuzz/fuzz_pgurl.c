/* libFuzzer harness for PostgreSQL connection strings (store/pgurl.h):
 * the input is a URL or conninfo. Invariants: the result is 0, GH_EINVAL
 * or GH_ETOOBIG, with "" on failure; the output is NUL-terminated inside
 * its buffer; redaction is idempotent (a redacted string redacts to
 * itself); a string that carries a password comes out with "***". */
#include "core/pgurl.h"

#include "invariant.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2048)
        return 0;
    char in[2049];
    memcpy(in, data, size);
    in[size] = 0;

    char out[4200], again[4200];
    memset(out, 'x', sizeof out);
    int rc = gh_pgurl_redact(in, out, sizeof out);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ETOOBIG);
    FUZZ_CHECK(memchr(out, 0, sizeof out) != NULL);
    if (rc) {
        FUZZ_CHECK(out[0] == 0);
        return 0;
    }
    FUZZ_CHECK(gh_pgurl_redact(out, again, sizeof again) == 0);
    FUZZ_CHECK(strcmp(out, again) == 0);
    if (gh_pgurl_has_password(in))
        FUZZ_CHECK(strstr(out, "***") != NULL);

    /* a buffer that is too small never overflows and says so */
    char small[16];
    rc = gh_pgurl_redact(in, small, sizeof small);
    FUZZ_CHECK(rc == 0 || rc == GH_ETOOBIG);
    FUZZ_CHECK(rc || strlen(small) < sizeof small);
    return 0;
}
