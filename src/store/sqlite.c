/* This module implements the SQLite backend of the store (backend.h):
 * WAL mode, synchronous=FULL on the writer, versioned migrations kept in a
 * schema_version table, and the data functions of store.h. Phone numbers
 * are sealed by store.c's gh_store_phone_seal. */
#include "store/backend.h"

#include "core/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Each entry moves the schema one version up; never edit a released one,
 * append a new one. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " phone_hash BLOB NOT NULL UNIQUE,"
    " phone_enc BLOB NOT NULL,"
    " region TEXT NOT NULL,"
    " calling_code INTEGER NOT NULL,"
    " pw_hash TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_login_ms INTEGER NOT NULL DEFAULT 0,"
    " failed_logins INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE sessions ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " hash BLOB NOT NULL UNIQUE,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE api_keys ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " hash BLOB NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_used_ms INTEGER NOT NULL DEFAULT 0,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ts_ms INTEGER NOT NULL,"
    " event TEXT NOT NULL,"
    " user_id INTEGER NOT NULL DEFAULT 0,"
    " detail TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX audit_user ON audit(user_id, id);"
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    /* 2: operators disable accounts (wall clock of the change; 0 = active) */
    "ALTER TABLE users ADD COLUMN disabled_ms INTEGER NOT NULL DEFAULT 0;",
    /* 3: usage per UTC day, key and user (it was data_dir/usage.jsonl) */
    "CREATE TABLE usage ("
    " day INTEGER NOT NULL,"
    " key_id INTEGER NOT NULL,"
    " user_id INTEGER NOT NULL,"
    " requests INTEGER NOT NULL DEFAULT 0,"
    " prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    " completion_tokens INTEGER NOT NULL DEFAULT 0,"
    " cached_tokens INTEGER NOT NULL DEFAULT 0,"
    " reasoning_tokens INTEGER NOT NULL DEFAULT 0,"
    " cut_short INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (day, key_id, user_id)) WITHOUT ROWID;",
};

static int fail_db(struct gh_store_conn *c, const char *what)
{
    gh_log(GH_LOG_ERROR, "store_error", "%s: %s", what, sqlite3_errmsg(c->db));
    return GH_EIO;
}

static int sq_exec(struct gh_store_conn *c, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        gh_log(GH_LOG_ERROR, "store_error", "exec failed: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return GH_EIO;
    }
    return 0;
}

