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

/* cur is what readers see: a pinned operator policy (until_ms set) or
 * composed; composed = standing ⊕ overlay, what an expired pin falls back
 * to. standing and every replaced struct are private to the mutex;
 * replaced published structs are retired (freed a minute later). */
static struct {
    _Atomic(struct gh_policy *) cur;
    _Atomic(struct gh_policy *) composed;
    pthread_mutex_t mu; /* changes, the standing policy, the retired list */
    struct gh_policy *standing;
    struct gh_policy_overlay ov;
    bool has_ov;
    struct gh_config *cfg; /* message templates (a reference) */
    gh_policy_listener_fn listener;
    void *listener_data;
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
    snprintf(p->source, sizeof p->source, "config");
    return p;
}

/* Puts p on the retired list (freed RETIRE_MS later) and frees what
 * was retired long enough ago. Under pol.mu. */
static void retire_locked(struct gh_policy *p, uint64_t now)
{
    GH_ASSERT_LOCKED(&pol.mu);
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
    if (!p)
        return;
    struct retired *r = malloc(sizeof *r);
    if (r) {
        r->p = p;
        r->at_ms = now;
        r->next = pol.retired;
        pol.retired = r;
    } /* else: leak one small struct rather than free it under a reader */
}

/* The regions of a "CN,HK" list into p (restricted). */
static void regions_from_list(struct gh_policy *p, const char *r)
{
    p->nregions = 0;
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
}

/* standing ⊕ overlay: the overlay never loosens the standing policy. */
static struct gh_policy *compose_locked(void)
{
    GH_ASSERT_LOCKED(&pol.mu);
    const struct gh_policy *b = pol.standing;
    struct gh_policy *c = policy_copy(b);
    if (!c)
        return NULL;
    c->until_ms = 0;
    if (!pol.has_ov)
        return c;
    const struct gh_policy_overlay *o = &pol.ov;
    bool changed = false;
    if (o->mode > c->mode) {
        c->mode = o->mode;
        changed = true;
        if (c->mode == GH_POLICY_RESTRICTED) {
            regions_from_list(c, o->regions);
            if (!c->nregions)
                add_region(c, "CN", 2);
        }
    } else if (o->mode == GH_POLICY_RESTRICTED && c->mode == GH_POLICY_RESTRICTED) {
        /* both restrict: the regions both allow (the standing ones when
         * they have none in common: the operator chose them) */
        struct gh_policy tmp = {.mode = GH_POLICY_RESTRICTED};
        regions_from_list(&tmp, o->regions);
        unsigned n = 0;
        for (unsigned i = 0; i < c->nregions; i++)
            for (unsigned j = 0; j < tmp.nregions; j++)
                if (!strcmp(c->regions[i], tmp.regions[j]))
                    memcpy(tmp.regions[GH_POLICY_REGIONS_MAX - 1 - n++], c->regions[i], 4);
        if (n && n != c->nregions) {
            for (unsigned i = 0; i < n; i++)
                memcpy(c->regions[i], tmp.regions[GH_POLICY_REGIONS_MAX - 1 - i], 4);
            c->nregions = n;
            changed = true;
        }
    }
    c->pow_bits = GH_MAX(c->pow_bits, o->pow_bits);
    if (o->register_per_minute &&
        (!c->register_per_minute || o->register_per_minute < c->register_per_minute))
        c->register_per_minute = o->register_per_minute;
    if (changed && pol.cfg) {
        c->custom_msg = false;
        default_msgs(c, pol.cfg);
    }
    if (o->mode != GH_POLICY_OPEN || o->pow_bits > b->pow_bits || o->register_per_minute)
        snprintf(c->source, sizeof c->source, "level %s", o->level);
    return c;
}

static bool pinned(const struct gh_policy *p, uint64_t now)
{
    return p && p->until_ms && now < p->until_ms;
}

/* Rebuilds composed from standing and the overlay; makes it current
 * unless an operator pin is in force. Returns true when cur changed.
 * Under pol.mu. */
