/* SMS senders behind one interface.
 *
 * - `log` appends one JSON line per message to <data>/sms-outbox.jsonl
 *   (docs/API.md; development and tests).
 * - `webhook` POSTs the same JSON line to a URL through libcurl's multi
 *   interface: up to max_inflight transfers at once, a timeout per attempt,
 *   retries with exponential back-off for connection failures, timeouts,
 *   5xx and 429, and header
 *       X-Gatehouse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
 *   computed over "<t>." followed by the exact body bytes (see
 *   gh_smssend_sign and docs/internals/identity.md).
 *
 * Messages go through a bounded queue to one sender thread that owns the
 * file descriptor or the curl multi handle, so sending never blocks a
 * loop; a full queue refuses (counted as dropped). Counters are in the
 * metrics registry as gatehouse_sms_{sent,failed,retried,dropped}_total
 * {sender="log|webhook"} and gauge gatehouse_sms_queued.
 *
 * gh_smssend_new / gh_smssend_free: main thread (they call
 * curl_global_init / curl_global_cleanup). gh_smssend_send and the
 * statistics: any thread. The module copies what it is given; the caller
 * keeps its strings. */
#pragma once

#include "core/common.h"

struct gh_smssend;

struct gh_smssend_options {
    const char *kind;         /* "log" or "webhook" */
    const char *outbox_path;  /* for log */
    const char *url;          /* for webhook (http:// or https://) */
    uint64_t timeout_ms;      /* per attempt, whole transfer */
    unsigned retries;         /* attempts after the first */
    const uint8_t *hmac_key;  /* 32 bytes, the signature key */
    unsigned queue_max;       /* messages waiting; 0 = 10000 */
    unsigned max_inflight;    /* webhook transfers at once (attempts and back-offs); 0 = 64 */
    uint64_t backoff_base_ms; /* first retry's delay; 0 = 500 ms (doubling, capped) */
    /* called on the sender thread when a message sent with an id (an SMS
     * outbox row) ends: delivered, or given up (counted as failed). Not
     * for what is left at stop: that stays in the outbox. May be NULL. */
    void (*done)(uint64_t id, bool delivered, void *arg);
    void *done_arg;
};

/* Back-off before retry n (n >= 1): base * 2^(n-1), capped at
 * GH_SMSSEND_BACKOFF_MAX_MS; 0 for n == 0. The sender takes a random
 * 0–25 % off (jitter), and waits at least the receiver's Retry-After when
 * it sends one (capped the same way). */
#define GH_SMSSEND_BACKOFF_MAX_MS 30000u
uint64_t gh_smssend_backoff_ms(unsigned n, uint64_t base_ms);

/* Whether an attempt that ended with curl result curl_code (a CURLcode)
 * and HTTP status (0 when none) is worth retrying: connection failures,
 * resets and timeouts; statuses 5xx and 429. Not 2xx (done) nor other
 * 4xx (the receiver refuses this message; retrying cannot help). */
bool gh_smssend_retryable(int curl_code, long status);

/* The signature header's value: "t=<t>,v1=<64 hex>", the HMAC-SHA256 with
 * key over "<t>." followed by the len bytes of body. 0, or GH_ETOOBIG when
 * out (GH_SMSSEND_SIG_MAX is enough) is too small. */
#define GH_SMSSEND_SIG_MAX 96
int gh_smssend_sign(const uint8_t key[32], uint64_t t, const char *body, size_t len, char *out,
                    size_t outlen);

/* 0, or GH_EINVAL (unknown kind, webhook without URL) / GH_EIO (outbox
 * cannot be opened) / GH_ENOMEM. */
int gh_smssend_new(const struct gh_smssend_options *o, struct gh_smssend **out);
/* Stops taking messages and drains: log writes what is queued; webhook
 * starts what is queued and lets transfers finish, retries due later are
 * tried at once, all within min(timeout, 5 s) — what is left then counts
 * as failed. */
void gh_smssend_free(struct gh_smssend *s);
/* Queues one message (the JSON {"ts","to","purpose","code","text"}).
 * 0, or GH_EBUSY when the queue is full or stopping (counted as dropped),
 * GH_ENOMEM. */
int gh_smssend_send(struct gh_smssend *s, const char *to, const char *purpose, const char *code,
                    const char *text);
/* The same for the message of SMS outbox row id (not 0): o->done hears
 * how it ended; left at stop, it is neither failed nor done (the row
 * stays for another node or the restart). */
int gh_smssend_send_id(struct gh_smssend *s, uint64_t id, const char *to, const char *purpose,
                       const char *code, const char *text);

/* A message as the SMS outbox keeps it (sealed by the store):
 * "v1\n<to>\n<purpose>\n<code>\n<text>" with to "+" and 1-15 digits,
 * purpose 1-15 of [a-z], code 6 digits, text 1-399 bytes without NUL or
 * newline. */
#define GH_SMSSEND_TEXT_MAX 400
struct gh_smssend_msg {
    char to[24];
    char purpose[16];
    char code[7];
    char text[GH_SMSSEND_TEXT_MAX];
};
#define GH_SMSSEND_MSG_MAX (3 + 24 + 16 + 7 + GH_SMSSEND_TEXT_MAX)
/* Its length written into out (cap bytes; GH_SMSSEND_MSG_MAX is enough),
 * or GH_EINVAL when a field is not as above / GH_ETOOBIG. */
int gh_smssend_msg_encode(const struct gh_smssend_msg *m, char *out, size_t cap);
/* Parses len bytes of s (not NUL-terminated): 0, or GH_EINVAL for
 * anything gh_smssend_msg_encode would not write. */
int gh_smssend_msg_decode(const char *s, size_t len, struct gh_smssend_msg *m);

struct gh_smssend_stats {
    uint64_t sent;     /* written (log) or answered 2xx (webhook) */
    uint64_t failed;   /* given up: attempts exhausted, refused, or left at stop */
    uint64_t retried;  /* attempts after a first one */
    uint64_t dropped;  /* refused because the queue was full */
    unsigned queued;   /* waiting for the sender thread */
    unsigned inflight; /* webhook: transfers running or waiting for a retry */
};
/* Since start, this sender only (the metrics add up every sender). */
void gh_smssend_stats(struct gh_smssend *s, struct gh_smssend_stats *out);
uint64_t gh_smssend_sent(struct gh_smssend *s);
uint64_t gh_smssend_failed(struct gh_smssend *s);
