/* cli: "vmsnap snap" — a live snapshot. A VM started by `vmsnap boot` is snapshotted by its boot process (asked
 * over the run directory's control socket); a foreign QEMU from here: RAM, device state, its command line and its
 * writable disks through copy-before-write fleecing (blkcap), all of one instant; --memory-only leaves the disks.
 * A libvirt domain the same way, its disks through libvirt's backup API (lvdisk). */
#include "blkcap/blkcap.h"
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "lvdisk/lvdisk.h"
#include "objstore/objstore.h"
#include "vm/vm.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

struct snap_ui {
    bool progress;
    struct cli_trust *trust;   /* --trusted-keys: what --parent PREV must carry */
};

static void remote_progress(void *opaque, json_t *p)
{
    struct snap_ui *ui = opaque;
    if (!ui->progress)
        return;
    char a[32], b[32];
    uint64_t done = (uint64_t)json_integer_value(json_object_get(p, "transferred"));
    uint64_t left = (uint64_t)json_integer_value(json_object_get(p, "remaining"));
    double mbps = json_number_value(json_object_get(p, "mbps"));
    double eta = mbps > 0 ? left * 8.0 / (mbps * 1e6) : 0;
    fprintf(stderr, "\r%-7s %s, %s left, %.0f MB/s, ETA %.1f s   ",
            json_string_value(json_object_get(p, "phase")) ?: "", vs_fmt_size(done, a, sizeof a),
            vs_fmt_size(left, b, sizeof b), mbps / 8, eta);
}

struct foreign {
    struct vm_config cfg;
    struct snap_ui *ui;
    struct qmp *q;
    bool live;
    struct bc_disks disks;       /* the disks to capture (none: memory only) */
    struct bc_fleece *fleece;    /* their point-in-time views, set up before the pause */
    char *dir;                   /* its private run directory */
    const char *prev;            /* the --parent's dirty bitmap, or NULL */
    char *next;                  /* this archive's dirty bitmap */
    char *missing;               /* disks without prev */
    bool incremental;            /* every disk has prev: only what it marks is read */
    struct lvd_backup *lv;       /* a libvirt domain's disks (then disks is empty), or NULL */
    struct arc_writer *w;
};

static void local_progress(void *opaque, const struct vm_snap_progress *p)
{
    json_t *j = json_pack("{s:s,s:I,s:I,s:f}", "phase", p->phase, "transferred", (json_int_t)p->transferred,
                          "remaining", (json_int_t)p->remaining, "mbps", p->mbps);
    remote_progress(((struct foreign *)opaque)->ui, j);
    json_decref(j);
}

static bool local_cancelled(void *opaque)
{
    (void)opaque;
    return interrupted != 0;
}


static void disk_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct vm_snap_progress p = { .phase = "disks", .transferred = done, .remaining = total - done };
    local_progress(opaque, &p);
}

/* A private 0700 directory of this snapshot under the user's run directory: the fleecing targets and the NBD
 * socket. */
static int fleece_dir(char **out, vs_err *e)
{
    VS_AUTOFREE char *base = NULL;
    int r = vm_rundir_base(&base, e);
    if (r < 0)
        return r;
    char *tmpl = vs_xasprintf("%s/snap-XXXXXX", base);
    if (!mkdtemp(tmpl)) {
        r = vs_err_sys(e, errno, "creating a directory in %s", base);
        free(tmpl);
        return r;
    }
    *out = tmpl;
    return 0;
}

/* Once the method is known, before the pause: the views, not yet in the guest's path. Only a background snapshot
 * leaves the block layer alone: every other migration ends by inactivating every block node, which QEMU refuses
 * while a copy-before-write filter shares the disk's node with the device (seen on 7.2: "bdrv_inactivate_all()
 * failed", the migration failed). */
