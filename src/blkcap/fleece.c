/* blkcap: point-in-time views of a running QEMU's disks through copy-before-write fleecing, read over QEMU's own
 * NBD server. Each step records what it added, so end() removes exactly that, in reverse order, after a failure at
 * any step, a cancel, or QEMU refusing something. Measured here on QEMU 7.2 and 10.0: qom-set of the device's
 * "drive" moves virtio-blk, scsi-hd and ide-hd devices (with or without an iothread) onto another node and back;
 * qom-set onto the node the drive already has aborts QEMU 7.2 (an assertion in block.c), so it is never sent. */
#include "blkcap/blkcap.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CBW_TIMEOUT_S 10      /* a guest write waits at most this long for its copy; then the view breaks */
#define SLOW_TARGET_NS 3000000000LL   /* a test's target, slower than its filter's 1 s timeout */
#define NAME_LEN 64           /* our names stay below QEMU's 32 bytes; the room quiets format-truncation */
#define SECRET_LEN (NAME_LEN + 40)
#define WAIT_STEP_NS 5000000L

struct fdisk {
    struct bc_disk disk;      /* borrowed strings of the caller's bc_disks */
    char tf[NAME_LEN], tgt[NAME_LEN], cbw[NAME_LEN], snap[NAME_LEN], exp[NAME_LEN];
    char exp_name[SECRET_LEN];   /* the export's NBD name: exp and a random part */
    int64_t fdset;            /* -1: none */
    bool have_tf, have_tgt, have_cbw, inserted, have_snap, have_export;
    bool has_prev;            /* carries a usable bitmap `prev` */
};

struct bc_fleece {
    struct qmp *q;
    char *dir, *sock;
    char tag[9];
    char fdname[NAME_LEN];
    bool server;              /* our NBD server runs */
    bool theirs;              /* the exports go on the NBD server the VM ran already (sock: its address) */
    bool ended;
    char *next, *prev;        /* dirty bitmaps (bc_fleece_bitmaps), NULL: none */
    bool use_prev, added_next, committed;
    uint64_t read_bytes;      /* data read from the views, all disks */
    double insert_s;
    int cbw_timeout;          /* seconds */
    size_t n;
    struct fdisk *d;
};

static void sleep_step(void)
{
    nanosleep(&(struct timespec){ 0, WAIT_STEP_NS }, NULL);
}

/* An export's NBD name: its id and 122 random bits. Anyone who can connect to the server can list it, so on a
 * server the VM's manager runs it says "mine" rather than hides; the random part makes it vmsnap's own, and no
 * other peer can answer as the server with it (bc_nbd_find). */
static void secret_name(char out[SECRET_LEN], const char *id)
{
    uint8_t u[16];
    char us[37];
    vs_uuid_generate(u);
    vs_uuid_format(u, us);
    snprintf(out, SECRET_LEN, "%s-%s", id, us);
}

static int run(struct bc_fleece *f, const char *cmd, json_t *args, json_t **ret, vs_err *e)
{
    int r = qmp_execute(f->q, cmd, args, ret, e);
    json_decref(args);
    return r;
}

/* The member of a query's array (query-jobs, query-block-exports) with "id" id: *found (new reference) or NULL. */
static int find_by_id(struct bc_fleece *f, const char *query, const char *id, json_t **found, vs_err *e)
{
    json_t *all = NULL, *x;
    int r = qmp_execute(f->q, query, NULL, &all, e);
    if (r < 0)
        return r;
    *found = NULL;
    size_t i;
    json_array_foreach(all, i, x)
        if (!*found && !strcmp(json_string_value(json_object_get(x, "id")) ?: "", id))
            *found = json_incref(x);
    json_decref(all);
    return 0;
}

/* Polls the member of query's array with "id" id until over(member, or NULL when gone) says so: *last (new
 * reference or NULL) is that member. -ETIMEDOUT, with no message, once QEMU's timeout has passed. */
static int poll_member(struct bc_fleece *f, const char *query, const char *id, bool (*over)(json_t *x), json_t **last,
                       vs_err *e)
{
    double deadline = vs_now_s() + qmp_timeout(f->q);
    for (;;) {
        int r = find_by_id(f, query, id, last, e);
        if (r < 0 || over(*last))
            return r;
        json_decref(*last);
        *last = NULL;
        if (vs_now_s() > deadline)
            return -ETIMEDOUT;
        sleep_step();
    }
}

