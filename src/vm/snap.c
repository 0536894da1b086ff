/* vm: snapshot orchestration. One function drives QEMU's migration into an archive writer and leaves the VM as it
 * found it, whatever happens: every migration capability and parameter changed is put back, the VM is resumed if
 * vmsnap paused it, and the partial archive is discarded (arc_writer_abort: nothing under the final name).
 *
 * live, background-snapshot available: set caps → stop → freeze disks → migrate fd: → QEMU resumes the VM once
 *   RAM is write-protected → memory stream into the writer → disks as of the freeze → finish.
 * live, background-snapshot refused (non-root userfaultfd, private file-backed RAM): precopy with
 *   pause-before-switchover; the disks are frozen at pre-switchover (VM stopped and flushed by QEMU), then
 *   migrate-continue and cont. A guest that does not converge within a bound is stopped (stop-and-copy); under
 *   TCG before QEMU 9.0 the guest is stopped from the start (precopy_loses_writes).
 * stop (--mode stop, or the VM was already paused): stop → freeze → migrate → finish → cont (if we paused).
 * already paused, QEMU >= 9.0: background-snapshot, which QEMU ends in the state it began in (still paused).
 *
 * The run state is checked, never assumed: the state the VM had before vmsnap touched it is the one it is left in,
 * read back with query-status (QEMU >= 9.0 leaves a background snapshot's VM paused where 7.2 resumed it). */
#include "vm/vm.h"
#include "objstore/objstore.h"
#include "memstore/memstore.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *vm_snap_method_name(enum vm_snap_method m)
{
    switch (m) {
    case VM_SNAP_BACKGROUND: return "background-snapshot";
    case VM_SNAP_PRECOPY: return "precopy";
    case VM_SNAP_STOP: return "stop";
    }
    return "?";
}

struct pump {
    struct arc_writer *w;
    int fd;
    int rc;
    uint64_t bytes;
    vs_err err;
    bool failed;    /* the writer gave up (rc, err set) */
    bool discard;   /* set by either side: stop writing, only drain */
    bool done;
    struct mst_capture *cap;         /* memory as pages (mst_capture_*), else the opaque "memory" stream */
    struct mst_capture_result cres;
};

/* Copies the migration stream into the archive until EOF. After a failure it keeps reading (and dropping) until
 * QEMU lets go of the pipe: QEMU's migration thread then never blocks or fails on a write. On QEMU 7.2 a background
 * snapshot whose stream stops (a write error, or migrate_cancel) leaves the guest's vCPUs stuck on write-protected
 * RAM for good, so vmsnap lets it run to its end into this sink instead. */
static void *pump_main(void *arg)
{
    struct pump *p = arg;
    const size_t chunk = 1 << 20;
    VS_AUTOFREE char *buf = vs_xmalloc(chunk);
    for (;;) {
        ssize_t n = read(p->fd, buf, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && !__atomic_load_n(&p->discard, __ATOMIC_ACQUIRE)) {
            p->rc = vs_err_sys(&p->err, errno, "reading the migration stream");
            __atomic_store_n(&p->failed, true, __ATOMIC_RELEASE);
            __atomic_store_n(&p->discard, true, __ATOMIC_RELEASE);
        }
        if (n <= 0)
            break;
        if (__atomic_load_n(&p->discard, __ATOMIC_ACQUIRE))
            continue;
        int r = p->cap ? mst_capture_push(p->cap, buf, (size_t)n, &p->err) : arc_writer_write(p->w, buf, n, &p->err);
        if (r < 0) {
            p->rc = r;
            __atomic_store_n(&p->failed, true, __ATOMIC_RELEASE);
            __atomic_store_n(&p->discard, true, __ATOMIC_RELEASE);
            continue;
        }
        p->bytes += n;
    }
    if (p->cap && !__atomic_load_n(&p->discard, __ATOMIC_ACQUIRE)) {
        int r = mst_capture_finish(p->cap, &p->cres, &p->err);   /* RAM stream end, then the device stream */
        if (r < 0) {
            p->rc = r;
            __atomic_store_n(&p->failed, true, __ATOMIC_RELEASE);
        }
    }
    close(p->fd);
    p->fd = -1;
    __atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
    return NULL;
}

