/* This module implements the store's threads (store.h): one writer thread
 * running queued jobs in group-committed transactions (a savepoint per
 * job), reader threads sharing one queue, both queues bounded, the
 * delivery of each job's result to its worker with gh_worker_post, and the
 * dispatch of the data functions to the connection's backend (backend.h). */
#include "store/store.h"

#include "core/log.h"
#include "core/server.h"
#include "obs/metrics.h"
#include "store/backend.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(GH_STORE_SEAL_MAX ==
                   crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + GH_PHONE_MAX,
               "sealed phone size");

#define GROUP_MAX        128 /* jobs per write transaction */
#define READERS_MAX      8
#define SETTING_SUBS_MAX 16
#define LISTEN_WAIT_MS   1000 /* the listener looks at its stop pipe at least this often */

struct job {
    struct job *next;
    gh_store_fn fn;
    void *arg;
    struct gh_worker *w;
    gh_store_done_fn done;
    int rc;
    bool awaited; /* a request waits for it: w's loop gives way while it is out */
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    unsigned n, max;
    bool closing;
};

struct gh_store {
    const struct gh_store_backend *be;
    struct gh_store_options o; /* strings owned: path, url */
    uint8_t enc_key[32];
    uint8_t hmac_key[32]; /* when o.hmac_key: the key check's (gh_store_open) */
    struct queue wq, rq;
    pthread_t writer;
    pthread_t readers[READERS_MAX];
    unsigned nreaders;
    struct gh_store_conn wconn;
    struct gh_store_conn rconn[READERS_MAX];
    struct reader_arg {
        struct gh_store *s;
        unsigned idx;
    } rargs[READERS_MAX];
    _Atomic uint64_t *m_unavailable; /* jobs answered GH_EBUSY: the database unreachable */
    _Atomic uint64_t *m_up;          /* 1 while the writer reaches the database */
    /* messages between nodes (postgres): the listener thread, its own
     * connection, and who hears what */
    uint64_t node;
    struct gh_store_conn lconn;
    pthread_t listener;
    bool listening;
    int stop_pipe[2];
    gh_store_cred_fn cred_fn;
    void *cred_arg;
    struct {
        char name[GH_STORE_SETTING_NAME_MAX + 1];
        gh_store_setting_fn fn;
        void *arg;
    } subs[SETTING_SUBS_MAX];
    unsigned nsubs;
    _Atomic uint64_t *m_received, *m_ignored, *m_reconnects, *m_listen_up;
};

/* Messages queued in write transactions (publish sees a connection only,
 * which carries the node's id: conn_open copies it). */
static _Atomic uint64_t *m_sent;

static void count_unavailable(struct gh_store *s, uint64_t jobs)
{
    if (s->m_unavailable)
        atomic_fetch_add_explicit(s->m_unavailable, jobs, memory_order_relaxed);
}

static void queue_init(struct queue *q, unsigned max)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->head = q->tail = NULL;
    q->n = 0;
    q->max = max;
    q->closing = false;
}

static int queue_push(struct queue *q, gh_store_fn fn, void *arg, struct gh_worker *w,
                      gh_store_done_fn done, bool awaited)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return GH_ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->w = w;
    j->done = done;
    j->awaited = w && awaited;
    if (j->awaited)
        gh_worker_job_begin(w);
    pthread_mutex_lock(&q->mu);
    if (q->closing || q->n >= q->max) {
        pthread_mutex_unlock(&q->mu);
        if (j->awaited)
            gh_worker_job_done(w);
        free(j);
        return GH_EBUSY;
    }
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* Takes up to max jobs (waits for at least one). Returns NULL when closing
 * and empty. */
static struct job *queue_take(struct queue *q, unsigned max)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->closing)
        pthread_cond_wait(&q->cv, &q->mu);
    struct job *first = q->head, *last = NULL;
    unsigned k = 0;
    for (struct job *j = q->head; j && k < max; j = j->next, k++)
        last = j;
    if (last) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->n -= k;
    }
    pthread_mutex_unlock(&q->mu);
    return first;
}

