/* Unit tests for the allow-list (src/vm/allow.c): what an archive's config may put on QEMU's command line. Each
 * option a security review used against `boot` is refused with its reason; what vmsnap itself records passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "vm/vm.h"

static bool stored_names(void *opaque, const char *name)
{
    for (const char *const *n = opaque; *n; n++)
        if (!strcmp(*n, name))
            return true;
    return false;
}

static const char *const none_stored[] = { NULL };

/* vm_config_check of a native config whose recorded extra args are args; *out the report (or NULL). */
static int check_extra(const char *const *args, size_t n, const char *const *stored, char **out)
{
    struct vm_config c;
    vm_config_init(&c);
    c.extra = vs_xcalloc(n + 1, sizeof *c.extra);
    for (size_t i = 0; i < n; i++)
        c.extra[i] = vs_xstrdup(args[i]);
    c.n_extra = n;
    struct vm_check k = { .stored = stored_names, .opaque = (void *)stored, .user_extra_from = n };
    vs_err e = { 0 };
    int r = vm_config_check(&c, &k, out, &e);
    vm_config_free(&c);
    return r;
}

static void expect_refused(const char *opt, const char *val, const char *reason)
{
    const char *args[] = { opt, val };
    char *rep = NULL;
    int r = check_extra(args, val ? 2 : 1, none_stored, &rep);
    if (r != -EPERM || !rep || !strstr(rep, reason) || !strstr(rep, opt))
        fail_msg("%s %s: expected refusal naming '%s', got %d: %s", opt, val ? val : "", reason, r, rep ? rep : "");
    free(rep);
}

static void test_review_options_refused(void **state)
{
    (void)state;
    expect_refused("-chardev", "file,id=c,path=/root/.bashrc", "backend 'file' is not on the allow-list");
    expect_refused("-plugin", "/tmp/evil.so", "loads a host shared library");
    expect_refused("-sandbox", "off", "seccomp");
    expect_refused("-netdev", "tap,id=n,script=/tmp/x.sh", "type 'tap' is not on the allow-list");
    expect_refused("-netdev", "user,id=n,guestfwd=tcp:10.0.2.1:1-cmd:sh", "key 'guestfwd'");
    expect_refused("-initrd", "/etc/shadow", "a host file the archive does not store");
    expect_refused("-add-fd", "fd=3,set=1", "host file descriptors");
    expect_refused("-object", "secret,id=s,file=/etc/shadow", "qom-type 'secret' is not on the allow-list");
    expect_refused("-object", "rng-random,id=r,filename=/dev/mem", "qom-type 'rng-random'");
    expect_refused("-object", "memory-backend-file,id=m,size=1M,mem-path=/etc/shadow", "memory-backend-file");
    expect_refused("-device", "vfio-pci,host=01:00.0", "device model 'vfio-pci'");
    expect_refused("-device", "virtio-net-pci,romfile=/etc/shadow", "romfile: a plain value");
    expect_refused("-drive", "file=/dev/sda,if=virtio", "a host disk");
    expect_refused("-drive", "file=/etc/shadow,if=pflash", "a host file the archive does not store");
    expect_refused("-serial", "file:/root/.bashrc", "only null, none or chardev:ID");
    expect_refused("-readconfig", "/etc/qemu.conf", "reads or writes a host file");
    expect_refused("-L", "/home/u/fw", "outside QEMU's");
    expect_refused("-qmp", "tcp:0.0.0.0:4444,server=on", "monitor");
    expect_refused("-S", NULL, "vmsnap starts the VM itself");
    expect_refused("/etc/shadow", NULL, "a bare argument");
    expect_refused("-global", "virtio-net-pci.romfile=/etc/shadow", "DEVICE.PROPERTY=VALUE");
    expect_refused("-machine", "pc,pflash0=n,kernel=/etc/shadow", "key 'kernel' is not on the allow-list");
    expect_refused("-frobnicate", "x", "not on vmsnap's allow-list");
    expect_refused("-device", "driver=vfio-pci,host=01:00.0", "device model 'vfio-pci'");
    expect_refused("-device", "id=x,romfile=", "no device model");
    expect_refused("-blockdev", "driver=host_device,node-name=d,filename=/dev/sda", "driver: only file raw qcow2");
    expect_refused("-drive", "if=pflash,format=vvfat,file=fat:/etc", "format: only raw qcow2");
    /* a -drive without file= names no host file, but its medium cannot come in by another key either */
    expect_refused("-drive", "if=virtio,driver=file,filename=/etc/shadow", "key 'driver'");
    expect_refused("-drive", "if=virtio,file.filename=/etc/shadow", "key 'file.filename'");
    expect_refused("-drive", "if=ide,media=cdrom,serial=a\033b", "serial: control characters");
    const char *empty[] = { "-drive", "if=ide,media=cdrom,readonly=on,id=cd0,bus=1,unit=0,serial=My Disk" };
    char *rep = NULL;
    assert_int_equal(check_extra(empty, 2, none_stored, &rep), 0);
    expect_refused("-netdev", "user,id=n,type=tap", "type 'tap'");
    /* an escaped comma cannot smuggle a key: the value is one word, and a word has no '/' */
    expect_refused("-smp", "2,,path=/etc/shadow", "cpus: a plain value");
}

