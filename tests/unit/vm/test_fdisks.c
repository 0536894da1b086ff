/* Unit tests for a captured foreign VM's command line with its disks served by vmsnap (vm_foreign_disks): the
 * shapes management tools and people write (-blockdev key=value and libvirt's JSON, -drive with and without id,
 * -hdX/-cdrom, if=none + -device, virtio-scsi, IDE), what is kept, replaced, emptied and dropped; and its RAM
 * backend on a page file for a lazy resume (vm_foreign_ram_*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "vm/vm.h"
#include "argvtest.h"

#define NBD(sock) "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=" sock

static void add_disk(struct vm_config *c, const char *name, const char *node, const char *drive)
{
    c->disks = vs_xrealloc(c->disks, (c->n_disks + 1) * sizeof *c->disks);
    c->disks[c->n_disks++] = (struct vm_disk){ .format = vs_xstrdup("raw"), .name = vs_xstrdup(name),
                                               .stream = vs_xasprintf("disk%zu", c->n_disks), .node = vs_xstrdup(node),
                                               .drive = drive ? vs_xstrdup(drive) : NULL };
}

static void config(struct vm_config *c, char **cl, size_t n)
{
    vm_config_init(c);
    assert_int_equal(vm_config_from_cmdline(c, cl, n, "/srv", NULL), 0);
}

/* The replayed command line rewritten with sockets (NULL: the allow-list's view). */
static int rewrite(const struct vm_config *c, const char *const *socks, bool keep, struct vm_argv *a, char **note,
                   vs_err *e)
{
    size_t con;
    assert_int_equal(vm_foreign_replayed(c, false, a, &con, e), 0);
    struct vm_fdisk_opts o = { socks, keep };
    int r = vm_foreign_disks(c, &o, a, &con, note, e);
    if (r < 0)
        vm_argv_free(a);
    return r;
}

/* What a management tool writes: q35, -blockdev qcow2 on virtio-blk-pci, raw on virtio-scsi, an IDE cdrom. */
static char *mgmt[] = { "qemu-system-x86_64", "-L", "/opt/qemu-10/share/qemu", "-L", "/usr/share/seabios",
                        "-machine", "q35", "-m", "256",
                        "-blockdev", "driver=file,filename=/img/a.qcow2,node-name=a-file",
                        "-blockdev", "driver=qcow2,file=a-file,node-name=a-fmt,discard=unmap",
                        "-device", "virtio-blk-pci,drive=a-fmt,id=vda,serial=S1,bootindex=1",
                        "-blockdev", "driver=file,filename=/img/b,,c.raw,node-name=b-file",
                        "-blockdev", "driver=raw,file=b-file,node-name=b-fmt",
                        "-device", "virtio-scsi-pci,id=scsi0",
                        "-device", "scsi-hd,drive=b-fmt,bus=scsi0.0,id=sdb",
                        "-drive", "file=/img/cd.iso,if=ide,media=cdrom,readonly=on",
                        "-serial", "null" };