static int foreign_prepare(void *opaque, enum vm_snap_method method, const char *why, vs_err *e)
{
    struct foreign *f = opaque;
    if (!f->disks.n)
        return 0;
    if (method != VM_SNAP_BACKGROUND)
        return vs_err_set(e, ENOTSUP, "the disks of a QEMU vmsnap did not start are captured only with a background "
                          "snapshot (at the end of any other migration QEMU hands its disks over, which it refuses "
                          "while vmsnap's snapshot filters are attached), and this one would be a %s: %s; use "
                          "--memory-only", vm_snap_method_name(method),
                          method == VM_SNAP_PRECOPY ? why
                          : !f->live ? "--mode stop" : "the VM is paused, and QEMU before 9.0 snapshots a paused VM "
                                                       "with a plain migration");
    int r = fleece_dir(&f->dir, e);
    if (r < 0 || (r = bc_fleece_prepare(f->q, &f->disks, f->dir, &f->fleece, e)) < 0 ||
        (r = bc_fleece_bitmaps(f->fleece, f->next, f->prev, &f->missing, e)) < 0)
        return r;
    f->incremental = r > 0;
    return 0;
}

/* The instant: the VM is stopped and QEMU has flushed its disks. A libvirt domain's backup begins here. */
static int foreign_freeze(void *opaque, vs_err *e)
{
    struct foreign *f = opaque;
    if (f->lv)
        return lvd_begin(f->lv, arc_writer_uuid(f->w), NULL, e);
    return f->fleece ? bc_fleece_insert(f->fleece, e) : 0;
}

/* After the memory: every view into its disk stream, then the VM gets its own nodes back at once. */
static int foreign_disks(void *opaque, struct arc_writer *w, vs_err *e)
{
    struct foreign *f = opaque;
    struct bc_copy_opts o = { .cancelled = local_cancelled, .progress = disk_progress, .opaque = f };
    if (f->lv) {
        int r = lvd_copy(f->lv, w, &o, e);
        return r < 0 ? r : lvd_stop_job(f->lv, e);
    }
    if (!f->fleece)
        return 0;
    int r = bc_fleece_copy(f->fleece, w, &o, e);
    if (r < 0)
        return r;
    return bc_fleece_end(f->fleece, e);
}

/* What a resume needs to know of each captured disk, in stream order (docs/FORMAT.md, "VM config"). */
static void record_disks(struct vm_config *c, const struct bc_disks *d)
{
    c->disks = vs_xcalloc(d->n + 1, sizeof *c->disks);
    c->n_disks = d->n;
    for (size_t i = 0; i < d->n; i++) {
        const struct bc_disk *k = &d->d[i];
        c->disks[i] = (struct vm_disk){ .format = vs_xstrdup("raw"), .iface = vs_xstrdup(k->interface),
                                        .size = k->size, .name = vs_xstrdup(k->name),
                                        .stream = vs_xasprintf("disk%zu", i), .device = vs_xstrdup(k->device),
                                        .node = vs_xstrdup(k->node), .drive = k->drive ? vs_xstrdup(k->drive) : NULL };
    }
}

/* The same for a libvirt domain's captured disks. */
static void record_lv_disks(struct vm_config *c, const struct lvd_backup *b)
{
    c->disks = vs_xcalloc(b->n + 1, sizeof *c->disks);
    for (size_t i = 0; i < b->n; i++) {
        const struct lvd_disk *k = &b->disks[i];
        if (!k->capture)
            continue;
        c->disks[c->n_disks++] = (struct vm_disk){
            .format = vs_xstrdup("raw"), .iface = vs_xstrdup(k->iface), .size = k->size,
            .name = vs_xstrdup(k->name), .stream = vs_xstrdup(k->stream), .device = vs_xstrdup(k->device),
            .node = vs_xstrdup(k->node),
        };
    }
}

/* snap --json of a libvirt domain's disks: the keys of a foreign QEMU's, what was read of each disk
 * (disks-stats), and the checkpoint the next --thin uses. */
