/* vm: the page server shared by the lazily resumed clones of one archive on this host (docs/LAZY-RESUME.md,
 * "Clones").
 *
 * One process per archive identity (resolved path, size, mtime and the UUIDs of its chain) serves the RAM streams
 * as FUSE files; every QEMU maps its file privately, so the clean pages they read are one copy in the page cache
 * and a clone's writes stay in its own anonymous pages. Its directory BASE/pages-<hash of the identity> (0700)
 * holds a lock file, the server's socket (0600) and its mount point mnt-XXXXXX.
 *
 * References: each boot host keeps a connection to the server open, and names its QEMU once it runs; the server
 * holds a pidfd of that QEMU, so a boot host that dies (even SIGKILL: the kernel closes its connection) drops its
 * reference as soon as its QEMU is gone too. No pid file is trusted.
 * Attach and exit are serialised by flock on the lock file: a boot connects (or starts a server) only while
 * holding it, and the server decides to exit only while holding it (non-blocking, so a boot waiting for its
 * greeting never deadlocks it), after accepting every pending connection. The server removes its socket and lock
 * file before it lets go, so a later boot starts a fresh one instead of reaching one that is leaving. */
#include "vm/host.h"
#include "objstore/objstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <xxhash.h>

#define HELLO_TIMEOUT_S 30.0
#define READY_FD 3

/* ---- identity and directory ------------------------------------------------------------------------------ */

/* The server's key: the archive's resolved path, size and mtime (a store's object: its location as written), and
 * the UUID of every archive of its chain. */
static int identity(struct arc *a, const char *path, char out[33], vs_err *e)
{
    bool remote = os_is_remote(path);
    VS_AUTOFREE char *real = remote ? vs_xstrdup(path) : realpath(path, NULL);
    struct stat st = { 0 };
    if (!real || (!remote && stat(real, &st) < 0))
        return vs_err_sys(e, errno, "archive %s", path);
    XXH3_state_t *s = XXH3_createState();
    XXH3_128bits_reset(s);
    XXH3_128bits_update(s, real, strlen(real) + 1);
    uint64_t v[3] = { (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec };
    XXH3_128bits_update(s, v, sizeof v);
    for (; a; a = arc_parent(a)) {   /* a chain read through signed chunk tables is served apart from the same
                                        chain read unchecked */
        const char *signer = arc_get_source(a)->signer;
        XXH3_128bits_update(s, arc_uuid(a), 16);
        XXH3_128bits_update(s, signer ? signer : "", signer ? strlen(signer) + 1 : 1);
    }
    XXH128_hash_t h = XXH3_128bits_digest(s);
    XXH3_freeState(s);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    return 0;
}

/* The lock file of dir, locked exclusively: retried when the server removed it between our open and our lock. */
static int lock_dir(const char *dir, int *out, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("%s/lock", dir);
    for (int tries = 0; tries < 100; tries++) {
        int r = vs_dir_owned(dir, true, 077, e);
        if (r < 0)
            return vs_err_prefix(e, "page server directory");
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == ENOENT)
            continue;   /* the directory went away with a server that just left */
        if (fd < 0)
            return vs_err_sys(e, errno, "opening %s", path);
        while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
            ;
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            *out = fd;
            return 0;
        }
        close(fd);
    }
    return vs_err_set(e, EAGAIN, "cannot lock %s: it keeps being replaced", path);
}

/* Mount points of servers that died without unmounting (the kernel keeps a dead FUSE mount): detach them. */
static void clean_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        if (strncmp(de->d_name, "mnt-", 4))
            continue;
        VS_AUTOFREE char *p = vs_xasprintf("%s/%s", dir, de->d_name);
        if (rmdir(p) < 0 && umount2(p, MNT_DETACH) == 0)
            rmdir(p);
    }
    closedir(d);
}

/* ---- the server -------------------------------------------------------------------------------------------- */

struct client {
    int fd;      /* the boot host's connection, -1 once closed */
    int pidfd;   /* its QEMU, -1 until named or once exited */
    pid_t peer;  /* the boot host (SO_PEERCRED) */
};

