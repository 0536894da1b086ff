/* vm: starting QEMU (fork + execvp, never a shell) and waiting for its sockets. */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

int vm_spawn(const struct vm_argv *argv, const char *cwd, int errlog_fd, bool quiet_stdio, bool new_pgrp, pid_t *pid,
             vs_err *e)
{
    /* A pipe closed by exec tells the parent whether execvp worked, and with which errno. */
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        return vs_err_sys(e, errno, "pipe");
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        close(ep[0]);
        close(ep[1]);
        return vs_err_sys(e, errno, "fork");
    }
    if (p == 0) {
        int err;
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        /* Own process group: a terminal's Ctrl-C reaches vmsnap, which shuts QEMU down cleanly. */
        if (new_pgrp)
            setpgid(0, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        /* QEMU creates the QMP and console sockets (also the user's --qmp/--console paths): born 0600. */
        umask(0177);
        if (quiet_stdio) {
            int dn = open("/dev/null", O_RDWR);
            if (dn >= 0) {
                dup2(dn, 0);
                dup2(dn, 1);
                dup2(errlog_fd >= 0 ? errlog_fd : dn, 2);
            }
        } else if (errlog_fd >= 0) {
            dup2(errlog_fd, 2);
        }
        if (cwd && chdir(cwd) < 0) {
            err = errno | 0x10000;   /* tells the parent it was the directory */
            (void)!write(ep[1], &err, sizeof err);
            _exit(127);
        }
        execvp(argv->v[0], argv->v);
        err = errno;
        (void)!write(ep[1], &err, sizeof err);
        _exit(127);
    }
    close(ep[1]);
    int err = 0;
    ssize_t n;
    do
        n = read(ep[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == sizeof err) {
        waitpid(p, NULL, 0);
        if (err & 0x10000)
            return vs_err_sys(e, err & 0xffff, "starting %s in directory %s", argv->v[0], cwd);
        return vs_err_sys(e, err, "starting %s", argv->v[0]);
    }
    *pid = p;
    return 0;
}

int vm_wait_socket(const char *path, pid_t pid, double timeout_s, vs_err *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return vs_err_set(e, ENAMETOOLONG, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    double end = vs_now_s() + timeout_s;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return vs_err_sys(e, errno, "socket");
        int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (r == 0)
            return 0;
        if (pid > 0) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid)
                return vs_err_set(e, ECHILD, "QEMU exited (%s %d) before opening %s",
                                  WIFEXITED(st) ? "status" : "signal",
                                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), path);
        }
        if (vs_now_s() > end)
            return vs_err_set(e, ETIMEDOUT, "timed out waiting for QEMU to listen on %s", path);
        nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
    }
}
