/* libFuzzer harness for the messages between cluster nodes (store.h,
 * gh_store_msg): the input is a NOTIFY payload as another node (or anyone
 * who can NOTIFY on the database) may send it. Invariants: decoding gives
 * 0 or GH_EINVAL; what decodes encodes back to the same text (one spelling
 * per message), a setting name that decodes is a valid name, and a user
 * message never names account 0. */
#include "store/store.h"

#include "invariant.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512)
        return 0;
    struct gh_store_msg m;
    int rc = gh_store_msg_decode((const char *)data, size, &m);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc)
        return 0;
    char out[GH_STORE_MSG_MAX];
    int n = gh_store_msg_encode(&m, out, sizeof out);
    FUZZ_CHECK(n > 0 && (size_t)n == size);
    FUZZ_CHECK(memcmp(out, data, size) == 0);
    if (m.kind == GH_STORE_MSG_SETTING)
        FUZZ_CHECK(gh_store_setting_name_ok(m.name));
    if (m.kind == GH_STORE_MSG_USER)
        FUZZ_CHECK(m.user_id != 0);
    return 0;
}
