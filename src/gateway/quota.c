/* This module implements the quota arithmetic and tables of quota.h. */
#include "gateway/quota.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PERIOD_NS 60000000000LL /* rates are per minute */
#define NSHARDS   16
#define PROBE     16 /* slots probed from an entry's home */
#define OVERRIDES_MAX 1000000

/* ---- one state ---- */

/* GCRA with a burst of the whole minute: a request of cost c passes when
 * max(tat, now) + T*c - now <= period. */
static bool gcra(int64_t *tat, unsigned limit, unsigned cost, int64_t now, bool commit,
                 uint64_t *retry_ms, unsigned *remaining, uint64_t *reset_ms)
{
    int64_t t = PERIOD_NS / limit;
    if (!t)
        t = 1;
    if (cost > limit)
        cost = limit; /* a request larger than the minute passes on a full bucket */
    int64_t base = *tat > now ? *tat : now;
    int64_t next = base + t * (int64_t)cost;
    bool ok = next - now <= PERIOD_NS;
    if (ok && commit)
        *tat = next;
    int64_t cur = ok && commit ? next : base;
    int64_t room = PERIOD_NS - (cur - now);
    *remaining = room > 0 ? (unsigned)GH_MIN((int64_t)limit, room / t) : 0;
    *reset_ms = (uint64_t)((cur - now + 999999) / 1000000);
    *retry_ms = ok ? 0 : (uint64_t)((next - now - PERIOD_NS + 999999) / 1000000);
    return ok;
}

static void new_day(struct gh_quota_state *s, uint32_t day)
{
    if (s->day != day) {
        s->day = day;
        s->day_tokens = 0;
    }
}

enum gh_quota_verdict gh_quota_check(struct gh_quota_state *s, const struct gh_quota_limits *l,
                                     int64_t now_ns, uint32_t day, unsigned est, bool commit,
                                     struct gh_quota_info *info)
{
    struct gh_quota_info tmp;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof *info);
    new_day(s, day);
    if (l->concurrency && s->active >= l->concurrency) {
        info->retry_after_ms = 1000;
        return GH_QUOTA_CONCURRENCY;
    }
    if (l->tpd && s->day_tokens + s->reserved >= l->tpd) {
        /* until the next UTC day */
        uint64_t wall_s = gh_wall_ms() / 1000;
        info->retry_after_ms = (86400 - wall_s % 86400) * 1000;
        return GH_QUOTA_BALANCE;
    }
    uint64_t retry_r = 0, retry_t = 0;
    bool ok_r = true, ok_t = true;
    /* check both before taking either, so a refusal takes nothing */
    if (l->rpm) {
        info->has_requests = true;
        info->limit_requests = l->rpm;
        ok_r = gcra(&s->tat_req_ns, l->rpm, 1, now_ns, false, &retry_r, &info->remaining_requests,
                    &info->reset_requests_ms);
    }
    if (l->tpm) {
        info->has_tokens = true;
        info->limit_tokens = l->tpm;
        ok_t = gcra(&s->tat_tok_ns, l->tpm, est ? est : 1, now_ns, false, &retry_t,
                    &info->remaining_tokens, &info->reset_tokens_ms);
    }
    if (!ok_r || !ok_t) {
        info->retry_after_ms = GH_MAX(retry_r, retry_t);
        return !ok_r ? GH_QUOTA_REQUESTS : GH_QUOTA_TOKENS;
    }
    if (commit) {
        if (l->rpm)
            gcra(&s->tat_req_ns, l->rpm, 1, now_ns, true, &retry_r, &info->remaining_requests,
                 &info->reset_requests_ms);
        if (l->tpm)
            gcra(&s->tat_tok_ns, l->tpm, est ? est : 1, now_ns, true, &retry_t,
                 &info->remaining_tokens, &info->reset_tokens_ms);
        s->reserved += est;
        s->active++;
    }
    return GH_QUOTA_OK;
}