/* What we changed, to put back. */
struct saved {
    bool have_caps, have_params;
    json_t *caps;     /* [{capability, state}] as they were, only those we changed */
    json_t *params;   /* {name: old value} */
};

static int set_cap(struct qmp *q, struct saved *s, const char *name, bool on, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-migrate-capabilities", NULL, &ret, e);
    if (r < 0)
        return r;
    bool old = false;
    size_t i;
    json_t *c;
    json_array_foreach(ret, i, c)
        if (!strcmp(json_string_value(json_object_get(c, "capability")) ?: "", name))
            old = json_is_true(json_object_get(c, "state"));
    json_decref(ret);
    if (old == on)
        return 0;
    json_t *args = json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", name, "state", on);
    r = qmp_execute(q, "migrate-set-capabilities", args, NULL, e);
    json_decref(args);
    if (r < 0)
        return r;
    if (!s->caps)
        s->caps = json_array();
    json_array_append_new(s->caps, json_pack("{s:s,s:b}", "capability", name, "state", old));
    s->have_caps = true;
    return 0;
}

static int set_param(struct qmp *q, struct saved *s, const char *name, json_int_t value, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-migrate-parameters", NULL, &ret, e);
    if (r < 0)
        return r;
    json_t *old = json_object_get(ret, name);
    if (!old || (json_is_integer(old) && json_integer_value(old) == value)) {
        json_decref(ret);
        return 0;   /* unknown to this QEMU, or already right */
    }
    if (!s->params)
        s->params = json_object();
    if (!json_object_get(s->params, name))
        json_object_set(s->params, name, old);
    json_decref(ret);
    json_t *args = json_pack("{s:I}", name, value);
    r = qmp_execute(q, "migrate-set-parameters", args, NULL, e);
    json_decref(args);
    if (r == 0)
        s->have_params = true;
    return r;
}

/* Best effort, all of it: a failure here is reported but must not stop the rest. */
static int restore(struct qmp *q, struct saved *s, vs_err *e)
{
    int rc = 0;
    if (s->have_caps) {
        json_t *args = json_pack("{s:O}", "capabilities", s->caps);
        int r = qmp_execute(q, "migrate-set-capabilities", args, NULL, e);
        json_decref(args);
        if (r < 0)
            rc = vs_err_prefix(e, "putting migration capabilities back");
    }
    if (s->have_params) {
        int r = qmp_execute(q, "migrate-set-parameters", s->params, NULL, e);
        if (r < 0 && rc == 0)
            rc = vs_err_prefix(e, "putting migration parameters back");
    }
    json_decref(s->caps);
    json_decref(s->params);
    memset(s, 0, sizeof *s);
    return rc;
}

struct mig_state {
    char status[32];
    uint64_t transferred, remaining, total, dirty_syncs;
    uint64_t pages;        /* RAM pages sent so far (normal + zero) */
    double mbps;
    int64_t downtime_ms;   /* -1 if not reported */
    int64_t setup_ms;      /* QEMU's setup-time, -1 if not reported */
    char error[256];
};

