/* This module implements the account commands of `gatehouse ctl` (ctl.h):
 * users find|show|disable|enable and keys list|revoke, through the admin
 * routes of admin_users.h. Runs in the ctl process; arguments are checked
 * here so that a usage error (exit 2) never reaches the server. */
#include "admin/ctl.h"

#include "core/common.h"
#include "core/config.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int usage(const char *msg, const char *arg, const char *synopsis)
{
    fprintf(stderr, "gatehouse ctl: %s%s%s%s\nusage: gatehouse ctl %s\n", msg, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "", synopsis);
    return 2;
}

/* A positive decimal id. */
static bool parse_id(const char *s, uint64_t *id)
{
    return s && !gh_parse_uint(s, INT64_MAX, id) && *id;
}

static const char *str(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* "2025-01-27T10:00:00.000Z" → "2025-01-27 10:00:00"; null → dflt. */
static const char *when(json_t *o, const char *key, const char *dflt, char *out, size_t outlen)
{
    const char *iso = json_string_value(json_object_get(o, key));
    if (!iso)
        return dflt;
    if (strlen(iso) >= 19 && iso[10] == 'T')
        snprintf(out, outlen, "%.10s %.8s", iso, iso + 11);
    else
        snprintf(out, outlen, "%s", iso);
    return out;
}

static void print_user(json_t *u)
{
    char t1[40], t2[40], t3[40];
    printf("id             %lld\n", (long long)json_integer_value(json_object_get(u, "id")));
    printf("phone          %s (masked)\n", str(u, "phone_masked", "?"));
    printf("region         %s (+%lld)\n", str(u, "region", "?"),
           (long long)json_integer_value(json_object_get(u, "calling_code")));
    printf("created        %s\n", when(u, "created_at", "?", t1, sizeof t1));
    printf("last login     %s\n", when(u, "last_login_at", "never", t2, sizeof t2));
    printf("failed logins  %lld\n",
           (long long)json_integer_value(json_object_get(u, "failed_logins")));
    if (json_is_true(json_object_get(u, "disabled")))
        printf("status         disabled since %s\n", when(u, "disabled_at", "?", t3, sizeof t3));
    else
        printf("status         active\n");
    printf("sessions       %lld live\n",
           (long long)json_integer_value(json_object_get(u, "sessions")));
    printf("keys           %lld live\n", (long long)json_integer_value(json_object_get(u, "keys")));
}

static void print_change(json_t *j)
{
    json_t *u = json_object_get(j, "user");
    bool disabled = json_is_true(json_object_get(u, "disabled"));
    long long id = (long long)json_integer_value(json_object_get(u, "id"));
    if (json_is_true(json_object_get(j, "changed")))
        printf("user %lld %s\n\n", id,
               disabled ? "disabled: sign-in refused, sessions and keys "
                          "stopped"
                        : "enabled: sign-in allowed again");
    else
        printf("user %lld was already %s\n\n", id, disabled ? "disabled" : "enabled");
    print_user(u);
}

/* Percent-encodes s for a query string value. */
static void query_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            ch == '-' || ch == '.' || ch == '_') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = 0;
}

int gh_ctl_users_find(struct gh_ctl *c)
{
    static const char syn[] = "users find PHONE   (E.164, e.g. +8613800138000)";
    if (c->argc != 1)
        return usage(c->argc ? "too many arguments" : "missing the phone number", NULL, syn);
    size_t n = strlen(c->argv[0]);
    if (n == 0 || n > 64 || c->argv[0][0] != '+')
        return usage("not an international phone number (it starts with +)", c->argv[0], syn);
    char esc[256], path[320];
    query_escape(c->argv[0], esc, sizeof esc);
    snprintf(path, sizeof path, "/admin/v1/users?phone=%s", esc);
    return gh_ctl_call(c, "GET", path, NULL, print_user);
}

/* users show|disable|enable ID */
static int user_cmd(struct gh_ctl *c, const char *verb, const char *method, const char *suffix,
                    void (*print)(json_t *))
{
    char syn[64];
    snprintf(syn, sizeof syn, "users %s ID", verb);
    uint64_t id;
    if (c->argc != 1)
        return usage(c->argc ? "too many arguments" : "missing the user id", NULL, syn);
    if (!parse_id(c->argv[0], &id))
        return usage("not a user id", c->argv[0], syn);
    char path[96];
    snprintf(path, sizeof path, "/admin/v1/users/%llu%s", (unsigned long long)id, suffix);
    return gh_ctl_call(c, method, path, NULL, print);
}

int gh_ctl_users_show(struct gh_ctl *c)
{
    return user_cmd(c, "show", "GET", "", print_user);
}

int gh_ctl_users_disable(struct gh_ctl *c)
{
    return user_cmd(c, "disable", "POST", "/disable", print_change);
}

int gh_ctl_users_enable(struct gh_ctl *c)
{
    return user_cmd(c, "enable", "POST", "/enable", print_change);
}

static void print_keys(json_t *j)
{
    json_t *keys = json_object_get(j, "keys");
    printf("keys of user %lld\n", (long long)json_integer_value(json_object_get(j, "user_id")));
    printf("%-6s  %-20s  %-14s  %-19s  %-19s  %s\n", "ID", "NAME", "PREFIX", "CREATED", "LAST USED",
           "REVOKED");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        char t1[40], t2[40], t3[40];
        printf("%-6lld  %-20.20s  %-14s  %-19s  %-19s  %s\n",
               (long long)json_integer_value(json_object_get(k, "id")), str(k, "name", ""),
               str(k, "prefix", "?"), when(k, "created_at", "?", t1, sizeof t1),
               when(k, "last_used_at", "never", t2, sizeof t2),
               when(k, "revoked_at", "no", t3, sizeof t3));
    }
    if (!json_array_size(keys))
        printf("(no keys)\n");
}

int gh_ctl_keys_list(struct gh_ctl *c)
{
    static const char syn[] = "keys list --user ID";
    uint64_t id;
    if (c->argc != 2 || strcmp(c->argv[0], "--user"))
        return usage(c->argc == 0 ? "missing --user ID" : "bad arguments", NULL, syn);
    if (!parse_id(c->argv[1], &id))
        return usage("not a user id", c->argv[1], syn);
    char path[96];
    snprintf(path, sizeof path, "/admin/v1/users/%llu/keys", (unsigned long long)id);
    return gh_ctl_call(c, "GET", path, NULL, print_keys);
}

static void print_revoked(json_t *j)
{
    json_t *k = json_object_get(j, "key");
    char t[40];
    long long id = (long long)json_integer_value(json_object_get(k, "id"));
    if (json_is_true(json_object_get(j, "revoked_now")))
        printf("key %lld (%s…, user %lld) revoked\n", id, str(k, "prefix", "?"),
               (long long)json_integer_value(json_object_get(k, "user_id")));
    else
        printf("key %lld (%s…) was already revoked at %s\n", id, str(k, "prefix", "?"),
               when(k, "revoked_at", "?", t, sizeof t));
}

int gh_ctl_keys_revoke(struct gh_ctl *c)
{
    static const char syn[] = "keys revoke ID";
    uint64_t id;
    if (c->argc != 1)
        return usage(c->argc ? "too many arguments" : "missing the key id", NULL, syn);
    if (!parse_id(c->argv[0], &id))
        return usage("not a key id", c->argv[0], syn);
    char path[96];
    snprintf(path, sizeof path, "/admin/v1/keys/%llu", (unsigned long long)id);
    return gh_ctl_call(c, "DELETE", path, NULL, print_revoked);
}
