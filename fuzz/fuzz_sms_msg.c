/* libFuzzer harness for the SMS outbox's messages (smssend.h,
 * gh_smssend_msg): the input is a row's opened bytes as the store gives
 * them back (written by any node of the cluster). Invariants: decoding
 * gives 0 or GH_EINVAL; what decodes encodes back to the same bytes (one
 * spelling per message), with a number, a purpose, a 6-digit code and a
 * text that are NUL-terminated within their fields. */
#include "identity/smssend.h"

#include "invariant.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2048)
        return 0;
    struct gh_smssend_msg m;
    int rc = gh_smssend_msg_decode((const char *)data, size, &m);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc)
        return 0;
    FUZZ_CHECK(m.to[0] == '+' && strlen(m.code) == 6);
    FUZZ_CHECK(strnlen(m.text, sizeof m.text) < sizeof m.text);
    char out[GH_SMSSEND_MSG_MAX];
    int n = gh_smssend_msg_encode(&m, out, sizeof out);
    FUZZ_CHECK(n > 0 && (size_t)n == size);
    FUZZ_CHECK(memcmp(out, data, size) == 0);
    return 0;
}
