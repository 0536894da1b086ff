/* vm: the boot host's control protocol (docs/CONTROL.md, "vmsnap boot"): the request line both sides agree on,
 * and the host's side of a connection. client.c is the other side. */
#include "vm/vm.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

json_t *vm_ctl_request_json(const struct vm_snap_request *rq, vs_err *e)
{
    /* json_pack gives NULL for a string that is not UTF-8. */
    json_t *o = json_pack("{s:s,s:s,s:b,s:b}", VM_CTL_CMD, "snap", "output", rq->output, "thin", rq->thin, "live",
                          rq->live);
    if (!o) {
        vs_err_set(e, EINVAL, "output path '%s' is not UTF-8, which the boot process's control protocol (JSON) "
                   "cannot carry: choose another name", rq->output);
        return NULL;
    }
    if (rq->codec)
        json_object_set_new(o, "codec", json_string(rq->codec));
    if (rq->cipher)
        json_object_set_new(o, "cipher", json_string(rq->cipher));
    if (rq->encrypt && json_object_set_new(o, "encrypt", json_string(rq->encrypt)) < 0) {
        json_decref(o);
        vs_err_set(e, EINVAL, "key file path '%s' is not UTF-8 text", rq->encrypt);
        return NULL;
    }
    if (rq->message && json_object_set_new(o, "message", json_string(rq->message)) < 0) {
        json_decref(o);
        vs_err_set(e, EINVAL, "--message is not UTF-8 text");
        return NULL;
    }
    return o;
}

static int opt_string(json_t *j, const char *key, const char **out, vs_err *e)
{
    json_t *v = json_object_get(j, key);
    if (v && !json_is_string(v))
        return vs_err_set(e, EINVAL, "snap request: \"%s\" must be a string", key);
    *out = json_string_value(v);
    return 0;
}

static int opt_bool(json_t *j, const char *key, bool dflt, bool *out, vs_err *e)
{
    json_t *v = json_object_get(j, key);
    if (v && !json_is_boolean(v))
        return vs_err_set(e, EINVAL, "snap request: \"%s\" must be true or false", key);
    *out = v ? json_is_true(v) : dflt;
    return 0;
}

int vm_ctl_request_parse(json_t *j, struct vm_snap_request *rq, vs_err *e)
{
    *rq = (struct vm_snap_request){ 0 };
    /* "execute" is what vmsnap's client sent before the protocol took CONTROL.md's "cmd". */
    const char *cmd = json_string_value(json_object_get(j, VM_CTL_CMD));
    if (!cmd)
        cmd = json_string_value(json_object_get(j, "execute"));
    if (!json_is_object(j) || !cmd)
        return vs_err_set(e, EINVAL, "expected a request {\"" VM_CTL_CMD "\": \"snap\", ...}");
    if (strcmp(cmd, "snap"))
        return vs_err_set(e, EINVAL, "unknown command \"%.64s\" (this socket takes \"snap\")", cmd);
    int r;
    if ((r = opt_string(j, "output", &rq->output, e)) < 0 || (r = opt_string(j, "codec", &rq->codec, e)) < 0 ||
        (r = opt_string(j, "message", &rq->message, e)) < 0 || (r = opt_string(j, "encrypt", &rq->encrypt, e)) < 0 ||
        (r = opt_string(j, "cipher", &rq->cipher, e)) < 0 ||
        (r = opt_bool(j, "thin", false, &rq->thin, e)) < 0 ||
        (r = opt_bool(j, "live", true, &rq->live, e)) < 0)
        return r;
    if (!rq->output || (rq->output[0] != '/' && os_scheme_of(rq->output) != OS_S3))
        return vs_err_set(e, EINVAL, "snap request: \"output\" must be an absolute path or s3://BUCKET/KEY");
    if (rq->encrypt && rq->encrypt[0] != '/')
        return vs_err_set(e, EINVAL, "snap request: \"encrypt\" must be an absolute path");
    return 0;
}

/* One line, never blocking: a client that does not read its progress loses lines, not the host's time. */
static void send_line(int fd, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        size_t n = strlen(s);
        s[n] = '\n';   /* json_dumps' NUL becomes the newline; length n + 1 */
        send(fd, s, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        free(s);
    }
    json_decref(o);
}

void vm_ctl_progress(int fd, const struct vm_snap_progress *p)
{
    send_line(fd, json_pack("{s:{s:s,s:f,s:I,s:I,s:f}}", VM_CTL_PROGRESS, "phase", p->phase, "elapsed", p->elapsed_s,
                            "transferred", (json_int_t)p->transferred, "remaining", (json_int_t)p->remaining, "mbps",
                            p->mbps));
}

bool vm_ctl_cancel_requested(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0)
        return false;
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    /* {"cmd": "cancel"}, or the bare "cancel" line older clients sent; a hang-up cancels too. */
    return n <= 0 || memmem(buf, (size_t)n, VM_CTL_CANCEL, strlen(VM_CTL_CANCEL));
}

void vm_ctl_serve(int fd, int watch_fd, vm_ctl_snap_fn snap, void *opaque)
{
    VS_AUTOFREE char *line = vs_xmalloc(VS_CTL_MAX_LINE + 1);
    size_t have = 0, used;
    vs_err e = { 0 };
    json_t *result = NULL, *rq = NULL;
    struct vm_snap_request r;
    int n = vs_recv_line(fd, watch_fd, line, VS_CTL_MAX_LINE, &have, &used, VS_CTL_TIMEOUT_S, &e);
    if (n == -EINTR)
        vs_err_set(&e, EINTR, "vmsnap boot is handling a signal: request dropped, try again");
    else if (n < 0)
        vs_err_prefix(&e, "request");
    else {
        json_error_t je;
        rq = json_loads(line, 0, &je);
        if (!rq)
            vs_err_set(&e, EINVAL, "request is not JSON: %s", je.text);
        else if (vm_ctl_request_parse(rq, &r, &e) == 0)
            result = snap(opaque, &r, &e);
    }
    send_line(fd, result ? json_pack("{s:b,s:o}", VM_CTL_OK, 1, VM_CTL_RESULT, result)
                         : json_pack("{s:b,s:s}", VM_CTL_OK, 0, VM_CTL_ERROR, e.msg));
    json_decref(rq);
}