static void test_blockdev_keyvalue(void **state)
{
    (void)state;
    struct vm_config c;
    config(&c, mgmt, VS_ARRAY_SIZE(mgmt));
    add_disk(&c, "vda", "a-fmt", NULL);
    add_disk(&c, "sdb", "b-fmt", NULL);
    const char *socks[] = { "/run/v/nbd0.sock", "/run/v,w/nbd1.sock" };
    struct vm_argv a;
    char *note = NULL;
    vs_err e = { 0 };
    assert_int_equal(rewrite(&c, socks, false, &a, &note, &e), 0);
    /* the nodes the devices used are vmsnap's exports, under the same names; their files are gone */
    assert_true(find_pair(&a, "-blockdev", "node-name=a-fmt," NBD("/run/v/nbd0.sock")) >= 0);
    assert_true(find_pair(&a, "-blockdev", "node-name=b-fmt," NBD("/run/v,,w/nbd1.sock")) >= 0);
    assert_int_equal(count(&a, "a-file"), 0);
    assert_int_equal(count(&a, "b-file"), 0);
    assert_int_equal(count(&a, "/img/"), 0);
    assert_int_equal(count(&a, "-blockdev"), 2);
    /* the devices stay as recorded, after their nodes */
    int vda = find_pair(&a, "-device", "virtio-blk-pci,drive=a-fmt,id=vda,serial=S1,bootindex=1");
    assert_true(vda > find_pair(&a, "-blockdev", "node-name=a-fmt," NBD("/run/v/nbd0.sock")));
    assert_true(find_pair(&a, "-device", "scsi-hd,drive=b-fmt,bus=scsi0.0,id=sdb") > vda);
    assert_true(find_pair(&a, "-device", "virtio-scsi-pci,id=scsi0") > 0);
    /* the cdrom was not captured: without trust, it is there without its medium (q35: one IDE unit per bus) */
    assert_true(find_pair(&a, "-drive", "if=ide,media=cdrom,readonly=on,index=0") >= 0);
    assert_non_null(note);
    assert_non_null(strstr(note, "'ide0-cd0' emptied (no medium)"));
    assert_true(find_pair(&a, "-machine", "q35") >= 0 && find_pair(&a, "-m", "256") >= 0);
    /* the recorded QEMU's own data directory goes (a launcher's); one of the installation stays */
    assert_int_equal(find_pair(&a, "-L", "/opt/qemu-10/share/qemu"), -1);
    assert_true(find_pair(&a, "-L", "/usr/share/seabios") >= 0);
    free(note);
    vm_argv_free(&a);

    /* trusted: the cdrom stays as recorded, nothing to note */
    assert_int_equal(rewrite(&c, socks, true, &a, &note, &e), 0);
    assert_true(find_pair(&a, "-drive", "file=/img/cd.iso,if=ide,media=cdrom,readonly=on") >= 0);
    assert_true(find_pair(&a, "-L", "/opt/qemu-10/share/qemu") >= 0);
    assert_null(note);
    vm_argv_free(&a);

    /* the allow-list's view: no vmsnap node, nothing of the host but the QEMU installation */
    assert_int_equal(rewrite(&c, NULL, false, &a, NULL, &e), 0);
    assert_int_equal(count(&a, "-blockdev"), 0);
    assert_int_equal(count(&a, "/"), 1);
    assert_int_equal(count(&a, "/usr/share/seabios"), 1);
    vm_argv_free(&a);
    vm_config_free(&c);
}

static void test_blockdev_libvirt_json(void **state)
{
    (void)state;
    char *cl[] = { "/usr/bin/qemu-system-x86_64", "-machine", "pc-q35-7.2,usb=off,memory-backend=pc.ram",
        "-blockdev", "{\"driver\":\"file\",\"filename\":\"/var/lib/libvirt/images/d.qcow2\","
                     "\"node-name\":\"libvirt-2-storage\",\"auto-read-only\":true,\"discard\":\"unmap\"}",
        "-blockdev", "{\"node-name\":\"libvirt-2-format\",\"read-only\":false,\"driver\":\"qcow2\","
                     "\"file\":\"libvirt-2-storage\",\"backing\":\"libvirt-3-format\"}",
        "-blockdev", "{\"driver\":\"file\",\"filename\":\"/base.qcow2\",\"node-name\":\"libvirt-3-storage\","
                     "\"read-only\":true}",
        "-blockdev", "{\"node-name\":\"libvirt-3-format\",\"read-only\":true,\"driver\":\"qcow2\","
                     "\"file\":\"libvirt-3-storage\"}",
        "-device", "{\"driver\":\"virtio-blk-pci\",\"bus\":\"pci.4\",\"addr\":\"0x0\",\"drive\":\"libvirt-2-format\","
                   "\"id\":\"virtio-disk0\",\"bootindex\":1}",
        "-blockdev", "{\"driver\":\"file\",\"filename\":\"/x.iso\",\"node-name\":\"libvirt-1-storage\","
                     "\"read-only\":true}",
        "-blockdev", "{\"node-name\":\"libvirt-1-format\",\"read-only\":true,\"driver\":\"raw\","
                     "\"file\":\"libvirt-1-storage\"}",
        "-device", "{\"driver\":\"ide-cd\",\"bus\":\"ide.0\",\"drive\":\"libvirt-1-format\",\"id\":\"sata0-0-0\"}" };
    struct vm_config c;
    config(&c, cl, VS_ARRAY_SIZE(cl));
    add_disk(&c, "vda", "libvirt-2-format", NULL);
    const char *socks[] = { "/r/nbd0.sock" };
    struct vm_argv a;
    char *note = NULL;
    vs_err e = { 0 };
    assert_int_equal(rewrite(&c, socks, false, &a, &note, &e), 0);
    /* the whole backing chain goes with the replaced node: the archive holds the disk as the guest saw it */
    assert_int_equal(count(&a, "-blockdev"), 1);
    assert_true(find_pair(&a, "-blockdev", "node-name=libvirt-2-format," NBD("/r/nbd0.sock")) >= 0);
    assert_int_equal(count(&a, "libvirt-3"), 0);
    assert_int_equal(count(&a, "libvirt-1"), 0);
    assert_true(count(&a, "\"drive\":\"libvirt-2-format\"") == 1);
    /* the cdrom device stays, empty */
    assert_true(find_pair(&a, "-device", "{\"driver\":\"ide-cd\",\"bus\":\"ide.0\",\"id\":\"sata0-0-0\"}") >= 0);
    assert_non_null(strstr(note, "'sata0-0-0' emptied"));
    free(note);
    vm_argv_free(&a);

    /* trusted: the cdrom's chain stays, the captured chain still goes */
    assert_int_equal(rewrite(&c, socks, true, &a, &note, &e), 0);
    assert_int_equal(count(&a, "-blockdev"), 3);
    assert_int_equal(count(&a, "libvirt-1-storage"), 2);
    assert_int_equal(count(&a, "libvirt-3"), 0);
    vm_argv_free(&a);
    vm_config_free(&c);
}