struct delivery {
    gh_store_done_fn done;
    void *arg;
    int rc;
};

static void deliver_task(struct gh_worker *w, void *data)
{
    struct delivery *d = data;
    d->done(w, d->arg, d->rc);
    free(d);
}

static void deliver(struct job *j)
{
    if (j->awaited)
        gh_worker_job_done(j->w);
    if (!j->done)
        return;
    if (j->w) {
        struct delivery *d = malloc(sizeof *d);
        if (d) {
            d->done = j->done;
            d->arg = j->arg;
            d->rc = j->rc;
            if (gh_worker_post(j->w, deliver_task, d) == 0)
                return;
            free(d);
        }
    }
    j->done(NULL, j->arg, j->rc);
}

/* Runs one batch in one transaction, a savepoint per job. A step that
 * fails (the connection lost mid-batch) ends the batch: nothing of it was
 * committed, so every job gets that step's code. */
static void run_batch(struct gh_store *s, struct gh_store_conn *c, struct job *batch)
{
    const struct gh_store_backend *be = c->be;
    int brc = be->tx(c, GH_TX_BEGIN);
    for (struct job *j = batch; j && !brc; j = j->next) {
        brc = be->tx(c, GH_TX_SAVEPOINT);
        if (brc)
            break;
        j->rc = j->fn(c, j->arg);
        if (j->rc < 0)
            brc = be->tx(c, GH_TX_ROLLBACK_TO);
        if (!brc)
            brc = be->tx(c, GH_TX_RELEASE);
    }
    if (!brc)
        brc = be->tx(c, GH_TX_COMMIT);
    uint64_t n = 0;
    if (brc) {
        be->tx(c, GH_TX_ROLLBACK);
        for (struct job *j = batch; j; j = j->next, n++)
            j->rc = brc;
    }
    if (brc == GH_EBUSY)
        count_unavailable(s, n);
    if (s->m_up)
        atomic_store_explicit(s->m_up, brc != GH_EBUSY, memory_order_relaxed);
}

static void *writer_main(void *data)
{
    struct gh_store *s = data;
    gh_thread_name("gh-store-write");
    for (;;) {
        struct job *batch = queue_take(&s->wq, GROUP_MAX);
        if (!batch)
            break;
        run_batch(s, &s->wconn, batch);
        while (batch) {
            struct job *next = batch->next;
            deliver(batch);
            free(batch);
            batch = next;
        }
    }
    return NULL;
}

static void *reader_main(void *data)
{
    struct reader_arg *ra = data;
    gh_thread_name("gh-store-read");
    struct gh_store *s = ra->s;
    struct gh_store_conn *c = &s->rconn[ra->idx];
    for (;;) {
        struct job *j = queue_take(&s->rq, 1);
        if (!j)
            break;
        /* a read transaction so a multi-query job sees one snapshot; fn
         * does not run when it cannot start (the database unreachable) */
        j->rc = c->be->tx(c, GH_TX_BEGIN);
        if (j->rc == GH_EBUSY)
            count_unavailable(s, 1);
        if (!j->rc) {
            j->rc = j->fn(c, j->arg);
            c->be->tx(c, GH_TX_COMMIT);
        }
        deliver(j);
        free(j);
    }
    return NULL;
}

static const struct gh_store_backend *backend_named(const char *name)
{
    if (!name || !strcmp(name, "sqlite"))
        return &gh_store_sqlite;
    if (!strcmp(name, "postgres"))
        return &gh_store_postgres;
    return NULL;
}

static void store_free(struct gh_store *s)
{
    free((char *)s->o.path);
    free((char *)s->o.url);
    sodium_memzero(s->enc_key, sizeof s->enc_key);
    sodium_memzero(s->hmac_key, sizeof s->hmac_key);
    free(s);
}