static int query_migrate(struct qmp *q, struct mig_state *m, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-migrate", NULL, &ret, e);
    if (r < 0)
        return r;
    memset(m, 0, sizeof *m);
    m->downtime_ms = m->setup_ms = -1;
    snprintf(m->status, sizeof m->status, "%s", json_string_value(json_object_get(ret, "status")) ?: "none");
    json_t *ram = json_object_get(ret, "ram");
    if (ram) {
        m->transferred = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
        m->remaining = (uint64_t)json_integer_value(json_object_get(ram, "remaining"));
        m->total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
        m->dirty_syncs = (uint64_t)json_integer_value(json_object_get(ram, "dirty-sync-count"));
        m->mbps = json_number_value(json_object_get(ram, "mbps"));
        static const char *const counts[] = { "normal", "duplicate", "zero-pages" };   /* zero-pages: 9.1+ */
        for (size_t i = 0; i < VS_ARRAY_SIZE(counts); i++)
            m->pages += (uint64_t)json_integer_value(json_object_get(ram, counts[i]));
    }
    json_t *st = json_object_get(ret, "setup-time");
    if (json_is_integer(st))
        m->setup_ms = json_integer_value(st);
    json_t *dt = json_object_get(ret, "downtime");
    if (json_is_integer(dt))
        m->downtime_ms = json_integer_value(dt);
    snprintf(m->error, sizeof m->error, "%s", json_string_value(json_object_get(ret, "error-desc")) ?: "");
    json_decref(ret);
    return 0;
}

static bool terminal(const char *st)
{
    return !strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled") || !strcmp(st, "none");
}

static void nap_ms(int ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL);
}

/* After a failure: end the migration and wait (bounded) until QEMU says it is over, so caps can be restored.
 * A background snapshot is never cancelled while it runs: on QEMU 7.2 migrate_cancel in the middle of one leaves
 * the guest's vCPUs stuck on write-protected RAM for good (tried here: the guest never answers again, and the next
 * snapshot hangs). The memory thread drains the stream instead, and QEMU is let finish; migrate_cancel only if it
 * does not within the bound. */
static void cancel_migration(struct qmp *q, enum vm_snap_method method)
{
    struct mig_state m;
    if (method == VM_SNAP_BACKGROUND) {
        for (int i = 0; i < 2400; i++) {   /* 120 s */
            if (query_migrate(q, &m, NULL) < 0 || terminal(m.status))
                return;
            nap_ms(50);
        }
    }
    qmp_execute(q, "migrate_cancel", NULL, NULL, NULL);
    for (int i = 0; i < 400; i++) {   /* 20 s */
        if (query_migrate(q, &m, NULL) < 0 || terminal(m.status))
            return;
        if (!strcmp(m.status, "pre-switchover")) {
            json_t *a = json_pack("{s:s}", "state", "pre-switchover");
            qmp_execute(q, "migrate-continue", a, NULL, NULL);
            json_decref(a);
        }
        nap_ms(50);
    }
}

static bool is_running(struct qmp *q)
{
    bool running = false;
    return qmp_query_status(q, &running, NULL, 0, NULL) == 0 && running;
}

static void report(const struct vm_snap_opts *o, const char *phase, const struct mig_state *m, double t0)
{
    if (!o->progress)
        return;
    struct vm_snap_progress p = { .phase = phase, .elapsed_s = vs_now_s() - t0 };
    if (m) {
        p.transferred = m->transferred;
        p.remaining = m->remaining;
        p.mbps = m->mbps;
    }
    o->progress(o->opaque, &p);
}

static double event_time(json_t *ev)
{
    json_t *ts = json_object_get(ev, "timestamp");
    return (double)json_integer_value(json_object_get(ts, "seconds")) +
           (double)json_integer_value(json_object_get(ts, "microseconds")) / 1e6;
}

static double wall_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mark_pause_start(struct vm_snap_result *res)
{
    res->pause_start = vs_now_s();
    res->pause_start_wall = wall_now_s();
}

static double since_pause(const struct vm_snap_result *res)
{
    return vs_now_s() - res->pause_start;
}

/* The pause, once the VM was seen running again: as QEMU timed it, from its STOP event to the RESUME event that
 * followed (their timestamps, both also recorded against the start of the pause); without both events, vmsnap's
 * own clock from the start of the pause to now (seen_running_at: when query-status or cont said it runs). */
