/* hiredis's asynchronous context on a libuv loop, writing once per turn.
 *
 * hiredis's own libuv adapter asks the poll for writability whenever a
 * command is queued and drops it once written: each batch of commands
 * costs two epoll_ctl calls and a turn of the loop spent only to learn
 * that a socket with room is writable. Here a queued command starts a
 * prepare handle instead, and the whole turn's output is written right
 * before the loop polls (one write for every command of the turn); the
 * poll watches writability only while the connect is pending or the
 * socket's buffer is full.
 *
 * Loop thread only. The handles close with the context (hiredis's
 * cleanup hook); the memory is freed once both have closed. */
#pragma once

#include <hiredis/async.h>
#include <uv.h>

/* REDIS_OK, or REDIS_ERR (out of memory, ac already attached, the poll
 * could not watch ac's socket). */
int gh_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);
