/* libFuzzer harness for the upstream SSE parser (gateway/sse.h) together
 * with the relay's re-framing (gateway/reframe.h). The first two bytes
 * seed the cut points, the rest is what an upstream sends. Invariants:
 * the events (and the final code) are the same whether the bytes come
 * whole or in arbitrary pieces; each event the relay accepts becomes
 * exactly one "data: " line of compact JSON (or [DONE]); the re-framed
 * stream, parsed again in pieces, gives back exactly those events;
 * re-framing is idempotent; and where jansson reads both, the compact
 * JSON is the same document, with "model" set and "system_fingerprint"
 * gone at the top level. */
#include "gateway/reframe.h"
#include "gateway/sse.h"

#include "invariant.h"

#include <jansson.h>
#include <string.h>

#define CAP        512
#define MAX_EVENTS 256

struct events {
    struct gh_buf all; /* each event's data after its 4-byte length */
    unsigned n;
    size_t cap;
};

static int collect(const char *data, size_t len, void *ud)
{
    struct events *e = ud;
    FUZZ_CHECK(len <= e->cap);
    if (e->n >= MAX_EVENTS)
        return GH_ETOOBIG; /* keeps a run short; the same for every feeding */
    e->n++;
    uint32_t l = (uint32_t)len;
    FUZZ_CHECK(!gh_buf_append(&e->all, &l, sizeof l) && !gh_buf_append(&e->all, data, len));
    return 0;
}

/* Feeds s to a parser capped at cap, in pieces of 1..16 bytes picked by
 * seed (0: whole). */
static int feed(const char *s, size_t n, size_t cap, uint32_t seed, struct events *e)
{
    struct gh_sse_parser p;
    gh_sse_init(&p, cap);
    gh_buf_init(&e->all, 16u << 20);
    e->n = 0;
    e->cap = cap;
    int rc = 0;
    if (!seed) {
        rc = gh_sse_feed(&p, s, n, collect, e);
    } else {
        for (size_t i = 0; i < n && !rc;) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            size_t k = GH_MIN(n - i, 1 + seed % 16);
            rc = gh_sse_feed(&p, s + i, k, collect, e);
            i += k;
        }
    }
    gh_sse_dispose(&p);
    return rc;
}

static void same_events(const struct events *a, const struct events *b)
{
    FUZZ_CHECK(a->n == b->n && a->all.len == b->all.len);
    FUZZ_CHECK(!a->all.len || !memcmp(a->all.data, b->all.data, a->all.len));
}

/* jansson's reading of the data, with the relay's rewrite applied. */
static json_t *expected_doc(const char *d, size_t n)
{
    json_t *j = json_loadb(d, n, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    if (json_object_get(j, "model"))
        json_object_set_new(j, "model", json_string("pub"));
    json_object_del(j, "system_fingerprint");
    return j;
}

/* Re-frames one event and checks its shape; appends it to framed. */
static void reframe_one(const char *d, size_t n, struct gh_buf *framed)
{
    size_t mark = framed->len;
    bool error;
    int rc = gh_reframe_event(d, n, "pub", framed, &error);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc) {
        FUZZ_CHECK(framed->len == mark);
        return;
    }
    const char *o = framed->data + mark;
    size_t on = framed->len - mark;
    FUZZ_CHECK(on >= 8 && !memcmp(o, "data: ", 6) && !memcmp(o + on - 2, "\n\n", 2));
    FUZZ_CHECK(!memchr(o, '\n', on - 2) && !memchr(o, '\r', on));
    if (n == 6 && !memcmp(d, "[DONE]", 6))
        return;
    /* idempotent: the compact form re-frames to itself */
    struct gh_buf again;
    gh_buf_init(&again, 1u << 20);
    FUZZ_CHECK(!gh_reframe_json(o + 6, on - 8, "pub", &again));
    FUZZ_CHECK(again.len == on - 8 && !memcmp(again.data, o + 6, on - 8));
    gh_buf_dispose(&again);
    /* a public name far longer than the upstream's grows a fresh buffer
     * while the object is written: the bytes already out must survive */
    static const char long_name[] = "a-public-model-name-much-longer-than-any-upstream-one-"
                                    "so-that-the-output-grows-while-it-is-written";
    struct gh_buf grown;
    gh_buf_init(&grown, 1u << 20);
    FUZZ_CHECK(!gh_reframe_json(d, n, long_name, &grown));
    FUZZ_CHECK(grown.data[0] == '{' && grown.data[grown.len - 1] == '}');
    FUZZ_CHECK(grown.len >= on - 8); /* "pub" is the shorter name */
    gh_buf_dispose(&grown);
    /* the same document as jansson reads it */
    json_t *want = expected_doc(d, n);
    if (want) {
        FUZZ_CHECK(error == (json_object_get(want, "error") != NULL));
        json_t *got = json_loadb(o + 6, on - 8, 0, NULL);
        FUZZ_CHECK(json_equal(got, want));
        json_decref(got);
        json_decref(want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1] | 1u;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;

    struct events whole, pieces;
    int rc_whole = feed(s, n, CAP, 0, &whole);
    int rc_pieces = feed(s, n, CAP, seed, &pieces);
    FUZZ_CHECK(rc_whole == rc_pieces);
    same_events(&whole, &pieces);

    /* every event through the relay's re-framing, then read back (the
     * public name may make an event longer: the reader's cap is larger) */
    struct gh_buf framed;
    gh_buf_init(&framed, 8u << 20);
    struct events accepted = {.n = 0, .cap = 4 * CAP};
    gh_buf_init(&accepted.all, 16u << 20);
    size_t at = 0;
    for (unsigned i = 0; i < whole.n; i++) {
        uint32_t dl;
        memcpy(&dl, whole.all.data + at, sizeof dl);
        const char *d = whole.all.data + at + sizeof dl;
        at += sizeof dl + dl;
        size_t before = framed.len;
        reframe_one(d, dl, &framed);
        if (framed.len != before)
            collect(framed.data + before + 6, framed.len - before - 8, &accepted);
    }
    struct events back;
    FUZZ_CHECK(!feed(framed.data ? framed.data : "", framed.len, 4 * CAP, seed, &back));
    same_events(&back, &accepted);

    gh_buf_dispose(&framed);
    gh_buf_dispose(&accepted.all);
    gh_buf_dispose(&back.all);
    gh_buf_dispose(&whole.all);
    gh_buf_dispose(&pieces.all);
    return 0;
}