static void lv_result(json_t *res, const struct lvd_backup *b)
{
    json_t *names = json_array(), *stats = json_array();
    bool all_incremental = true;
    uint64_t read = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct lvd_disk *k = &b->disks[i];
        if (!k->capture)
            continue;
        json_array_append_new(names, json_string(k->name));
        json_array_append_new(stats, json_pack("{s:s,s:s,s:I,s:b,s:I,s:I,s:I}", "name", k->name, "stream",
                                               k->stream, "size", (json_int_t)k->size, "incremental",
                                               k->incremental, "data-bytes", (json_int_t)k->stats.data_bytes,
                                               "zero-bytes", (json_int_t)k->stats.zero_bytes, "skipped-bytes",
                                               (json_int_t)k->stats.skipped_bytes));
        all_incremental &= k->incremental;
        read += k->stats.data_bytes;
    }
    json_object_set_new(res, "disks", names);
    json_object_set_new(res, "disks-stats", stats);
    json_object_set_new(res, "disks-incremental", json_boolean(all_incremental));
    json_object_set_new(res, "disks-read-bytes", json_integer((json_int_t)read));
    json_object_set_new(res, "checkpoint", b->checkpoint[0] ? json_string(b->checkpoint) : json_null());
    if (b->note[0])
        json_object_set_new(res, "disks-note", json_string(b->note));
}

static int foreign_rest(void *opaque, struct arc_writer *w, vs_err *e)
{
    struct foreign *f = opaque;
    VS_AUTOFREE char *cfg = vm_config_to_json(&f->cfg);
    return arc_writer_add(w, ARC_KIND_CONFIG, "config", cfg, strlen(cfg), e);
}

/* The QEMU behind a --qmp socket vmsnap did not start. Its command line becomes the archive's launch config,
 * replayed by boot (argv[0] included): only from a process of ours (or root's), never from whoever else bound a
 * socket at that path. */
static int connect_foreign(const char *qmp_path, struct qmp **out, vs_err *e)
{
    QMP_AUTOCLOSE struct qmp *q = NULL;
    int r = qmp_connect(qmp_path, NULL, &q, e);
    if (r < 0)
        return r;
    pid_t pid = qmp_peer_pid(q);
    if (pid <= 0)
        return vs_err_set(e, ESRCH, "QMP socket %s: cannot tell which process serves it", qmp_path);
    uid_t uid = qmp_peer_uid(q);
    if (uid != geteuid() && uid != 0)
        return vs_err_set(e, EPERM, "QMP socket %s is served by process %d of uid %u, not by you (uid %u) or root: "
                          "refusing to record its command line", qmp_path, (int)pid, (unsigned)uid,
                          (unsigned)geteuid());
    *out = VS_STEAL(q);
    return 0;
}

/* A libvirt domain: libvirt vouches for which process is the domain's QEMU (it runs as libvirt's QEMU user). */
static int connect_libvirt(const char *uri, const char *domain, struct qmp **out, vs_err *e)
{
    QMP_AUTOCLOSE struct qmp *q = NULL;
    int r = qmp_connect_libvirt(uri, domain, NULL, &q, e);
    if (r < 0)
        return r;
    if (qmp_peer_pid(q) <= 0)
        return vs_err_set(e, ESRCH, "libvirt domain '%s': its QEMU process is not on this host (or not readable): "
                          "cannot record its command line", domain);
    *out = VS_STEAL(q);
    return 0;
}

/* Which disks of the VM to capture (disks: --disks, or NULL for every writable one); the read-only ones skipped go
 * to *skipped. Before the VM is touched. */
static int choose_disks(struct qmp *q, const char *disks, struct bc_disks *out, char **skipped, vs_err *e)
{
    BC_DISKS_AUTOFREE struct bc_disks d = { 0 };
    int r = bc_disks_query(q, &d, e);
    if (r < 0 || (r = bc_disks_select(&d, disks, skipped, e)) < 0)
        return r;
    *out = d;
    d = (struct bc_disks){ 0 };
    return 0;
}

