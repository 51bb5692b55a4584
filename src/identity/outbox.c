/* This module implements the SMS outbox of a shared store (issue 14):
 * an SMS answered 202 is a row of the store's sms_outbox, written in the
 * transaction that stores its code, so that it outlives the node that
 * accepted it. That node hands the message to its sender at once, with
 * the row's id, and leases the row for [sms] outbox_lease; the sender's
 * verdict (delivered, or given up) deletes the row. A row whose lease ran
 * out (its node died, or stopped with the message undelivered) is claimed
 * by the sweeper of any node (FOR UPDATE SKIP LOCKED: two nodes never
 * claim the same row at once) and sent again: at least once. Budgets were
 * charged once, at acceptance: a redelivery is the same message. */
#include "identity/internal.h"
#include "obs/metrics.h"

#include <stdint.h>

#define SWEEP_MAX 100 /* rows claimed per sweep */

static void count(_Atomic uint64_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void id_outbox_init(const struct gh_config *cfg)
{
    atomic_store(&ids.outbox_lease_ms, cfg->sms.outbox_lease_ms);
    ids.m_outbox_claimed = gh_metrics_counter(
        "gatehouse_sms_outbox_claimed_total", "",
        "SMS outbox rows whose lease ran out, claimed by this node's sweeper to be sent again");
    ids.m_outbox_delivered =
        gh_metrics_counter("gatehouse_sms_outbox_delivered_total", "",
                           "SMS outbox rows delivered by this node's sender and deleted");
}

int id_outbox_add(struct gh_store_conn *c, const struct gh_smssend_msg *msg, uint64_t *id)
{
    char buf[GH_SMSSEND_MSG_MAX];
    int n = gh_smssend_msg_encode(msg, buf, sizeof buf);
    if (n < 0)
        return n;
    int rc = gh_store_sms_outbox_add(c, buf, (size_t)n,
                                     gh_wall_ms() + atomic_load(&ids.outbox_lease_ms), id);
    sodium_memzero(buf, sizeof buf);
    return rc;
}

void id_outbox_send(uint64_t id, const struct gh_smssend_msg *msg)
{
    if (ids.sender)
        gh_smssend_send_id(ids.sender, id, msg->to, msg->purpose, msg->code, msg->text);
}

static int delete_fn(struct gh_store_conn *c, void *arg)
{
    int rc = gh_store_sms_outbox_delete(c, (uint64_t)(uintptr_t)arg);
    return rc == GH_ENOTFOUND ? 0 : rc; /* another node's copy was first */
}

void id_outbox_done(uint64_t id, bool delivered, void *arg)
{
    (void)arg;
    if (delivered)
        count(ids.m_outbox_delivered, 1);
    /* a delete that cannot be queued leaves the row: sent again after its
     * lease (at least once) */
    if (ids.store)
        gh_store_write(ids.store, delete_fn, (void *)(uintptr_t)id, NULL, NULL);
}

/* A sweep: the rows claimed, opened and decoded, sent after the commit. */
struct sweep {
    unsigned n;
    uint64_t id[SWEEP_MAX];
    struct gh_smssend_msg msg[SWEEP_MAX];
};

static void claimed(uint64_t id, const void *msg, size_t len, void *arg)
{
    struct sweep *sw = arg;
    if (sw->n >= SWEEP_MAX)
        return;
    if (gh_smssend_msg_decode(msg, len, &sw->msg[sw->n])) {
        gh_log(GH_LOG_WARN, "sms_outbox_unreadable", "SMS outbox row %llu is not a message",
               (unsigned long long)id);
        return; /* leased again: looked at once per lease, never sent */
    }
    sw->id[sw->n++] = id;
}

static int sweep_fn(struct gh_store_conn *c, void *arg)
{
    uint64_t now = gh_wall_ms();
    return gh_store_sms_outbox_claim(c, now, now + atomic_load(&ids.outbox_lease_ms), SWEEP_MAX,
                                     claimed, arg);
}

static void sweep_done(struct gh_worker *w, void *arg, int rc)
{
    struct sweep *sw = arg;
    if (w && rc >= 0) { /* committed: the rows are this node's for a lease */
        count(ids.m_outbox_claimed, sw->n);
        for (unsigned i = 0; i < sw->n; i++)
            id_outbox_send(sw->id[i], &sw->msg[i]);
    }
    sodium_memzero(sw, sizeof *sw);
    free(sw);
    atomic_store(&ids.outbox_sweeping, false);
}

void id_outbox_sweep(struct gh_worker *w)
{
    if (!ids.shared_store || !ids.sender || atomic_exchange(&ids.outbox_sweeping, true))
        return;
    struct sweep *sw = calloc(1, sizeof *sw);
    if (sw && !gh_store_write(ids.store, sweep_fn, sw, w, sweep_done))
        return;
    free(sw);
    atomic_store(&ids.outbox_sweeping, false);
}
