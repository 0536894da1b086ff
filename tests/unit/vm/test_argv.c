/* Unit tests for building QEMU's argv: vmsnap's own VMs and replayed foreign command lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "vm/vm.h"
#include "argvtest.h"

static void test_native(void **state)
{
    (void)state;
    struct vm_config c;
    vm_config_init(&c);
    c.machine = vs_xstrdup("pc");
    c.ram_bytes = 128ull << 20;
    c.cpus = 2;
    c.mem_backend = vs_xstrdup("mem");
    c.files[VM_FILE_KERNEL] = vs_xstrdup("/orig/vmlinuz");
    c.files[VM_FILE_INITRD] = vs_xstrdup("/orig/initrd");
    c.append = vs_xstrdup("console=ttyS0");
    c.n_disks = 1;
    c.disks = vs_xcalloc(1, sizeof *c.disks);
    char *extra[] = { "-rtc", "base=utc" };
    assert_int_equal(vm_config_add_extra(&c, extra, 2, NULL), 0);
    const char *socks[] = { "/run/x,y/nbd0.sock" };
    struct vm_launch l = { .accel = "tcg", .private_qmp = "/run/x/qmp.sock", .user_qmp = "/tmp/u.qmp",
                           .console = "/tmp/con.sock", .disk_sockets = socks, .incoming = true };
    l.files[VM_FILE_KERNEL] = "/run/x/kernel";
    struct vm_argv a;
    vs_err e = { 0 };
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_null(a.v[a.n]);
    assert_string_equal(a.v[0], "qemu-system-x86_64");
    assert_true(find_pair(&a, "-object", "memory-backend-ram,id=mem,size=134217728") > 0);
    assert_true(find_pair(&a, "-machine", "pc,memory-backend=mem") > 0);
    assert_true(find_pair(&a, "-m", "134217728b") > 0);
    assert_true(find_pair(&a, "-smp", "2") > 0);
    assert_true(find_pair(&a, "-accel", "tcg") > 0);
    /* the extracted kernel overrides the recorded path; the initrd keeps its own */
    assert_true(find_pair(&a, "-kernel", "/run/x/kernel") > 0);
    assert_true(find_pair(&a, "-initrd", "/orig/initrd") > 0);
    assert_true(find_pair(&a, "-append", "console=ttyS0") > 0);
    /* commas in paths are doubled in QEMU option values */
    assert_true(find_pair(&a, "-drive",
                          "file=nbd+unix:///?socket=/run/x,,y/nbd0.sock,format=raw,if=virtio,id=vmsnap-disk0,"
                          "cache=writeback") > 0);
    assert_true(find_pair(&a, "-chardev", "socket,id=vmsnap-con,path=/tmp/con.sock,server=on,wait=off") > 0);
    assert_true(find_pair(&a, "-serial", "chardev:vmsnap-con") > 0);
    assert_true(find_pair(&a, "-chardev", "socket,id=vmsnap-qmp,path=/run/x/qmp.sock,server=on,wait=off") > 0);
    assert_true(find_pair(&a, "-chardev", "socket,id=vmsnap-user-qmp,path=/tmp/u.qmp,server=on,wait=off") > 0);
    assert_int_equal(count(&a, "mode=control"), 2);
    assert_true(find_pair(&a, "-incoming", "defer") > 0);
    /* extra args last (before -incoming), in order */
    int rtc = find_pair(&a, "-rtc", "base=utc");
    assert_true(rtc > find_pair(&a, "-mon", NULL));
    assert_int_equal(count(&a, "daemonize"), 0);
    vm_argv_free(&a);

    /* a disk without a socket is a clear error */
    l.disk_sockets = NULL;
    assert_true(vm_build_argv(&c, &l, &a, &e) < 0);
    assert_non_null(strstr(e.msg, "disk 0"));
    vm_config_free(&c);
}