static void measure_pause(struct qmp *q, struct vm_snap_result *res, double seen_running_at)
{
    json_t *stop = NULL, *resume = NULL;
    qmp_pump(q, NULL);
    if (qmp_wait_event(q, "STOP", NULL, 0, &stop, NULL) < 0 ||
        qmp_wait_event(q, "RESUME", NULL, 0.5, &resume, NULL) < 0 || event_time(resume) < event_time(stop)) {
        json_decref(stop);
        json_decref(resume);
        res->resumed_at = seen_running_at - res->pause_start;
        res->pause_measured_by = "vmsnap-clock";
        return;
    }
    res->stop_event_at = event_time(stop) - res->pause_start_wall;
    res->resume_event_at = event_time(resume) - res->pause_start_wall;
    res->resumed_at = event_time(resume) - event_time(stop);
    res->pause_measured_by = "qemu-events";
    json_decref(stop);
    json_decref(resume);
}

/* The VM ran before the snapshot: make sure it runs now (query-status; cont if not; query-status again) and say
 * who resumed it. A VM that vmsnap saw running already was resumed by QEMU. */
static int ensure_running(struct qmp *q, struct vm_snap_result *res, vs_err *e)
{
    bool sent_cont = false;
    int r = qmp_resume(q, &sent_cont, e);
    if (r < 0)
        return r;
    double seen = vs_now_s();
    if (res->resumed_by == QMP_RESUMED_NOT_YET || sent_cont) {
        res->resumed_by = sent_cont ? QMP_RESUMED_VMSNAP : QMP_RESUMED_QEMU;
        measure_pause(q, res, seen);
    }
    return 0;
}

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

json_t *vm_snap_result_json(const struct vm_snap_result *res, const char *output, bool thin)
{
    struct stat st;
    struct arc_source *src = NULL;   /* an object: its size from the store (a HEAD) */
    json_int_t size = stat(output, &st) == 0 ? (json_int_t)st.st_size
                    : os_is_remote(output) && arc_source_open(output, &src, NULL) == 0 ? (json_int_t)src->size : 0;
    arc_source_close(src);
    VS_AUTOFREE char *esc = vs_text_ok(output, strlen(output)) ? NULL : vs_text_escape(output);   /* JSON text */
    return json_pack("{s:s,s:s,s:b,s:o,s:s,s:o,s:s,s:s,s:f,s:f,s:f,s:f,s:I,s:I,s:b,s:s,s:b,s:s,s:o}",
                     "output", esc ? esc : output, "method", vm_snap_method_name(res->method), "thin", thin,
                     "pause", num_or_null(res->resumed_at), "resumed-by", qmp_resumed_by_name(res->resumed_by),
                     "pause-measured-by", res->pause_measured_by ? json_string(res->pause_measured_by) : json_null(),
                     "state-before", res->state_before, "state-after", res->state_after,
                     "qemu-downtime", res->qemu_downtime_s, "freeze", res->frozen_at, "writing", res->writing_s,
                     "total", res->total_s, "memory-bytes", (json_int_t)res->memory_bytes, "archive-bytes", size,
                     "stopped-to-converge", res->stopped_to_converge, "fallback-reason", res->fallback_reason,
                     "memory-paged", res->memory_paged, "memory-note", res->memory_note,
                     "phases", vm_snap_phases_json(res));
}

json_t *vm_snap_phases_json(const struct vm_snap_result *res)
{
    const double v[] = { res->stop_ret_at, res->frozen_at, res->migrate_ret_at, res->stop_event_at,
                         res->resume_event_at, res->qemu_setup_s };
    const char *const k[] = { "stop", "freeze", "migrate", "stop-event", "resume-event", "qemu-setup-time" };
    json_t *o = json_object();
    for (size_t i = 0; i < VS_ARRAY_SIZE(v); i++)
        json_object_set_new(o, k[i], num_or_null(v[i]));
    return o;
}

/* Capabilities whose streams the splitter does not read (docs/MIGRATION-STREAM.md): a foreign VM may have one
 * on. Returns its name, or NULL. */
