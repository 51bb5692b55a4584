/* Phone numbers: parsing and classification through libphonenumber (the
 * one C++ adapter, phone.cc), with a C interface. Any thread may call
 * these after gh_phone_init; nothing is allocated for the caller. */
#pragma once

#include "core/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GH_PHONE_INPUT_MAX 64 /* longer input is refused before parsing */
#define GH_PHONE_E164_MAX  24

/* libphonenumber's number types, in its order. */
enum gh_phone_type {
    GH_PHONE_FIXED_LINE,
    GH_PHONE_MOBILE,
    GH_PHONE_FIXED_LINE_OR_MOBILE,
    GH_PHONE_TOLL_FREE,
    GH_PHONE_PREMIUM_RATE,
    GH_PHONE_SHARED_COST,
    GH_PHONE_VOIP,
    GH_PHONE_PERSONAL_NUMBER,
    GH_PHONE_PAGER,
    GH_PHONE_UAN,
    GH_PHONE_VOICEMAIL,
    GH_PHONE_UNKNOWN,
};

struct gh_phone {
    char e164[GH_PHONE_E164_MAX];   /* "+8613800138000" */
    char region[4];                 /* "CN"; "" when the library has none */
    unsigned calling_code;          /* 86 */
    enum gh_phone_type type;
    char prefix[GH_PHONE_E164_MAX]; /* e164 without its last 4 digits */
};

/* Loads the library's metadata (slow once). Main thread, at start. */
void gh_phone_init(void);

/* Parses in (len bytes, not necessarily NUL-terminated): E.164 or an
 * international number with spaces, dashes, dots or parentheses. Refuses
 * input longer than GH_PHONE_INPUT_MAX, non-ASCII characters (including
 * other scripts' digits), numbers without a leading '+', invalid numbers
 * and the types that are not personal lines (premium rate, shared cost,
 * toll free, UAN, voicemail, pager, unknown; VoIP unless allow_voip).
 * 0 and *out filled, or GH_EINVAL with *why set to a static sentence for
 * the user ("… is a premium-rate number"). */
int gh_phone_parse(const char *in, size_t len, bool allow_voip, struct gh_phone *out,
                   const char **why);

/* The calling code of an ISO region ("CN" → 86), 0 when unknown. */
unsigned gh_phone_region_calling_code(const char *region);

/* "mobile", "premium_rate", … */
const char *gh_phone_type_name(enum gh_phone_type t);

#ifdef __cplusplus
}
#endif