/* -drive without id: QEMU's own ids (ide0-hd0, virtio0, ...) name them; the position options stay. */
static void test_drive_default_ids(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-drive", "file=/a.qcow2,format=qcow2",
                   "-drive", "file=/b.raw,if=virtio,format=raw,cache=none,serial=XY,aio=native",
                   "-hdb", "/c.raw", "-cdrom", "/x.iso",
                   "-drive", "file=/d.raw,if=scsi,format=raw,werror=stop", "-drive", "file=/e.raw,if=ide,bus=1,unit=1",
                   "-drive", "file=/f.raw,if=scsi,bus=0" };
    struct vm_config c;
    config(&c, cl, VS_ARRAY_SIZE(cl));
    add_disk(&c, "ide0-hd0", "#block123", "ide0-hd0");
    add_disk(&c, "virtio0", "#block456", "virtio0");
    add_disk(&c, "ide0-hd1", "#block789", "ide0-hd1");
    add_disk(&c, "scsi0-hd0", "#block1000", "scsi0-hd0");
    add_disk(&c, "ide1-hd1", "#block1001", "ide1-hd1");
    add_disk(&c, "scsi0-hd1", "#block1002", "scsi0-hd1");
    const char *socks[] = { "/s0", "/s1", "/s2", "/s3", "/s4", "/s5" };
    struct vm_argv a;
    char *note = NULL;
    vs_err e = { 0 };
    assert_int_equal(rewrite(&c, socks, false, &a, &note, &e), 0);
    /* where QEMU put a drive without index/bus/unit is written out: dropping a drive never moves another */
    assert_true(find_pair(&a, "-drive", "index=0," NBD("/s0")) >= 0);
    assert_true(find_pair(&a, "-drive", "if=virtio,serial=XY,index=0," NBD("/s1")) >= 0);
    assert_true(find_pair(&a, "-drive", "index=1,media=disk," NBD("/s2")) >= 0);
    assert_true(find_pair(&a, "-drive", "if=scsi,werror=stop,index=0," NBD("/s3")) >= 0);
    assert_true(find_pair(&a, "-drive", "if=ide,bus=1,unit=1," NBD("/s4")) >= 0);
    assert_true(find_pair(&a, "-drive", "if=scsi,bus=0,unit=1," NBD("/s5")) >= 0);   /* the bus given, not the unit */
    /* -cdrom is index 2 (pc: ide1-cd0), emptied */
    assert_true(find_pair(&a, "-drive", "index=2,media=cdrom") >= 0);
    assert_string_equal(note, "'ide1-cd0' emptied (no medium)");
    assert_int_equal(count(&a, ".raw"), 0);
    assert_int_equal(count(&a, "qcow2"), 0);
    assert_int_equal(count(&a, "cache=none"), 0);
    assert_int_equal(find_pair(&a, "-hdb", "/c.raw"), -1);
    free(note);
    vm_argv_free(&a);
    vm_config_free(&c);

    /* q35: one IDE unit per bus, so two IDE disks are ide0-hd0 and ide1-hd0 */
    char *q35[] = { "qemu-system-x86_64", "-M", "q35", "-drive", "file=/a.raw,format=raw",
                    "-drive", "file=/b.raw,format=raw,if=ide" };
    config(&c, q35, VS_ARRAY_SIZE(q35));
    add_disk(&c, "b", "#block2", "ide1-hd0");
    assert_int_equal(rewrite(&c, socks, false, &a, &note, &e), 0);
    /* the other disk was not captured and is no cdrom: dropped (never a host path without trust), and this one
     * stays where it was */
    assert_true(find_pair(&a, "-drive", "if=ide,index=1," NBD("/s0")) >= 0);
    assert_int_equal(count(&a, "/a.raw"), 0);
    assert_string_equal(note, "'ide0-hd0' dropped");
    free(note);
    vm_argv_free(&a);
    vm_config_free(&c);
}

