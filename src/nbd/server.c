/* nbd: the server — a Unix listening socket, one thread per connection (plus its workers), clean stop. */
#include "nbd/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#define DEFAULT_THREADS 4
#define STOP_GRACE_NS (2ull * 1000 * 1000 * 1000) /* replies in flight to a client that reads them */

struct conn {
    struct nbd_server *srv;
    pthread_t th;
    int fd;
    bool done; /* under srv->lock */
    struct conn *next;
};

struct nbd_server {
    struct nbd_overlay *o;
    struct nbd_server_opts opts;
    atomic_bool stopping;
    bool stopped;
    pthread_mutex_t lock; /* conns, sessions */
    struct conn *conns;
    unsigned sessions;
    int listen_fd, wake[2];
    char *sock_path;
    bool accepting;
    pthread_t accept_th;
    struct read_log rlog;
};

bool server_stopping(struct nbd_server *srv) { return atomic_load(&srv->stopping); }
const struct nbd_server_opts *server_opts(struct nbd_server *srv) { return &srv->opts; }
struct read_log *server_read_log(struct nbd_server *srv) { return &srv->rlog; }

int nbd_server_new(struct nbd_overlay *o, const struct nbd_server_opts *opts, struct nbd_server **out, vs_err *e)
{
    (void)e;
    struct nbd_server *s = vs_xcalloc(1, sizeof(*s));
    s->o = o;
    if (opts)
        s->opts = *opts;
    if (!s->opts.threads)
        s->opts.threads = DEFAULT_THREADS;
    pthread_mutex_init(&s->lock, NULL);
    read_log_init(&s->rlog);
    s->listen_fd = s->wake[0] = s->wake[1] = -1;
    *out = s;
    return 0;
}

int nbd_server_serve_fds(struct nbd_server *srv, int in, int out, vs_err *e)
{
    struct session s = { .srv = srv, .o = srv->o, .in = in, .out = out, .out_is_socket = true };
    pthread_mutex_init(&s.rlock, NULL);
    pthread_mutex_init(&s.wlock, NULL);
    pthread_mutex_init(&s.errlock, NULL);
    pthread_mutex_lock(&srv->lock);
    srv->sessions++;
    pthread_mutex_unlock(&srv->lock);
    int r = session_handshake(&s);
    if (r == 1)
        r = session_transmit(&s, srv->opts.threads);
    if (r < 0 && e)
        *e = s.err;
    pthread_mutex_lock(&srv->lock);
    srv->sessions--;
    pthread_mutex_unlock(&srv->lock);
    pthread_mutex_destroy(&s.rlock);
    pthread_mutex_destroy(&s.wlock);
    pthread_mutex_destroy(&s.errlock);
    return r < 0 ? r : 0;
}

unsigned nbd_server_sessions(struct nbd_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->sessions;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    nbd_server_serve_fds(c->srv, c->fd, c->fd, NULL);
    pthread_mutex_lock(&c->srv->lock);
    close(c->fd); /* under the lock, so stop never shuts down a reused descriptor */
    c->fd = -1;
    c->done = true;
    pthread_mutex_unlock(&c->srv->lock);
    return NULL;
}

/* Join connections that ended (called by the accept thread). */
static void reap(struct nbd_server *s, bool all)
{
    for (;;) {
        struct conn *found = NULL;
        pthread_mutex_lock(&s->lock);
        for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
            if ((*pp)->done || all) {
                found = *pp;
                *pp = found->next;
                break;
            }
        pthread_mutex_unlock(&s->lock);
        if (!found)
            return;
        pthread_join(found->th, NULL);
        free(found);
    }
}

static void *accept_main(void *arg)
{
    struct nbd_server *s = arg;
    struct pollfd p[2] = { { s->listen_fd, POLLIN, 0 }, { s->wake[0], POLLIN, 0 } };
    while (!server_stopping(s)) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* ECONNABORTED, EMFILE...: keep serving the others */
        reap(s, false);
        struct conn *c = vs_xcalloc(1, sizeof(*c));
        c->srv = s;
        c->fd = fd;
        pthread_mutex_lock(&s->lock);
        if (pthread_create(&c->th, NULL, conn_main, c) != 0) {
            pthread_mutex_unlock(&s->lock);
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

int nbd_server_listen_unix(struct nbd_server *s, const char *path, vs_err *e)
{
    if (s->accepting)
        return vs_err_set(e, EBUSY, "server already listening");
    if (pipe2(s->wake, O_CLOEXEC) < 0)
        return vs_err_sys(e, errno, "creating a pipe");
    int r = vs_listen_unix(path, &s->listen_fd, e);
    if (r < 0)
        return r;
    s->sock_path = vs_xstrdup(path);
    if ((r = pthread_create(&s->accept_th, NULL, accept_main, s)) != 0)
        return vs_err_sys(e, r, "starting the NBD accept thread");
    s->accepting = true;
    return 0;
}

static void shutdown_conns(struct nbd_server *s, int how)
{
    pthread_mutex_lock(&s->lock);
    for (struct conn *c = s->conns; c; c = c->next)
        if (!c->done)
            shutdown(c->fd, how);
    pthread_mutex_unlock(&s->lock);
}

static bool conns_running(struct nbd_server *s)
{
    pthread_mutex_lock(&s->lock);
    bool any = false;
    for (struct conn *c = s->conns; c && !any; c = c->next)
        any = !c->done;
    pthread_mutex_unlock(&s->lock);
    return any;
}

int nbd_server_stop(struct nbd_server *s, vs_err *e)
{
    if (s->stopped)
        return 0;
    s->stopped = true;
    atomic_store(&s->stopping, true);
    if (s->accepting) {
        (void)!write(s->wake[1], "x", 1);
        pthread_join(s->accept_th, NULL);
        s->accepting = false;
    }
    /* End every session: readers see EOF, requests in flight still get their replies. A client that stops
     * reading would hold its workers in send() for ever: after a grace period its connection is shut down both
     * ways, which fails those sends. */
    shutdown_conns(s, SHUT_RD);
    for (uint64_t end = vs_now_ns() + STOP_GRACE_NS; conns_running(s) && vs_now_ns() < end;)
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    shutdown_conns(s, SHUT_RDWR);
    reap(s, true);
    return nbd_overlay_flush(s->o, e);
}

void nbd_server_free(struct nbd_server *s)
{
    if (!s)
        return;
    nbd_server_stop(s, NULL);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    if (s->sock_path)
        unlink(s->sock_path);
    free(s->sock_path);
    pthread_mutex_destroy(&s->lock);
    read_log_destroy(&s->rlog);
    free(s);
}
