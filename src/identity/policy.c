/* This module implements the registration policy of policy.h: JSON in and
 * out (jansson), the messages rendered from the configured templates, and
 * the atomic swap with delayed freeing of replaced policies. */
#include "identity/policy.h"

#include "identity/phone.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RETIRE_MS (60ull * 1000)

struct retired {
    struct retired *next;
    struct gh_policy *p;
    uint64_t at_ms;
};

static struct {
    _Atomic(struct gh_policy *) cur;
    pthread_mutex_t mu; /* installs and the retired list */
    struct retired *retired;
} pol = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const mode_names[] = {"open", "restricted", "busy", "closed"};

const char *gh_policy_mode_name(enum gh_policy_mode m)
{
    return (unsigned)m < GH_ARRAY_LEN(mode_names) ? mode_names[m] : "?";
}

static int mode_parse(const char *s)
{
    for (size_t i = 0; s && i < GH_ARRAY_LEN(mode_names); i++)
        if (!strcmp(s, mode_names[i]))
            return (int)i;
    return -1;
}

void gh_policy_free(struct gh_policy *p)
{
    while (p) {
        struct gh_policy *next = p->fallback;
        free(p);
        p = next;
    }
}

static struct gh_policy *policy_copy(const struct gh_policy *p)
{
    struct gh_policy *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *p;
    c->fallback = NULL;
    return c;
}

/* Replaces {regions} in tmpl by "+86, +852" into out. */
static void render_msg(const char *tmpl, const struct gh_policy *p, char *out, size_t outlen)
{
    char regions[256] = "";
    size_t rl = 0;
    for (unsigned i = 0; i < p->nregions && rl < sizeof regions - 16; i++) {
        unsigned cc = gh_phone_region_calling_code(p->regions[i]);
        int n = cc ? snprintf(regions + rl, sizeof regions - rl, "%s+%u", i ? ", " : "", cc)
                   : snprintf(regions + rl, sizeof regions - rl, "%s%s", i ? ", " : "",
                              p->regions[i]);
        if (n > 0)
            rl += (size_t)n;
    }
    const char *at = strstr(tmpl, "{regions}");
    if (at)
        snprintf(out, outlen, "%.*s%s%s", (int)(at - tmpl), tmpl, regions, at + 9);
    else
        snprintf(out, outlen, "%s", tmpl);
}

static void default_msgs(struct gh_policy *p, const struct gh_config *cfg)
{
    const char *en = "Registration is open", *zh = "\xe5\xbc\x80\xe6\x94\xbe\xe6\xb3\xa8\xe5\x86\x8c";
    if (p->mode == GH_POLICY_RESTRICTED) {
        en = cfg->identity.msg_restricted_en;
        zh = cfg->identity.msg_restricted_zh;
    } else if (p->mode == GH_POLICY_BUSY) {
        en = cfg->identity.msg_busy_en;
        zh = cfg->identity.msg_busy_zh;
    } else if (p->mode == GH_POLICY_CLOSED) {
        en = cfg->identity.msg_closed_en;
        zh = cfg->identity.msg_closed_zh;
    }
    render_msg(en, p, p->msg_en, sizeof p->msg_en);
    render_msg(zh, p, p->msg_zh, sizeof p->msg_zh);
}

static int add_region(struct gh_policy *p, const char *s, size_t len)
{
    if (len != 2 || p->nregions >= GH_POLICY_REGIONS_MAX)
        return GH_EINVAL;
    char r[3] = {s[0], s[1], 0};
    for (int i = 0; i < 2; i++) {
        if (r[i] >= 'a' && r[i] <= 'z')
            r[i] = (char)(r[i] - 32);
        if (r[i] < 'A' || r[i] > 'Z')
            return GH_EINVAL;
    }
    if (!gh_phone_region_calling_code(r))
        return GH_EINVAL;
    for (unsigned i = 0; i < p->nregions; i++)
        if (!strcmp(p->regions[i], r))
            return 0;
    memcpy(p->regions[p->nregions++], r, 3);
    return 0;
}

/* Fills p from o over what p holds. internal: the stored form (until_ms,
 * fallback) is accepted. */
