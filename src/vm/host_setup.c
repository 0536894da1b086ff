/* vm: the boot host's VM, from the archive to a running QEMU (host_start) and back (host_cleanup). */
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

/* ---- setup ---------------------------------------------------------------------------------------------- */

#define VM_FILE_MAX (1u << 30)

/* A named blob of the archive (or of its parents) into dir/name, mode 0600. 0 written, -ENOENT absent. */
static int extract_file(struct arc *a, const char *name, const char *dest, vs_err *e)
{
    for (; a; a = arc_parent(a)) {
        int s = arc_find_stream(a, ARC_KIND_FILE, name);
        if (s == ARC_STREAM_NONE)
            continue;
        struct arc_stream_info si;
        if (arc_stream_get(a, (unsigned)s, &si) < 0)
            return vs_err_set(e, EIO, "file '%s' of the archive is unreadable", name);
        /* A tiny archive may claim a huge file: cap it, and write zeros as holes. */
        if (si.size > VM_FILE_MAX)
            return vs_err_set(e, EFBIG, "file '%s' of the archive is %" PRIu64 " bytes, more than the %u MiB a kernel, "
                              "initrd or firmware file may have", name, si.size, VM_FILE_MAX >> 20);
        VS_AUTOCLOSE int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return vs_err_sys(e, errno, "creating %s", dest);
        int r = arc_extract_fd(a, (unsigned)s, fd, NULL, NULL, e);
        return r < 0 ? vs_err_prefix(e, "extracting file '%s' to %s", name, dest) : 0;
    }
    return -ENOENT;
}

static int load_config(struct host *h, bool *has_memory, vs_err *e)
{
    struct vm_config *c = &h->st.config;
    vm_config_init(c);
    VS_AUTOFREE char *text = NULL;
    size_t len = 0;
    int r = arc_read_config(h->arc, &text, &len, e);
    if (r < 0 || (r > 0 && (r = vm_config_from_json(text, len, c, e)) < 0))
        return vs_err_prefix(e, "archive %s: config", h->o->archive);
    h->paged = mst_is_paged(h->arc);
    *has_memory = h->paged || arc_find_stream(h->arc, ARC_KIND_MEMORY, NULL) != ARC_STREAM_NONE;
    return 0;
}

/* Can the paged memory be mapped lazily? If not, why (one line). */
static bool can_be_lazy(struct host *h, char *why, size_t len)
{
    const struct vm_config *c = &h->st.config;
    /* Lazy mapping serves exactly one RAM stream: the one of the VM's memory backend, as large as its RAM. */
    VS_AUTOFREE struct mst_ram *rs = NULL;
    unsigned nram = 0;
    vs_err re = { 0 };
    bool listed = mst_ram_streams(h->arc, &rs, &nram, &re) == 0;
    const struct mst_ram *ram = listed && nram == 1 && (c->foreign || (c->mem_backend &&
                                    !strcmp(rs[0].block, c->mem_backend))) ? &rs[0] : NULL;
    char fwhy[320];
    if (h->o->eager)
        snprintf(why, len, "--eager");
    else if (!listed)
        snprintf(why, len, "%.300s: resuming eagerly", re.msg);
    else if (c->foreign && !ram)
        snprintf(why, len, "the archive holds %u RAM streams, a foreign VM's lazy resume maps one: resuming eagerly",
                 nram);
    else if (c->foreign && vm_foreign_ram_check(c, ram->block, ram->size, fwhy, sizeof fwhy) < 0)
        snprintf(why, len, "%s: resuming eagerly", fwhy);
    else if (!ram)
        snprintf(why, len, "the archive's RAM streams do not match the VM's memory backend '%s': resuming eagerly",
                 c->mem_backend ? c->mem_backend : "");
    else if (!c->foreign && ram->size != c->ram_bytes)
        snprintf(why, len, "RAM stream %s%s holds %" PRIu64 " bytes, the VM has %" PRIu64 ": resuming eagerly",
                 MST_RAM_PREFIX, ram->block, ram->size, c->ram_bytes);
    else if (!pf_available())
        snprintf(why, len, "vmsnap was built without libfuse3: resuming eagerly (memory copied before running)");
    else if (access("/dev/fuse", R_OK | W_OK) < 0)
        snprintf(why, len, "/dev/fuse is not usable (%s): resuming eagerly (memory copied before running)",
                 strerror(errno));
    else
        return true;
    return false;
}

