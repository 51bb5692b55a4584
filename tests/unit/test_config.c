/* Unit tests of configuration loading (core/config.h): defaults, every
 * error path of the INI loader with its "FILE:LINE: [section] key: reason"
 * message, overrides, environment, cross-key checks and the value
 * parsers. INI files are written into a scratch directory. */
#include "test_util.h"

#include "core/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct fx {
    char dir[256];
    struct gh_config *c;
    struct gh_buf err;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_mkdtemp(f->dir, sizeof f->dir);
    f->c = gh_config_new();
    assert_non_null(f->c);
    gh_buf_init(&f->err, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    gh_config_unref(f->c);
    gh_buf_dispose(&f->err);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static const char *errmsg(struct fx *f)
{
    return f->err.data ? f->err.data : "";
}

/* Writes content to a file named name and loads it; returns the code and
 * leaves the path in path. */
static int load(struct fx *f, const char *name, const char *content, char *path, size_t pathlen)
{
    tu_write_file(f->dir, name, content, path, pathlen);
    return gh_config_load_file(f->c, path, &f->err);
}

/* Loads content and expects GH_EINVAL with exactly "PATH:LINE: rest". */
static void expect_file_error(struct fx *f, const char *content, int line, const char *rest)
{
    char path[512], want[1024];
    gh_buf_reset(&f->err);
    int rc = load(f, "bad.ini", content, path, sizeof path);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, rest);
    if (rc != GH_EINVAL || strcmp(errmsg(f), want)) {
        print_error("rc %d\n   want \"%s\"\n    got \"%s\"\n", rc, want, errmsg(f));
        fail();
    }
}