static int from_json(json_t *o, const struct gh_config *cfg, struct gh_policy *p, bool internal,
                     const char **why)
{
    if (!json_is_object(o)) {
        *why = "body: expected a JSON object";
        return GH_EINVAL;
    }
    json_t *v = json_object_get(o, "mode");
    if (v) {
        int m = mode_parse(json_string_value(v));
        if (m < 0) {
            *why = "mode: expected open, restricted, busy or closed";
            return GH_EINVAL;
        }
        if ((enum gh_policy_mode)m != p->mode)
            p->custom_msg = false;
        p->mode = (enum gh_policy_mode)m;
    } else if (!internal) {
        *why = "mode: required (open, restricted, busy or closed)";
        return GH_EINVAL;
    }
    v = json_object_get(o, "allowed_regions");
    if (v) {
        if (!json_is_array(v) || json_array_size(v) > GH_POLICY_REGIONS_MAX) {
            *why = "allowed_regions: expected an array of at most 32 region codes";
            return GH_EINVAL;
        }
        p->nregions = 0;
        size_t i;
        json_t *r;
        json_array_foreach(v, i, r)
        {
            if (!json_is_string(r) ||
                add_region(p, json_string_value(r), json_string_length(r))) {
                *why = "allowed_regions: each entry must be an ISO region code such as CN";
                return GH_EINVAL;
            }
        }
    }
    if (p->mode == GH_POLICY_RESTRICTED && !p->nregions) {
        *why = "allowed_regions: restricted mode needs at least one region";
        return GH_EINVAL;
    }
    v = json_object_get(o, "pow_bits");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 32) {
            *why = "pow_bits: expected an integer from 0 to 32";
            return GH_EINVAL;
        }
        p->pow_bits = (unsigned)json_integer_value(v);
    }
    default_msgs(p, cfg);
    v = json_object_get(o, "message");
    if (v && !json_is_null(v)) {
        json_t *en = json_object_get(v, "en"), *zh = json_object_get(v, "zh");
        if (!json_is_object(v) || (en && !json_is_string(en)) || (zh && !json_is_string(zh)) ||
            (en && json_string_length(en) >= GH_POLICY_MSG_MAX) ||
            (zh && json_string_length(zh) >= GH_POLICY_MSG_MAX)) {
            *why = "message: expected {\"en\": text, \"zh\": text}, each under 512 bytes";
            return GH_EINVAL;
        }
        bool custom = internal ? json_is_true(json_object_get(o, "custom_message")) : true;
        if (custom) {
            if (en)
                snprintf(p->msg_en, sizeof p->msg_en, "%s", json_string_value(en));
            if (zh)
                snprintf(p->msg_zh, sizeof p->msg_zh, "%s", json_string_value(zh));
            p->custom_msg = true;
        }
    }
    v = json_object_get(o, "for_seconds");
    p->until_ms = 0;
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
            json_integer_value(v) > 366ll * 86400) {
            *why = "for_seconds: expected a positive integer (seconds, at most a year)";
            return GH_EINVAL;
        }
        p->until_ms = gh_wall_ms() + (uint64_t)json_integer_value(v) * 1000;
    }
    if (internal) {
        json_t *u = json_object_get(o, "until_ms");
        if (json_is_integer(u))
            p->until_ms = (uint64_t)json_integer_value(u);
        json_t *s = json_object_get(o, "set_ms");
        if (json_is_integer(s))
            p->set_ms = (uint64_t)json_integer_value(s);
        json_t *f = json_object_get(o, "fallback");
        if (json_is_object(f) && p->until_ms) {
            struct gh_policy *fb = policy_copy(p);
            if (!fb)
                return GH_ENOMEM;
            fb->until_ms = 0;
            fb->custom_msg = false;
            if (from_json(f, cfg, fb, false, why)) {
                free(fb);
                return GH_EINVAL;
            }
            fb->until_ms = 0;
            p->fallback = fb;
        }
    }
    p->retry_after_s = cfg->identity.busy_retry_ms / 1000;
    if (!p->retry_after_s)
        p->retry_after_s = 1;
    return 0;
}

static struct gh_policy *from_config(const struct gh_config *cfg)
{
    struct gh_policy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    int m = mode_parse(cfg->identity.policy);
    p->mode = m < 0 ? GH_POLICY_OPEN : (enum gh_policy_mode)m;
    const char *r = cfg->identity.regions;
    while (r && *r) {
        const char *end = strchr(r, ',');
        size_t len = end ? (size_t)(end - r) : strlen(r);
        while (len && *r == ' ') {
            r++;
            len--;
        }
        while (len && r[len - 1] == ' ')
            len--;
        if (len)
            add_region(p, r, len);
        r = end ? end + 1 : r + strlen(r);
    }
    if (p->mode == GH_POLICY_RESTRICTED && !p->nregions)
        add_region(p, "CN", 2);
    default_msgs(p, cfg);
    p->set_ms = gh_wall_ms();
    p->retry_after_s = GH_MAX(cfg->identity.busy_retry_ms / 1000, 1ull);
    return p;
}

int gh_policy_init(const struct gh_config *cfg, const char *stored)
{
    struct gh_policy *p = NULL;
    if (stored && *stored) {
        json_t *o = json_loads(stored, 0, NULL);
        struct gh_policy *q = from_config(cfg);
        const char *why;
        if (q && o && from_json(o, cfg, q, true, &why) == 0)
            p = q;
        else
            gh_policy_free(q);
        json_decref(o);
    }
    if (!p)
        p = from_config(cfg);
    if (!p)
        return GH_ENOMEM;
    atomic_store(&pol.cur, p);
    return 0;
}

