/* Usage of the chat API per API key and UTC day: counted in memory (a
 * capped table under one mutex) and appended as JSON lines to a file under
 * the data directory by a writer thread of its own, so no loop ever waits
 * on the disk. At start the file is replayed to rebuild the table (and the
 * quotas' daily spend). Usage holds token counts only, never text.
 *
 * Created and freed on the main thread; gh_usage_record and the queries
 * may be called from any thread. */
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

/* Opens (creating) path, replays it into the table (at most capacity
 * key-days are kept; older days beyond it are dropped) and starts the
 * writer thread. NULL with a message in err (errlen bytes) on failure. */
struct gh_usage *gh_usage_new(const char *path, unsigned capacity, char *err, size_t errlen);
/* Stops the writer after it has written what is queued. */
void gh_usage_free(struct gh_usage *u);
/* Counts r and queues its line. Never blocks on I/O; when the write queue
 * is full (the disk cannot keep up) the line is dropped and counted. */
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
/* Lines dropped because the queue was full, and lines that failed to write. */
uint64_t gh_usage_dropped(struct gh_usage *u);