static const char *unsplittable_cap(struct qmp *q)
{
    static const char *const bad[] = { "compress", "xbzrle", "multifd", "postcopy-ram", "x-ignore-shared",
                                       "rdma-pin-all", "mapped-ram" };
    json_t *ret = NULL;
    if (qmp_execute(q, "query-migrate-capabilities", NULL, &ret, NULL) < 0)
        return "query-migrate-capabilities failed";
    const char *found = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(ret, i, c) {
        const char *name = json_string_value(json_object_get(c, "capability"));
        for (size_t k = 0; name && !found && k < VS_ARRAY_SIZE(bad); k++)
            if (!strcmp(name, bad[k]) && json_is_true(json_object_get(c, "state")))
                found = bad[k];
    }
    json_decref(ret);
    return found;
}

/* QEMU before 9.0 under TCG loses guest writes during precopy: its dirty-bitmap sync clears the bits of aligned
 * ranges without resetting TCG's TLB dirty state, so later stores through a cached TLB entry mark nothing and
 * such a page is never sent again (fixed upstream in 9.0, "physmem: Fix migration dirty bitmap coherency with
 * TCG memory access"). Seen here as one guest kernel page stored at an older version than the source RAM held:
 * the resumed guest oopsed and rebooted. KVM's dirty log is not affected. */
static bool precopy_loses_writes(struct qmp *q)
{
    if (qmp_version_at_least(q, 9, 0))
        return false;
    json_t *ret = NULL;
    if (qmp_execute(q, "query-kvm", NULL, &ret, NULL) < 0)
        return true;   /* cannot tell: assume the unsafe case */
    bool kvm = json_is_true(json_object_get(ret, "enabled"));
    json_decref(ret);
    return !kvm;
}

static bool cancelled(const struct vm_snap_opts *o)
{
    return o->cancelled && o->cancelled(o->opaque);
}

/* The disks as of now: the VM is stopped and QEMU has flushed them (both the stop and pre-switchover paths). */
static int freeze_disks(const struct vm_snap_opts *o, struct vm_snap_result *res, bool *frozen, vs_err *e)
{
    if (o->freeze) {
        int r = o->freeze(o->opaque, e);
        if (r < 0)
            return r;
    }
    *frozen = true;
    res->frozen_at = since_pause(res);
    return 0;
}

/* The snapshot instant: the VM stopped (if it ran) and its disks frozen. */
static int stop_and_freeze(struct qmp *q, const struct vm_snap_opts *o, struct vm_snap_result *res, bool was_running,
                           bool *we_paused, bool *frozen, vs_err *e)
{
    int r;
    mark_pause_start(res);
    if (was_running) {
        if ((r = qmp_stop(q, e)) < 0)
            return r;
        *we_paused = true;
        res->stop_ret_at = since_pause(res);
    }
    return freeze_disks(o, res, frozen, e);
}