void gh_policy_dispose(void)
{
    pthread_mutex_lock(&pol.mu);
    gh_policy_free(atomic_exchange(&pol.cur, NULL));
    while (pol.retired) {
        struct retired *r = pol.retired;
        pol.retired = r->next;
        gh_policy_free(r->p);
        free(r);
    }
    pthread_mutex_unlock(&pol.mu);
}

const struct gh_policy *gh_policy_current(void)
{
    const struct gh_policy *p = atomic_load_explicit(&pol.cur, memory_order_acquire);
    if (p && p->until_ms && p->fallback && gh_wall_ms() >= p->until_ms)
        return p->fallback;
    return p;
}

int gh_policy_parse(const char *json, size_t len, const struct gh_config *cfg,
                    struct gh_policy **out, const char **why)
{
    json_error_t e;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (!o) {
        *why = "body: not valid JSON";
        return GH_EINVAL;
    }
    const struct gh_policy *cur = gh_policy_current();
    struct gh_policy *p = cur ? policy_copy(cur) : from_config(cfg);
    if (!p) {
        json_decref(o);
        return GH_ENOMEM;
    }
    p->fallback = NULL;
    int rc = from_json(o, cfg, p, false, why);
    json_decref(o);
    if (rc) {
        gh_policy_free(p);
        return rc;
    }
    p->set_ms = gh_wall_ms();
    *out = p;
    return 0;
}

void gh_policy_install(struct gh_policy *p)
{
    pthread_mutex_lock(&pol.mu);
    uint64_t now = gh_wall_ms();
    if (p->until_ms) {
        /* fall back to what is in force now, without its own expiry */
        const struct gh_policy *eff = gh_policy_current();
        if (eff) {
            p->fallback = policy_copy(eff);
            if (p->fallback)
                p->fallback->until_ms = 0;
        }
    }
    struct gh_policy *old = atomic_exchange_explicit(&pol.cur, p, memory_order_acq_rel);
    /* free what was retired long enough ago, then retire old */
    for (struct retired **pp = &pol.retired; *pp;) {
        struct retired *r = *pp;
        if (now >= r->at_ms + RETIRE_MS) {
            *pp = r->next;
            gh_policy_free(r->p);
            free(r);
        } else {
            pp = &r->next;
        }
    }
    if (old) {
        struct retired *r = malloc(sizeof *r);
        if (r) {
            r->p = old;
            r->at_ms = now;
            r->next = pol.retired;
            pol.retired = r;
        } /* else: leak one small struct rather than free it under a reader */
    }
    pthread_mutex_unlock(&pol.mu);
}

bool gh_policy_region_allowed(const struct gh_policy *p, const char *region)
{
    if (p->mode != GH_POLICY_RESTRICTED)
        return true;
    for (unsigned i = 0; i < p->nregions; i++)
        if (!strcmp(p->regions[i], region))
            return true;
    return false;
}

static int render_one(const struct gh_policy *p, bool full, struct gh_buf *b)
{
    int rc = gh_buf_printf(b, "{\"mode\":\"%s\",\"allowed_regions\":[", gh_policy_mode_name(p->mode));
    for (unsigned i = 0; !rc && i < p->nregions; i++)
        rc = gh_buf_printf(b, "%s\"%s\"", i ? "," : "", p->regions[i]);
    rc = rc ? rc : gh_buf_printf(b, "],\"pow_bits\":%u,\"message\":{\"en\":\"", p->pow_bits);
    rc = rc ? rc : gh_buf_append_json_str(b, p->msg_en, strlen(p->msg_en));
    rc = rc ? rc : gh_buf_append_str(b, "\",\"zh\":\"");
    rc = rc ? rc : gh_buf_append_json_str(b, p->msg_zh, strlen(p->msg_zh));
    rc = rc ? rc : gh_buf_append_str(b, "\"}");
    if (full && !rc) {
        char ts[40];
        rc = gh_buf_printf(b, ",\"custom_message\":%s,\"set_ms\":%llu,\"set_at\":\"%s\"",
                           p->custom_msg ? "true" : "false", (unsigned long long)p->set_ms,
                           gh_time_rfc3339(p->set_ms, ts, sizeof ts));
        if (!rc && p->until_ms)
            rc = gh_buf_printf(b, ",\"until_ms\":%llu,\"until\":\"%s\"",
                               (unsigned long long)p->until_ms,
                               gh_time_rfc3339(p->until_ms, ts, sizeof ts));
        if (!rc && p->until_ms && p->fallback) {
            rc = gh_buf_append_str(b, ",\"fallback\":");
            rc = rc ? rc : render_one(p->fallback, false, b);
        }
    }
    return rc ? rc : gh_buf_append_str(b, "}");
}

int gh_policy_render(const struct gh_policy *p, bool full, struct gh_buf *out)
{
    return render_one(p, full, out);
}
