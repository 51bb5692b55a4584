/* This module implements the penalty box's kernel half (nftban.h): the
 * nftables table, its thread and bounded queue of set operations. */
#include "shield/nftban.h"

#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#ifndef GH_HAVE_NFTABLES

int gh_nftban_start(const struct gh_nftban_config *c, gh_nftban_inside_fn inside, void *data,
                    struct gh_nftban **out, struct gh_buf *err)
{
    (void)c, (void)inside, (void)data;
    *out = NULL;
    gh_buf_printf(err, "gatehouse was built without libnftables");
    return GH_EIO;
}

void gh_nftban_stop(struct gh_nftban *nb)
{
    (void)nb;
}

bool gh_nftban_add(struct gh_nftban *nb, const struct gh_cidr *c, uint64_t ttl_ms)
{
    (void)nb, (void)c, (void)ttl_ms;
    return false;
}

bool gh_nftban_remove(struct gh_nftban *nb, const struct gh_cidr *c)
{
    (void)nb, (void)c;
    return false;
}

void gh_nftban_get_stats(struct gh_nftban *nb, struct gh_nftban_stats *out)
{
    (void)nb;
    memset(out, 0, sizeof *out);
}

#else

#include <jansson.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define BATCH_MAX     256 /* operations per netlink transaction */
#define INSIDE_MAX    64  /* narrower bans deleted to make room for a prefix */
#define COUNTER_EVERY 1000

struct op {
    struct gh_cidr cidr;
    uint32_t ttl_s; /* 0: remove */
};

struct gh_nftban {
    struct nft_ctx *ctx;
    char table[64];
    gh_nftban_inside_fn inside;
    void *inside_data;
    pthread_t thread;
    bool thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct op *q; /* ring */
    size_t cap, head, n;
    _Atomic uint64_t added, errors, queue_full, dropped;
};

/* Runs nft commands; 0 or GH_EIO (the reason is in the error buffer). */
static int run(struct gh_nftban *nb, const char *cmd)
{
    int rc = nft_run_cmd_from_buffer(nb->ctx, cmd);
    nft_ctx_get_output_buffer(nb->ctx); /* consumed: the buffers rewind */
    return rc ? GH_EIO : 0;
}

/* The first line of the last error, for a log line. */
static void last_error(struct gh_nftban *nb, char *out, size_t outlen)
{
    const char *e = nft_ctx_get_error_buffer(nb->ctx);
    size_t n = e ? strcspn(e, "\n") : 0;
    snprintf(out, outlen, "%.*s", (int)n, n ? e : "nft failed");
}

/* "ban4 { 192.0.2.0/24" — the set and the element, without the brace's end. */
static void element(const struct gh_cidr *c, char *out, size_t outlen)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char text[64];
    gh_cidr_format(c, text, sizeof text);
    bool v4 = c->len >= 96 && !memcmp(c->bytes, v4mapped, 12);
    snprintf(out, outlen, "%s { %s", v4 ? "ban4" : "ban6", text);
}

static void append_op(struct gh_nftban *nb, struct gh_buf *b, const struct op *o)
{
    char el[96];
    element(&o->cidr, el, sizeof el);
    if (o->ttl_s)
        gh_buf_printf(b, "add element inet %s %s timeout %us }\n", nb->table, el, o->ttl_s);
    else
        gh_buf_printf(b, "delete element inet %s %s }\n", nb->table, el);
}

/* Applies one operation alone: a removal of what is not there is fine; an
 * add that overlaps narrower bans deletes them and tries once more. */
static void apply_one(struct gh_nftban *nb, const struct op *o, struct gh_buf *b)
{
    gh_buf_reset(b);
    append_op(nb, b, o);
    if (!run(nb, b->data) || !o->ttl_s) {
        if (o->ttl_s)
            atomic_fetch_add_explicit(&nb->added, 1, memory_order_relaxed);
        return;
    }
    struct gh_ban inside[INSIDE_MAX];
    size_t n = nb->inside ? nb->inside(&o->cidr, inside, INSIDE_MAX, nb->inside_data) : 0;
    if (n) {
        gh_buf_reset(b);
        for (size_t i = 0; i < n; i++) {
            struct op del = {inside[i].cidr, 0};
            append_op(nb, b, &del);
            run(nb, b->data); /* one at a time: any may be gone already */
            gh_buf_reset(b);
        }
        append_op(nb, b, o);
        if (!run(nb, b->data)) {
            atomic_fetch_add_explicit(&nb->added, 1, memory_order_relaxed);
            return;
        }
    }
    /* a broader ban holds it already, or the set is full: the in-process
     * box still closes the source at accept */
    char why[160], el[96];
    last_error(nb, why, sizeof why);
    element(&o->cidr, el, sizeof el);
    gh_log(GH_LOG_DEBUG, "kernel_ban", "%s } not added: %s", el, why);
    atomic_fetch_add_explicit(&nb->errors, 1, memory_order_relaxed);
}

