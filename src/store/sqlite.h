/* The SQLite backend of store.h: connections, migrations, transactions,
 * and the data functions declared in store.h. Used by store.c only; a
 * connection belongs to the one thread that opened it. */
#pragma once

#include "store/store.h"

#include <sqlite3.h>

struct gh_store_conn {
    sqlite3 *db;
    const uint8_t *enc_key; /* 32 bytes, owned by the gh_store */
    bool writer;
};

/* Opens path (creating it when writer) in WAL mode; the writer also runs
 * the migrations. 0 or GH_EIO with err set. */
int gh_sqlite_open(struct gh_store_conn *c, const char *path, bool writer, struct gh_buf *err);
void gh_sqlite_close(struct gh_store_conn *c);
/* Runs one statement without results. 0 or GH_EIO. */
int gh_sqlite_exec(struct gh_store_conn *c, const char *sql);
/* The schema version after migrations. */
int gh_sqlite_schema_version(struct gh_store_conn *c);