static void defaults(void **state)
{
    struct fx *f = *state;
    struct gh_config *c = f->c;
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_null(c->path);
    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    assert_string_equal(c->server.admin_listen, "127.0.0.1:9091");
    assert_string_equal(c->server.data_dir, "./var");
    assert_int_equal(c->server.workers, 0);
    assert_int_equal(c->server.shutdown_timeout_ms, 10000);
    assert_true(c->server.reuseport);
    assert_int_equal(c->limits.header_max, 16384);
    assert_int_equal(c->limits.header_count_max, 100);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    assert_int_equal(c->limits.idle_timeout_ms, 60000);
    assert_int_equal(c->limits.body_max, 65536);
    assert_int_equal(c->limits.body_min_rate, 1024);
    assert_int_equal(c->limits.body_rate_grace_ms, 5000);
    assert_int_equal(c->limits.requests_per_conn, 1000);
    assert_int_equal(c->limits.max_conns, 100000);
    assert_int_equal(c->limits.max_conns_per_addr, 256);
    assert_int_equal(c->limits.max_pending_headers, 4096);
    assert_int_equal(c->limits.pipeline_max, 65536);
    assert_string_equal(c->log.access_log, "access.log");
    assert_string_equal(c->log.error_log, "-");
    assert_int_equal(c->log.level, GH_LOG_INFO);
    assert_int_equal(c->log.access_rate, 200);
    assert_int_equal(c->log.access_sample, 100);
    assert_string_equal(c->secrets.hmac_key, "");
    assert_string_equal(c->secrets.enc_key, "");
    assert_string_equal(c->secrets.admin_token, "");
    assert_int_equal(gh_config_validate(c, &f->err), 0);

    /* ref/unref: the config survives until the last reference goes */
    assert_ptr_equal(gh_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    gh_config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    gh_config_unref(NULL); /* harmless */
}

static void load_good_file(void **state)
{
    struct fx *f = *state;
    char path[512];
    const char *ini = "; a comment\n"
                      "# another comment\n"
                      "\n"
                      "[server]\n"
                      "listen = [::1]:8443\n"
                      "admin_listen=127.0.0.1:9999\n"
                      "workers = 4 ; inline comment\n"
                      "shutdown_timeout = 1500ms\n"
                      "reuseport = off\n"
                      "\n"
                      "[limits]\n"
                      "header_max = 32k\n"
                      "body_max = 2m\n"
                      "idle_timeout = 2m\n"
                      "header_timeout = 1h\n"
                      "max_conns = 10\n"
                      "max_conns_per_addr = 10\n"
                      "max_pending_headers = 5\n"
                      "\n"
                      "[log]\n"
                      "level = WARN\n"
                      "\n"
                      "[secrets]\n"
                      "hmac_key = 00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n"
                      "admin_token = abcdefghijklmnopqrstuvwxyz0123456789\n";
    assert_int_equal(load(f, "good.ini", ini, path, sizeof path), 0);
    struct gh_config *c = f->c;
    assert_string_equal(c->path, path);
    assert_string_equal(c->server.listen, "[::1]:8443");
    assert_string_equal(c->server.admin_listen, "127.0.0.1:9999");
    assert_int_equal(c->server.workers, 4);
    assert_int_equal(c->server.shutdown_timeout_ms, 1500);
    assert_false(c->server.reuseport);
    assert_int_equal(c->limits.header_max, 32768);
    assert_int_equal(c->limits.body_max, 2 * 1024 * 1024);
    assert_int_equal(c->limits.idle_timeout_ms, 120000);
    assert_int_equal(c->limits.header_timeout_ms, 3600000);
    assert_int_equal(c->log.level, GH_LOG_WARN);
    assert_string_equal(c->secrets.hmac_key,
                        "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF");
    assert_string_equal(c->secrets.admin_token, "abcdefghijklmnopqrstuvwxyz0123456789");
    /* untouched keys keep their defaults */
    assert_string_equal(c->server.data_dir, "./var");
    assert_int_equal(c->limits.header_count_max, 100);
    assert_int_equal(gh_config_validate(c, &f->err), 0);

    /* the dump shows the values and masks secrets */
    struct gh_buf out;
    gh_buf_init(&out, 1 << 16);
    assert_int_equal(gh_config_dump(c, &out), 0);
    tu_assert_contains(out.data, "[server]\n");
    tu_assert_contains(out.data, "listen = [::1]:8443\n");
    tu_assert_contains(out.data, "header_max = 32k\n");
    tu_assert_contains(out.data, "idle_timeout = 2m\n");
    tu_assert_contains(out.data, "level = warn\n");
    tu_assert_contains(out.data, "hmac_key = (set)\n");
    assert_null(strstr(out.data, "abcdefghijklmnopqrstuvwxyz"));
    assert_null(strstr(out.data, "00112233445566778899"));
    gh_buf_dispose(&out);
}

static void error_unknown_section_and_key(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[server]\nworkers = 2\n[nosuch]\nkey = 1\n", 4,
                      "[nosuch] key: unknown section");
    expect_file_error(f, "[server]\nworkers = 2\nlisten_addr = 1.2.3.4:5\n", 3,
                      "[server] listen_addr: unknown key");
    expect_file_error(f, "workers = 2\n[server]\n", 1,
                      "[(none)] workers: key outside any section (start the file with e.g. "
                      "[server])");
    /* keys of another section do not leak across */
    expect_file_error(f, "[limits]\nlisten = 127.0.0.1:1\n", 2,
                      "[limits] listen: unknown key (listen is in [server])");
}

static void error_line_number(void **state)
{
    struct fx *f = *state;
    /* the offending key is on line 7, after comments and blank lines */
    expect_file_error(f,
                      "; gatehouse\n"
                      "# test file\n"
                      "\n"
                      "[server]\n"
                      "listen = 127.0.0.1:8080\n"
                      "\n"
                      "workers = lots\n"
                      "data_dir = ./x\n",
                      7, "[server] workers: 'lots' is not a whole number");
    /* the first error wins, a later one does not overwrite it */
    expect_file_error(f, "[server]\n\n\nworkers = x\nworkers = y\n[bogus]\na = b\n", 4,
                      "[server] workers: 'x' is not a whole number");
    /* CRLF line ends count the same */
    expect_file_error(f, "[log]\r\n; c\r\nlevel = loud\r\n", 3,
                      "[log] level: 'loud' is not a level (debug, info, warn, error)");
}