static bool job_over(json_t *j)
{
    const char *status = json_string_value(json_object_get(j, "status"));
    return !status || !strcmp(status, "concluded");
}

static bool gone(json_t *x)
{
    return !x;
}

/* blockdev-create is a job: wait until it concludes, then dismiss it; its error (QEMU's words) is ours. */
static int create_qcow2(struct bc_fleece *f, struct fdisk *k, vs_err *e)
{
    char job[NAME_LEN + 8];
    snprintf(job, sizeof job, "%s-job", k->tgt);
    int r = run(f, "blockdev-create",
                json_pack("{s:s,s:{s:s,s:s,s:I}}", "job-id", job, "options", "driver", "qcow2", "file", k->tf,
                          "size", (json_int_t)k->disk.size), NULL, e);
    json_t *j = NULL;
    if (r == 0 && (r = poll_member(f, "query-jobs", job, job_over, &j, e)) == -ETIMEDOUT) {
        run(f, "job-cancel", json_pack("{s:s}", "id", job), NULL, NULL);
        return vs_err_set(e, ETIMEDOUT, "QEMU did not create the fleecing target of disk '%s' in time", k->disk.name);
    }
    if (r < 0)
        return r;
    const char *err = json_string_value(json_object_get(j, "error"));
    if (!j)
        r = vs_err_set(e, EPROTO, "QEMU lost job %s (creating the fleecing target of disk '%s')", job, k->disk.name);
    else if (err)
        r = vs_err_set(e, EIO, "creating the fleecing target of disk '%s' in %s: %s", k->disk.name, f->dir, err);
    json_decref(j);
    run(f, "job-dismiss", json_pack("{s:s}", "id", job), NULL, NULL);
    return r;
}

/* The target's file: ours (0600, in our private dir), unlinked at once and handed to QEMU as an fd set, so nothing
 * stays behind whatever happens, and QEMU needs no access to the directory. */
static int add_target(struct bc_fleece *f, struct fdisk *k, size_t i, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("%s/fleece%zu.qcow2", f->dir, i);
    VS_AUTOCLOSE int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return vs_err_sys(e, errno, "creating the fleecing target %s", path);
    unlink(path);
    int r = qmp_add_fd(f->q, fd, -1, k->tf, &k->fdset, NULL, e);
    if (r < 0)
        return r;
    VS_AUTOFREE char *fdpath = vs_xasprintf("/dev/fdset/%lld", (long long)k->fdset);
    if ((r = run(f, "blockdev-add", json_pack("{s:s,s:s,s:s}", "driver", "file", "node-name", k->tf, "filename",
                                              fdpath), NULL, e)) < 0)
        return r;
    k->have_tf = true;
    if ((r = create_qcow2(f, k, e)) < 0)
        return r;
    if ((r = run(f, "blockdev-add", json_pack("{s:s,s:s,s:s}", "driver", "qcow2", "node-name", k->tgt, "file",
                                              k->tf), NULL, e)) < 0)
        return r;
    k->have_tgt = true;
    return 0;
}

/* For a test: a target whose writes take longer than the filter's timeout (null-co with a latency), so that a
 * guest write breaks the view. */
static int add_slow_target(struct bc_fleece *f, struct fdisk *k, vs_err *e)
{
    int r = run(f, "blockdev-add", json_pack("{s:s,s:s,s:I,s:I}", "driver", "null-co", "node-name", k->tgt, "size",
                                             (json_int_t)k->disk.size, "latency-ns", (json_int_t)SLOW_TARGET_NS),
                NULL, e);
    k->have_tgt = r == 0;
    return r;
}

static int prepare_disk(struct bc_fleece *f, struct fdisk *k, size_t i, vs_err *e)
{
    int r = f->cbw_timeout == 1 ? add_slow_target(f, k, e) : add_target(f, k, i, e);
    if (r < 0)
        return vs_err_prefix(e, "disk '%s'", k->disk.name);
    r = run(f, "blockdev-add",
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "driver", "copy-before-write", "node-name", k->cbw, "file",
                      k->disk.node, "target", k->tgt, "on-cbw-error", "break-snapshot", "cbw-timeout", f->cbw_timeout),
            NULL, e);
    if (r < 0)
        return vs_err_prefix(e, "disk '%s': adding a copy-before-write filter over node %s", k->disk.name,
                             k->disk.node);
    k->have_cbw = true;
    return 0;
}

