/* libFuzzer harness for configuration loading (core/config.h): the input
 * is written to a temporary INI file and loaded over fresh defaults, then
 * validated and dumped; its first line is also tried as a --set
 * assignment and as an environment value, and the value parsers get it
 * directly. Error messages must be non-empty when a load fails. */
#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "invariant.h"

static char tmp_path[256];

static void remove_tmp(void)
{
    if (tmp_path[0])
        unlink(tmp_path);
}

static const char *temp_file(void)
{
    if (!tmp_path[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_path, sizeof tmp_path, "%s/gh-fuzz-config-XXXXXX",
                 base && *base ? base : "/tmp");
        int fd = mkstemp(tmp_path);
        FUZZ_CHECK(fd >= 0);
        close(fd);
        atexit(remove_tmp);
    }
    return tmp_path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *path = temp_file();
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);

    struct gh_buf err;
    gh_buf_init(&err, 4096);
    struct gh_config *c = gh_config_new();
    FUZZ_CHECK(c);
    int rc = gh_config_load_file(c, path, &err);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_EIO);
    if (rc) {
        FUZZ_CHECK(err.len > 0);
    } else {
        gh_buf_reset(&err);
        rc = gh_config_validate(c, &err);
        FUZZ_CHECK(rc == 0 || (rc == GH_EINVAL && err.len > 0));
        struct gh_buf out;
        gh_buf_init(&out, 1 << 20);
        FUZZ_CHECK(gh_config_dump(c, &out) == 0);
        gh_buf_dispose(&out);
    }

    /* the first line as a --set assignment and as an environment value */
    char line[512];
    size_t n = 0;
    while (n < size && n < sizeof line - 1 && data[n] != '\n' && data[n] != '\0') {
        line[n] = (char)data[n];
        n++;
    }
    line[n] = '\0';
    gh_buf_reset(&err);
    rc = gh_config_set_assignment(c, line, "fuzz", &err);
    FUZZ_CHECK(rc == 0 || err.len > 0);
    char envline[600];
    snprintf(envline, sizeof envline, "GATEHOUSE_LIMITS__HEADER_MAX=%s", line);
    char envline2[600];
    snprintf(envline2, sizeof envline2, "GATEHOUSE_%s", line);
    char *envp[] = {envline, envline2, NULL};
    gh_buf_reset(&err);
    rc = gh_config_apply_env(c, envp, &err);
    FUZZ_CHECK(rc == 0 || err.len > 0);

    /* the shared value parsers */
    size_t sz;
    uint64_t u;
    bool b;
    struct sockaddr_storage ss;
    if (gh_parse_size(line, &sz) == 0)
        FUZZ_CHECK(line[0] >= '0' && line[0] <= '9');
    if (gh_parse_duration_ms(line, &u) == 0)
        FUZZ_CHECK(line[0] >= '0' && line[0] <= '9');
    if (gh_parse_uint(line, 65535, &u) == 0)
        FUZZ_CHECK(u <= 65535);
    if (gh_parse_uint(line, 5, &u) == 0)
        FUZZ_CHECK(u <= 5);
    (void)gh_parse_bool(line, &b);
    if (gh_parse_hostport(line, &ss) == 0)
        FUZZ_CHECK(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);

    gh_config_unref(c);
    gh_buf_dispose(&err);
    return 0;
}
