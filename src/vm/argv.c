/* vm: QEMU's argv from a config (no shell anywhere), and configs read back from QEMU command lines. */
#include "vm/vm.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

void vm_argv_init(struct vm_argv *a)
{
    a->n = 0;
    a->cap = 16;
    a->v = vs_xcalloc(a->cap, sizeof *a->v);
}

void vm_argv_free(struct vm_argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void vm_argv_add(struct vm_argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap *= 2;
        a->v = vs_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = vs_xstrdup(s);
    a->v[a->n] = NULL;
}

void vm_argv_addf(struct vm_argv *a, const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        VS_BUG("out of memory");
    va_end(ap);
    vm_argv_add(a, s);
    free(s);
}

/* ---- options of QEMU's command line ------------------------------------------------------------------------- */

static int role_of_opt(const char *name)
{
    for (int r = 0; r < VM_FILE__COUNT; r++)
        if (!strcmp(name, vm_file_role_name(r)))
            return r;
    return -1;
}

static char *abs_path(const char *p, const char *cwd)
{
    if (p[0] == '/' || !cwd)
        return vs_xstrdup(p);
    return vs_xasprintf("%s/%s", cwd, p);
}

/* Relative paths in extra args from `first` on become absolute (QEMU's working directory is not the user's once
 * detached or resumed); then c->xfiles lists what a thick archive must store. A bare -bios name that is not in
 * cwd is one QEMU finds in its data directories: left alone. */
static void absolute_xfiles(struct vm_config *c, size_t first, const char *cwd)
{
    struct vm_xfile_ref *refs = NULL;
    size_t nrefs = 0;
    vm_xfile_refs(c->extra, c->n_extra, &refs, &nrefs);
    /* Back to front: a rewrite shifts later spans of the same argument. */
    for (size_t k = nrefs; cwd && k-- > 0;) {
        struct vm_xfile_ref *r = &refs[k];
        if (r->arg < first || r->path[0] == '/' || (!strchr(r->path, '/') && access(r->path, R_OK) < 0))
            continue;
        VS_AUTOFREE char *abs = abs_path(r->path, cwd);
        char *arg = vm_xfile_ref_replace(c->extra[r->arg], r, abs);
        free(c->extra[r->arg]);
        c->extra[r->arg] = arg;
    }
    vm_xfile_refs_free(refs, nrefs);
    vm_xfile_refs(c->extra, c->n_extra, &refs, &nrefs);
    vm_config_clear_xfiles(c);
    for (size_t k = 0; k < nrefs; k++) {
        const struct vm_xfile_ref *r = &refs[k];
        if (r->path[0] != '/' || (!r->writable && vm_xfile_is_installed(r->path)))
            continue;
        for (size_t j = 0; j < c->n_xfiles; j++)
            if (!strcmp(c->xfiles[j].name, r->name)) {   /* QEMU takes the last one */
                free(c->xfiles[j].name);
                free(c->xfiles[j].path);
                c->xfiles[j] = c->xfiles[--c->n_xfiles];
                break;
            }
        vm_config_add_xfile(c, r->name, r->path, r->writable);
    }
    vm_xfile_refs_free(refs, nrefs);
}

int vm_config_add_extra(struct vm_config *c, char *const *args, size_t n, vs_err *e)
{
    char cwdbuf[4096];
    const char *cwd = getcwd(cwdbuf, sizeof cwdbuf) ? cwdbuf : NULL;
    c->extra = vs_xrealloc(c->extra, (c->n_extra + n + 1) * sizeof *c->extra);
    size_t first = c->n_extra;
    for (size_t i = 0; i < n; i++) {
        const char *name = vm_qopt_name(args[i]);
        int role = name ? role_of_opt(name) : -1;
        bool is_append = name && !strcmp(name, "append");
        if (role >= 0 || is_append) {
            if (i + 1 >= n)
                return vs_err_set(e, EINVAL, "extra QEMU argument '%s' needs a value", args[i]);
            if (is_append) {
                free(c->append);
                c->append = vs_xstrdup(args[++i]);
            } else {
                free(c->files[role]);
                c->files[role] = abs_path(args[++i], cwd);
            }
            continue;
        }
        c->extra[c->n_extra++] = vs_xstrdup(args[i]);
    }
    c->extra[c->n_extra] = NULL;
    absolute_xfiles(c, first, cwd);
    return 0;
}

/* "-m": a plain number is MiB. */
static int parse_mem(const char *v, uint64_t *out)
{
    VS_AUTOFREE char *s = vm_qopt_get_implied(v, "size");
    if (!s)
        return -EINVAL;
    size_t n = strlen(s);
    if (n && strspn(s, "0123456789") == n) {
        *out = strtoull(s, NULL, 10) << 20;
        return 0;
    }
    return vs_parse_size(s, out);
}

char *vm_args_machine_type(char *const *args, size_t n)
{
    char *t = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        const char *name = vm_qopt_name(args[i]);
        if (!name || !vm_qopt_takes_arg(name))
            continue;
        char *v = !strcmp(name, "machine") || !strcmp(name, "M") ? vm_qopt_get_implied(args[i + 1], "type") : NULL;
        if (v) {
            free(t);
            t = v;
        }
        i++;
    }
    return t;
}