static int apply_options(struct host *h, bool has_memory, vs_err *e)
{
    const struct vm_host_opts *o = h->o;
    struct vm_config *c = &h->st.config;
    if (has_memory && o->ram && c->ram_bytes && o->ram != c->ram_bytes)
        return vs_err_set(e, EINVAL, "archive %s holds the memory of a %llu MiB VM: cannot resume it with --ram %llu MiB",
                          o->archive, (unsigned long long)(c->ram_bytes >> 20), (unsigned long long)(o->ram >> 20));
    if (has_memory && o->cpus && c->cpus && o->cpus != c->cpus)
        return vs_err_set(e, EINVAL, "archive %s holds the state of a %u-CPU VM: cannot resume it with --cpus %u",
                          o->archive, c->cpus, o->cpus);
    if (has_memory && !c->foreign && !c->ram_bytes)
        return vs_err_set(e, EINVAL, "archive %s holds memory but its config does not say the RAM size", o->archive);
    if (o->ram)
        c->ram_bytes = o->ram;
    if (o->cpus)
        c->cpus = o->cpus;
    if (!c->foreign) {
        if (!c->ram_bytes)
            c->ram_bytes = 256ull << 20;
        if (!c->cpus)
            c->cpus = 1;
        if (!has_memory && !c->mem_backend)
            c->mem_backend = vs_xstrdup(VM_MEM_BACKEND_ID);
        /* Only at a cold boot: a resumed VM must have exactly the devices its memory snapshot was taken with. */
        if (!has_memory)
            c->vmgenid = true;
    }
    h->user_extra_from = c->n_extra;
    if (o->n_extra) {
        int r = vm_config_add_extra(c, o->extra, o->n_extra, e);
        if (r < 0)
            return r;
    }
    return 0;
}

static bool stored_in_chain(void *opaque, const char *name)
{
    for (struct arc *a = opaque; a; a = arc_parent(a))
        if (arc_find_stream(a, ARC_KIND_FILE, name) != ARC_STREAM_NONE)
            return true;
    return false;
}

/* Before anything starts: what the archive puts on QEMU's command line must be what vmsnap would write there, or
 * the user said --trust-archive (docs/SECURITY.md). */
static int check_archive(struct host *h, vs_err *e)
{
    const struct vm_host_opts *o = h->o;
    struct vm_check k = { .stored = stored_in_chain, .opaque = h->arc, .user_extra_from = h->user_extra_from,
                          .keep_uncaptured = o->trust_archive };
    for (size_t i = 0; i + 1 < o->n_extra; i++) {
        const char *name = vm_qopt_name(o->extra[i]);
        for (int r = 0; name && r < VM_FILE__COUNT; r++)
            k.user_files[r] |= !strcmp(name, vm_file_role_name(r));
    }
    VS_AUTOFREE char *refused = NULL;
    int r = vm_config_check(&h->st.config, &k, &refused, e);
    if (r == -EPERM && !o->trust_archive) {
        /* The hint first: e's message may be cut; o->refused gets all of it. */
        VS_AUTOFREE char *msg = vs_xasprintf("archive %s: refused (vmsnap would not write these; --trust-archive "
                                             "passes them to QEMU%s): %s", o->archive, h->st.config.foreign ?
                                             "; or pack the VM's disks and boot them with vmsnap boot -- OPTIONS"
                                             : "", refused);
        if (o->refused)
            o->refused(o->opaque, msg);
        return vs_err_set(e, EPERM, "%s", msg);
    }
    if (r == -EPERM)
        h->trusted = vs_xasprintf("--trust-archive: passing to QEMU unchecked: %s", refused);
    if (r < 0 && r != -EPERM)
        return vs_err_prefix(e, "archive %s: config", o->archive);
    return r == -EPERM ? 0 : r;
}

/* Disk i of the VM is the archive's disk stream *disk. A foreign VM's captured disks name their streams; a memory
 * snapshot of a foreign VM has none (its disks are its own files). */