struct srv {
    struct arc *arc;
    struct pf_file *files;
    unsigned n;
    struct pf_mount *m;
    char *dir, *mnt, *sock;
    int lfd, sigfd;
    struct client *cl;
    size_t ncl;
    bool error_sent;
    /* recording (a page server of the recording boot alone): for rec_s seconds once its VM runs, into rec_path */
    double rec_s, rec_deadline;
    const char *rec_path;
    int rec_pid;                   /* the recording VM's QEMU */
    bool rec_done;
    bool ws_sent;                  /* the working-set prefetch's outcome went to the boot hosts */
};

/* "WORD TEXT\n" to a boot host, never blocking the server. */
static void send_line(int fd, const char *word, const char *text)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s %s\n", word, text);
    if (n > 0)
        (void)!send(fd, buf, (size_t)VS_MIN(n, (int)sizeof buf - 1), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* "ws-prefetched BYTES FETCHED REQUESTS SECONDS START" once the working set is in the page cache (START: when that
 * began, CLOCK_MONOTONIC seconds, which the boot host compares with when its VM ran). */
static void send_ws_prefetched(int fd, const struct pf_stats *ps)
{
    char t[200];
    snprintf(t, sizeof t, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %.6f %.6f", ps->ws_bytes, ps->ws_fetched,
             ps->ws_requests, ps->ws_done_s, ps->ws_start_s);
    send_line(fd, "ws-prefetched", t);
}

static void srv_accept(struct srv *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        struct ucred cred = { 0 };
        socklen_t cl = sizeof cred;
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
        s->cl = vs_xrealloc(s->cl, (s->ncl + 1) * sizeof *s->cl);
        s->cl[s->ncl++] = (struct client){ fd, -1, cred.pid };
        send_line(fd, "ok", s->mnt);
        struct pf_stats ps;
        pf_get_stats(s->m, &ps);
        if (ps.errors)
            send_line(fd, "error", ps.first_error);
        if (ps.ws_done_s > 0)
            send_ws_prefetched(fd, &ps);
    }
}

/* The parent of pid, or -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *p = strrchr(buf, ')');   /* the name may hold spaces and parentheses */
    int ppid = -1;
    return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? ppid : -1;
}

/* A line from a boot host: "prefetch-ws" when it attaches with prefetch on (the working set is fetched while its
 * QEMU starts and loads the device state), "qemu PID [prefetch]" once its VM runs. Only its own child counts (it
 * has not reaped it while it runs, so the pid is that QEMU's). */
static void srv_line(struct srv *s, struct client *c, const char *line)
{
    int pid = 0, used = 0;
    vs_err e = { 0 };
    if (!strcmp(line, "prefetch-ws")) {
        if (!s->rec_path && pf_prefetch_ws_start(s->m, &e) < 0) {
            char note[600];
            snprintf(note, sizeof note, "no working-set prefetch: %s", e.msg);
            send_line(c->fd, "note", note);
        }
        return;
    }
    if (sscanf(line, "qemu %d%n", &pid, &used) != 1 || pid <= 0 || c->pidfd >= 0 || parent_of(pid) != c->peer)
        return;
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (s->rec_path && !s->rec_deadline) {
        s->rec_deadline = vs_now_s() + s->rec_s;
        s->rec_pid = pid;
    }
    if (!strcmp(line + used, " prefetch") && pf_prefetch_start(s->m, &e) < 0) {
        char note[600];
        snprintf(note, sizeof note, "no background prefetch: %s", e.msg);
        send_line(c->fd, "note", note);
    }
}

static void srv_read(struct srv *s, struct client *c)
{
    char buf[256];
    ssize_t n = recv(c->fd, buf, sizeof buf - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    buf[n] = 0;
    for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        srv_line(s, c, line);
    }
}

/* The recorded reads cut to the pages QEMU has mapped, which the guest touched (readahead brought the rest). *n and
 * *r replaced; *read: the pages read. Failing that, the reads are kept and note says why. */