int vm_config_from_cmdline(struct vm_config *c, char *const *argv, size_t argc, const char *cwd, vs_err *e)
{
    if (argc == 0)
        return vs_err_set(e, EINVAL, "empty QEMU command line");
    c->foreign = true;
    c->cmdline = vs_xcalloc(argc + 1, sizeof *c->cmdline);
    for (size_t i = 0; i < argc; i++)
        c->cmdline[i] = vs_xstrdup(argv[i]);
    c->n_cmdline = argc;
    c->redacted = vm_cmdline_redact(c->cmdline, argc);
    free(c->cwd);
    c->cwd = cwd ? vs_xstrdup(cwd) : NULL;
    free(c->qemu);
    c->qemu = vs_xstrdup(argv[0]);
    for (size_t i = 1; i < argc; i++) {
        const char *name = vm_qopt_name(argv[i]);
        if (!name)
            continue;
        if (!vm_qopt_takes_arg(name)) {
            if (!strcmp(name, "enable-kvm")) {
                free(c->accel);
                c->accel = vs_xstrdup("kvm");
            }
            continue;
        }
        if (i + 1 >= argc)
            break;
        const char *v = argv[++i];
        int role = role_of_opt(name);
        if (role >= 0) {
            free(c->files[role]);
            c->files[role] = abs_path(v, cwd);
        } else if (!strcmp(name, "append")) {
            free(c->append);
            c->append = vs_xstrdup(v);
        } else if (!strcmp(name, "m")) {
            if (parse_mem(v, &c->ram_bytes) < 0)
                return vs_err_set(e, EINVAL, "QEMU command line: cannot read memory size '-m %s'", v);
        } else if (!strcmp(name, "smp")) {
            VS_AUTOFREE char *n = vm_qopt_get_implied(v, "cpus");
            c->cpus = n ? (unsigned)strtoul(n, NULL, 10) : 0;
        } else if (!strcmp(name, "machine") || !strcmp(name, "M")) {
            char *t = vm_qopt_get_implied(v, "type"), *a = vm_qopt_get(v, "accel", NULL);
            char *mb = vm_qopt_get(v, "memory-backend", NULL);
            if (t) { free(c->machine); c->machine = t; }
            if (a) { free(c->accel); c->accel = a; }
            if (mb) { free(c->mem_backend); c->mem_backend = mb; }
        } else if (!strcmp(name, "accel")) {
            char *a = vm_qopt_get_implied(v, "accel");
            if (a) { free(c->accel); c->accel = a; }
        }
    }
    return 0;
}

/* ---- building argv ------------------------------------------------------------------------------------------ */

