/* This module implements the PostgreSQL backend of the store (backend.h)
 * on libpq: one connection per store thread (the pool is the writer and
 * the readers, bounded by [store] readers), reconnecting by itself with a
 * growing pause when the server is gone, versioned migrations serialized
 * across nodes by an advisory lock, and the data functions of store.h.
 * Every call blocks, so only store threads (and the main thread at
 * start-up) make them. */
#include "store/backend.h"

#include "core/log.h"
#include "core/pgurl.h"

#include <endian.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OID_BYTEA 17
#define OID_INT8  20
#define OID_TEXT  25

#define ARGS_MAX          9
#define PREPARED_MAX      48   /* statements prepared per connection (the data functions use ~30) */
#define RETRY_MIN_MS      100  /* first pause after a failed connection attempt */
#define RETRY_MAX_MS      2000 /* the pause doubles up to this */
#define ANSWER_MARGIN_MS  2000 /* waited for an answer past statement_timeout */
#define ANSWER_DEFAULT_MS 60000  /* without a statement_timeout */
#define ANSWER_MIGRATE_MS 960000 /* a migration: its statement_timeout (15 min) and a minute */
#define MIGRATE_LOCK      "7451030119" /* pg_advisory_xact_lock key of migrations */
#define CHANNEL           "gatehouse"  /* LISTEN/NOTIFY channel of the messages between nodes */

struct pg {
    PGconn *conn;
    char *url;
    char where[256];  /* the URL without its password, for logs */
    char timeout[24]; /* connect_timeout, seconds */
    char options[96]; /* server settings of every session */
    uint64_t next_try_ms, pause_ms;
    uint64_t answer_ms;   /* longest wait for an answer before the connection is dropped */
    bool down;            /* unreachable (logged once per outage) */
    bool release_pending; /* the last job's RELEASE goes with the next SAVEPOINT */
    bool listener;        /* the listener thread's connection */
    bool listening;       /* LISTEN issued on conn */
    /* statements prepared on conn, by the address of their SQL text (the
     * data functions' SQL are string literals); s<i> is the name */
    const char *prepared[PREPARED_MAX];
    unsigned nprepared;
};

/* Each entry moves the schema one version up; never edit a released one,
 * append a new one. The same tables as sqlite.c, in PostgreSQL's types. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE users ("
    " id bigserial PRIMARY KEY,"
    " phone_hash bytea NOT NULL UNIQUE,"
    " phone_enc bytea NOT NULL,"
    " region text NOT NULL,"
    " calling_code bigint NOT NULL,"
    " pw_hash text NOT NULL,"
    " created_ms bigint NOT NULL,"
    " last_login_ms bigint NOT NULL DEFAULT 0,"
    " failed_logins bigint NOT NULL DEFAULT 0,"
    " disabled_ms bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE sessions ("
    " id bigserial PRIMARY KEY,"
    " user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " hash bytea NOT NULL UNIQUE,"
    " created_ms bigint NOT NULL,"
    " expires_ms bigint NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE api_keys ("
    " id bigserial PRIMARY KEY,"
    " user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " hash bytea NOT NULL UNIQUE,"
    " prefix text NOT NULL,"
    " name text NOT NULL,"
    " created_ms bigint NOT NULL,"
    " last_used_ms bigint NOT NULL DEFAULT 0,"
    " revoked_ms bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "CREATE TABLE audit ("
    " id bigserial PRIMARY KEY,"
    " ts_ms bigint NOT NULL,"
    " event text NOT NULL,"
    " user_id bigint NOT NULL DEFAULT 0,"
    " detail text NOT NULL DEFAULT '{}');"
    "CREATE INDEX audit_user ON audit(user_id, id);"
    "CREATE TABLE settings (name text PRIMARY KEY, value text NOT NULL);",
    /* 2: usage per UTC day, key and user (it was data_dir/usage.jsonl) */
    "CREATE TABLE usage ("
    " day bigint NOT NULL,"
    " key_id bigint NOT NULL,"
    " user_id bigint NOT NULL,"
    " requests bigint NOT NULL DEFAULT 0,"
    " prompt_tokens bigint NOT NULL DEFAULT 0,"
    " completion_tokens bigint NOT NULL DEFAULT 0,"
    " cached_tokens bigint NOT NULL DEFAULT 0,"
    " reasoning_tokens bigint NOT NULL DEFAULT 0,"
    " cut_short bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (day, key_id, user_id));",
    /* 3: SMS codes shared by the nodes (they were in each node's memory) */
    "CREATE TABLE sms_codes ("
    " key bytea PRIMARY KEY,"
    " code_hash bytea NOT NULL,"
    " expires_ms bigint NOT NULL,"
    " tries bigint NOT NULL);"
    "CREATE INDEX sms_codes_expires ON sms_codes(expires_ms);"
    "CREATE TABLE sms_outbox ("
    " id bigserial PRIMARY KEY,"
    " msg bytea NOT NULL,"
    " lease_ms bigint NOT NULL);"
    "CREATE INDEX sms_outbox_lease ON sms_outbox(lease_ms);",
};

/* ---- connections ---- */

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs ("relation exists, skipping") are not ours to log */
}

static int first_line(const char *s)
{
    return (int)strcspn(s ? s : "", "\n");
}

static PGconn *pg_connect(struct pg *p)
{
    /* ours first: what the URL sets itself wins over them */
    const char *kw[] = {"connect_timeout",
                        "application_name",
                        "options",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        NULL};
    /* the listener has its own name: operators (and the tests) tell it
     * apart in pg_stat_activity */
    const char *val[] = {p->timeout, p->listener ? "gatehouse-listener" : "gatehouse",
                         p->options, "30",
                         "10",       "3",
                         "10000",    p->url,
                         NULL};
    PGconn *conn = PQconnectdbParams(kw, val, 1);
    if (conn && PQstatus(conn) == CONNECTION_OK)
        PQsetNoticeProcessor(conn, quiet, NULL);
    return conn;
}

static void note_lost(struct pg *p)
{
    if (!p->down)
        gh_log(GH_LOG_WARN, "store_unreachable", "PostgreSQL at %s: %.*s", p->where,
               first_line(PQerrorMessage(p->conn)), PQerrorMessage(p->conn));
    p->down = true;
}