static void error_numbers(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[server]\nworkers = -1\n", 2,
                      "[server] workers: '-1' is not a whole number");
    expect_file_error(f, "[server]\nworkers = 1.5\n", 2,
                      "[server] workers: '1.5' is not a whole number");
    expect_file_error(f, "[server]\nworkers =\n", 2,
                      "[server] workers: '' is not a whole number");
    expect_file_error(f, "[server]\nworkers = 99999999999999999999999\n", 2,
                      "[server] workers: '99999999999999999999999' is not a whole number");
    /* out of range, both ends */
    expect_file_error(f, "[limits]\nheader_count_max = 7\n", 2,
                      "[limits] header_count_max: 7 is out of range (8 to 1000)");
    expect_file_error(f, "[limits]\nheader_count_max = 1001\n", 2,
                      "[limits] header_count_max: 1001 is out of range (8 to 1000)");
    expect_file_error(f, "[server]\nworkers = 257\n", 2,
                      "[server] workers: 257 is out of range (0 to 256)");
    expect_file_error(f, "[limits]\nheader_max = 1023\n", 2,
                      "[limits] header_max: 1023 is out of range (1024 to 1048576 bytes)");
    expect_file_error(f, "[limits]\nheader_max = 2m\n", 2,
                      "[limits] header_max: 2m is out of range (1024 to 1048576 bytes)");
    expect_file_error(f, "[limits]\nheader_timeout = 99ms\n", 2,
                      "[limits] header_timeout: 99ms is out of range (100 to 3600000 ms)");
    expect_file_error(f, "[limits]\nidle_timeout = 2h\n", 2,
                      "[limits] idle_timeout: 2h is out of range (100 to 3600000 ms)");
    /* the bounds themselves are accepted */
    char path[512];
    assert_int_equal(load(f, "ok.ini",
                          "[limits]\nheader_count_max = 8\nheader_max=1k\nheader_timeout=100ms\n"
                          "idle_timeout = 1h\n[server]\nworkers=256\n",
                          path, sizeof path),
                     0);
    assert_int_equal(f->c->limits.header_count_max, 8);
    assert_int_equal(f->c->limits.header_max, 1024);
    assert_int_equal(f->c->server.workers, 256);
}

static void error_sizes_durations_bools_levels(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[limits]\nbody_max = 16q\n", 2,
                      "[limits] body_max: '16q' is not a size (expected e.g. 512, 16k, 1m)");
    expect_file_error(f, "[limits]\nbody_max = k\n", 2,
                      "[limits] body_max: 'k' is not a size (expected e.g. 512, 16k, 1m)");
    expect_file_error(f, "[limits]\nheader_timeout = 10x\n", 2,
                      "[limits] header_timeout: '10x' is not a duration (expected e.g. 500ms, "
                      "10s, 5m, 2h)");
    expect_file_error(f, "[limits]\nheader_timeout = soon\n", 2,
                      "[limits] header_timeout: 'soon' is not a duration (expected e.g. 500ms, "
                      "10s, 5m, 2h)");
    expect_file_error(f, "[server]\nreuseport = maybe\n", 2,
                      "[server] reuseport: 'maybe' is not true or false");
    expect_file_error(f, "[log]\nlevel = verbose\n", 2,
                      "[log] level: 'verbose' is not a level (debug, info, warn, error)");
}

static void error_addresses_and_secrets(void **state)
{
    struct fx *f = *state;
    const char *addr_reason =
        "(expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080)";
    char want[256];
    snprintf(want, sizeof want, "[server] listen: invalid address 'nope' %s", addr_reason);
    expect_file_error(f, "[server]\nlisten = nope\n", 2, want);
    snprintf(want, sizeof want, "[server] listen: invalid address '127.0.0.1:65536' %s",
             addr_reason);
    expect_file_error(f, "[server]\nlisten = 127.0.0.1:65536\n", 2, want);
    snprintf(want, sizeof want, "[server] admin_listen: invalid address 'example.com:80' %s",
             addr_reason);
    expect_file_error(f, "[server]\nadmin_listen = example.com:80\n", 2, want);

    const char *hex_reason =
        "must be 64 hexadecimal characters (32 bytes), or empty to generate one";
    snprintf(want, sizeof want, "[secrets] hmac_key: %s", hex_reason);
    expect_file_error(f, "[secrets]\nhmac_key = 0011\n", 2, want); /* too short */
    expect_file_error(f,
                      "[secrets]\nhmac_key = "
                      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n",
                      2, want); /* too long */
    snprintf(want, sizeof want, "[secrets] enc_key: %s", hex_reason);
    expect_file_error(f,
                      "[secrets]\nenc_key = "
                      "g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
                      2, want); /* 64 chars, one not hex */

    expect_file_error(f, "[secrets]\nadmin_token = short\n", 2,
                      "[secrets] admin_token: must be 32 to 256 characters, or empty to "
                      "generate one");
    expect_file_error(f, "[secrets]\nadmin_token = abcdefghijklmnop qrstuvwxyz0123456789\n", 2,
                      "[secrets] admin_token: must be printable ASCII without spaces");
    /* an empty token or key means "generate one" */
    char path[512];
    assert_int_equal(
        load(f, "ok.ini", "[secrets]\nadmin_token =\nhmac_key=\n", path, sizeof path), 0);
    assert_string_equal(f->c->secrets.admin_token, "");
}

