/* This module implements redis_uv.h: hiredis's event hooks on a libuv
 * poll (reads, and writes that could not go at once) and a prepare handle
 * (the turn's writes). */
#include "shield/redis_uv.h"

#include <stdbool.h>
#include <stdlib.h>

struct ev {
    redisAsyncContext *ac; /* NULL once hiredis has let go (cleanup) */
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;      /* what the poll watches: UV_READABLE, UV_WRITABLE */
    bool want_write; /* hiredis has output waiting */
    bool writing;    /* inside redisAsyncHandleWrite from the prepare */
    int open;        /* handles not yet closed */
};

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct ev *e = h->data;
    if (status < 0)
        events = UV_READABLE; /* the read finds the error and disconnects */
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void watch(struct ev *e, int events)
{
    if (events == e->events)
        return;
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, on_poll);
    else
        uv_poll_stop(&e->poll);
}

static void on_flush(uv_prepare_t *h)
{
    struct ev *e = h->data;
    uv_prepare_stop(h);
    if (!e->ac || !e->want_write)
        return;
    e->writing = true;
    redisAsyncHandleWrite(e->ac); /* then del_write, add_write or cleanup */
    e->writing = false;
}

static void add_read(void *d)
{
    struct ev *e = d;
    watch(e, e->events | UV_READABLE);
}

static void del_read(void *d)
{
    struct ev *e = d;
    watch(e, e->events & ~UV_READABLE);
}

static void add_write(void *d)
{
    struct ev *e = d;
    e->want_write = true;
    /* a connect in progress, or a write that left output behind (the
     * socket's buffer is full): wait until the socket takes more */
    if (e->writing || !(e->ac->c.flags & REDIS_CONNECTED)) {
        watch(e, e->events | UV_WRITABLE);
        return;
    }
    if (!(e->events & UV_WRITABLE))
        uv_prepare_start(&e->flush, on_flush);
}

static void del_write(void *d)
{
    struct ev *e = d;
    e->want_write = false;
    watch(e, e->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
    struct ev *e = h->data;
    if (--e->open == 0)
        free(e);
}

static void cleanup(void *d)
{
    struct ev *e = d;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, on_closed);
    uv_close((uv_handle_t *)&e->flush, on_closed);
}

int gh_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return REDIS_ERR;
    struct ev *e = calloc(1, sizeof *e);
    if (!e)
        return REDIS_ERR;
    if (uv_poll_init(loop, &e->poll, ac->c.fd)) {
        free(e);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &e->flush);
    e->ac = ac;
    e->open = 2;
    e->poll.data = e;
    e->flush.data = e;
    ac->ev.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