/* The export goes away asynchronously once its clients are gone: wait until QEMU no longer lists it. */
static int del_export(struct bc_fleece *f, const char *id, vs_err *e)
{
    int r = run(f, "block-export-del", json_pack("{s:s,s:s}", "id", id, "mode", "hard"), NULL, e);
    json_t *x = NULL;
    if (r == 0 && (r = poll_member(f, "query-block-exports", id, gone, &x, e)) == -ETIMEDOUT)
        return vs_err_set(e, ETIMEDOUT, "QEMU still has export %s after %.0f s", id, qmp_timeout(f->q));
    return r;
}

static int del_node(struct bc_fleece *f, const char *node, vs_err *e)
{
    return run(f, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL, e);
}

/* The VM runs an NBD server already (its manager's): vmsnap's exports go there and the server stays. Where it
 * listens is found now, before the guest's disks are touched, through a probe export of an empty node of ours. */
static int use_their_server(struct bc_fleece *f, vs_err *e)
{
    char node[NAME_LEN], name[SECRET_LEN];
    snprintf(node, sizeof node, "vmsnap-%s-probe", f->tag);
    secret_name(name, node);
    int r = run(f, "blockdev-add", json_pack("{s:s,s:s,s:i,s:b}", "driver", "null-co", "node-name", node, "size", 4096,
                                             "read-zeroes", true), NULL, e);
    if (r < 0)
        return vs_err_prefix(e, "adding a probe node to find QEMU's NBD server");
    r = run(f, "block-export-add", json_pack("{s:s,s:s,s:s,s:s,s:b}", "type", "nbd", "id", node, "node-name", node,
                                             "name", name, "writable", false), NULL, e);
    if (r < 0)
        vs_err_prefix(e, "exporting a probe node on QEMU's NBD server");
    else if ((r = bc_nbd_find(f->q, name, &f->sock, e)) < 0)
        vs_err_prefix(e, "this QEMU runs an NBD server already (its manager's), and vmsnap cannot read through it "
                      "(use --memory-only)");
    vs_err ce = { 0 };   /* the probe goes in any case (deleting an export never added fails harmlessly) */
    int rx = del_export(f, node, &ce);
    int rn = del_node(f, node, rx < 0 ? NULL : &ce);
    if (r == 0 && (rx < 0 || rn < 0)) {
        if (e)
            *e = ce;
        return vs_err_prefix(e, "removing vmsnap's probe export %s", node);
    }
    f->theirs = r == 0;
    return r;
}

/* Our own listening socket, born 0600 in our private dir, handed to QEMU's NBD server (getfd + an fd address). */
static int start_server(struct bc_fleece *f, vs_err *e)
{
    f->sock = vs_xasprintf("%s/nbd.sock", f->dir);
    VS_AUTOCLOSE int fd = -1;
    int r = vs_listen_unix(f->sock, &fd, e);
    if (r < 0)
        return r;
    snprintf(f->fdname, sizeof f->fdname, "vmsnap-%s-nbd", f->tag);
    if ((r = qmp_getfd(f->q, f->fdname, fd, e)) < 0)
        return r;
    r = run(f, "nbd-server-start", json_pack("{s:{s:s,s:{s:s}}}", "addr", "type", "fd", "data", "str", f->fdname),
            NULL, e);
    if (r < 0) {
        bool running = strstr(qmp_error_desc(f->q) ?: "", "already running");
        qmp_closefd(f->q, f->fdname, NULL);
        unlink(f->sock);
        VS_AUTOFREE char *ours = VS_STEAL(f->sock);
        if (running)
            return use_their_server(f, e);
        return vs_err_prefix(e, "starting QEMU's NBD server on %s", ours);
    }
    f->server = true;
    return 0;
}

