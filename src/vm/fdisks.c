/* vm: a captured foreign VM's command line with its disks served by vmsnap. Each captured disk (config "disks":
 * the node its device's drive named, or its -drive id) becomes vmsnap's NBD export of the archive's disk stream
 * plus overlay, while the device and its properties stay as recorded, so the guest sees the same disks:
 *  - a -blockdev node becomes a raw node of the same node-name over NBD; the nodes only its chain used go;
 *  - a -drive (also -hda..-hdd, -cdrom) keeps where it is (id, if, index, bus, unit, media, serial, ...) and its
 *    file, format and driver options become the export.
 * Disks that were not captured (read-only: a cdrom, a read-only image) name host files of the recorded VM: kept
 * only when the user trusts the archive, else a cdrom is emptied (no medium) and any other disk dropped with its
 * device, and the note names them; so is a -L outside the QEMU installation (the local QEMU has its own). */
#include "vm/vm.h"

#include <errno.h>
#include <string.h>

enum kind { K_OTHER, K_BLOCKDEV, K_DRIVE, K_DEVICE, K_MACHINE, K_DATADIR };
enum act { KEEP, DROP, EMPTY, REPLACE };

struct ent {
    size_t at, nargs;        /* args[at, at + nargs): the option and its value */
    enum kind kind;
    enum act act;
    char *node;              /* blockdev: node-name; drive: node-name= if given */
    char *id;                /* drive: its id, explicit or the one QEMU generates; device: id= */
    char *model;             /* device: driver */
    bool cdrom;              /* drive: media=cdrom; device: a cd model */
    bool has_file;           /* drive: names a medium */
    bool pflash;             /* drive: firmware (if=pflash), not a disk */
    int hd_index;            /* -hda..-hdd/-cdrom: the index QEMU gives it, else -1 */
    char pin[32];            /* drive: where QEMU put it when the option leaves it to QEMU ("index=2", "unit=1"):
                              * written out, so that a drive dropped before it does not move it */
    char **refs;             /* node names it may use: blockdev children, a device's drive, -machine pflashN */
    size_t nrefs;
    size_t disk;             /* REPLACE: index into c->disks */
    bool in_chain;           /* blockdev: only used by a replaced or released disk (dropped unless used elsewhere) */
};

struct rw {
    const struct vm_config *c;
    char *const *args;
    size_t n;
    struct ent *ents;
    size_t nents;
    char *note;
};

static void add_ref(struct ent *x, const char *s)
{
    x->refs = vs_xrealloc(x->refs, (x->nrefs + 1) * sizeof *x->refs);
    x->refs[x->nrefs++] = vs_xstrdup(s);
}

/* Every value of a -blockdev field but its own node-name and driver (also of nested nodes): the names it may use. */
static int blockdev_ref(void *opaque, const struct vm_opt_kv *f)
{
    const char *dot = f->key ? strrchr(f->key, '.') : NULL, *last = dot ? dot + 1 : f->key;
    if (last && f->value && strcmp(last, "node-name") && strcmp(last, "driver"))
        add_ref(opaque, f->value);
    return 0;
}

static void parse_blockdev(struct ent *x, const char *v)
{
    x->node = vm_opt_get(v, "node-name", false);
    vm_opt_fields(v, blockdev_ref, x);
}

static bool is_cd_model(const char *m)
{
    return m && (!strcmp(m, "ide-cd") || !strcmp(m, "scsi-cd") || !strcmp(m, "usb-storage-cd"));
}

static void parse_device(struct ent *x, const char *v)
{
    x->model = vm_opt_get(v, "driver", true);
    x->id = vm_opt_get(v, "id", false);
    x->cdrom = is_cd_model(x->model);
    VS_AUTOFREE char *drive = vm_opt_get(v, "drive", false);
    if (drive)
        add_ref(x, drive);
}

/* ---- -drive: where QEMU puts it, and the id it gets without id= (blockdev.c, drive_new) ---------------- */