/* A live connection, reconnecting when the last one broke, at most once
 * per pause. 0 or GH_EBUSY. */
static int pg_ensure(struct pg *p)
{
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    uint64_t now = gh_now_ms();
    if (now < p->next_try_ms)
        return GH_EBUSY;
    PQfinish(p->conn);
    p->conn = pg_connect(p);
    p->nprepared = 0;
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK) {
        if (p->down)
            gh_log(GH_LOG_INFO, "store_reconnected", "PostgreSQL at %s", p->where);
        p->down = false;
        p->pause_ms = 0;
        return 0;
    }
    note_lost(p);
    PQfinish(p->conn);
    p->conn = NULL;
    p->pause_ms = p->pause_ms ? GH_MIN(p->pause_ms * 2, (uint64_t)RETRY_MAX_MS) : RETRY_MIN_MS;
    p->next_try_ms = now + p->pause_ms;
    return GH_EBUSY;
}

/* The next result of what was sent, waiting until end_ms at most: NULL
 * when there is none left, or when the server did not answer in time (a
 * frozen server, a cut network): then the connection is dropped and *late
 * set, so a store thread never waits on it longer. */
static PGresult *next_result(struct pg *p, uint64_t end_ms, bool *late)
{
    while (PQisBusy(p->conn)) {
        uint64_t now = gh_now_ms();
        struct pollfd pf = {.fd = PQsocket(p->conn), .events = POLLIN};
        int n = now < end_ms ? poll(&pf, 1, (int)GH_MIN(end_ms - now, (uint64_t)INT_MAX)) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            if (!p->down)
                gh_log(GH_LOG_WARN, "store_unreachable",
                       "PostgreSQL at %s did not answer within %llu ms: connection dropped",
                       p->where, (unsigned long long)p->answer_ms);
            p->down = true;
            PQfinish(p->conn);
            p->conn = NULL;
            p->next_try_ms = now + RETRY_MIN_MS;
            *late = true;
            return NULL;
        }
        if (n < 0 || !PQconsumeInput(p->conn))
            break; /* the connection broke: PQgetResult says so */
    }
    return PQgetResult(p->conn);
}

/* What PQexec gives, after a PQsend* call that returned sent: the last
 * result (an error wins), or NULL when nothing could be sent or the answer
 * came too late (the connection dropped). The caller PQclears it. */
static PGresult *answer(struct pg *p, int sent)
{
    if (!sent)
        return NULL;
    uint64_t end = gh_now_ms() + p->answer_ms;
    bool late = false;
    PGresult *keep = NULL, *r;
    while ((r = next_result(p, end, &late))) {
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    if (late) {
        PQclear(keep);
        keep = NULL;
    }
    return keep;
}

/* GH_EEXIST for a constraint, GH_EBUSY when the connection is gone,
 * GH_EIO (logged) otherwise. */
static int pg_fail(struct gh_store_conn *c, const PGresult *r, const char *what)
{
    struct pg *p = c->db;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && !strncmp(state, "23", 2)) /* integrity_constraint_violation */
        return GH_EEXIST;
    if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) {
        note_lost(p);
        p->next_try_ms = 0; /* the next job tries a fresh connection at once */
        return GH_EBUSY;
    }
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(p->conn);
    gh_log(GH_LOG_ERROR, "store_error", "%s: %.*s", what, first_line(msg), msg);
    return GH_EIO;
}

/* Runs sql (no parameters, no result rows). */
static int pg_cmd(struct gh_store_conn *c, const char *sql)
{
    struct pg *p = c->db;
    if (!p->conn)
        return GH_EBUSY;
    PGresult *r = answer(p, PQsendQuery(p->conn, sql));
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_fail(c, r, sql);
    /* COMMIT of a transaction that failed answers ROLLBACK */
    if (!rc && !strcmp(sql, "COMMIT") && strcmp(PQcmdStatus(r), "COMMIT"))
        rc = GH_EIO;
    PQclear(r);
    return rc;
}

static int migrate(struct gh_store_conn *c, struct gh_buf *err)
{
    struct pg *p = c->db;
    for (;;) {
        /* one migration per transaction, under a lock so nodes starting
         * together apply each once */
        PGresult *r = NULL;
        long have = -1;
        /* a migration may outlast [store] statement_timeout; another node's
         * is waited for a minute at most */
        if (!pg_cmd(c, "BEGIN") &&
            !pg_cmd(c, "SET LOCAL lock_timeout = '60s'; SET LOCAL statement_timeout = '15min'")) {
            r = answer(p, PQsendQuery(p->conn,
                                      "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");"
                                      "CREATE TABLE IF NOT EXISTS schema_version ("
                                      " version bigint PRIMARY KEY, applied_ms bigint NOT NULL);"
                                      "SELECT coalesce(max(version), 0) FROM schema_version"));
            if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
                have = strtol(PQgetvalue(r, 0, 0), NULL, 10);
            PQclear(r);
        }
        if (have < 0) {
            gh_buf_printf(err, "store: cannot read the schema version: %.*s",
                          first_line(PQerrorMessage(p->conn)), PQerrorMessage(p->conn));
            goto fail;
        }
        if ((size_t)have > GH_ARRAY_LEN(migrations)) {
            gh_buf_printf(err,
                          "store: database schema version %ld is newer than this gatehouse (%zu)",
                          have, GH_ARRAY_LEN(migrations));
            goto fail;
        }
        if ((size_t)have == GH_ARRAY_LEN(migrations))
            return pg_cmd(c, "COMMIT") ? GH_EIO : 0;
        char mark[128];
        snprintf(mark, sizeof mark, "INSERT INTO schema_version VALUES (%ld, %llu)", have + 1,
                 (unsigned long long)gh_wall_ms());
        if (pg_cmd(c, migrations[have]) || pg_cmd(c, mark) || pg_cmd(c, "COMMIT")) {
            gh_buf_printf(err, "store: migration %ld failed: %.*s", have + 1,
                          first_line(PQerrorMessage(p->conn)), PQerrorMessage(p->conn));
            goto fail;
        }
        gh_log(GH_LOG_INFO, "store_migrated", "schema version %ld", have + 1);
    }