/* The ids QEMU 7.2 and 10.0 gave these drives (query-block), on pc and on q35. */
static void test_drive_ids_as_qemu(void **state)
{
    (void)state;
    static const char *const want[2][4] = { { "ide0-hd0", "ide0-hd1", "ide1-cd0", "ide1-hd1" },
                                            { "ide0-hd0", "ide1-hd0", "ide2-cd0", "ide3-hd0" } };
    for (int q35 = 0; q35 < 2; q35++) {
        char *cl[] = { "qemu-system-x86_64", "-M", q35 ? "q35" : "pc", "-drive", "file=/x,format=raw,if=ide",
                       "-hdb", "/x", "-cdrom", "/x", "-drive", "file=/x,format=raw" };
        struct vm_config c;
        config(&c, cl, VS_ARRAY_SIZE(cl));
        for (int i = 0; i < 4; i++)
            add_disk(&c, want[q35][i], "#block1", want[q35][i]);
        const char *socks[] = { "/s0", "/s1", "/s2", "/s3" };
        struct vm_argv a;
        vs_err e = { 0 };
        assert_int_equal(rewrite(&c, socks, false, &a, NULL, &e), 0);
        assert_int_equal(count(&a, "/x"), 0);
        vm_argv_free(&a);
        vm_config_free(&c);
    }
}

/* if=none drives given to devices by id: captured ones keep id and device; a read-only one goes with its device,
 * a cdrom stays empty for its ide-cd. */
static void test_drive_if_none(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-nodefaults",
                   "-drive", "file=/d0.qcow2,if=none,id=d0,format=qcow2,node-name=top0",
                   "-device", "virtio-blk-pci,drive=d0,id=disk0",
                   "-drive", "file=/ro.raw,if=none,id=ro0,readonly=on,format=raw",
                   "-device", "virtio-blk-pci,drive=ro0,id=rodev",
                   "-drive", "file=/c.iso,if=none,id=cd0,readonly=on",
                   "-device", "ide-cd,drive=cd0,id=cdrom0",
                   "-chardev", "null,id=c0", "-serial", "chardev:c0" };
    struct vm_config c;
    config(&c, cl, VS_ARRAY_SIZE(cl));
    add_disk(&c, "disk0", "top0", "d0");
    const char *socks[] = { "/s0" };
    struct vm_argv a;
    char *note = NULL;
    vs_err e = { 0 };
    size_t con;
    assert_int_equal(vm_foreign_replayed(&c, false, &a, &con, &e), 0);
    const char *at = a.v[con];   /* the console goes before the first serial port's neighbour */
    char *next = vs_xstrdup(at ? at : "");
    struct vm_fdisk_opts o = { socks, false };
    assert_int_equal(vm_foreign_disks(&c, &o, &a, &con, &note, &e), 0);
    assert_string_equal(a.v[con] ? a.v[con] : "", next);
    free(next);
    assert_true(find_pair(&a, "-drive", "if=none,id=d0,node-name=top0," NBD("/s0")) >= 0);
    assert_true(find_pair(&a, "-device", "virtio-blk-pci,drive=d0,id=disk0") >= 0);
    assert_int_equal(count(&a, "ro0"), 0);
    assert_int_equal(count(&a, "rodev"), 0);
    assert_true(find_pair(&a, "-drive", "if=none,id=cd0,readonly=on") >= 0);
    assert_true(find_pair(&a, "-device", "ide-cd,drive=cd0,id=cdrom0") >= 0);
    assert_string_equal(note, "'ro0' dropped, 'cd0' emptied (no medium)");
    free(note);
    vm_argv_free(&a);
    vm_config_free(&c);
}