static void test_all_reasons_in_one_line(void **state)
{
    (void)state;
    const char *args[] = { "-plugin", "a.so", "-sandbox", "off", "-chardev", "file,id=x,path=/tmp/\033[2Jx" };
    char *rep = NULL;
    assert_int_equal(check_extra(args, 6, none_stored, &rep), -EPERM);
    assert_non_null(strstr(rep, "-plugin"));
    assert_non_null(strstr(rep, "-sandbox"));
    assert_non_null(strstr(rep, "-chardev"));
    for (const char *p = rep; *p; p++)   /* printable: no terminal escapes from the archive */
        assert_true(*p >= 0x20 && *p < 0x7f);
    free(rep);
}

static void test_what_vmsnap_records_passes(void **state)
{
    (void)state;
    const char *args[] = { "-drive", "if=pflash,format=raw,unit=0,file=/tmp/code.bin,readonly=on",
                           "-drive", "if=pflash,format=raw,unit=1,file=/tmp/vars,,1.fd",
                           "-bios", "/usr/share/seabios/bios-256k.bin",
                           "-smp", "2", "-m", "128M", "-rtc", "base=utc,clock=host", "-serial", "null",
                           "-device", "virtio-rng-pci,id=rng0", "-device", "loader,addr=0x1000,data=0x1,data-len=4",
                           "-machine", "pc-i440fx-7.2,memory-backend=mem", "-cpu", "max,+x2apic,-vmx",
                           "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
                           "-chardev", "null,id=c0", "-object", "memory-backend-ram,id=m2,size=64M",
                           "-no-reboot", "-append", "console=ttyS0 quiet" };
    const char *stored[] = { "pflash0", "pflash1", NULL };
    struct vm_config c;
    vm_config_init(&c);
    size_t n = VS_ARRAY_SIZE(args);
    c.extra = vs_xcalloc(n + 1, sizeof *c.extra);
    for (size_t i = 0; i < n; i++)
        c.extra[i] = vs_xstrdup(args[i]);
    c.n_extra = n;
    vm_config_add_xfile(&c, "pflash0", "/tmp/code.bin", false);
    vm_config_add_xfile(&c, "pflash1", "/tmp/vars,1.fd", true);
    c.machine = vs_xstrdup("q35");
    c.mem_backend = vs_xstrdup("mem");
    c.files[VM_FILE_KERNEL] = vs_xstrdup("/boot/vmlinuz");
    struct vm_check k = { .stored = stored_names, .opaque = (void *)stored, .user_extra_from = n };
    k.user_files[VM_FILE_KERNEL] = true;
    char *rep = NULL;
    vs_err e = { 0 };
    int r = vm_config_check(&c, &k, &rep, &e);
    if (r != 0)
        fail_msg("refused: %s", rep);

    /* not stored: the pflash files are host paths; and the kernel no longer the user's own */
    k.opaque = (void *)none_stored;
    k.user_files[VM_FILE_KERNEL] = false;
    assert_int_equal(vm_config_check(&c, &k, &rep, &e), -EPERM);
    assert_non_null(strstr(rep, "/tmp/code.bin"));
    assert_non_null(strstr(rep, "-kernel /boot/vmlinuz"));
    assert_non_null(strstr(rep, "pflash1: a host file the archive does not store"));
    free(rep);

    /* the user's own args after "--" are not the archive's */
    k.user_extra_from = 0;
    k.user_files[VM_FILE_KERNEL] = true;
    assert_int_equal(vm_config_check(&c, &k, &rep, &e), 0);
    vm_config_free(&c);
}