int vm_snap_run(struct qmp *q, struct arc_writer *w, const struct vm_snap_opts *o, struct vm_snap_result *res,
                vs_err *e)
{
    memset(res, 0, sizeof *res);
    res->stop_ret_at = res->migrate_ret_at = res->stop_event_at = res->resume_event_at = res->qemu_setup_s = NAN;
    res->resumed_at = NAN;
    double t0 = vs_now_s();
    struct saved saved = { 0 };
    struct pump pump = { .w = w, .fd = -1 };
    pthread_t th;
    bool thread_started = false, migrating = false, we_paused = false, frozen = false, stop_for_copy = false;
    bool disks_first = false;
    int pfd[2] = { -1, -1 };
    int r;

    /* The state the VM must be left in: the one it has before vmsnap touches it. */
    bool was_running = false;
    if ((r = qmp_query_status(q, &was_running, res->state_before, sizeof res->state_before, e)) < 0)
        return r;
    if (!was_running)
        res->resumed_by = QMP_LEFT_PAUSED;
    enum vm_snap_method method = VM_SNAP_STOP;
    if (o->mode_live && was_running) {
        r = qmp_has_migrate_capability(q, "background-snapshot", e);
        if (r < 0)
            goto fail;
        method = VM_SNAP_PRECOPY;
        if (r > 0) {
            vs_err refusal = { 0 };
            if (set_cap(q, &saved, "background-snapshot", true, &refusal) == 0)
                method = VM_SNAP_BACKGROUND;
            else
                snprintf(res->fallback_reason, sizeof res->fallback_reason, "%.200s", refusal.msg);
        } else {
            snprintf(res->fallback_reason, sizeof res->fallback_reason, "QEMU has no background-snapshot");
        }
        if (method == VM_SNAP_PRECOPY) {
            r = qmp_has_migrate_capability(q, "pause-before-switchover", e);
            if (r <= 0) {
                if (r == 0)
                    r = vs_err_set(e, ENOTSUP, "QEMU offers neither background-snapshot nor pause-before-switchover");
                goto fail;
            }
            if ((r = set_cap(q, &saved, "pause-before-switchover", true, e)) < 0 ||
                (r = set_param(q, &saved, "downtime-limit", 50, e)) < 0)
                goto fail;
            if ((stop_for_copy = precopy_loses_writes(q))) {
                size_t n = strlen(res->fallback_reason);
                snprintf(res->fallback_reason + n, sizeof res->fallback_reason - n,
                         "; precopy under TCG loses guest writes before QEMU 9.0: the guest is stopped for the copy");
            }
        }
    } else if (!strcmp(res->state_before, "paused") && qmp_version_at_least(q, 9, 0) &&
               qmp_has_migrate_capability(q, "background-snapshot", NULL) > 0 &&
               set_cap(q, &saved, "background-snapshot", true, NULL) == 0) {
        /* QEMU >= 9.0 puts a background snapshot's VM back into the state it had at `migrate`: a paused VM stays
         * exactly paused. A plain migration would leave it in postmigrate, where QEMU refuses the next migration
         * until the VM has run (7.2 and 8.x start the VM after a background snapshot: there it must be that). */
        method = VM_SNAP_BACKGROUND;
    }
    if (o->disks_in_pause && method != VM_SNAP_BACKGROUND) {
        disks_first = true;
        if (method == VM_SNAP_PRECOPY && !stop_for_copy) {
            stop_for_copy = true;
            size_t n = strlen(res->fallback_reason);
            snprintf(res->fallback_reason + n, sizeof res->fallback_reason - n,
                     "; the disks' backup job would stop the migration's end: the guest is stopped for the copy");
        }
    }
    /* QEMU's default 128 MiB/s throttles a dump to a local file for nothing. */
    if ((r = set_param(q, &saved, "max-bandwidth", INT64_C(1) << 40, e)) < 0)
        goto fail;
    res->method = method;
    if (o->prepare && (r = o->prepare(o->opaque, method, res->fallback_reason, e)) < 0)
        goto fail;
    qmp_drop_events(q);
    if (disks_first) {
        /* The instant is now: stop, freeze, and the disks go first, before the memory stream opens. */
        if ((r = stop_and_freeze(q, o, res, was_running, &we_paused, &frozen, e)) < 0 ||
            (r = o->write_disks(o->opaque, w, e)) < 0)
            goto fail;
    }

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        r = vs_err_sys(e, errno, "pipe");
        goto fail;
    }
    fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20);
    if ((r = qmp_getfd(q, "vmsnap-snap", pfd[1], e)) < 0)
        goto fail;
    close(pfd[1]);
    pfd[1] = -1;
    const char *cap = o->paged ? unsplittable_cap(q) : NULL;
    if (cap)
        snprintf(res->memory_note, sizeof res->memory_note, "migration capability %s is on", cap);
    struct mst_capture_opts copts = { .tmpdir = o->tmpdir };
    if (o->paged && !cap) {
        if ((r = mst_capture_new(w, &copts, &pump.cap, e)) < 0)
            goto fail;
    } else if ((r = arc_writer_begin(w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, e)) < 0) {
        goto fail;
    }
    pump.fd = pfd[0];
    pfd[0] = -1;
    if ((r = -pthread_create(&th, NULL, pump_main, &pump)) < 0) {
        close(pump.fd);
        vs_err_sys(e, -r, "starting the memory stream thread");
        goto fail;
    }
    thread_started = true;

    if (disks_first) {
        /* stopped and frozen above */
    } else if (method != VM_SNAP_PRECOPY) {
        if ((r = stop_and_freeze(q, o, res, was_running, &we_paused, &frozen, e)) < 0)
            goto fail;
    } else if (stop_for_copy) {
        /* Precopy of a stopped guest: one round, nothing to lose; the disks freeze at pre-switchover. */
        mark_pause_start(res);
        if ((r = qmp_stop(q, e)) < 0)
            goto fail;
        we_paused = true;
        res->stop_ret_at = since_pause(res);
    }
    json_t *margs = json_pack("{s:s}", "uri", "fd:vmsnap-snap");
    r = qmp_execute(q, "migrate", margs, NULL, e);
    json_decref(margs);
    if (r < 0)
        goto fail;
    migrating = true;
    if (method != VM_SNAP_PRECOPY)
        res->migrate_ret_at = since_pause(res);

    double deadline_precopy = vs_now_s() + o->precopy_bound_s;
    struct mig_state m = { 0 };
    for (;;) {
        if (cancelled(o)) {
            r = vs_err_set(e, ECANCELED, "snapshot interrupted");
            goto fail;
        }
        if (__atomic_load_n(&pump.failed, __ATOMIC_ACQUIRE)) {
            r = vs_err_set(e, -pump.rc, "%s", pump.err.msg);
            goto fail;
        }
        if ((r = query_migrate(q, &m, e)) < 0)
            goto fail;
        /* RAM pages flow only once QEMU has write-protected RAM: from then on the guest may run. 7.2 has resumed
         * it by itself; QEMU >= 9.0 put it back to paused (the state at `migrate`), so vmsnap sends cont. */
        bool awaiting_resume = method == VM_SNAP_BACKGROUND && res->resumed_by == QMP_RESUMED_NOT_YET;
        if (awaiting_resume && (m.pages > 0 || !strcmp(m.status, "completed"))) {
            if ((r = ensure_running(q, res, e)) < 0)
                goto fail;
            we_paused = false;
            awaiting_resume = false;
        }
        if (!strcmp(m.status, "completed"))
            break;
        if (!strcmp(m.status, "failed") || !strcmp(m.status, "cancelled")) {
            migrating = false;
            r = vs_err_set(e, EIO, "migration %s%s%s", m.status, m.error[0] ? ": " : "", m.error);
            goto fail;
        }
        if (!strcmp(m.status, "pre-switchover")) {
            /* QEMU stopped the VM and flushed its disks: this is the instant the snapshot is of. */
            if (!stop_for_copy)
                mark_pause_start(res);
            if (!frozen && (r = freeze_disks(o, res, &frozen, e)) < 0)
                goto fail;
            json_t *a = json_pack("{s:s}", "state", "pre-switchover");
            r = qmp_execute(q, "migrate-continue", a, NULL, e);
            json_decref(a);
            if (r < 0)
                goto fail;
            we_paused = true;   /* postmigrate after completion: we cont */
        } else if (method == VM_SNAP_PRECOPY && !we_paused && vs_now_s() > deadline_precopy) {
            /* Not converging: stop the guest so the last round is bounded (stop-and-copy). */
            if ((r = qmp_stop(q, e)) < 0)
                goto fail;
            we_paused = true;
            res->stopped_to_converge = true;
        }
        report(o, "memory", &m, t0);
        nap_ms(awaiting_resume ? 2 : method == VM_SNAP_PRECOPY ? 10 : 50);
    }
    migrating = false;
    res->qemu_downtime_s = m.downtime_ms >= 0 ? m.downtime_ms / 1000.0 : -1;
    res->qemu_setup_s = m.setup_ms >= 0 ? m.setup_ms / 1000.0 : NAN;
    pthread_join(th, NULL);
    thread_started = false;
    if (pump.rc < 0) {
        r = vs_err_set(e, -pump.rc, "%s", pump.err.msg);
        goto fail;
    }
    bool captured = pump.cap != NULL;   /* its results are in pump.cres */
    mst_capture_free(pump.cap);
    pump.cap = NULL;
    res->memory_bytes = pump.bytes;
    res->memory_paged = captured && pump.cres.paged;
    if (captured && pump.cres.note[0])   /* not paged, or paged with an opaque rest */
        snprintf(res->memory_note, sizeof res->memory_note, "%s", pump.cres.note);
    if (!captured && (r = arc_writer_end(w, e)) < 0)   /* the capture ended its streams itself */
        goto fail;
    qmp_closefd(q, "vmsnap-snap", NULL);

    /* The guest runs again (unless --mode stop): precopy left it in postmigrate; a background snapshot's resume
     * is checked once more. */
    if (method != VM_SNAP_STOP && was_running) {
        if ((r = ensure_running(q, res, e)) < 0)
            goto fail;
        we_paused = false;
    }
    report(o, "disks", NULL, t0);
    if (o->write_disks && !disks_first && (r = o->write_disks(o->opaque, w, e)) < 0)
        goto fail;
    if (cancelled(o)) {
        r = vs_err_set(e, ECANCELED, "snapshot interrupted");
        goto fail;
    }
    if (o->write_rest && (r = o->write_rest(o->opaque, w, e)) < 0)
        goto fail;
    report(o, "finish", NULL, t0);
    res->writing_s = vs_now_s() - t0;
    /* finish() frees w whatever the outcome; the caller must not abort it afterwards. */
    res->writer_consumed = true;
    if ((r = arc_writer_finish(w, e)) < 0)
        goto fail;
    if (was_running) {
        if ((r = ensure_running(q, res, e)) < 0)
            goto fail;
        we_paused = false;
    } else if (method == VM_SNAP_BACKGROUND && is_running(q)) {
        /* A QEMU that started the paused VM after all (a build that behaves like 8.x): pause it again. */
        qmp_stop(q, NULL);
    }
    res->total_s = vs_now_s() - t0;
    r = restore(q, &saved, e);
    qmp_query_status(q, NULL, res->state_after, sizeof res->state_after, NULL);
    if (r < 0)
        return r;
    return 0;