static int user_version(struct gh_store_conn *c)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(c->db, "SELECT max(version) FROM schema_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(struct gh_store_conn *c, struct gh_buf *err)
{
    if (sq_exec(c, "CREATE TABLE IF NOT EXISTS schema_version ("
                   " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)")) {
        gh_buf_printf(err, "cannot create schema_version: %s", sqlite3_errmsg(c->db));
        return GH_EIO;
    }
    int have = user_version(c);
    if (have < 0)
        have = 0;
    if ((size_t)have > GH_ARRAY_LEN(migrations)) {
        gh_buf_printf(err, "database schema version %d is newer than this gatehouse (%zu)", have,
                      GH_ARRAY_LEN(migrations));
        return GH_EIO;
    }
    for (size_t v = (size_t)have; v < GH_ARRAY_LEN(migrations); v++) {
        char *msg = NULL;
        char mark[128];
        snprintf(mark, sizeof mark, "INSERT INTO schema_version VALUES (%zu, %llu)", v + 1,
                 (unsigned long long)gh_wall_ms());
        if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(c->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(c->db, mark, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            gh_buf_printf(err, "migration %zu failed: %s", v + 1, msg ? msg : "?");
            sqlite3_free(msg);
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return GH_EIO;
        }
        gh_log(GH_LOG_INFO, "store_migrated", "schema version %zu", v + 1);
    }
    return 0;
}

/* The database and its -wal and -shm files hold account data: owner only.
 * The server's umask (077) makes new files so; this also tightens files
 * left readable by an older version or another tool. */
static void tighten_modes(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < GH_ARRAY_LEN(suffix); i++) {
        char p[4200];
        struct stat st;
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        if (stat(p, &st) == 0 && (st.st_mode & 0077) && chmod(p, st.st_mode & 0700))
            gh_log(GH_LOG_WARN, "store_mode", "cannot restrict %s to its owner", p);
    }
}

static void sq_close(struct gh_store_conn *c);

static int sq_open(struct gh_store_conn *c, const struct gh_store_options *o, bool writer,
                   struct gh_buf *err)
{
    const char *path = o->path;
    c->writer = writer;
    int flags = SQLITE_OPEN_NOMUTEX |
                (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        gh_buf_printf(err, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return GH_EIO;
    }
    c->db = db;
    sqlite3_busy_timeout(c->db, 5000);
    const char *setup = writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                 " PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"
                               : "PRAGMA foreign_keys=ON;";
    char *msg = NULL;
    if (sqlite3_exec(c->db, setup, NULL, NULL, &msg) != SQLITE_OK) {
        gh_buf_printf(err, "cannot set up %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sq_close(c);
        return GH_EIO;
    }
    if (writer && migrate(c, err)) {
        sq_close(c);
        return GH_EIO;
    }
    if (writer)
        tighten_modes(path);
    return 0;
}

static void sq_close(struct gh_store_conn *c)
{
    if (c->db && c->writer)
        sq_exec(c, "PRAGMA wal_checkpoint(TRUNCATE)");
    if (c->db)
        sqlite3_close_v2(c->db);
    c->db = NULL;
}

static int sq_tx(struct gh_store_conn *c, enum gh_store_tx step)
{
    static const char *const sql[] = {[GH_TX_SAVEPOINT] = "SAVEPOINT job",
                                      [GH_TX_ROLLBACK_TO] = "ROLLBACK TO job",
                                      [GH_TX_RELEASE] = "RELEASE job",
                                      [GH_TX_COMMIT] = "COMMIT",
                                      [GH_TX_ROLLBACK] = "ROLLBACK"};
    if (step == GH_TX_BEGIN)
        return sq_exec(c, c->writer ? "BEGIN IMMEDIATE" : "BEGIN");
    if (step == GH_TX_ROLLBACK && sqlite3_get_autocommit(c->db))
        return 0; /* nothing open (BEGIN failed) */
    return sq_exec(c, sql[step]);
}

/* ---- helpers ---- */

static sqlite3_stmt *prep(struct gh_store_conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail_db(c, "prepare");
        return NULL;
    }
    return st;
}

static int step_done(struct gh_store_conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int out = 0;
    if (rc == SQLITE_CONSTRAINT)
        out = GH_EEXIST;
    else if (rc != SQLITE_DONE)
        out = fail_db(c, "step");
    sqlite3_finalize(st);
    return out;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void copy_blob32(uint8_t *dst, sqlite3_stmt *st, int col)
{
    const void *b = sqlite3_column_blob(st, col);
    if (b && sqlite3_column_bytes(st, col) == 32)
        memcpy(dst, b, 32);
    else
        memset(dst, 0, 32);
}

/* ---- users ---- */

static int sq_user_insert(struct gh_store_conn *c, struct gh_user *u)
{
    uint8_t sealed[GH_STORE_SEAL_MAX];
    size_t slen = gh_store_phone_seal(c->enc_key, u->phone, sealed);
    sqlite3_stmt *st = prep(c, "INSERT INTO users (phone_hash, phone_enc, region, calling_code,"
                               " pw_hash, created_ms) VALUES (?,?,?,?,?,?)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_blob(st, 1, u->phone_hash, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, sealed, (int)slen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, u->region, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)u->calling_code);
    sqlite3_bind_text(st, 5, u->pw_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)u->created_ms);
    int rc = step_done(c, st);
    if (!rc)
        u->id = (uint64_t)sqlite3_last_insert_rowid(c->db);
    return rc;
}

static void user_row(struct gh_store_conn *c, sqlite3_stmt *st, struct gh_user *u)
{
    memset(u, 0, sizeof *u);
    u->id = (uint64_t)sqlite3_column_int64(st, 0);
    copy_blob32(u->phone_hash, st, 1);
    gh_store_phone_open(c->enc_key, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
                        u->phone);
    copy_text(u->region, sizeof u->region, st, 3);
    u->calling_code = (unsigned)sqlite3_column_int(st, 4);
    copy_text(u->pw_hash, sizeof u->pw_hash, st, 5);
    u->created_ms = (uint64_t)sqlite3_column_int64(st, 6);
    u->last_login_ms = (uint64_t)sqlite3_column_int64(st, 7);
    u->failed_logins = (unsigned)sqlite3_column_int(st, 8);
    u->disabled_ms = (uint64_t)sqlite3_column_int64(st, 9);
}

#define USER_COLS                                                                                  \
    "id, phone_hash, phone_enc, region, calling_code, pw_hash, created_ms, last_login_ms,"         \
    " failed_logins, disabled_ms"

static int user_query(struct gh_store_conn *c, sqlite3_stmt *st, struct gh_user *out)
{
    int rc = sqlite3_step(st);
    int ret = GH_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        user_row(c, st, out);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        ret = fail_db(c, "user query");
    }
    sqlite3_finalize(st);
    return ret;
}

static int sq_user_by_phone(struct gh_store_conn *c, const uint8_t phone_hash[32],
                            struct gh_user *out)
{
    sqlite3_stmt *st = prep(c, "SELECT " USER_COLS " FROM users WHERE phone_hash = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_blob(st, 1, phone_hash, 32, SQLITE_STATIC);
    return user_query(c, st, out);
}

static int sq_user_by_id(struct gh_store_conn *c, uint64_t id, struct gh_user *out)
{
    sqlite3_stmt *st = prep(c, "SELECT " USER_COLS " FROM users WHERE id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return user_query(c, st, out);
}

static int sq_user_newest_before(struct gh_store_conn *c, uint64_t before_ms, uint64_t *id)
{
    /* walks back from the newest user: reads only the accounts younger
     * than the cut-off, not the whole table */
    sqlite3_stmt *st =
        prep(c, "SELECT id FROM users WHERE created_ms < ? ORDER BY id DESC LIMIT 1");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)GH_MIN(before_ms, (uint64_t)INT64_MAX));
    int rc = sqlite3_step(st);
    *id = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    int out = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail_db(c, "step");
    sqlite3_finalize(st);
    return out;
}

static int changes_or_notfound(struct gh_store_conn *c, int rc)
{
    if (!rc && sqlite3_changes(c->db) == 0)
        return GH_ENOTFOUND;
    return rc;
}

static int sq_user_set_password(struct gh_store_conn *c, uint64_t id, const char *pw_hash)
{
    sqlite3_stmt *st = prep(c, "UPDATE users SET pw_hash = ?, failed_logins = 0 WHERE id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_text(st, 1, pw_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return changes_or_notfound(c, step_done(c, st));
}

static int sq_user_login_result(struct gh_store_conn *c, uint64_t id, bool success, uint64_t now_ms)
{
    sqlite3_stmt *st =
        prep(c, success ? "UPDATE users SET failed_logins = 0, last_login_ms = ? WHERE id = ?"
                        : "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?2"
                          " AND ?1 >= 0");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return changes_or_notfound(c, step_done(c, st));
}

static int sq_user_set_disabled(struct gh_store_conn *c, uint64_t id, uint64_t disabled_ms)
{
    sqlite3_stmt *st = prep(c, "UPDATE users SET disabled_ms = ? WHERE id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)disabled_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return changes_or_notfound(c, step_done(c, st));
}

static int sq_user_delete(struct gh_store_conn *c, uint64_t id)
{
    static const char *const sql[] = {"DELETE FROM sessions WHERE user_id = ?",
                                      "DELETE FROM api_keys WHERE user_id = ?",
                                      "DELETE FROM users WHERE id = ?"};
    int rc = 0;
    for (size_t i = 0; i < GH_ARRAY_LEN(sql) && !rc; i++) {
        sqlite3_stmt *st = prep(c, sql[i]);
        if (!st)
            return GH_EIO;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        rc = step_done(c, st);
    }
    return changes_or_notfound(c, rc);
}

/* ---- sessions ---- */

static int sq_session_insert(struct gh_store_conn *c, struct gh_store_session *s)
{
    /* never for a disabled account (a sign-in racing the operator) */
    sqlite3_stmt *st = prep(c, "INSERT INTO sessions (user_id, hash, created_ms, expires_ms)"
                               " SELECT ?1,?2,?3,?4 WHERE NOT EXISTS (SELECT 1 FROM users"
                               " WHERE id = ?1 AND disabled_ms != 0)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->user_id);
    sqlite3_bind_blob(st, 2, s->hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->created_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)s->expires_ms);
    int rc = changes_or_notfound(c, step_done(c, st));
    if (!rc)
        s->id = (uint64_t)sqlite3_last_insert_rowid(c->db);
    return rc;
}

static int sq_session_delete(struct gh_store_conn *c, const uint8_t hash[32])
{
    sqlite3_stmt *st = prep(c, "DELETE FROM sessions WHERE hash = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    return changes_or_notfound(c, step_done(c, st));
}

static int sq_sessions_delete_user(struct gh_store_conn *c, uint64_t user_id)
{
    sqlite3_stmt *st = prep(c, "DELETE FROM sessions WHERE user_id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    int rc = step_done(c, st);
    return rc ? rc : sqlite3_changes(c->db);
}

static int sq_sessions_each(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms,
                            void (*fn)(const struct gh_store_session *, void *), void *arg)
{
    sqlite3_stmt *st =
        prep(c, user_id ? "SELECT id, user_id, hash, created_ms, expires_ms FROM sessions"
                          " WHERE user_id = ?1 AND ?2 >= 0 ORDER BY id"
                        : "SELECT id, user_id, hash, created_ms, expires_ms FROM sessions"
                          " WHERE expires_ms > ?2 AND ?1 = 0 AND user_id NOT IN"
                          " (SELECT id FROM users WHERE disabled_ms != 0)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gh_store_session s;
        s.id = (uint64_t)sqlite3_column_int64(st, 0);
        s.user_id = (uint64_t)sqlite3_column_int64(st, 1);
        copy_blob32(s.hash, st, 2);
        s.created_ms = (uint64_t)sqlite3_column_int64(st, 3);
        s.expires_ms = (uint64_t)sqlite3_column_int64(st, 4);
        fn(&s, arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail_db(c, "sessions");
    sqlite3_finalize(st);
    return ret;
}

static int sq_session_by_hash(struct gh_store_conn *c, const uint8_t hash[32], uint64_t now_ms,
                              struct gh_store_session *out)
{
    sqlite3_stmt *st = prep(c, "SELECT id, user_id, hash, created_ms, expires_ms FROM sessions"
                               " WHERE hash = ?1 AND expires_ms > ?2 AND user_id NOT IN"
                               " (SELECT id FROM users WHERE disabled_ms != 0)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
    int rc = sqlite3_step(st), ret = GH_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        out->id = (uint64_t)sqlite3_column_int64(st, 0);
        out->user_id = (uint64_t)sqlite3_column_int64(st, 1);
        copy_blob32(out->hash, st, 2);
        out->created_ms = (uint64_t)sqlite3_column_int64(st, 3);
        out->expires_ms = (uint64_t)sqlite3_column_int64(st, 4);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        ret = fail_db(c, "session");
    }
    sqlite3_finalize(st);
    return ret;
}

/* ---- API keys ---- */

static int sq_key_insert(struct gh_store_conn *c, struct gh_store_key *k)
{
    sqlite3_stmt *st = prep(c, "INSERT INTO api_keys (user_id, hash, prefix, name, created_ms)"
                               " SELECT ?1,?2,?3,?4,?5 WHERE NOT EXISTS (SELECT 1 FROM users"
                               " WHERE id = ?1 AND disabled_ms != 0)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)k->user_id);
    sqlite3_bind_blob(st, 2, k->hash, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, k->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)k->created_ms);
    int rc = changes_or_notfound(c, step_done(c, st));
    if (!rc)
        k->id = (uint64_t)sqlite3_last_insert_rowid(c->db);
    return rc;
}

#define KEY_COLS "id, user_id, hash, prefix, name, created_ms, last_used_ms, revoked_ms"

static void key_row(sqlite3_stmt *st, struct gh_store_key *k)
{
    k->id = (uint64_t)sqlite3_column_int64(st, 0);
    k->user_id = (uint64_t)sqlite3_column_int64(st, 1);
    copy_blob32(k->hash, st, 2);
    copy_text(k->prefix, sizeof k->prefix, st, 3);
    copy_text(k->name, sizeof k->name, st, 4);
    k->created_ms = (uint64_t)sqlite3_column_int64(st, 5);
    k->last_used_ms = (uint64_t)sqlite3_column_int64(st, 6);
    k->revoked_ms = (uint64_t)sqlite3_column_int64(st, 7);
}

static int sq_key_revoke(struct gh_store_conn *c, uint64_t user_id, uint64_t id, uint64_t now_ms,
                         struct gh_store_key *out)
{
    sqlite3_stmt *st = prep(c, "SELECT " KEY_COLS " FROM api_keys WHERE id = ? AND user_id = ?"
                               " AND revoked_ms = 0");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)user_id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? GH_ENOTFOUND : fail_db(c, "key");
    }
    key_row(st, out);
    sqlite3_finalize(st);
    st = prep(c, "UPDATE api_keys SET revoked_ms = ? WHERE id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    out->revoked_ms = now_ms;
    return step_done(c, st);
}

static int sq_keys_revoke_user(struct gh_store_conn *c, uint64_t user_id, uint64_t now_ms)
{
    sqlite3_stmt *st =
        prep(c, "UPDATE api_keys SET revoked_ms = ? WHERE user_id = ? AND revoked_ms = 0");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)user_id);
    int rc = step_done(c, st);
    return rc ? rc : sqlite3_changes(c->db);
}

/* Steps st (a bound key query) once into *out and finalizes it. */
static int key_one(struct gh_store_conn *c, sqlite3_stmt *st, struct gh_store_key *out)
{
    int rc = sqlite3_step(st);
    int ret = GH_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        key_row(st, out);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        ret = fail_db(c, "key");
    }
    sqlite3_finalize(st);
    return ret;
}

static int sq_key_get(struct gh_store_conn *c, uint64_t id, struct gh_store_key *out)
{
    sqlite3_stmt *st = prep(c, "SELECT " KEY_COLS " FROM api_keys WHERE id = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return key_one(c, st, out);
}

static int sq_key_by_hash(struct gh_store_conn *c, const uint8_t hash[32], struct gh_store_key *out)
{
    sqlite3_stmt *st = prep(c, "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?1"
                               " AND revoked_ms = 0 AND user_id NOT IN"
                               " (SELECT id FROM users WHERE disabled_ms != 0)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    return key_one(c, st, out);
}

static int sq_key_touch(struct gh_store_conn *c, uint64_t id, uint64_t last_used_ms)
{
    sqlite3_stmt *st = prep(c, "UPDATE api_keys SET last_used_ms = ?"
                               " WHERE id = ? AND last_used_ms < ?1");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)last_used_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return step_done(c, st);
}

static int sq_keys_each(struct gh_store_conn *c, uint64_t user_id, bool include_revoked,
                        void (*fn)(const struct gh_store_key *, void *), void *arg)
{
    sqlite3_stmt *st = prep(c, "SELECT " KEY_COLS " FROM api_keys"
                               " WHERE (?1 = 0 OR user_id = ?1) AND (?2 OR revoked_ms = 0)"
                               " AND (?1 != 0 OR user_id NOT IN"
                               " (SELECT id FROM users WHERE disabled_ms != 0))"
                               " ORDER BY id");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    sqlite3_bind_int(st, 2, include_revoked);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gh_store_key k;
        key_row(st, &k);
        fn(&k, arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail_db(c, "keys");
    sqlite3_finalize(st);
    return ret;
}

static unsigned sq_keys_live_count(struct gh_store_conn *c, uint64_t user_id)
{
    sqlite3_stmt *st =
        prep(c, "SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_ms = 0");
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    unsigned n = sqlite3_step(st) == SQLITE_ROW ? (unsigned)sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return n;
}

/* ---- audit ---- */

static int sq_audit_insert(struct gh_store_conn *c, const struct gh_store_audit *a)
{
    sqlite3_stmt *st =
        prep(c, "INSERT INTO audit (ts_ms, event, user_id, detail) VALUES (?,?,?,?)");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->ts_ms);
    sqlite3_bind_text(st, 2, a->event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->user_id);
    sqlite3_bind_text(st, 4, a->detail[0] ? a->detail : "{}", -1, SQLITE_STATIC);
    return step_done(c, st);
}

static int sq_audit_each(struct gh_store_conn *c, uint64_t user_id, unsigned limit,
                         void (*fn)(const struct gh_store_audit *, void *), void *arg)
{
    sqlite3_stmt *st = prep(c, "SELECT ts_ms, event, user_id, detail FROM audit"
                               " WHERE user_id = ? ORDER BY id DESC LIMIT ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    sqlite3_bind_int(st, 2, (int)limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gh_store_audit a;
        a.ts_ms = (uint64_t)sqlite3_column_int64(st, 0);
        copy_text(a.event, sizeof a.event, st, 1);
        a.user_id = (uint64_t)sqlite3_column_int64(st, 2);
        copy_text(a.detail, sizeof a.detail, st, 3);
        fn(&a, arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail_db(c, "audit");
    sqlite3_finalize(st);
    return ret;
}

/* ---- usage ---- */

static int sq_usage_add(struct gh_store_conn *c, const struct gh_store_usage *u)
{
    sqlite3_stmt *st = prep(
        c, "INSERT INTO usage (day, key_id, user_id, requests, prompt_tokens, completion_tokens,"
           " cached_tokens, reasoning_tokens, cut_short) VALUES (?,?,?,?,?,?,?,?,?)"
           " ON CONFLICT(day, key_id, user_id) DO UPDATE SET"
           " requests = requests + excluded.requests,"
           " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
           " completion_tokens = completion_tokens + excluded.completion_tokens,"
           " cached_tokens = cached_tokens + excluded.cached_tokens,"
           " reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,"
           " cut_short = cut_short + excluded.cut_short");
    if (!st)
        return GH_EIO;
    const uint64_t v[] = {u->day,           u->key_id,        u->user_id,
                          u->requests,      u->prompt_tokens, u->completion_tokens,
                          u->cached_tokens, u->reasoning_tokens, u->cut_short};
    for (int i = 0; i < (int)GH_ARRAY_LEN(v); i++)
        sqlite3_bind_int64(st, i + 1, (sqlite3_int64)v[i]);
    return step_done(c, st);
}

static int sq_usage_each(struct gh_store_conn *c, uint32_t from, unsigned limit,
                         void (*fn)(const struct gh_store_usage *, void *), void *arg)
{
    sqlite3_stmt *st = prep(c, "SELECT day, key_id, user_id, requests, prompt_tokens,"
                               " completion_tokens, cached_tokens, reasoning_tokens, cut_short"
                               " FROM usage WHERE day >= ? ORDER BY day DESC LIMIT ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gh_store_usage u = {
            .day = (uint32_t)sqlite3_column_int64(st, 0),
            .key_id = (uint64_t)sqlite3_column_int64(st, 1),
            .user_id = (uint64_t)sqlite3_column_int64(st, 2),
            .requests = (uint64_t)sqlite3_column_int64(st, 3),
            .prompt_tokens = (uint64_t)sqlite3_column_int64(st, 4),
            .completion_tokens = (uint64_t)sqlite3_column_int64(st, 5),
            .cached_tokens = (uint64_t)sqlite3_column_int64(st, 6),
            .reasoning_tokens = (uint64_t)sqlite3_column_int64(st, 7),
            .cut_short = (uint64_t)sqlite3_column_int64(st, 8),
        };
        fn(&u, arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail_db(c, "usage");
    sqlite3_finalize(st);
    return ret;
}

/* ---- settings ---- */

static int sq_setting_get(struct gh_store_conn *c, const char *name, struct gh_buf *out)
{
    sqlite3_stmt *st = prep(c, "SELECT value FROM settings WHERE name = ?");
    if (!st)
        return GH_EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret = GH_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        ret = gh_buf_append_str(out, t ? (const char *)t : "");
    } else if (rc != SQLITE_DONE) {
        ret = fail_db(c, "setting");
    }
    sqlite3_finalize(st);
    return ret;
}

static int sq_setting_put(struct gh_store_conn *c, const char *name, const char *value)
{
    sqlite3_stmt *st = prep(c, "INSERT INTO settings (name, value) VALUES (?,?)"
                               " ON CONFLICT(name) DO UPDATE SET value = excluded.value");
    if (!st)
        return GH_EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return step_done(c, st);
}

const struct gh_store_backend gh_store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .tx = sq_tx,
    .user_insert = sq_user_insert,
    .user_by_phone = sq_user_by_phone,
    .user_by_id = sq_user_by_id,
    .user_newest_before = sq_user_newest_before,
    .user_set_password = sq_user_set_password,
    .user_login_result = sq_user_login_result,
    .user_set_disabled = sq_user_set_disabled,
    .user_delete = sq_user_delete,
    .session_insert = sq_session_insert,
    .session_delete = sq_session_delete,
    .sessions_delete_user = sq_sessions_delete_user,
    .sessions_each = sq_sessions_each,
    .session_by_hash = sq_session_by_hash,
    .key_insert = sq_key_insert,
    .key_revoke = sq_key_revoke,
    .keys_revoke_user = sq_keys_revoke_user,
    .key_get = sq_key_get,
    .key_by_hash = sq_key_by_hash,
    .key_touch = sq_key_touch,
    .keys_each = sq_keys_each,
    .keys_live_count = sq_keys_live_count,
    .audit_insert = sq_audit_insert,
    .audit_each = sq_audit_each,
    .usage_add = sq_usage_add,
    .usage_each = sq_usage_each,
    .setting_get = sq_setting_get,
    .setting_put = sq_setting_put,
};
