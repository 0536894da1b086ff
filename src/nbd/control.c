/* nbd: the control socket — one JSON object per line in, one per line out (docs/CONTROL.md). Clients are
 * served one at a time by one thread: control traffic is a handful of requests per snapshot. */
#include "nbd/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

struct nbd_control {
    struct nbd_overlay *o;
    nbd_open_base_fn open_base;
    void *opaque;
    int listen_fd, wake[2];
    char *path;
    pthread_t th;
    bool running;
};

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s ? s : vs_xstrdup("{\"ok\":false,\"error\":\"out of memory\"}");
}

static char *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fail(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return dump(json_pack("{s:b, s:s}", "ok", 0, "error", msg));
}

static char *do_status(struct nbd_control *c)
{
    struct nbd_layer_info *v;
    size_t n;
    vs_err e = { 0 };
    if (nbd_overlay_layers(c->o, &v, &n, &e) < 0)
        return fail("%s", e.msg);
    json_t *layers = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(layers, json_pack("{s:I, s:b, s:s, s:I, s:I, s:I}", "seq", (json_int_t)v[i].seq,
                                                "frozen", v[i].frozen, "path", v[i].path, "data_blocks",
                                                (json_int_t)v[i].data_blocks, "zero_blocks",
                                                (json_int_t)v[i].zero_blocks, "trim_blocks",
                                                (json_int_t)v[i].trim_blocks));
    free(v);
    return dump(json_pack("{s:b, s:I, s:i, s:o}", "ok", 1, "size", (json_int_t)nbd_overlay_size(c->o),
                          "block_size", NBD_BLOCK_SIZE, "layers", layers));
}

static int add_run(void *opaque, uint64_t block, uint64_t count, enum nbd_block_state st)
{
    static const char *names[] = { "absent", "data", "zero", "trim" };
    json_array_append_new(opaque, json_pack("[I, I, s]", (json_int_t)block, (json_int_t)count, names[st & 3]));
    return 0;
}

static bool get_layer(json_t *req, uint32_t *seq)
{
    json_t *l = json_object_get(req, "layer");
    if (!json_is_integer(l) || json_integer_value(l) < 0 || json_integer_value(l) > UINT32_MAX)
        return false;
    *seq = (uint32_t)json_integer_value(l);
    return true;
}

char *nbd_control_handle(struct nbd_control *c, const char *line)
{
    json_error_t je;
    json_t *req = json_loads(line, 0, &je);
    if (!req || !json_is_object(req)) {
        json_decref(req);
        return fail("request is not a JSON object: %s", req ? "wrong type" : je.text);
    }
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    vs_err e = { 0 };
    uint32_t seq = 0;
    char *out;
    if (!cmd) {
        out = fail("request has no \"cmd\" string");
    } else if (!strcmp(cmd, "status")) {
        out = do_status(c);
    } else if (!strcmp(cmd, "flush")) {
        out = nbd_overlay_flush(c->o, &e) < 0 ? fail("%s", e.msg) : dump(json_pack("{s:b}", "ok", 1));
    } else if (!strcmp(cmd, "freeze")) {
        double t0 = vs_now_s();
        if (nbd_overlay_freeze(c->o, &seq, &e) < 0)
            out = fail("%s", e.msg);
        else
            out = dump(json_pack("{s:b, s:I, s:f}", "ok", 1, "layer", (json_int_t)seq, "seconds", vs_now_s() - t0));
    } else if (!strcmp(cmd, "layer-runs")) {
        json_t *runs = json_array();
        if (!get_layer(req, &seq))
            out = fail("\"layer-runs\" needs an integer \"layer\"");
        else if (nbd_overlay_layer_runs(c->o, seq, add_run, runs, &e) < 0)
            out = fail("%s", e.msg);
        else
            out = dump(json_pack("{s:b, s:I, s:O}", "ok", 1, "layer", (json_int_t)seq, "runs", runs));
        json_decref(runs);
    } else if (!strcmp(cmd, "rebase")) {
        const char *path = json_string_value(json_object_get(req, "archive"));
        json_t *d = json_object_get(req, "disk");
        json_int_t disk = d ? json_integer_value(d) : 0;
        struct nbd_base *b = NULL;
        if (!get_layer(req, &seq) || !path || (d && !json_is_integer(d)) || disk < 0 || disk > UINT_MAX)
            out = fail("\"rebase\" needs an integer \"layer\", an \"archive\" path and an optional \"disk\"");
        else if (!c->open_base)
            out = fail("this server cannot open new bases");
        else if (c->open_base(c->opaque, path, (unsigned)disk, &b, &e) < 0)
            out = fail("%s", e.msg);
        else if (nbd_overlay_rebase(c->o, seq, b, &e) < 0) {
            nbd_base_close(b);
            out = fail("%s", e.msg);
        } else
            out = dump(json_pack("{s:b}", "ok", 1));
    } else {
        out = fail("unknown command \"%s\"", cmd);
    }
    json_decref(req);
    return out;
}