static void error_syntax(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[server]\nworkers = 2\n\nthis line is not ini\n", 4,
                      "syntax error: the '=' is missing (expected [section] or key = value)");
    expect_file_error(f, "; c\n[server\nworkers = 2\n", 2,
                      "syntax error (expected [section] or key = value)");
}

/* Mistakes an operator makes by hand (issue 13): each gets a message that
 * names it, where before the file loaded with a silent surprise or a
 * misleading "unknown key". */
static void error_repeated_key(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[limits]\nidle_timeout = 10m\nheader_max = 32k\nidle_timeout = 10s\n", 4,
                      "[limits] idle_timeout: set twice, on line 2 and on line 4 (keep one)");
    /* a section opened twice still holds one value per key */
    expect_file_error(f,
                      "[server]\nworkers = 2\n[limits]\nheader_max = 32k\n[server]\nworkers = 3\n",
                      6, "[server] workers: set twice, on line 2 and on line 6 (keep one)");
    /* continuation lines and the same key name in two sections are fine */
    char path[512];
    assert_int_equal(load(f, "ok.ini",
                          "[shield]\nrules = anon:addr:10/1s,\n    anon:prefix:20/1s\n"
                          "[limits]\nbody_max = 64k\n[gateway]\nbody_max = 1m\n",
                          path, sizeof path),
                     0);
    /* each load starts afresh: loading the same file again is no repeat */
    assert_int_equal(gh_config_load_file(f->c, path, &f->err), 0);
}

static void error_missing_equals(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[server]\nlisten 127.0.0.1:8181\n", 2,
                      "[server] listen: the '=' is missing (write listen = 127.0.0.1:8181)");
    expect_file_error(f, "[limits]\nheader_max = 32k\nidle_timeout: 30s\n", 3,
                      "[limits] idle_timeout: the '=' is missing (write idle_timeout = 30s)");
    expect_file_error(f, "\xef\xbb\xbf[server]\nworkers 2\r\n", 2,
                      "[server] workers: the '=' is missing (write workers = 2)");
    expect_file_error(f, "[server]\nlisten\n", 2,
                      "syntax error: the '=' is missing (expected [section] or key = value)");
    /* an '=' inside the value is not the separator: "rules anon:…:burst=2" */
    expect_file_error(f, "[shield]\nrules anon:addr:1/1s:burst=2\n", 2,
                      "[shield] rules: the '=' is missing (write rules = "
                      "anon:addr:1/1s:burst=2)");
    /* ':' after '=' is part of the value */
    char path[512];
    assert_int_equal(load(f, "ok.ini", "[server]\nlisten = 127.0.0.1:8181\n", path, sizeof path),
                     0);
}

static void error_suggests_nearest_name(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[limits]\nidle_timout = 30s\n", 2,
                      "[limits] idle_timout: unknown key (did you mean idle_timeout?)");
    expect_file_error(f, "[limits]\nIdleTimeout = 30s\n", 2,
                      "[limits] IdleTimeout: unknown key (did you mean idle_timeout?)");
    expect_file_error(f, "[limts]\nheader_max = 32k\n", 2,
                      "[limts] header_max: unknown section (did you mean [limits]?)");
    /* nothing near: no guess */
    expect_file_error(f, "[limits]\ncolour = blue\n", 2, "[limits] colour: unknown key");
    assert_int_equal(gh_config_set_assignment(f->c, "limits.hedaer_max=1k", "flag --set", &f->err),
                     GH_EINVAL);
    assert_string_equal(errmsg(f),
                        "flag --set: [limits] hedaer_max: unknown key (did you mean header_max?)");
}

static void error_duration_without_unit(void **state)
{
    struct fx *f = *state;
    expect_file_error(f, "[limits]\nidle_timeout = 30\n", 2,
                      "[limits] idle_timeout: '30' has no unit (write e.g. 30s or 30ms)");
    assert_int_equal(gh_config_set_assignment(f->c, "sms.cooldown=60", "flag --set", &f->err),
                     GH_EINVAL);
    assert_string_equal(errmsg(f),
                        "flag --set: [sms] cooldown: '60' has no unit (write e.g. 60s or 60ms)");
    /* zero is zero in any unit */
    char path[512];
    assert_int_equal(load(f, "ok.ini", "[server]\nhsts_max_age = 0\n", path, sizeof path), 0);
    assert_int_equal(f->c->server.hsts_max_age_ms, 0);
}