static const char *const if_names[] = { "none", "ide", "scsi", "floppy", "pflash", "mtd", "sd", "virtio", "xen" };
enum { IF_NONE, IF_IDE, IF_SCSI };

struct slot { int type, bus, unit; };

static int if_type(const char *s)
{
    for (size_t i = 0; i < VS_ARRAY_SIZE(if_names); i++)
        if (!strcmp(s, if_names[i]))
            return (int)i;
    return -1;
}

static long opt_num(const char *v, const char *key, long dflt)
{
    VS_AUTOFREE char *s = vm_qopt_get(v, key, NULL);
    char *end;
    long n = s ? strtol(s, &end, 10) : dflt;
    return s && (!*s || *end || n < 0 || n > 1000000) ? -2 : n;
}

/* pc and q35 machines put -drive without if= on IDE; q35's IDE (AHCI) has one unit per bus. */
static void machine_defaults(const struct rw *w, int *dflt_if, bool *one_unit)
{
    VS_AUTOFREE char *t = vm_args_machine_type(w->args, w->n);
    const char *m = t ? t : w->c->machine ? w->c->machine : "pc";
    *dflt_if = IF_IDE;
    *one_unit = !strcmp(m, "q35") || !strncmp(m, "pc-q35", 6);
}

static int parse_drives(struct rw *w, vs_err *e)
{
    int dflt_if;
    bool one_unit;
    machine_defaults(w, &dflt_if, &one_unit);
    struct slot *used = vs_xcalloc(w->nents + 1, sizeof *used);
    size_t nused = 0;
    int r = 0;
    for (size_t k = 0; k < w->nents && r == 0; k++) {
        struct ent *x = &w->ents[k];
        if (x->kind != K_DRIVE)
            continue;
        const char *v = x->hd_index >= 0 ? "" : w->args[x->at + 1];
        VS_AUTOFREE char *ifs = vm_qopt_get(v, "if", NULL), *media = vm_qopt_get(v, "media", NULL);
        int type = ifs ? if_type(ifs) : dflt_if;
        if (type < 0) {
            r = vs_err_set(e, EINVAL, "recorded '-drive %.80s': unknown interface", v);
            break;
        }
        x->pflash = type == 4;
        x->cdrom = x->hd_index >= 0 ? !strcmp(vm_qopt_name(w->args[x->at]), "cdrom")
                                    : media && !strcmp(media, "cdrom");
        VS_AUTOFREE char *file = vm_qopt_get(v, "file", NULL);
        x->has_file = x->hd_index >= 0 || file;
        x->node = vm_qopt_get(v, "node-name", NULL);
        int max = type == IF_IDE ? (one_unit && type == dflt_if ? 1 : 2) : type == IF_SCSI ? 7 : 0;
        long bus = opt_num(v, "bus", 0), unit = opt_num(v, "unit", -1),
             index = x->hd_index >= 0 ? x->hd_index : opt_num(v, "index", -1);
        if (bus == -2 || unit == -2 || index == -2) {
            r = vs_err_set(e, EINVAL, "recorded '-drive %.80s': bus, unit and index must be numbers", v);
            break;
        }
        if (index >= 0) {
            bus = max ? index / max : 0;
            unit = max ? index % max : index;
        }
        if (unit < 0) {
            unit = 0;
            for (size_t i = 0; i < nused; i++)
                if (used[i].type == type && used[i].bus == bus && used[i].unit == unit) {
                    if (++unit >= max && max) {
                        unit -= max;
                        bus++;
                    }
                    i = (size_t)-1;   /* again from the start */
                }
        }
        used[nused++] = (struct slot){ type, (int)bus, (int)unit };
        if (index < 0 && type != IF_NONE && x->hd_index < 0) {
            VS_AUTOFREE char *given = vm_qopt_get(v, "unit", NULL), *gbus = vm_qopt_get(v, "bus", NULL);
            if (!given && gbus)
                snprintf(x->pin, sizeof x->pin, "unit=%ld", unit);
            else if (!given)
                snprintf(x->pin, sizeof x->pin, "index=%ld", max ? bus * max + unit : unit);
        }
        x->id = vm_qopt_get(v, "id", NULL);
        if (!x->id) {
            const char *ms = type == IF_IDE || type == IF_SCSI ? (x->cdrom ? "-cd" : "-hd") : "";
            x->id = max ? vs_xasprintf("%s%ld%s%ld", if_names[type], bus, ms, unit)
                        : vs_xasprintf("%s%s%ld", if_names[type], ms, unit);
        }
    }
    free(used);
    return r;
}

