/* libFuzzer harness for If-None-Match (http/http.h, gh_http_etag_matches).
 * The first input byte sets the length of our ETag, taken from the next
 * bytes (up to a NUL); the rest is the header's value. The answer equals
 * that of a reference written here from RFC 9110 (13.1.2, 8.8.3) in
 * another style: the value is "*", or a list of entity-tags
 * (["W/"] DQUOTE *etagc DQUOTE, where etagc may be a comma) with empty
 * elements allowed; anything else is not a valid header and never
 * matches (a full answer is always safe); a valid list matches when one of
 * its tags, weak or strong, is ours byte for byte. */
#include "http/http.h"

#include "invariant.h"

#include <string.h>

static bool etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/* true and *match when h is a valid header; false when it is not */
static bool reference(const char *h, size_t n, const char *etag, bool *match)
{
    *match = false;
    size_t a = 0, b = n;
    while (a < b && (h[a] == ' ' || h[a] == '\t'))
        a++;
    while (b > a && (h[b - 1] == ' ' || h[b - 1] == '\t'))
        b--;
    if (b - a == 1 && h[a] == '*') {
        *match = true;
        return true;
    }
    /* states: between elements, or just after a tag (a comma must come) */
    bool after_tag = false, any = false;
    for (size_t i = a; i < b; i++) {
        char c = h[i];
        if (c == ' ' || c == '\t')
            continue;
        if (c == ',') {
            after_tag = false;
            continue;
        }
        if (after_tag)
            return false;
        size_t t = i;
        if (c == 'W' && i + 1 < b && h[i + 1] == '/')
            t = i + 2;
        if (t >= b || h[t] != '"')
            return false;
        const char *close = memchr(h + t + 1, '"', b - t - 1);
        if (!close)
            return false;
        for (const char *p = h + t + 1; p < close; p++)
            if (!etagc((unsigned char)*p))
                return false;
        size_t tl = (size_t)(close - (h + t)) + 1;
        if (tl == strlen(etag) && !memcmp(h + t, etag, tl))
            *match = true;
        any = true;
        after_tag = true;
        i = (size_t)(close - h);
    }
    if (!any)
        *match = false;
    return any;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    char etag[64];
    size_t el = 0, want = data[0] % 40, i = 1;
    while (i < size && el < want && data[i])
        etag[el++] = (char)data[i++];
    etag[el] = '\0';
    if (el == 0) /* ours are never empty */
        memcpy(etag, "\"0123456789abcdef\"", el = 18), etag[el] = '\0';

    struct gh_http_header hd[2] = {
        {.name = "If-None-Match", .value = (const char *)data + i, .name_len = 13,
         .value_len = size - i},
        {.name = "if-none-match", .value = "*", .name_len = 13, .value_len = 1},
    };
    struct gh_http_req req;
    memset(&req, 0, sizeof req);
    req.headers = hd;
    req.nheaders = 1;
    bool got = gh_http_etag_matches(&req, etag);
    bool match;
    bool valid = reference(hd[0].value, hd[0].value_len, etag, &match);
    if (got != (valid && match))
        fprintf(stderr, "If-None-Match '%.*s', ETag %s: %d, the reference says %d\n",
                (int)hd[0].value_len, hd[0].value, etag, got, valid && match);
    FUZZ_CHECK(got == (valid && match));

    /* only the first If-None-Match counts (the parser keeps the first) */
    req.nheaders = 2;
    FUZZ_CHECK(gh_http_etag_matches(&req, etag) == got);
    /* no header: no match */
    req.nheaders = 0;
    FUZZ_CHECK(!gh_http_etag_matches(&req, etag));
    return 0;
}