static void error_unreadable(void **state)
{
    struct fx *f = *state;
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.ini", f->dir);
    assert_int_equal(gh_config_load_file(f->c, path, &f->err), GH_EIO);
    tu_assert_prefix(errmsg(f), path);
    tu_assert_contains(errmsg(f), "cannot open");
    assert_null(f->c->path);
    /* a directory opens but cannot be read: still an I/O error, never an
     * empty configuration taken as valid */
    gh_buf_reset(&f->err);
    assert_int_equal(gh_config_load_file(f->c, f->dir, &f->err), GH_EIO);
    tu_assert_prefix(errmsg(f), f->dir);
    assert_null(f->c->path);
    /* err may be NULL */
    assert_int_equal(gh_config_load_file(f->c, path, NULL), GH_EIO);
}

static void validate_cross_keys(void **state)
{
    struct fx *f = *state;
    struct gh_config *c = f->c;
    assert_int_equal(gh_config_set(c, "server", "admin_listen", "127.0.0.1:8080", "test", 0,
                                   &f->err),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "configuration: [server] admin_listen: must differ from "
                                   "[server] listen (127.0.0.1:8080)");
    assert_int_equal(gh_config_set(c, "server", "admin_listen", "127.0.0.1:9091", "t", 0, NULL),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), 0);

    assert_int_equal(gh_config_set_assignment(c, "limits.max_conns=100", "t", &f->err), 0);
    assert_int_equal(gh_config_set_assignment(c, "limits.max_pending_headers=50", "t", &f->err),
                     0);
    assert_int_equal(gh_config_set_assignment(c, "limits.max_conns_per_addr=101", "t", &f->err),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "configuration: [limits] max_conns_per_addr: (101) cannot "
                                   "exceed [limits] max_conns (100)");
    assert_int_equal(gh_config_set_assignment(c, "limits.max_conns_per_addr=100", "t", &f->err),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), 0);
    assert_int_equal(gh_config_set_assignment(c, "limits.max_pending_headers=101", "t", &f->err),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "configuration: [limits] max_pending_headers: (101) cannot "
                                   "exceed [limits] max_conns (100)");

    /* with a file the message names the file */
    char path[512];
    assert_int_equal(load(f, "v.ini", "[limits]\nmax_pending_headers = 100\n", path, sizeof path),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), 0);
    assert_int_equal(load(f, "v.ini", "[server]\nlisten = 127.0.0.1:9091\n", path, sizeof path),
                     0);
    assert_int_equal(gh_config_validate(c, &f->err), GH_EINVAL);
    tu_assert_prefix(errmsg(f), path);
    tu_assert_contains(errmsg(f), ": [server] admin_listen: must differ");
}

static void overrides(void **state)
{
    struct fx *f = *state;
    struct gh_config *c = f->c;
    assert_int_equal(gh_config_set_assignment(c, "limits.header_max=32k", "flag --set", &f->err),
                     0);
    assert_int_equal(c->limits.header_max, 32768);
    assert_int_equal(gh_config_set_assignment(c, "server.data_dir=/tmp/a=b", "flag --set",
                                              &f->err),
                     0);
    assert_string_equal(c->server.data_dir, "/tmp/a=b"); /* first '=' splits */
    assert_int_equal(gh_config_set_assignment(c, "log.level=debug", "flag --set", &f->err), 0);
    assert_int_equal(c->log.level, GH_LOG_DEBUG);

    /* a bad value names the origin, with no line */
    assert_int_equal(gh_config_set_assignment(c, "limits.header_max=lots", "flag --set", &f->err),
                     GH_EINVAL);
    assert_string_equal(errmsg(f), "flag --set: [limits] header_max: 'lots' is not a size "
                                   "(expected e.g. 512, 16k, 1m)");
    assert_int_equal(c->limits.header_max, 32768); /* unchanged */
    assert_int_equal(gh_config_set_assignment(c, "limits.nope=1", "flag --set", &f->err),
                     GH_EINVAL);
    assert_string_equal(errmsg(f), "flag --set: [limits] nope: unknown key");
    assert_int_equal(gh_config_set_assignment(c, "nope.x=1", "flag --set", &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "flag --set: [nope] x: unknown section");

    /* malformed assignments */
    static const char *bad[] = {"limits",      "limits.header_max", "header_max=1",
                                ".header_max=1", "limits.=1",       "a=b.c",
                                "=", ""};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        char want[256];
        snprintf(want, sizeof want, "flag --set: '%s' is not section.key=value", bad[i]);
        gh_buf_reset(&f->err);
        assert_int_equal(gh_config_set_assignment(c, bad[i], "flag --set", &f->err), GH_EINVAL);
        assert_string_equal(errmsg(f), want);
    }
    /* over-long section or key names are refused, not truncated */
    char longsec[200];
    memset(longsec, 's', 100);
    snprintf(longsec + 100, sizeof longsec - 100, ".key=1");
    assert_int_equal(gh_config_set_assignment(c, longsec, "flag --set", &f->err), GH_EINVAL);
    /* an empty value is a value: here an empty string is out of bounds */
    assert_int_equal(gh_config_set_assignment(c, "server.data_dir=", "flag --set", &f->err),
                     GH_EINVAL);
    assert_string_equal(errmsg(f), "flag --set: [server] data_dir: must be 1 to 4096 characters");
}

