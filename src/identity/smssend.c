/* This module implements the SMS senders of smssend.h on one thread each.
 *
 * The log sender appends to the outbox with O_APPEND writes of whole lines.
 *
 * The webhook sender drives a curl multi handle on its own thread
 * (curl_multi_perform / curl_multi_poll), not on the worker loops: the
 * loops never see SMS I/O, and the retry timers, back-off and the drain at
 * stop live in one place. Many transfers run at once (max_inflight, each
 * with its own connection when needed), so a slow or hanging receiver
 * delays only its own message. gh_smssend_send wakes the thread with
 * curl_multi_wakeup (thread-safe). A message being retried keeps its slot
 * (and its easy handle) while it waits, so max_inflight bounds everything
 * the thread holds besides the queue. */
#include "identity/smssend.h"

#include "core/buf.h"
#include "core/log.h"
#include "obs/metrics.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_MAX_MS 5000u
#define POLL_MAX_MS  1000u

struct msg {
    struct msg *next;
    uint64_t id; /* the SMS outbox row, 0 when none */
    char *line;  /* the JSON object, newline included */
    size_t len;
};

/* One message in the webhook sender: running in the multi handle, or
 * waiting for its next attempt in the retry list. */
struct xfer {
    struct xfer *next;                /* retry list */
    struct xfer *all_prev, *all_next; /* every xfer of the sender */
    struct msg *m;
    CURL *h;
    struct curl_slist *hdrs;
    unsigned attempts; /* started so far */
    uint64_t due_ms;   /* next attempt (retry list) */
};