static int disk_stream(struct host *h, size_t i, unsigned *disk, vs_err *e)
{
    const struct vm_disk *d = &h->st.config.disks[i];
    if (!h->st.config.foreign) {
        *disk = (unsigned)i;
        return 0;
    }
    int s = arc_find_stream(h->arc, ARC_KIND_DISK, d->stream);
    struct arc_stream_info si;
    if (s == ARC_STREAM_NONE || arc_stream_get(h->arc, (unsigned)s, &si) < 0 || si.disk_index < 0)
        return vs_err_set(e, EINVAL, "archive %s: config: captured disk '%.64s' is disk stream '%.64s', which the "
                          "archive does not have", h->o->archive, d->name ? d->name : d->node, d->stream);
    for (size_t k = 0; k < i; k++)
        if (!strcmp(h->st.config.disks[k].stream, d->stream))
            return vs_err_set(e, EINVAL, "archive %s: config: captured disks %zu and %zu are both stream '%.64s'",
                              h->o->archive, k, i, d->stream);
    *disk = (unsigned)si.disk_index;
    return 0;
}

static int open_disks(struct host *h, vs_err *e)
{
    struct vm_config *c = &h->st.config;
    size_t n = 0;
    while (arc_find_disk(h->arc, (int)n) != ARC_STREAM_NONE)
        n++;
    if (c->foreign)
        n = c->n_disks;
    h->ndisks = n;
    h->disks = vs_xcalloc(n + 1, sizeof *h->disks);
    if (!c->foreign && c->n_disks != n) {
        /* No (or another) recorded disk list: virtio-blk in pack order. */
        for (size_t i = 0; i < c->n_disks; i++)
            vm_disk_free(&c->disks[i]);
        free(c->disks);
        c->disks = vs_xcalloc(n + 1, sizeof *c->disks);
        c->n_disks = n;
    }
    for (size_t i = 0; i < n; i++) {
        struct host_disk *d = &h->disks[i];
        unsigned di = 0;
        int r = disk_stream(h, i, &di, e);
        if (r < 0)
            return r;
        int s = arc_find_disk(h->arc, (int)di);
        struct arc_stream_info si;
        arc_stream_get(h->arc, (unsigned)s, &si);
        d->name = vs_xstrdup(si.name);
        d->size = si.size;
        c->disks[i].size = si.size;
        struct nbd_base *b = NULL;
        if ((r = nbd_base_open_archive_checked(h->o->archive, di, host_key(h), h->o->wrap_source, NULL,
                                                 h->o->opaque, &b, e)) < 0)
            return r;
        VS_AUTOFREE char *path = NULL;
        unsigned flags = NBD_OVL_CREATE;
        if (h->o->overlay)
            path = i == 0 ? vs_xstrdup(h->o->overlay) : vs_xasprintf("%s.disk%zu", h->o->overlay, i);
        else
            flags |= NBD_OVL_TEMP;
        if ((r = nbd_overlay_open(path, b, flags, &d->ovl, e)) < 0) {
            nbd_base_close(b);   /* the overlay owns b only once opened */
            return r;
        }
        /* Layers already in an existing overlay are not in the archive: a --thin snap must include them. */
        d->parent_seq = 0;
        d->sock = vs_xasprintf("%s/nbd%zu.sock", h->st.dir, i);
        struct nbd_server_opts so = { .log = host_log_cb, .log_opaque = h };
        if ((r = nbd_server_new(d->ovl, &so, &d->srv, e)) < 0 || (r = nbd_server_listen_unix(d->srv, d->sock, e)) < 0)
            return r;
    }
    return 0;
}

/* Files named in the extra args: copies from the archive chain in the run directory (a writable one is this
 * boot's own copy: QEMU never writes the archive), else the originals. */