static void rec_touched(struct srv *s, struct pf_range **r, size_t *n, uint64_t *read, char *note, size_t cap)
{
    *read = 0;
    for (size_t i = 0; i < *n; i++)
        *read += (*r)[i].len / PF_PAGE_SIZE;
    uint64_t **maps = NULL;
    vs_err e = { 0 };
    int pid = vs_test_fault("ws-pagemap") ? 0 : s->rec_pid;   /* tests: no /proc/0, the real failure path */
    if (pf_mapped(pid, s->mnt, s->files, s->n, &maps, &e) < 0) {
        snprintf(note, cap, "the working set holds every page read, readahead included: %s", e.msg);
        return;
    }
    struct pf_range *kept = NULL;
    size_t k = pf_record_keep(*r, *n, maps, &kept);
    pf_mapped_free(maps, s->n);
    free(*r);
    *r = kept;
    *n = k;
}

/* The recording as a working-set record (streams named as the archive's RAM streams). */
static int rec_encode(struct srv *s, uint8_t **out, size_t *len, struct mst_ws *ws, bool *truncated, uint64_t *read,
                      char *note, size_t cap, vs_err *e)
{
    VS_AUTOFREE struct pf_range *r = NULL;
    size_t n = 0;
    pf_record_stop(s->m, &r, &n, truncated);
    rec_touched(s, &r, &n, read, note, cap);
    VS_AUTOFREE struct mst_ram *rs = NULL;
    unsigned nram = 0;
    int rc = mst_ram_streams(s->arc, &rs, &nram, e);
    if (rc < 0)
        return rc;
    ws->nstreams = nram;
    ws->streams = vs_xcalloc(nram ? nram : 1, sizeof *ws->streams);
    for (unsigned i = 0; i < nram; i++) {   /* pf_archive_files lists them in this order */
        snprintf(ws->streams[i].name, sizeof ws->streams[i].name, "%s%s", MST_RAM_PREFIX, rs[i].block);
        ws->streams[i].size = rs[i].size;
    }
    ws->n = n;
    ws->entries = vs_xcalloc(n ? n : 1, sizeof *ws->entries);
    for (size_t i = 0; i < n; i++)
        ws->entries[i] = (struct mst_ws_entry){ .stream = r[i].file, .off = r[i].off,
                                                .pages = (uint32_t)(r[i].len / MST_PAGE_SIZE) };
    return mst_ws_encode(ws, out, len, e);
}

/* Time is up: write the recording durably, 0600, and tell the boot host "ws-recorded RANGES PAGES TRUNCATED READ
 * PATH" (READ: the pages the kernel read meanwhile), after "ws-uncut WHY" when it could not be cut to the pages the
 * guest touched, or "ws-failed WHY". */
static void srv_rec_finish(struct srv *s)
{
    s->rec_done = true;
    struct mst_ws ws = { 0 };
    VS_AUTOFREE uint8_t *buf = NULL;
    size_t len = 0;
    bool truncated = false;
    vs_err e = { 0 };
    VS_AUTOFREE char *dir = vs_xstrdup(s->rec_path);
    char *slash = strrchr(dir, '/');
    *slash = 0;
    uint64_t read = 0;
    char note[600] = "";
    int r = rec_encode(s, &buf, &len, &ws, &truncated, &read, note, sizeof note, &e);
    if (r == 0)
        r = vm_rundir_write_bytes(dir, slash + 1, buf, len, true, &e);
    for (size_t i = 0; r == 0 && note[0] && i < s->ncl; i++)
        if (s->cl[i].fd >= 0)
            send_line(s->cl[i].fd, "ws-uncut", note);
    char t[4400];
    if (r == 0)
        snprintf(t, sizeof t, "%zu %" PRIu64 " %d %" PRIu64 " %s", ws.n, ws.pages, truncated, read, s->rec_path);
    else
        snprintf(t, sizeof t, "the working set was not recorded: %s", e.msg);
    mst_ws_free(&ws);
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].fd >= 0)
            send_line(s->cl[i].fd, r == 0 ? "ws-recorded" : "ws-failed", t);
}

/* Drop clients whose connection is closed and whose QEMU (if named) has exited. */
static void srv_reap(struct srv *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->ncl; i++) {
        struct client *c = &s->cl[i];
        if (c->fd < 0 && c->pidfd >= 0 && poll(&(struct pollfd){ c->pidfd, POLLIN, 0 }, 1, 0) == 1) {
            close(c->pidfd);
            c->pidfd = -1;
        }
        if (c->fd >= 0 || c->pidfd >= 0)
            s->cl[k++] = *c;
    }
    s->ncl = k;
}

