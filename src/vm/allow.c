/* vm: what an archive may put on QEMU's command line. An archive is data: every recorded value that reaches QEMU
 * must be something vmsnap itself would write. Options, device models and their properties come from the tables
 * below; values are words (no '/', so never a host path) unless a key names a file, and a file must be a copy stored
 * in the archive or a read-only file of the QEMU installation. A value in QEMU's JSON form is checked field by
 * field as its key=value form would be. Anything else is refused, with its reason, before anything starts;
 * `boot --trust-archive` passes it verbatim. */
#include "vm/vm.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

/* Keys are space-separated lists. An implied key (first bare field) is checked like key=value. */
struct optspec {
    const char *name;      /* without the dash ("M" and "machine" are two rows) */
    const char *implied;   /* QEMU's implied key, NULL: a bare first field is refused */
    const char *words;     /* keys whose value must be a word (letters, digits, _ . : + -) */
    const char *texts;     /* keys whose value may be any printable text (names, SMBIOS strings) */
    const char *files;     /* keys whose value is a file: stored in the archive or of the QEMU installation */
    const char *enum_;     /* allowed values of the implied key, NULL: any word */
    bool flags;            /* later bare fields are words too (-cpu +feature) */
};

#define USER_NET "id net host restrict hostname dhcpstart dns domainname ipv4 ipv6 ipv6-net ipv6-host ipv6-dns " \
                 "ipv6-prefix ipv6-prefixlen"
#define MACHINE_KEYS "type accel memory-backend pflash0 pflash1 smm kernel-irqchip kernel_irqchip vmport usb graphics " \
                     "dump-guest-core mem-merge hpet sata pit i8042 acpi smbus suppress-vmdesc nvdimm hmat " \
                     "max-ram-below-4g vmgenid"

static const struct optspec opts[] = {
    { "machine", "type", MACHINE_KEYS, NULL, NULL, NULL, false },
    { "M", "type", MACHINE_KEYS, NULL, NULL, NULL, false },
    { "accel", "accel", "accel thread tb-size kernel-irqchip split-wx one-insn-per-tb", NULL, NULL, " kvm tcg ",
      false },
    { "cpu", "model", "model", NULL, NULL, NULL, true },
    { "smp", "cpus", "cpus sockets cores threads dies clusters maxcpus books drawers", NULL, NULL, NULL, false },
    { "m", "size", "size slots maxmem", NULL, NULL, NULL, false },
    { "rtc", NULL, "base clock driftfix", NULL, NULL, NULL, false },
    { "boot", "order", "order once menu strict reboot-timeout splash-time", NULL, NULL, NULL, false },
    { "name", "guest", "debug-threads", "guest process", NULL, NULL, false },
    { "uuid", "uuid", "uuid", NULL, NULL, NULL, false },
    { "k", "layout", "layout", NULL, NULL, NULL, false },
    { "display", "type", "type", NULL, NULL, " none ", false },
    { "vga", "type", "type", NULL, NULL, " none std cirrus virtio ", false },
    { "chardev", "backend", "backend id size", NULL, NULL, " null ringbuf memory ", false },
    { "netdev", "type", "type " USER_NET, NULL, NULL, " user ", false },
    { "nic", "type", "type model mac " USER_NET, NULL, NULL, " none user ", false },
    { "net", "type", "type model macaddr netdev name vlan " USER_NET, NULL, NULL, " none nic user ", false },
    { "object", "qom-type", "qom-type id size share prealloc prealloc-threads merge dump policy host-nodes seal "
      "hugetlb hugetlbsize reserve", NULL, NULL, " memory-backend-ram memory-backend-memfd rng-builtin iothread ",
      false },
    { "smbios", "type", "type uefi", "vendor version date release manufacturer product serial uuid sku family "
      "asset location", NULL, NULL, false },
    { "fw_cfg", NULL, "name", "string", NULL, NULL, false },
    { "overcommit", NULL, "mem-lock cpu-pm", NULL, NULL, NULL, false },
    { "msg", NULL, "timestamp guest-name", NULL, NULL, NULL, false },
    { "action", NULL, "reboot shutdown panic watchdog", NULL, NULL, NULL, false },
    { "watchdog-action", "action", "action", NULL, NULL, NULL, false },
    { "numa", "type", "type nodeid cpus memdev mem node-id socket-id core-id thread-id die-id src dst val "
      "initiator hierarchy data-type latency bandwidth", NULL, NULL, NULL, false },
    { "icount", "shift", "shift align sleep", NULL, NULL, NULL, false },
    { "drive", NULL, "if format unit index bus readonly id media cache snapshot werror rerror cyls heads secs trans "
      "addr discard detect-zeroes node-name", "serial", "file", NULL, false },
    { "blockdev", NULL, "driver node-name file read-only auto-read-only discard detect-zeroes cache.direct "
      "cache.no-flush locking file.driver", NULL, "filename file.filename", NULL, false },
    { "device", "driver", NULL, NULL, NULL, NULL, false },   /* models and properties: below */
    { "audiodev", "driver", "driver id", NULL, NULL, " none ", false },   /* no host audio: libvirt's default */
    { "global", NULL, NULL, NULL, NULL, NULL, false },       /* driver.property=value: below */
};