static void add_chardev_socket(struct vm_argv *a, const char *id, const char *path)
{
    VS_AUTOFREE char *p = vm_qemu_escape(path);
    vm_argv_add(a, "-chardev");
    vm_argv_addf(a, "socket,id=%s,path=%s,server=on,wait=off", id, p);
}

static void add_monitors(struct vm_argv *a, const struct vm_launch *l)
{
    add_chardev_socket(a, "vmsnap-qmp", l->private_qmp);
    vm_argv_add(a, "-mon");
    vm_argv_add(a, "chardev=vmsnap-qmp,mode=control");
    if (l->user_qmp) {
        add_chardev_socket(a, "vmsnap-user-qmp", l->user_qmp);
        vm_argv_add(a, "-mon");
        vm_argv_add(a, "chardev=vmsnap-user-qmp,mode=control");
    }
}

static void add_console_chardev_id(struct vm_argv *a, const struct vm_launch *l, const char *id)
{
    if (l->console && !strcmp(l->console, "stdio")) {
        vm_argv_add(a, "-chardev");
        vm_argv_addf(a, "stdio,id=%s", id);
    } else if (l->console) {
        add_chardev_socket(a, id, l->console);
    } else {
        vm_argv_add(a, "-chardev");
        vm_argv_addf(a, "null,id=%s", id);
    }
}

static void add_console_chardev(struct vm_argv *a, const struct vm_launch *l)
{
    add_console_chardev_id(a, l, "vmsnap-con");
}

/* The extra args, with the files stored in the archive replaced by their copies (l->xfiles). */
static void add_extra(struct vm_argv *a, const struct vm_config *c, const struct vm_launch *l)
{
    struct vm_xfile_ref *refs = NULL;
    size_t nrefs = 0;
    if (l->n_xfiles)
        vm_xfile_refs(c->extra, c->n_extra, &refs, &nrefs);
    for (size_t i = 0; i < c->n_extra; i++) {
        VS_AUTOFREE char *arg = vs_xstrdup(c->extra[i]);
        for (size_t k = nrefs; k-- > 0;) {   /* back to front: spans of one argument stay valid */
            if (refs[k].arg != i)
                continue;
            for (size_t j = 0; j < l->n_xfiles; j++)
                if (!strcmp(l->xfiles[j].name, refs[k].name)) {
                    char *n = vm_xfile_ref_replace(arg, &refs[k], l->xfiles[j].path);
                    free(arg);
                    arg = n;
                    break;
                }
        }
        vm_argv_add(a, arg);
    }
    vm_xfile_refs_free(refs, nrefs);
}

/* A resume loads state saved from exactly c->machine: named last, it wins over a -machine/-M of the extra args
 * or of a foreign command line (QEMU merges -machine options; a later type replaces an earlier one). */
static void add_machine_pin(struct vm_argv *a, const struct vm_config *c, const struct vm_launch *l)
{
    if (!l->incoming || !c->machine)
        return;
    VS_AUTOFREE char *t = vm_qemu_escape(c->machine);
    vm_argv_add(a, "-machine");
    vm_argv_addf(a, "type=%s", t);
}

/* The user's own -device vmgenid in EXTRA-QEMU-ARGS wins (QEMU allows one). */
static bool extra_has_vmgenid(const struct vm_config *c)
{
    for (size_t i = 0; i + 1 < c->n_extra; i++)
        if (!strcmp(c->extra[i], "-device") && !strncmp(c->extra[i + 1], "vmgenid", 7))
            return true;
    return false;
}

const char *vm_qemu_binary(const char *flag)
{
    const char *env = getenv("VMSNAP_QEMU");
    return flag && *flag ? flag : env && *env ? env : "qemu-system-x86_64";
}