static int prepare_xfiles(struct host *h, vs_err *e)
{
    const struct vm_config *c = &h->st.config;
    h->xfiles = vs_xcalloc(c->n_xfiles + 1, sizeof *h->xfiles);
    h->x_in_chain = vs_xcalloc(c->n_xfiles + 1, sizeof *h->x_in_chain);
    h->x_extracted = vs_xcalloc(c->n_xfiles + 1, sizeof *h->x_extracted);
    for (size_t i = 0; i < c->n_xfiles; i++) {
        const struct vm_xfile *x = &c->xfiles[i];
        h->xfiles[i] = (struct vm_xfile){ vs_xstrdup(x->name), NULL, x->writable };
        VS_AUTOFREE char *dest = vs_xasprintf("%s/fw-%s", h->st.dir, x->name);
        int rc = extract_file(h->arc, x->name, dest, e);
        if (rc == 0) {
            h->xfiles[i].path = VS_STEAL(dest);
            h->x_in_chain[i] = h->x_extracted[i] = true;
        } else if (rc == -ENOENT) {
            if (access(x->path, x->writable ? R_OK | W_OK : R_OK) < 0)
                return vs_err_sys(e, errno, "%s file %s (not stored in the archive)", x->name, x->path);
            h->xfiles[i].path = vs_xstrdup(x->path);
        } else {
            return rc;
        }
    }
    return 0;
}

static int prepare_files(struct host *h, vs_err *e)
{
    for (int r = 0; r < VM_FILE__COUNT; r++) {
        const char *orig = h->st.config.files[r];
        if (!orig)
            continue;
        VS_AUTOFREE char *dest = vs_xasprintf("%s/%s", h->st.dir, vm_file_role_name(r));
        int rc = extract_file(h->arc, vm_file_role_name(r), dest, e);
        if (rc == 0) {
            h->files[r] = VS_STEAL(dest);
            h->extracted[r] = true;
        } else if (rc == -ENOENT) {
            if (access(orig, R_OK) < 0)
                return vs_err_sys(e, errno, "%s file %s (not stored in the archive)", vm_file_role_name(r), orig);
            h->files[r] = vs_xstrdup(orig);
        } else {
            return rc;
        }
    }
    return prepare_xfiles(h, e);
}

/* Each boot is a clone with an id of its own: the NICs its archive records (not this boot's own "-- ARGS") get MACs
 * derived from it, unless --keep-mac. */
static int fresh_identity(struct host *h, vs_err *e)
{
    struct vm_config *c = &h->st.config;
    uint8_t id[16];
    if (vs_uuid_generate(id) < 0)
        return vs_err_set(e, EIO, "cannot generate a clone id");
    vs_uuid_format(id, h->clone_id);
    if (h->o->keep_mac)
        return 0;
    int n = c->foreign ? vm_nics_remac(c->cmdline, 1, c->n_cmdline, id, e)
                       : vm_nics_remac(c->extra, 0, h->user_extra_from, id, e);
    if (n < 0)
        return vs_err_prefix(e, "archive %s: config", h->o->archive);
    h->macs = vs_xcalloc((size_t)n + 1, sizeof *h->macs);
    for (h->n_macs = 0; h->n_macs < (size_t)n; h->n_macs++) {
        uint8_t b[6];
        vm_mac_for_clone(id, (unsigned)h->n_macs, b);
        h->macs[h->n_macs] = vs_xasprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    }
    return 0;
}

/* What ran: the QEMU and its version, and the versioned machine type (never an alias), which a resume pins. */
static void record_qemu(struct host *h)
{
    int maj, min, mic;
    qmp_version(h->q, &maj, &min, &mic);
    free(h->st.config.qemu_version);
    h->st.config.qemu_version = vs_xasprintf("%d.%d.%d", maj, min, mic);
    free(h->st.config.qemu);
    h->st.config.qemu = vs_xstrdup(vm_qemu_binary(h->o->qemu));
    char *t = NULL;
    if (vm_machine_current(h->q, &t, NULL) == 0) {
        free(h->st.config.machine);
        h->st.config.machine = t;
    }
}

/* A resume loads state saved from one machine type: pin it (inferred for archives that recorded an alias or
 * nothing) and refuse before anything starts when the local QEMU does not have it. A cold boot runs the recorded
 * type or what the extra args ask for. */