int bc_fleece_prepare(struct qmp *q, const struct bc_disks *d, const char *dir, struct bc_fleece **out, vs_err *e)
{
    if (!qmp_version_at_least(q, 7, 1)) {
        int maj, min, mic;
        qmp_version(q, &maj, &min, &mic);
        return vs_err_set(e, ENOTSUP, "QEMU %d.%d.%d cannot give a point-in-time view of a running disk that a guest "
                          "write can never fail for (copy-before-write's on-cbw-error and cbw-timeout need QEMU 7.1): "
                          "use --memory-only", maj, min, mic);
    }
    BC_FLEECE_AUTOFREE struct bc_fleece *f = vs_xcalloc(1, sizeof *f);
    f->q = q;
    f->dir = vs_xstrdup(dir);
    f->cbw_timeout = vs_test_fault("fleece-slow-target") ? 1 : CBW_TIMEOUT_S;
    uint8_t u[16];
    char us[37];
    vs_uuid_generate(u);
    vs_uuid_format(u, us);
    snprintf(f->tag, sizeof f->tag, "%.8s", us);
    f->d = vs_xcalloc(d->n + 1, sizeof *f->d);
    /* First, as it changes no disk's path: a server vmsnap cannot read through is refused here. */
    int r = start_server(f, e);
    if (r < 0)
        return r;
    for (size_t i = 0; i < d->n; i++) {
        struct fdisk *k = &f->d[f->n++];
        k->disk = d->d[i];
        k->fdset = -1;
        snprintf(k->tf, sizeof k->tf, "vmsnap-%s-%zu-file", f->tag, i);
        snprintf(k->tgt, sizeof k->tgt, "vmsnap-%s-%zu-target", f->tag, i);
        snprintf(k->cbw, sizeof k->cbw, "vmsnap-%s-%zu-cbw", f->tag, i);
        snprintf(k->snap, sizeof k->snap, "vmsnap-%s-%zu-view", f->tag, i);
        snprintf(k->exp, sizeof k->exp, "vmsnap-%s-%zu", f->tag, i);
        secret_name(k->exp_name, k->exp);
        if ((r = prepare_disk(f, k, i, e)) < 0)
            return r;   /* the free ends it: what this disk added goes too */
    }
    *out = VS_STEAL(f);
    return 0;
}

int bc_fleece_insert(struct bc_fleece *f, vs_err *e)
{
    double t0 = vs_now_s();
    for (size_t i = 0; i < f->n; i++) {
        struct fdisk *k = &f->d[i];
        /* A test makes QEMU refuse the last insertion (after the others went in): the rollback must undo them. */
        const char *to = vs_test_fault("fleece-insert") && i + 1 == f->n ? "vmsnap-no-such-node" : k->cbw;
        int r = run(f, "qom-set", json_pack("{s:s,s:s,s:s}", "path", k->disk.qdev, "property", "drive", "value", to),
                    NULL, e);
        if (r < 0)
            return vs_err_prefix(e, "disk '%s': putting the snapshot filter in front of device %s", k->disk.name,
                                 k->disk.device);
        k->inserted = true;
    }
    if (f->next) {
        /* The VM is stopped: no write falls between the filters going in and these bitmaps starting to record. */
        json_t *acts = json_array();
        for (size_t i = 0; i < f->n; i++)
            json_array_append_new(acts, json_pack("{s:s,s:{s:s,s:s,s:b}}", "type", "block-dirty-bitmap-add", "data",
                                                  "node", f->d[i].disk.node, "name", f->next, "persistent",
                                                  !strcmp(f->d[i].disk.driver, "qcow2")));
        int r = run(f, "transaction", json_pack("{s:o}", "actions", acts), NULL, e);
        if (r < 0)
            return vs_err_prefix(e, "adding dirty bitmap %s to the disks", f->next);
        f->added_next = true;
    }
    f->insert_s = vs_now_s() - t0;
    return 0;
}