/* A read-only -blockdev disk that is not a cdrom goes with its device; a node a kept option still uses stays. */
static void test_blockdev_uncaptured(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64",
                   "-blockdev", "driver=file,filename=/shared.raw,node-name=shared",
                   "-blockdev", "driver=raw,file=shared,node-name=rw",
                   "-device", "virtio-blk-pci,drive=rw,id=vda",
                   "-blockdev", "driver=raw,file=shared,node-name=ro,read-only=on",
                   "-device", "scsi-hd,drive=ro,id=sdz",
                   "-blockdev", "driver=file,filename=/usr/share/OVMF/OVMF_CODE.fd,node-name=code,read-only=on",
                   "-machine", "q35,pflash0=code" };
    struct vm_config c;
    config(&c, cl, VS_ARRAY_SIZE(cl));
    add_disk(&c, "vda", "rw", NULL);
    const char *socks[] = { "/s0" };
    struct vm_argv a;
    char *note = NULL;
    vs_err e = { 0 };
    assert_int_equal(rewrite(&c, socks, false, &a, &note, &e), 0);
    assert_int_equal(count(&a, "sdz"), 0);
    assert_int_equal(count(&a, "node-name=ro"), 0);
    assert_int_equal(count(&a, "shared"), 0);
    assert_true(find_pair(&a, "-blockdev", "driver=file,filename=/usr/share/OVMF/OVMF_CODE.fd,node-name=code,"
                                           "read-only=on") >= 0);   /* firmware: not a disk */
    assert_string_equal(note, "'sdz' dropped");
    free(note);
    vm_argv_free(&a);

    /* trusted: the read-only disk stays, and with it the file node it shares */
    assert_int_equal(rewrite(&c, socks, true, &a, &note, &e), 0);
    assert_true(find_pair(&a, "-blockdev", "driver=file,filename=/shared.raw,node-name=shared") >= 0);
    assert_true(find_pair(&a, "-device", "scsi-hd,drive=ro,id=sdz") >= 0);
    vm_argv_free(&a);
    vm_config_free(&c);
}

static void test_refusals(void **state)
{
    (void)state;
    struct vm_config c;
    config(&c, mgmt, VS_ARRAY_SIZE(mgmt));
    add_disk(&c, "vdx", "nope", NULL);
    const char *socks[] = { "/s0", "/s1" };
    struct vm_argv a;
    vs_err e = { 0 };
    assert_int_equal(rewrite(&c, socks, false, &a, NULL, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "'vdx'"));
    assert_non_null(strstr(e.msg, "no -blockdev with node-name 'nope'"));
    vm_config_free(&c);

    config(&c, mgmt, VS_ARRAY_SIZE(mgmt));
    add_disk(&c, "one", "a-fmt", NULL);
    add_disk(&c, "two", "a-fmt", NULL);
    assert_int_equal(rewrite(&c, socks, false, &a, NULL, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "'one' and 'two'"));
    vm_config_free(&c);

    config(&c, mgmt, VS_ARRAY_SIZE(mgmt));
    add_disk(&c, "d", "#block1", "ide9-hd0");
    assert_int_equal(rewrite(&c, socks, false, &a, NULL, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "no -drive with id 'ide9-hd0'"));
    vm_config_free(&c);
}