/* ---- which options go, which change ------------------------------------------------------------------- */

static void ents_free(struct rw *w)
{
    for (size_t k = 0; k < w->nents; k++) {
        struct ent *x = &w->ents[k];
        free(x->node);
        free(x->id);
        free(x->model);
        for (size_t i = 0; i < x->nrefs; i++)
            free(x->refs[i]);
        free(x->refs);
    }
    free(w->ents);
    free(w->note);
}

static int hd_index(const char *name)
{
    static const char *const hd[] = { "hda", "hdb", "cdrom", "hdd" };   /* -cdrom is index 2, as -hdc */
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, hd[i]) || (i == 2 && !strcmp(name, "hdc")))
            return i;
    return -1;
}

static void parse(struct rw *w)
{
    w->ents = vs_xcalloc(w->n + 1, sizeof *w->ents);
    for (size_t i = 0; i < w->n; i++) {
        struct ent *x = &w->ents[w->nents++];
        const char *name = vm_qopt_name(w->args[i]);
        *x = (struct ent){ .at = i, .nargs = name && vm_qopt_takes_arg(name) && i + 1 < w->n ? 2 : 1,
                           .hd_index = -1 };
        if (x->nargs == 1)
            continue;
        const char *v = w->args[i + 1];
        i++;
        if (!strcmp(name, "blockdev")) {
            x->kind = K_BLOCKDEV;
            parse_blockdev(x, v);
        } else if (!strcmp(name, "drive")) {
            x->kind = K_DRIVE;
        } else if ((x->hd_index = hd_index(name)) >= 0) {
            x->kind = K_DRIVE;
        } else if (!strcmp(name, "device")) {
            x->kind = K_DEVICE;
            parse_device(x, v);
        } else if (!strcmp(name, "L")) {
            x->kind = K_DATADIR;
        } else if (!strcmp(name, "machine") || !strcmp(name, "M")) {
            x->kind = K_MACHINE;
            for (int p = 0; p < 2; p++) {
                VS_AUTOFREE char *ref = vm_qopt_get(v, p ? "pflash1" : "pflash0", NULL);
                if (ref)
                    add_ref(x, ref);
            }
        }
    }
}

static struct ent *find(struct rw *w, enum kind kind, const char *key, bool by_id)
{
    for (size_t k = 0; key && k < w->nents; k++) {
        struct ent *x = &w->ents[k];
        const char *s = by_id ? x->id : x->node;
        if (x->kind == kind && s && !strcmp(s, key) && !(kind == K_DRIVE && x->pflash))
            return x;
    }
    return NULL;
}

static void add_note(struct rw *w, const char *what, const char *done)
{
    char *prev = w->note;
    w->note = vs_xasprintf("%s%s'%s' %s", prev ? prev : "", prev ? ", " : "", what, done);
    free(prev);
}

/* The nodes under x (itself too when self) join the chain to drop. */
static void mark_chain(struct rw *w, struct ent *x, bool self)
{
    if (self) {
        if (x->in_chain)
            return;
        x->in_chain = true;
    }
    for (size_t i = 0; i < x->nrefs; i++) {
        struct ent *c = find(w, K_BLOCKDEV, x->refs[i], false);
        if (c && c != x && c->act != REPLACE)
            mark_chain(w, c, true);
    }
}

