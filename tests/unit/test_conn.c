/* Unit tests of the connection state machine (http/conn.c) on one worker
 * loop driven by the test, without a whole server: no threads, no
 * signals, no subsystems. A real client socket on loopback sends bytes;
 * the test turns the loop and checks which of the worker's lists the
 * connection is in (header, body, busy, idle), what the client reads,
 * and that every deadline and stop path closes what it should. Each test
 * ends by checking that no handle is left on the loop. */
#include "http/server.h"
#include "test_util.h"

#include "core/addrtab.h"
#include "http/conn.h"
#include "http/parser.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>

struct fixture {
    struct gh_server srv;
    struct gh_http_server http;
    struct gh_worker *w;
    struct gh_http_req *pending; /* the /later request, not answered yet */
    unsigned handled;
};

static struct fixture *current;

static void h_later(struct gh_http_req *req)
{
    current->pending = req;
    current->handled++;
}

static void h_now(struct gh_http_req *req)
{
    current->handled++;
    gh_http_respond(req, 200, "text/plain", "now", 3);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    current = f;
    assert_int_equal(sodium_init() < 0, 0);
    struct gh_buf err;
    gh_buf_init(&err, 512);
    struct gh_config *cfg = gh_config_new();
    assert_non_null(cfg);
    const char *set[] = {"server.listen=127.0.0.1:0", "server.admin_listen=127.0.0.1:0",
                         "log.access_log=off", "log.level=error"};
    for (size_t i = 0; i < GH_ARRAY_LEN(set); i++)
        assert_int_equal(gh_config_set_assignment(cfg, set[i], "test", &err), 0);
    struct gh_server *srv = &f->srv;
    pthread_mutex_init(&srv->cfg_mu, NULL);
    srv->cfg = cfg;
    gh_http_server_attach(srv, &f->http);
    assert_non_null(gh_router_add(&srv->http->router, "GET", "/later", h_later, NULL));
    assert_non_null(gh_router_add(&srv->http->router, "POST", "/later", h_later, NULL));
    assert_non_null(gh_router_add(&srv->http->router, "GET", "/now", h_now, NULL));
    srv->addrs = gh_addrtab_new(64);
    assert_non_null(srv->addrs);
    srv->nworkers = 1;
    srv->workers = calloc(1, sizeof *srv->workers);
    assert_non_null(srv->workers);
    assert_int_equal(srv->proto->open(srv, cfg, &err), 0);
    assert_true(srv->port > 0);
    /* the admin listener is not served here */
    close(srv->admin.http->listen_fd);
    srv->admin.http->listen_fd = -1;
    struct gh_worker *w = &srv->workers[0];
    w->srv = srv;
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(srv->proto->worker_init(w), 0);
    w->cfg = gh_config_ref(cfg);
    srv->proto->config(w);
    assert_int_equal(srv->proto->start(w), 0);
    f->w = w;
    gh_buf_dispose(&err);
    *state = f;
    return 0;
}

static void turn(struct gh_worker *w)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

static unsigned count(struct gh_list *h)
{
    unsigned n = 0;
    for (struct gh_list *it = h->next; it != h; it = it->next)
        n++;
    return n;
}