fail:
    if (p->conn)
        PQclear(answer(p, PQsendQuery(p->conn, "ROLLBACK")));
    return GH_EIO;
}

static void pg_close(struct gh_store_conn *c);

static int pg_open(struct gh_store_conn *c, const struct gh_store_options *o, bool writer,
                   struct gh_buf *err)
{
    c->writer = writer;
    if (!o->url || !*o->url) {
        gh_buf_printf(err, "store: backend postgres needs [store] url");
        return GH_EIO;
    }
    struct pg *p = calloc(1, sizeof *p);
    if (!p || !(p->url = strdup(o->url))) {
        free(p);
        gh_buf_printf(err, "store: out of memory");
        return GH_EIO;
    }
    c->db = p;
    p->listener = c->listener;
    if (gh_pgurl_redact(o->url, p->where, sizeof p->where))
        snprintf(p->where, sizeof p->where, "(the configured url)");
    /* the server cancels a statement at statement_timeout; past it and a
     * margin, silence means the server or the network is gone */
    p->answer_ms =
        o->statement_timeout_ms ? o->statement_timeout_ms + ANSWER_MARGIN_MS : ANSWER_DEFAULT_MS;
    uint64_t ct = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    snprintf(p->timeout, sizeof p->timeout, "%llu", (unsigned long long)((ct + 999) / 1000));
    /* synchronous_commit=on: a job's callback runs after its commit is
     * durable, as with SQLite's synchronous=FULL */
    int n = snprintf(p->options, sizeof p->options, "-c synchronous_commit=on");
    if (o->statement_timeout_ms)
        snprintf(p->options + n, sizeof p->options - (size_t)n, " -c statement_timeout=%llu",
                 (unsigned long long)o->statement_timeout_ms);
    p->conn = pg_connect(p);
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        gh_buf_printf(err, "store: cannot connect to PostgreSQL at %s: %.*s", p->where,
                      first_line(PQerrorMessage(p->conn)), PQerrorMessage(p->conn));
        pg_close(c);
        return GH_EIO;
    }
    uint64_t answer_ms = p->answer_ms;
    p->answer_ms = ANSWER_MIGRATE_MS;
    int mrc = writer ? migrate(c, err) : 0;
    p->answer_ms = answer_ms;
    if (mrc) {
        pg_close(c);
        return GH_EIO;
    }
    return 0;
}

static void pg_close(struct gh_store_conn *c)
{
    struct pg *p = c->db;
    if (!p)
        return;
    PQfinish(p->conn);
    free(p->url);
    free(p);
    c->db = NULL;
}

static int pg_tx(struct gh_store_conn *c, enum gh_store_tx step)
{
    struct pg *p = c->db;
    const char *begin = c->writer ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    int rc;
    bool release = p->release_pending;
    p->release_pending = false;
    switch (step) {
    case GH_TX_BEGIN:
        rc = pg_ensure(p);
        if (!rc)
            rc = pg_cmd(c, begin);
        if (rc == GH_EBUSY) {
            /* the server went away since the last job (a restart): nothing
             * ran yet, so one fresh connection may try again now */
            rc = pg_ensure(p);
            if (!rc)
                rc = pg_cmd(c, begin);
        }
        return rc;
    case GH_TX_SAVEPOINT:
        /* one round trip between two jobs instead of two */
        return pg_cmd(c, release ? "RELEASE SAVEPOINT job; SAVEPOINT job" : "SAVEPOINT job");
    case GH_TX_ROLLBACK_TO:
        return pg_cmd(c, "ROLLBACK TO SAVEPOINT job");
    case GH_TX_RELEASE:
        /* a job that swallowed an error left the transaction aborted */
        if (p->conn && PQtransactionStatus(p->conn) == PQTRANS_INERROR) {
            rc = pg_cmd(c, "ROLLBACK TO SAVEPOINT job");
            if (rc)
                return rc;
        }
        p->release_pending = true; /* sent with the next SAVEPOINT; COMMIT releases it */
        return 0;
    case GH_TX_COMMIT:
        return pg_cmd(c, "COMMIT");
    case GH_TX_ROLLBACK:
        if (!p->conn || PQstatus(p->conn) != CONNECTION_OK ||
            PQtransactionStatus(p->conn) == PQTRANS_IDLE)
            return 0;
        return pg_cmd(c, "ROLLBACK");
    }
    return GH_EINVAL;
}

/* ---- queries ---- */

/* Parameters, binary except text. */
struct args {
    int n;
    Oid type[ARGS_MAX];
    const char *val[ARGS_MAX];
    int len[ARGS_MAX];
    int fmt[ARGS_MAX];
    uint64_t be[ARGS_MAX];
};

static void arg_u64(struct args *a, uint64_t v)
{
    GH_ASSERT(a->n < ARGS_MAX);
    a->be[a->n] = htobe64(v);
    a->type[a->n] = OID_INT8;
    a->val[a->n] = (const char *)&a->be[a->n];
    a->len[a->n] = 8;
    a->fmt[a->n++] = 1;
}

static void arg_bytes(struct args *a, const void *p, size_t n)
{
    GH_ASSERT(a->n < ARGS_MAX);
    a->type[a->n] = OID_BYTEA;
    a->val[a->n] = p;
    a->len[a->n] = (int)n;
    a->fmt[a->n++] = 1;
}