void gh_quota_settle(struct gh_quota_state *s, const struct gh_quota_limits *l, int64_t now_ns,
                     uint32_t day, unsigned est, unsigned actual)
{
    s->reserved = s->reserved >= est ? s->reserved - est : 0;
    if (s->active)
        s->active--;
    new_day(s, day);
    s->day_tokens += actual;
    if (l->tpm) {
        int64_t t = PERIOD_NS / l->tpm;
        if (!t)
            t = 1;
        int64_t charged = GH_MIN((int64_t)est, (int64_t)l->tpm);
        int64_t delta = ((int64_t)actual - charged) * t;
        /* at most one period of debt; a credit below now is harmless, the
         * check starts from max(tat, now) */
        delta = GH_MIN(delta, PERIOD_NS);
        s->tat_tok_ns += delta;
        (void)now_ns;
    }
}

/* ---- the table ---- */

struct entry {
    uint64_t key; /* kind << 56 | id; 0 = empty */
    struct gh_quota_state st;
};

struct shard {
    pthread_mutex_t mu;
    struct entry *slots;
    unsigned mask;
};

struct gh_quota_table {
    struct shard shards[NSHARDS];
    pthread_rwlock_t ov_mu;
    json_t *overrides; /* "k:123" / "u:45" -> {rpm, tpm, tpd, concurrency} */
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

struct gh_quota_table *gh_quota_table_new(unsigned capacity)
{
    struct gh_quota_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    unsigned per = 64;
    while (per * NSHARDS < capacity && per < (1u << 26))
        per <<= 1;
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *s = &t->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->mask = per - 1;
        s->slots = calloc(per, sizeof *s->slots);
        if (!s->slots) {
            gh_quota_table_free(t);
            return NULL;
        }
    }
    pthread_rwlock_init(&t->ov_mu, NULL);
    t->overrides = json_object();
    if (!t->overrides) {
        gh_quota_table_free(t);
        return NULL;
    }
    return t;
}

void gh_quota_table_free(struct gh_quota_table *t)
{
    if (!t)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        free(t->shards[i].slots);
        pthread_mutex_destroy(&t->shards[i].mu);
    }
    json_decref(t->overrides);
    pthread_rwlock_destroy(&t->ov_mu);
    free(t);
}

static bool idle(const struct entry *e, int64_t now, uint32_t day)
{
    return !e->st.active && !e->st.reserved && e->st.tat_req_ns <= now &&
           e->st.tat_tok_ns <= now && (e->st.day != day || !e->st.day_tokens);
}

/* The entry of key in its locked shard, created when missing; NULL when
 * the probe window is full of entries that are not idle. */
static struct entry *find_locked(struct shard *s, uint64_t key, uint64_t h, int64_t now,
                                 uint32_t day)
{
    GH_ASSERT_LOCKED(&s->mu);
    struct entry *victim = NULL;
    for (unsigned i = 0; i < PROBE; i++) {
        struct entry *e = &s->slots[(h + i) & s->mask];
        if (e->key == key)
            return e;
        if (!e->key) {
            e->key = key;
            memset(&e->st, 0, sizeof e->st);
            return e;
        }
        if (!victim && idle(e, now, day))
            victim = e;
    }
    if (!victim) {
        /* second choice: idle now but with spend recorded today */
        for (unsigned i = 0; i < PROBE && !victim; i++) {
            struct entry *e = &s->slots[(h + i) & s->mask];
            if (!e->st.active && !e->st.reserved && e->st.tat_req_ns <= now &&
                e->st.tat_tok_ns <= now)
                victim = e;
        }
    }
    if (victim) {
        victim->key = key;
        memset(&victim->st, 0, sizeof victim->st);
    }
    return victim;
}

static struct shard *shard_of(struct gh_quota_table *t, uint64_t key, uint64_t *h)
{
    *h = mix(key);
    return &t->shards[*h % NSHARDS];
}