struct gh_smssend {
    bool webhook;
    char *url;
    uint64_t timeout_ms, backoff_base_ms;
    unsigned retries, max_inflight;
    uint8_t key[32];
    int fd;
    CURLM *multi;
    void (*done)(uint64_t id, bool delivered, void *arg);
    void *done_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct msg *head, *tail; /* under mu */
    unsigned n, max;         /* under mu */
    bool stopping;           /* under mu */
    /* sender thread only */
    struct xfer *retry_head;
    struct xfer *all; /* running or waiting */
    unsigned inflight_local;
    /* statistics of this sender (written by the sender thread, dropped by
     * any thread), and the registry's counters shared by every sender */
    atomic_uint_fast64_t sent, failed, retried, dropped;
    atomic_uint inflight, queued;
    _Atomic uint64_t *m_sent, *m_failed, *m_retried, *m_dropped, *m_queued;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void gauge_add(_Atomic uint64_t *g, int d)
{
    if (!g)
        return;
    if (d > 0)
        atomic_fetch_add_explicit(g, (uint64_t)d, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(g, (uint64_t)-d, memory_order_relaxed);
}

uint64_t gh_smssend_backoff_ms(unsigned n, uint64_t base_ms)
{
    if (n == 0)
        return 0;
    uint64_t d = base_ms;
    for (unsigned i = 1; i < n && d < GH_SMSSEND_BACKOFF_MAX_MS; i++)
        d *= 2;
    return GH_MIN(d, (uint64_t)GH_SMSSEND_BACKOFF_MAX_MS);
}

bool gh_smssend_retryable(int curl_code, long status)
{
    switch (curl_code) {
    case CURLE_OK:
        return status == 429 || (status >= 500 && status <= 599);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

int gh_smssend_sign(const uint8_t key[32], uint64_t t, const char *body, size_t len, char *out,
                    size_t outlen)
{
    char ts[24];
    int tn = snprintf(ts, sizeof ts, "%" PRIu64 ".", t);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (size_t)tn);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
    char hex[2 * sizeof mac + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    int n = snprintf(out, outlen, "t=%" PRIu64 ",v1=%s", t, hex);
    return n < 0 || (size_t)n >= outlen ? GH_ETOOBIG : 0;
}

/* ---- the queue ---- */

/* Next message, or NULL when none (waits for one when wait is set and not
 * stopping). */
static struct msg *pop(struct gh_smssend *s, bool wait, bool *stopping)
{
    pthread_mutex_lock(&s->mu);
    while (wait && !s->head && !s->stopping)
        pthread_cond_wait(&s->cv, &s->mu);
    struct msg *m = s->head;
    if (m) {
        s->head = m->next;
        if (!s->head)
            s->tail = NULL;
        s->n--;
        atomic_store_explicit(&s->queued, s->n, memory_order_relaxed);
        gauge_add(s->m_queued, -1);
    }
    *stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return m;
}

static void msg_free(struct msg *m)
{
    sodium_memzero(m->line, m->len);
    free(m->line);
    free(m);
}

static void outcome(struct gh_smssend *s, const struct msg *m, bool ok, const char *why)
{
    if (m && m->id && s->done)
        s->done(m->id, ok, s->done_arg);
    if (ok) {
        GH_STAT_ADD(&s->sent, 1);
        count(s->m_sent, 1);
    } else {
        GH_STAT_ADD(&s->failed, 1);
        count(s->m_failed, 1);
        /* neither the number nor the code: the outcome and why */
        gh_log(GH_LOG_WARN, "sms_send_failed", "could not deliver an SMS (%s sender): %s",
               s->webhook ? "webhook" : "log", why);
    }
}

/* ---- log ---- */

static void log_main(struct gh_smssend *s)
{
    bool stopping;
    struct msg *m;
    while ((m = pop(s, true, &stopping)) != NULL) {
        bool ok = write(s->fd, m->line, m->len) == (ssize_t)m->len;
        outcome(s, m, ok, "outbox write failed");
        msg_free(m);
    }
}

/* ---- webhook ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void xfer_free(struct gh_smssend *s, struct xfer *x)
{
    if (x->all_prev)
        x->all_prev->all_next = x->all_next;
    else
        s->all = x->all_next;
    if (x->all_next)
        x->all_next->all_prev = x->all_prev;
    if (x->h)
        curl_easy_cleanup(x->h);
    curl_slist_free_all(x->hdrs);
    msg_free(x->m);
    free(x);
    s->inflight_local--;
    atomic_store_explicit(&s->inflight, s->inflight_local, memory_order_relaxed);
}

/* Starts the next attempt of x: fresh signature (its timestamp is the
 * attempt's), into the multi handle. false when it cannot. */
static bool attempt(struct gh_smssend *s, struct xfer *x)
{
    char sig[GH_SMSSEND_SIG_MAX], hdr[GH_SMSSEND_SIG_MAX + 32], att[48];
    if (gh_smssend_sign(s->key, gh_wall_ms() / 1000, x->m->line, x->m->len, sig, sizeof sig))
        return false;
    snprintf(hdr, sizeof hdr, "X-Gatehouse-Signature: %s", sig);
    snprintf(att, sizeof att, "X-Gatehouse-Attempt: %u", x->attempts + 1);
    curl_slist_free_all(x->hdrs);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, hdr) : NULL;
    struct curl_slist *h3 = h2 ? curl_slist_append(h2, att) : NULL;
    struct curl_slist *h4 = h3 ? curl_slist_append(h3, "Expect:") : NULL;
    x->hdrs = h4 ? h4 : h;
    if (!h4)
        return false;
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    if (curl_multi_add_handle(s->multi, x->h) != CURLM_OK)
        return false;
    x->attempts++;
    return true;
}

static void start(struct gh_smssend *s, struct msg *m)
{
    struct xfer *x = calloc(1, sizeof *x);
    CURL *h = x ? curl_easy_init() : NULL;
    s->inflight_local++;
    atomic_store_explicit(&s->inflight, s->inflight_local, memory_order_relaxed);
    if (!x || !h) {
        free(x);
        if (h)
            curl_easy_cleanup(h);
        outcome(s, m, false, "out of memory");
        msg_free(m);
        s->inflight_local--;
        atomic_store_explicit(&s->inflight, s->inflight_local, memory_order_relaxed);
        return;
    }
    x->m = m;
    x->h = h;
    x->all_next = s->all;
    if (s->all)
        s->all->all_prev = x;
    s->all = x;
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, m->line);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)m->len);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "gatehouse-sms/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    if (!attempt(s, x)) {
        outcome(s, x->m, false, "could not start a transfer");
        xfer_free(s, x);
    }
}