static void arg_text(struct args *a, const char *s)
{
    GH_ASSERT(a->n < ARGS_MAX);
    a->type[a->n] = OID_TEXT;
    a->val[a->n] = s;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

/* The name of sql prepared on p's connection (preparing it the first
 * time), or NULL: then the caller sends the text (PQexecParams), which
 * also reports the error. */
static const char *prepared(struct pg *p, const char *sql, const struct args *a, char *name,
                            size_t cap)
{
    unsigned i = 0;
    while (i < p->nprepared && p->prepared[i] != sql)
        i++;
    snprintf(name, cap, "s%u", i);
    if (i < p->nprepared)
        return name;
    if (i >= PREPARED_MAX || PQtransactionStatus(p->conn) == PQTRANS_INERROR)
        return NULL;
    PGresult *r = answer(p, PQsendPrepare(p->conn, name, sql, a->n, a->type));
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        return NULL;
    p->prepared[p->nprepared++] = sql;
    return name;
}

/* Runs sql with a; binary results in *out (the caller PQclears it). 0 or
 * pg_fail's code. */
static int run(struct gh_store_conn *c, const char *sql, const struct args *a, PGresult **out)
{
    struct pg *p = c->db;
    *out = NULL;
    if (!p->conn)
        return GH_EBUSY;
    char name[16];
    const char *stmt = prepared(p, sql, a, name, sizeof name);
    PGresult *r =
        answer(p, stmt ? PQsendQueryPrepared(p->conn, stmt, a->n, a->val, a->len, a->fmt, 1)
                       : PQsendQueryParams(p->conn, sql, a->n, a->type, a->val, a->len, a->fmt, 1));
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *out = r;
        return 0;
    }
    int rc = pg_fail(c, r, "query");
    PQclear(r);
    return rc;
}

/* Runs a statement; *changed (may be NULL) gets the rows it touched. */
static int run_cmd(struct gh_store_conn *c, const char *sql, const struct args *a,
                   uint64_t *changed)
{
    PGresult *r;
    int rc = run(c, sql, a, &r);
    if (!rc && changed)
        *changed = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}

/* GH_ENOTFOUND when the statement touched no row. */
static int run_one(struct gh_store_conn *c, const char *sql, const struct args *a)
{
    uint64_t n = 0;
    int rc = run_cmd(c, sql, a, &n);
    return !rc && !n ? GH_ENOTFOUND : rc;
}

static uint64_t col_u64(const PGresult *r, int row, int col)
{
    const uint8_t *v = (const uint8_t *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    uint64_t x = 0;
    for (int i = 0; i < n && i < 8; i++)
        x = x << 8 | v[i];
    return x;
}

static void col_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%.*s", PQgetlength(r, row, col), PQgetvalue(r, row, col));
}

static void col_blob32(uint8_t *dst, const PGresult *r, int row, int col)
{
    if (PQgetlength(r, row, col) == 32)
        memcpy(dst, PQgetvalue(r, row, col), 32);
    else
        memset(dst, 0, 32);
}

typedef void (*row_fn)(struct gh_store_conn *c, const PGresult *r, int row, void *out);

/* Runs a query expected to give at most one row, decoded by fn into out.
 * GH_ENOTFOUND when none. */
static int run_row(struct gh_store_conn *c, const char *sql, const struct args *a, row_fn fn,
                   void *out)
{
    PGresult *r;
    int rc = run(c, sql, a, &r);
    if (!rc && PQntuples(r) < 1)
        rc = GH_ENOTFOUND;
    if (!rc)
        fn(c, r, 0, out);
    PQclear(r);
    return rc;
}

/* Runs a query row by row (single-row mode: a large table is never held
 * whole), calling fn(c, row, 0, out) for each. */
static int run_each(struct gh_store_conn *c, const char *sql, const struct args *a, row_fn fn,
                    void *out)
{
    struct pg *p = c->db;
    if (!p->conn)
        return GH_EBUSY;
    char name[16];
    const char *stmt = prepared(p, sql, a, name, sizeof name);
    if (!(stmt ? PQsendQueryPrepared(p->conn, stmt, a->n, a->val, a->len, a->fmt, 1)
               : PQsendQueryParams(p->conn, sql, a->n, a->type, a->val, a->len, a->fmt, 1)))
        return pg_fail(c, NULL, "query");
    PQsetSingleRowMode(p->conn);
    int rc = 0;
    PGresult *r;
    uint64_t end = gh_now_ms() + p->answer_ms;
    bool late = false;
    while ((r = next_result(p, end, &late))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !rc)
            fn(c, r, 0, out);
        else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !rc)
            rc = pg_fail(c, r, "query");
        PQclear(r);
    }
    return late ? GH_EBUSY : rc;
}

/* ---- users ---- */

#define USER_COLS                                                                                  \
    "id, phone_hash, phone_enc, region, calling_code, pw_hash, created_ms, last_login_ms,"         \
    " failed_logins, disabled_ms"

static void user_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct gh_user *u = out;
    memset(u, 0, sizeof *u);
    u->id = col_u64(r, row, 0);
    col_blob32(u->phone_hash, r, row, 1);
    gh_store_phone_open(c->enc_key, (const uint8_t *)PQgetvalue(r, row, 2),
                        (size_t)PQgetlength(r, row, 2), u->phone);
    col_text(u->region, sizeof u->region, r, row, 3);
    u->calling_code = (unsigned)col_u64(r, row, 4);
    col_text(u->pw_hash, sizeof u->pw_hash, r, row, 5);
    u->created_ms = col_u64(r, row, 6);
    u->last_login_ms = col_u64(r, row, 7);
    u->failed_logins = (unsigned)col_u64(r, row, 8);
    u->disabled_ms = col_u64(r, row, 9);
}

static void id_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    *(uint64_t *)out = col_u64(r, row, 0);
}

static int pg_user_insert(struct gh_store_conn *c, struct gh_user *u)
{
    uint8_t sealed[GH_STORE_SEAL_MAX];
    struct args a = {0};
    arg_bytes(&a, u->phone_hash, 32);
    arg_bytes(&a, sealed, gh_store_phone_seal(c->enc_key, u->phone, sealed));
    arg_text(&a, u->region);
    arg_u64(&a, u->calling_code);
    arg_text(&a, u->pw_hash);
    arg_u64(&a, u->created_ms);
    return run_row(c,
                   "INSERT INTO users (phone_hash, phone_enc, region, calling_code, pw_hash,"
                   " created_ms) VALUES ($1,$2,$3,$4,$5,$6) RETURNING id",
                   &a, id_row, &u->id);
}

static int pg_user_by_phone(struct gh_store_conn *c, const uint8_t phone_hash[32],
                            struct gh_user *out)
{
    struct args a = {0};
    arg_bytes(&a, phone_hash, 32);
    return run_row(c, "SELECT " USER_COLS " FROM users WHERE phone_hash = $1", &a, user_row, out);
}

