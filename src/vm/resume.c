/* vm: resuming a memory stream. A thread decompresses the archive's stream (or copies a file) straight into a
 * pipe (enlarged to 1 MiB) whose read end QEMU got with getfd; `migrate-incoming fd:NAME` loads it. A damaged
 * block stops the feed (QEMU then sees a truncated stream and fails the load): the archive's error is the one
 * reported. QEMU's "failed" and "cancelled" both end the load with its words. When QEMU refuses or stalls the
 * load, it may keep its read end open without reading: we keep a read end too, and stopping the feeder means
 * raising its stop flag, making its further writes fail at once (O_NONBLOCK) and draining the pipe until it has
 * exited, so the join never hangs and an eager reassembly stops instead of decompressing all of RAM.
 * The wait for QEMU is bounded by what the feed does, not only by the caller's timeout: a feed that failed before
 * its first write leaves QEMU an empty pipe whose writer is gone, which neither 7.2 nor 10 ever starts loading
 * (their fd: channel waits for input, and a hang-up is none), so after a failed feed QEMU gets a few seconds to
 * end the load and say why, no more; and bytes waiting in the pipe that QEMU does not take for a while mean it
 * stopped reading, which is reported, not waited out. */
#include "vm/vm.h"
#include "memstore/memstore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define FEED_FAILED_GRACE_S 5.0   /* after a failed feed, for QEMU to end its load and say why */
#define LOAD_STALL_S 30.0         /* bytes in the pipe that QEMU leaves there this long: it stopped reading */

struct feed {
    struct arc *a;         /* NULL: read src_fd until EOF */
    unsigned stream;
    uint64_t size;
    int src_fd;
    int fd;
    int rc;
    uint64_t fed;          /* bytes written to the pipe (not counted when reassembling) */
    double done_at;        /* vs_now_s() when the write end was closed */
    vs_err err;
    bool reassemble;       /* paged memory, eager: device stream + pages -> a full stream */
    bool write_failed;     /* rc is about the pipe (QEMU gave up, or we stopped it), not the archive */
    atomic_bool stop;      /* end the feed at the next chunk */
    atomic_bool done;      /* the write end is closed; rc, err and write_failed are final */
    pthread_mutex_t fd_lock;   /* fd's close against stop_feeder's fcntl (the number could be reused) */
};

/* The write end is closed here only: QEMU's EOF is that close, so no other copy of it may stay open. */
static void close_feed(struct feed *f)
{
    pthread_mutex_lock(&f->fd_lock);
    close(f->fd);
    f->fd = -1;
    f->done_at = vs_now_s();
    pthread_mutex_unlock(&f->fd_lock);
    atomic_store(&f->done, true);
}

/* The feed ended on an error of its source (the archive), not of the pipe. */
static bool feed_failed(struct feed *f)
{
    return atomic_load(&f->done) && f->rc < 0 && !f->write_failed;
}