/* Keys other than the implied one whose values come from a list: block drivers that open nothing but a file. */
static const struct { const char *opt, *key, *values; } key_enums[] = {
    { "blockdev", "driver", " file raw qcow2 " },
    { "blockdev", "file.driver", " file " },
    { "drive", "format", " raw qcow2 " },
};

/* Options without a value that are harmless; -S is not (the VM would never run). */
static const char flag_opts[] = " nodefaults no-user-config no-reboot no-shutdown nographic no-hpet no-acpi "
                                "enable-kvm usb snapshot no-fd-bootchk only-migratable ";

/* Device models that touch nothing of the host but what other checked options give them. */
static const char device_models[] =
    " vmgenid loader virtio-blk-pci virtio-blk-device virtio-net-pci virtio-net-device virtio-rng-pci "
    "virtio-balloon-pci virtio-serial-pci virtconsole virtserialport virtio-scsi-pci scsi-hd scsi-cd ide-hd ide-cd "
    "isa-serial pci-serial e1000 e1000e rtl8139 i6300esb ib700 pvpanic pvpanic-pci isa-debug-exit qemu-xhci "
    "nec-usb-xhci usb-kbd usb-mouse usb-tablet usb-ehci ich9-usb-ehci1 piix3-usb-uhci VGA virtio-vga "
    "virtio-gpu-pci bochs-display cirrus-vga vmcoreinfo pcie-root-port pci-bridge virtio-keyboard-pci "
    "virtio-mouse-pci virtio-tablet-pci intel-iommu virtio-iommu-pci pc-dimm virtio-mem-pci nvdimm sga ";
/* Their properties (romfile: a word, so only a ROM QEMU finds in its own data directories, or none). */
static const char device_props[] =
    " driver id bus addr multifunction chardev drive netdev mac guid num-queues num_queues queue-size vectors "
    "iobase irq index unit bootindex logical_block_size physical_block_size disable-legacy disable-modern "
    "ioeventfd event_idx indirect_desc romfile rombar memdev node socket-id core-id thread-id die-id port chassis "
    "slot max_ports iommu_platform ats packed mq rx_queue_size tx_queue_size speed duplex write-cache "
    "discard_granularity share-rw cyls heads secs ver wwn rotation_rate scsi-id lun channel rng data data-len "
    "cpu-num force-raw ioport size requested-size xres yres max_outputs serial ";

/* Options refused with a reason of their own (others: not on the allow-list). */
static const struct { const char *names, *why; } known[] = {
    { " plugin ", "loads a host shared library" },
    { " sandbox ", "changes the seccomp sandbox" },
    { " add-fd ", "passes host file descriptors" },
    { " chroot runas run-with ", "changes QEMU's user or root" },
    { " readconfig writeconfig D trace mem-path option-rom acpitable pidfile ", "reads or writes a host file" },
    { " L ", "a host directory outside QEMU's" },
    { " qmp qmp-pretty monitor mon gdb s ", "opens a monitor or debug stub" },
    { " vnc spice ", "opens a remote display on the host" },
    { " incoming loadvm S ", "vmsnap starts the VM itself" },
    { " daemonize ", "vmsnap supervises QEMU itself" },
    { " fsdev virtfs ", "shares a host directory with the guest" },
    { " kernel initrd dtb bios pflash ", "a host file the archive does not store" },
    { " soundhw usbdevice tpmdev parallel debugcon iscsi ", "uses host devices or services" },
};