static int pg_user_by_id(struct gh_store_conn *c, uint64_t id, struct gh_user *out)
{
    struct args a = {0};
    arg_u64(&a, id);
    return run_row(c, "SELECT " USER_COLS " FROM users WHERE id = $1", &a, user_row, out);
}

static int pg_user_newest_before(struct gh_store_conn *c, uint64_t before_ms, uint64_t *id)
{
    /* walks back from the newest user (the primary key's index): reads
     * only the accounts younger than the cut-off */
    struct args a = {0};
    arg_u64(&a, GH_MIN(before_ms, (uint64_t)INT64_MAX));
    PGresult *r;
    int rc = run(c, "SELECT id FROM users WHERE created_ms < $1 ORDER BY id DESC LIMIT 1", &a, &r);
    if (!rc)
        *id = PQntuples(r) > 0 ? col_u64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

static int pg_user_set_password(struct gh_store_conn *c, uint64_t id, const char *pw_hash)
{
    struct args a = {0};
    arg_text(&a, pw_hash);
    arg_u64(&a, id);
    return run_one(c, "UPDATE users SET pw_hash = $1, failed_logins = 0 WHERE id = $2", &a);
}

static int pg_user_login_result(struct gh_store_conn *c, uint64_t id, bool success, uint64_t now_ms)
{
    struct args a = {0};
    arg_u64(&a, id);
    if (!success)
        return run_one(c, "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1", &a);
    arg_u64(&a, now_ms);
    return run_one(c, "UPDATE users SET failed_logins = 0, last_login_ms = $2 WHERE id = $1", &a);
}

static int pg_user_set_disabled(struct gh_store_conn *c, uint64_t id, uint64_t disabled_ms)
{
    struct args a = {0};
    arg_u64(&a, id);
    arg_u64(&a, disabled_ms);
    return run_one(c, "UPDATE users SET disabled_ms = $2 WHERE id = $1", &a);
}

static int pg_user_delete(struct gh_store_conn *c, uint64_t id)
{
    /* sessions and keys go with it (ON DELETE CASCADE) */
    struct args a = {0};
    arg_u64(&a, id);
    return run_one(c, "DELETE FROM users WHERE id = $1", &a);
}

/* ---- sessions ---- */

#define SESSION_COLS "id, user_id, hash, created_ms, expires_ms"

static void session_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct gh_store_session *s = out;
    s->id = col_u64(r, row, 0);
    s->user_id = col_u64(r, row, 1);
    col_blob32(s->hash, r, row, 2);
    s->created_ms = col_u64(r, row, 3);
    s->expires_ms = col_u64(r, row, 4);
}

static int pg_session_insert(struct gh_store_conn *c, struct gh_store_session *s)
{
    /* never for a disabled account (a sign-in racing the operator) */
    struct args a = {0};
    arg_u64(&a, s->user_id);
    arg_bytes(&a, s->hash, 32);
    arg_u64(&a, s->created_ms);
    arg_u64(&a, s->expires_ms);
    return run_row(c,
                   "INSERT INTO sessions (user_id, hash, created_ms, expires_ms)"
                   " SELECT $1,$2,$3,$4 WHERE NOT EXISTS (SELECT 1 FROM users"
                   " WHERE id = $1 AND disabled_ms != 0) RETURNING id",
                   &a, id_row, &s->id);
}

static int pg_session_delete(struct gh_store_conn *c, const uint8_t hash[32])
{
    struct args a = {0};
    arg_bytes(&a, hash, 32);
    return run_one(c, "DELETE FROM sessions WHERE hash = $1", &a);
}

static int pg_sessions_delete_user(struct gh_store_conn *c, uint64_t user_id)
{
    struct args a = {0};
    arg_u64(&a, user_id);
    uint64_t n = 0;
    int rc = run_cmd(c, "DELETE FROM sessions WHERE user_id = $1", &a, &n);
    return rc ? rc : (int)GH_MIN(n, (uint64_t)INT32_MAX);
}

struct each_session {
    void (*fn)(const struct gh_store_session *, void *);
    void *arg;
};

static void each_session_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct each_session *e = out;
    struct gh_store_session s;
    session_row(c, r, row, &s);
    e->fn(&s, e->arg);
}

static int pg_sessions_each(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms,
                            void (*fn)(const struct gh_store_session *, void *), void *arg)
{
    struct args a = {0};
    struct each_session e = {fn, arg};
    if (user_id) {
        arg_u64(&a, user_id);
        return run_each(c, "SELECT " SESSION_COLS " FROM sessions WHERE user_id = $1 ORDER BY id",
                        &a, each_session_row, &e);
    }
    arg_u64(&a, now_ms);
    return run_each(c,
                    "SELECT " SESSION_COLS " FROM sessions WHERE expires_ms > $1 AND user_id"
                    " NOT IN (SELECT id FROM users WHERE disabled_ms != 0)",
                    &a, each_session_row, &e);
}

static int pg_session_by_hash(struct gh_store_conn *c, const uint8_t hash[32], uint64_t now_ms,
                              struct gh_store_session *out)
{
    struct args a = {0};
    arg_bytes(&a, hash, 32);
    arg_u64(&a, now_ms);
    return run_row(c,
                   "SELECT " SESSION_COLS " FROM sessions WHERE hash = $1 AND expires_ms > $2"
                   " AND user_id NOT IN (SELECT id FROM users WHERE disabled_ms != 0)",
                   &a, session_row, out);
}

/* ---- API keys ---- */

#define KEY_COLS "id, user_id, hash, prefix, name, created_ms, last_used_ms, revoked_ms"

static void key_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct gh_store_key *k = out;
    k->id = col_u64(r, row, 0);
    k->user_id = col_u64(r, row, 1);
    col_blob32(k->hash, r, row, 2);
    col_text(k->prefix, sizeof k->prefix, r, row, 3);
    col_text(k->name, sizeof k->name, r, row, 4);
    k->created_ms = col_u64(r, row, 5);
    k->last_used_ms = col_u64(r, row, 6);
    k->revoked_ms = col_u64(r, row, 7);
}