/* Serve one client until it disconnects, sends a line too long, does not complete a line within 30 s, or the
 * server stops: the wake pipe is watched with the client, so nbd_control_stop never waits on a client that keeps
 * the line open (or trickles bytes of a line that never ends). */
static void serve_client(struct nbd_control *c, int fd)
{
    struct timeval tv = { .tv_sec = VS_CTL_TIMEOUT_S };   /* a client that never reads its replies is dropped too */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char *buf = vs_xmalloc(VS_CTL_MAX_LINE + 1);
    size_t have = 0, used;
    for (;;) {
        if (vs_recv_line(fd, c->wake[0], buf, VS_CTL_MAX_LINE, &have, &used, VS_CTL_TIMEOUT_S, NULL) < 0)
            break;
        char *reply = nbd_control_handle(c, buf);
        int r = vs_write_full(fd, reply, strlen(reply));
        if (r == 0)
            r = vs_write_full(fd, "\n", 1);
        free(reply);
        if (r < 0)
            break;
        have -= used;
        memmove(buf, buf + used, have);
    }
    free(buf);
}

static void *control_main(void *arg)
{
    struct nbd_control *c = arg;
    struct pollfd p[2] = { { c->listen_fd, POLLIN, 0 }, { c->wake[0], POLLIN, 0 } };
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve_client(c, fd);
        close(fd);
    }
    return NULL;
}

int nbd_control_start(struct nbd_overlay *o, const char *path, nbd_open_base_fn open_base, void *opaque,
                      struct nbd_control **out, vs_err *e)
{
    struct nbd_control *c = vs_xcalloc(1, sizeof(*c));
    c->o = o;
    c->open_base = open_base;
    c->opaque = opaque;
    c->listen_fd = c->wake[0] = c->wake[1] = -1;
    int r = 0;
    if (path) {
        if (pipe2(c->wake, O_CLOEXEC) < 0)
            r = vs_err_sys(e, errno, "creating a pipe");
        else if ((r = vs_listen_unix(path, &c->listen_fd, e)) == 0) {
            c->path = vs_xstrdup(path);
            if ((r = pthread_create(&c->th, NULL, control_main, c)) != 0)
                r = vs_err_sys(e, r, "starting the control thread");
            else
                c->running = true;
        }
    }
    if (r < 0) {
        nbd_control_stop(c);
        return r;
    }
    *out = c;
    return 0;
}

void nbd_control_stop(struct nbd_control *c)
{
    if (!c)
        return;
    if (c->running) {
        (void)!write(c->wake[1], "x", 1);
        pthread_join(c->th, NULL);
    }
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    for (int i = 0; i < 2; i++)
        if (c->wake[i] >= 0)
            close(c->wake[i]);
    if (c->path)
        unlink(c->path);
    free(c->path);
    free(c);
}