fail:
    {
        vs_err keep = e ? *e : (vs_err){ 0 };
        __atomic_store_n(&pump.discard, true, __ATOMIC_RELEASE);
        if (migrating || thread_started)
            cancel_migration(q, migrating ? method : VM_SNAP_STOP);
        /* QEMU still holds the pipe's write end if migrate never took it: without this the reader never sees EOF. */
        qmp_closefd(q, "vmsnap-snap", NULL);
        if (thread_started)
            pthread_join(th, NULL);
        mst_capture_free(pump.cap);
        if (pfd[0] >= 0)
            close(pfd[0]);
        if (pfd[1] >= 0)
            close(pfd[1]);
        qmp_closefd(q, "vmsnap-snap", NULL);
        /* A VM that ran before runs again, whoever paused it (vmsnap, or QEMU >= 9.0 after a background snapshot). */
        vs_err re = { 0 };
        if (was_running && ensure_running(q, res, &re) < 0) {
            /* Appended, possibly cut: the message still says first what failed. */
            static const char tail[] = "; and the VM, running before, is not running now: ";
            strncat(keep.msg, tail, sizeof keep.msg - strlen(keep.msg) - 1);
            strncat(keep.msg, re.msg, sizeof keep.msg - strlen(keep.msg) - 1);
        }
        restore(q, &saved, NULL);
        qmp_query_status(q, NULL, res->state_after, sizeof res->state_after, NULL);
        res->frozen = frozen;
        if (e)
            *e = keep;
        return r < 0 ? r : -EIO;
    }
}