static int build_native(const struct vm_config *c, const struct vm_launch *l, struct vm_argv *a, vs_err *e)
{
    vm_argv_add(a, vm_qemu_binary(l->qemu));
    vm_argv_add(a, "-nodefaults");
    vm_argv_add(a, "-no-user-config");
    vm_argv_add(a, "-display");
    vm_argv_add(a, "none");
    /* Strings from a config are escaped wherever they go into an option value: a value can never add a key. */
    VS_AUTOFREE char *backend = c->mem_backend ? vm_qemu_escape(c->mem_backend) : NULL;
    VS_AUTOFREE char *machine = c->machine ? vm_qemu_escape(c->machine) : NULL;
    if (backend && c->ram_bytes && l->mem_path) {
        /* Lazy resume: a private (copy-on-write) mapping of the page file; the guest's writes never reach it. */
        VS_AUTOFREE char *mp = vm_qemu_escape(l->mem_path);
        vm_argv_add(a, "-object");
        vm_argv_addf(a, "memory-backend-file,id=%s,size=%llu,mem-path=%s,share=off", backend,
                     (unsigned long long)c->ram_bytes, mp);
    } else if (backend && c->ram_bytes) {
        vm_argv_add(a, "-object");
        vm_argv_addf(a, "memory-backend-ram,id=%s,size=%llu", backend, (unsigned long long)c->ram_bytes);
    }
    if (machine || (backend && c->ram_bytes)) {
        vm_argv_add(a, "-machine");
        if (machine && backend && c->ram_bytes)
            vm_argv_addf(a, "%s,memory-backend=%s", machine, backend);
        else if (backend && c->ram_bytes)
            vm_argv_addf(a, "memory-backend=%s", backend);
        else
            vm_argv_add(a, machine);
    }
    if (l->accel) {
        vm_argv_add(a, "-accel");
        vm_argv_add(a, l->accel);
    }
    if (c->ram_bytes) {
        vm_argv_add(a, "-m");
        vm_argv_addf(a, "%llub", (unsigned long long)c->ram_bytes);
    }
    if (c->cpus) {
        vm_argv_add(a, "-smp");
        vm_argv_addf(a, "%u", c->cpus);
    }
    for (int r = 0; r < VM_FILE__COUNT; r++) {
        const char *f = l->files[r] ? l->files[r] : c->files[r];
        if (f) {
            vm_argv_addf(a, "-%s", vm_file_role_name(r));
            vm_argv_add(a, f);
        }
    }
    if (c->append) {
        vm_argv_add(a, "-append");
        vm_argv_add(a, c->append);
    }
    for (size_t i = 0; i < c->n_disks; i++) {
        if (!l->disk_sockets || !l->disk_sockets[i])
            return vs_err_set(e, EINVAL, "no NBD socket for disk %zu", i);
        VS_AUTOFREE char *sock = vm_qemu_escape(l->disk_sockets[i]);
        VS_AUTOFREE char *iface = vm_qemu_escape(c->disks[i].iface ? c->disks[i].iface : "virtio");
        vm_argv_add(a, "-drive");
        vm_argv_addf(a, "file=nbd+unix:///?socket=%s,format=raw,if=%s,id=vmsnap-disk%zu,cache=writeback", sock,
                     iface, i);
    }
    add_console_chardev(a, l);
    vm_argv_add(a, "-serial");
    vm_argv_add(a, "chardev:vmsnap-con");
    add_monitors(a, l);
    if (c->vmgenid && !extra_has_vmgenid(c)) {
        /* guid=auto: a new generation ID at every start. It is not part of the migration stream (QEMU writes the
         * destination's value into guest memory after loading), so each resume of a snapshot gets its own. */
        vm_argv_add(a, "-device");
        vm_argv_add(a, "vmgenid,id=vmsnap-genid,guid=auto");
    }
    add_extra(a, c, l);
    add_machine_pin(a, c, l);
    if (l->incoming) {
        vm_argv_add(a, "-incoming");
        vm_argv_add(a, "defer");
    }
    return 0;
}

/* id=... of a -chardev value. */
static bool chardev_has_id(const char *val, const char *id)
{
    VS_AUTOFREE char *v = vm_qopt_get(val, "id", NULL);
    return v && !strcmp(v, id);
}

