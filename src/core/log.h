/* Logs as JSON lines: an error log (events, warnings, errors) and an access
 * log. Lines are appended to bounded in-memory buffers under a short lock
 * and written to disk by one flusher thread, so no event loop ever blocks
 * on a file; when a buffer is full the line is dropped and counted.
 * The logger is the process's one shared sink: any thread may log once
 * gh_log_start has run; before that, lines go straight to stderr. */
#pragma once

#include "core/common.h"
#include "core/config.h"

/* Opens the sinks named by cfg (relative paths under data_dir) and starts
 * the flusher. Returns 0 or GH_EIO with a message in err. Calling it again
 * (on reload) reopens the files, which is how log rotation works. */
int gh_log_start(const struct gh_config *cfg, struct gh_buf *err);
/* Flushes everything and stops the flusher. */
void gh_log_stop(void);

/* Writes {"ts":…,"level":…,"event":event,"msg":…} to the error log when
 * level is at or above the configured one. */
void gh_log(enum gh_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool gh_log_enabled(enum gh_log_level level);

/* Appends one complete access-log line (JSON, newline included). */
void gh_log_access(const char *line, size_t len);

/* Lines dropped because a buffer was full, since start. */
uint64_t gh_log_dropped(void);