static int pg_key_insert(struct gh_store_conn *c, struct gh_store_key *k)
{
    struct args a = {0};
    arg_u64(&a, k->user_id);
    arg_bytes(&a, k->hash, 32);
    arg_text(&a, k->prefix);
    arg_text(&a, k->name);
    arg_u64(&a, k->created_ms);
    return run_row(c,
                   "INSERT INTO api_keys (user_id, hash, prefix, name, created_ms)"
                   " SELECT $1,$2,$3,$4,$5 WHERE NOT EXISTS (SELECT 1 FROM users"
                   " WHERE id = $1 AND disabled_ms != 0) RETURNING id",
                   &a, id_row, &k->id);
}

static int pg_key_get(struct gh_store_conn *c, uint64_t id, struct gh_store_key *out)
{
    struct args a = {0};
    arg_u64(&a, id);
    return run_row(c, "SELECT " KEY_COLS " FROM api_keys WHERE id = $1", &a, key_row, out);
}

static int pg_key_revoke(struct gh_store_conn *c, uint64_t user_id, uint64_t id, uint64_t now_ms,
                         struct gh_store_key *out)
{
    struct args a = {0};
    arg_u64(&a, id);
    arg_u64(&a, user_id);
    arg_u64(&a, now_ms);
    return run_row(c,
                   "UPDATE api_keys SET revoked_ms = $3 WHERE id = $1 AND user_id = $2"
                   " AND revoked_ms = 0 RETURNING " KEY_COLS,
                   &a, key_row, out);
}

static int pg_key_by_hash(struct gh_store_conn *c, const uint8_t hash[32], struct gh_store_key *out)
{
    struct args a = {0};
    arg_bytes(&a, hash, 32);
    return run_row(c,
                   "SELECT " KEY_COLS " FROM api_keys WHERE hash = $1 AND revoked_ms = 0"
                   " AND user_id NOT IN (SELECT id FROM users WHERE disabled_ms != 0)",
                   &a, key_row, out);
}

static int pg_key_touch(struct gh_store_conn *c, uint64_t id, uint64_t last_used_ms)
{
    struct args a = {0};
    arg_u64(&a, id);
    arg_u64(&a, last_used_ms);
    return run_cmd(c, "UPDATE api_keys SET last_used_ms = $2 WHERE id = $1 AND last_used_ms < $2",
                   &a, NULL);
}

static int pg_keys_revoke_user(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms)
{
    struct args a = {0};
    arg_u64(&a, user_id);
    arg_u64(&a, now_ms);
    uint64_t n = 0;
    int rc = run_cmd(c, "UPDATE api_keys SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms = 0",
                     &a, &n);
    return rc ? rc : (int)GH_MIN(n, (uint64_t)INT32_MAX);
}

struct each_key {
    void (*fn)(const struct gh_store_key *, void *);
    void *arg;
};

static void each_key_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct each_key *e = out;
    struct gh_store_key k;
    key_row(c, r, row, &k);
    e->fn(&k, e->arg);
}

static int pg_keys_each(struct gh_store_conn *c, uint64_t user_id, bool include_revoked,
                        void (*fn)(const struct gh_store_key *, void *), void *arg)
{
    struct args a = {0};
    struct each_key e = {fn, arg};
    if (user_id) {
        arg_u64(&a, user_id);
        return run_each(c,
                        include_revoked ? "SELECT " KEY_COLS
                                          " FROM api_keys WHERE user_id = $1 ORDER BY id"
                                        : "SELECT " KEY_COLS " FROM api_keys WHERE user_id = $1"
                                          " AND revoked_ms = 0 ORDER BY id",
                        &a, each_key_row, &e);
    }
    return run_each(c,
                    include_revoked
                        ? "SELECT " KEY_COLS " FROM api_keys WHERE user_id NOT IN"
                          " (SELECT id FROM users WHERE disabled_ms != 0) ORDER BY id"
                        : "SELECT " KEY_COLS " FROM api_keys WHERE revoked_ms = 0 AND user_id"
                          " NOT IN (SELECT id FROM users WHERE disabled_ms != 0) ORDER BY id",
                    &a, each_key_row, &e);
}

static unsigned pg_keys_live_count(struct gh_store_conn *c, uint64_t user_id)
{
    struct args a = {0};
    arg_u64(&a, user_id);
    uint64_t n = 0;
    run_row(c, "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_ms = 0", &a, id_row,
            &n);
    return (unsigned)GH_MIN(n, (uint64_t)UINT32_MAX);
}

/* ---- audit ---- */

static int pg_audit_insert(struct gh_store_conn *c, const struct gh_store_audit *a)
{
    struct args x = {0};
    arg_u64(&x, a->ts_ms);
    arg_text(&x, a->event);
    arg_u64(&x, a->user_id);
    arg_text(&x, a->detail[0] ? a->detail : "{}");
    return run_cmd(c, "INSERT INTO audit (ts_ms, event, user_id, detail) VALUES ($1,$2,$3,$4)", &x,
                   NULL);
}

struct each_audit {
    void (*fn)(const struct gh_store_audit *, void *);
    void *arg;
};

static void each_audit_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    struct each_audit *e = out;
    struct gh_store_audit a;
    a.ts_ms = col_u64(r, row, 0);
    col_text(a.event, sizeof a.event, r, row, 1);
    a.user_id = col_u64(r, row, 2);
    col_text(a.detail, sizeof a.detail, r, row, 3);
    e->fn(&a, e->arg);
}

static int pg_audit_each(struct gh_store_conn *c, uint64_t user_id, unsigned limit,
                         void (*fn)(const struct gh_store_audit *, void *), void *arg)
{
    struct args a = {0};
    struct each_audit e = {fn, arg};
    arg_u64(&a, user_id);
    arg_u64(&a, limit);
    return run_each(c,
                    "SELECT ts_ms, event, user_id, detail FROM audit WHERE user_id = $1"
                    " ORDER BY id DESC LIMIT $2",
                    &a, each_audit_row, &e);
}

/* ---- usage ---- */

