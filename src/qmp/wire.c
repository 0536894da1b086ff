/* qmp: the byte stream — splitting QEMU's output into JSON objects, reading with deadlines, sending
 * (with an fd attached when asked), and the traffic log.
 *
 * Framing does not rely on QEMU's "\r\n" after each message: a small scanner tracks brace depth and
 * strings, so several messages in one read, a message split over many reads, and a missing newline
 * all work. The scanner keeps its state across reads, so a message trickling in byte by byte costs
 * linear time, and a message over max_message is refused before it is buffered whole. */
#include "qmp/qmp-priv.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>

#define READ_CHUNK (64 * 1024)
#define MAX_DEPTH 1000           /* deeper nesting than QEMU ever sends; jansson stops at 2048 */
#define LOG_MAX 4096

double qmp__deadline(const struct qmp *q, double timeout_s)
{
    return vs_now_s() + (timeout_s < 0 ? q->timeout_s : timeout_s);
}

static int remaining_ms(double deadline)
{
    double left = deadline - vs_now_s();
    if (left <= 0)
        return 0;
    if (left > 3600 * 24)
        return 3600 * 24 * 1000;
    return (int)(left * 1000) + 1;  /* round up: never wake before the deadline */
}

int qmp__check_alive(struct qmp *q, vs_err *e)
{
    if (!q->dead.code)
        return 0;
    if (e)
        *e = q->dead;
    return q->dead.code;
}

int qmp__kill(struct qmp *q, vs_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof q->dead.msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int r = vs_err_set(&q->dead, code, "QMP socket '%s': %s", q->name, msg);
    if (e)
        *e = q->dead;
    return r;
}

void qmp__log(const struct qmp *q, char dir, const char *data, size_t len)
{
    if (!q->debug)
        return;
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len > LOG_MAX)
        fprintf(stderr, "qmp %s %c %.*s... (%zu bytes)\n", q->name, dir, LOG_MAX, data, len);
    else
        fprintf(stderr, "qmp %s %c %.*s\n", q->name, dir, (int)len, data);
}

/* 1: a complete message parsed into *msg; 0: need more bytes; < 0: broken stream. */
static int extract(struct qmp *q, json_t **msg, vs_err *e)
{
    while (q->scan < q->len) {
        unsigned char c = (unsigned char)q->buf[q->scan];
        if (q->depth == 0) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                q->start = ++q->scan;
                continue;
            }
            if (c != '{')
                return qmp__kill(q, e, EPROTO, "expected a JSON object from QEMU, got byte 0x%02x%s%c%s", c,
                                 c >= 0x20 && c < 0x7f ? " '" : "", c >= 0x20 && c < 0x7f ? c : ' ',
                                 c >= 0x20 && c < 0x7f ? "'" : "");
            q->start = q->scan++;
            q->depth = 1;
            continue;
        }
        if (q->in_str) {
            /* Fast path through long strings (a 20 MB reply is mostly one). */
            const char *p = q->buf + q->scan, *end = q->buf + q->len;
            if (!q->esc) {
                while (p < end && *p != '"' && *p != '\\')
                    p++;
                q->scan = p - q->buf;
                if (p == end)
                    break;
                c = (unsigned char)*p;
            }
            q->scan++;
            if (q->esc)
                q->esc = false;
            else if (c == '\\')
                q->esc = true;
            else
                q->in_str = false;
            continue;
        }
        q->scan++;
        if (c == '"') {
            q->in_str = true;
        } else if (c == '{' || c == '[') {
            if (++q->depth > MAX_DEPTH)
                return qmp__kill(q, e, EPROTO, "JSON from QEMU nested deeper than %d levels", MAX_DEPTH);
        } else if (c == '}' || c == ']') {
            if (--q->depth == 0)
                break;
        }
    }
    size_t n = q->scan - q->start;
    if (q->depth > 0 || n == 0) {
        if (q->depth > 0 && n > q->max_message)
            return qmp__kill(q, e, EMSGSIZE, "message from QEMU larger than the limit of %zu bytes", q->max_message);
        return 0;
    }
    /* A complete object [start, scan). */
    if (n > q->max_message)
        return qmp__kill(q, e, EMSGSIZE, "message from QEMU larger than the limit of %zu bytes", q->max_message);
    const char *text = q->buf + q->start;
    qmp__log(q, '<', text, n);
    json_error_t jerr;
    json_t *m = json_loadb(text, n, JSON_ALLOW_NUL, &jerr);
    q->start = q->scan;
    if (!m)
        return qmp__kill(q, e, EPROTO, "invalid JSON from QEMU: %s (byte %d of a %zu-byte message)", jerr.text,
                         jerr.position, n);
    *msg = m;
    return 1;
}

