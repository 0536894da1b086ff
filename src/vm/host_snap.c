/* vm: the boot host takes a snapshot on request: freeze the overlays inside the pause, write what changed,
 * then move the overlays onto the new archive. */
#include "vm/host.h"
#include "objstore/objstore.h"

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

/* ---- snapshots on request ----------------------------------------------------------------------------- */

struct snapctx {
    struct host *h;
    bool thin;
    bool cancel;
    struct varbuf { uint8_t *data; size_t len; } *vars;   /* per xfile: a writable one's content read inside the freeze window */
};

/* Firmware variables as of the snapshot instant: QEMU is stopped and has flushed its block devices (stop or
 * pre-switchover), and pflash writes reach the file synchronously, so the file holds what the guest last wrote.
 * Read now, inside the pause: they are small (pflash is at most a few MiB; 256 MiB refused). */
static int capture_vars(struct snapctx *s, vs_err *e)
{
    struct host *h = s->h;
    for (size_t i = 0; i < h->st.config.n_xfiles; i++) {
        if (!h->xfiles[i].writable)
            continue;
        const char *path = h->xfiles[i].path;
        VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
            return vs_err_sys(e, errno, "reading firmware variables %s", path);
        if (st.st_size > (off_t)256 << 20)
            return vs_err_set(e, EFBIG, "firmware variables %s: %lld bytes, expected at most 256 MiB", path,
                              (long long)st.st_size);
        struct varbuf *b = &s->vars[i];
        b->len = (size_t)st.st_size;
        b->data = vs_xmalloc(b->len + 1);
        ssize_t n = vs_pread_full(fd, b->data, b->len, 0);
        if (n < 0 || (size_t)n != b->len)
            return vs_err_sys(e, n < 0 ? (int)-n : EIO, "reading firmware variables %s", path);
    }
    return 0;
}

static int hook_freeze(void *opaque, vs_err *e)
{
    struct snapctx *s = opaque;
    for (size_t i = 0; i < s->h->ndisks; i++) {
        int r = nbd_overlay_freeze(s->h->disks[i].ovl, &s->h->disks[i].frozen_seq, e);
        if (r < 0)
            return vs_err_prefix(e, "freezing the overlay of disk %zu", i);
    }
    return capture_vars(s, e);
}

static int hook_disks(void *opaque, struct arc_writer *w, vs_err *e)
{
    struct snapctx *s = opaque;
    struct host *h = s->h;
    for (size_t i = 0; i < h->ndisks; i++) {
        const struct host_disk *d = &h->disks[i];
        int r = vm_disk_write_changes(d->ovl, d->parent_seq, d->frozen_seq, w, d->name, d->size, e);
        if (r < 0)
            return r;
    }
    return 0;
}

static int add_file(struct arc_writer *w, const char *name, const char *path, vs_err *e)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_err_sys(e, errno, "storing %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vs_err_sys(e, errno, "storing %s", path);
    int r = arc_writer_begin(w, ARC_KIND_FILE, name, (uint64_t)st.st_size, e);
    if (r == 0)
        r = arc_writer_stream_from_fd(w, fd, NULL, e);
    if (r == 0)
        r = arc_writer_end(w, e);
    return r < 0 ? vs_err_prefix(e, "storing %s", path) : 0;
}

static int hook_rest(void *opaque, struct arc_writer *w, vs_err *e)
{
    struct snapctx *s = opaque;
    struct host *h = s->h;
    VS_AUTOFREE char *cfg = vm_config_to_json(&h->st.config);
    int r = arc_writer_add(w, ARC_KIND_CONFIG, "config", cfg, strlen(cfg), e);
    for (int i = 0; r == 0 && i < VM_FILE__COUNT; i++)
        if (h->files[i] && (!s->thin || !h->extracted[i]))   /* a thin archive finds the others in its parents */
            r = add_file(w, vm_file_role_name(i), h->files[i], e);
    for (size_t i = 0; r == 0 && i < h->st.config.n_xfiles; i++) {
        const struct vm_xfile *x = &h->xfiles[i];
        if (x->writable)   /* always: they change while the VM runs */
            r = arc_writer_add(w, ARC_KIND_FILE, x->name, s->vars[i].data, s->vars[i].len, e);
        else if (!s->thin || !h->x_in_chain[i])
            r = add_file(w, x->name, x->path, e);
        if (r < 0)
            vs_err_prefix(e, "storing %s", x->name);
    }
    return r;
}

static bool hook_cancelled(void *opaque)
{
    struct snapctx *s = opaque;
    struct host *h = s->h;
    if (s->cancel)
        return true;
    if (vm_ctl_cancel_requested(h->client))
        s->cancel = true;
    struct pollfd p = { h->sigfd, POLLIN, 0 };
    if (poll(&p, 1, 0) > 0 && p.revents & POLLIN) {
        struct signalfd_siginfo si;
        if (read(h->sigfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
                h->quit_requested = true;
                s->cancel = true;
            } else if (si.ssi_signo == SIGCHLD && waitpid(h->qemu, &h->qemu_status, WNOHANG) == h->qemu) {
                h->qemu_exited = true;
                s->cancel = true;
            }
        }
    }
    return s->cancel;
}