/* Nobody holds a reference: leave, unless a boot is attaching (it holds the lock) or has just connected. */
static bool srv_may_exit(struct srv *s, int *lockfd)
{
    VS_AUTOFREE char *lock = vs_xasprintf("%s/lock", s->dir);
    int fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return true;   /* removed by hand: no boot can attach the regular way any more */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return false;
    }
    srv_accept(s);
    if (s->ncl) {
        close(fd);
        return false;
    }
    if (vs_test_fault("pagesrv-exit-slow"))   /* a boot arriving now must wait, then start a server of its own */
        sleep(2);
    /* Gone before the lock is released: the next boot starts a server of its own. */
    unlink(s->sock);
    close(s->lfd);
    s->lfd = -1;
    unlink(lock);
    *lockfd = fd;
    return true;
}

static void srv_loop(struct srv *s)
{
    for (;;) {
        struct pollfd *p = vs_xcalloc(s->ncl + 2, sizeof *p);
        p[0] = (struct pollfd){ s->lfd, POLLIN, 0 };
        p[1] = (struct pollfd){ s->sigfd, POLLIN, 0 };
        for (size_t i = 0; i < s->ncl; i++)
            p[i + 2] = (struct pollfd){ s->cl[i].fd >= 0 ? s->cl[i].fd : s->cl[i].pidfd, POLLIN, 0 };
        int nr = poll(p, s->ncl + 2, 200);
        bool quit = false;
        if (nr > 0 && (p[1].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(s->sigfd, &si, sizeof si) == sizeof si)
                quit |= si.ssi_signo == SIGTERM;
        }
        for (size_t i = 0; nr > 0 && i < s->ncl; i++)
            if (p[i + 2].revents && s->cl[i].fd >= 0)
                srv_read(s, &s->cl[i]);
        bool incoming = nr > 0 && (p[0].revents & POLLIN);
        free(p);
        if (incoming)
            srv_accept(s);
        struct pf_stats ps;
        pf_get_stats(s->m, &ps);
        if (ps.errors && !s->error_sent) {   /* the boot hosts report it; their QEMU got SIGBUS */
            for (size_t i = 0; i < s->ncl; i++)
                if (s->cl[i].fd >= 0)
                    send_line(s->cl[i].fd, "error", ps.first_error);
            s->error_sent = true;
        }
        if (ps.ws_done_s > 0 && !s->ws_sent) {
            for (size_t i = 0; i < s->ncl; i++)
                if (s->cl[i].fd >= 0)
                    send_ws_prefetched(s->cl[i].fd, &ps);
            s->ws_sent = true;
        }
        if (s->rec_deadline && !s->rec_done && vs_now_s() >= s->rec_deadline)
            srv_rec_finish(s);
        srv_reap(s);
        int lockfd = -1;
        if (quit || (!s->ncl && srv_may_exit(s, &lockfd))) {
            if (s->lfd >= 0)
                unlink(s->sock);
            pf_unmount_exiting(s->m);   /* the process ends: no thread is waited for */
            rmdir(s->mnt);
            rmdir(s->dir);      /* fails while a boot holds its lock file in it: fine */
            if (lockfd >= 0)
                close(lockfd);
            return;
        }
    }
}

/* The archive's working set as ranges of the page files for the prefetch to fetch first. A bad one is left out
 * here (each boot host checks it too and says why). */
static void srv_plan_ws(struct srv *s)
{
    struct mst_ws ws;
    VS_AUTOFREE struct mst_ram *rs = NULL;
    unsigned nram = 0;
    if (mst_ws_read(s->arc, &ws, NULL) != 1)
        return;
    if (mst_ram_streams(s->arc, &rs, &nram, NULL) == 0) {
        VS_AUTOFREE unsigned *file = vs_xcalloc(ws.nstreams, sizeof *file);
        for (unsigned k = 0; k < ws.nstreams; k++)
            for (file[k] = 0; file[k] < nram && strcmp(ws.streams[k].name + strlen(MST_RAM_PREFIX),
                                                       rs[file[k]].block); file[k]++)
                ;
        VS_AUTOFREE struct pf_range *r = vs_xcalloc(ws.n ? ws.n : 1, sizeof *r);
        for (size_t i = 0; i < ws.n; i++)
            r[i] = (struct pf_range){ file[ws.entries[i].stream], ws.entries[i].off,
                                      (uint64_t)ws.entries[i].pages * MST_PAGE_SIZE };
        pf_prefetch_first(s->m, r, ws.n);
    }
    mst_ws_free(&ws);
}