static int pin_machine(struct host *h, bool has_memory, vs_err *e)
{
    struct vm_config *c = &h->st.config;
    if (c->machine && !vm_machine_name_ok(c->machine))
        return vs_err_set(e, EINVAL, "archive %s: config: machine type '%.64s' is not a machine type name (expected "
                          "1-63 letters, digits, '.', '_' or '-')", h->o->archive, c->machine);
    if (!has_memory)
        return 0;
    VS_AUTOFREE char *t = c->foreign ? vm_machine_infer(c->machine, c->qemu_version, c->cmdline, c->n_cmdline)
                                     : vm_machine_infer(c->machine, c->qemu_version, c->extra, c->n_extra);
    if (!t)
        return 0;   /* unknown: QEMU decides, and its own words say why it refuses */
    if (!vm_machine_name_ok(t))
        return vs_err_set(e, EINVAL, "archive %s: the VM's machine type '%.64s' is not a machine type name",
                          h->o->archive, t);
    const char *qemu = vm_qemu_binary(h->o->qemu);
    VM_MACHINES_AUTOFREE struct vm_machines m = { 0 };
    int r = 0;
    /* A QEMU that cannot even list its machines will not start either: then QEMU's own error is the one shown. */
    if (vm_machines_get(qemu, NULL, &m, NULL) == 0)
        r = vm_machine_check(&m, qemu, t, c->qemu_version, e);
    if (r < 0)
        return vs_err_prefix(e, "cannot resume %s", h->o->archive);
    free(c->machine);
    c->machine = VS_STEAL(t);
    return 0;
}

/* The last lines of QEMU's log (up to 3, joined by "; "), for an error message: QEMU often explains on the line
 * before its last ("Machine type received is ...", then "load of migration failed"). */
static void log_tail(const char *path, char *out, size_t len)
{
    out[0] = 0;
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[1024];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, start);
    if (n <= 0)
        return;
    buf[n] = 0;
    char *lines[3];
    int k = 0;
    for (char *p = buf + n; p > buf && k < 3;) {
        while (p > buf && (p[-1] == '\n' || p[-1] == '\r'))
            *--p = 0;
        char *b = p;
        while (b > buf && b[-1] != '\n')
            b--;
        if (b == p || (b == buf && start > 0 && k > 0))   /* empty, or cut by the read window */
            break;
        lines[k++] = b;
        p = b;
    }
    size_t used = 0;
    for (int i = k - 1; i >= 0 && used + 1 < len; i--)
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? "; " : "", lines[i]);
}

/* QEMU that exits on a failed load says why on stderr only: its last lines lead the error, unless the error
 * already carries them. */
static void add_qemu_words(struct host *h, vs_err *e)
{
    char tail[320];
    if (!e || !h->qemu_log)
        return;
    log_tail(h->qemu_log, tail, sizeof tail);
    if (tail[0] && !strstr(e->msg, tail))
        vs_err_prefix(e, "%s", tail);
}

/* --record-ws needs the page server (lazy memory); otherwise the archive's own working set, checked here so that
 * the boot reports it, or why it is left out (the page server skips a bad one itself). */