int vm_foreign_replayed(const struct vm_config *c, bool accel_override, struct vm_argv *out, size_t *console_at,
                        vs_err *e)
{
    char *const *cl = c->cmdline;
    size_t n = c->n_cmdline;
    /* Chardevs that only fed the dropped monitors or the replaced first serial port go too: a server socket
     * chardev left behind would wait for a client at start. */
    char *drop_ids[16];
    size_t n_drop = 0;
    bool serial_seen = false, nodefaults = false;
    for (size_t i = 1; i < n; i++) {   /* a flag may come last */
        const char *name = vm_qopt_name(cl[i]);
        if (!name)
            continue;
        if (!vm_qopt_takes_arg(name)) {
            nodefaults |= !strcmp(name, "nodefaults");
            continue;
        }
        if (i + 1 >= n)
            break;
        const char *v = cl[++i];
        char *id = NULL;
        if (!strcmp(name, "mon"))
            id = vm_qopt_get(v, "chardev", NULL);
        else if (!strcmp(name, "serial") && !serial_seen) {
            serial_seen = true;
            if (!strncmp(v, "chardev:", 8))
                id = vs_xstrdup(v + 8);
        }
        if (id && n_drop < VS_ARRAY_SIZE(drop_ids))
            drop_ids[n_drop++] = id;
        else
            free(id);
    }
    vm_argv_init(out);
    *console_at = SIZE_MAX;
    int r = 0;
    for (size_t i = 1; i < n; i++) {   /* the recorded cl[0] is never run */
        const char *name = vm_qopt_name(cl[i]);
        if (!name) {
            vm_argv_add(out, cl[i]);
            continue;
        }
        if (!vm_qopt_takes_arg(name)) {
            if (!strcmp(name, "daemonize") || !strcmp(name, "S"))
                continue;
            if (!strcmp(name, "enable-kvm") && accel_override)
                continue;
            if (!strcmp(name, "nographic")) {
                /* -nographic puts serial and monitor on stdio; keep the devices, drop the wiring. */
                vm_argv_add(out, "-display");
                vm_argv_add(out, "none");
                continue;
            }
            vm_argv_add(out, cl[i]);
            continue;
        }
        if (i + 1 >= n) {
            r = vs_err_set(e, EINVAL, "recorded QEMU command line ends with '%s' and no value", cl[i]);
            break;
        }
        const char *opt = cl[i], *v = cl[++i];
        if (!strcmp(name, "pidfile") || !strcmp(name, "qmp") || !strcmp(name, "qmp-pretty") ||
            !strcmp(name, "monitor") || !strcmp(name, "mon") || !strcmp(name, "incoming"))
            continue;
        if (!strcmp(name, "accel") && accel_override)
            continue;
        if (!strcmp(name, "chardev")) {
            bool drop = false;
            for (size_t k = 0; k < n_drop; k++)
                drop |= chardev_has_id(v, drop_ids[k]);
            if (drop)
                continue;
        }
        if (!strcmp(name, "serial") && *console_at == SIZE_MAX) {
            *console_at = out->n;
            continue;
        }
        vm_argv_add(out, opt);
        vm_argv_add(out, v);
    }
    for (size_t k = 0; k < n_drop; k++)
        free(drop_ids[k]);
    if (r < 0) {
        vm_argv_free(out);
        return r;
    }
    /* No -serial: QEMU gave the VM a default first serial port unless -nodefaults; ours takes its place. */
    if (*console_at == SIZE_MAX && !nodefaults)
        *console_at = out->n;
    return 0;
}

static void add_console(struct vm_argv *a, const struct vm_launch *l)
{
    add_console_chardev(a, l);
    vm_argv_add(a, "-serial");
    vm_argv_add(a, "chardev:vmsnap-con");
}

/* The recorded -kernel/-initrd/-dtb name the files boot chose (l->files: the user's after "--", else the recorded
 * ones). */