/* Calls fn for each dirty bitmap on a captured disk's node (query-named-block-nodes). */
static int each_bitmap(struct bc_fleece *f, void (*fn)(struct bc_fleece *f, struct fdisk *k, json_t *bm, void *arg),
                       void *arg, vs_err *e)
{
    json_t *nodes = NULL, *n, *bm;
    int r = run(f, "query-named-block-nodes", json_pack("{s:b}", "flat", true), &nodes, e);
    if (r < 0)
        return r;
    size_t i, j;
    json_array_foreach(nodes, i, n)
        for (size_t k = 0; k < f->n; k++)
            if (!strcmp(json_string_value(json_object_get(n, "node-name")) ?: "", f->d[k].disk.node))
                json_array_foreach(json_object_get(n, "dirty-bitmaps"), j, bm)
                    fn(f, &f->d[k], bm, arg);
    json_decref(nodes);
    return 0;
}

static void find_prev(struct bc_fleece *f, struct fdisk *k, json_t *bm, void *arg)
{
    (void)arg;
    if (!strcmp(json_string_value(json_object_get(bm, "name")) ?: "", f->prev) &&
        json_is_true(json_object_get(bm, "recording")) && !json_is_true(json_object_get(bm, "inconsistent")) &&
        !json_is_true(json_object_get(bm, "busy")))
        k->has_prev = true;
}

int bc_fleece_bitmaps(struct bc_fleece *f, const char *next, const char *prev, char **missing, vs_err *e)
{
    f->next = vs_xstrdup(next);
    f->prev = prev ? vs_xstrdup(prev) : NULL;
    *missing = NULL;
    if (!prev)
        return 0;
    int r = each_bitmap(f, find_prev, NULL, e);
    if (r < 0)
        return r;
    f->use_prev = true;
    for (size_t i = 0; i < f->n; i++)
        if (!f->d[i].has_prev) {
            char *m = *missing ? vs_xasprintf("%s, %s", *missing, f->d[i].disk.name) : vs_xstrdup(f->d[i].disk.name);
            free(*missing);
            *missing = m;
            f->use_prev = false;
        }
    return f->use_prev;
}

struct stale {
    int first;
    vs_err *e;
};

static void drop_stale(struct bc_fleece *f, struct fdisk *k, json_t *bm, void *arg)
{
    struct stale *s = arg;
    const char *name = json_string_value(json_object_get(bm, "name")) ?: "";
    if (strncmp(name, "vmsnap-", 7) || !strcmp(name, f->next))
        return;
    vs_err err = { 0 };
    int r = run(f, "block-dirty-bitmap-remove", json_pack("{s:s,s:s}", "node", k->disk.node, "name", name), NULL, &err);
    if (r < 0 && s->first == 0) {
        s->first = r;
        if (s->e)
            *s->e = err;
    }
}

int bc_fleece_commit(struct bc_fleece *f, vs_err *e)
{
    if (!f->added_next)
        return 0;
    f->committed = true;
    struct stale s = { 0, e };
    int r = each_bitmap(f, drop_stale, &s, e);
    return r < 0 ? r : s.first;
}

double bc_fleece_insert_s(const struct bc_fleece *f)
{
    return f->insert_s;
}

uint64_t bc_fleece_read_bytes(const struct bc_fleece *f)
{
    return f->read_bytes;
}

static int export_disk(struct bc_fleece *f, struct fdisk *k, vs_err *e)
{
    int r = run(f, "blockdev-add", json_pack("{s:s,s:s,s:s}", "driver", "snapshot-access", "node-name", k->snap,
                                             "file", k->cbw), NULL, e);
    if (r < 0)
        return vs_err_prefix(e, "disk '%s': adding a snapshot-access node", k->disk.name);
    k->have_snap = true;
    json_t *args = json_pack("{s:s,s:s,s:s,s:s,s:b}", "type", "nbd", "id", k->exp, "node-name", k->snap, "name",
                             k->exp_name, "writable", false);
    if (f->use_prev)   /* the bitmap lives on the disk's own node, below the view */
        json_object_set_new(args, "bitmaps", json_pack("[{s:s,s:s}]", "node", k->disk.node, "name", f->prev));
    r = run(f, "block-export-add", args, NULL, e);
    if (r < 0)
        return vs_err_prefix(e, "disk '%s': exporting its snapshot over NBD", k->disk.name);
    k->have_export = true;
    return 0;
}

/* A test holds the copy here until cancelled (SIGTERM arrives while everything is in place), or, with a slow
 * target, for twice the filter's timeout (the guest's writes break the view before it is read). */
