/* vm: `vmsnap snap` talking to a boot host's control socket (control.c is the other side). */
#include "vm/vm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int vm_snap_remote(const char *control, const struct vm_snap_request *rq, volatile int *cancel,
                   void (*progress)(void *opaque, json_t *p), void *opaque, json_t **result, vs_err *e)
{
    VS_AUTOCLOSE int fd = -1;
    if (vs_connect_unix(control, &fd, e) < 0)
        return vs_err_prefix(e, "control socket of the vmsnap boot process");
    json_t *o = vm_ctl_request_json(rq, e);
    if (!o)
        return -EINVAL;
    VS_AUTOFREE char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    int r = vs_write_full(fd, line, strlen(line));
    if (r == 0)
        r = vs_write_full(fd, "\n", 1);
    if (r < 0)
        return vs_err_sys(e, -r, "sending to %s", control);
    size_t cap = VS_CTL_MAX_LINE, len = 0;
    VS_AUTOFREE char *buf = vs_xmalloc(cap + 1);
    bool told = false;
    for (;;) {
        if (cancel && *cancel && !told) {
            static const char c[] = "{\"" VM_CTL_CMD "\":\"" VM_CTL_CANCEL "\"}\n";
            (void)!send(fd, c, sizeof c - 1, MSG_NOSIGNAL);
            told = true;
        }
        struct pollfd p = { fd, POLLIN, 0 };
        int pr = poll(&p, 1, 100);
        if (pr < 0 && errno != EINTR)
            return vs_err_sys(e, errno, "waiting for %s", control);
        if (pr <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return vs_err_set(e, ECONNRESET, "the vmsnap boot process closed %s without a result", control);
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = 0;
            json_t *msg = json_loads(buf, 0, NULL);
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
            if (!msg)
                return vs_err_set(e, EPROTO, "unreadable reply on %s", control);
            json_t *v;
            if ((v = json_object_get(msg, VM_CTL_PROGRESS))) {
                if (progress)
                    progress(opaque, v);
            } else if ((v = json_object_get(msg, VM_CTL_RESULT))) {
                *result = json_incref(v);
                json_decref(msg);
                return 0;
            } else {
                r = vs_err_set(e, told ? ECANCELED : EIO, "%s",
                               json_string_value(json_object_get(msg, VM_CTL_ERROR)) ?: "snapshot failed");
                json_decref(msg);
                return r;
            }
            json_decref(msg);
        }
        if (len == cap)
            return vs_err_set(e, EMSGSIZE, "reply line too long on %s", control);
    }
}