static void test_foreign(void **state)
{
    (void)state;
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    char *cl[] = { "/usr/bin/qemu-system-x86_64", "-daemonize", "-pidfile", "/run/q.pid", "-m", "256",
                   "-chardev", "socket,id=mon0,path=/tmp/m.sock,server=on,wait=on", "-mon", "chardev=mon0,mode=control",
                   "-qmp", "unix:/tmp/q.sock,server,nowait", "-monitor", "none",
                   "-serial", "file:/tmp/serial.log", "-serial", "null",
                   "-drive", "file=disk.img,if=virtio", "-S", "-enable-kvm", "-nographic" };
    assert_int_equal(vm_config_from_cmdline(&c, cl, VS_ARRAY_SIZE(cl), "/srv", &e), 0);
    struct vm_launch l = { .private_qmp = "/run/p.sock", .user_qmp = "/tmp/new.qmp", .console = "/tmp/c.sock",
                           .incoming = true };
    struct vm_argv a;
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_string_equal(a.v[0], "qemu-system-x86_64");   /* the recorded binary is never run */
    assert_int_equal(count(&a, "daemonize"), 0);
    assert_int_equal(count(&a, "pidfile"), 0);
    assert_int_equal(count(&a, "q.pid"), 0);
    assert_int_equal(count(&a, "/tmp/q.sock"), 0);
    assert_int_equal(count(&a, "mon0"), 0);   /* the monitor's chardev went with it */
    assert_int_equal(find_pair(&a, "-monitor", NULL), -1);
    assert_int_equal(find_pair(&a, "-S", NULL), -1);
    assert_int_equal(count(&a, "nographic"), 0);
    assert_true(find_pair(&a, "-display", "none") > 0);
    /* the first serial port is the console, the second stays */
    assert_int_equal(count(&a, "serial.log"), 0);
    int s1 = find_pair(&a, "-serial", "chardev:vmsnap-con"), s2 = find_pair(&a, "-serial", "null");
    assert_true(s1 > 0 && s2 > s1);
    /* no accel override: the recorded -enable-kvm stays */
    assert_true(count(&a, "-enable-kvm") == 1);
    assert_true(find_pair(&a, "-drive", "file=disk.img,if=virtio") > 0);
    assert_true(find_pair(&a, "-m", "256") > 0);
    assert_true(find_pair(&a, "-incoming", "defer") > 0);
    assert_int_equal(count(&a, "mode=control"), 2);
    vm_argv_free(&a);

    /* the local choice wins over the recorded one */
    l.qemu = "/opt/q/qemu";
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_string_equal(a.v[0], "/opt/q/qemu");
    assert_int_equal(count(&a, "/usr/bin/qemu-system-x86_64"), 0);
    vm_argv_free(&a);
    l.qemu = NULL;

    /* an accel override replaces the recorded one */
    l.accel = "tcg";
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_int_equal(count(&a, "-enable-kvm"), 0);
    assert_true(find_pair(&a, "-accel", "tcg") > 0);
    vm_argv_free(&a);
    vm_config_free(&c);

    /* no -serial: ours becomes the default first serial port */
    char *cl2[] = { "qemu-system-x86_64", "-m", "128M" };
    vm_config_init(&c);
    assert_int_equal(vm_config_from_cmdline(&c, cl2, 3, "/", &e), 0);
    assert_int_equal(c.ram_bytes, 128ull << 20);
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    assert_true(find_pair(&a, "-serial", "chardev:vmsnap-con") > 0);
    vm_argv_free(&a);
    vm_config_free(&c);
}

static void test_escape(void **state)
{
    (void)state;
    char *s = vm_qemu_escape("a,b,,c");
    assert_string_equal(s, "a,,b,,,,c");
    free(s);
    s = vm_qemu_escape("");
    assert_string_equal(s, "");
    free(s);
}

static void test_accel_explicit(void **state)
{
    (void)state;
    char out[8];
    vs_err e = { 0 };
    assert_int_equal(vm_accel_resolve("tcg", NULL, NULL, out, &e), 0);
    assert_string_equal(out, "tcg");
    assert_int_equal(vm_accel_resolve("kvm", NULL, NULL, out, &e), 0);
    assert_string_equal(out, "kvm");
    assert_true(vm_accel_resolve("hvf", NULL, NULL, out, &e) < 0);
    assert_non_null(strstr(e.msg, "hvf"));
}

int main(void)
{
    unsetenv("VMSNAP_QEMU");   /* the default binary is asserted */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_accel_explicit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