static int pg_usage_add(struct gh_store_conn *c, const struct gh_store_usage *u)
{
    struct args a = {0};
    const uint64_t v[] = {u->day,           u->key_id,        u->user_id,
                          u->requests,      u->prompt_tokens, u->completion_tokens,
                          u->cached_tokens, u->reasoning_tokens, u->cut_short};
    for (size_t i = 0; i < GH_ARRAY_LEN(v); i++)
        arg_u64(&a, v[i]);
    return run_cmd(c,
                   "INSERT INTO usage AS u (day, key_id, user_id, requests, prompt_tokens,"
                   " completion_tokens, cached_tokens, reasoning_tokens, cut_short)"
                   " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                   " ON CONFLICT (day, key_id, user_id) DO UPDATE SET"
                   " requests = u.requests + excluded.requests,"
                   " prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,"
                   " completion_tokens = u.completion_tokens + excluded.completion_tokens,"
                   " cached_tokens = u.cached_tokens + excluded.cached_tokens,"
                   " reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,"
                   " cut_short = u.cut_short + excluded.cut_short",
                   &a, NULL);
}

struct each_usage {
    void (*fn)(const struct gh_store_usage *, void *);
    void *arg;
};

static void each_usage_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    (void)c;
    struct each_usage *e = out;
    struct gh_store_usage u = {
        .day = (uint32_t)col_u64(r, row, 0),
        .key_id = col_u64(r, row, 1),
        .user_id = col_u64(r, row, 2),
        .requests = col_u64(r, row, 3),
        .prompt_tokens = col_u64(r, row, 4),
        .completion_tokens = col_u64(r, row, 5),
        .cached_tokens = col_u64(r, row, 6),
        .reasoning_tokens = col_u64(r, row, 7),
        .cut_short = col_u64(r, row, 8),
    };
    e->fn(&u, e->arg);
}

static int pg_usage_each(struct gh_store_conn *c, uint32_t from, unsigned limit,
                         void (*fn)(const struct gh_store_usage *, void *), void *arg)
{
    struct args a = {0};
    struct each_usage e = {fn, arg};
    arg_u64(&a, from);
    arg_u64(&a, limit);
    return run_each(c,
                    "SELECT day, key_id, user_id, requests, prompt_tokens, completion_tokens,"
                    " cached_tokens, reasoning_tokens, cut_short FROM usage WHERE day >= $1"
                    " ORDER BY day DESC LIMIT $2",
                    &a, each_usage_row, &e);
}

/* ---- settings ---- */