static void hook_progress(void *opaque, const struct vm_snap_progress *p)
{
    vm_ctl_progress(((struct snapctx *)opaque)->h->client, p);
}

/* The VM continues on top of the new snapshot: its frozen layers are in `out`, so each overlay takes `out` as its
 * base and drops them. A disk whose rebase fails keeps its layers and its old base (the rebase is all or nothing),
 * which reads the same: the VM and later --thin snaps are unaffected, only the overlay stays larger. Either way the
 * next --thin snap's parent holds the disk up to the frozen layer. The first failure goes to *e. */
static void rebase_disks(struct host *h, const char *out, const struct cr_key *key, vs_err *e)
{
    for (size_t i = 0; i < h->ndisks; i++) {
        struct host_disk *d = &h->disks[i];
        struct nbd_base *nb = NULL;
        vs_err de = { 0 };
        int r = vs_test_fault("rebase") ? vs_err_set(&de, EIO, "injected fault (VMSNAP_TEST_FAULT=rebase)")
                                        : nbd_base_open_archive(out, (unsigned)i, key, &nb, &de);
        if (r == 0 && (r = nbd_overlay_rebase(d->ovl, d->frozen_seq, nb, &de)) < 0)
            nbd_base_close(nb);   /* the overlay owns nb only once rebased */
        if (r < 0 && !e->code)
            vs_err_set(e, -r, "disk %zu ('%s'): the overlay could not move onto %s, so it keeps its layers: %s", i,
                       d->name, out, de.msg);
        d->parent_seq = d->frozen_seq;
    }
}

json_t *host_snap(void *opaque, const struct vm_snap_request *rq, vs_err *e)
{
    struct host *h = opaque;
    const char *out = rq->output;
    bool live = rq->live;
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    if (rq->codec && arc_parse_codec(rq->codec, &wo.codec, &wo.level, e) < 0)
        return NULL;
    struct snapctx sc = { .h = h, .thin = rq->thin, .vars = vs_xcalloc(h->st.config.n_xfiles + 1, sizeof *sc.vars) };
    /* Sealed with the key asked for, else with the key of the archive the VM runs on (the writer inherits it from
     * an encrypted base); a thin snap must use that one. */
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    if (rq->encrypt && (cr_init(e) < 0 || cr_key_load(rq->encrypt, &key, e) < 0))
        return NULL;
    wo.key = rq->encrypt ? &key : NULL;
    wo.cipher = rq->cipher;
    wo.parent_key = host_key(h);
    wo.parent_path = h->st.parent;
    if (!strcmp(h->st.parent, h->st.archive ? h->st.archive : h->o->archive)) {   /* what the VM booted from is
                                                                                     read as it was checked then */
        wo.parent_wrap = h->o->wrap_source;
        wo.parent_wrap_opaque = h->o->opaque;
    }
    wo.thin = sc.thin;
    wo.worker_nice = live ? VM_SNAP_WORKER_NICE : 0;
    wo.message = rq->message;
    struct arc_writer *w = NULL;
    if (arc_writer_create(out, &wo, &w, e) < 0)
        return NULL;
    VS_AUTOFREE char *outdir = vs_xstrdup(out);
    if (strrchr(outdir, '/'))
        *strrchr(outdir, '/') = 0;
    struct vm_snap_opts so = {
        .mode_live = live,
        .precopy_bound_s = 10,
        .paged = true,   /* boot names main RAM (VM_MEM_BACKEND_ID): both sides agree on the block */
        .tmpdir = os_is_remote(out) ? h->st.dir : outdir[0] ? outdir : "/",   /* device state spills here */
        .freeze = hook_freeze, .write_disks = hook_disks, .write_rest = hook_rest,
        .cancelled = hook_cancelled, .progress = hook_progress, .opaque = &sc,
    };
    struct vm_snap_result res;
    qmp_pump(h->q, NULL);
    int r = vm_snap_run(h->q, w, &so, &res, e);
    if (!res.writer_consumed)
        arc_writer_abort(w);
    for (size_t i = 0; i < h->st.config.n_xfiles; i++)
        free(sc.vars[i].data);
    free(sc.vars);
    if (r < 0) {
        if (sc.cancel && h->quit_requested)
            vs_err_prefix(e, "vmsnap boot is shutting down");
        return NULL;
    }
    /* The VM now continues on top of the new snapshot: its frozen layers are in `out`. */
    if (rq->encrypt) {   /* the next snap's parent is this archive: its key from now on */
        h->key = key;
        h->has_key = true;
    }
    vs_err rebase_err = { 0 };
    rebase_disks(h, out, host_key(h), &rebase_err);
    for (int i = 0; i < VM_FILE__COUNT; i++)   /* the next --thin snap's parent chain holds them now */
        h->extracted[i] = true;
    for (size_t i = 0; i < h->st.config.n_xfiles; i++)
        h->x_in_chain[i] = true;
    free(h->st.parent);
    h->st.parent = vs_xstrdup(out);
    vm_state_save(&h->st, NULL);
    json_t *j = vm_snap_result_json(&res, out, sc.thin);
    if (rebase_err.code)
        json_object_set_new(j, VM_CTL_REBASE_ERROR, json_string(rebase_err.msg));
    return j;
}
