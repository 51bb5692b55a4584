/* The status page's model, private to src/status: the structures that
 * status.c (state, persistence), render.c (JSON and HTML) and routes.c
 * share. Every field is guarded by gh_status.mu unless said otherwise. */
#pragma once

#include "status/status.h"

#include <pthread.h>

#define GH_STATUS_DAYS          90
#define GH_STATUS_INCIDENTS_MAX 100 /* kept; the oldest resolved is dropped first */
#define GH_STATUS_UPDATES_MAX   50  /* per incident */
#define GH_STATUS_NAME_MAX      200 /* bytes */
#define GH_STATUS_BODY_MAX      4000
#define GH_STATUS_REASON_MAX    200
#define GH_STATUS_NODATA        255 /* a day the server did not see */
#define GH_STATUS_ID_LEN        12

struct gh_status_component {
    const char *id;
    const char *name[2]; /* English, Chinese */
    const char *desc[2];
    unsigned position;
    uint64_t created_ms, updated_ms;
    int auto_state;
    char auto_reason[GH_STATUS_REASON_MAX + 1];
    int override; /* -1: none */
    /* daily history: slot = day % GH_STATUS_DAYS, valid when hday matches */
    uint32_t last_day; /* the latest day noted; 0 = never */
    uint32_t hday[GH_STATUS_DAYS];
    uint8_t hworst[GH_STATUS_DAYS];
};

struct gh_status_update {
    char id[GH_STATUS_ID_LEN + 1];
    int status;
    char *body, *body_zh; /* body_zh may be NULL */
    uint64_t created_ms, display_ms;
};

struct gh_status_incident {
    char id[GH_STATUS_ID_LEN + 1];
    char *name, *name_zh;
    int status, impact;
    uint64_t created_ms, updated_ms, monitoring_ms, resolved_ms; /* 0 = not yet */
    bool is_auto;                                                /* opened by the attack level */
    unsigned ncomponents;
    int components[GH_STATUS_NCOMP];
    unsigned nupdates;
    struct gh_status_update updates[GH_STATUS_UPDATES_MAX]; /* oldest first */
};

struct gh_status {
    pthread_mutex_t mu;
    /* options, copied */
    char *data_dir, *path, *page_name, *page_url;
    bool read_only;
    bool incident_on_elevated;
    uint64_t auto_resolve_delay_ms;
    char *attack_title[2], *attack_body[2], *attack_resolved[2];
    uint64_t (*clock)(void *);
    void *clock_data;

    struct gh_status_component comps[GH_STATUS_NCOMP];
    struct gh_status_incident *inc[GH_STATUS_INCIDENTS_MAX]; /* oldest first */
    unsigned ninc;
    uint64_t updated_ms;      /* the page's updated_at */
    bool history_gap_unknown; /* just loaded: days since the last run had no data */

    /* attack level */
    int attack_level;
    uint64_t calm_since_ms;                   /* 0 = not calm, or nothing to close */
    char auto_incident[GH_STATUS_ID_LEN + 1]; /* "" = none open */

    uint64_t seq, saved_seq; /* changes, and the last one written */
    /* the operator's part (incidents, overrides) shared with other nodes:
     * changes made here, the last one handed to share */
    uint64_t op_seq, op_shared;
    void (*share)(const char *doc, void *data);
    void *share_data;
    uint32_t snap_day;

    /* the snapshot pointer: snap_mu is held only to load and reference it */
    pthread_mutex_t snap_mu;
    struct gh_status_snap *snap;

    /* the helper thread */
    pthread_t thread;
    pthread_cond_t cond;
    bool thread_started, stopping;
};

/* Effective state: the override when set, else the automatic one. */
static inline int gh_status_comp_state(const struct gh_status_component *c)
{
    return c->override >= 0 ? c->override : c->auto_state;
}

uint64_t gh_status_now(const struct gh_status *st);
/* Writes data to path through a temporary file created with mode (less the
 * process's umask), fsync and rename, then syncs dir. 0, GH_EINVAL (path
 * too long) or GH_EIO (errno set). */
int gh_status_write_atomic(const char *dir, const char *path, const char *data, size_t len,
                           unsigned mode);

/* render.c. Every function expects st->mu held. */
/* Overall level 0..3 from the components and the unresolved incidents. */
int gh_status_indicator_locked(const struct gh_status *st);
int gh_status_render_locked(const struct gh_status *st, enum gh_status_doc doc,
                            const struct gh_status_html_links *links, struct gh_buf *out);
int gh_status_render_incident_locked(const struct gh_status *st,
                                     const struct gh_status_incident *in, struct gh_buf *out);
/* With admin-only fields (auto state, reason, override) when admin. */
int gh_status_render_component_locked(const struct gh_status *st,
                                      const struct gh_status_component *c, bool admin,
                                      struct gh_buf *out);