/* machine and interface: refused when malformed, and escaped on the command line whatever they hold. */
static void test_injection_fields(void **state)
{
    (void)state;
    struct vm_config c;
    vm_config_init(&c);
    c.machine = vs_xstrdup("pc,accel=kvm");
    c.mem_backend = vs_xstrdup("mem,x=y");
    c.ram_bytes = 64 << 20;
    c.n_disks = 1;
    c.disks = vs_xcalloc(1, sizeof *c.disks);
    c.disks[0].iface = vs_xstrdup("none,snapshot=on");
    c.accel = vs_xstrdup("kvm\033[2J");
    struct vm_check k = { 0 };
    char *rep = NULL;
    vs_err e = { 0 };
    assert_int_equal(vm_config_check(&c, &k, &rep, &e), -EPERM);
    assert_non_null(strstr(rep, "'machine pc,accel=kvm' (expected a machine type"));
    assert_non_null(strstr(rep, "'interface none,snapshot=on' (expected virtio"));
    assert_non_null(strstr(rep, "'memory-backend mem,x=y'"));
    assert_non_null(strstr(rep, "'accel kvm?[2J' (expected kvm or tcg)"));
    free(rep);

    const char *socks[] = { "/run/n,0.sock" };
    struct vm_launch l = { .private_qmp = "/run/p.sock", .disk_sockets = socks };
    struct vm_argv a;
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    bool drive = false, machine = false;
    for (size_t i = 0; i + 1 < a.n; i++) {
        if (!strcmp(a.v[i], "-drive")) {
            drive = true;
            assert_non_null(strstr(a.v[i + 1], "if=none,,snapshot=on,"));
            VS_AUTOFREE char *snap = vm_qopt_get(a.v[i + 1], "snapshot", NULL);
            VS_AUTOFREE char *iface = vm_qopt_get(a.v[i + 1], "if", NULL);
            VS_AUTOFREE char *sock = vm_qopt_get(a.v[i + 1], "file", NULL);
            assert_null(snap);
            assert_string_equal(iface, "none,snapshot=on");
            assert_string_equal(sock, "nbd+unix:///?socket=/run/n,0.sock");
        }
        if (!strcmp(a.v[i], "-machine")) {
            machine = true;
            VS_AUTOFREE char *accel = vm_qopt_get(a.v[i + 1], "accel", NULL);
            VS_AUTOFREE char *type = vm_qopt_get_implied(a.v[i + 1], "type");
            assert_null(accel);
            assert_string_equal(type, "pc,accel=kvm");
        }
    }
    assert_true(drive && machine);
    vm_argv_free(&a);
    vm_config_free(&c);
}

/* A foreign command line goes through the same list; its own disks and files are host paths. */
static void test_foreign(void **state)
{
    (void)state;
    char *cl[] = { "qemu", "-daemonize", "-pidfile", "/run/q.pid", "-m", "256", "-nodefaults",
                   "-qmp", "unix:/tmp/q.sock,server,nowait", "-chardev", "socket,id=s0,path=/tmp/s,server=on",
                   "-serial", "chardev:s0", "-kernel", "/boot/vmlinuz", "-drive", "file=/srv/disk.img,if=virtio",
                   "-plugin", "/tmp/x.so" };
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    assert_int_equal(vm_config_from_cmdline(&c, cl, VS_ARRAY_SIZE(cl), "/srv", &e), 0);
    struct vm_check k = { 0 };
    char *rep = NULL;
    assert_int_equal(vm_config_check(&c, &k, &rep, &e), -EPERM);
    assert_non_null(strstr(rep, "'-kernel /boot/vmlinuz' (a host file"));
    assert_non_null(strstr(rep, "'-drive file=/srv/disk.img,if=virtio' (a host disk of the recorded VM"));
    assert_non_null(strstr(rep, "-plugin"));
    /* what vmsnap drops or replaces is not reported */
    assert_null(strstr(rep, "pidfile"));
    assert_null(strstr(rep, "q.sock"));
    assert_null(strstr(rep, "socket,id=s0"));
    free(rep);
    vm_config_free(&c);

    char *ok[] = { "qemu", "-m", "256", "-nodefaults", "-chardev", "socket,id=s0,path=/tmp/s,server=on",
                   "-serial", "chardev:s0", "-machine", "q35" };
    vm_config_init(&c);
    assert_int_equal(vm_config_from_cmdline(&c, ok, VS_ARRAY_SIZE(ok), "/srv", &e), 0);
    assert_int_equal(vm_config_check(&c, &k, &rep, &e), 0);
    vm_config_free(&c);
}