static int conn_open(struct gh_store *s, struct gh_store_conn *c, bool writer, struct gh_buf *err)
{
    *c = (struct gh_store_conn){.be = s->be, .enc_key = s->enc_key, .node = s->node};
    return s->be->open(c, &s->o, writer, err);
}

/* The key check value of the node's two keys: a keyed BLAKE2b of a fixed
 * label under each, "v1:<hmac 32 hex>:<enc 32 hex>". It tells whether two
 * nodes hold the same keys without saying anything about them. */
#define KEY_CHECK_NAME "key_check"
#define KEY_CHECK_LEN  (3 + 32 + 1 + 32)

static void key_check_value(const uint8_t hmac_key[32], const uint8_t enc_key[32],
                            char out[KEY_CHECK_LEN + 1])
{
    static const char label[] = "gatehouse key check v1";
    uint8_t h[16], e[16];
    crypto_generichash(h, sizeof h, (const uint8_t *)label, sizeof label - 1, hmac_key, 32);
    crypto_generichash(e, sizeof e, (const uint8_t *)label, sizeof label - 1, enc_key, 32);
    memcpy(out, "v1:", 3);
    sodium_bin2hex(out + 3, 33, h, sizeof h);
    out[35] = ':';
    sodium_bin2hex(out + 36, 33, e, sizeof e);
}

/* Reads the database's key check value into have (empty when none);
 * writes mine when there is none. 0 or GH_EIO/GH_EBUSY. */
static int key_check_exchange(struct gh_store_conn *c, const char *mine, char *have, size_t cap)
{
    struct gh_buf v;
    gh_buf_init(&v, 256);
    int rc = c->be->tx(c, GH_TX_BEGIN);
    if (!rc) {
        int g = c->be->setting_get(c, KEY_CHECK_NAME, &v);
        if (g == GH_ENOTFOUND) {
            rc = c->be->setting_put(c, KEY_CHECK_NAME, mine);
            have[0] = '\0';
        } else if (g) {
            rc = g;
        } else {
            snprintf(have, cap, "%.*s", (int)v.len, v.data ? v.data : "");
        }
        if (rc)
            c->be->tx(c, GH_TX_ROLLBACK);
        else
            rc = c->be->tx(c, GH_TX_COMMIT);
    }
    gh_buf_dispose(&v);
    return rc;
}

/* A node whose keys differ from those the database was written with would
 * find no user by phone (keyed hashes) and could not read the phones it
 * finds: it must not start. The first node to open a database leaves its
 * check value; every node then compares, after its own write too, so that
 * of two nodes with different keys starting at once, one refuses. */
static int key_check(struct gh_store *s, struct gh_buf *err)
{
    if (!s->o.hmac_key)
        return 0;
    char mine[KEY_CHECK_LEN + 1], have[KEY_CHECK_LEN + 8];
    key_check_value(s->o.hmac_key, s->enc_key, mine);
    int rc = key_check_exchange(&s->wconn, mine, have, sizeof have);
    if (!rc && !have[0])
        rc = key_check_exchange(&s->wconn, mine, have, sizeof have); /* read back */
    if (rc) {
        gh_buf_printf(err, "store: cannot read or write the key check value (%s)",
                      gh_strerror(rc));
        return rc;
    }
    if (!strcmp(have, mine))
        return 0;
    bool hmac_differs = strncmp(have, mine, 35) != 0;
    bool enc_differs = strlen(have) != strlen(mine) || strcmp(have + 35, mine + 35) != 0;
    gh_buf_printf(err,
                  "store: this node's secrets differ from those the %s database was written "
                  "with (%s%s%s differs from the key check value it holds): every node of a "
                  "cluster needs the same keys (secrets.file, GATEHOUSE_HMAC_KEY and "
                  "GATEHOUSE_ENC_KEY, or [secrets]); refusing to start",
                  s->be->name, hmac_differs ? "hmac_key" : "",
                  hmac_differs && enc_differs ? " and " : "", enc_differs ? "enc_key" : "");
    return GH_EPERM;
}