/* The whole argv: the console, our monitors and the NBD nodes together, and the allow-list accepts the view. */
static void test_build_and_check(void **state)
{
    (void)state;
    struct vm_config c;
    config(&c, mgmt, VS_ARRAY_SIZE(mgmt));
    add_disk(&c, "vda", "a-fmt", NULL);
    add_disk(&c, "sdb", "b-fmt", NULL);
    const char *socks[] = { "/run/v/nbd0.sock", "/run/v/nbd1.sock" };
    char *note = NULL;
    struct vm_launch l = { .private_qmp = "/run/p.sock", .console = "/tmp/c.sock", .disk_sockets = socks,
                           .incoming = true, .disk_note = &note };
    struct vm_argv a;
    vs_err e = { 0 };
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-blockdev", "node-name=a-fmt," NBD("/run/v/nbd0.sock")) > 0);
    assert_true(find_pair(&a, "-serial", "chardev:vmsnap-con") > 0);
    assert_int_equal(find_pair(&a, "-serial", "null"), -1);   /* the first serial port is the console */
    assert_non_null(note);
    free(note);
    vm_argv_free(&a);
    l.disk_sockets = NULL;
    assert_true(vm_build_argv(&c, &l, &a, &e) < 0);

    char *refused = NULL;
    struct vm_check k = { 0 };
    int r = vm_config_check(&c, &k, &refused, &e);
    if (refused)
        print_message("refused: %s\n", refused);
    assert_int_equal(r, 0);
    assert_null(refused);
    /* trusted, the cdrom's host path is what --trust-archive lets through */
    k.keep_uncaptured = true;
    assert_int_equal(vm_config_check(&c, &k, &refused, &e), -EPERM);
    assert_non_null(strstr(refused, "/img/cd.iso"));
    free(refused);
    vm_config_free(&c);
}

static bool stored_names(void *opaque, const char *name)
{
    for (const char *const *n = opaque; *n; n++)
        if (!strcmp(*n, name))
            return true;
    return false;
}

/* The user's -kernel/-initrd after "--" replace a foreign VM's recorded ones: the archive then names no host file. */
static void test_user_kernel(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-M", "q35", "-kernel", "/boot/vmlinuz", "-initrd", "rel/initrd",
                   "-append", "console=ttyS0", "-drive", "file=/a.raw,format=raw,if=virtio,id=vda" };
    struct vm_config c;
    config(&c, cl, VS_ARRAY_SIZE(cl));
    add_disk(&c, "vda", "#block1", "vda");
    char *refused = NULL;
    struct vm_check k = { 0 };
    vs_err e = { 0 };
    assert_int_equal(vm_config_check(&c, &k, &refused, &e), -EPERM);
    assert_non_null(strstr(refused, "-kernel /boot/vmlinuz"));
    assert_non_null(strstr(refused, "-initrd rel/initrd"));
    free(refused);
    k.user_files[VM_FILE_KERNEL] = k.user_files[VM_FILE_INITRD] = true;
    assert_int_equal(vm_config_check(&c, &k, &refused, &e), 0);
    /* stored in the archive chain (a snapshot of the resumed VM): boot hands QEMU its copies */
    static const char *const stored[] = { "kernel", "initrd", NULL };
    struct vm_check ks = { .stored = stored_names, .opaque = (void *)stored };
    assert_int_equal(vm_config_check(&c, &ks, &refused, &e), 0);
    /* ... only when the config names it too: boot hands QEMU the stored copy of what c->files names */
    free(c.files[VM_FILE_INITRD]);
    c.files[VM_FILE_INITRD] = NULL;
    assert_int_equal(vm_config_check(&c, &ks, &refused, &e), -EPERM);
    assert_non_null(strstr(refused, "-initrd rel/initrd"));
    free(refused);
    c.files[VM_FILE_INITRD] = vs_xstrdup("/srv/rel/initrd");

    const char *socks[] = { "/s0" };
    struct vm_launch l = { .private_qmp = "/run/p.sock", .disk_sockets = socks };
    l.files[VM_FILE_KERNEL] = "/mine/bz";
    struct vm_argv a;
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-kernel", "/mine/bz") > 0);
    assert_true(find_pair(&a, "-initrd", "rel/initrd") > 0);   /* not given: as recorded */
    assert_int_equal(count(&a, "/boot/vmlinuz"), 0);
    assert_true(find_pair(&a, "-drive", "if=virtio,id=vda,index=0," NBD("/s0")) > 0);
    vm_argv_free(&a);
    vm_config_free(&c);
}