/* s[0, n) is one of the space-separated words of list. */
static bool in_list(const char *list, const char *s, size_t n)
{
    for (const char *p = list; p && *p;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, " ");
        if (len && len == n && !strncmp(p, s, n))
            return true;
        p += len;
    }
    return false;
}

static bool in_words(const char *list, const char *s)
{
    return in_list(list, s, strlen(s));
}

static bool is_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:+-", s[i]) || !s[i])
            return false;
    return true;
}

static bool is_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

bool vm_qemu_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 128 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static const char *const ifaces[] = { "virtio", "ide", "scsi", "sd" };

bool vm_disk_iface_ok(const char *s)
{
    for (size_t i = 0; i < VS_ARRAY_SIZE(ifaces); i++)
        if (!strcmp(s, ifaces[i]))
            return true;
    return false;
}

/* ---- the report ------------------------------------------------------------------------------------------- */

struct report {
    char *text;
    size_t n;
};

struct ctx {
    const struct vm_config *c;
    const struct vm_check *k;
    char *const *args;
    size_t n;
    struct vm_xfile_ref *refs;
    size_t nrefs;
    bool foreign;
    struct report rep;
};


/* An archive's string in a one-line message: printable ASCII only, cut to fit len. */
static void quote(char *out, size_t len, const char *s)
{
    size_t j = 0, n = strlen(s);
    for (size_t i = 0; i < n && j + 4 < len; i++)
        out[j++] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
    if (n > len - 4 && len > 4)
        memcpy(out + len - 4, "...", 3), j = len - 1;
    out[j] = 0;
}