/* A node of a chain that a kept option uses stays, and so does what it uses. */
static void unmark_used(struct rw *w, struct ent *x)
{
    for (size_t i = 0; i < x->nrefs; i++) {
        struct ent *c = find(w, K_BLOCKDEV, x->refs[i], false);
        if (c && c != x && c->in_chain) {
            c->in_chain = false;
            unmark_used(w, c);
        }
    }
}

static int plan(struct rw *w, bool keep_uncaptured, vs_err *e)
{
    const struct vm_config *c = w->c;
    for (size_t i = 0; i < c->n_disks; i++) {
        const struct vm_disk *d = &c->disks[i];
        const char *name = d->name ? d->name : d->node;
        struct ent *x = d->drive ? find(w, K_DRIVE, d->drive, true) : find(w, K_BLOCKDEV, d->node, false);
        if (!x && !d->drive)
            x = find(w, K_DRIVE, d->node, false);   /* a -drive given a node-name */
        if (!x)
            return vs_err_set(e, EINVAL, "captured disk '%.64s': the recorded command line has no %s '%.64s'",
                              name, d->drive ? "-drive with id" : "-blockdev with node-name",
                              d->drive ? d->drive : d->node);
        if (x->act == REPLACE)
            return vs_err_set(e, EINVAL, "captured disks '%.64s' and '%.64s' are both '%.64s' of the recorded "
                              "command line", c->disks[x->disk].name ? c->disks[x->disk].name : "?", name,
                              d->drive ? d->drive : d->node);
        if (x->kind == K_BLOCKDEV && !vm_qemu_id_ok(x->node))
            return vs_err_set(e, EINVAL, "captured disk '%.64s': node name '%.64s' is not a QEMU id", name, x->node);
        x->act = REPLACE;
        x->disk = i;
        if (x->kind == K_BLOCKDEV)
            mark_chain(w, x, false);
    }
    /* What was not captured: -drive media, and -blockdev chains that devices use. */
    for (size_t k = 0; k < w->nents; k++) {
        struct ent *x = &w->ents[k];
        if (keep_uncaptured || x->act == REPLACE)
            continue;
        /* -L names the recorded QEMU's data directories: like its binary, a local matter (a launcher adds its
         * own). Outside the QEMU installation it is a host path of the recorded VM. */
        const char *v = x->nargs == 2 ? w->args[x->at + 1] : "";
        if (x->kind == K_DATADIR && (!strchr(v, '/') || !vm_xfile_is_installed(v)))
            x->act = DROP;
        if (x->kind == K_DRIVE && x->has_file && !x->pflash) {
            bool cd = x->cdrom;
            for (size_t j = 0; j < w->nents; j++)   /* if=none, given to a device */
                if (w->ents[j].kind == K_DEVICE && w->ents[j].nrefs && !strcmp(w->ents[j].refs[0], x->id))
                    cd |= w->ents[j].cdrom;
            x->act = cd ? EMPTY : DROP;
            add_note(w, x->id, cd ? "emptied (no medium)" : "dropped");
            for (size_t j = 0; j < w->nents && !cd; j++)
                if (w->ents[j].kind == K_DEVICE && w->ents[j].nrefs && !strcmp(w->ents[j].refs[0], x->id))
                    w->ents[j].act = DROP;
        } else if (x->kind == K_DEVICE && x->nrefs) {
            struct ent *n = find(w, K_BLOCKDEV, x->refs[0], false);
            if (!n || n->act == REPLACE)
                continue;
            x->act = x->cdrom ? EMPTY : DROP;
            add_note(w, x->id ? x->id : x->refs[0], x->cdrom ? "emptied (no medium)" : "dropped");
            mark_chain(w, n, true);
        }
    }
    for (size_t k = 0; k < w->nents; k++) {
        struct ent *x = &w->ents[k];
        bool uses = x->act == KEEP && !x->in_chain && x->kind != K_OTHER && x->kind != K_DRIVE;
        if (uses)
            unmark_used(w, x);
    }
    for (size_t k = 0; k < w->nents; k++)
        if (w->ents[k].in_chain)
            w->ents[k].act = DROP;
    return 0;
}

