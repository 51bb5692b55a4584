/* This module implements the buffered JSON-lines logger of log.h. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SINK_CAP   (4u << 20) /* bytes waiting per sink before lines drop */
#define FLUSH_MS   100

struct sink {
    int fd;          /* -1 = off */
    bool owned;      /* we opened it (not stdout/stderr) */
    struct gh_buf pending;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;
    bool stopping;
    struct sink err, access;
    atomic_int level;
    atomic_uint_fast64_t dropped;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .err = {.fd = 2},
       .access = {.fd = -1},
       .level = GH_LOG_INFO};

static const char *level_name[] = {"debug", "info", "warn", "error"};

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

static int open_sink(struct sink *s, const char *spec, int std_fd, const char *data_dir,
                     struct gh_buf *err)
{
    int fd;
    bool owned = false;
    if (!strcmp(spec, "off")) {
        fd = -1;
    } else if (!strcmp(spec, "-")) {
        fd = std_fd;
    } else {
        char path[4200];
        if (spec[0] == '/')
            snprintf(path, sizeof path, "%s", spec);
        else
            snprintf(path, sizeof path, "%s/%s", data_dir, spec);
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
            gh_buf_printf(err, "cannot open log file %s: %s", path, strerror(errno));
            return GH_EIO;
        }
        owned = true;
    }
    /* swap under the lock so the flusher never writes to a closed fd */
    pthread_mutex_lock(&L.mu);
    int old = s->fd;
    bool old_owned = s->owned;
    s->fd = fd;
    s->owned = owned;
    if (!s->pending.cap)
        gh_buf_init(&s->pending, SINK_CAP);
    pthread_mutex_unlock(&L.mu);
    if (old_owned && old >= 0)
        close(old);
    return 0;
}

static void flush_sink_locked(struct sink *s, struct gh_buf *spare)
{
    /* swap buffers; the caller writes `spare` after unlocking */
    struct gh_buf tmp = s->pending;
    s->pending = *spare;
    *spare = tmp;
}

static void *flusher(void *arg)
{
    (void)arg;
    gh_thread_name("gh-log");
    struct gh_buf err_spare, acc_spare;
    gh_buf_init(&err_spare, SINK_CAP);
    gh_buf_init(&acc_spare, SINK_CAP);
    pthread_mutex_lock(&L.mu);
    for (;;) {
        bool stop = L.stopping;
        flush_sink_locked(&L.err, &err_spare);
        flush_sink_locked(&L.access, &acc_spare);
        int efd = L.err.fd, afd = L.access.fd;
        pthread_mutex_unlock(&L.mu);
        if (err_spare.len && efd >= 0)
            write_all(efd, err_spare.data, err_spare.len);
        if (acc_spare.len && afd >= 0)
            write_all(afd, acc_spare.data, acc_spare.len);
        gh_buf_reset(&err_spare);
        gh_buf_reset(&acc_spare);
        pthread_mutex_lock(&L.mu);
        if (stop)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += FLUSH_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!L.stopping)
            pthread_cond_timedwait(&L.cv, &L.mu, &ts);
    }
    pthread_mutex_unlock(&L.mu);
    gh_buf_dispose(&err_spare);
    gh_buf_dispose(&acc_spare);
    return NULL;
}

int gh_log_start(const struct gh_config *cfg, struct gh_buf *err)
{
    int rc = open_sink(&L.err, cfg->log.error_log, 2, cfg->server.data_dir, err);
    if (rc)
        return rc;
    rc = open_sink(&L.access, cfg->log.access_log, 1, cfg->server.data_dir, err);
    if (rc)
        return rc;
    atomic_store(&L.level, (int)cfg->log.level);
    pthread_mutex_lock(&L.mu);
    bool start = !L.running;
    L.running = true;
    L.stopping = false;
    pthread_mutex_unlock(&L.mu);
    if (start && pthread_create(&L.thread, NULL, flusher, NULL)) {
        L.running = false;
        gh_buf_printf(err, "cannot start the log thread");
        return GH_EIO;
    }
    return 0;
}

void gh_log_stop(void)
{
    pthread_mutex_lock(&L.mu);
    bool running = L.running;
    L.stopping = true;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.mu);
    if (running)
        pthread_join(L.thread, NULL);
    pthread_mutex_lock(&L.mu);
    L.running = false;
    if (L.access.owned && L.access.fd >= 0)
        close(L.access.fd);
    if (L.err.owned && L.err.fd >= 0)
        close(L.err.fd);
    L.access.fd = -1;
    L.access.owned = false;
    L.err.fd = 2;
    L.err.owned = false;
    gh_buf_dispose(&L.access.pending);
    gh_buf_dispose(&L.err.pending);
    L.access.pending.cap = 0;
    L.err.pending.cap = 0;
    pthread_mutex_unlock(&L.mu);
}

bool gh_log_enabled(enum gh_log_level level)
{
    return (int)level >= atomic_load_explicit(&L.level, memory_order_relaxed);
}

static void append(struct sink *s, const char *line, size_t len)
{
    pthread_mutex_lock(&L.mu);
    if (!L.running) {
        pthread_mutex_unlock(&L.mu);
        if (s->fd >= 0)
            write_all(s->fd, line, len);
        return;
    }
    if (s->fd < 0 || gh_buf_append(&s->pending, line, len))
        atomic_fetch_add_explicit(&L.dropped, s->fd < 0 ? 0 : 1, memory_order_relaxed);
    pthread_mutex_unlock(&L.mu);
}

void gh_log(enum gh_log_level level, const char *event, const char *fmt, ...)
{
    if (!gh_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char ts[40];
    char line[2600];
    struct gh_buf b;
    gh_buf_init(&b, sizeof line * 2);
    gh_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"",
                  gh_time_rfc3339(gh_wall_ms(), ts, sizeof ts), level_name[level]);
    gh_buf_append_json_str(&b, event, strlen(event));
    gh_buf_append_str(&b, "\",\"msg\":\"");
    gh_buf_append_json_str(&b, msg, GH_MIN((size_t)n, sizeof msg - 1));
    gh_buf_append_str(&b, "\"}\n");
    if (b.data)
        append(&L.err, b.data, b.len);
    gh_buf_dispose(&b);
}

void gh_log_access(const char *line, size_t len)
{
    append(&L.access, line, len);
}

uint64_t gh_log_dropped(void)
{
    return atomic_load_explicit(&L.dropped, memory_order_relaxed);
}
