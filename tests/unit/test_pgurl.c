/* Unit tests of PostgreSQL connection strings (store/pgurl.h) and of the
 * [store] keys of the configuration: every place a password can sit is
 * hidden, malformed strings are refused, and the configuration dump never
 * shows the URL's password. */
#include "test_util.h"

#include "core/config.h"
#include "core/pgurl.h"

static void redacts(const char *in, const char *want)
{
    char out[512];
    assert_int_equal(gh_pgurl_redact(in, out, sizeof out), 0);
    assert_string_equal(out, want);
    /* redaction is idempotent: a redacted string stays as it is */
    char again[512];
    assert_int_equal(gh_pgurl_redact(out, again, sizeof again), 0);
    assert_string_equal(again, want);
}

static void test_urls(void **state)
{
    (void)state;
    redacts("postgresql://gh:s3cret@db.example:5432/gatehouse",
            "postgresql://gh:***@db.example:5432/gatehouse");
    redacts("postgres://gh@127.0.0.1/gh", "postgres://gh@127.0.0.1/gh");
    redacts(
        "postgresql://gh:p%40ss@h1:5432,h2:5433/gh?sslmode=require&password=x&connect_timeout=3",
        "postgresql://gh:***@h1:5432,h2:5433/gh?sslmode=require&password=***&connect_timeout=3");
    redacts("postgresql:///gatehouse?host=/run/postgresql",
            "postgresql:///gatehouse?host=/run/postgresql");
    /* an '@' after the path is not userinfo */
    redacts("postgresql://h/db?application_name=a:b@c", "postgresql://h/db?application_name=a:b@c");
    redacts("POSTGRESQL://u:p@h/d", "POSTGRESQL://u:***@h/d");
    assert_false(gh_pgurl_has_password("postgresql://gh@h/db"));
    assert_true(gh_pgurl_has_password("postgresql://gh:x@h/db"));
    assert_true(gh_pgurl_has_password("postgresql://gh@h/db?password=x"));
}

static void test_conninfo(void **state)
{
    (void)state;
    redacts("host=127.0.0.1 port=5432 dbname=gh user=gh password=s3cret",
            "host=127.0.0.1 port=5432 dbname=gh user=gh password=***");
    redacts("host = db  password = 'it\\'s a secret' dbname=gh", "host=db  password=*** dbname=gh");
    redacts("password=a\\ b user=x", "password=*** user=x");
    redacts("", "");
    assert_true(gh_pgurl_has_password("user=x PASSWORD=y"));
    assert_false(gh_pgurl_has_password("user=x"));
}

static void test_refusals(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(gh_pgurl_redact("mysql://u:p@h/d", out, sizeof out), GH_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(gh_pgurl_redact("host=x password='open", out, sizeof out), GH_EINVAL);
    assert_int_equal(gh_pgurl_redact("gatehouse", out, sizeof out), GH_EINVAL);
    assert_int_equal(gh_pgurl_redact("=x", out, sizeof out), GH_EINVAL);
    char small[8];
    assert_int_equal(gh_pgurl_redact("postgresql://u:p@host/db", small, sizeof small), GH_ETOOBIG);
    assert_string_equal(small, "");
}

static void test_config_store(void **state)
{
    (void)state;
    struct gh_config *c = gh_config_new();
    struct gh_buf err, dump;
    gh_buf_init(&err, 4096);
    gh_buf_init(&dump, 1u << 20);
    assert_string_equal(c->store.backend, "sqlite");
    assert_int_equal(gh_config_validate(c, &err), 0);

    assert_int_equal(gh_config_set_assignment(c, "store.backend=postgres", "flag --set", &err), 0);
    assert_int_equal(gh_config_validate(c, &err), GH_EINVAL);
    assert_non_null(strstr(err.data, "[store] url"));
    gh_buf_reset(&err);

    assert_int_equal(gh_config_set_assignment(c, "store.url=mysql://u:p@h/d", "flag --set", &err),
                     GH_EINVAL);
    assert_non_null(strstr(err.data, "neither a postgresql:// URL"));
    assert_null(strstr(err.data, "u:p"));
    gh_buf_reset(&err);

    assert_int_equal(
        gh_config_set_assignment(c, "store.url=postgresql://gh:hunter22@db/gh", "flag --set", &err),
        0);
    assert_int_equal(gh_config_validate(c, &err), 0);
    assert_int_equal(gh_config_dump(c, &dump), 0);
    assert_non_null(strstr(dump.data, "url = postgresql://gh:***@db/gh"));
    assert_null(strstr(dump.data, "hunter22"));

    assert_int_equal(gh_config_set_assignment(c, "store.backend=mongo", "flag --set", &err), 0);
    assert_int_equal(gh_config_validate(c, &err), GH_EINVAL);
    assert_non_null(strstr(err.data, "sqlite or postgres"));
    gh_buf_dispose(&err);
    gh_buf_dispose(&dump);
    gh_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_conninfo),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_config_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