static bool recompose_locked(uint64_t now, bool end_pin)
{
    GH_ASSERT_LOCKED(&pol.mu);
    struct gh_policy *c = compose_locked();
    if (!c)
        return false;
    struct gh_policy *oldc = atomic_exchange(&pol.composed, c);
    struct gh_policy *cur = atomic_load(&pol.cur);
    bool swap = end_pin || !pinned(cur, now);
    /* the same rules as before (a preset that asks nothing more) is no change */
    bool same = cur == oldc && oldc && oldc->mode == c->mode && oldc->pow_bits == c->pow_bits &&
                oldc->register_per_minute == c->register_per_minute &&
                oldc->nregions == c->nregions &&
                !memcmp(oldc->regions, c->regions, sizeof c->regions) &&
                !strcmp(oldc->msg_en, c->msg_en);
    if (swap) {
        atomic_store_explicit(&pol.cur, c, memory_order_release);
        if (cur && cur != oldc)
            retire_locked(cur, now);
    }
    retire_locked(oldc, now);
    return swap && !same;
}

static void notify(const char *why)
{
    gh_policy_listener_fn fn = pol.listener;
    if (fn)
        fn(gh_policy_current(), why, pol.listener_data);
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
        if (p)
            snprintf(p->source, sizeof p->source, "operator");
    }
    if (!p)
        p = from_config(cfg);
    if (!p)
        return GH_ENOMEM;
    pthread_mutex_lock(&pol.mu);
    pol.cfg = gh_config_ref((struct gh_config *)cfg);
    uint64_t now = gh_wall_ms();
    struct gh_policy *pin = NULL;
    if (p->until_ms && p->fallback) { /* a stored pin: its fallback is the standing one */
        pol.standing = p->fallback;
        snprintf(pol.standing->source, sizeof pol.standing->source, "operator");
        p->fallback = policy_copy(pol.standing);
        if (p->fallback)
            p->fallback->fallback = NULL;
        pin = p;
    } else {
        p->until_ms = 0;
        gh_policy_free(p->fallback);
        p->fallback = NULL;
        pol.standing = p;
    }
    struct gh_policy *c = compose_locked();
    if (!c) {
        pthread_mutex_unlock(&pol.mu);
        return GH_ENOMEM;
    }
    atomic_store(&pol.composed, c);
    if (pin && pinned(pin, now)) {
        atomic_store(&pol.cur, pin);
    } else {
        gh_policy_free(pin);
        atomic_store(&pol.cur, c);
    }
    pthread_mutex_unlock(&pol.mu);
    return 0;
}

/* The policy stored JSON describes (a pin keeps the standing policy as
 * its fallback), built over cfg. NULL when it is not one. */
static struct gh_policy *from_stored(const struct gh_config *cfg, const char *stored)
{
    json_t *o = json_loads(stored, 0, NULL);
    struct gh_policy *q = from_config(cfg);
    const char *why;
    if (!q || !o || from_json(o, cfg, q, true, &why)) {
        gh_policy_free(q);
        q = NULL;
    }
    json_decref(o);
    return q;
}

int gh_policy_apply_stored(const char *stored)
{
    pthread_mutex_lock(&pol.mu);
    struct gh_config *cfg = pol.cfg ? gh_config_ref(pol.cfg) : NULL;
    pthread_mutex_unlock(&pol.mu);
    if (!cfg)
        return GH_EINVAL;
    struct gh_policy *p = stored && *stored ? from_stored(cfg, stored) : NULL;
    gh_config_unref(cfg);
    if (!p)
        return GH_EINVAL;
    /* as its operator installed it: the standing policy, then the pin */
    struct gh_policy *standing = p->until_ms ? p->fallback : NULL;
    if (standing) {
        p->fallback = NULL;
        standing->until_ms = 0;
        gh_policy_install(standing);
    }
    if (p->until_ms && !pinned(p, gh_wall_ms())) {
        gh_policy_free(p); /* the pin ended meanwhile */
        return 0;
    }
    gh_policy_install(p);
    return 0;
}

