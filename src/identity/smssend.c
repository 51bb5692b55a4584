/* This module implements the SMS senders of smssend.h on one thread: the
 * log sender appends to the outbox with O_APPEND writes of whole lines;
 * the webhook sender uses libcurl (blocking is fine on this thread) with a
 * per-attempt timeout and exponential retry. */
#include "identity/smssend.h"

#include "core/buf.h"
#include "core/log.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct msg {
    struct msg *next;
    char *line; /* the JSON object, newline included */
    size_t len;
};

struct gh_smssend {
    bool webhook;
    char *path, *url;
    uint64_t timeout_ms;
    unsigned retries;
    uint8_t key[32];
    int fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct msg *head, *tail;
    unsigned n, max;
    bool stopping;
    atomic_uint_fast64_t sent, failed;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

static bool post_once(struct gh_smssend *s, CURL *h, const struct msg *m)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, s->key, sizeof s->key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)m->line, m->len);
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[2 * sizeof mac + 1], sig[128];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    snprintf(sig, sizeof sig, "X-Gatehouse-Signature: sha256=%s", hex);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, sig);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, m->line);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)m->len);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    return rc == CURLE_OK && status >= 200 && status < 300;
}

static void deliver(struct gh_smssend *s, CURL *h, struct msg *m)
{
    bool ok = false;
    if (!s->webhook) {
        ok = write(s->fd, m->line, m->len) == (ssize_t)m->len;
    } else if (h) {
        uint64_t wait_ms = 500;
        for (unsigned attempt = 0; !ok && attempt <= s->retries; attempt++) {
            if (attempt) {
                usleep((useconds_t)(wait_ms * 1000));
                wait_ms = GH_MIN(wait_ms * 2, 30000ull);
            }
            ok = post_once(s, h, m);
        }
    }
    if (ok) {
        GH_STAT_ADD(&s->sent, 1);
    } else {
        GH_STAT_ADD(&s->failed, 1);
        gh_log(GH_LOG_WARN, "sms_send_failed", "could not deliver an SMS (%s sender)",
               s->webhook ? "webhook" : "log");
    }
}

static void *sender_main(void *data)
{
    struct gh_smssend *s = data;
    CURL *h = s->webhook ? curl_easy_init() : NULL;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        struct msg *m = s->head;
        if (m) {
            s->head = m->next;
            if (!s->head)
                s->tail = NULL;
            s->n--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!m)
            break;
        deliver(s, h, m);
        sodium_memzero(m->line, m->len);
        free(m->line);
        free(m);
    }
    if (h)
        curl_easy_cleanup(h);
    return NULL;
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
    if (!webhook) {
        s->fd = open(o->outbox_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (s->fd < 0) {
            free(s);
            return GH_EIO;
        }
    } else {
        s->url = strdup(o->url);
    }
    s->timeout_ms = o->timeout_ms;
    s->retries = o->retries;
    memcpy(s->key, o->hmac_key, 32);
    s->max = o->queue_max ? o->queue_max : 10000;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, sender_main, s)) {
        if (s->fd >= 0)
            close(s->fd);
        free(s->url);
        free(s);
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
    pthread_join(s->thread, NULL);
    if (s->fd >= 0)
        close(s->fd);
    free(s->url);
    sodium_memzero(s->key, sizeof s->key);
    free(s);
}

int gh_smssend_send(struct gh_smssend *s, const char *to, const char *purpose, const char *code,
                    const char *text)
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
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n >= s->max) {
        pthread_mutex_unlock(&s->mu);
        free(m->line);
        free(m);
        return GH_EBUSY;
    }
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->n++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

uint64_t gh_smssend_sent(struct gh_smssend *s)
{
    return GH_STAT_GET(&s->sent);
}

uint64_t gh_smssend_failed(struct gh_smssend *s)
{
    return GH_STAT_GET(&s->failed);
}