static int check_ws(struct host *h, vs_err *e)
{
    if (h->o->record_ws_s && !h->lazy)
        return vs_err_set(e, EINVAL, "--record-ws records the pages a lazily resumed VM reads, and archive %s is not "
                          "resumed lazily: %s", h->o->archive, h->memory_note[0] ? h->memory_note :
                          "it holds no memory stored as pages");
    if (h->o->record_ws_s) {
        snprintf(h->memory_note, sizeof h->memory_note, "recording the working set for %g s: a page server of this "
                 "boot's own, without prefetch", h->o->record_ws_s);
        return 0;
    }
    struct mst_ws ws;
    vs_err we = { 0 };
    int r = h->lazy ? mst_ws_read(h->arc, &ws, &we) : 0;
    if (r < 0)
        snprintf(h->ws_note, sizeof h->ws_note, "archive %s: %s: resuming without its working set", h->o->archive,
                 we.msg);
    if (r == 1) {
        h->ws_ranges = ws.n;
        h->ws_pages = ws.pages;
        mst_ws_free(&ws);
    }
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------------------------------ */

void host_cleanup(struct host *h)
{
    qmp_close(h->q);
    for (size_t i = 0; i < h->ndisks; i++) {
        nbd_server_free(h->disks[i].srv);   /* stops, flushes, removes the socket */
        nbd_overlay_close(h->disks[i].ovl);
        free(h->disks[i].sock);
        free(h->disks[i].name);
    }
    free(h->disks);
    host_pages_detach(h);   /* QEMU has exited: the server may let go of the page files */
    host_prefetch_stop(h);
    arc_close(h->arc);
    cr_key_wipe(&h->key);
    if (h->ctl >= 0)
        close(h->ctl);
    if (h->sigfd >= 0)
        close(h->sigfd);
    /* QEMU removes its listening sockets only when it exits cleanly (a failed incoming migration, a kill): the
     * user's --qmp/--console paths must not outlive the VM either way. Only the very sockets this QEMU made: by
     * now the path may hold a new VM's socket (same paths reused), or a file the user put there. */
    const char *user_socks[] = { h->st.user_qmp, h->st.console };
    for (size_t i = 0; i < VS_ARRAY_SIZE(user_socks); i++) {
        struct stat sb;
        if (user_socks[i] && h->user_sock[i].st_ino && lstat(user_socks[i], &sb) == 0 && S_ISSOCK(sb.st_mode) &&
            sb.st_dev == h->user_sock[i].st_dev && sb.st_ino == h->user_sock[i].st_ino)
            unlink(user_socks[i]);
    }
    if (h->st.dir) {
        const char *names[] = { "state.json", "ctl.sock", "vmsnap-qmp.sock", "qmp.sock", "console.sock", "qemu.log",
                                "kernel", "initrd", "dtb", "prefetch.json", VM_WS_FILE,
                                VM_WS_REPORT };
        for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
            VS_AUTOFREE char *p = vs_xasprintf("%s/%s", h->st.dir, names[i]);
            unlink(p);
        }
        for (size_t i = 0; h->xfiles && i < h->st.config.n_xfiles; i++)
            if (h->x_extracted[i])
                unlink(h->xfiles[i].path);
        rmdir(h->st.dir);
    }
    for (int r = 0; r < VM_FILE__COUNT; r++)
        free(h->files[r]);
    for (size_t i = 0; h->xfiles && i < h->st.config.n_xfiles; i++) {
        free(h->xfiles[i].name);
        free(h->xfiles[i].path);
    }
    free(h->xfiles);
    free(h->x_in_chain);
    free(h->x_extracted);
    free(h->qemu_log);
    free(h->trusted);
    free(h->disks_note);
    for (size_t i = 0; i < h->n_macs; i++)
        free(h->macs[i]);
    free(h->macs);
    free(h->replay_notes);
    json_decref(h->ws_report);
    vm_state_free(&h->st);
}