static void apply(struct gh_nftban *nb, const struct op *ops, size_t n, struct gh_buf *b)
{
    gh_buf_reset(b);
    size_t adds = 0;
    for (size_t i = 0; i < n; i++) {
        append_op(nb, b, &ops[i]);
        adds += ops[i].ttl_s != 0;
    }
    if (b->data && !run(nb, b->data)) { /* one transaction: all or nothing */
        atomic_fetch_add_explicit(&nb->added, adds, memory_order_relaxed);
        return;
    }
    for (size_t i = 0; i < n; i++)
        apply_one(nb, &ops[i], b);
}

static void read_counter(struct gh_nftban *nb, struct gh_buf *b)
{
    gh_buf_reset(b);
    gh_buf_printf(b, "list counter inet %s dropped", nb->table);
    nft_ctx_output_set_flags(nb->ctx, NFT_CTX_OUTPUT_JSON);
    int rc = nft_run_cmd_from_buffer(nb->ctx, b->data);
    const char *out = nft_ctx_get_output_buffer(nb->ctx);
    nft_ctx_output_set_flags(nb->ctx, 0);
    if (rc || !out)
        return;
    json_t *j = json_loads(out, 0, NULL);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "nftables"), i, v)
    {
        json_t *p = json_object_get(json_object_get(v, "counter"), "packets");
        if (json_is_integer(p))
            atomic_store_explicit(&nb->dropped, (uint64_t)json_integer_value(p),
                                  memory_order_relaxed);
    }
    json_decref(j);
}

static void *thread_main(void *arg)
{
    struct gh_nftban *nb = arg;
    struct op batch[BATCH_MAX];
    struct gh_buf b;
    gh_buf_init(&b, 64 * 1024);
    uint64_t next_read = 0;
    pthread_mutex_lock(&nb->mu);
    for (;;) {
        if (!nb->n && !nb->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&nb->cv, &nb->mu, &ts);
        }
        if (nb->stop)
            break;
        size_t n = 0;
        while (nb->n && n < BATCH_MAX) {
            batch[n++] = nb->q[nb->head];
            nb->head = (nb->head + 1) % nb->cap;
            nb->n--;
        }
        pthread_mutex_unlock(&nb->mu);
        if (n)
            apply(nb, batch, n, &b);
        uint64_t now = gh_now_ms();
        if (now >= next_read) {
            read_counter(nb, &b);
            next_read = now + COUNTER_EVERY;
        }
        pthread_mutex_lock(&nb->mu);
    }
    pthread_mutex_unlock(&nb->mu);
    gh_buf_dispose(&b);
    return NULL;
}

static bool enqueue(struct gh_nftban *nb, const struct gh_cidr *c, uint32_t ttl_s)
{
    if (!nb)
        return false;
    pthread_mutex_lock(&nb->mu);
    bool ok = nb->n < nb->cap && !nb->stop;
    if (ok) {
        nb->q[(nb->head + nb->n) % nb->cap] = (struct op){*c, ttl_s};
        nb->n++;
        pthread_cond_signal(&nb->cv);
    }
    pthread_mutex_unlock(&nb->mu);
    if (!ok)
        atomic_fetch_add_explicit(&nb->queue_full, 1, memory_order_relaxed);
    return ok;
}

bool gh_nftban_add(struct gh_nftban *nb, const struct gh_cidr *c, uint64_t ttl_ms)
{
    uint64_t s = (ttl_ms + 999) / 1000;
    return enqueue(nb, c, (uint32_t)GH_MAX(GH_MIN(s, (uint64_t)UINT32_MAX), 1));
}