/* Make room for at least READ_CHUNK more bytes, dropping consumed ones first. */
static void make_room(struct qmp *q)
{
    if (q->start > 0) {
        memmove(q->buf, q->buf + q->start, q->len - q->start);
        q->len -= q->start;
        q->scan -= q->start;
        q->start = 0;
        /* Give back memory after a huge reply. */
        if (q->cap > 4 * READ_CHUNK && q->len < READ_CHUNK) {
            q->cap = 2 * READ_CHUNK;
            q->buf = vs_xrealloc(q->buf, q->cap);
        }
    }
    if (q->cap - q->len < READ_CHUNK) {
        size_t ncap = VS_MAX(q->cap * 2, q->len + 2 * READ_CHUNK);
        q->buf = vs_xrealloc(q->buf, ncap);
        q->cap = ncap;
    }
}

/* 1: read some bytes; 0: deadline passed; < 0: broken. */
static int fill(struct qmp *q, double deadline, const char *what, vs_err *e)
{
    make_room(q);
    for (;;) {
        ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
        if (n > 0) {
            q->len += n;
            return 1;
        }
        if (n == 0)
            return qmp__kill(q, e, ECONNRESET, "connection closed by QEMU while waiting for %s", what);
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET)
            return qmp__kill(q, e, ECONNRESET, "connection reset by QEMU while waiting for %s", what);
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int err = errno;
            return qmp__kill(q, e, err, "reading while waiting for %s: %s", what, strerror(err));
        }
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        int ms = remaining_ms(deadline);
        int r = poll(&p, 1, ms);
        if (r < 0 && errno != EINTR)
            return qmp__kill(q, e, errno, "poll: %s", strerror(errno));
        if (r == 0)
            return 0;
    }
}

int qmp__read_message(struct qmp *q, double deadline, const char *what, json_t **msg, vs_err *e)
{
    int r = qmp__check_alive(q, e);
    if (r < 0)
        return r;
    if (q->lv)
        return qmp__lv_read_event(q, deadline, what, msg, e);
    for (;;) {
        r = extract(q, msg, e);
        if (r != 0)
            return r;
        r = fill(q, deadline, what, e);
        if (r <= 0)
            return r;
    }
}

int qmp__send(struct qmp *q, const char *data, size_t len, int fd, double deadline, const char *what,
              vs_err *e)
{
    int r = qmp__check_alive(q, e);
    if (r < 0)
        return r;
    if (q->lv)
        return vs_err_set(e, ENOTSUP, "%s: raw bytes cannot travel through libvirt", q->name);
    qmp__log(q, '>', data, len);
    size_t done = 0;
    while (done < len) {
        struct iovec iov = { .iov_base = (char *)data + done, .iov_len = len - done };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        if (fd >= 0 && done == 0) {
            memset(&ctl, 0, sizeof ctl);
            mh.msg_control = ctl.buf;
            mh.msg_controllen = sizeof ctl.buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = { .fd = q->fd, .events = POLLOUT };
            int pr = poll(&p, 1, remaining_ms(deadline));
            if (pr < 0 && errno != EINTR)
                return qmp__kill(q, e, errno, "poll: %s", strerror(errno));
            if (pr == 0) {
                if (done > 0) /* half a message on the wire: the stream cannot be resynced */
                    return qmp__kill(q, e, ETIMEDOUT, "QEMU stopped reading while sending %s", what);
                return vs_err_set(e, ETIMEDOUT, "QMP socket '%s': QEMU is not reading (could not send %s)",
                                  q->name, what);
            }
            continue;
        }
        int err = n < 0 ? errno : EIO;
        if (err == EPIPE || err == ECONNRESET)
            return qmp__kill(q, e, ECONNRESET, "connection closed by QEMU while sending %s", what);
        return qmp__kill(q, e, err, "sending %s: %s", what, strerror(err));
    }
    return 0;
}