void host_stop_qemu(struct host *h)
{
    if (h->qemu_exited || h->qemu <= 0)
        return;
    if (h->q)
        qmp_execute_timeout(h->q, "quit", NULL, 5, NULL, NULL);
    for (int i = 0; i < 1000; i++) {   /* 10 s */
        if (waitpid(h->qemu, &h->qemu_status, WNOHANG) == h->qemu) {
            h->qemu_exited = true;
            return;
        }
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    kill(h->qemu, SIGKILL);
    waitpid(h->qemu, &h->qemu_status, 0);
    h->qemu_exited = true;
}

int host_start(struct host *h, vs_err *e)
{
    const struct vm_host_opts *o = h->o;
    if (o->key) {
        h->key = *o->key;
        h->has_key = true;
    }
    struct arc_open_opts ao = { .key = host_key(h), .wrap = o->wrap_source, .wrap_opaque = o->opaque };
    int r = arc_open(o->archive, &ao, &h->arc, e);
    if (r < 0 || (o->check_archive && (r = o->check_archive(o->opaque, h->arc, e)) < 0))
        return r;
    bool has_memory = false;
    /* The archive is checked before anything runs, the probes of pin_machine included. */
    if ((r = load_config(h, &has_memory, e)) < 0 || (r = apply_options(h, has_memory, e)) < 0 ||
        (r = check_archive(h, e)) < 0 || (r = pin_machine(h, has_memory, e)) < 0 || (r = fresh_identity(h, e)) < 0)
        return r;
    char accel[8];
    const char *want = o->accel && strcmp(o->accel, "auto") ? o->accel : NULL;
    if (!want && has_memory && h->st.config.accel)
        want = h->st.config.accel;   /* a memory snapshot resumes under its recorded accelerator */
    if ((r = vm_accel_resolve(want ? want : "auto", vm_qemu_binary(o->qemu), NULL, accel, e)) < 0)
        return r;
    if (!h->st.config.foreign || (o->accel && strcmp(o->accel, "auto"))) {
        free(h->st.config.accel);
        h->st.config.accel = vs_xstrdup(accel);
    }
    if ((r = vm_rundir_create(&h->st.dir, e)) < 0)
        return r;
    double t_restore = vs_now_s();   /* restore starts: page files, QEMU, device state */
    /* The shared page server is started (a fork) before the NBD servers' threads exist. */
    if (h->paged && (h->lazy = can_be_lazy(h, h->memory_note, sizeof h->memory_note))) {
        vs_err me = { 0 };
        if (host_pages_attach(h, &me) < 0) {
            snprintf(h->memory_note, sizeof h->memory_note, "cannot serve memory pages over FUSE (%.300s): "
                     "resuming eagerly", me.msg);
            host_pages_detach(h);
            h->lazy = false;
        }
    }
    if ((r = check_ws(h, e)) < 0)
        return r;
    h->st.boot_pid = getpid();
    h->st.private_qmp = vs_xasprintf("%s/vmsnap-qmp.sock", h->st.dir);
    h->st.user_qmp = o->qmp ? vs_xstrdup(o->qmp) : vs_xasprintf("%s/qmp.sock", h->st.dir);
    h->st.console = o->console ? vs_xstrdup(o->console) : vs_xasprintf("%s/console.sock", h->st.dir);
    h->st.control = vs_xasprintf("%s/ctl.sock", h->st.dir);
    h->st.overlay = o->overlay ? vs_xstrdup(o->overlay) : NULL;
    h->st.archive = os_is_remote(o->archive) ? vs_xstrdup(o->archive) : realpath(o->archive, NULL);
    h->st.parent = vs_xstrdup(h->st.archive ? h->st.archive : o->archive);
    if ((r = open_disks(h, e)) < 0 || (r = prepare_files(h, e)) < 0)
        return r;
    VS_AUTOFREE const char **socks = vs_xcalloc(h->ndisks + 1, sizeof *socks);   /* NULL-terminated */
    for (size_t i = 0; i < h->ndisks; i++)
        socks[i] = h->disks[i].sock;
    if (h->o->eager && !strcmp(h->memory_note, "--eager"))
        h->memory_note[0] = 0;
    struct vm_launch l = { .qemu = vm_qemu_binary(o->qemu),
                           .accel = h->st.config.foreign && !(o->accel && strcmp(o->accel, "auto")) ? NULL : accel,
                           .private_qmp = h->st.private_qmp, .user_qmp = h->st.user_qmp, .console = h->st.console,
                           .disk_sockets = socks, .incoming = has_memory, .keep_uncaptured = o->trust_archive,
                           .disk_note = &h->disks_note, .replay_note = &h->replay_notes,
                           .mem_path = h->lazy ? h->mem_path : NULL };
    for (int i = 0; i < VM_FILE__COUNT; i++)
        l.files[i] = h->files[i];
    l.xfiles = h->xfiles;
    l.n_xfiles = h->st.config.n_xfiles;
    struct vm_argv argv;
    if ((r = vm_build_argv(&h->st.config, &l, &argv, e)) < 0)
        return r;
    if (h->disks_note) {
        char *n = vs_xasprintf("disks not captured (read-only) name host files of the recorded VM; without "
                               "--trust-archive: %s", h->disks_note);
        free(h->disks_note);
        h->disks_note = n;
    }
    int logfd = o->errlog_fd;
    VS_AUTOCLOSE int ownlog = -1;
    if (logfd < 0 && o->quiet_stdio) {
        h->qemu_log = vs_xasprintf("%s/qemu.log", h->st.dir);
        /* appended to: the boot host's own lines go there too (host_log) */
        ownlog = open(h->qemu_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        logfd = ownlog;
    }
    bool stdio = o->console && !strcmp(o->console, "stdio");
    /* A foreign VM's relative paths resolve in its old working directory, if that still exists: a host path of
     * the archive, so only when trusted. */
    const char *cwd = h->st.config.foreign && o->trust_archive && h->st.config.cwd &&
                      access(h->st.config.cwd, X_OK) == 0 ? h->st.config.cwd : NULL;
    r = vm_spawn(&argv, cwd, logfd, o->quiet_stdio && !stdio, !stdio,
                 &h->qemu, e);
    vm_argv_free(&argv);
    if (r < 0)
        return r;
    h->st.qemu_pid = h->qemu;
    if ((r = vm_wait_socket(h->st.private_qmp, h->qemu, 30, e)) < 0) {
        add_qemu_words(h, e);
        h->qemu_exited = r == -ECHILD;
        return r;
    }
    struct qmp_opts qo = { .timeout_s = 60 };
    if ((r = qmp_connect(h->st.private_qmp, &qo, &h->q, e)) < 0)
        return r;
    /* QEMU made every chardev socket before its monitor answered: remember which files are its. */
    const char *user_socks[] = { h->st.user_qmp, h->st.console };
    for (size_t i = 0; i < VS_ARRAY_SIZE(user_socks); i++)
        if (!user_socks[i] || lstat(user_socks[i], &h->user_sock[i]) < 0 || !S_ISSOCK(h->user_sock[i].st_mode))
            h->user_sock[i].st_ino = 0;
    record_qemu(h);
    if (has_memory && h->paged)
        r = vm_resume_paged(h->q, h->arc, h->lazy, 600, e);
    else if (has_memory)
        r = vm_resume_memory(h->q, h->arc, (unsigned)arc_find_stream(h->arc, ARC_KIND_MEMORY, NULL), 600, e);
    if (r < 0) {
        add_qemu_words(h, e);
        return vs_err_prefix(e, "resuming %s", o->archive);
    }
    double t_running = vs_now_s();
    struct arc_cache_stats cs;   /* what the cache did until the VM ran */
    arc_cache_stats(h->arc, &cs);
    if (o->prefetch_all)
        host_prefetch_start(h);
    vs_err pe = { 0 };
    if (h->lazy && host_pages_running(h, !o->no_prefetch && !o->record_ws_s, &pe) < 0)   /* the VM runs on without it */
        snprintf(h->memory_note, sizeof h->memory_note, "no background prefetch: %.400s", pe.msg);
    if ((r = vm_state_save(&h->st, e)) < 0)
        return r;
    if ((r = vs_listen_unix(h->st.control, &h->ctl, e)) < 0)
        return r;
    if (o->ready) {
        /* After the VM runs, off the start-to-running path. */
        char genid[64] = "";
        json_t *g = NULL;
        if (h->st.config.vmgenid && qmp_execute(h->q, "query-vm-generation-id", NULL, &g, NULL) == 0)
            snprintf(genid, sizeof genid, "%s", json_string_value(json_object_get(g, "guid")) ?: "");
        json_decref(g);
        VS_AUTOFREE char *ws_file = o->record_ws_s ? vs_xasprintf("%s/%s", h->st.dir, VM_WS_FILE) : NULL;
        struct vm_host_info info = { .rundir = h->st.dir, .qmp = h->st.user_qmp, .console = h->st.console,
                                     .overlay = h->st.overlay, .control = h->st.control, .qemu_pid = h->qemu,
                                     .boot_pid = getpid(), .page_server_pid = h->pages_pid,
                                     .memory_file = h->lazy ? h->mem_path : NULL, .clone_id = h->clone_id,
                                     .macs = (const char *const *)h->macs, .n_macs = h->n_macs,
                                     .resumed = has_memory, .start_to_running_s = t_running - t_restore,
                                     .lazy = h->lazy, .memory_note = h->memory_note[0] ? h->memory_note : NULL,
                                     .generation_id = genid[0] ? genid : NULL, .trusted = h->trusted,
                                     .cache = cs.enabled ? &cs : NULL, .disks_note = h->disks_note,
                                     .replay_notes = h->replay_notes, .record_ws_s = o->record_ws_s,
                                     .ws_file = ws_file, .ws_ranges = h->ws_ranges, .ws_pages = h->ws_pages,
                                     .ws_note = h->ws_note[0] ? h->ws_note : NULL };
        o->ready(o->opaque, &info);
    }
    return 0;
}