void gh_policy_dispose(void)
{
    pthread_mutex_lock(&pol.mu);
    struct gh_policy *cur = atomic_exchange(&pol.cur, NULL);
    struct gh_policy *c = atomic_exchange(&pol.composed, NULL);
    if (cur != c)
        gh_policy_free(cur);
    gh_policy_free(c);
    gh_policy_free(pol.standing);
    pol.standing = NULL;
    pol.has_ov = false;
    while (pol.retired) {
        struct retired *r = pol.retired;
        pol.retired = r->next;
        gh_policy_free(r->p);
        free(r);
    }
    gh_config_unref(pol.cfg);
    pol.cfg = NULL;
    pol.listener = NULL;
    pthread_mutex_unlock(&pol.mu);
}

const struct gh_policy *gh_policy_current(void)
{
    const struct gh_policy *p = atomic_load_explicit(&pol.cur, memory_order_acquire);
    if (p && p->until_ms && gh_wall_ms() >= p->until_ms) {
        const struct gh_policy *c = atomic_load_explicit(&pol.composed, memory_order_acquire);
        return c ? c : p;
    }
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
    const char *why;
    gh_policy_free(p->fallback);
    p->fallback = NULL;
    if (p->until_ms) {
        /* a pin: shown with the standing policy it falls back to */
        snprintf(p->source, sizeof p->source, "operator (temporary)");
        if (pol.standing) {
            p->fallback = policy_copy(pol.standing);
            if (p->fallback)
                p->fallback->until_ms = 0;
        }
        struct gh_policy *old = atomic_exchange_explicit(&pol.cur, p, memory_order_acq_rel);
        if (old && old != atomic_load(&pol.composed))
            retire_locked(old, now);
        why = "operator (temporary)";
    } else {
        /* the new standing policy; p stays valid for the caller (retired,
         * never freed at once, when replaced) */
        snprintf(p->source, sizeof p->source, "operator");
        retire_locked(pol.standing, now);
        pol.standing = p;
        recompose_locked(now, true); /* a new standing policy ends a pin */
        why = "operator";
    }
    pthread_mutex_unlock(&pol.mu);
    notify(why);
}

void gh_policy_set_overlay(const struct gh_policy_overlay *o)
{
    struct gh_policy_overlay keep;
    memset(&keep, 0, sizeof keep);
    if (o) {
        keep.mode = o->mode;
        keep.pow_bits = o->pow_bits;
        keep.register_per_minute = o->register_per_minute;
        snprintf(keep.regions, sizeof keep.regions, "%s", o->regions);
        snprintf(keep.level, sizeof keep.level, "%s", o->level);
    }
    pthread_mutex_lock(&pol.mu);
    if (!pol.standing || (o ? pol.has_ov && !memcmp(&pol.ov, &keep, sizeof keep) : !pol.has_ov)) {
        pthread_mutex_unlock(&pol.mu);
        return;
    }
    pol.ov = keep;
    pol.has_ov = o != NULL;
    bool changed = recompose_locked(gh_wall_ms(), false);
    pthread_mutex_unlock(&pol.mu);
    if (changed)
        notify("level");
}

void gh_policy_tick(void)
{
    pthread_mutex_lock(&pol.mu);
    uint64_t now = gh_wall_ms();
    struct gh_policy *cur = atomic_load(&pol.cur);
    struct gh_policy *c = atomic_load(&pol.composed);
    bool expired = cur && c && cur != c && cur->until_ms && now >= cur->until_ms;
    if (expired) {
        atomic_store_explicit(&pol.cur, c, memory_order_release);
        retire_locked(cur, now);
    }
    pthread_mutex_unlock(&pol.mu);
    if (expired)
        notify("expired");
}

void gh_policy_set_listener(gh_policy_listener_fn fn, void *data)
{
    pthread_mutex_lock(&pol.mu);
    pol.listener = fn;
    pol.listener_data = data;
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
        if (!rc)
            rc = gh_buf_printf(b, ",\"register_per_minute\":%u,\"source\":\"%s\"",
                               p->register_per_minute, p->source);
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
