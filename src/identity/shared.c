/* This module implements the documents every node of a cluster keeps the
 * same (a store other nodes write, PostgreSQL): each is a settings row
 * ("policy", "status", "shield", and the gateway's "quotas"). The node
 * where an operator changed one writes it; the write's transaction carries
 * a message (store.h) on which every other node's listener thread reads
 * the row again and applies it. A text this node already holds (it wrote
 * it, or applied it) is not applied again. Last commit wins. */
#include "identity/internal.h"

#include <pthread.h>

#define DOC_MAX (16u << 20) /* the largest document read back */

struct id_doc {
    const char *name;
    int (*apply)(const char *text, void *arg); /* another node's version; 0 or GH_EINVAL */
    void *arg;
    pthread_mutex_t mu;
    char *seen; /* the text this node last wrote, loaded or applied */
};

bool id_doc_note(struct id_doc *d, const char *text)
{
    pthread_mutex_lock(&d->mu);
    bool same = d->seen && !strcmp(d->seen, text);
    if (!same) {
        free(d->seen);
        d->seen = strdup(text);
    }
    pthread_mutex_unlock(&d->mu);
    return !same;
}

/* Reads d's row on c and applies it when it is news. */
static int doc_read(struct gh_store_conn *c, void *arg)
{
    struct id_doc *d = arg;
    struct gh_buf v;
    gh_buf_init(&v, DOC_MAX);
    int rc = gh_store_setting_get(c, d->name, &v);
    if (!rc)
        rc = gh_buf_append(&v, "", 1);
    /* under d's lock, so that what it applies to is never gone meanwhile
     * (gh_shared_doc_close) */
    pthread_mutex_lock(&d->mu);
    bool news = !rc && d->apply && (!d->seen || strcmp(d->seen, v.data));
    if (news) {
        free(d->seen);
        d->seen = strdup(v.data);
        if (d->apply(v.data, d->arg))
            gh_log(GH_LOG_WARN, "shared_state", "the stored %s is not valid here: ignored",
                   d->name);
        else
            gh_log(GH_LOG_INFO, "shared_state", "%s from another node applied", d->name);
    }
    pthread_mutex_unlock(&d->mu);
    gh_buf_dispose(&v);
    return rc == GH_ENOTFOUND ? 0 : rc;
}

static void on_setting(struct gh_store_conn *c, const char *name, void *arg)
{
    (void)name;
    doc_read(c, arg);
}

struct doc_write {
    struct id_doc *d;
    char text[];
};

static int doc_write_fn(struct gh_store_conn *c, void *arg)
{
    struct doc_write *w = arg;
    return gh_store_setting_put(c, w->d->name, w->text);
}

static void doc_write_done(struct gh_worker *w, void *arg, int rc)
{
    (void)w;
    struct doc_write *dw = arg;
    if (rc)
        gh_log(GH_LOG_ERROR, "shared_state",
               "%s could not be stored (%s): the other nodes keep the previous one", dw->d->name,
               gh_strerror(rc));
    free(dw);
}

/* Stores text, this node's change (in force here already). Any thread. */
static void doc_save(struct id_doc *d, const char *text)
{
    size_t n = strlen(text);
    struct doc_write *w = malloc(sizeof *w + n + 1);
    if (!w)
        return;
    w->d = d;
    memcpy(w->text, text, n + 1);
    id_doc_note(d, text);
    if (gh_store_write(ids.store, doc_write_fn, w, NULL, doc_write_done)) {
        gh_log(GH_LOG_ERROR, "shared_state", "%s not stored: the store's queue is full", d->name);
        free(w);
    }
}

int id_doc_subscribe(struct id_doc *d)
{
    return gh_store_on_setting(ids.store, d->name, on_setting, d);
}

/* Subscribes d and applies what the store holds now (main thread, start). */
static int doc_share(struct id_doc *d)
{
    int rc = id_doc_subscribe(d);
    return rc ? rc : gh_store_read_now(ids.store, doc_read, d);
}

/* ---- the registration policy ---- */

static int apply_policy(const char *text, void *arg)
{
    (void)arg;
    return gh_policy_apply_stored(text);
}

struct id_doc id_policy_doc = {
    .name = "policy", .apply = apply_policy, .mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the status page's incidents and overrides ---- */

static int apply_status(const char *text, void *arg)
{
    (void)arg;
    struct gh_status *st = gh_status_instance();
    struct gh_buf err;
    gh_buf_init(&err, 256);
    int rc = st ? gh_status_apply_shared(st, text, &err) : GH_EINVAL;
    gh_buf_dispose(&err);
    return rc;
}

static struct id_doc status_doc = {
    .name = "status", .apply = apply_status, .mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the shield's block list and level pin ---- */

static int apply_shield(const char *text, void *arg)
{
    (void)arg;
    return gh_shield_apply_shared(text);
}

static struct id_doc shield_doc = {
    .name = "shield", .apply = apply_shield, .mu = PTHREAD_MUTEX_INITIALIZER};

static void save_doc(const char *doc, void *data)
{
    doc_save(data, doc);
}

int gh_identity_share_state(void)
{
    if (!ids.store || !gh_store_shared(ids.store))
        return 0;
    struct gh_status *st = gh_status_instance();
    if (st) {
        int rc = doc_share(&status_doc);
        if (rc)
            return rc;
        gh_status_set_share(st, save_doc, &status_doc);
    }
    int rc = doc_share(&shield_doc);
    if (!rc)
        gh_shield_share(save_doc, &shield_doc);
    return rc;
}

/* ---- documents of the subsystems above (the gateway's quotas) ---- */

#define EXTRA_MAX 4

struct gh_shared_doc {
    struct id_doc d;
    char name[GH_STORE_SETTING_NAME_MAX + 1];
};

static struct gh_shared_doc extra[EXTRA_MAX];
static unsigned nextra;

struct gh_shared_doc *gh_identity_share_doc(const char *name,
                                            int (*apply)(const char *text, void *arg), void *arg)
{
    if (!ids.store || !gh_store_shared(ids.store) || nextra >= EXTRA_MAX ||
        !gh_store_setting_name_ok(name))
        return NULL;
    struct gh_shared_doc *x = &extra[nextra];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->d = (struct id_doc){.name = x->name, .apply = apply, .arg = arg};
    pthread_mutex_init(&x->d.mu, NULL);
    if (doc_share(&x->d)) {
        pthread_mutex_destroy(&x->d.mu);
        return NULL;
    }
    nextra++;
    return x;
}

void gh_shared_doc_close(struct gh_shared_doc *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->d.mu);
    d->d.apply = NULL;
    pthread_mutex_unlock(&d->d.mu);
}

void gh_shared_doc_save(struct gh_shared_doc *d, const char *text)
{
    if (d && text)
        doc_save(&d->d, text);
}

void id_docs_dispose(void)
{
    for (unsigned i = 0; i < nextra; i++) {
        free(extra[i].d.seen);
        pthread_mutex_destroy(&extra[i].d.mu);
    }
    nextra = 0;
    gh_shield_share(NULL, NULL); /* the shield outlives identity */
    struct id_doc *docs[] = {&id_policy_doc, &status_doc, &shield_doc};
    for (size_t i = 0; i < GH_ARRAY_LEN(docs); i++) {
        pthread_mutex_lock(&docs[i]->mu);
        free(docs[i]->seen);
        docs[i]->seen = NULL;
        pthread_mutex_unlock(&docs[i]->mu);
    }
}
