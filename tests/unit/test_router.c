/* Unit tests of the router (http/router.h): literal and {param} routes,
 * percent-decoding, trailing slashes, 404 against 405 with Allow, HEAD,
 * %00, a full table. */
#include "test_util.h"

#include "http/router.h"

#include <http_parser.h>

static void h_a(struct gh_http_req *req) { (void)req; }
static void h_b(struct gh_http_req *req) { (void)req; }

struct match {
    enum gh_match m;
    const struct gh_route *rt;
    const char *params[GH_ROUTE_MAX_PARAMS];
    unsigned nparams;
    char allow[128];
};

static struct gh_arena arena;

static int setup(void **state)
{
    gh_arena_init(&arena, 1 << 16);
    struct gh_router *r = malloc(sizeof *r);
    assert_non_null(r);
    gh_router_init(r);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    gh_arena_dispose(&arena);
    return 0;
}

static struct match match(const struct gh_router *r, int method, const char *path)
{
    struct match m;
    memset(&m, 0, sizeof m);
    m.nparams = 99;
    m.m = gh_router_match(r, method, path, &arena, &m.rt, m.params, &m.nparams, m.allow,
                          sizeof m.allow);
    return m;
}

static void literal_routes(void **state)
{
    struct gh_router *r = *state;
    int ctx_a = 1, ctx_b = 2;
    struct gh_route *ra = gh_router_add(r, "GET", "/api/health", h_a, &ctx_a);
    struct gh_route *rb = gh_router_add(r, "POST", "/api/login", h_b, &ctx_b);
    struct gh_route *root = gh_router_add(r, "GET", "/", h_a, NULL);
    assert_non_null(ra);
    assert_non_null(rb);
    assert_non_null(root);
    assert_int_equal(ra->index, 0);
    assert_int_equal(rb->index, 1);
    assert_int_equal(ra->cls, GH_CLASS_ANON);

    struct match m = match(r, HTTP_GET, "/api/health");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, ra);
    assert_ptr_equal(m.rt->ctx, &ctx_a);
    assert_ptr_equal(m.rt->handler, h_a);
    assert_int_equal(m.nparams, 0);

    m = match(r, HTTP_POST, "/api/login");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, rb);

    m = match(r, HTTP_GET, "/");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, root);

    assert_int_equal(match(r, HTTP_GET, "/api").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/healthz").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/health/x").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/API/health").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/heal").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "//api/health").m, GH_MATCH_NOT_FOUND);
}

static void param_routes(void **state)
{
    struct gh_router *r = *state;
    struct gh_route *one = gh_router_add(r, "GET", "/api/keys/{id}", h_a, NULL);
    struct gh_route *two = gh_router_add(r, "DELETE", "/api/users/{user}/keys/{key}", h_b, NULL);
    assert_non_null(one);
    assert_non_null(two);

    struct match m = match(r, HTTP_GET, "/api/keys/abc123");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, one);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.params[0], "abc123");

    m = match(r, HTTP_DELETE, "/api/users/u1/keys/k%2C2");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, two);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(m.params[0], "u1");
    assert_string_equal(m.params[1], "k,2"); /* decoded after splitting */
    /* a decoded '/' would be a segment only the handler sees: no match */
    assert_int_equal(match(r, HTTP_DELETE, "/api/users/u1/keys/k%2F2").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_DELETE, "/api/users/u1/keys/k%2f2").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/..%2F..%2Fetc").m, GH_MATCH_NOT_FOUND);

    m = match(r, HTTP_GET, "/api/keys/a%20b%41%7e");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_string_equal(m.params[0], "a bA~");
    m = match(r, HTTP_GET, "/api/keys/%e2%82%ac");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_string_equal(m.params[0], "\xe2\x82\xac");
    /* malformed escapes stay as they are */
    m = match(r, HTTP_GET, "/api/keys/100%");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_string_equal(m.params[0], "100%");
    m = match(r, HTTP_GET, "/api/keys/%zz%4");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_string_equal(m.params[0], "%zz%4");

    /* an empty parameter does not match */
    assert_int_equal(match(r, HTTP_GET, "/api/keys/").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/keys").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_DELETE, "/api/users//keys/k").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/a/b").m, GH_MATCH_NOT_FOUND);
}