static int pg_setting_get(struct gh_store_conn *c, const char *name, struct gh_buf *out)
{
    struct args a = {0};
    arg_text(&a, name);
    PGresult *r;
    int rc = run(c, "SELECT value FROM settings WHERE name = $1", &a, &r);
    if (!rc)
        rc = PQntuples(r) < 1
                 ? GH_ENOTFOUND
                 : gh_buf_append(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return rc;
}

static int pg_setting_put(struct gh_store_conn *c, const char *name, const char *value)
{
    struct args a = {0};
    arg_text(&a, name);
    arg_text(&a, value);
    return run_cmd(c,
                   "INSERT INTO settings (name, value) VALUES ($1,$2)"
                   " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   &a, NULL);
}

/* ---- SMS codes ---- */

static int pg_sms_code_put(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                           uint64_t expires_ms, unsigned tries)
{
    struct args a = {0};
    arg_u64(&a, gh_wall_ms());
    int rc = run_cmd(c, "DELETE FROM sms_codes WHERE expires_ms <= $1", &a, NULL);
    if (rc)
        return rc;
    a = (struct args){0};
    arg_bytes(&a, key, 32);
    arg_bytes(&a, hash, 32);
    arg_u64(&a, expires_ms);
    arg_u64(&a, tries);
    return run_cmd(c,
                   "INSERT INTO sms_codes (key, code_hash, expires_ms, tries) VALUES ($1,$2,$3,$4)"
                   " ON CONFLICT (key) DO UPDATE SET code_hash = excluded.code_hash,"
                   " expires_ms = excluded.expires_ms, tries = excluded.tries",
                   &a, NULL);
}

struct code_row {
    uint8_t hash[32];
    uint64_t expires_ms, tries;
};

static void code_row(struct gh_store_conn *c, const PGresult *r, int row, void *out)
{
    (void)c;
    struct code_row *cr = out;
    col_blob32(cr->hash, r, row, 0);
    cr->expires_ms = col_u64(r, row, 1);
    cr->tries = col_u64(r, row, 2);
}

static int pg_sms_code_check(struct gh_store_conn *c, const uint8_t key[32], const uint8_t hash[32],
                             uint64_t now_ms, int *result)
{
    struct args a = {0};
    arg_bytes(&a, key, 32);
    struct code_row cr;
    /* FOR UPDATE: two nodes checking the same number take turns */
    int rc =
        run_row(c, "SELECT code_hash, expires_ms, tries FROM sms_codes WHERE key = $1 FOR UPDATE",
                &a, code_row, &cr);
    if (rc == GH_ENOTFOUND || (!rc && (cr.expires_ms <= now_ms || cr.tries == 0))) {
        *result = GH_ENOTFOUND;
        return rc == GH_ENOTFOUND ? 0
                                  : run_cmd(c, "DELETE FROM sms_codes WHERE key = $1", &a, NULL);
    }
    if (rc)
        return rc;
    bool right = sodium_memcmp(cr.hash, hash, 32) == 0;
    *result = right ? 0 : GH_EINVAL;
    if (right || cr.tries <= 1)
        return run_cmd(c, "DELETE FROM sms_codes WHERE key = $1", &a, NULL);
    return run_cmd(c, "UPDATE sms_codes SET tries = tries - 1 WHERE key = $1", &a, NULL);
}

/* ---- the SMS outbox ---- */

static int pg_sms_outbox_add(struct gh_store_conn *c, const void *msg, size_t len,
                             uint64_t lease_ms, uint64_t *id)
{
    uint8_t sealed[GH_STORE_SEAL_OVERHEAD + GH_STORE_OUTBOX_MSG_MAX];
    struct args a = {0};
    arg_bytes(&a, sealed, gh_store_seal(c->enc_key, msg, len, sealed));
    arg_u64(&a, lease_ms);
    PGresult *r;
    int rc = run(c, "INSERT INTO sms_outbox (msg, lease_ms) VALUES ($1,$2) RETURNING id", &a, &r);
    if (!rc)
        *id = PQntuples(r) == 1 ? col_u64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

static int pg_sms_outbox_delete(struct gh_store_conn *c, uint64_t id)
{
    struct args a = {0};
    arg_u64(&a, id);
    return run_one(c, "DELETE FROM sms_outbox WHERE id = $1", &a);
}

static int pg_sms_outbox_claim(struct gh_store_conn *c, uint64_t now_ms, uint64_t lease_ms,
                               unsigned max,
                               void (*fn)(uint64_t id, const void *msg, size_t len, void *arg),
                               void *arg)
{
    struct args a = {0};
    arg_u64(&a, lease_ms);
    arg_u64(&a, now_ms);
    arg_u64(&a, max);
    PGresult *r;
    /* SKIP LOCKED: nodes sweeping at once take different rows */
    int rc = run(c,
                 "UPDATE sms_outbox SET lease_ms = $1 WHERE id IN (SELECT id FROM sms_outbox"
                 " WHERE lease_ms <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                 " RETURNING id, msg",
                 &a, &r);
    int n = 0;
    for (int i = 0; !rc && i < PQntuples(r); i++, n++) {
        uint64_t id = col_u64(r, i, 0);
        uint8_t msg[GH_STORE_OUTBOX_MSG_MAX];
        long len = gh_store_unseal(c->enc_key, (const uint8_t *)PQgetvalue(r, i, 1),
                                   (size_t)PQgetlength(r, i, 1), msg, sizeof msg);
        if (len >= 0) {
            fn(id, msg, (size_t)len, arg);
            sodium_memzero(msg, sizeof msg);
            continue;
        }
        gh_log(GH_LOG_WARN, "sms_outbox_unreadable",
               "SMS outbox row %llu cannot be opened with this node's key: deleted",
               (unsigned long long)id);
        rc = pg_sms_outbox_delete(c, id);
    }
    PQclear(r);
    return rc ? rc : n;
}

/* ---- messages between nodes ---- */

static int pg_notify(struct gh_store_conn *c, const char *payload)
{
    struct args a = {0};
    arg_text(&a, payload);
    return run_cmd(c, "SELECT pg_notify('" CHANNEL "', $1)", &a, NULL);
}

/* Waits for stop_fd until end_ms (a pause between connection attempts). */
static void pause_until(int stop_fd, uint64_t end_ms)
{
    uint64_t now = gh_now_ms();
    if (now >= end_ms)
        return;
    struct pollfd pf = {.fd = stop_fd, .events = POLLIN};
    poll(&pf, 1, (int)GH_MIN(end_ms - now, (uint64_t)INT_MAX));
}

static int pg_listen(struct gh_store_conn *c, int stop_fd, uint64_t wait_ms,
                     void (*fn)(const char *payload, size_t len, void *arg), void *arg, bool *fresh)
{
    struct pg *p = c->db;
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK || !p->listening) {
        p->listening = false;
        int rc = pg_ensure(p);
        if (!rc)
            rc = pg_cmd(c, "LISTEN " CHANNEL);
        if (rc) {
            /* pg_ensure set the next attempt (100 ms doubling to 2 s) */
            pause_until(stop_fd, GH_MAX(p->next_try_ms, gh_now_ms() + RETRY_MIN_MS));
            return GH_EBUSY;
        }
        p->listening = true;
        *fresh = true;
    }
    struct pollfd pf[2] = {{.fd = PQsocket(p->conn), .events = POLLIN},
                           {.fd = stop_fd, .events = POLLIN}};
    int n = poll(pf, 2, (int)GH_MIN(wait_ms, (uint64_t)INT_MAX));
    if (n > 0 && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (!PQconsumeInput(p->conn) || PQstatus(p->conn) != CONNECTION_OK) {
            note_lost(p);
            p->listening = false;
            p->next_try_ms = 0; /* the next call tries a fresh connection at once */
            PQfinish(p->conn);
            p->conn = NULL;
            return GH_EBUSY;
        }
    }
    PGnotify *nt;
    while ((nt = PQnotifies(p->conn))) {
        if (nt->extra)
            fn(nt->extra, strlen(nt->extra), arg);
        PQfreemem(nt);
    }
    return 0;
}

const struct gh_store_backend gh_store_postgres = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .tx = pg_tx,
    .user_insert = pg_user_insert,
    .user_by_phone = pg_user_by_phone,
    .user_by_id = pg_user_by_id,
    .user_newest_before = pg_user_newest_before,
    .user_set_password = pg_user_set_password,
    .user_login_result = pg_user_login_result,
    .user_set_disabled = pg_user_set_disabled,
    .user_delete = pg_user_delete,
    .session_insert = pg_session_insert,
    .session_delete = pg_session_delete,
    .sessions_delete_user = pg_sessions_delete_user,
    .session_by_hash = pg_session_by_hash,
    .sessions_each = pg_sessions_each,
    .key_insert = pg_key_insert,
    .key_get = pg_key_get,
    .key_revoke = pg_key_revoke,
    .key_by_hash = pg_key_by_hash,
    .key_touch = pg_key_touch,
    .keys_revoke_user = pg_keys_revoke_user,
    .keys_each = pg_keys_each,
    .keys_live_count = pg_keys_live_count,
    .audit_insert = pg_audit_insert,
    .audit_each = pg_audit_each,
    .usage_add = pg_usage_add,
    .usage_each = pg_usage_each,
    .setting_get = pg_setting_get,
    .setting_put = pg_setting_put,
    .sms_code_put = pg_sms_code_put,
    .sms_code_check = pg_sms_code_check,
    .sms_outbox_add = pg_sms_outbox_add,
    .sms_outbox_delete = pg_sms_outbox_delete,
    .sms_outbox_claim = pg_sms_outbox_claim,
    .notify = pg_notify,
    .listen = pg_listen,
};