static void schedule_retry(struct gh_smssend *s, struct xfer *x, uint64_t now, uint64_t min_ms)
{
    uint64_t d = gh_smssend_backoff_ms(x->attempts, s->backoff_base_ms);
    if (d >= 4)
        d -= randombytes_uniform((uint32_t)(d / 4 + 1)); /* jitter: 0–25 % off */
    d = GH_MAX(d, GH_MIN(min_ms, (uint64_t)GH_SMSSEND_BACKOFF_MAX_MS));
    x->due_ms = now + d;
    x->next = s->retry_head;
    s->retry_head = x;
    GH_STAT_ADD(&s->retried, 1);
    count(s->m_retried, 1);
}

/* A transfer ended with result rc. */
static void finished(struct gh_smssend *s, struct xfer *x, CURLcode rc, bool stopping)
{
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t retry_after = 0;
    curl_easy_getinfo(x->h, CURLINFO_RETRY_AFTER, &retry_after);
    curl_multi_remove_handle(s->multi, x->h);
    if (rc == CURLE_OK && status >= 200 && status <= 299) {
        outcome(s, x->m, true, NULL);
        xfer_free(s, x);
        return;
    }
    bool retryable = gh_smssend_retryable((int)rc, status) && x->attempts <= s->retries;
    if (retryable && !stopping) {
        uint64_t ra = retry_after > 0 ? (uint64_t)retry_after * 1000 : 0;
        schedule_retry(s, x, gh_now_ms(), ra);
        return;
    }
    if (retryable && x->m->id) {
        xfer_free(s, x); /* stopping: the outbox row stays for another node */
        return;
    }
    char why[160];
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%s after %u attempt(s)", curl_easy_strerror(rc), x->attempts);
    else
        snprintf(why, sizeof why, "HTTP %ld after %u attempt(s)", status, x->attempts);
    outcome(s, x->m, false, why);
    xfer_free(s, x);
}

/* Starts the retries that are due (all of them when stopping); returns
 * the ms until the next one (UINT64_MAX when none). */
static uint64_t run_retries(struct gh_smssend *s, uint64_t now, bool stopping)
{
    uint64_t next = UINT64_MAX;
    struct xfer **pp = &s->retry_head;
    while (*pp) {
        struct xfer *x = *pp;
        if (stopping || x->due_ms <= now) {
            *pp = x->next;
            x->next = NULL;
            if (!attempt(s, x)) {
                outcome(s, x->m, false, "could not start a retry");
                xfer_free(s, x);
            }
        } else {
            next = GH_MIN(next, x->due_ms - now);
            pp = &x->next;
        }
    }
    return next;
}