/* Turns the loop until cond holds (at most about 2 s). */
#define TURN_UNTIL(w, cond)                                                                        \
    do {                                                                                           \
        for (int i_ = 0; i_ < 2000 && !(cond); i_++) {                                             \
            turn(w);                                                                               \
            if (!(cond))                                                                           \
                usleep(1000);                                                                      \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct gh_server *srv = &f->srv;
    struct gh_worker *w = f->w;
    gh_conn_close_all(w);
    if (f->pending) /* its client has gone: the answer is discarded, the request freed */
        gh_http_respond(f->pending, 200, "text/plain", "late", 4);
    f->pending = NULL;
    gh_conn_unlisten(w);
    gh_conn_turn_close(w);
    for (int i = 0; i < 100 && uv_loop_alive(&w->loop); i++)
        turn(w);
    srv->proto->loop_done(w);
    /* every handle the connections and the listener opened is closed */
    assert_int_equal(uv_loop_close(&w->loop), 0);
    srv->proto->worker_dispose(w);
    gh_config_unref(w->cfg);
    srv->proto->worker_dispose(&srv->admin);
    free(srv->workers);
    gh_addrtab_free(srv->addrs);
    gh_config_unref(srv->cfg);
    pthread_mutex_destroy(&srv->cfg_mu);
    free(f);
    current = NULL;
    return 0;
}

static int client(const struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void say(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* What the client has received so far (turning the loop meanwhile) once
 * it holds want, or, with want NULL, until the server closes. */
static void hear(struct gh_worker *w, int fd, const char *want, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < 2000; i++) {
        turn(w);
        ssize_t n = read(fd, out + len, cap - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            out[len] = '\0';
        }
        if (want ? strstr(out, want) != NULL : n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        usleep(1000);
    }
    fail_msg("the client never got %s; it has: %.200s", want ? want : "EOF", out);
}

/* header -> busy -> idle -> header again: one keep-alive connection. */
static void states_of_a_request(void **state)
{
    struct fixture *f = *state;
    struct gh_worker *w = f->w;
    struct gh_http_worker *h = w->http;
    int fd = client(f);
    TURN_UNTIL(w, h->nconns == 1);
    assert_int_equal(count(&h->conns_header), 1);
    assert_int_equal(h->npending, 1);

    say(fd, "GET /later HTTP/1.1\r\nHost: x\r\n");
    turn(w);
    assert_int_equal(count(&h->conns_header), 1); /* headers not complete */
    say(fd, "\r\n");
    TURN_UNTIL(w, f->pending != NULL);
    assert_int_equal(count(&h->conns_busy), 1);
    assert_int_equal(count(&h->conns_header), 0);
    assert_int_equal(h->npending, 0);

    gh_http_respond(f->pending, 200, "text/plain", "later", 5);
    f->pending = NULL;
    char buf[4096];
    hear(w, fd, "later", buf, sizeof buf);
    assert_true(!strncmp(buf, "HTTP/1.1 200 ", 13));
    assert_int_equal(count(&h->conns_idle), 1);
    assert_int_equal(count(&h->conns_busy), 0);

    /* the next request on the same connection starts over */
    say(fd, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
    hear(w, fd, "now", buf, sizeof buf);
    TURN_UNTIL(w, count(&h->conns_idle) == 1);
    assert_int_equal(f->handled, 2);
    assert_int_equal(h->nconns, 1);
    close(fd);
    TURN_UNTIL(w, h->nconns == 0);
}

/* A body being read is in the body list until it is complete. */
static void body_state(void **state)
{
    struct fixture *f = *state;
    struct gh_worker *w = f->w;
    struct gh_http_worker *h = w->http;
    int fd = client(f);
    say(fd, "POST /later HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 10\r\n\r\n{\"a\":");
    TURN_UNTIL(w, count(&h->conns_body) == 1);
    assert_null(f->pending);
    say(fd, "12345");
    TURN_UNTIL(w, f->pending != NULL);
    assert_int_equal(count(&h->conns_body), 0);
    assert_int_equal(count(&h->conns_busy), 1);
    assert_int_equal(f->pending->body.len, 10);
    gh_http_respond(f->pending, 204, NULL, NULL, 0);
    f->pending = NULL;
    char buf[4096];
    hear(w, fd, "\r\n\r\n", buf, sizeof buf);
    assert_true(!strncmp(buf, "HTTP/1.1 204 ", 13));
    close(fd);
    TURN_UNTIL(w, h->nconns == 0);
}

/* The tick's sweep: slow headers get 408, an idle connection is closed
 * once idle_timeout has passed, not before. */
static void deadlines(void **state)
{
    struct fixture *f = *state;
    struct gh_worker *w = f->w;
    struct gh_http_worker *h = w->http;
    const struct gh_config *cfg = w->cfg;
    int slow = client(f);
    TURN_UNTIL(w, h->nconns == 1);
    say(slow, "GET /now HTTP/1.1\r\n");
    turn(w);
    int idle = client(f);
    TURN_UNTIL(w, h->nconns == 2);
    say(idle, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[4096];
    hear(w, idle, "now", buf, sizeof buf);
    TURN_UNTIL(w, count(&h->conns_idle) == 1);

    uint64_t now = uv_now(&w->loop);
    gh_conn_sweep(w, now + cfg->limits.header_timeout_ms - 50); /* in time: nothing */
    assert_int_equal(h->nconns, 2);
    gh_conn_sweep(w, now + cfg->limits.header_timeout_ms + 1);
    hear(w, slow, "\r\n\r\n", buf, sizeof buf);
    assert_true(!strncmp(buf, "HTTP/1.1 408 ", 13));
    assert_int_equal(count(&h->conns_header), 0);

    assert_int_equal(count(&h->conns_idle), 1);
    gh_conn_sweep(w, now + cfg->limits.idle_timeout_ms + 1);
    hear(w, idle, NULL, buf, sizeof buf); /* closed: EOF */
    assert_int_equal(count(&h->conns_idle), 0);
    close(slow);
    close(idle);
    TURN_UNTIL(w, h->nconns == 0);
}

/* A graceful stop closes idle and silent connections at once, lets a
 * request being answered finish, then closes that connection too. */
static void graceful_stop(void **state)
{
    struct fixture *f = *state;
    struct gh_worker *w = f->w;
    struct gh_http_worker *h = w->http;
    int silent = client(f);
    int busy = client(f);
    TURN_UNTIL(w, h->nconns == 2);
    say(busy, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    TURN_UNTIL(w, f->pending != NULL);
    w->stopping = true;
    gh_conn_unlisten(w);
    gh_conn_stop_worker(w);
    assert_int_equal(h->nconns, 1); /* the silent one is gone */
    char buf[4096];
    hear(w, silent, NULL, buf, sizeof buf);
    gh_http_respond(f->pending, 200, "text/plain", "bye", 3);
    f->pending = NULL;
    hear(w, busy, "bye", buf, sizeof buf);
    assert_non_null(strcasestr(buf, "connection: close"));
    TURN_UNTIL(w, h->nconns == 0);
    close(silent);
    close(busy);
}

/* A forced stop closes every connection, whatever its state; the request
 * being answered is marked aborted and freed when its handler answers
 * (ASan checks that nothing leaks). */
static void forced_stop(void **state)
{
    struct fixture *f = *state;
    struct gh_worker *w = f->w;
    struct gh_http_worker *h = w->http;
    int fds[3] = {client(f), client(f), client(f)};
    TURN_UNTIL(w, h->nconns == 3);
    say(fds[1], "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    say(fds[2], "POST /later HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n{");
    TURN_UNTIL(w, f->pending != NULL && count(&h->conns_body) == 1);
    gh_conn_close_all(w);
    assert_int_equal(h->nconns, 0);
    assert_int_equal(h->npending, 0);
    /* the handler finishes into the void: discarded, and the request freed */
    assert_true(f->pending->aborted);
    gh_http_respond(f->pending, 200, "text/plain", "late", 4);
    f->pending = NULL;
    char buf[4096];
    for (int i = 0; i < 3; i++) {
        hear(w, fds[i], NULL, buf, sizeof buf);
        close(fds[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(states_of_a_request, setup, teardown),
        cmocka_unit_test_setup_teardown(body_state, setup, teardown),
        cmocka_unit_test_setup_teardown(deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(graceful_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(forced_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