static void trailing_slash_is_different(void **state)
{
    struct gh_router *r = *state;
    struct gh_route *plain = gh_router_add(r, "GET", "/docs", h_a, NULL);
    assert_non_null(plain);
    assert_int_equal(match(r, HTTP_GET, "/docs").m, GH_MATCH_OK);
    assert_int_equal(match(r, HTTP_GET, "/docs/").m, GH_MATCH_NOT_FOUND);
    struct gh_route *slash = gh_router_add(r, "GET", "/docs/", h_b, NULL);
    assert_non_null(slash);
    struct match m = match(r, HTTP_GET, "/docs/");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, slash);
    m = match(r, HTTP_GET, "/docs");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, plain);

    gh_router_add(r, "GET", "/api/keys/{id}", h_a, NULL);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/x/").m, GH_MATCH_NOT_FOUND);
}

static void not_found_vs_bad_method(void **state)
{
    struct gh_router *r = *state;
    assert_non_null(gh_router_add(r, "GET", "/api/keys/{id}", h_a, NULL));
    assert_non_null(gh_router_add(r, "DELETE", "/api/keys/{id}", h_b, NULL));
    assert_non_null(gh_router_add(r, "POST", "/api/login", h_b, NULL));

    struct match m = match(r, HTTP_PUT, "/api/keys/7");
    assert_int_equal(m.m, GH_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "GET, HEAD, DELETE"); /* GET implies HEAD */

    m = match(r, HTTP_GET, "/api/login");
    assert_int_equal(m.m, GH_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "POST");

    m = match(r, HTTP_GET, "/api/nothing");
    assert_int_equal(m.m, GH_MATCH_NOT_FOUND);
    assert_string_equal(m.allow, "");

    /* a method registered twice on the path is listed once */
    assert_non_null(gh_router_add(r, "POST", "/api/login", h_a, NULL));
    m = match(r, HTTP_PUT, "/api/login");
    assert_int_equal(m.m, GH_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "POST");

    /* a small allow buffer is never overrun and stays terminated */
    char small[8];
    memset(small, 'x', sizeof small);
    const struct gh_route *rt = NULL;
    const char *params[GH_ROUTE_MAX_PARAMS];
    unsigned np = 0;
    enum gh_match mm = gh_router_match(r, HTTP_PUT, "/api/keys/7", &arena, &rt, params, &np,
                                       small, sizeof small);
    assert_int_equal(mm, GH_MATCH_BAD_METHOD);
    assert_non_null(memchr(small, '\0', sizeof small));
}

static void head_matches_get(void **state)
{
    struct gh_router *r = *state;
    struct gh_route *get = gh_router_add(r, "GET", "/status", h_a, NULL);
    struct match m = match(r, HTTP_HEAD, "/status");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_ptr_equal(m.rt, get);
    /* but not the other way round, nor POST for HEAD */
    struct gh_route *head_only = gh_router_add(r, "HEAD", "/probe", h_b, NULL);
    assert_non_null(head_only);
    m = match(r, HTTP_GET, "/probe");
    assert_int_equal(m.m, GH_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "HEAD");
    gh_router_add(r, "POST", "/submit", h_b, NULL);
    m = match(r, HTTP_HEAD, "/submit");
    assert_int_equal(m.m, GH_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "POST");
}

static void nul_in_param_refused(void **state)
{
    struct gh_router *r = *state;
    gh_router_add(r, "GET", "/api/keys/{id}", h_a, NULL);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/%00").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/ab%00cd").m, GH_MATCH_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/keys/ab%00").m, GH_MATCH_NOT_FOUND);
    /* other control escapes are a handler's business, %01 passes */
    struct match m = match(r, HTTP_GET, "/api/keys/a%01");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_string_equal(m.params[0], "a\x01");
}