/* --thin --parent PREV of a foreign VM: PREV must be a snapshot of the same disks (names and sizes, in stream order),
 * so each stream's base in PREV is the same disk. *bitmap gets the dirty bitmap PREV's capture left on them. */
static int check_parent(const char *parent, const struct cr_key *key, struct cli_trust *trust,
                        const struct bc_disks *d, char **bitmap, vs_err *e)
{
    ARC_AUTOCLOSE struct arc *a = NULL;
    struct arc_open_opts ao = { .key = key };
    int r = cli_open_trusted(parent, &ao, trust, &a, e);
    if (r < 0)
        return r;
    VS_AUTOFREE char *text = NULL;
    size_t len = 0;
    struct vm_config c;
    vm_config_init(&c);
    if ((r = arc_read_config(a, &text, &len, e)) < 0 || (r > 0 && (r = vm_config_from_json(text, len, &c, e)) < 0))
        return vs_err_prefix(e, "--parent %s: config", parent);
    bool same = c.foreign && c.n_disks == d->n;
    for (size_t i = 0; same && i < d->n; i++)
        same = c.disks[i].name && !strcmp(c.disks[i].name, d->d[i].name) && c.disks[i].size == d->d[i].size;
    vm_config_free(&c);
    if (!same)
        return vs_err_set(e, EINVAL, "--parent %s is not a snapshot of this VM's disks as captured now (the same "
                          "disks, names and sizes): take a full snapshot first", parent);
    char u[37];
    vs_uuid_format(arc_uuid(a), u);
    *bitmap = vs_xasprintf("vmsnap-%s", u);
    return 0;
}

/* --thin --parent PREV of a libvirt domain: PREV's checkpoint, named after its UUID, marks what changed since. */
static int libvirt_parent(struct lvd_backup *lv, const char *parent, const struct cr_key *key,
                          struct cli_trust *trust, vs_err *e)
{
    ARC_AUTOCLOSE struct arc *a = NULL;
    struct arc_open_opts ao = { .key = key };
    int r = cli_open_trusted(parent, &ao, trust, &a, e);
    return r < 0 ? r : lvd_use_parent(lv, arc_uuid(a), e);
}

/* A QEMU vmsnap did not start: RAM + device state + its command line, and its disks unless memory_only; with lv
 * (planned, thin against parent already), a libvirt domain's disks through libvirt. */
