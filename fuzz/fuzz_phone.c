/* libFuzzer harness for phone input (identity/phone.h): any bytes go to
 * gh_phone_parse. Refusals carry a user sentence; an accepted number has
 * an E.164 form of '+' and 5..15 digits whose prefix, calling code and
 * region agree with it, and normalisation is idempotent: the E.164 output
 * parses again to the same number, region, calling code and type. */
#include "identity/phone.h"

#include "invariant.h"

#include <string.h>

static bool personal(enum gh_phone_type t, bool allow_voip)
{
    return t == GH_PHONE_FIXED_LINE || t == GH_PHONE_MOBILE ||
           t == GH_PHONE_FIXED_LINE_OR_MOBILE || t == GH_PHONE_PERSONAL_NUMBER ||
           (allow_voip && t == GH_PHONE_VOIP);
}

/* The accepted input was only ASCII digits, separators and one '+' first
 * among the non-separators, within the length cap. */
static void check_input_shape(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(size > 0 && size <= GH_PHONE_INPUT_MAX);
    bool seen_digit = false;
    unsigned plus = 0;
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        if (c >= '0' && c <= '9') {
            seen_digit = true;
        } else if (c == '+') {
            FUZZ_CHECK(!seen_digit && plus == 0);
            plus++;
        } else {
            FUZZ_CHECK(c == ' ' || c == '-' || c == '.' || c == '(' || c == ')');
        }
    }
    FUZZ_CHECK(plus == 1);
}

static void check_number(const struct gh_phone *p, bool allow_voip)
{
    size_t n = strnlen(p->e164, sizeof p->e164);
    FUZZ_CHECK(n < sizeof p->e164);
    FUZZ_CHECK(n >= 6 && n <= 16); /* '+' and at most 15 digits (E.164) */
    FUZZ_CHECK(p->e164[0] == '+' && p->e164[1] != '0');
    for (size_t i = 1; i < n; i++)
        FUZZ_CHECK(p->e164[i] >= '0' && p->e164[i] <= '9');
    /* the prefix is the number without its last 4 digits */
    FUZZ_CHECK(strlen(p->prefix) == n - 4 && !memcmp(p->prefix, p->e164, n - 4));
    /* the calling code is the number's leading digits */
    char cc[8];
    int ccl = snprintf(cc, sizeof cc, "%u", p->calling_code);
    FUZZ_CHECK(p->calling_code >= 1 && p->calling_code <= 999);
    FUZZ_CHECK(ccl > 0 && (size_t)ccl < n - 1 && !memcmp(p->e164 + 1, cc, (size_t)ccl));
    size_t rl = strnlen(p->region, sizeof p->region);
    FUZZ_CHECK(rl == 0 || rl == 2);
    if (rl == 2) {
        FUZZ_CHECK(p->region[0] >= 'A' && p->region[0] <= 'Z');
        FUZZ_CHECK(p->region[1] >= 'A' && p->region[1] <= 'Z');
        FUZZ_CHECK(gh_phone_region_calling_code(p->region) == p->calling_code);
    }
    FUZZ_CHECK(personal(p->type, allow_voip));
    FUZZ_CHECK(strcmp(gh_phone_type_name(p->type), "unknown") != 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    gh_phone_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256)
        return 0;
    /* the first byte picks allow_voip; the rest is the input as sent */
    bool allow_voip = size > 0 && (data[0] & 1);
    const char *in = size > 0 ? (const char *)data + 1 : "";
    size_t len = size > 0 ? size - 1 : 0;

    struct gh_phone p;
    const char *why = NULL;
    int rc = gh_phone_parse(in, len, allow_voip, &p, &why);
    if (rc) {
        FUZZ_CHECK(rc == GH_EINVAL);
        FUZZ_CHECK(why && !strncmp(why, "phone: ", 7) && strlen(why) > 7);
        return 0;
    }
    FUZZ_CHECK(why == NULL);
    check_input_shape((const uint8_t *)in, len);
    check_number(&p, allow_voip);

    /* idempotent: the E.164 form is accepted and normalises to itself */
    struct gh_phone again;
    const char *why2 = NULL;
    rc = gh_phone_parse(p.e164, strlen(p.e164), allow_voip, &again, &why2);
    if (rc)
        fprintf(stderr, "E.164 output %s refused: %s\n", p.e164, why2);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(!strcmp(again.e164, p.e164));
    FUZZ_CHECK(!strcmp(again.region, p.region));
    FUZZ_CHECK(!strcmp(again.prefix, p.prefix));
    FUZZ_CHECK(again.calling_code == p.calling_code);
    FUZZ_CHECK(again.type == p.type);

    /* a VoIP number passes only where VoIP is allowed */
    if (p.type == GH_PHONE_VOIP) {
        FUZZ_CHECK(allow_voip);
        FUZZ_CHECK(gh_phone_parse(in, len, false, &again, &why2) == GH_EINVAL);
    } else if (allow_voip) {
        FUZZ_CHECK(gh_phone_parse(in, len, false, &again, &why2) == 0);
        FUZZ_CHECK(!strcmp(again.e164, p.e164));
    }
    return 0;
}