int gh_store_open(const struct gh_store_options *o, struct gh_store **out, struct gh_buf *err)
{
    const struct gh_store_backend *be = backend_named(o->backend);
    if (!be) {
        gh_buf_printf(err, "store: unknown backend '%.32s' (sqlite or postgres)", o->backend);
        return GH_EINVAL;
    }
    struct gh_store *s = calloc(1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->be = be;
    s->o = *o;
    s->o.path = o->path ? strdup(o->path) : NULL;
    s->o.url = o->url ? strdup(o->url) : NULL;
    s->o.backend = be->name;
    s->o.enc_key = s->enc_key;
    if ((o->path && !s->o.path) || (o->url && !s->o.url)) {
        store_free(s);
        return GH_ENOMEM;
    }
    memcpy(s->enc_key, o->enc_key, 32);
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    do
        randombytes_buf(&s->node, sizeof s->node);
    while (!s->node);
    if (o->hmac_key) {
        memcpy(s->hmac_key, o->hmac_key, 32);
        s->o.hmac_key = s->hmac_key;
    }
    if (conn_open(s, &s->wconn, true, err)) {
        store_free(s);
        return GH_EIO;
    }
    int krc = key_check(s, err);
    if (krc) {
        be->close(&s->wconn);
        store_free(s);
        return krc;
    }
    s->nreaders = GH_MIN(GH_MAX(o->readers, 1u), (unsigned)READERS_MAX);
    for (unsigned i = 0; i < s->nreaders; i++) {
        if (conn_open(s, &s->rconn[i], false, err)) {
            for (unsigned k = 0; k < i; k++)
                be->close(&s->rconn[k]);
            be->close(&s->wconn);
            store_free(s);
            return GH_EIO;
        }
    }
    char labels[48];
    snprintf(labels, sizeof labels, "backend=\"%s\"", be->name);
    s->m_unavailable = gh_metrics_counter(
        "gatehouse_store_unavailable_total", labels,
        "store jobs answered busy without running because the database could not be reached");
    s->m_up = gh_metrics_gauge("gatehouse_store_up", labels,
                               "1 while the store's writer reaches its database, 0 after it could "
                               "not (until it does again)");
    if (s->m_up)
        atomic_store(s->m_up, 1);
    if (be->notify) {
        m_sent = gh_metrics_counter("gatehouse_store_messages_sent_total", "",
                                    "messages to the other nodes queued in a write transaction "
                                    "(NOTIFY; delivered at its commit)");
        s->m_received =
            gh_metrics_counter("gatehouse_store_messages_received_total", "",
                               "messages of other nodes heard by this node's listener (LISTEN)");
        s->m_ignored = gh_metrics_counter("gatehouse_store_messages_ignored_total", "",
                                          "payloads heard that were not a message (dropped)");
        s->m_reconnects = gh_metrics_counter(
            "gatehouse_store_listener_reconnects_total", "",
            "new listener connections after the first (messages may have been missed: the "
            "settings are read again, cached credentials are re-read within [store] cache_ttl)");
        s->m_listen_up = gh_metrics_gauge("gatehouse_store_listener_up", "",
                                          "1 while the listener hears the other nodes");
    }
    unsigned qmax = o->queue_max ? o->queue_max : 10000;
    queue_init(&s->wq, qmax);
    queue_init(&s->rq, qmax);
    pthread_create(&s->writer, NULL, writer_main, s);
    for (unsigned i = 0; i < s->nreaders; i++) {
        s->rargs[i].s = s;
        s->rargs[i].idx = i;
        pthread_create(&s->readers[i], NULL, reader_main, &s->rargs[i]);
    }
    *out = s;
    return 0;
}

static void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void gh_store_close(struct gh_store *s)
{
    if (!s)
        return;
    gh_store_listen_stop(s);
    queue_close(&s->rq);
    for (unsigned i = 0; i < s->nreaders; i++)
        pthread_join(s->readers[i], NULL);
    queue_close(&s->wq);
    pthread_join(s->writer, NULL);
    for (unsigned i = 0; i < s->nreaders; i++)
        s->be->close(&s->rconn[i]);
    s->be->close(&s->wconn);
    store_free(s);
}

int gh_store_write(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                   gh_store_done_fn done)
{
    return queue_push(&s->wq, fn, arg, w, done, true);
}

int gh_store_read(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                  gh_store_done_fn done)
{
    return queue_push(&s->rq, fn, arg, w, done, true);
}

int gh_store_read_behind(struct gh_store *s, gh_store_fn fn, void *arg, struct gh_worker *w,
                         gh_store_done_fn done)
{
    return queue_push(&s->rq, fn, arg, w, done, false);
}

int gh_store_read_now(struct gh_store *s, gh_store_fn fn, void *arg)
{
    struct gh_store_conn c;
    struct gh_buf err;
    gh_buf_init(&err, 512);
    int rc = conn_open(s, &c, false, &err);
    if (rc) {
        gh_log(GH_LOG_ERROR, "store_error", "%s", err.data ? err.data : "open failed");
        gh_buf_dispose(&err);
        return rc;
    }
    gh_buf_dispose(&err);
    rc = fn(&c, arg);
    s->be->close(&c);
    return rc;
}

unsigned gh_store_pending(struct gh_store *s)
{
    pthread_mutex_lock(&s->wq.mu);
    unsigned n = s->wq.n;
    pthread_mutex_unlock(&s->wq.mu);
    pthread_mutex_lock(&s->rq.mu);
    n += s->rq.n;
    pthread_mutex_unlock(&s->rq.mu);
    return n;
}

/* ---- phone sealing, shared by the backends ---- */

size_t gh_store_seal(const uint8_t key[32], const void *in, size_t len, uint8_t *out)
{
    randombytes_buf(out, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(out + crypto_secretbox_NONCEBYTES, in, len, out, key);
    return crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len;
}

long gh_store_unseal(const uint8_t key[32], const uint8_t *sealed, size_t len, uint8_t *out,
                     size_t cap)
{
    size_t overhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    if (!sealed || len < overhead || len - overhead > cap ||
        crypto_secretbox_open_easy(out, sealed + crypto_secretbox_NONCEBYTES,
                                   len - crypto_secretbox_NONCEBYTES, sealed, key))
        return -1;
    return (long)(len - overhead);
}

size_t gh_store_phone_seal(const uint8_t key[32], const char *phone, uint8_t *out)
{
    return gh_store_seal(key, phone, strnlen(phone, GH_PHONE_MAX - 1), out);
}

void gh_store_phone_open(const uint8_t key[32], const uint8_t *sealed, size_t len, char *phone)
{
    size_t overhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    phone[0] = 0;
    if (!sealed || len <= overhead || len - overhead >= GH_PHONE_MAX)
        return;
    if (crypto_secretbox_open_easy((uint8_t *)phone, sealed + crypto_secretbox_NONCEBYTES,
                                   len - crypto_secretbox_NONCEBYTES, sealed, key))
        phone[0] = 0; /* wrong key: the number stays unknown */
    else
        phone[len - overhead] = 0;
}

/* ---- messages between nodes ---- */

bool gh_store_shared(const struct gh_store *s)
{
    return s && s->be->notify != NULL;
}

/* Queues a message in c's transaction (postgres; nothing elsewhere). */
static int publish(struct gh_store_conn *c, char kind, const uint8_t *hash, uint64_t user_id,
                   const char *name)
{
    if (!c->be->notify)
        return 0;
    struct gh_store_msg m = {.node = c->node, .kind = kind, .user_id = user_id};
    if (hash)
        memcpy(m.hash, hash, 32);
    if (name)
        snprintf(m.name, sizeof m.name, "%s", name);
    char text[GH_STORE_MSG_MAX];
    if (gh_store_msg_encode(&m, text, sizeof text) < 0)
        return 0; /* a setting no node listens to (its name is no message) */
    int rc = c->be->notify(c, text);
    if (!rc && m_sent)
        atomic_fetch_add_explicit(m_sent, 1, memory_order_relaxed);
    return rc;
}

/* A write that succeeded, and its message: the write's code, else the
 * message's (a job whose message could not be queued fails whole). */
static int published(int rc, struct gh_store_conn *c, char kind, const uint8_t *hash,
                     uint64_t user_id, const char *name)
{
    if (rc < 0)
        return rc;
    int prc = publish(c, kind, hash, user_id, name);
    return prc ? prc : rc;
}

int gh_store_on_credentials(struct gh_store *s, gh_store_cred_fn fn, void *arg)
{
    if (s->listening)
        return GH_EINVAL;
    s->cred_fn = fn;
    s->cred_arg = arg;
    return 0;
}

int gh_store_on_setting(struct gh_store *s, const char *name, gh_store_setting_fn fn, void *arg)
{
    if (s->listening || !gh_store_setting_name_ok(name))
        return GH_EINVAL;
    if (s->nsubs >= SETTING_SUBS_MAX)
        return GH_ETOOBIG;
    snprintf(s->subs[s->nsubs].name, sizeof s->subs[s->nsubs].name, "%s", name);
    s->subs[s->nsubs].fn = fn;
    s->subs[s->nsubs].arg = arg;
    s->nsubs++;
    return 0;
}

static void on_payload(const char *payload, size_t len, void *arg)
{
    struct gh_store *s = arg;
    struct gh_store_msg m;
    if (gh_store_msg_decode(payload, len, &m)) {
        if (s->m_ignored)
            atomic_fetch_add_explicit(s->m_ignored, 1, memory_order_relaxed);
        return;
    }
    if (m.node == s->node)
        return; /* ours: this node changed its memory when it wrote */
    if (s->m_received)
        atomic_fetch_add_explicit(s->m_received, 1, memory_order_relaxed);
    if (m.kind != GH_STORE_MSG_SETTING) {
        if (s->cred_fn)
            s->cred_fn(&m, s->cred_arg);
        return;
    }
    for (unsigned i = 0; i < s->nsubs; i++)
        if (!strcmp(s->subs[i].name, m.name))
            s->subs[i].fn(&s->lconn, m.name, s->subs[i].arg);
}

static void *listener_main(void *data)
{
    struct gh_store *s = data;
    bool first = true;
    for (;;) {
        struct pollfd pf = {.fd = s->stop_pipe[0], .events = POLLIN};
        if (poll(&pf, 1, 0) > 0)
            break;
        bool fresh = false;
        int rc = s->be->listen(&s->lconn, s->stop_pipe[0], LISTEN_WAIT_MS, on_payload, s, &fresh);
        if (s->m_listen_up)
            atomic_store_explicit(s->m_listen_up, rc == 0, memory_order_relaxed);
        if (!fresh)
            continue;
        if (!first && s->m_reconnects)
            atomic_fetch_add_explicit(s->m_reconnects, 1, memory_order_relaxed);
        if (!first)
            gh_log(GH_LOG_INFO, "store_listener_reconnected",
                   "hearing the other nodes again; re-reading %u shared settings", s->nsubs);
        /* what changed while nobody listened: read every setting again
         * (the first time too: a change between the start-up load and the
         * LISTEN) */
        for (unsigned i = 0; i < s->nsubs; i++)
            s->subs[i].fn(&s->lconn, s->subs[i].name, s->subs[i].arg);
        first = false;
    }
    return NULL;
}

int gh_store_listen_start(struct gh_store *s)
{
    if (!s->be->listen || !s->o.listen || s->listening)
        return 0;
    struct gh_buf err;
    gh_buf_init(&err, 512);
    s->lconn = (struct gh_store_conn){
        .be = s->be, .enc_key = s->enc_key, .node = s->node, .listener = true};
    int rc = s->be->open(&s->lconn, &s->o, false, &err);
    if (rc) {
        gh_log(GH_LOG_ERROR, "store_error", "listener: %s", err.data ? err.data : "open failed");
        gh_buf_dispose(&err);
        return GH_EIO;
    }
    gh_buf_dispose(&err);
    if (pipe2(s->stop_pipe, O_CLOEXEC)) {
        s->be->close(&s->lconn);
        return GH_EIO;
    }
    if (pthread_create(&s->listener, NULL, listener_main, s)) {
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
        s->stop_pipe[0] = s->stop_pipe[1] = -1;
        s->be->close(&s->lconn);
        return GH_EIO;
    }
    s->listening = true;
    return 0;
}

void gh_store_listen_stop(struct gh_store *s)
{
    if (!s || !s->listening)
        return;
    char b = 1;
    ssize_t n = write(s->stop_pipe[1], &b, 1);
    (void)n;
    pthread_join(s->listener, NULL);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    s->be->close(&s->lconn);
    s->listening = false;
}

/* ---- data functions: the connection's backend ---- */

int gh_store_user_insert(struct gh_store_conn *c, struct gh_user *u)
{
    return c->be->user_insert(c, u);
}

int gh_store_user_by_phone(struct gh_store_conn *c, const uint8_t phone_hash[32],
                           struct gh_user *out)
{
    return c->be->user_by_phone(c, phone_hash, out);
}

int gh_store_user_by_id(struct gh_store_conn *c, uint64_t id, struct gh_user *out)
{
    return c->be->user_by_id(c, id, out);
}

int gh_store_user_set_password(struct gh_store_conn *c, uint64_t id, const char *pw_hash)
{
    return c->be->user_set_password(c, id, pw_hash);
}

int gh_store_user_login_result(struct gh_store_conn *c, uint64_t id, bool success, uint64_t now_ms)
{
    return c->be->user_login_result(c, id, success, now_ms);
}

int gh_store_user_set_disabled(struct gh_store_conn *c, uint64_t id, uint64_t disabled_ms)
{
    int rc = c->be->user_set_disabled(c, id, disabled_ms);
    return disabled_ms ? published(rc, c, GH_STORE_MSG_USER, NULL, id, NULL) : rc;
}

int gh_store_user_delete(struct gh_store_conn *c, uint64_t id)
{
    return published(c->be->user_delete(c, id), c, GH_STORE_MSG_USER, NULL, id, NULL);
}

int gh_store_session_insert(struct gh_store_conn *c, struct gh_store_session *s)
{
    return c->be->session_insert(c, s);
}

int gh_store_session_delete(struct gh_store_conn *c, const uint8_t hash[32])
{
    return published(c->be->session_delete(c, hash), c, GH_STORE_MSG_SESSION, hash, 0, NULL);
}

int gh_store_sessions_delete_user(struct gh_store_conn *c, uint64_t user_id)
{
    return published(c->be->sessions_delete_user(c, user_id), c, GH_STORE_MSG_USER, NULL, user_id,
                     NULL);
}

int gh_store_session_by_hash(struct gh_store_conn *c, const uint8_t hash[32], uint64_t now_ms,
                             struct gh_store_session *out)
{
    return c->be->session_by_hash(c, hash, now_ms, out);
}

int gh_store_sessions_each(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms,
                           void (*fn)(const struct gh_store_session *, void *), void *arg)
{
    return c->be->sessions_each(c, user_id, now_ms, fn, arg);
}

int gh_store_key_insert(struct gh_store_conn *c, struct gh_store_key *k)
{
    return c->be->key_insert(c, k);
}

int gh_store_key_get(struct gh_store_conn *c, uint64_t id, struct gh_store_key *out)
{
    return c->be->key_get(c, id, out);
}

int gh_store_key_revoke(struct gh_store_conn *c, uint64_t user_id, uint64_t id, uint64_t now_ms,
                        struct gh_store_key *out)
{
    int rc = c->be->key_revoke(c, user_id, id, now_ms, out);
    return published(rc, c, GH_STORE_MSG_KEY, out->hash, 0, NULL);
}

int gh_store_key_by_hash(struct gh_store_conn *c, const uint8_t hash[32], struct gh_store_key *out)
{
    return c->be->key_by_hash(c, hash, out);
}

int gh_store_key_touch(struct gh_store_conn *c, uint64_t id, uint64_t last_used_ms)
{
    return c->be->key_touch(c, id, last_used_ms);
}

int gh_store_keys_revoke_user(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms)
{
    return published(c->be->keys_revoke_user(c, user_id, now_ms), c, GH_STORE_MSG_USER, NULL,
                     user_id, NULL);
}

int gh_store_keys_each(struct gh_store_conn *c, uint64_t user_id, bool include_revoked,
                       void (*fn)(const struct gh_store_key *, void *), void *arg)
{
    return c->be->keys_each(c, user_id, include_revoked, fn, arg);
}

unsigned gh_store_keys_live_count(struct gh_store_conn *c, uint64_t user_id)
{
    return c->be->keys_live_count(c, user_id);
}

int gh_store_audit_insert(struct gh_store_conn *c, const struct gh_store_audit *a)
{
    return c->be->audit_insert(c, a);
}

int gh_store_audit_each(struct gh_store_conn *c, uint64_t user_id, unsigned limit,
                        void (*fn)(const struct gh_store_audit *, void *), void *arg)
{
    return c->be->audit_each(c, user_id, limit, fn, arg);
}

int gh_store_user_newest_before(struct gh_store_conn *c, uint64_t before_ms, uint64_t *id)
{
    return c->be->user_newest_before(c, before_ms, id);
}

int gh_store_usage_add(struct gh_store_conn *c, const struct gh_store_usage *u)
{
    return c->be->usage_add(c, u);
}

int gh_store_usage_each(struct gh_store_conn *c, uint32_t from, unsigned limit,
                        void (*fn)(const struct gh_store_usage *, void *), void *arg)
{
    return c->be->usage_each(c, from, limit, fn, arg);
}

int gh_store_setting_get(struct gh_store_conn *c, const char *name, struct gh_buf *out)
{
    return c->be->setting_get(c, name, out);
}

int gh_store_setting_put(struct gh_store_conn *c, const char *name, const char *value)
{
    return published(c->be->setting_put(c, name, value), c, GH_STORE_MSG_SETTING, NULL, 0, name);
}

int gh_store_sms_code_put(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                          uint64_t expires_ms, unsigned tries)
{
    return c->be->sms_code_put ? c->be->sms_code_put(c, key, hash, expires_ms, tries) : GH_EINVAL;
}

int gh_store_sms_code_check(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                            uint64_t now_ms, int *result)
{
    return c->be->sms_code_check ? c->be->sms_code_check(c, key, hash, now_ms, result) : GH_EINVAL;
}

int gh_store_sms_outbox_add(struct gh_store_conn *c, const void *msg, size_t len, uint64_t lease_ms,
                            uint64_t *id)
{
    if (len > GH_STORE_OUTBOX_MSG_MAX)
        return GH_ETOOBIG;
    return c->be->sms_outbox_add ? c->be->sms_outbox_add(c, msg, len, lease_ms, id) : GH_EINVAL;
}

int gh_store_sms_outbox_delete(struct gh_store_conn *c, uint64_t id)
{
    return c->be->sms_outbox_delete ? c->be->sms_outbox_delete(c, id) : GH_EINVAL;
}

int gh_store_sms_outbox_claim(struct gh_store_conn *c, uint64_t now_ms, uint64_t lease_ms,
                              unsigned max,
                              void (*fn)(uint64_t id, const void *msg, size_t len, void *arg),
                              void *arg)
{
    return c->be->sms_outbox_claim ? c->be->sms_outbox_claim(c, now_ms, lease_ms, max, fn, arg)
                                   : GH_EINVAL;
}
