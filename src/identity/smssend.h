/* SMS senders behind one interface: `log` appends a JSON line per message
 * to <data>/sms-outbox.jsonl (CONTRACT.md; development and tests), and
 * `webhook` POSTs the same JSON, signed with HMAC-SHA256 of the server's
 * HMAC key (header X-Gatehouse-Signature: sha256=<hex>), with a timeout and
 * retries. Messages are queued (bounded) to one sender thread, so sending
 * never blocks a loop. Created and freed on the main thread; any thread
 * may send. */
#pragma once

#include "core/common.h"

struct gh_smssend;

struct gh_smssend_options {
    const char *kind;        /* "log" or "webhook" */
    const char *outbox_path; /* for log */
    const char *url;         /* for webhook */
    uint64_t timeout_ms;
    unsigned retries;
    const uint8_t *hmac_key; /* 32 bytes */
    unsigned queue_max;
};

/* 0, or GH_EINVAL (unknown kind, webhook without URL) / GH_EIO. */
int gh_smssend_new(const struct gh_smssend_options *o, struct gh_smssend **out);
/* Sends what is queued, then stops. */
void gh_smssend_free(struct gh_smssend *s);
/* Queues one message. 0 or GH_EBUSY when the queue is full. */
int gh_smssend_send(struct gh_smssend *s, const char *to, const char *purpose, const char *code,
                    const char *text);
/* Messages handed over (written or delivered) and failed, since start. */
uint64_t gh_smssend_sent(struct gh_smssend *s);
uint64_t gh_smssend_failed(struct gh_smssend *s);
