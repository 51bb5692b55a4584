/* The worker's exit order (core/server.c): the tasks queued on a worker
 * when it stops run before the hooks' dispose, which may free what those
 * tasks write to (a store job's answer once ran after the gateway that
 * had asked for it was freed: a use after free under ASan). And a stop
 * asked while another worker is still starting waits for that worker's
 * async instead of waking a handle not yet initialised (this test asks
 * for it from the first worker's first task, before the admin worker may
 * have started: it crashed in uv_async_send). */
#include "test_util.h"

#include "core/server.h"
#include "http/server.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct probe {
    struct gh_server *srv;
    atomic_bool disposed;
    atomic_int late_ran; /* 1: ran before dispose, 2: after */
    atomic_bool stop_seen;
};

static struct probe probes[2];

static void late_task(struct gh_worker *w, void *data)
{
    (void)w;
    struct probe *p = data;
    atomic_store(&p->late_ran, atomic_load(&p->disposed) ? 2 : 1);
}

/* Runs on the worker: asks for the stop, queues late_task, and returns
 * only once the stop command is pending too, so that the next turn finds
 * both the stop and the task waiting (the stop's handle comes first). */
static void first_task(struct gh_worker *w, void *data)
{
    struct probe *p = data;
    gh_server_request_stop(p->srv);
    assert_int_equal(gh_worker_post(w, late_task, p), 0);
    for (int i = 0; i < 5000 && !(atomic_load(&w->commands) & GH_WCMD_STOP); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&p->stop_seen, (atomic_load(&w->commands) & GH_WCMD_STOP) != 0);
}

static int hook_init(struct gh_worker *w, void *data)
{
    (void)data;
    if (w->admin)
        return 0;
    return gh_worker_post(w, first_task, &probes[w->id]);
}

static void hook_dispose(struct gh_worker *w, void *data)
{
    (void)data;
    if (!w->admin)
        atomic_store(&probes[w->id].disposed, true);
}

static void queued_tasks_run_before_dispose(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    char dir[] = "/tmp/gh-test-server-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data_set[128];
    snprintf(data_set, sizeof data_set, "server.data_dir=%s", dir);
    char *set[] = {"server.listen=127.0.0.1:0", "server.admin_listen=127.0.0.2:0",
                   "server.workers=1",          "log.access_log=off",
                   "log.level=error",           data_set};
    struct gh_buf err;
    gh_buf_init(&err, 1024);
    struct gh_config *cfg = NULL;
    char *envp[] = {NULL};
    int rc = gh_server_build_config(NULL, set, GH_ARRAY_LEN(set), envp, &cfg, &err);
    if (rc)
        fail_msg("config: %s", err.data ? err.data : "?");
    struct gh_server srv;
    struct gh_http_server http;
    rc = gh_server_init(&srv, cfg, &err);
    if (rc)
        fail_msg("init: %s", err.data ? err.data : "?");
    gh_http_server_attach(&srv, &http);
    memset(probes, 0, sizeof probes);
    probes[0].srv = &srv;
    assert_int_equal(gh_server_add_worker_hook(&srv, hook_init, hook_dispose, NULL), 0);
    assert_int_equal(gh_server_run(&srv), 0);
    assert_true(atomic_load(&probes[0].stop_seen));
    assert_true(atomic_load(&probes[0].disposed));
    assert_int_equal(atomic_load(&probes[0].late_ran), 1);
    gh_server_dispose(&srv);
    gh_buf_dispose(&err);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queued_tasks_run_before_dispose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