static void test_redact(void **state)
{
    (void)state;
    char *cl[] = { "qemu", "-object", "secret,id=sec0,data=hunter2,format=raw", "-vnc", ":0,password=on",
                   "-spice", "port=5900,password=letmein", "-iscsi", "user=u,password=pw1",
                   "-drive", "file=iscsi://bob:pw2@host/iqn/0,if=none",
                   "-blockdev", "{\"driver\":\"rbd\",\"pool\":\"p\",\"password\":\"pw3\"}",
                   "-object", "{\"qom-type\":\"secret\",\"id\":\"s1\",\"data\":\"pw4\"}",
                   "-name", "guest=g,data=1" };
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    assert_int_equal(vm_config_from_cmdline(&c, cl, VS_ARRAY_SIZE(cl), "/", &e), 0);
    assert_int_equal(c.redacted, 6);
    VS_AUTOFREE char *json = vm_config_to_json(&c);
    const char *secrets[] = { "hunter2", "letmein", "pw1", "pw2", "pw3", "pw4" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(secrets); i++)
        if (strstr(json, secrets[i]))
            fail_msg("'%s' stored in clear: %s", secrets[i], json);
    assert_non_null(strstr(json, "password=on"));     /* a boolean is not a secret */
    assert_non_null(strstr(json, "iscsi://bob:" VM_REDACTED "@host/iqn/0"));
    assert_non_null(strstr(json, "secret,id=sec0,data=" VM_REDACTED ",format=raw"));
    assert_non_null(strstr(json, "guest=g,data=1"));      /* data= only of secret objects */
    vm_config_free(&c);
}

/* QEMU's JSON form (libvirt's -device, -object, -blockdev, -netdev, -audiodev) is checked as key=value is: the same
 * models, properties and path rules, nested members as their dotted keys. */
static void test_json_forms(void **state)
{
    (void)state;
    const char *ok[] = {
        "-object", "{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":268435456}",
        "-device", "{\"driver\":\"virtio-blk-pci\",\"bus\":\"pci.0\",\"addr\":\"0x2\",\"drive\":\"d0\","
                   "\"id\":\"virtio-disk0\",\"bootindex\":1}",
        "-chardev", "null,id=charserial0",
        "-device", "{\"driver\":\"isa-serial\",\"chardev\":\"charserial0\",\"id\":\"serial0\",\"index\":0}",
        "-netdev", "{\"type\":\"user\",\"id\":\"n0\",\"ipv6\":false}",
        "-audiodev", "{\"id\":\"audio1\",\"driver\":\"none\"}",
        "-audiodev", "none,id=audio2",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-blockdev", "{\"driver\":\"raw\",\"node-name\":\"n1\",\"read-only\":true,\"discard\":\"unmap\"}",
    };
    char *rep = NULL;
    if (check_extra(ok, VS_ARRAY_SIZE(ok), none_stored, &rep) != 0)
        fail_msg("refused: %s", rep);

    expect_refused("-object", "{\"qom-type\":\"secret\",\"id\":\"s\",\"file\":\"/etc/shadow\"}",
                   "qom-type 'secret' is not on the allow-list");
    expect_refused("-netdev", "{\"type\":\"tap\",\"id\":\"n\",\"script\":\"/tmp/x.sh\"}", "type 'tap'");
    expect_refused("-netdev", "{\"type\":\"user\",\"id\":\"n\",\"script\":\"/tmp/x.sh\"}", "key 'script'");
    expect_refused("-netdev", "{\"type\":\"user\",\"id\":\"n\",\"hostfwd\":[{\"str\":\"tcp::22-:22\"}]}",
                   "key 'hostfwd.0.str'");
    /* a file in a nested object is file.filename, as key=value writes it: never a host path of the archive */
    expect_refused("-blockdev", "{\"driver\":\"qcow2\",\"node-name\":\"n\",\"file\":{\"driver\":\"file\","
                   "\"filename\":\"/etc/shadow\"}}", "file.filename: names a file vmsnap does not record");
    expect_refused("-blockdev", "{\"driver\":\"raw\",\"node-name\":\"n\",\"file\":{\"driver\":\"host_device\","
                   "\"filename\":\"x\"}}", "file.driver: only file");
    expect_refused("-device", "{\"driver\":\"virtio-rng-pci\",\"driver\":\"vfio-pci\"}", "a key repeated");
    expect_refused("-device", "{\"driver\":\"virtio-rng-pci\",\"id\":\"r\"", "not one JSON object");
    expect_refused("-device", "{\"driver\":\"vfio-pci\",\"host\":\"01:00.0\"}", "device model 'vfio-pci'");
    expect_refused("-device", "{\"id\":\"x\"}", "no device model");
    expect_refused("-device", "{\"driver\":\"virtio-net-pci\",\"romfile\":\"/etc/shadow\"}", "romfile: a plain value");
    expect_refused("-device", "{\"driver\":\"isa-serial\",\"chardev\":{\"path\":\"/root/.bashrc\"}}",
                   "device property 'chardev.path'");
    expect_refused("-device", "{\"driver\":\"isa-serial\",\"chardev\":null}", "chardev: a string, number or boolean");
    expect_refused("-device", "{\"driver\":\"virtio-blk-pci\",\"bootindex\":1.5}", "bootindex: a string, number");
    expect_refused("-device", "{\"driver\":\"loader\",\"file\":\"/etc/shadow\"}", "file: names a file");
    expect_refused("-device", "{\"driver\":\"e1000\",\"mac\":\"52:54:00:12:34:56\\u001b[2J\"}", "mac: a plain value");
    expect_refused("-chardev", "{\"backend\":\"file\",\"id\":\"c\",\"path\":\"/root/.bashrc\"}",
                   "QEMU reads -chardev as key=value");
    expect_refused("-audiodev", "{\"id\":\"a\",\"driver\":\"pa\"}", "driver 'pa' is not on the allow-list");
    expect_refused("-audiodev", "none,id=a,out.path=/tmp/x", "key 'out.path'");
    expect_refused("-sandbox", "on,spawn=allow", "seccomp");
    expect_refused("-sandbox", "on,enable=off", "seccomp");
    expect_refused("-sandbox", "obsolete=deny", "seccomp");
}

