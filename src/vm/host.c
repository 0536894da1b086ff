/* vm: the boot host — the process behind a VM started by `vmsnap boot`. It owns the archive, the overlays and
 * their NBD servers, QEMU's private QMP connection and the run directory; `vmsnap snap` asks it for snapshots on
 * the run directory's control socket (one JSON line in; progress lines and one result line out), so a snapshot
 * is taken by the one process that can freeze the overlay and read the frozen layers. */
#include "vm/host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

void host_log(struct host *h, const char *msg)
{
    if (h->o->log)
        h->o->log(h->o->opaque, msg);
    if (!h->o->quiet_stdio || h->o->errlog_fd >= 0 || !h->st.dir)
        return;
    VS_AUTOFREE char *path = vs_xasprintf("%s/qemu.log", h->st.dir);
    VS_AUTOFREE char *line = vs_xasprintf("vmsnap: %s\n", msg);
    VS_AUTOCLOSE int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        vs_write_full(fd, line, strlen(line));   /* O_APPEND: one write, the line stays whole beside QEMU's */
}

void host_log_cb(void *opaque, const char *msg) { host_log(opaque, msg); }

int vm_host_run(const struct vm_host_opts *o, vs_err *e)
{
    struct host h = { .o = o, .sigfd = -1, .ctl = -1, .client = -1, .pages_fd = -1 };
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    h.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    int r = host_start(&h, e);
    if (r < 0) {
        if (o->ready)
            o->ready(o->opaque, NULL);
        vs_err keep = e ? *e : (vs_err){ 0 };
        host_stop_qemu(&h);
        host_cleanup(&h);
        if (e)
            *e = keep;
        return r;
    }
    bool mem_error_logged = false;
    while (!h.qemu_exited) {
        if (h.pages_fd >= 0)
            host_pages_poll(&h);
        if (h.pages_error[0] && !mem_error_logged) {
            char msg[700];
            snprintf(msg, sizeof msg, "guest memory could not be read: %s", h.pages_error);
            host_log(&h, msg);
            mem_error_logged = true;
        }
        if (h.quit_requested) {
            host_stop_qemu(&h);
            break;
        }
        struct pollfd p[4] = { { h.sigfd, POLLIN, 0 }, { h.ctl, POLLIN, 0 }, { h.q ? qmp_fd(h.q) : -1, POLLIN, 0 },
                               { h.pages_fd, POLLIN, 0 } };
        if (poll(p, 4, 1000) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(h.sigfd, &si, sizeof si) == sizeof si)
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
                    h.quit_requested = true;
        }
        if (waitpid(h.qemu, &h.qemu_status, WNOHANG) == h.qemu)
            h.qemu_exited = true;
        if (p[1].revents & POLLIN) {
            int c = accept4(h.ctl, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                h.client = c;   /* for host_snap's progress and cancel */
                vm_ctl_serve(c, h.sigfd, host_snap, &h);
                h.client = -1;
                close(c);
            }
        }
        if (p[2].revents && h.q) {
            if (qmp_pump(h.q, NULL) < 0) {
                qmp_close(h.q);   /* QEMU is going away; SIGCHLD follows */
                h.q = NULL;
            } else {
                qmp_drop_events(h.q);
            }
        }
    }
    int status = h.qemu_status;
    bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* A QEMU killed by a failed page read may be gone before the server's word arrives: wait for it briefly. */
    if (failed && h.pages_fd >= 0 && !h.pages_error[0] && poll(&(struct pollfd){ h.pages_fd, POLLIN, 0 }, 1, 500) > 0)
        host_pages_poll(&h);
    char pages_error[sizeof h.pages_error];
    snprintf(pages_error, sizeof pages_error, "%s", h.pages_error);
    host_cleanup(&h);
    if (pages_error[0] && failed)
        return vs_err_set(e, EIO, "QEMU was stopped: guest memory could not be read from %s (%s); the VM never ran "
                          "on wrong data", o->archive, pages_error);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return vs_err_set(e, EIO, "QEMU exited with %s %d", WIFEXITED(status) ? "status" : "signal",
                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}
