/* libFuzzer harness for Accept-Language (http/pages.h,
 * gh_pages_lang_from_accept): the answer for any bytes equals that of a
 * reference written here from RFC 9110's grammar in another style (split
 * first, validate each piece after), and is always 0 or 1. Also checked:
 * the header cut at any comma answers as the reference does for the cut,
 * and appending an element of q=0 or a malformed one changes nothing. */
#include "http/pages.h"

#include "invariant.h"

#include <string.h>
#include <strings.h>

struct span {
    const char *p;
    size_t n;
};

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct span trim(struct span s)
{
    while (s.n && ows(s.p[0]))
        s.p++, s.n--;
    while (s.n && ows(s.p[s.n - 1]))
        s.n--;
    return s;
}

static bool alpha(char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "*" or 1*8ALPHA *("-" 1*8alphanum) */
static bool range_ok(struct span r)
{
    if (r.n == 1 && r.p[0] == '*')
        return true;
    size_t start = 0;
    for (size_t i = 0; i <= r.n; i++) {
        if (i < r.n && r.p[i] != '-') {
            if (!(alpha(r.p[i]) || (start > 0 && digit(r.p[i]))))
                return false;
            continue;
        }
        if (i - start < 1 || i - start > 8)
            return false;
        start = i + 1;
    }
    return true;
}

/* qvalue in thousandths, or -1 */
static int qvalue(struct span v)
{
    if (v.n < 1 || v.n > 5 || (v.p[0] != '0' && v.p[0] != '1') || (v.n > 1 && v.p[1] != '.'))
        return -1;
    char frac[4] = "000";
    for (size_t i = 2; i < v.n; i++) {
        if (!digit(v.p[i]) || (v.p[0] == '1' && v.p[i] != '0'))
            return -1;
        frac[i - 2] = v.p[i];
    }
    return v.p[0] == '1' ? 1000 : (frac[0] - '0') * 100 + (frac[1] - '0') * 10 + (frac[2] - '0');
}

/* language of one element (1 zh, 0 en, -1 none) and its q */
static int element(struct span e, int *q)
{
    const char *semi = memchr(e.p, ';', e.n);
    struct span range = trim((struct span){e.p, semi ? (size_t)(semi - e.p) : e.n});
    *q = 1000;
    if (semi) {
        struct span param = trim((struct span){semi + 1, e.n - (size_t)(semi + 1 - e.p)});
        if (param.n < 2 || (param.p[0] | 0x20) != 'q' || param.p[1] != '=')
            return -1;
        *q = qvalue((struct span){param.p + 2, param.n - 2});
        if (*q < 0)
            return -1;
    }
    if (!range_ok(range) || range.n < 2 || (range.n > 2 && range.p[2] != '-'))
        return -1;
    if (!strncasecmp(range.p, "zh", 2))
        return 1;
    return !strncasecmp(range.p, "en", 2) ? 0 : -1;
}

static int reference(const char *h, size_t len)
{
    int best = 0, best_q = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && h[i] != ',')
            continue;
        struct span e = trim((struct span){h + start, i - start});
        start = i + 1;
        int q, lang = e.n ? element(e, &q) : -1;
        if (lang >= 0 && q > best_q) {
            best = lang;
            best_q = q;
        }
    }
    return best;
}

static void check(const char *h, size_t len)
{
    int got = gh_pages_lang_from_accept(h, len);
    FUZZ_CHECK(got == 0 || got == 1);
    if (got != reference(h, len))
        fprintf(stderr, "Accept-Language '%.*s': %d, the reference says %d\n", (int)len, h, got,
                reference(h, len));
    FUZZ_CHECK(got == reference(h, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    const char *h = (const char *)data;
    check(h, size);
    FUZZ_CHECK(gh_pages_lang_from_accept(NULL, size) == 0);
    for (size_t i = 0; i < size; i++)
        if (h[i] == ',')
            check(h, i);
    /* elements that cannot win change nothing */
    static char more[8192 + 64];
    static const char *const tails[] = {", zh;q=0", ",en;q=0.000", ", zh;q=2", ",zh-",
                                        ", zh;q=0.5;q=1", ",*", ", zh-CN-x-123456789"};
    int base = gh_pages_lang_from_accept(h, size);
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        memcpy(more, h, size);
        size_t tl = strlen(tails[t]);
        memcpy(more + size, tails[t], tl);
        FUZZ_CHECK(gh_pages_lang_from_accept(more, size + tl) == base);
    }
    return 0;
}
