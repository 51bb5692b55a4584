/* Helpers shared by the unit tests: a scratch directory removed at the
 * end, files written into it, and a string-prefix assertion. Test code
 * only; every function is static so each test program gets its own copy. */
#pragma once

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "http/http.h"

/* Makes a fresh directory under $TMPDIR (or /tmp) into out. */
static inline void tu_mkdtemp(char *out, size_t outlen)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(out, outlen, "%s/gh-test-XXXXXX", base && *base ? base : "/tmp");
    assert_true(n > 0 && (size_t)n < outlen);
    assert_non_null(mkdtemp(out));
}

/* Removes every file of dir (one level: the tests make no subfolders)
 * and dir itself. */
static inline void tu_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Writes content into dir/name and puts the path into out. */
static inline void tu_write_file(const char *dir, const char *name, const char *content, char *out,
                                 size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < outlen);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    size_t len = strlen(content);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Fails unless s starts with prefix; prints both when it does not. */
#define tu_assert_prefix(s, prefix)                                                                \
    do {                                                                                           \
        const char *s_ = (s), *p_ = (prefix);                                                      \
        if (!s_ || strncmp(s_, p_, strlen(p_))) {                                                  \
            print_error("expected prefix \"%s\"\n     got \"%s\"\n", p_, s_ ? s_ : "(null)");     \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* Fails unless needle occurs in s. */
#define tu_assert_contains(s, needle)                                                              \
    do {                                                                                           \
        const char *s_ = (s), *n_ = (needle);                                                      \
        if (!s_ || !strstr(s_, n_)) {                                                              \
            print_error("expected to find \"%s\"\n     in \"%s\"\n", n_, s_ ? s_ : "(null)");      \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* An IPv4 or IPv6 address from its text; fails the test when it is
 * neither. */
static inline struct gh_addr tu_addr(const char *s)
{
    struct gh_addr a = {0};
    if (inet_pton(AF_INET, s, a.bytes) == 1) {
        a.family = AF_INET;
    } else {
        a.family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, s, a.bytes), 1);
    }
    return a;
}