/* ---- the new options ----------------------------------------------------------------------------------- */

/* -drive fields that say where the disk is and what the guest sees; the rest (file, format, driver, cache, the
 * image's own options) described the recorded medium. */
static const char drive_keep[] = " id if index bus unit media serial werror rerror cyls heads secs trans readonly "
                                 "addr discard detect-zeroes node-name ";

static char *nbd_fields(const char *sock)
{
    VS_AUTOFREE char *s = vm_qemu_escape(sock);
    return vs_xasprintf("driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=%s", s);
}

static void emit_drive(struct rw *w, const struct ent *x, const char *sock, struct vm_argv *out)
{
    VS_AUTOFREE char *kept = x->hd_index >= 0 ? vs_xasprintf("index=%d,media=%s", x->hd_index,
                                                             x->cdrom ? "cdrom" : "disk")
                                              : vm_qopt_filter(w->args[x->at + 1], drive_keep, true);
    VS_AUTOFREE char *nbd = sock ? nbd_fields(sock) : NULL;
    vm_argv_add(out, "-drive");
    vm_argv_addf(out, "%s%s%s%s%s", kept, kept[0] && x->pin[0] ? "," : "", x->pin,
                 (kept[0] || x->pin[0]) && nbd ? "," : "", nbd ? nbd : "");
}

static void emit_empty_device(struct rw *w, const struct ent *x, struct vm_argv *out)
{
    const char *v = w->args[x->at + 1];
    VS_AUTOFREE char *s = vm_opt_set(v, "drive", NULL);
    vm_argv_add(out, w->args[x->at]);
    vm_argv_add(out, s ? s : v);
}

int vm_foreign_disks(const struct vm_config *c, const struct vm_fdisk_opts *o, struct vm_argv *args,
                     size_t *console_at, char **note, vs_err *e)
{
    struct rw w = { .c = c, .args = args->v, .n = args->n };
    if (note)
        *note = NULL;
    parse(&w);
    int r = parse_drives(&w, e);
    if (r == 0)
        r = plan(&w, o->keep_uncaptured, e);
    if (r < 0) {
        ents_free(&w);
        return r;
    }
    struct vm_argv out;
    vm_argv_init(&out);
    size_t con = SIZE_MAX;
    for (size_t k = 0; k < w.nents; k++) {
        const struct ent *x = &w.ents[k];
        if (x->at == *console_at)
            con = out.n;
        const char *sock = x->act == REPLACE && o->sockets ? o->sockets[x->disk] : NULL;
        if (x->act == DROP)
            continue;
        if (x->act == KEEP) {
            for (size_t i = 0; i < x->nargs; i++)
                vm_argv_add(&out, w.args[x->at + i]);
        } else if (x->kind == K_DRIVE) {
            emit_drive(&w, x, sock, &out);
        } else if (x->kind == K_DEVICE) {
            emit_empty_device(&w, x, &out);
        } else if (x->kind == K_BLOCKDEV && sock) {   /* the view the allow-list checks has none: vmsnap's own */
            VS_AUTOFREE char *nbd = nbd_fields(sock);
            vm_argv_add(&out, "-blockdev");
            vm_argv_addf(&out, "node-name=%s,%s", x->node, nbd);
        }
    }
    if (*console_at == w.n)
        con = out.n;
    if (*console_at != SIZE_MAX)
        *console_at = con;
    if (note)
        *note = VS_STEAL(w.note);
    ents_free(&w);
    vm_argv_free(args);
    *args = out;
    return 0;
}