static void environment(void **state)
{
    struct fx *f = *state;
    struct gh_config *c = f->c;
    char *env[] = {
        "PATH=/usr/bin",
        "GATEHOUSE_LISTEN=127.0.0.1:7000",
        "GATEHOUSE_ADMIN_LISTEN=[::1]:7001",
        "GATEHOUSE_DATA=/srv/gh",
        "GATEHOUSE_WORKERS=3",
        "GATEHOUSE_LIMITS__HEADER_MAX=48k",
        "GATEHOUSE_log__LEVEL=error",
        "GATEHOUSE_UNRELATED=1", /* no "__": not a config key, ignored */
        "GATEHOUSE_NOEQUALS",
        "XGATEHOUSE_WORKERS=9",
        NULL,
    };
    assert_int_equal(gh_config_apply_env(c, env, &f->err), 0);
    assert_string_equal(c->server.listen, "127.0.0.1:7000");
    assert_string_equal(c->server.admin_listen, "[::1]:7001");
    assert_string_equal(c->server.data_dir, "/srv/gh");
    assert_int_equal(c->server.workers, 3);
    assert_int_equal(c->limits.header_max, 48 * 1024);
    assert_int_equal(c->log.level, GH_LOG_ERROR);
    assert_int_equal(gh_config_apply_env(c, NULL, &f->err), 0);

    char *bad1[] = {"GATEHOUSE_WORKERS=lots", NULL};
    assert_int_equal(gh_config_apply_env(c, bad1, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "environment GATEHOUSE_WORKERS: [server] workers: 'lots' is "
                                   "not a whole number");
    assert_int_equal(c->server.workers, 3);
    char *bad2[] = {"GATEHOUSE_LIMITS__HEADER_MAX=1", NULL};
    assert_int_equal(gh_config_apply_env(c, bad2, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "environment GATEHOUSE_LIMITS__HEADER_MAX: [limits] "
                                   "header_max: 1 is out of range (1024 to 1048576 bytes)");
    char *bad3[] = {"GATEHOUSE_LIMITS__NOPE=1", NULL};
    assert_int_equal(gh_config_apply_env(c, bad3, &f->err), GH_EINVAL);
    assert_string_equal(errmsg(f), "environment GATEHOUSE_LIMITS__NOPE: [limits] nope: unknown "
                                   "key");
    char *bad4[] = {"GATEHOUSE_ADMIN_TOKEN=has space has space has space has space", NULL};
    assert_int_equal(gh_config_apply_env(c, bad4, &f->err), GH_EINVAL);
    tu_assert_prefix(errmsg(f), "environment GATEHOUSE_ADMIN_TOKEN: [secrets] admin_token: ");
}

static void parse_size(void **state)
{
    size_t v = 7;
    assert_int_equal(gh_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(gh_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(gh_parse_size("512b", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(gh_parse_size("16k", &v), 0);
    assert_int_equal(v, 16384);
    assert_int_equal(gh_parse_size("16KiB", &v), 0);
    assert_int_equal(v, 16384);
    assert_int_equal(gh_parse_size("1m", &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(gh_parse_size("2MB", &v), 0);
    assert_int_equal(v, 2097152);
    assert_int_equal(gh_parse_size("1g", &v), 0);
    assert_int_equal(v, 1073741824);
    v = 7;
    static const char *bad[] = {"",     "k",    "-1",  "+1",  "1.5k", "16 k", " 16k", "16kk",
                                "16t",  "0x10", "1e3", "16k ",
                                /* overflow: too many digits, or the product too big */
                                "99999999999999999999999999999999999999", "18446744073709551616",
                                "17179869184g"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        if (gh_parse_size(bad[i], &v) != GH_EINVAL) {
            print_error("gh_parse_size(\"%s\") accepted\n", bad[i]);
            fail();
        }
        assert_int_equal(v, 7); /* untouched on failure */
    }
    /* the largest count that cannot overflow with any unit */
    assert_int_equal(gh_parse_size("17179869183g", &v), 0);
    assert_true(v == (size_t)17179869183ull * 1073741824ull);
}

static void parse_duration(void **state)
{
    uint64_t v = 7;
    assert_int_equal(gh_parse_duration_ms("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(gh_parse_duration_ms("10s", &v), 0);
    assert_int_equal(v, 10000);
    /* a bare number could mean seconds or milliseconds: only 0 may omit the unit */
    assert_int_equal(gh_parse_duration_ms("0", &v), 0);
    assert_int_equal(v, 0);
    v = 7;
    assert_int_equal(gh_parse_duration_ms("10", &v), GH_EINVAL);
    assert_int_equal(v, 7);
    assert_true(gh_duration_lacks_unit("10"));
    assert_false(gh_duration_lacks_unit("0"));
    assert_false(gh_duration_lacks_unit("10s"));
    assert_false(gh_duration_lacks_unit("ten"));
    assert_false(gh_duration_lacks_unit(""));
    assert_int_equal(gh_parse_duration_ms("5m", &v), 0);
    assert_int_equal(v, 300000);
    assert_int_equal(gh_parse_duration_ms("2h", &v), 0);
    assert_int_equal(v, 7200000);
    assert_int_equal(gh_parse_duration_ms("1d", &v), 0);
    assert_int_equal(v, 86400000);
    assert_int_equal(gh_parse_duration_ms("0ms", &v), 0);
    assert_int_equal(v, 0);
    v = 7;
    static const char *bad[] = {"",     "ms",   "s",    "-1s", "1.5s", "10 s", "10S",
                                "10sec", "1w",  "10ms ", "99999999999999999999999999999999s",
                                "17179869184d"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        if (gh_parse_duration_ms(bad[i], &v) != GH_EINVAL) {
            print_error("gh_parse_duration_ms(\"%s\") accepted\n", bad[i]);
            fail();
        }
        assert_int_equal(v, 7);
    }
    /* the largest accepted count times the largest unit does not wrap */
    assert_int_equal(gh_parse_duration_ms("17179869183d", &v), 0);
    assert_true(v == 17179869183ull * 86400000ull);
}

static void parse_uint(void **state)
{
    uint64_t v = 7;
    assert_int_equal(gh_parse_uint("0", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(gh_parse_uint("4294967295", UINT32_MAX, &v), 0);
    assert_int_equal(v, 4294967295u);
    assert_int_equal(gh_parse_uint("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(gh_parse_uint("007", 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(gh_parse_uint("5", 5, &v), 0);
    assert_int_equal(v, 5);
    v = 1234;
    assert_int_equal(gh_parse_uint("4294967296", UINT32_MAX, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("18446744073709551616", UINT64_MAX, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("184467440737095516150", UINT64_MAX, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("11", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("6", 5, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("9", 5, &v), GH_EINVAL); /* digit above a small max */
    assert_int_equal(gh_parse_uint("1", 0, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint(NULL, 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("-1", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("+1", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint(" 1", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("1 ", 10, &v), GH_EINVAL);
    assert_int_equal(gh_parse_uint("0x1", 10, &v), GH_EINVAL);
    assert_int_equal(v, 1234);
}

static void parse_bool(void **state)
{
    static const char *yes[] = {"true", "TRUE", "True", "yes", "on", "ON", "1"};
    static const char *no[] = {"false", "FALSE", "no", "off", "Off", "0"};
    static const char *bad[] = {"", "2", "truee", "y", "n", " true", "enabled", "01"};
    bool b;
    for (size_t i = 0; i < GH_ARRAY_LEN(yes); i++) {
        b = false;
        assert_int_equal(gh_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < GH_ARRAY_LEN(no); i++) {
        b = true;
        assert_int_equal(gh_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        b = true;
        if (gh_parse_bool(bad[i], &b) != GH_EINVAL) {
            print_error("gh_parse_bool(\"%s\") accepted\n", bad[i]);
            fail();
        }
        assert_true(b);
    }
}

static void parse_hostport(void **state)
{
    struct sockaddr_storage ss;
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ss;

    assert_int_equal(gh_parse_hostport("127.0.0.1:8080", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(v4->sin_port), 8080);
    assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(gh_parse_hostport("[::1]:8080", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(v6->sin6_port), 8080);
    assert_true(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));

    assert_int_equal(gh_parse_hostport("[2001:db8::7]:443", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(v6->sin6_addr.s6_addr[0], 0x20);
    assert_int_equal(v6->sin6_addr.s6_addr[15], 0x07);

    assert_int_equal(gh_parse_hostport("localhost:80", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(gh_parse_hostport(":9000", &ss), 0); /* any address */
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(v4->sin_addr.s_addr, 0);
    assert_int_equal(ntohs(v4->sin_port), 9000);

    assert_int_equal(gh_parse_hostport("0.0.0.0:65535", &ss), 0);
    assert_int_equal(ntohs(v4->sin_port), 65535);

    static const char *bad[] = {
        "127.0.0.1:65536", "127.0.0.1:99999999999999999999", "127.0.0.1:", "127.0.0.1",
        "127.0.0.1:-1",    "127.0.0.1:+80",  "127.0.0.1:80x",  "[::1]",  "[::1]8080",
        "[::1:8080",       "::1]:8080",      "[::1]:",         "[::1]:65536", "",
        "256.0.0.1:80",    "example.com:80", "1.2.3:80",       "[fe80::1%eth0]:80",
        "[127.0.0.1.1]:80",
        "a-very-long-host-name-that-does-not-fit-in-the-sixty-four-byte-host-buffer:80",
        "[1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee]:80",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        if (gh_parse_hostport(bad[i], &ss) != GH_EINVAL) {
            print_error("gh_parse_hostport(\"%s\") accepted\n", bad[i]);
            fail();
        }
    }
}

/* Long lists continue on indented lines; an over-long line is an error,
 * not a silent split; the dump wraps and loads back to the same values. */
static void continuation_and_long_lines(void **state)
{
    struct fx *f = *state;
    char path[512];
    assert_int_equal(load(f, "cont.ini",
                          "[shield]\nrules = anon:addr:100/1s,\n    login:addr:5/1m\n"
                          "; a comment does not continue\nenabled = true\n",
                          path, sizeof path),
                     0);
    assert_string_equal(f->c->shield.rules, "anon:addr:100/1s, login:addr:5/1m");
    /* a number cannot continue */
    expect_file_error(f, "[server]\nworkers = 2\n    3\n", 3,
                      "[server] workers: only list and text values may continue on indented "
                      "lines");
    char big[400];
    snprintf(big, sizeof big, "[server]\ndata_dir = %0300d\n", 0);
    expect_file_error(f, big, 2,
                      "line longer than 198 characters (continue a long value on indented "
                      "lines)");
    /* the dump of any configuration loads back to the same dump */
    struct gh_buf out, again;
    gh_buf_init(&out, 1 << 16);
    gh_buf_init(&again, 1 << 16);
    assert_int_equal(gh_config_dump(f->c, &out), 0);
    assert_int_equal(load(f, "dump.ini", out.data, path, sizeof path), 0);
    assert_int_equal(gh_config_dump(f->c, &again), 0);
    assert_string_equal(out.data, again.data);
    gh_buf_dispose(&out);
    gh_buf_dispose(&again);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(defaults),
        T(load_good_file),
        T(error_unknown_section_and_key),
        T(error_line_number),
        T(error_numbers),
        T(error_sizes_durations_bools_levels),
        T(error_addresses_and_secrets),
        T(error_syntax),
        T(error_unreadable),
        T(validate_cross_keys),
        T(overrides),
        T(environment),
        T(continuation_and_long_lines),
        T(error_repeated_key),
        T(error_missing_equals),
        T(error_suggests_nearest_name),
        T(error_duration_without_unit),
        cmocka_unit_test(parse_size),
        cmocka_unit_test(parse_duration),
        cmocka_unit_test(parse_uint),
        cmocka_unit_test(parse_bool),
        cmocka_unit_test(parse_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