static int snap_foreign(struct qmp *q, const char *out, const char *codec, const struct cr_key *key,
                        const char *cipher, bool live,
                        bool memory_only, const char *disks, const char *parent, struct lvd_backup *lv,
                        struct snap_ui *ui, json_t **result, vs_err *e)
{
    int r;
    pid_t pid = qmp_peer_pid(q);
    struct foreign f = { .ui = ui, .q = q, .live = live, .lv = lv };
    /* Declared before the first goto: a cleanup variable must never be jumped over (it would free garbage). */
    VS_AUTOFREE char *skipped = NULL, *outdir = vs_xstrdup(out), *prev = NULL;
    if (!lv && !memory_only && (r = choose_disks(q, disks, &f.disks, &skipped, e)) < 0)
        return r;
    if (!lv && parent && (r = check_parent(parent, key, ui->trust, &f.disks, &prev, e)) < 0) {
        bc_disks_free(&f.disks);
        return r;
    }
    f.prev = prev;
    vm_config_init(&f.cfg);
    char **argv = NULL, *cwd = NULL;
    size_t argc = 0;
    if ((r = vm_proc_cmdline(pid, &argv, &argc, &cwd, e)) < 0)
        goto out;
    r = vm_config_from_cmdline(&f.cfg, argv, argc, cwd, e);
    for (size_t i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    free(cwd);
    if (r < 0)
        goto out;
    int maj, min, mic;
    qmp_version(q, &maj, &min, &mic);
    f.cfg.qemu_version = vs_xasprintf("%d.%d.%d", maj, min, mic);
    char *mt = NULL;   /* the versioned machine type it runs, which a resume pins (not the alias it was given) */
    if (vm_machine_current(q, &mt, NULL) == 0) {
        free(f.cfg.machine);
        f.cfg.machine = mt;
    }
    if (f.disks.n)
        record_disks(&f.cfg, &f.disks);
    if (lv)
        record_lv_disks(&f.cfg, lv);
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    if (codec && (r = arc_parse_codec(codec, &wo.codec, &wo.level, e)) < 0)
        goto out;
    wo.worker_nice = live ? VM_SNAP_WORKER_NICE : 0;
    wo.parent_path = parent;
    wo.parent_wrap = cli_trust_wrap;   /* the bytes taken from --parent are the ones its signers vouch for */
    wo.parent_wrap_opaque = ui->trust;
    wo.thin = parent != NULL;
    wo.key = key;
    wo.cipher = cipher;
    wo.parent_key = key;   /* an encrypted --parent: a thin archive is sealed with its parent's key */
    struct arc_writer *w = NULL;
    if ((r = arc_writer_create(out, &wo, &w, e)) < 0)
        goto out;
    f.w = w;
    /* Named after this archive: the next --thin --parent OUT reads only what it marks. */
    char u[37];
    vs_uuid_format(arc_writer_uuid(w), u);
    f.next = vs_xasprintf("vmsnap-%s", u);
    char *slash = strrchr(outdir, '/');
    if (slash)
        *slash = 0;
    /* Pages under the VM's own block names (pc.ram, or its backend's id); boot resumes such a VM eagerly. */
    struct vm_snap_opts so = { .mode_live = live, .precopy_bound_s = 10, .prepare = foreign_prepare,
                               .freeze = foreign_freeze, .write_disks = foreign_disks, .write_rest = foreign_rest,
                               .disks_in_pause = lv != NULL,
                               .cancelled = local_cancelled, .progress = local_progress, .opaque = &f,
                               .paged = true,
                               .tmpdir = os_is_remote(out) ? NULL : slash ? (outdir[0] ? outdir : "/") : "." };
    struct vm_snap_result res;
    r = vm_snap_run(q, w, &so, &res, e);
    if (!res.writer_consumed)
        arc_writer_abort(w);
    vs_err ce = { 0 };
    if (r == 0 && f.fleece && bc_fleece_commit(f.fleece, &ce) < 0)
        fprintf(stderr, "vmsnap: warning: snapshot written, but removing stale dirty bitmaps failed: %s\n", ce.msg);
    if (lv && lvd_end(lv, r == 0, &ce) < 0 && r == 0)
        fprintf(stderr, "vmsnap: warning: snapshot written, but %s\n", ce.msg);
    else if (lv && ce.msg[0] && e) {   /* the snapshot failed already: its error comes first */
        size_t n = strlen(e->msg);
        snprintf(e->msg + n, sizeof e->msg - n, "; and %.*s", (int)(sizeof e->msg - n), ce.msg);
    }
    if (r == 0) {
        *result = vm_snap_result_json(&res, out, parent != NULL);
        json_object_set_new(*result, "disks-incremental", json_boolean(f.incremental));
        json_object_set_new(*result, "disks-read-bytes",
                            json_integer(f.fleece ? (json_int_t)bc_fleece_read_bytes(f.fleece) : 0));
        if (f.missing)
            json_object_set_new(*result, "disks-note", json_sprintf("dirty bitmap %s missing on disk(s) %s (the VM "
                                "was restarted, or the disk is not qcow2): read in full and compared against the "
                                "parent", prev, f.missing));
        json_object_set_new(*result, "redacted", json_integer((json_int_t)f.cfg.redacted));
        json_t *dj = json_array();
        for (size_t i = 0; i < f.disks.n; i++)
            json_array_append_new(dj, json_string(f.disks.d[i].name));
        json_object_set_new(*result, "disks", dj);
        json_object_set_new(*result, "disks-skipped", skipped ? json_string(skipped) : json_null());
        if (f.fleece)
            json_object_set_new(json_object_get(*result, "phases"), "disk-filters",
                                json_real(bc_fleece_insert_s(f.fleece)));
        if (lv)
            lv_result(*result, lv);
    }
out:
    if (r < 0 && f.fleece) {
        /* Ended already unless it failed before the disks were copied; what it could not undo is said too. */
        vs_err ee = { 0 };
        size_t n = e ? strlen(e->msg) : 0;
        if (bc_fleece_end(f.fleece, &ee) < 0 && e && n + 7 < sizeof e->msg)
            snprintf(e->msg + n, sizeof e->msg - n, "; and %.*s", (int)(sizeof e->msg - n - 7), ee.msg);
    }
    bc_fleece_free(f.fleece);
    if (f.dir)
        rmdir(f.dir);
    free(f.dir);
    free(f.next);
    free(f.missing);
    bc_disks_free(&f.disks);
    vm_config_free(&f.cfg);
    return r;
}

int cmd_snap(int argc, char **argv)
{
    static const struct option opts[] = {
        { "qmp", required_argument, NULL, 'q' },     { "socket", required_argument, NULL, 'q' },
        { "output", required_argument, NULL, 'o' },  { "thin", no_argument, NULL, 't' },
        { "mode", required_argument, NULL, 'M' },    { "compress", required_argument, NULL, 'z' },
        { "json", no_argument, NULL, 'j' },          { "memory-only", no_argument, NULL, 'm' },
        { "quiet", no_argument, NULL, 'Q' },         { "message", required_argument, NULL, 'e' },
        { "base", required_argument, NULL, 'B' },    { "overlay", required_argument, NULL, 'O' },
        { "libvirt", required_argument, NULL, 'L' }, { "connect", required_argument, NULL, 'c' },
        { "disks", required_argument, NULL, 'D' },   { "parent", required_argument, NULL, 'P' },
        { "encrypt", required_argument, NULL, 'E' }, { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { "cipher", required_argument, NULL, 'X' },  { NULL, 0, NULL, 0 },
    };
    const char *qmp = NULL, *out = NULL, *codec = NULL, *message = NULL, *domain = NULL, *uri = NULL,
               *disks = NULL, *parent = NULL, *encrypt = NULL, *trusted_keys = NULL, *cipher = NULL;
    bool thin = false, live = true, json = false, memory_only = false, quiet = false;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "q:o:tM:z:jmQe:B:O:L:c:D:P:", opts, NULL)) != -1) {
        switch (c) {
        case 'q': qmp = optarg; break;
        case 'L': domain = optarg; break;
        case 'c': uri = optarg; break;
        case 'D': disks = optarg; break;
        case 'P': parent = optarg; break;
        case 'o': out = optarg; break;
        case 't': thin = true; break;
        case 'M':
            if (strcmp(optarg, "live") && strcmp(optarg, "stop"))
                return cli_usage("snap", "--mode: expected live or stop, got '%s'", optarg);
            live = !strcmp(optarg, "live");
            break;
        case 'z': codec = optarg; break;
        case 'j': json = true; break;
        case 'm': memory_only = true; break;
        case 'Q': quiet = true; break;
        case 'e': message = optarg; break;
        case 'E': encrypt = optarg; break;
        case 'X':
            if (cli_cipher_opt("snap", optarg))
                return CLI_USAGE;
            cipher = optarg;
            break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        case 'B': case 'O': break;   /* seed-000 aliases: vmsnap knows the base and overlay from the run dir */
        default: return cli_usage("snap", "bad option");
        }
    }
    if (optind != argc)
        return cli_usage("snap", "unexpected argument '%s'", argv[optind]);
    if (qmp && domain)
        return cli_usage("snap", "--qmp and --libvirt are exclusive: name the VM by one of them");
    if (uri && !domain)
        return cli_usage("snap", "-c URI goes with --libvirt DOMAIN");
    if (disks && (memory_only || !disks[0] || disks[0] == ',' || strstr(disks, ",,") ||
                  disks[strlen(disks) - 1] == ','))
        return cli_usage("snap", "--disks NAME[,NAME...] chooses the disks of a QEMU vmsnap did not start (--qmp, "
                         "--libvirt), not with --memory-only");
    if (parent && (!thin || memory_only))
        return cli_usage("snap", "--parent PREV goes with --thin, for a QEMU vmsnap did not start (--qmp, --libvirt)");
    if ((!qmp && !domain) || !out)
        return cli_usage("snap", "--qmp PATH (or --libvirt DOMAIN) and -o OUT.vmsnap are required");
    if (domain && thin && !parent)
        return cli_usage("snap", "--libvirt: --thin takes the snapshot it is relative to as --parent PREV.vmsnap");
    if (codec) {
        enum arc_codec cd;
        int lvl;
        vs_err e = { 0 };
        if (arc_parse_codec(codec, &cd, &lvl, &e) < 0)
            return cli_usage("snap", "--compress: %s", e.msg);
    }
    /* The key is loaded here too, so a bad key file fails before the VM is touched; the boot host loads it again. */
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    const struct cr_key *kp = NULL;
    vs_err ke = { 0 };
    VS_AUTOFREE char *abs_key = encrypt ? realpath(encrypt, NULL) : NULL;
    if (encrypt && (cli_key(encrypt, NULL, &key, &kp, &ke) < 0 || !abs_key))
        return ke.code ? cli_fail_err(&ke) : cli_fail("key file %s: %s", encrypt, strerror(errno));
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_trust_load(trusted_keys, &trust, &ke) < 0)
        return cli_fail_err(&ke);
    struct stat st;
    if (qmp && stat(qmp, &st) < 0)
        return cli_fail("QMP socket %s: %s", qmp, strerror(errno));
    if (qmp && !S_ISSOCK(st.st_mode))
        return cli_fail("QMP socket %s: not a socket", qmp);
    char cwd[PATH_MAX];
    VS_AUTOFREE char *abs_out = out[0] == '/' || os_is_remote(out) || !getcwd(cwd, sizeof cwd) ? vs_xstrdup(out)
                                                                         : vs_xasprintf("%s/%s", cwd, out);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct snap_ui ui = { .progress = cli_progress_enabled(quiet), .trust = &trust };
    vs_err e = { 0 };
    json_t *res = NULL;
    struct vm_state vs;
    int r;
    QMP_AUTOCLOSE struct qmp *q = NULL;
    struct lvd_backup lv = { 0 };
    if (domain) {
        r = connect_libvirt(uri, domain, &q, &e);
        if (r == 0 && !memory_only)
            r = lvd_plan(q, disks, &lv, &e);
        if (r == 0 && parent)
            r = libvirt_parent(&lv, parent, kp, &trust, &e);
        if (r == 0)
            r = snap_foreign(q, abs_out, codec, kp, cipher, live, memory_only, NULL, parent,
                             memory_only ? NULL : &lv, &ui, &res, &e);
        lvd_free(&lv);
    } else if (vm_state_find(qmp, &vs, NULL) == 0) {
        if (disks || parent) {
            vm_state_free(&vs);
            return cli_fail("--disks, --parent: the VM on %s was started by 'vmsnap boot', whose snapshots hold all "
                            "its disks and whose --thin parent is its last snapshot", qmp);
        }
        struct vm_snap_request rq = { .output = abs_out, .thin = thin, .live = live, .codec = codec,
                                      .message = message, .encrypt = abs_key, .cipher = cipher };
        r = vm_snap_remote(vs.control, &rq, &interrupted, remote_progress, &ui, &res, &e);
        vm_state_free(&vs);
    } else if (thin && (!parent || memory_only)) {
        return cli_fail("--thin of a QEMU vmsnap did not start needs --parent PREV.vmsnap, its previous snapshot "
                        "with disks");
    } else {
        r = connect_foreign(qmp, &q, &e);
        if (r == 0)
            r = snap_foreign(q, abs_out, codec, kp, cipher, live, memory_only, disks, parent, NULL, &ui, &res, &e);
    }
    if (ui.progress)
        fputs("\r\033[K", stderr);
    if (r < 0) {
        if (interrupted)
            return cli_fail("snap: interrupted by signal %d; %s (the VM keeps running, no archive written)",
                            interrupted, e.msg);
        return cli_fail("snap: %s (no archive written)", e.msg);
    }
    const char *note = json_string_value(json_object_get(res, "memory-note"));
    if (note && note[0] && json_is_true(json_object_get(res, "memory-paged")))
        fprintf(stderr, "vmsnap: warning: memory stored as pages, but %s\n", note);
    else if (note && note[0])
        fprintf(stderr, "vmsnap: warning: memory stored as one opaque stream (no lazy resume, no thin memory): %s\n",
                note);
    const char *dnote = json_string_value(json_object_get(res, "disks-note"));
    if (dnote)
        fprintf(stderr, "vmsnap: note: %s\n", dnote);
    const char *rebase = json_string_value(json_object_get(res, VM_CTL_REBASE_ERROR));
    if (rebase)
        fprintf(stderr, "vmsnap: warning: snapshot written, but %s\n", rebase);
    json_int_t redacted = json_integer_value(json_object_get(res, "redacted"));
    if (redacted > 0)
        fprintf(stderr, "vmsnap: note: %lld secret value(s) on the VM's command line (passwords, secret objects' "
                "data) were stored as '" VM_REDACTED "', not in clear (docs/SECURITY.md)\n", (long long)redacted);
    const char *why = json_string_value(json_object_get(res, "fallback-reason"));
    if (why && strstr(why, "not supported by host kernel"))
        fprintf(stderr, "vmsnap: note: QEMU may not use userfaultfd here (it runs unprivileged and "
                "vm.unprivileged_userfaultfd is 0), so the guest paused for %.0f ms (precopy) instead of a few "
                "milliseconds (background-snapshot); 'sysctl vm.unprivileged_userfaultfd=1' lets unprivileged "
                "processes, QEMU among them, use userfaultfd\n",
                json_number_value(json_object_get(res, "pause")) * 1000);
    if (json) {
        char *s = json_dumps(res, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else {
        char a[32], b[32];
        double pause = json_number_value(json_object_get(res, "pause"));
        double dt = json_number_value(json_object_get(res, "qemu-downtime"));
        printf("snapshot %s: %s (memory %s), %s\n", abs_out,
               vs_fmt_size((uint64_t)json_integer_value(json_object_get(res, "archive-bytes")), a, sizeof a),
               vs_fmt_size((uint64_t)json_integer_value(json_object_get(res, "memory-bytes")), b, sizeof b),
               json_string_value(json_object_get(res, "method")));
        const char *by = json_string_value(json_object_get(res, "resumed-by")) ?: "";
        if (json_is_number(json_object_get(res, "pause")))
            printf("  VM paused %.1f ms, resumed by %s (QEMU downtime %s%.0f ms), total %.2f s\n", pause * 1000, by,
                   dt < 0 ? "n/a " : "", dt < 0 ? 0 : dt * 1000, json_number_value(json_object_get(res, "total")));
        else
            printf("  VM left '%s' as found, total %.2f s\n",
                   json_string_value(json_object_get(res, "state-after")) ?: "?",
                   json_number_value(json_object_get(res, "total")));
        if (why && why[0])
            printf("  background-snapshot not used: %s\n", why);
    }
    json_decref(res);
    return CLI_OK;
}