enum gh_quota_verdict gh_quota_admit(struct gh_quota_table *t, enum gh_quota_kind kind,
                                     uint64_t id, const struct gh_quota_limits *l,
                                     int64_t now_ns, uint32_t day, unsigned est, bool commit,
                                     struct gh_quota_info *info)
{
    uint64_t key = (uint64_t)kind << 56 | (id & 0x00ffffffffffffffULL), h;
    struct shard *s = shard_of(t, key, &h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = find_locked(s, key, h / NSHARDS, now_ns, day);
    enum gh_quota_verdict v = GH_QUOTA_FULL;
    if (e)
        v = gh_quota_check(&e->st, l, now_ns, day, est, commit, info);
    else if (info) {
        memset(info, 0, sizeof *info);
        info->retry_after_ms = 1000;
    }
    pthread_mutex_unlock(&s->mu);
    return v;
}

void gh_quota_release(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                      const struct gh_quota_limits *l, int64_t now_ns, uint32_t day,
                      unsigned est, unsigned actual)
{
    uint64_t key = (uint64_t)kind << 56 | (id & 0x00ffffffffffffffULL), h;
    struct shard *s = shard_of(t, key, &h);
    pthread_mutex_lock(&s->mu);
    /* an admitted entry is never idle, so it cannot have been replaced */
    struct entry *e = find_locked(s, key, h / NSHARDS, now_ns, day);
    if (e)
        gh_quota_settle(&e->st, l, now_ns, day, est, actual);
    pthread_mutex_unlock(&s->mu);
}

void gh_quota_prime(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                    uint32_t day, uint64_t tokens)
{
    uint64_t key = (uint64_t)kind << 56 | (id & 0x00ffffffffffffffULL), h;
    struct shard *s = shard_of(t, key, &h);
    pthread_mutex_lock(&s->mu);
    struct entry *e = find_locked(s, key, h / NSHARDS, 0, day);
    if (e) {
        new_day(&e->st, day);
        e->st.day_tokens += tokens;
    }
    pthread_mutex_unlock(&s->mu);
}

uint64_t gh_quota_spent(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                        uint32_t day)
{
    uint64_t key = (uint64_t)kind << 56 | (id & 0x00ffffffffffffffULL), h;
    struct shard *s = shard_of(t, key, &h);
    uint64_t spent = 0;
    pthread_mutex_lock(&s->mu);
    /* a look only: no entry is created for a caller who never called */
    for (unsigned i = 0; i < PROBE; i++) {
        struct entry *e = &s->slots[(h / NSHARDS + i) & s->mask];
        if (e->key == key) {
            spent = (e->st.day == day ? e->st.day_tokens : 0) + e->st.reserved;
            break;
        }
        if (!e->key)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return spent;
}

/* ---- overrides ---- */

static const char *const fields[] = {"rpm", "tpm", "tpd", "concurrency"};

static unsigned *field_of(struct gh_quota_limits *l, size_t i)
{
    unsigned *f[] = {&l->rpm, &l->tpm, &l->tpd, &l->concurrency};
    return f[i];
}

static void ov_name(enum gh_quota_kind kind, uint64_t id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%c:%llu", kind == GH_QUOTA_KEY ? 'k' : 'u', (unsigned long long)id);
}

void gh_quota_limits_of(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                        const struct gh_quota_limits *defaults, struct gh_quota_limits *out)
{
    *out = *defaults;
    char name[32];
    ov_name(kind, id, name, sizeof name);
    pthread_rwlock_rdlock(&t->ov_mu);
    json_t *o = json_object_size(t->overrides) ? json_object_get(t->overrides, name) : NULL;
    for (size_t i = 0; o && i < GH_ARRAY_LEN(fields); i++) {
        json_t *v = json_object_get(o, fields[i]);
        if (json_is_integer(v))
            *field_of(out, i) = (unsigned)json_integer_value(v);
    }
    pthread_rwlock_unlock(&t->ov_mu);
}

bool gh_quota_has_override(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id)
{
    char name[32];
    ov_name(kind, id, name, sizeof name);
    pthread_rwlock_rdlock(&t->ov_mu);
    bool has = json_object_size(t->overrides) && json_object_get(t->overrides, name);
    pthread_rwlock_unlock(&t->ov_mu);
    return has;
}

int gh_quota_set(struct gh_quota_table *t, enum gh_quota_kind kind, uint64_t id,
                 const struct gh_quota_limits *l)
{
    char name[32];
    ov_name(kind, id, name, sizeof name);
    int rc = 0;
    pthread_rwlock_wrlock(&t->ov_mu);
    if (!l) {
        rc = json_object_del(t->overrides, name) ? GH_ENOTFOUND : 0;
        goto out;
    }
    json_t *o = json_object_get(t->overrides, name);
    if (!o) {
        if (json_object_size(t->overrides) >= OVERRIDES_MAX) {
            rc = GH_ETOOBIG;
            goto out;
        }
        o = json_object();
        if (!o || json_object_set_new(t->overrides, name, o)) {
            rc = GH_ENOMEM;
            goto out;
        }
    }
    struct gh_quota_limits copy = *l;
    for (size_t i = 0; i < GH_ARRAY_LEN(fields); i++) {
        unsigned v = *field_of(&copy, i);
        if (v != GH_QUOTA_UNSET)
            json_object_set_new(o, fields[i], json_integer(v));
    }
out:
    pthread_rwlock_unlock(&t->ov_mu);
    return rc;
}

json_t *gh_quota_list(struct gh_quota_table *t)
{
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&t->ov_mu);
    const char *name;
    json_t *o;
    json_object_foreach(t->overrides, name, o)
    {
        json_t *row = json_deep_copy(o);
        if (!row)
            continue;
        json_object_set_new(row, "kind", json_string(name[0] == 'k' ? "key" : "user"));
        json_object_set_new(row, "id", json_integer(strtoll(name + 2, NULL, 10)));
        json_array_append_new(arr, row);
    }
    pthread_rwlock_unlock(&t->ov_mu);
    return arr;
}

char *gh_quota_dump(struct gh_quota_table *t, bool compact)
{
    pthread_rwlock_rdlock(&t->ov_mu);
    char *text =
        json_dumps(t->overrides, JSON_SORT_KEYS | (compact ? JSON_COMPACT : JSON_INDENT(1)));
    pthread_rwlock_unlock(&t->ov_mu);
    return text;
}

int gh_quota_save(struct gh_quota_table *t, const char *path)
{
    char *text = gh_quota_dump(t, false);
    if (!text)
        return GH_ENOMEM;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = GH_EIO;
    FILE *f = fopen(tmp, "w");
    if (f) {
        bool ok = fputs(text, f) >= 0 && fputs("\n", f) >= 0;
        ok = !fflush(f) && !fsync(fileno(f)) && ok;
        ok = !fclose(f) && ok;
        if (ok && !rename(tmp, path))
            rc = 0;
        else
            unlink(tmp);
    }
    free(text);
    return rc;
}

/* Installs o (taken) as the overrides when it has their shape. */
static int install(struct gh_quota_table *t, json_t *o)
{
    if (!json_is_object(o)) {
        json_decref(o);
        return GH_EINVAL;
    }
    const char *name;
    json_t *v;
    json_object_foreach(o, name, v)
    {
        if (!json_is_object(v) || (name[0] != 'k' && name[0] != 'u') || name[1] != ':') {
            json_decref(o);
            return GH_EINVAL;
        }
    }
    pthread_rwlock_wrlock(&t->ov_mu);
    json_decref(t->overrides);
    t->overrides = o;
    pthread_rwlock_unlock(&t->ov_mu);
    return 0;
}

int gh_quota_load(struct gh_quota_table *t, const char *path)
{
    if (access(path, F_OK))
        return 0;
    json_error_t je;
    return install(t, json_load_file(path, 0, &je));
}

int gh_quota_load_text(struct gh_quota_table *t, const char *text)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (json_object_size(o) > OVERRIDES_MAX) { /* another node's: never more than ours hold */
        json_decref(o);
        return GH_ETOOBIG;
    }
    return install(t, o);
}