static void hold_for_test(const struct bc_fleece *f, const struct bc_copy_opts *o)
{
    int steps = vs_test_fault("fleece-hold") ? 12000 : f->cbw_timeout == 1 ? 400 : 0;
    for (int i = 0; i < steps && !(o->cancelled && o->cancelled(o->opaque)); i++)
        sleep_step();
}

int bc_fleece_copy(struct bc_fleece *f, struct arc_writer *w, const struct bc_copy_opts *copts, vs_err *e)
{
    struct bc_copy_opts oo = *copts, *o = &oo;
    if (f->use_prev)
        oo.bitmap = f->prev;
    int r = 0;
    for (size_t i = 0; r == 0 && i < f->n; i++)
        r = export_disk(f, &f->d[i], e);
    if (r < 0)
        return r;
    hold_for_test(f, o);
    for (size_t i = 0; i < f->n; i++) {
        struct fdisk *k = &f->d[i];
        char stream[32];
        snprintf(stream, sizeof stream, "disk%zu", i);
        struct bc_copy_stats st = { 0 };
        r = bc_nbd_copy(f->sock, k->exp_name, w, stream, o, &st, e);
        f->read_bytes += st.data_bytes;
        if (r < 0) {
            if (r == -ECANCELED)
                return r;
            /* break-snapshot: once a guest write could not be copied, every read of the view fails. */
            return vs_err_prefix(e, "disk '%s': reading its snapshot (if a read was refused, the view broke: QEMU "
                                 "could not copy a guest write into the fleecing target in %s within %d s, or the "
                                 "target failed, e.g. its filesystem is full)", k->disk.name, f->dir, f->cbw_timeout);
        }
    }
    return 0;
}

static void step(int r, int *first, vs_err *e, vs_err *err)
{
    if (r < 0 && *first == 0) {
        *first = r;
        if (e)
            *e = *err;
    }
}

int bc_fleece_end(struct bc_fleece *f, vs_err *e)
{
    if (!f || f->ended)
        return 0;
    f->ended = true;
    int first = 0;
    vs_err err = { 0 };
    for (size_t i = f->n; i-- > 0;) {
        struct fdisk *k = &f->d[i];
        if (k->have_export)
            step(del_export(f, k->exp, &err), &first, e, &err);
        k->have_export = false;
    }
    if (f->server)
        step(run(f, "nbd-server-stop", NULL, NULL, &err), &first, e, &err);
    f->server = false;
    if (f->sock && !f->theirs)
        unlink(f->sock);
    for (size_t i = f->n; i-- > 0;) {
        struct fdisk *k = &f->d[i];
        if (k->have_snap)
            step(del_node(f, k->snap, &err), &first, e, &err);
        if (k->inserted)
            step(run(f, "qom-set", json_pack("{s:s,s:s,s:s}", "path", k->disk.qdev, "property", "drive", "value",
                                             k->disk.node), NULL, &err), &first, e, &err);
        if (k->have_cbw)
            step(del_node(f, k->cbw, &err), &first, e, &err);
        if (k->have_tgt)
            step(del_node(f, k->tgt, &err), &first, e, &err);
        if (k->have_tf)
            step(del_node(f, k->tf, &err), &first, e, &err);
        if (k->fdset >= 0)
            step(run(f, "remove-fd", json_pack("{s:I}", "fdset-id", (json_int_t)k->fdset), NULL, &err), &first, e,
                 &err);
        k->have_snap = k->inserted = k->have_cbw = k->have_tgt = k->have_tf = false;
        k->fdset = -1;
    }
    if (first < 0 && e)
        vs_err_prefix(e, "removing vmsnap's snapshot nodes from the VM");
    return first;
}

void bc_fleece_free(struct bc_fleece *f)
{
    if (!f)
        return;
    bc_fleece_end(f, NULL);
    if (f->added_next && !f->committed)
        for (size_t i = 0; i < f->n; i++)
            run(f, "block-dirty-bitmap-remove", json_pack("{s:s,s:s}", "node", f->d[i].disk.node, "name", f->next),
                NULL, NULL);
    free(f->next);
    free(f->prev);
    free(f->dir);
    free(f->sock);
    free(f->d);
    free(f);
}

void bc_fleece_freep(struct bc_fleece **f)
{
    bc_fleece_free(*f);
}