bool gh_nftban_remove(struct gh_nftban *nb, const struct gh_cidr *c)
{
    return enqueue(nb, c, 0);
}

void gh_nftban_get_stats(struct gh_nftban *nb, struct gh_nftban_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!nb)
        return;
    out->added = atomic_load_explicit(&nb->added, memory_order_relaxed);
    out->errors = atomic_load_explicit(&nb->errors, memory_order_relaxed);
    out->queue_full = atomic_load_explicit(&nb->queue_full, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&nb->dropped, memory_order_relaxed);
}

static bool table_name_ok(const char *t)
{
    size_t n = strlen(t);
    if (!n || n >= 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || (i && t[i] == '-')))
            return false;
    return true;
}

int gh_nftban_start(const struct gh_nftban_config *c, gh_nftban_inside_fn inside, void *data,
                    struct gh_nftban **out, struct gh_buf *err)
{
    *out = NULL;
    if (!table_name_ok(c->table) || !c->port || c->port > 65535) {
        gh_buf_printf(err, "bad table name or port");
        return GH_EINVAL;
    }
    struct gh_nftban *nb = calloc(1, sizeof *nb);
    struct gh_buf cmd;
    gh_buf_init(&cmd, 4096);
    int rc = GH_ENOMEM;
    if (!nb)
        goto fail;
    snprintf(nb->table, sizeof nb->table, "%s", c->table);
    nb->inside = inside;
    nb->inside_data = data;
    nb->cap = GH_MAX(c->queue_max, (size_t)16);
    nb->q = calloc(nb->cap, sizeof *nb->q);
    nb->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!nb->q || !nb->ctx)
        goto fail;
    nft_ctx_buffer_output(nb->ctx);
    nft_ctx_buffer_error(nb->ctx);
    /* a table left by a run that crashed holds only expiring bans: start over */
    size_t size = GH_MAX(c->set_size, (size_t)16);
    gh_buf_printf(
        &cmd,
        "add table inet %s\n"
        "delete table inet %s\n"
        "table inet %s {\n"
        "  counter dropped { }\n"
        "  set ban4 { type ipv4_addr; flags interval, timeout; size %zu; }\n"
        "  set ban6 { type ipv6_addr; flags interval, timeout; size %zu; }\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        "    tcp dport %u fib daddr type local ip saddr @ban4 counter name dropped drop\n"
        "    tcp dport %u fib daddr type local ip6 saddr @ban6 counter name dropped drop\n"
        "  }\n"
        "}\n",
        nb->table, nb->table, nb->table, size, size, c->port, c->port);
    if (run(nb, cmd.data)) {
        char why[200];
        last_error(nb, why, sizeof why);
        gh_buf_printf(err, "%s", why);
        rc = GH_EIO;
        goto fail;
    }
    pthread_mutex_init(&nb->mu, NULL);
    pthread_cond_init(&nb->cv, NULL);
    if (pthread_create(&nb->thread, NULL, thread_main, nb)) {
        pthread_mutex_destroy(&nb->mu);
        pthread_cond_destroy(&nb->cv);
        gh_buf_reset(&cmd);
        gh_buf_printf(&cmd, "delete table inet %s", nb->table);
        run(nb, cmd.data);
        gh_buf_printf(err, "cannot start the kernel-ban thread");
        rc = GH_EIO;
        goto fail;
    }
    nb->thread_on = true;
    gh_buf_dispose(&cmd);
    *out = nb;
    return 0;
fail:
    gh_buf_dispose(&cmd);
    if (nb) {
        if (nb->ctx)
            nft_ctx_free(nb->ctx);
        free(nb->q);
        free(nb);
    }
    return rc;
}

void gh_nftban_stop(struct gh_nftban *nb)
{
    if (!nb)
        return;
    pthread_mutex_lock(&nb->mu);
    nb->stop = true;
    pthread_cond_signal(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
    pthread_join(nb->thread, NULL);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "delete table inet %s", nb->table);
    if (run(nb, cmd)) {
        char why[200];
        last_error(nb, why, sizeof why);
        gh_log(GH_LOG_WARN, "kernel_ban", "cannot delete table inet %s: %s", nb->table, why);
    }
    pthread_mutex_destroy(&nb->mu);
    pthread_cond_destroy(&nb->cv);
    nft_ctx_free(nb->ctx);
    free(nb->q);
    free(nb);
}

#endif
