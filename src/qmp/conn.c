/* qmp: connecting (socket, greeting, capabilities negotiation), closing, and accessors. */
#include "qmp/qmp-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* Connect within the timeout. A Unix socket whose backlog is full refuses a non-blocking connect with
 * EAGAIN instead of waiting, so retry until the deadline. */
static int connect_unix(const char *path, double timeout_s, int *out, vs_err *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return vs_err_set(e, ENAMETOOLONG, "QMP socket '%s': path longer than %zu bytes", path,
                          sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    VS_AUTOCLOSE int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vs_err_sys(e, errno, "QMP socket '%s': socket", path);
    double deadline = vs_now_s() + timeout_s;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && vs_now_s() < deadline) {
            nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
            continue;
        }
        if (errno == ECONNREFUSED)
            return vs_err_set(e, ECONNREFUSED, "QMP socket '%s': connection refused (is QEMU running?)", path);
        return vs_err_sys(e, errno, "QMP socket '%s': cannot connect", path);
    }
    *out = VS_STEAL_FD(fd);
    return 0;
}

static int int_member(json_t *o, const char *key, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return -1;
    *out = (int)json_integer_value(v);
    return 0;
}

static int read_greeting(struct qmp *q, vs_err *e)
{
    json_t *msg = NULL;
    int r = qmp__read_message(q, qmp__deadline(q, -1), "the greeting", &msg, e);
    if (r == 0)
        return vs_err_set(e, ETIMEDOUT,
                          "QMP socket '%s': no greeting within %.1f s (is another client connected to it?)", q->name,
                          q->timeout_s);
    if (r < 0)
        return r;
    json_t *g = json_object_get(msg, "QMP");
    json_t *ver = json_object_get(json_object_get(g, "version"), "qemu");
    if (!json_is_object(g) || int_member(ver, "major", &q->version[0]) ||
        int_member(ver, "minor", &q->version[1]) || int_member(ver, "micro", &q->version[2])) {
        VS_AUTOFREE char *s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        return qmp__kill(q, e, EPROTO, "not a QMP greeting (no QMP.version.qemu): %.120s", s ? s : "?");
    }
    q->greeting = json_incref(g);
    json_decref(msg);
    return 0;
}

struct qmp *qmp__alloc(int fd, const char *name, const struct qmp_opts *opts)
{
    struct qmp *q = vs_xcalloc(1, sizeof *q);
    q->fd = fd;
    q->name = vs_xstrdup(name ? name : "?");
    q->timeout_s = opts && opts->timeout_s > 0 ? opts->timeout_s : QMP_DEFAULT_TIMEOUT_S;
    q->max_message = opts && opts->max_message ? opts->max_message : QMP_DEFAULT_MAX_MESSAGE;
    q->debug = opts && opts->debug;
    q->peer_pid = -1;
    q->peer_uid = (uid_t)-1;
    q->next_id = 1;
    return q;
}

int qmp_connect_fd(int fd, const char *name, const struct qmp_opts *opts, struct qmp **out, vs_err *e)
{
    struct qmp *q = qmp__alloc(fd, name, opts);

    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int r = vs_err_sys(e, errno, "QMP socket '%s': fcntl", q->name);
        qmp_close(q);
        return r;
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred && cred.pid > 0) {
        q->peer_pid = cred.pid;
        q->peer_uid = cred.uid;
    }
    int r = read_greeting(q, e);
    if (r == 0)
        r = qmp_execute(q, "qmp_capabilities", NULL, NULL, e);
    if (r < 0) {
        qmp_close(q);
        return r;
    }
    *out = q;
    return 0;
}

int qmp_connect(const char *path, const struct qmp_opts *opts, struct qmp **out, vs_err *e)
{
    int fd = -1;
    int r = connect_unix(path, opts && opts->timeout_s > 0 ? opts->timeout_s : QMP_DEFAULT_TIMEOUT_S, &fd, e);
    if (r < 0)
        return r;
    return qmp_connect_fd(fd, path, opts, out, e);
}

void qmp_close(struct qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    if (q->lv)
        qmp__lv_close(q);
    qmp__free_events(q);
    json_decref(q->greeting);
    json_decref(q->commands);
    json_decref(q->migrate_caps);
    free(q->err_class);
    free(q->err_desc);
    free(q->buf);
    free(q->name);
    free(q);
}

void qmp_closep(struct qmp **q)
{
    qmp_close(*q);
}

void qmp_set_timeout(struct qmp *q, double timeout_s)
{
    q->timeout_s = timeout_s > 0 ? timeout_s : QMP_DEFAULT_TIMEOUT_S;
}

double qmp_timeout(const struct qmp *q) { return q->timeout_s; }
const char *qmp_name(const struct qmp *q) { return q->name; }
int qmp_fd(const struct qmp *q) { return q->fd; }
pid_t qmp_peer_pid(const struct qmp *q) { return q->peer_pid; }
uid_t qmp_peer_uid(const struct qmp *q) { return q->peer_uid; }
json_t *qmp_greeting(const struct qmp *q) { return q->greeting; }

void qmp_version(const struct qmp *q, int *major, int *minor, int *micro)
{
    if (major)
        *major = q->version[0];
    if (minor)
        *minor = q->version[1];
    if (micro)
        *micro = q->version[2];
}

bool qmp_version_at_least(const struct qmp *q, int major, int minor)
{
    return q->version[0] > major || (q->version[0] == major && q->version[1] >= minor);
}
