/* This module implements the data directory and secret generation of
 * secrets.h. Files holding secrets are created with O_EXCL and mode 0600 so
 * that no window exists in which another user could read them. */
#include "core/secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gh_datadir_prepare(const char *dir, struct gh_buf *err)
{
    char path[4096];
    if (strlen(dir) >= sizeof path) {
        gh_buf_printf(err, "data directory path too long");
        return GH_EIO;
    }
    snprintf(path, sizeof path, "%s", dir);
    /* mkdir -p, each new level 0700 */
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) && errno != EEXIST) {
            gh_buf_printf(err, "cannot create %s: %s", path, strerror(errno));
            return GH_EIO;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) && errno != EEXIST) {
        gh_buf_printf(err, "cannot create data directory %s: %s", path, strerror(errno));
        return GH_EIO;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        gh_buf_printf(err, "data directory %s is not a directory", path);
        return GH_EIO;
    }
    if ((st.st_mode & 0077) && chmod(path, 0700)) {
        gh_buf_printf(err, "cannot restrict %s to mode 0700: %s", path, strerror(errno));
        return GH_EIO;
    }
    return 0;
}

static int read_small_file(const char *path, char *out, size_t outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? GH_ENOTFOUND : GH_EIO;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 0077))
        fchmod(fd, 0600); /* someone loosened it: tighten before use */
    ssize_t n = read(fd, out, outlen - 1);
    close(fd);
    if (n < 0)
        return GH_EIO;
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    return 0;
}

static int write_secret_file(const char *path, const char *content, struct gh_buf *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        gh_buf_printf(err, "cannot create %s: %s", path, strerror(errno));
        return GH_EIO;
    }
    size_t len = strlen(content);
    ssize_t n = write(fd, content, len);
    int rc = (n == (ssize_t)len && fsync(fd) == 0) ? 0 : GH_EIO;
    close(fd);
    if (rc)
        gh_buf_printf(err, "cannot write %s", path);
    return rc;
}

static int hex_key(const char *hex, unsigned char out[GH_KEY_BYTES])
{
    size_t bin_len = 0;
    if (sodium_hex2bin(out, GH_KEY_BYTES, hex, strlen(hex), NULL, &bin_len, NULL) ||
        bin_len != GH_KEY_BYTES)
        return GH_EINVAL;
    return 0;
}

/* Finds "name=HEX" in the secrets file text. */
static int secrets_field(const char *text, const char *name, unsigned char out[GH_KEY_BYTES])
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            char hex[65];
            size_t i = 0;
            for (p += nl + 1; i < 64 && *p && *p != '\n'; p++)
                hex[i++] = *p;
            hex[i] = '\0';
            return hex_key(hex, out);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return GH_ENOTFOUND;
}

int gh_secrets_load(const struct gh_config *cfg, struct gh_secrets *s, struct gh_buf *err)
{
    if (sodium_init() < 0) {
        gh_buf_printf(err, "libsodium failed to initialise");
        return GH_EIO;
    }
    memset(s, 0, sizeof *s);
    char path[4200], text[512];
    bool shared = cfg->secrets.file && cfg->secrets.file[0];
    bool both_given = cfg->secrets.hmac_key[0] && cfg->secrets.enc_key[0];
    int rc;
    if (both_given) {
        text[0] = '\0'; /* nothing to read or generate */
        snprintf(path, sizeof path, "[secrets]");
        rc = 0;
    } else if (shared) {
        /* a cluster's keys: never generated here (a node that made its own
         * would write data the others cannot read), and private */
        snprintf(path, sizeof path, "%s", cfg->secrets.file);
        struct stat st;
        if (stat(path, &st)) {
            gh_buf_printf(err, "secrets.file %s: %s", path, strerror(errno));
            return GH_EIO;
        }
        if (st.st_mode & 077) {
            gh_buf_printf(err,
                          "secrets.file %s is readable or writable by others (mode %04o): "
                          "chmod 600 it",
                          path, (unsigned)(st.st_mode & 07777));
            return GH_EIO;
        }
        rc = read_small_file(path, text, sizeof text);
        if (rc) {
            gh_buf_printf(err, "cannot read secrets.file %s", path);
            return rc;
        }
    } else {
        snprintf(path, sizeof path, "%s/secrets", cfg->server.data_dir);
        rc = read_small_file(path, text, sizeof text);
    }
    if (rc == GH_ENOTFOUND) {
        unsigned char k1[GH_KEY_BYTES], k2[GH_KEY_BYTES];
        char h1[65], h2[65];
        randombytes_buf(k1, sizeof k1);
        randombytes_buf(k2, sizeof k2);
        sodium_bin2hex(h1, sizeof h1, k1, sizeof k1);
        sodium_bin2hex(h2, sizeof h2, k2, sizeof k2);
        snprintf(text, sizeof text,
                 "# gatehouse server secrets, generated at first start. Keep private.\n"
                 "hmac_key=%s\nenc_key=%s\n",
                 h1, h2);
        sodium_memzero(k1, sizeof k1);
        sodium_memzero(k2, sizeof k2);
        rc = write_secret_file(path, text, err);
        if (rc)
            return rc;
    } else if (rc) {
        gh_buf_printf(err, "cannot read %s", path);
        return rc;
    }
    if ((cfg->secrets.hmac_key[0] ? hex_key(cfg->secrets.hmac_key, s->hmac_key)
                                  : secrets_field(text, "hmac_key", s->hmac_key)) ||
        (cfg->secrets.enc_key[0] ? hex_key(cfg->secrets.enc_key, s->enc_key)
                                 : secrets_field(text, "enc_key", s->enc_key))) {
        gh_buf_printf(err, "%s is damaged: expected hmac_key=<64 hex> and enc_key=<64 hex>", path);
        sodium_memzero(text, sizeof text);
        return GH_EIO;
    }
    sodium_memzero(text, sizeof text);

    if (cfg->secrets.admin_token[0]) {
        snprintf(s->admin_token, sizeof s->admin_token, "%s", cfg->secrets.admin_token);
        return 0;
    }
    snprintf(path, sizeof path, "%s/admin.token", cfg->server.data_dir);
    rc = read_small_file(path, s->admin_token, sizeof s->admin_token);
    if (rc == GH_ENOTFOUND) {
        unsigned char raw[32];
        char hex[65], line[300];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        snprintf(s->admin_token, sizeof s->admin_token, "gha_%s", hex);
        snprintf(line, sizeof line, "%s\n", s->admin_token);
        rc = write_secret_file(path, line, err);
    }
    if (!rc && strlen(s->admin_token) < 32) {
        gh_buf_printf(err, "%s holds a token shorter than 32 characters", path);
        rc = GH_EIO;
    }
    return rc;
}

int gh_secrets_admin_token(const struct gh_config *cfg, char *out, size_t outlen)
{
    if (cfg->secrets.admin_token[0]) {
        snprintf(out, outlen, "%s", cfg->secrets.admin_token);
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/admin.token", cfg->server.data_dir);
    return read_small_file(path, out, outlen) ? GH_ENOTFOUND : 0;
}