/* The command line libvirt 9.0 wrote for a domain (tests/integration/libvirt), one disk captured: allowed as boot
 * replays it (monitor gone, fd chardev null, master key dropped, the other disks dropped) with the user's kernel. */
static const char libvirt_config[] =
    "{\"version\":1,\"foreign\":true,\"ram\":268435456,\"cpus\":1,\"machine\":\"pc-i440fx-7.2\","
    "\"memory-backend\":\"pc.ram\",\"cmdline\":[\"/usr/bin/qemu-system-x86_64\","
    "\"-name\",\"guest=d,debug-threads=on\",\"-S\","
    "\"-object\",\"{\\\"qom-type\\\":\\\"secret\\\",\\\"id\\\":\\\"masterKey0\\\",\\\"format\\\":\\\"raw\\\","
    "\\\"file\\\":\\\"/var/lib/libvirt/qemu/domain-1-d/master-key.aes\\\"}\","
    "\"-machine\",\"pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram\",\"-accel\",\"tcg\","
    "\"-cpu\",\"qemu64\",\"-m\",\"256\","
    "\"-object\",\"{\\\"qom-type\\\":\\\"memory-backend-ram\\\",\\\"id\\\":\\\"pc.ram\\\",\\\"size\\\":268435456}\","
    "\"-overcommit\",\"mem-lock=off\",\"-smp\",\"1,sockets=1,cores=1,threads=1\","
    "\"-uuid\",\"2cfba653-2ce5-4b8c-b231-9c70ae554718\",\"-display\",\"none\",\"-no-user-config\",\"-nodefaults\","
    "\"-chardev\",\"socket,id=charmonitor,fd=29,server=on,wait=off\","
    "\"-mon\",\"chardev=charmonitor,id=monitor,mode=control\",\"-rtc\",\"base=utc\",\"-no-shutdown\",\"-no-acpi\","
    "\"-boot\",\"strict=on\",\"-kernel\",\"/tmp/l/vmlinuz\",\"-initrd\",\"/tmp/l/initrd.gz\","
    "\"-append\",\"console=ttyS0 quiet\","
    "\"-blockdev\",\"{\\\"driver\\\":\\\"file\\\",\\\"filename\\\":\\\"/tmp/d/vda.qcow2\\\","
    "\\\"node-name\\\":\\\"libvirt-3-storage\\\",\\\"auto-read-only\\\":true,\\\"discard\\\":\\\"unmap\\\"}\","
    "\"-blockdev\",\"{\\\"node-name\\\":\\\"libvirt-3-format\\\",\\\"read-only\\\":false,\\\"driver\\\":\\\"qcow2\\\","
    "\\\"file\\\":\\\"libvirt-3-storage\\\",\\\"backing\\\":null}\","
    "\"-device\",\"{\\\"driver\\\":\\\"virtio-blk-pci\\\",\\\"bus\\\":\\\"pci.0\\\",\\\"addr\\\":\\\"0x2\\\","
    "\\\"drive\\\":\\\"libvirt-3-format\\\",\\\"id\\\":\\\"virtio-disk0\\\",\\\"bootindex\\\":1}\","
    "\"-blockdev\",\"{\\\"driver\\\":\\\"file\\\",\\\"filename\\\":\\\"/tmp/d/vdb.raw\\\","
    "\\\"node-name\\\":\\\"libvirt-2-storage\\\",\\\"auto-read-only\\\":true,\\\"discard\\\":\\\"unmap\\\"}\","
    "\"-blockdev\",\"{\\\"node-name\\\":\\\"libvirt-2-format\\\",\\\"read-only\\\":true,\\\"driver\\\":\\\"raw\\\","
    "\\\"file\\\":\\\"libvirt-2-storage\\\"}\","
    "\"-device\",\"{\\\"driver\\\":\\\"virtio-blk-pci\\\",\\\"bus\\\":\\\"pci.0\\\",\\\"addr\\\":\\\"0x3\\\","
    "\\\"drive\\\":\\\"libvirt-2-format\\\",\\\"id\\\":\\\"virtio-disk1\\\"}\","
    "\"-chardev\",\"socket,id=charserial0,fd=28,server=on,wait=off\","
    "\"-device\",\"{\\\"driver\\\":\\\"isa-serial\\\",\\\"chardev\\\":\\\"charserial0\\\",\\\"id\\\":\\\"serial0\\\","
    "\\\"index\\\":0}\",\"-audiodev\",\"{\\\"id\\\":\\\"audio1\\\",\\\"driver\\\":\\\"none\\\"}\","
    "\"-sandbox\",\"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny\","
    "\"-msg\",\"timestamp=on\"%s],"
    "\"disks\":[{\"name\":\"vda\",\"stream\":\"disk-vda\",\"size\":67108864,\"format\":\"raw\","
    "\"interface\":\"virtio-blk-pci\",\"device\":\"virtio-disk0\",\"node\":\"libvirt-3-format\"}]}";