/* Bytes in the pipe that QEMU has not read, or -1. */
static int pipe_queued(int fd)
{
    int n;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

static void *feed_main(void *arg)
{
    struct feed *f = arg;
    if (f->reassemble) {
        f->rc = mst_reassemble(f->a, f->fd, NULL, &f->err);
        f->write_failed = f->rc < 0 && atomic_load(&f->stop);
        close_feed(f);
        return NULL;
    }
    size_t cap = 1u << 20;
    uint8_t *buf = vs_xmalloc(cap);
    f->rc = 0;
    while ((!f->a || f->fed < f->size) && !atomic_load(&f->stop)) {
        size_t n = (size_t)VS_MIN((uint64_t)cap, f->a ? f->size - f->fed : cap);
        int r = f->a ? arc_pread(f->a, f->stream, buf, n, f->fed, &f->err) : 0;
        ssize_t got = f->a ? (ssize_t)n : read(f->src_fd, buf, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            r = vs_err_sys(&f->err, errno, "reading the memory stream");
        if (r < 0) {
            f->rc = r;
            break;
        }
        if (got == 0)
            break;
        r = vs_write_full(f->fd, buf, (size_t)got);
        if (r < 0) {
            f->rc = vs_err_sys(&f->err, -r, "feeding the memory stream to QEMU");
            f->write_failed = true;
            break;
        }
        f->fed += (uint64_t)got;
    }
    free(buf);
    close_feed(f);
    return NULL;
}

/* What the wait for QEMU's load has seen: it ends at the caller's timeout, when a failed feed leaves QEMU nothing to
 * load, or when QEMU leaves what is in the pipe unread. */
struct load_watch {
    double deadline, timeout_s;
    double failed_by;      /* the feed failed: QEMU has until then to end its load */
    double still_since;    /* since when `queued` bytes sit in the pipe unread */
    double stall_s;
    int queued;
};

static double load_stall_s(void)
{
#ifdef VS_TEST_FAULTS
    const char *v = getenv("VMSNAP_TEST_LOAD_STALL_S");   /* tests: a stalled load found in a second */
    if (v && *v)
        return VS_MAX(0.1, strtod(v, NULL));
#endif
    return LOAD_STALL_S;
}

static int watch_step(struct load_watch *w, bool failed, int queued, const char *status, vs_err *e)
{
    double now = vs_now_s();
    const char *st = status[0] ? status : "not started";
    if (queued != w->queued || queued <= 0) {
        w->queued = queued;
        w->still_since = now;
    }
    /* Before QEMU begins the load (no status, "none", or QEMU 10's "setup"), an empty pipe whose writer is gone
     * never makes it begin: nothing to wait for. */
    bool unstarted = queued == 0 && (!status[0] || !strcmp(status, "none") || !strcmp(status, "setup"));
    if (failed && !w->failed_by)
        w->failed_by = unstarted ? now : now + FEED_FAILED_GRACE_S;
    if (w->failed_by && now >= w->failed_by)
        return vs_err_set(e, EIO, "QEMU did not end its load of the broken-off memory stream (migration %s)", st);
    if (now - w->still_since > w->stall_s)
        return vs_err_set(e, ETIMEDOUT, "QEMU stopped reading the memory stream: %d bytes left unread in its pipe "
                          "for %.0f s (migration %s)", w->queued, w->stall_s, st);
    if (now > w->deadline)
        return vs_err_set(e, ETIMEDOUT, "QEMU did not finish loading the memory stream in %.0f s", w->timeout_s);
    return 0;
}

/* End the feeder whatever QEMU does with its read end. Once the stop flag is up the feeder writes at most one more
 * chunk (and after a failure none: its writes fail with EAGAIN), which our own read end takes; EOF there means its
 * write end is closed, i.e. it is done. */
static void stop_feeder(struct feed *f, pthread_t th, int drain_fd, bool failed)
{
    atomic_store(&f->stop, true);
    pthread_mutex_lock(&f->fd_lock);
    int fl = failed && f->fd >= 0 ? fcntl(f->fd, F_GETFL) : -1;
    if (fl >= 0)
        fcntl(f->fd, F_SETFL, fl | O_NONBLOCK);
    pthread_mutex_unlock(&f->fd_lock);
    char buf[65536];
    ssize_t n;
    while ((n = read(drain_fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        ;
    pthread_join(th, NULL);
}

int vm_resume_memory(struct qmp *q, struct arc *a, unsigned stream, double timeout_s, vs_err *e)
{
    return vm_resume_load(q, &(struct vm_load_src){ .a = a, .stream = stream, .fd = -1 }, timeout_s, NULL, e);
}

int vm_resume_paged(struct qmp *q, struct arc *a, bool lazy, double timeout_s, vs_err *e)
{
    int s = arc_find_stream(a, ARC_KIND_OTHER, MST_DEVICE);
    if (s == ARC_STREAM_NONE)
        return vs_err_set(e, ENOENT, "the archive has no \"%s\" stream", MST_DEVICE);
    struct vm_load_src src = { .a = a, .stream = (unsigned)s, .reassemble = !lazy, .fd = -1 };
    return vm_resume_load(q, &src, timeout_s, NULL, e);
}

int vm_resume_load(struct qmp *q, const struct vm_load_src *src, double timeout_s, struct vm_load_info *info,
                   vs_err *e)
{
    double t0 = vs_now_s();
    struct arc_stream_info si = { 0 };
    int r = src->a ? arc_stream_get(src->a, src->stream, &si) : 0;
    if (r < 0)
        return vs_err_set(e, -r, "archive has no stream %u", src->stream);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return vs_err_sys(e, errno, "pipe");
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    signal(SIGPIPE, SIG_IGN);   /* QEMU giving up on the stream must be an error, not our death */
    r = qmp_getfd(q, "vmsnap-incoming", p[0], e);
    VS_AUTOCLOSE int drain_fd = p[0];
    if (r < 0) {
        close(p[1]);
        return r;
    }
    struct feed f = { .a = src->a, .stream = src->stream, .size = si.size, .src_fd = src->fd, .fd = p[1],
                      .reassemble = src->a && src->reassemble, .fd_lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t th;
    if ((r = pthread_create(&th, NULL, feed_main, &f)) != 0) {
        close(p[1]);
        vs_err ce;
        qmp_closefd(q, "vmsnap-incoming", &ce);
        return vs_err_sys(e, r, "starting the memory feed thread");
    }
    json_t *args = json_pack("{s:s}", "uri", "fd:vmsnap-incoming");
    /* QEMU 9.1+ can stay alive when the load fails, so query-migrate tells why (older QEMU exits: the caller
     * reads its log). */
    if (qmp_version_at_least(q, 9, 1))
        json_object_set_new(args, "exit-on-error", json_false());
    r = qmp_execute(q, "migrate-incoming", args, NULL, e);
    json_decref(args);
    struct load_watch w = { .deadline = vs_now_s() + timeout_s, .timeout_s = timeout_s, .still_since = vs_now_s(),
                            .stall_s = load_stall_s(), .queued = -1 };
    char status[32] = "", qemu_why[320] = "";
    while (r == 0) {
        /* Read before QEMU's status, so that "not started" in it also holds for what these saw. */
        bool failed = feed_failed(&f);
        int queued = pipe_queued(drain_fd);
        json_t *ret = NULL;
        r = qmp_execute(q, "query-migrate", NULL, &ret, e);
        if (r < 0)
            break;
        snprintf(status, sizeof status, "%s", json_string_value(json_object_get(ret, "status")) ?: "");
        if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
            const char *why = json_string_value(json_object_get(ret, "error-desc"));
            snprintf(qemu_why, sizeof qemu_why, "%s", why ? why : "");
            r = vs_err_set(e, EIO, "QEMU failed to load the memory stream (migration %s)%s%.300s", status,
                           why ? ": " : "", why ? why : "");
        }
        json_decref(ret);
        if (r < 0 || !strcmp(status, "completed"))
            break;
        if ((r = watch_step(&w, failed, queued, status, e)) < 0)
            break;
        nanosleep(&(struct timespec){ 0, 2 * 1000 * 1000 }, NULL);
    }
    if (r < 0) {
        /* Refused before it took the fd: it still sits in QEMU's fd table, holding the read end open. */
        vs_err ce;
        qmp_closefd(q, "vmsnap-incoming", &ce);
    }
    stop_feeder(&f, th, drain_fd, r < 0);
    if (f.rc < 0 && !(r < 0 && f.write_failed)) {
        /* The archive's own error says more than QEMU's refusal of a truncated stream: it goes first. */
        if (e && qemu_why[0])
            vs_err_set(e, -f.rc, "%s (QEMU: %s)", f.err.msg, qemu_why);
        else if (e)
            *e = f.err;
        return f.rc;
    }
    if (r < 0)
        return r;
    bool running = false;
    if ((r = qmp_query_status(q, &running, status, sizeof status, e)) < 0)
        return r;
    if (info) {
        *info = (struct vm_load_info){ .stream_bytes = f.fed, .fed_s = f.done_at - t0 };
        snprintf(info->was, sizeof info->was, "%s", status);
    }
    if (!running && (r = qmp_cont(q, e)) < 0)   /* a stream saved from a stopped VM loads paused */
        return vs_err_prefix(e, "resuming the VM (state %s)", status);
    return 0;
}