/* The server process: fds 0-2 on /dev/null, fd READY_FD told "ok" or "ERR why" once it serves. */
static _Noreturn void srv_main(const struct vm_host_opts *o, const struct cr_key *akey, const char *dir,
                               const char *key, double rec_s, const char *rec_path)
{
    vs_err e = { 0 };
    struct srv s = { .dir = vs_xstrdup(dir), .lfd = -1, .rec_s = rec_s, .rec_path = rec_path };
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    s.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    char again[33];
    const char *archive = o->archive;
    /* an encrypted archive: the boot's key; a signed one: the boot's checks; both inherited by the fork */
    struct arc_open_opts ao = { .key = akey, .wrap = o->wrap_source, .wrap_opaque = o->opaque };
    int r = arc_open(archive, &ao, &s.arc, &e);
    if (r == 0 && (r = identity(s.arc, archive, again, &e)) == 0 && strcmp(again, key))
        r = vs_err_set(&e, ESTALE, "archive %s changed while its page server started", archive);
    if (r == 0)
        r = pf_archive_files(s.arc, &s.files, &s.n, &e);
    s.mnt = vs_xasprintf("%s/mnt-XXXXXX", dir);
    if (r == 0 && !mkdtemp(s.mnt))
        r = vs_err_sys(&e, errno, "creating a mount point in %s", dir);
    if (r == 0 && (r = pf_mount(s.mnt, s.files, s.n, &s.m, &e)) < 0)
        rmdir(s.mnt);
    if (r == 0 && rec_path)
        pf_record_start(s.m);
    else if (r == 0)
        srv_plan_ws(&s);
    s.sock = vs_xasprintf("%s/srv.sock", dir);
    if (r == 0 && (r = vs_listen_unix(s.sock, &s.lfd, &e)) < 0) {
        pf_unmount(s.m);
        rmdir(s.mnt);
    }
    if (r < 0) {
        dprintf(READY_FD, "ERR %s\n", e.msg);
        _exit(1);
    }
    fcntl(s.lfd, F_SETFL, O_NONBLOCK);
    dprintf(READY_FD, "ok\n");
    close(READY_FD);
    srv_loop(&s);
    _exit(0);
}

/* Start a server for the archive (the caller holds the lock): fork, then a grandchild in a session of its own, so
 * that it outlives this boot host; this process waits for its verdict. The child uses none of the parent's objects
 * (it opens the archive anew; glibc's fork leaves malloc usable), so threads the parent may run by then (the block
 * cache's read-ahead) hold no lock it needs. */
static int srv_start(const struct vm_host_opts *o, const struct cr_key *akey, const char *dir, const char *key,
                     double rec_s, const char *rec_path, vs_err *e)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return vs_err_sys(e, errno, "pipe");
    pid_t child = fork();
    if (child < 0) {
        close(p[0]);
        close(p[1]);
        return vs_err_sys(e, errno, "fork");
    }
    if (child == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        int dn = open("/dev/null", O_RDWR);
        dup2(dn, 0);
        dup2(dn, 1);
        dup2(dn, 2);
        dup2(p[1], READY_FD);
        close_range(READY_FD + 1, ~0u, 0);   /* the boot host's archive, sockets and lock stay its own */
        signal(SIGPIPE, SIG_IGN);
        umask(077);
        srv_main(o, akey, dir, key, rec_s, rec_path);
    }
    close(p[1]);
    waitpid(child, NULL, 0);
    char buf[600];
    ssize_t n;
    size_t len = 0;
    while ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0 || (n < 0 && errno == EINTR))
        len += n > 0 ? (size_t)n : 0;
    close(p[0]);
    buf[len] = 0;
    buf[strcspn(buf, "\n")] = 0;
    if (!strcmp(buf, "ok"))
        return 0;
    return vs_err_set(e, EIO, "page server: %s", !strncmp(buf, "ERR ", 4) ? buf + 4 : "exited before it served");
}