/* Adds "'OPT VALUE' (why)" to the report; returns -EPERM. */
__attribute__((format(printf, 4, 5)))
static int refuse(struct ctx *x, const char *opt, const char *val, const char *fmt, ...)
{
    char qo[24], qv[128], why[200];
    quote(qo, sizeof qo, opt);
    quote(qv, sizeof qv, val ? val : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    char *prev = x->rep.text;
    x->rep.text = vs_xasprintf("%s%s'%s%s%s' (%s)", prev ? prev : "", prev ? "; " : "", qo, val ? " " : "", qv,
                               why);
    free(prev);
    x->rep.n++;
    return -EPERM;
}

/* ---- checking option values -------------------------------------------------------------------------------- */

/* A file field of args[i] at offset vstart: a stored copy replaces it, or it is a read-only installed file. */
static const char *file_problem(const struct ctx *x, size_t i, size_t vstart)
{
    for (size_t k = 0; k < x->nrefs; k++) {
        const struct vm_xfile_ref *r = &x->refs[k];
        if (r->arg != i || r->start != vstart)
            continue;
        if (!r->writable && vm_xfile_is_installed(r->path))
            return NULL;
        if (x->foreign)
            return "a host file of the recorded VM";
        bool listed = false;
        for (size_t j = 0; j < x->c->n_xfiles; j++)
            listed |= !strcmp(x->c->xfiles[j].name, r->name);
        if (listed && x->k->stored && x->k->stored(x->k->opaque, r->name))
            return NULL;
        return "a host file the archive does not store";
    }
    return "names a file vmsnap does not record there";
}

static const struct optspec *spec_of(const char *name)
{
    for (size_t i = 0; i < VS_ARRAY_SIZE(opts); i++)
        if (!strcmp(opts[i].name, name))
            return &opts[i];
    return NULL;
}

static int check_global(struct ctx *x, const char *opt, const char *v)
{
    size_t n = strlen(v), pos = 0;
    struct vm_qopt_field f;
    while (vm_qopt_next(v, n, &pos, &f)) {
        const char *dot = f.key ? memchr(f.key, '.', f.klen) : NULL;
        size_t plen = dot ? f.klen - (size_t)(dot + 1 - f.key) : 0;
        char prop[64] = "";
        if (dot && plen < sizeof prop)
            memcpy(prop, dot + 1, plen), prop[plen] = 0;
        if (!dot || !in_words(device_props, prop) || !is_word(v + f.vstart, f.vend - f.vstart))
            return refuse(x, opt, v, "only DEVICE.PROPERTY=VALUE of an allowed property");
    }
    return 0;
}

/* One option value being checked, field by field (check_field). */
struct vcheck {
    struct ctx *x;
    size_t i;                      /* the value is x->args[i] */
    const char *opt, *name, *v;
    const struct optspec *s;
    bool first, is_device, loader;
};

/* Options QEMU also reads as JSON ("{...}"): checked member by member, nested ones as the dotted keys of the
 * key=value form, with the same rules. */
static const char json_opts[] = " device object blockdev netdev audiodev ";

static int check_field(void *opaque, const struct vm_opt_kv *f)
{
    struct vcheck *c = opaque;
    struct ctx *x = c->x;
    const struct optspec *s = c->s;
    const char *opt = c->opt, *v = c->v, *name = c->name, *val = f->value ? f->value : "";
    size_t vlen = strlen(val);
    bool first = c->first;
    c->first = false;
    char key[64];
    if (f->key && strlen(f->key) >= sizeof key)
        return refuse(x, opt, v, "key too long");
    if (f->key)
        snprintf(key, sizeof key, "%s", f->key);
    else if (first && s->implied)
        snprintf(key, sizeof key, "%s", s->implied);
    else if (s->flags && is_word(val, vlen))
        return 0;
    else
        return refuse(x, opt, v, "a bare value vmsnap does not write there");
    if (!f->value)
        return refuse(x, opt, v, "%s: a string, number or boolean expected", key);
    bool implied = !strcmp(key, s->implied ? s->implied : "");
    if (implied && s->enum_ && !in_words(s->enum_, val))
        return refuse(x, opt, v, "%s '%.40s' is not on the allow-list", key, val);
    if (c->is_device && implied) {
        if (!in_words(device_models, val))
            return refuse(x, opt, v, "device model '%.40s' is not on the allow-list", val);
        return 0;
    }
    if (c->is_device && c->loader && !strcmp(key, "file")) {
        const char *p = file_problem(x, c->i, f->vstart);
        return p ? refuse(x, opt, v, "file: %s", p) : 0;
    }
    if (c->is_device) {
        if (!in_words(device_props, key))
            return refuse(x, opt, v, "device property '%s' is not on the allow-list", key);
        if (!strcmp(key, "serial") ? !is_text(val, vlen) : !is_word(val, vlen))
            return refuse(x, opt, v, "%s: a plain value expected, not a path", key);
        return 0;
    }
    for (size_t e = 0; e < VS_ARRAY_SIZE(key_enums); e++)
        if (!strcmp(key_enums[e].opt, name) && !strcmp(key_enums[e].key, key) && !in_words(key_enums[e].values, val))
            return refuse(x, opt, v, "%s: only%s", key, key_enums[e].values);
    if (in_words(s->files, key)) {
        const char *p = file_problem(x, c->i, f->vstart);
        if (p)
            return refuse(x, opt, v, "%s: %s", key, p);
    } else if (in_words(s->words, key)) {
        if (!is_word(val, vlen))
            return refuse(x, opt, v, "%s: a plain value expected, not a path", key);
    } else if (in_words(s->texts, key)) {
        if (!is_text(val, vlen))
            return refuse(x, opt, v, "%s: control characters", key);
    } else {
        return refuse(x, opt, v, "key '%s' is not on the allow-list of -%s", key, name);
    }
    return 0;
}

static int any_field(void *opaque, const struct vm_opt_kv *f)
{
    (void)opaque;
    (void)f;
    return 0;
}

static int check_value(struct ctx *x, size_t i, const char *opt, const char *name, const char *v)
{
    if (!strcmp(name, "global"))
        return check_global(x, opt, v);
    bool json = vm_opt_is_json(v);
    if (json && !in_words(json_opts, name))
        return refuse(x, opt, v, "QEMU reads -%s as key=value, not JSON", name);
    struct vcheck c = { x, i, opt, name, v, spec_of(name), true, !strcmp(name, "device"), false };
    VS_AUTOFREE char *model = c.is_device ? vm_opt_get(v, "driver", true) : NULL;
    c.loader = model && !strcmp(model, "loader");
    if (json && vm_opt_fields(v, any_field, NULL) < 0)
        return refuse(x, opt, v, "not one JSON object, or a key repeated");
    if (c.is_device && !model)
        return refuse(x, opt, v, "no device model");
    if (!strcmp(name, "drive")) {
        /* A -drive without a file names no host file: an empty drive (a cdrom without medium), or the view of a
         * captured disk whose medium vmsnap serves (vm_foreign_disks). */
        VS_AUTOFREE char *iface = vm_qopt_get(v, "if", NULL), *file = vm_qopt_get(v, "file", NULL);
        if (file && (!iface || strcmp(iface, "pflash")))
            return refuse(x, opt, v, x->foreign ? "a host disk of the recorded VM" : "a host disk: vmsnap "
                          "serves the archive's disks");
    }
    int r = vm_opt_fields(v, check_field, &c);
    if (r < 0)
        return r;
    if (!strcmp(name, "machine") || !strcmp(name, "M")) {
        VS_AUTOFREE char *t = vm_qopt_get_implied(v, "type");
        if (t && !vm_machine_name_ok(t))
            return refuse(x, opt, v, "expected a machine type like pc-i440fx-7.2");
    }
    return 0;
}

/* -sandbox on with only "deny" for its other keys (as libvirt writes it) only narrows what QEMU may do. */
static int sandbox_field(void *opaque, const struct vm_opt_kv *f)
{
    bool *first = opaque, was_first = *first;
    *first = false;
    if (!f->key || !strcmp(f->key, "enable"))
        return (f->key || was_first) && !strcmp(f->value, "on") ? 0 : 1;
    return in_words("obsolete elevateprivileges spawn resourcecontrol", f->key) && !strcmp(f->value, "deny") ? 0 : 1;
}

static bool sandbox_narrows(const char *v)
{
    bool first = true;
    VS_AUTOFREE char *on = vm_opt_get(v, "enable", true);
    return !vm_opt_is_json(v) && on && vm_opt_fields(v, sandbox_field, &first) == 0;
}

static void check_serial(struct ctx *x, const char *opt, const char *v)
{
    if (!strcmp(v, "null") || !strcmp(v, "none") || (!strncmp(v, "chardev:", 8) && vm_qemu_id_ok(v + 8)))
        return;
    refuse(x, opt, v, "only null, none or chardev:ID");
}

/* args[0, n): options as recorded (pairs and flags). */
static void check_args(struct ctx *x)
{
    vm_xfile_refs(x->args, x->n, &x->refs, &x->nrefs);
    for (size_t i = 0; i < x->n; i++) {
        const char *a = x->args[i], *name = vm_qopt_name(a);
        if (!name) {
            refuse(x, a, NULL, "a bare argument: QEMU opens it as a host disk image");
            continue;
        }
        bool takes = vm_qopt_takes_arg(name);
        const char *v = takes && i + 1 < x->n ? x->args[i + 1] : NULL;
        if (takes && !v) {
            refuse(x, a, NULL, "no value");
            break;
        }
        if (takes)
            i++;
        const char *why = NULL;
        for (size_t k = 0; k < VS_ARRAY_SIZE(known) && !why; k++)
            if (in_words(known[k].names, name))
                why = known[k].why;
        if (!takes) {
            if (!in_words(flag_opts, name))
                refuse(x, a, NULL, "%s", why ? why : "not on vmsnap's allow-list");
        } else if (!strcmp(name, "append")) {
            if (!is_text(v, strlen(v)))
                refuse(x, a, v, "control characters in the kernel command line");
        } else if (!strcmp(name, "serial")) {
            check_serial(x, a, v);
        } else if (!strcmp(name, "bios") || !strcmp(name, "pflash")) {
            const char *p = file_problem(x, i, 0);
            if (p)
                refuse(x, a, v, "%s", p);
        } else if (!strcmp(name, "sandbox")) {
            if (!sandbox_narrows(v))
                refuse(x, a, v, "%s", why);
        } else if (!strcmp(name, "L")) {
            if (!vm_xfile_is_installed(v) || !strchr(v, '/'))
                refuse(x, a, v, "%s", why);
        } else if (spec_of(name)) {
            check_value(x, i, a, name, v);
        } else {
            refuse(x, a, v, "%s", why ? why : "not on vmsnap's allow-list");
        }
    }
    vm_xfile_refs_free(x->refs, x->nrefs);
    x->refs = NULL;
    x->nrefs = 0;
}

/* vmsnap's own fields of a native config. */
static void check_fields(struct ctx *x)
{
    const struct vm_config *c = x->c;
    if (c->machine && !vm_machine_name_ok(c->machine))
        refuse(x, "machine", c->machine, "expected a machine type like pc-i440fx-7.2");
    if (c->accel && !is_word(c->accel, strlen(c->accel)))
        refuse(x, "accel", c->accel, "expected kvm or tcg");
    if (c->mem_backend && !vm_qemu_id_ok(c->mem_backend))
        refuse(x, "memory-backend", c->mem_backend, "expected a QEMU id");
    for (size_t i = 0; i < c->n_disks; i++)
        if (c->disks[i].iface && !vm_disk_iface_ok(c->disks[i].iface))
            refuse(x, "interface", c->disks[i].iface, "expected virtio, ide, scsi or sd");
    for (int r = 0; r < VM_FILE__COUNT; r++) {
        const char *f = c->files[r];
        bool stored = x->k->stored && x->k->stored(x->k->opaque, vm_file_role_name(r));
        if (f && !stored && !x->k->user_files[r]) {
            char opt[16];
            snprintf(opt, sizeof opt, "-%s", vm_file_role_name(r));
            refuse(x, opt, f, "a host file the archive does not store: pass -- %s PATH", opt);
        }
    }
    /* Files of the extra args: what is not stored must be the user's own (named after "--") or installed. */
    struct vm_xfile_ref *refs = NULL;
    size_t nrefs = 0;
    vm_xfile_refs(c->extra, c->n_extra, &refs, &nrefs);
    for (size_t j = 0; j < c->n_xfiles; j++) {
        const struct vm_xfile *f = &c->xfiles[j];
        bool ok = (x->k->stored && x->k->stored(x->k->opaque, f->name)) ||
                  (!f->writable && vm_xfile_is_installed(f->path));
        for (size_t k = 0; k < nrefs && !ok; k++)
            ok = refs[k].arg >= x->k->user_extra_from && !strcmp(refs[k].name, f->name);
        if (!ok)
            refuse(x, "extra-files", f->path, "%s: a host file the archive does not store", f->name);
    }
    vm_xfile_refs_free(refs, nrefs);
}

/* A foreign VM's -kernel/-initrd/-dtb that the user gives after "--", or that the archive chain stores (a snapshot
 * of a resumed foreign VM) and the config names, replace the recorded ones (boot hands QEMU the file of
 * c->files: the user's, or the stored copy): not checked. */
static void drop_user_files(const struct vm_config *c, struct vm_argv *a, const struct vm_check *k)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++) {
        const char *name = vm_qopt_name(a->v[i]);
        bool user = false;
        for (int r = 0; name && r < VM_FILE__COUNT; r++)
            user |= (k->user_files[r] || (c->files[r] && k->stored && k->stored(k->opaque, vm_file_role_name(r)))) &&
                    !strcmp(name, vm_file_role_name(r));
        if (user && i + 1 < a->n) {
            free(a->v[i]);
            free(a->v[++i]);
            continue;
        }
        a->v[n++] = a->v[i];
    }
    a->n = n;
    a->v[n] = NULL;
}

int vm_config_check(const struct vm_config *c, const struct vm_check *k, char **refused, vs_err *e)
{
    struct ctx x = { .c = c, .k = k, .foreign = c->foreign };
    *refused = NULL;
    if (c->foreign) {
        struct vm_argv kept;
        size_t console_at;
        int r = vm_foreign_replayed(c, false, &kept, &console_at, e);
        struct vm_fdisk_opts fo = { NULL, k->keep_uncaptured };
        char *note = NULL;
        if (r == 0)   /* as boot replays it: what only the managing process gave QEMU rewritten */
            vm_foreign_unmanaged(&kept, &console_at, &note);
        free(note);
        if (r == 0 && c->n_disks && (r = vm_foreign_disks(c, &fo, &kept, &console_at, NULL, e)) < 0)
            vm_argv_free(&kept);
        if (r < 0)
            return r;
        drop_user_files(c, &kept, k);
        x.args = kept.v;
        x.n = kept.n;
        check_args(&x);
        vm_argv_free(&kept);
    } else {
        check_fields(&x);
        x.args = c->extra;
        x.n = VS_MIN(k->user_extra_from, c->n_extra);
        check_args(&x);
    }
    *refused = x.rep.text;
    return x.rep.n ? -EPERM : 0;
}
