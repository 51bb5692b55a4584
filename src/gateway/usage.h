/* Usage of the chat API per API key and UTC day: counted in memory (a
 * capped table under one mutex, what /api/usage and the quotas read) and
 * added to the store's usage table (store.h) by a writer thread of its
 * own, one transaction per 100 ms gathered, so no loop ever waits on the
 * database. At start the table is loaded from the store; a usage.jsonl
 * left by an older version is moved into the store once (then renamed
 * usage.jsonl.imported). Usage holds token counts only, never text.
 *
 * Created and freed on the main thread (the store outlives it);
 * gh_usage_record and the queries may be called from any thread. */
#pragma once

#include "core/common.h"

#include <jansson.h>

struct gh_usage;

/* One finished request. model is copied. */
struct gh_usage_rec {
    uint64_t key_id; /* 0: the web chat (session) */
    uint64_t user_id;
    uint32_t day; /* UTC days since the epoch */
    const char *model;
    unsigned prompt_tokens, completion_tokens;
    unsigned cached_tokens;    /* of prompt_tokens, served from the model server's prompt cache */
    unsigned reasoning_tokens; /* of completion_tokens, spent thinking (reasoning_content) */
    bool cut_short; /* the stream ended before its end (client gone, upstream broke) */
    int status;     /* HTTP status the client got */
};

struct gh_store;

/* Moves legacy_path (an older version's usage.jsonl; NULL or missing:
 * nothing) into store, loads the store's rows of the last 400 days into
 * the table (at most capacity key-days) and starts the writer thread.
 * Blocks (start-up only). NULL with a message in err (errlen bytes). */
struct gh_usage *gh_usage_new(struct gh_store *store, const char *legacy_path, unsigned capacity,
                              char *err, size_t errlen);
/* Stops the writer after the store has what was queued. */
void gh_usage_free(struct gh_usage *u);
/* Counts r and queues it for the store. Never blocks on I/O; when the
 * queue is full (the store cannot keep up) it is dropped and counted. */
void gh_usage_record(struct gh_usage *u, const struct gh_usage_rec *r);
/* A new JSON array of user_id's rows from day from on, newest day first:
 * [{"date":"2025-01-27","key_id":…,"requests":…,"prompt_tokens":…,
 * "completion_tokens":…,"total_tokens":…,"cached_tokens":…,
 * "reasoning_tokens":…,"cut_short":…}]. */
json_t *gh_usage_query(struct gh_usage *u, uint64_t user_id, uint32_t from);
/* Calls fn for every key-day of day (to prime the quotas). */
void gh_usage_each(struct gh_usage *u, uint32_t day,
                   void (*fn)(uint64_t key_id, uint64_t user_id, uint64_t tokens, void *data),
                   void *data);
/* Today as UTC days since the epoch. */
uint32_t gh_usage_today(void);
/* Calls dropped because the queue was full, and rows the store refused. */
uint64_t gh_usage_dropped(struct gh_usage *u);