/* gh_router_decode on its own: escapes, malformed escapes, refusals. */
static void decode_segment(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        int rc;
    } cases[] = {
        {"abc", "abc", 0},
        {"%41%62c", "Abc", 0},
        {"%e2%82%AC", "\xe2\x82\xac", 0},
        {"100%", "100%", 0},
        {"%4", "%4", 0},
        {"%zz", "%zz", 0},
        {"%%41", "%A", 0},
        {"%2541", "%41", 0}, /* decoded once, not twice */
        {"pages%2Findex.html", NULL, GH_EINVAL},
        {"%2f", NULL, GH_EINVAL},
        {"a%00", NULL, GH_EINVAL},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        char out[64];
        size_t n = 99;
        int rc = gh_router_decode(cases[i].in, strlen(cases[i].in), out, &n);
        assert_int_equal(rc, cases[i].rc);
        if (!rc) {
            assert_string_equal(out, cases[i].out);
            assert_int_equal(n, strlen(cases[i].out));
        }
    }
}

static void bad_patterns_and_methods(void **state)
{
    struct gh_router *r = *state;
    assert_null(gh_router_add(r, "FETCH", "/x", h_a, NULL)); /* unknown method */
    assert_null(gh_router_add(r, "get", "/x", h_a, NULL));   /* method names are exact */
    assert_null(gh_router_add(r, "GET", "x", h_a, NULL));    /* not absolute */
    assert_null(gh_router_add(r, "GET", "", h_a, NULL));
    assert_null(gh_router_add(r, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", h_a, NULL));
    assert_int_equal(r->n, 0);
    assert_non_null(gh_router_add(r, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", h_a, NULL));
    assert_int_equal(match(r, HTTP_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p").m, GH_MATCH_OK);
}

static void table_full(void **state)
{
    struct gh_router *r = *state;
    static char patterns[GH_ROUTER_MAX + 1][32];
    for (int i = 0; i < GH_ROUTER_MAX; i++) {
        snprintf(patterns[i], sizeof patterns[i], "/r/%d", i);
        struct gh_route *rt = gh_router_add(r, "GET", patterns[i], h_a, NULL);
        assert_non_null(rt);
        assert_int_equal(rt->index, (unsigned)i);
    }
    snprintf(patterns[GH_ROUTER_MAX], sizeof patterns[0], "/r/%d", GH_ROUTER_MAX);
    assert_null(gh_router_add(r, "GET", patterns[GH_ROUTER_MAX], h_a, NULL));
    assert_int_equal(r->n, GH_ROUTER_MAX);
    /* the table still works: first and last route match, the refused one does not */
    struct match m = match(r, HTTP_GET, "/r/0");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_int_equal(m.rt->index, 0);
    m = match(r, HTTP_GET, "/r/127");
    assert_int_equal(m.m, GH_MATCH_OK);
    assert_int_equal(m.rt->index, GH_ROUTER_MAX - 1);
    assert_int_equal(match(r, HTTP_GET, "/r/128").m, GH_MATCH_NOT_FOUND);
}

static void first_registered_wins(void **state)
{
    struct gh_router *r = *state;
    struct gh_route *lit = gh_router_add(r, "GET", "/api/keys/new", h_a, NULL);
    struct gh_route *par = gh_router_add(r, "GET", "/api/keys/{id}", h_b, NULL);
    struct match m = match(r, HTTP_GET, "/api/keys/new");
    assert_ptr_equal(m.rt, lit);
    assert_int_equal(m.nparams, 0);
    m = match(r, HTTP_GET, "/api/keys/old");
    assert_ptr_equal(m.rt, par);
    assert_string_equal(m.params[0], "old");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(literal_routes),          T(param_routes),     T(trailing_slash_is_different),
        T(not_found_vs_bad_method), T(head_matches_get), T(nul_in_param_refused),
        T(bad_patterns_and_methods), T(table_full),      T(first_registered_wins),
        cmocka_unit_test(decode_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
