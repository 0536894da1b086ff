/* libFuzzer target: an archive's VM config (JSON) -> QEMU's argv, as `boot` builds it. Whatever the config says,
 * a config that passes vm_config_check must give an argv whose options are all on the allow-list, whose file
 * paths are only those vmsnap hands QEMU (run-directory copies, its sockets, QEMU's installation), and whose
 * option values vmsnap writes itself (-drive, -machine, a captured foreign disk's -blockdev) have exactly the keys
 * vmsnap writes: an escaped string never adds one. Values in QEMU's JSON form (libvirt's -device, -object,
 * -blockdev, ...) are read member by member, nested ones too, by the same rules. Any violation aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/vm.h"

#define RUN "/run/fz/"

/* Every option name that may reach QEMU: vmsnap's own and the allow-list's (src/vm/allow.c), written out again
 * here so that a change to the list must be made twice. */
static const char allowed[] =
    " nodefaults no-user-config display object machine M accel m smp kernel initrd dtb append drive chardev serial "
    "mon device incoming cpu rtc boot name uuid k vga netdev nic net smbios fw_cfg overcommit msg action "
    "watchdog-action numa icount blockdev global bios pflash L no-reboot no-shutdown nographic no-hpet no-acpi "
    "enable-kvm usb snapshot no-fd-bootchk only-migratable audiodev sandbox ";
/* Options QEMU reads as JSON too (libvirt's form); any other that starts with '{' is refused. */
static const char json_opts[] = " device object blockdev netdev audiodev ";
/* Options whose values are free text (not opened by QEMU). */
static const char text_opts[] = " append name smbios fw_cfg ";

static bool word_in(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = strstr(list, w); p; p = strstr(p + 1, w))
        if (p[-1] == ' ' && p[n] == ' ')
            return true;
    return false;
}

static bool stored_all(void *opaque, const char *name)
{
    (void)opaque;
    (void)name;
    return true;
}

/* A path in an option value: ours, or a read-only file of the QEMU installation. */
static bool path_ok(const char *v)
{
    static const char nbd[] = "nbd+unix:///?socket=" RUN;
    return !strncmp(v, RUN, strlen(RUN)) || !strncmp(v, nbd, strlen(nbd)) || vm_xfile_is_installed(v);
}

static void check_keys(const char *v, const char *keys, size_t want)
{
    size_t n = strlen(v), pos = 0, count = 0;
    struct vm_qopt_field f;
    for (bool first = true; vm_qopt_next(v, n, &pos, &f); first = false, count++) {
        char k[64];
        if (!f.key) {
            if (!first)
                abort();
            continue;
        }
        if (f.klen >= sizeof k)
            abort();
        memcpy(k, f.key, f.klen);
        k[f.klen] = 0;
        if (!word_in(keys, k))
            abort();
    }
    if (want && count != want)
        abort();
}

/* Every field of a value, in either form (nested JSON members too): a path only where path_ok says. */
static int check_path(void *opaque, const struct vm_opt_kv *f)
{
    (void)opaque;
    if (f->value && strchr(f->value, '/') && !path_ok(f->value))
        abort();
    return 0;
}

static void check_argv(const struct vm_argv *a, bool foreign)
{
    if (strcmp(a->v[0], vm_qemu_binary(NULL)))
        abort();
    for (size_t i = 1; i < a->n; i++) {
        const char *name = vm_qopt_name(a->v[i]);
        if (!name || !word_in(allowed, name))
            abort();
        if (!vm_qopt_takes_arg(name))
            continue;
        if (++i >= a->n)
            abort();
        const char *v = a->v[i];
        if (word_in(text_opts, name))
            continue;
        if (!strcmp(name, "drive") && strstr(v, ",id=vmsnap-disk"))
            check_keys(v, " file format if id cache ", 5);
        if (!strcmp(name, "blockdev") && strstr(v, "file.driver=nbd"))   /* a captured disk's node: vmsnap's */
            check_keys(v, " node-name driver file.driver file.server.type file.server.path ", 5);
        /* A foreign VM's recorded -machine (usb=off, ...) is the allow-list's; vmsnap's own has only these. */
        if (!strcmp(name, "machine") && !foreign && (strstr(v, "memory-backend=") || !strchr(v, '=')))
            check_keys(v, " memory-backend ", 0);
        if (vm_opt_is_json(v) && !word_in(json_opts, name))
            abort();
        if (vm_opt_fields(v, check_path, NULL) != 0)   /* JSON as QEMU reads it: one object, no key twice */
            abort();
    }
}

static void one(const struct vm_config *c, bool stored)
{
    struct vm_check k = { .stored = stored ? stored_all : NULL, .user_extra_from = c->n_extra };
    char *rep = NULL;
    vs_err e = { 0 };
    int r = vm_config_check(c, &k, &rep, &e);
    free(rep);
    if (r < 0)
        return;
    char **socks = vs_xcalloc(c->n_disks + 1, sizeof *socks);
    for (size_t i = 0; i < c->n_disks; i++)
        socks[i] = vs_xasprintf(RUN "nbd%zu.sock", i);
    struct vm_xfile *xf = vs_xcalloc(c->n_xfiles + 1, sizeof *xf);
    for (size_t i = 0; i < c->n_xfiles; i++)
        xf[i] = (struct vm_xfile){ c->xfiles[i].name, vs_xasprintf(RUN "fw-%s", c->xfiles[i].name), false };
    struct vm_launch l = { .private_qmp = RUN "q.sock", .user_qmp = RUN "u.sock", .console = RUN "c.sock",
                           .disk_sockets = (const char *const *)socks, .xfiles = xf, .n_xfiles = c->n_xfiles,
                           .incoming = c->ram_bytes & 1, .accel = c->cpus & 1 ? "tcg" : NULL,
                           .mem_path = c->ram_bytes & 2 ? RUN "pages/mem" : NULL };
    for (int i = 0; i < VM_FILE__COUNT; i++)
        l.files[i] = c->files[i] ? RUN "copy" : NULL;   /* checked: stored, so boot hands QEMU its copy */
    struct vm_argv a;
    if (vm_build_argv(c, &l, &a, &e) == 0) {
        check_argv(&a, c->foreign);
        vm_argv_free(&a);
    }
    for (size_t i = 0; i < c->n_disks; i++)
        free(socks[i]);
    free(socks);
    for (size_t i = 0; i < c->n_xfiles; i++)
        free(xf[i].path);
    free(xf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vm_config c;
    vs_err e = { 0 };
    if (vm_config_from_json((const char *)data, size, &c, &e) < 0)
        return 0;
    one(&c, false);
    one(&c, true);
    vm_config_free(&c);
    return 0;
}