static int check_libvirt(const char *more, char **rep)
{
    VS_AUTOFREE char *json = vs_xasprintf(libvirt_config, more);
    struct vm_config c;
    vs_err e = { 0 };
    assert_int_equal(vm_config_from_json(json, strlen(json), &c, &e), 0);
    struct vm_check k = { 0 };
    k.user_files[VM_FILE_KERNEL] = k.user_files[VM_FILE_INITRD] = true;
    int r = vm_config_check(&c, &k, rep, &e);
    vm_config_free(&c);
    return r;
}

static void test_libvirt_domain(void **state)
{
    (void)state;
    char *rep = NULL;
    if (check_libvirt("", &rep) != 0)
        fail_msg("a libvirt domain's archive refused: %s", rep);
    /* tampered: what the archive adds in JSON is refused, naming it */
    const char *tampered[][2] = {
        { ",\"-object\",\"{\\\"qom-type\\\":\\\"secret\\\",\\\"id\\\":\\\"k\\\",\\\"file\\\":\\\"/etc/shadow\\\"}\","
          "\"-device\",\"{\\\"driver\\\":\\\"virtio-rng-pci\\\",\\\"id\\\":\\\"k\\\"}\"", "qom-type 'secret'" },
        { ",\"-netdev\",\"{\\\"type\\\":\\\"user\\\",\\\"id\\\":\\\"n\\\",\\\"script\\\":\\\"/x\\\"}\"",
          "key 'script'" },
        { ",\"-device\",\"{\\\"driver\\\":\\\"isa-serial\\\",\\\"id\\\":\\\"s\\\",\\\"id\\\":\\\"t\\\"}\"",
          "a key repeated" },
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(tampered); i++) {
        assert_int_equal(check_libvirt(tampered[i][0], &rep), -EPERM);
        if (!strstr(rep, tampered[i][1]))
            fail_msg("expected '%s' in: %s", tampered[i][1], rep);
        free(rep);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_review_options_refused), cmocka_unit_test(test_all_reasons_in_one_line),
        cmocka_unit_test(test_what_vmsnap_records_passes), cmocka_unit_test(test_injection_fields),
        cmocka_unit_test(test_foreign), cmocka_unit_test(test_redact), cmocka_unit_test(test_json_forms),
        cmocka_unit_test(test_libvirt_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