/* Lazy resume of a foreign VM: its RAM backend, explicit or QEMU's own, becomes a private file mapping. */
static void test_foreign_ram(void **state)
{
    (void)state;
    struct vm_config c;
    char why[256];
    struct vm_launch l = { .private_qmp = "/run/p.sock", .mem_path = "/run/x,y/pages/ram" };
    struct vm_argv a;
    vs_err e = { 0 };
    char *plain[] = { "qemu-system-x86_64", "-M", "q35", "-m", "256" };
    config(&c, plain, VS_ARRAY_SIZE(plain));
    assert_int_equal(vm_foreign_ram_check(&c, "pc.ram", 256ull << 20, why, sizeof why), 0);
    assert_int_equal(vm_foreign_ram_check(&c, "pc.ram", 128ull << 20, why, sizeof why), -ENOTSUP);
    assert_non_null(strstr(why, "268435456"));
    assert_int_equal(vm_foreign_ram_check(&c, "mem", 256ull << 20, why, sizeof why), -ENOTSUP);
    assert_non_null(strstr(why, "'mem'"));
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-object", "memory-backend-file,id=pc.ram,size=268435456,mem-path=/run/x,,y/pages/ram,"
                                         "share=off") > 0);
    assert_true(find_pair(&a, "-machine", "memory-backend=pc.ram") > 0);
    vm_argv_free(&a);
    vm_config_free(&c);

    char *memfd[] = { "qemu-system-x86_64", "-object", "memory-backend-memfd,id=mem,size=512M,share=on,seal=on,"
                      "prealloc=on,merge=off", "-machine", "q35,memory-backend=mem", "-m", "512M" };
    config(&c, memfd, VS_ARRAY_SIZE(memfd));
    assert_int_equal(vm_foreign_ram_check(&c, "mem", 512ull << 20, why, sizeof why), 0);
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-object", "memory-backend-file,id=mem,size=512M,merge=off,mem-path=/run/x,,y/pages/ram,"
                                         "share=off") > 0);
    assert_int_equal(count(&a, "memfd"), 0);
    assert_int_equal(count(&a, "-object"), 1);
    vm_argv_free(&a);
    vm_config_free(&c);

    char *lv[] = { "qemu-system-x86_64", "-machine", "pc-q35-7.2,usb=off,memory-backend=pc.ram",
                   "-object", "{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":1073741824,"
                   "\"prealloc\":true}", "-m", "1024" };
    config(&c, lv, VS_ARRAY_SIZE(lv));
    assert_int_equal(vm_foreign_ram_check(&c, "pc.ram", 1ull << 30, why, sizeof why), 0);
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-object", "{\"id\":\"pc.ram\",\"size\":1073741824,\"qom-type\":"
                                         "\"memory-backend-file\",\"mem-path\":\"/run/x,y/pages/ram\",\"share\":false}")
                > 0);
    vm_argv_free(&a);
    vm_config_free(&c);

    char *numa[] = { "qemu-system-x86_64", "-m", "256", "-numa", "node,mem=256" };
    config(&c, numa, VS_ARRAY_SIZE(numa));
    assert_int_equal(vm_foreign_ram_check(&c, "pc.ram", 256ull << 20, why, sizeof why), -ENOTSUP);
    assert_non_null(strstr(why, "-numa"));
    vm_config_free(&c);
    char *other[] = { "qemu-system-x86_64", "-M", "microvm", "-m", "256" };
    config(&c, other, VS_ARRAY_SIZE(other));
    assert_int_equal(vm_foreign_ram_check(&c, "pc.ram", 256ull << 20, why, sizeof why), -ENOTSUP);
    vm_config_free(&c);
}

int main(void)
{
    unsetenv("VMSNAP_QEMU");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blockdev_keyvalue),
        cmocka_unit_test(test_blockdev_libvirt_json),
        cmocka_unit_test(test_drive_default_ids),
        cmocka_unit_test(test_drive_ids_as_qemu),
        cmocka_unit_test(test_drive_if_none),
        cmocka_unit_test(test_blockdev_uncaptured),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_build_and_check),
        cmocka_unit_test(test_user_kernel),
        cmocka_unit_test(test_foreign_ram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