static bool is_stopping(struct gh_smssend *s, bool *queued)
{
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    *queued = s->head != NULL;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void webhook_main(struct gh_smssend *s)
{
    uint64_t deadline = 0;
    for (;;) {
        bool queued, st;
        bool stopping = is_stopping(s, &queued);
        struct msg *m;
        while (s->inflight_local < s->max_inflight && (m = pop(s, false, &st)) != NULL)
            start(s, m);
        uint64_t now = gh_now_ms();
        if (stopping && !deadline)
            deadline = now + GH_MIN(s->timeout_ms, (uint64_t)DRAIN_MAX_MS);
        uint64_t next_retry = run_retries(s, now, stopping);
        int running = 0;
        curl_multi_perform(s->multi, &running);
        CURLMsg *cm;
        int left;
        while ((cm = curl_multi_info_read(s->multi, &left)) != NULL) {
            if (cm->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            finished(s, x, cm->data.result, stopping);
        }
        if (stopping) {
            is_stopping(s, &queued);
            if ((!queued && s->inflight_local == 0) || gh_now_ms() >= deadline)
                break;
        }
        long ct = -1;
        curl_multi_timeout(s->multi, &ct);
        uint64_t wait = POLL_MAX_MS;
        if (ct >= 0)
            wait = GH_MIN(wait, (uint64_t)ct);
        if (next_retry != UINT64_MAX)
            wait = GH_MIN(wait, next_retry);
        if (stopping)
            wait = GH_MIN(wait, 50u);
        curl_multi_poll(s->multi, NULL, 0, (int)wait, NULL);
    }
    /* past the drain deadline: whatever is left has failed, but for
     * outbox rows, which stay for another node or the restart */
    s->retry_head = NULL;
    while (s->all) {
        struct xfer *x = s->all;
        curl_multi_remove_handle(s->multi, x->h); /* harmless when not added */
        if (!x->m->id)
            outcome(s, NULL, false, "stopped before it was delivered");
        xfer_free(s, x);
    }
    bool st;
    struct msg *m;
    while ((m = pop(s, false, &st)) != NULL) {
        if (!m->id)
            outcome(s, NULL, false, "stopped before sending");
        msg_free(m);
    }
}

static void *sender_main(void *data)
{
    struct gh_smssend *s = data;
    if (s->webhook)
        webhook_main(s);
    else
        log_main(s);
    return NULL;
}

/* ---- interface ---- */

static void register_metrics(struct gh_smssend *s)
{
    const char *l = s->webhook ? "sender=\"webhook\"" : "sender=\"log\"";
    s->m_sent = gh_metrics_counter("gatehouse_sms_sent_total", l,
                                   "SMS messages written (log) or accepted 2xx (webhook)");
    s->m_failed = gh_metrics_counter("gatehouse_sms_failed_total", l,
                                     "SMS messages given up after their attempts");
    s->m_retried = gh_metrics_counter("gatehouse_sms_retried_total", l,
                                      "SMS webhook attempts after a first one");
    s->m_dropped = gh_metrics_counter("gatehouse_sms_dropped_total", l,
                                      "SMS messages refused because the sender queue was full");
    s->m_queued =
        gh_metrics_gauge("gatehouse_sms_queued", l, "SMS messages waiting for the sender thread");
}

static void destroy(struct gh_smssend *s)
{
    if (s->multi)
        curl_multi_cleanup(s->multi);
    if (s->webhook)
        curl_global_cleanup();
    if (s->fd >= 0)
        close(s->fd);
    free(s->url);
    sodium_memzero(s->key, sizeof s->key);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int gh_smssend_new(const struct gh_smssend_options *o, struct gh_smssend **out)
{
    bool webhook = !strcmp(o->kind, "webhook");
    if (!webhook && strcmp(o->kind, "log"))
        return GH_EINVAL;
    if (webhook && (!o->url || !*o->url))
        return GH_EINVAL;
    struct gh_smssend *s = calloc(1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->webhook = webhook;
    s->fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!webhook) {
        s->fd = open(o->outbox_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (s->fd < 0) {
            destroy(s);
            return GH_EIO;
        }
    } else {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        s->url = strdup(o->url);
        s->multi = curl_multi_init();
        if (!s->url || !s->multi) {
            destroy(s);
            return GH_ENOMEM;
        }
    }
    s->timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
    s->retries = o->retries;
    s->backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 500;
    s->max_inflight = o->max_inflight ? o->max_inflight : 64;
    memcpy(s->key, o->hmac_key, 32);
    s->max = o->queue_max ? o->queue_max : 10000;
    s->done = o->done;
    s->done_arg = o->done_arg;
    register_metrics(s);
    if (pthread_create(&s->thread, NULL, sender_main, s)) {
        destroy(s);
        return GH_ENOMEM;
    }
    *out = s;
    return 0;
}

void gh_smssend_free(struct gh_smssend *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->multi)
        curl_multi_wakeup(s->multi);
    pthread_join(s->thread, NULL);
    destroy(s);
}

int gh_smssend_send(struct gh_smssend *s, const char *to, const char *purpose, const char *code,
                    const char *text)
{
    return gh_smssend_send_id(s, 0, to, purpose, code, text);
}

int gh_smssend_send_id(struct gh_smssend *s, uint64_t id, const char *to, const char *purpose,
                       const char *code, const char *text)
{
    struct gh_buf b;
    gh_buf_init(&b, 4096);
    char ts[40];
    gh_time_rfc3339(gh_wall_ms(), ts, sizeof ts);
    int rc = gh_buf_printf(&b, "{\"ts\":\"%s\",\"to\":\"", ts);
    rc = rc ? rc : gh_buf_append_json_str(&b, to, strlen(to));
    rc = rc ? rc : gh_buf_append_str(&b, "\",\"purpose\":\"");
    rc = rc ? rc : gh_buf_append_json_str(&b, purpose, strlen(purpose));
    rc = rc ? rc : gh_buf_append_str(&b, "\",\"code\":\"");
    rc = rc ? rc : gh_buf_append_json_str(&b, code, strlen(code));
    rc = rc ? rc : gh_buf_append_str(&b, "\",\"text\":\"");
    rc = rc ? rc : gh_buf_append_json_str(&b, text, strlen(text));
    rc = rc ? rc : gh_buf_append_str(&b, "\"}\n");
    struct msg *m = rc ? NULL : calloc(1, sizeof *m);
    if (!m) {
        gh_buf_dispose(&b);
        return rc ? rc : GH_ENOMEM;
    }
    m->line = gh_buf_steal(&b, &m->len);
    m->id = id;
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n >= s->max) {
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        count(s->m_dropped, 1);
        msg_free(m);
        return GH_EBUSY;
    }
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->n++;
    atomic_store_explicit(&s->queued, s->n, memory_order_relaxed);
    gauge_add(s->m_queued, 1);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->multi)
        curl_multi_wakeup(s->multi);
    return 0;
}

void gh_smssend_stats(struct gh_smssend *s, struct gh_smssend_stats *out)
{
    out->sent = GH_STAT_GET(&s->sent);
    out->failed = GH_STAT_GET(&s->failed);
    out->retried = GH_STAT_GET(&s->retried);
    out->dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
    out->queued = atomic_load_explicit(&s->queued, memory_order_relaxed);
    out->inflight = atomic_load_explicit(&s->inflight, memory_order_relaxed);
}

uint64_t gh_smssend_sent(struct gh_smssend *s)
{
    return GH_STAT_GET(&s->sent);
}

uint64_t gh_smssend_failed(struct gh_smssend *s)
{
    return GH_STAT_GET(&s->failed);
}

/* ---- the outbox's messages ---- */

static bool all_of(const char *s, size_t len, size_t min, size_t max, const char *set)
{
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s[i] || !strchr(set, s[i]))
            return false;
    return true;
}