static void foreign_files(struct vm_argv *kept, const struct vm_launch *l)
{
    for (size_t i = 0; i + 1 < kept->n; i++) {
        const char *name = vm_qopt_name(kept->v[i]);
        int role = name ? role_of_opt(name) : -1;
        if (role >= 0 && l->files[role]) {
            free(kept->v[i + 1]);
            kept->v[i + 1] = vs_xstrdup(l->files[role]);
        }
        if (name && vm_qopt_takes_arg(name))
            i++;
    }
}

/* With no -serial to replace (-nodefaults, as libvirt writes), the first isa-serial -device's chardev becomes the
 * console, keeping its id. */
static void serial_device_console(struct vm_argv *kept, size_t console_at, const struct vm_launch *l)
{
    VS_AUTOFREE char *chr = NULL;
    for (size_t i = 0; console_at == SIZE_MAX && !chr && i + 1 < kept->n; i++) {
        const char *v = kept->v[i + 1];
        if (strcmp(kept->v[i], "-device") && strcmp(kept->v[i], "--device"))
            continue;
        VS_AUTOFREE char *drv = vm_opt_get(v, "driver", true);
        if (drv && !strcmp(drv, "isa-serial"))
            chr = vm_opt_get(v, "chardev", false);
    }
    for (size_t i = 0; chr && i + 1 < kept->n; i++) {
        const char *name = vm_qopt_name(kept->v[i]);
        if (name && !strcmp(name, "chardev") && chardev_has_id(kept->v[i + 1], chr)) {
            struct vm_argv t;
            vm_argv_init(&t);
            add_console_chardev_id(&t, l, chr);
            free(kept->v[i + 1]);
            kept->v[i + 1] = t.v[1];
            t.v[1] = NULL;
            vm_argv_free(&t);
            return;
        }
    }
}

static int build_foreign(const struct vm_config *c, const struct vm_launch *l, struct vm_argv *a, vs_err *e)
{
    struct vm_argv kept;
    size_t console_at;
    int r = vm_foreign_replayed(c, l->accel != NULL, &kept, &console_at, e);
    if (r < 0)
        return r;
    serial_device_console(&kept, console_at, l);
    char *note = NULL;
    vm_foreign_unmanaged(&kept, &console_at, &note);
    if (l->replay_note)
        *l->replay_note = note;
    else
        free(note);
    if (c->n_disks) {
        if (!l->disk_sockets)
            r = vs_err_set(e, EINVAL, "no NBD sockets for the captured disks");
        struct vm_fdisk_opts fo = { l->disk_sockets, l->keep_uncaptured };
        if (r == 0)
            r = vm_foreign_disks(c, &fo, &kept, &console_at, l->disk_note, e);
        if (r < 0) {
            vm_argv_free(&kept);
            return r;
        }
    }
    foreign_files(&kept, l);
    if (l->mem_path)
        vm_foreign_ram_file(c, &kept, l->mem_path);
    vm_argv_add(a, vm_qemu_binary(l->qemu));
    for (size_t i = 0; i <= kept.n; i++) {
        if (i == console_at)
            add_console(a, l);
        if (i < kept.n)
            vm_argv_add(a, kept.v[i]);
    }
    vm_argv_free(&kept);
    if (l->accel) {
        vm_argv_add(a, "-accel");
        vm_argv_add(a, l->accel);
    }
    add_monitors(a, l);
    add_machine_pin(a, c, l);
    if (l->incoming) {
        vm_argv_add(a, "-incoming");
        vm_argv_add(a, "defer");
    }
    return 0;
}

int vm_build_argv(const struct vm_config *c, const struct vm_launch *l, struct vm_argv *out, vs_err *e)
{
    if (!l->private_qmp)
        return vs_err_set(e, EINVAL, "no private QMP socket path for QEMU");
    vm_argv_init(out);
    int r = c->foreign ? build_foreign(c, l, out, e) : build_native(c, l, out, e);
    if (r < 0)
        vm_argv_free(out);
    return r;
}