/* ---- the boot host's side -------------------------------------------------------------------------------- */

/* Connect and read the greeting "ok MOUNT-POINT". -ECONNREFUSED / -ENOENT: no server. */
static int hello(const char *sock, int *out, char **mnt, vs_err *e)
{
    VS_AUTOCLOSE int fd = -1;
    int r = vs_connect_unix(sock, &fd, e);
    if (r < 0)
        return r;
    char buf[VS_CTL_MAX_LINE / 16];
    size_t have = 0, used = 0;
    int n = vs_recv_line(fd, -1, buf, sizeof buf - 1, &have, &used, HELLO_TIMEOUT_S, e);
    if (n < 0)
        return vs_err_prefix(e, "page server %s", sock);
    if (strncmp(buf, "ok /", 4))
        return vs_err_set(e, EPROTO, "page server %s: unexpected greeting '%.100s'", sock, buf);
    *mnt = vs_xstrdup(buf + 3);
    *out = VS_STEAL_FD(fd);
    return 0;
}

int host_pages_attach(struct host *h, vs_err *e)
{
    char key[33];
    VS_AUTOFREE char *base = NULL;
    int r = identity(h->arc, h->o->archive, key, e);
    if (r < 0 || (r = vm_rundir_base(&base, e)) < 0)
        return r;
    /* A recording boot gets a server of its own: through a shared one its demand reads would miss the pages other
     * clones brought into the page cache, and a prefetch would hide the rest. */
    bool rec = h->o->record_ws_s > 0;
    VS_AUTOFREE char *dir = rec ? vs_xasprintf("%s/pages-%s-rec%d", base, key, (int)getpid())
                                : vs_xasprintf("%s/pages-%s", base, key);
    VS_AUTOFREE char *rec_path = rec ? vs_xasprintf("%s/%s", h->st.dir, VM_WS_FILE) : NULL;
    VS_AUTOFREE char *sock = vs_xasprintf("%s/srv.sock", dir);
    VS_AUTOCLOSE int lockfd = -1;
    if ((r = lock_dir(dir, &lockfd, e)) < 0)
        return r;
    VS_AUTOFREE char *mnt = NULL;
    vs_err he = { 0 };
    r = hello(sock, &h->pages_fd, &mnt, &he);
    if (r == -ECONNREFUSED || r == -ENOENT) {
        unlink(sock);
        clean_stale(dir);
        if ((r = srv_start(h->o, host_key(h), dir, key, h->o->record_ws_s, rec_path, e)) < 0)
            return r;
        r = hello(sock, &h->pages_fd, &mnt, e);
    } else if (r < 0 && e) {
        *e = he;
    }
    if (r < 0)
        return r;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(h->pages_fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
        h->pages_pid = cred.pid;
    /* The working set arrives while QEMU starts and loads the device state, not after. */
    if (!rec && !h->o->no_prefetch && (r = vs_write_full(h->pages_fd, "prefetch-ws\n", 12)) < 0)
        return vs_err_sys(e, -r, "asking the page server for the working set");
    /* QEMU's file; the run directory names the mount too (tools look for RUNDIR/pages). */
    struct pf_file *files = NULL;
    unsigned n = 0;
    if ((r = pf_archive_files(h->arc, &files, &n, e)) < 0)
        return r;
    h->mem_path = vs_xasprintf("%s/%s", mnt, n ? files[0].name : "");
    pf_archive_files_free(files, n);
    h->pages_dir = vs_xasprintf("%s/pages", h->st.dir);
    if (symlink(mnt, h->pages_dir) < 0)
        return vs_err_sys(e, errno, "creating %s", h->pages_dir);
    return 0;
}

int host_pages_running(struct host *h, bool prefetch, vs_err *e)
{
    char line[64];
    int n = snprintf(line, sizeof line, "qemu %d%s\n", (int)h->qemu, prefetch ? " prefetch" : "");
    h->running_s = vs_now_s();
    int r = vs_write_full(h->pages_fd, line, (size_t)n);
    return r < 0 ? vs_err_sys(e, -r, "telling the page server that the VM runs") : 0;
}

/* A working-set line of the server ("ws-recorded ...", "ws-prefetched ...", "ws-failed ...") into the report, the
 * run directory and the log. */
static void ws_line(struct host *h, const char *line)
{
    unsigned long long a = 0, b = 0, c = 0, rd = 0;
    int trunc = 0, used = 0;
    double secs = 0, start = 0;
    char msg[700];
    if (!h->ws_report)
        h->ws_report = json_object();
    if (sscanf(line, "ws-recorded %llu %llu %d %llu %n", &a, &b, &trunc, &rd, &used) == 4 && used) {
        json_object_set_new(h->ws_report, "recorded", json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:b}", "file", line + used,
                            "ranges", (json_int_t)a, "pages", (json_int_t)b, "bytes", (json_int_t)(b * MST_PAGE_SIZE),
                            "read-bytes", (json_int_t)(rd * MST_PAGE_SIZE), "seconds", h->o->record_ws_s,
                            "truncated", trunc));
        snprintf(msg, sizeof msg, "working set recorded: %llu pages (%llu bytes) in %llu ranges%s, of %llu bytes "
                 "read, in %.400s", b, b * MST_PAGE_SIZE, a, trunc ? " (the recording stopped at its cap)" : "",
                 rd * MST_PAGE_SIZE, line + used);
    } else if (!strncmp(line, "ws-uncut ", 9)) {
        json_object_set_new(h->ws_report, "note", json_string(line + 9));
        snprintf(msg, sizeof msg, "%.600s", line + 9);
    } else if (sscanf(line, "ws-prefetched %llu %llu %llu %lf %lf", &a, &b, &c, &secs, &start) == 5) {
        /* when it started and ended, in seconds from the VM running (polled only once it runs) */
        double t0 = start - h->running_s, t1 = t0 + secs;
        json_object_set_new(h->ws_report, "prefetch", json_pack("{s:I,s:I,s:I,s:f,s:f,s:f}", "bytes", (json_int_t)a,
                            "read-bytes", (json_int_t)b, "requests", (json_int_t)c, "seconds", secs,
                            "started", t0, "in-cache", t1));
        snprintf(msg, sizeof msg, "working set prefetched: %llu bytes in the page cache after %.3f s, %.3f s %s the "
                 "VM ran (%llu bytes read in %llu requests)", a, secs, t1 < 0 ? -t1 : t1, t1 < 0 ? "before" : "after",
                 b, c);
    } else if (!strncmp(line, "ws-failed ", 10)) {
        json_object_set_new(h->ws_report, "error", json_string(line + 10));
        snprintf(msg, sizeof msg, "%.600s", line + 10);
    } else {
        return;
    }
    VS_AUTOFREE char *doc = json_dumps(h->ws_report, JSON_COMPACT);
    vm_rundir_write(h->st.dir, VM_WS_REPORT, doc, NULL);
    host_log(h, msg);
}

void host_pages_poll(struct host *h)
{
    char buf[2048];
    ssize_t n = recv(h->pages_fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0)
        return;
    buf[n] = 0;
    if (n == 0) {
        snprintf(h->pages_error, sizeof h->pages_error, "the page server ended");
        close(h->pages_fd);
        h->pages_fd = -1;
        return;
    }
    for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        if (!strncmp(line, "error ", 6) && !h->pages_error[0])
            snprintf(h->pages_error, sizeof h->pages_error, "%s", line + 6);
        else if (!strncmp(line, "note ", 5))
            snprintf(h->memory_note, sizeof h->memory_note, "%s", line + 5);
        else if (!strncmp(line, "ws-", 3))
            ws_line(h, line);
    }
}

void host_pages_detach(struct host *h)
{
    if (h->pages_fd >= 0)
        close(h->pages_fd);   /* the server lets go once our QEMU has exited too */
    h->pages_fd = -1;
    if (h->pages_dir)
        unlink(h->pages_dir);
    free(h->pages_dir);
    free(h->mem_path);
    h->pages_dir = h->mem_path = NULL;
}