static bool fields_ok(const char *to, size_t tl, const char *pu, size_t pl, const char *co,
                      size_t cl, const char *te, size_t xl)
{
    return tl >= 2 && to[0] == '+' && all_of(to + 1, tl - 1, 1, 15, "0123456789") &&
           all_of(pu, pl, 1, 15, "abcdefghijklmnopqrstuvwxyz") &&
           all_of(co, cl, 6, 6, "0123456789") && xl >= 1 && xl < GH_SMSSEND_TEXT_MAX &&
           !memchr(te, 0, xl) && !memchr(te, '\n', xl);
}

int gh_smssend_msg_encode(const struct gh_smssend_msg *m, char *out, size_t cap)
{
    size_t tl = strnlen(m->to, sizeof m->to), pl = strnlen(m->purpose, sizeof m->purpose);
    size_t cl = strnlen(m->code, sizeof m->code), xl = strnlen(m->text, sizeof m->text);
    if (!fields_ok(m->to, tl, m->purpose, pl, m->code, cl, m->text, xl))
        return GH_EINVAL;
    int n = snprintf(out, cap, "v1\n%s\n%s\n%s\n%s", m->to, m->purpose, m->code, m->text);
    return n < 0 || (size_t)n >= cap ? GH_ETOOBIG : n;
}

int gh_smssend_msg_decode(const char *s, size_t len, struct gh_smssend_msg *m)
{
    memset(m, 0, sizeof *m);
    if (len < 3 || memcmp(s, "v1\n", 3))
        return GH_EINVAL;
    const char *f[4];
    size_t fl[4];
    const char *p = s + 3, *end = s + len;
    for (int i = 0; i < 4; i++) {
        const char *nl = i < 3 ? memchr(p, '\n', (size_t)(end - p)) : end;
        if (!nl)
            return GH_EINVAL;
        f[i] = p;
        fl[i] = (size_t)(nl - p);
        p = nl + (i < 3);
    }
    if (!fields_ok(f[0], fl[0], f[1], fl[1], f[2], fl[2], f[3], fl[3]))
        return GH_EINVAL;
    memcpy(m->to, f[0], fl[0]);
    memcpy(m->purpose, f[1], fl[1]);
    memcpy(m->code, f[2], fl[2]);
    memcpy(m->text, f[3], fl[3]);
    return 0;
}
