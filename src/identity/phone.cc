// This module implements phone.h: the one C++ adapter over libphonenumber.
// Input is checked byte by byte before the library sees it, and no C++
// exception crosses into C.
// libphonenumber (which pulls in <atomic>) before our C headers: clang's
// <stdatomic.h> in C++ mode defines macros that break a later <atomic>.
#include <phonenumbers/phonenumberutil.h>

#include "identity/phone.h"

#include <cstdio>
#include <cstring>
#include <string>

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

extern "C" void gh_phone_init(void)
{
    (void)PhoneNumberUtil::GetInstance();
}

extern "C" const char *gh_phone_type_name(enum gh_phone_type t)
{
    static const char *const names[] = {"fixed_line", "mobile",  "fixed_line_or_mobile",
                                        "toll_free",  "premium_rate", "shared_cost",
                                        "voip",       "personal_number", "pager",
                                        "uan",        "voicemail", "unknown"};
    unsigned i = (unsigned)t;
    return i < sizeof names / sizeof names[0] ? names[i] : "unknown";
}

extern "C" unsigned gh_phone_region_calling_code(const char *region)
{
    try {
        return (unsigned)PhoneNumberUtil::GetInstance()->GetCountryCodeForRegion(region);
    } catch (...) {
        return 0;
    }
}

static const char *refusal(enum gh_phone_type t, bool allow_voip)
{
    switch (t) {
    case GH_PHONE_FIXED_LINE:
    case GH_PHONE_MOBILE:
    case GH_PHONE_FIXED_LINE_OR_MOBILE:
    case GH_PHONE_PERSONAL_NUMBER:
        return nullptr;
    case GH_PHONE_VOIP:
        return allow_voip ? nullptr : "phone: VoIP numbers are not accepted; use a mobile number";
    case GH_PHONE_TOLL_FREE:
        return "phone: toll-free numbers are not accepted; use a mobile number";
    case GH_PHONE_PREMIUM_RATE:
        return "phone: premium-rate numbers are not accepted; use a mobile number";
    case GH_PHONE_SHARED_COST:
        return "phone: shared-cost numbers are not accepted; use a mobile number";
    case GH_PHONE_PAGER:
        return "phone: pager numbers are not accepted; use a mobile number";
    case GH_PHONE_UAN:
        return "phone: universal access numbers are not accepted; use a mobile number";
    case GH_PHONE_VOICEMAIL:
        return "phone: voicemail numbers are not accepted; use a mobile number";
    default:
        return "phone: this number cannot receive SMS; use a mobile number";
    }
}

extern "C" int gh_phone_parse(const char *in, size_t len, bool allow_voip, struct gh_phone *out,
                              const char **why)
{
    *why = nullptr;
    if (!in || len == 0) {
        *why = "phone: required";
        return GH_EINVAL;
    }
    if (len > GH_PHONE_INPUT_MAX) {
        *why = "phone: too long (at most 64 characters)";
        return GH_EINVAL;
    }
    char clean[GH_PHONE_INPUT_MAX + 1];
    size_t n = 0, digits = 0;
    bool plus = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x80) {
            *why = "phone: use ASCII digits 0-9 only";
            return GH_EINVAL;
        }
        if (c >= '0' && c <= '9') {
            clean[n++] = (char)c;
            digits++;
        } else if (c == '+' && n == 0 && !plus) {
            clean[n++] = '+';
            plus = true;
        } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') {
            /* separators are dropped */
        } else {
            *why = "phone: only digits, '+', spaces and dashes are allowed";
            return GH_EINVAL;
        }
    }
    clean[n] = 0;
    if (!plus) {
        *why = "phone: use the international format with '+' and the country code, e.g. "
               "+86 138 0013 8000";
        return GH_EINVAL;
    }
    if (digits < 4 || digits > 15) {
        *why = "phone: not a valid phone number (wrong number of digits)";
        return GH_EINVAL;
    }
    try {
        const PhoneNumberUtil *u = PhoneNumberUtil::GetInstance();
        PhoneNumber num;
        if (u->Parse(std::string(clean, n), "ZZ", &num) != PhoneNumberUtil::NO_PARSING_ERROR) {
            *why = "phone: not a valid phone number";
            return GH_EINVAL;
        }
        if (!u->IsValidNumber(num)) {
            *why = "phone: not a valid phone number for its country";
            return GH_EINVAL;
        }
        enum gh_phone_type t = (enum gh_phone_type)u->GetNumberType(num);
        const char *r = refusal(t, allow_voip);
        if (r) {
            *why = r;
            return GH_EINVAL;
        }
        std::string e164, region;
        u->Format(num, PhoneNumberUtil::E164, &e164);
        u->GetRegionCodeForNumber(num, &region);
        if (e164.size() >= sizeof out->e164 || e164.size() < 6) {
            *why = "phone: not a valid phone number";
            return GH_EINVAL;
        }
        std::memset(out, 0, sizeof *out);
        std::memcpy(out->e164, e164.data(), e164.size());
        if (region.size() < sizeof out->region && region != "ZZ" && region != "001")
            std::memcpy(out->region, region.data(), region.size());
        out->calling_code = (unsigned)num.country_code();
        out->type = t;
        std::memcpy(out->prefix, e164.data(), e164.size() - 4);
        return 0;
    } catch (...) {
        *why = "phone: not a valid phone number";
        return GH_EINVAL;
    }
}
