/* Unit tests for what only a managing process gave a foreign VM's QEMU (vm_foreign_unmanaged), on the command line
 * libvirt 9.0 writes: its master key secret, fd-passed chardevs and netdevs (key=value and JSON), each rewritten
 * with a note, and what stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "vm/vm.h"
#include "argvtest.h"

#define KEY "{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\"," \
            "\"file\":\"/var/lib/libvirt/qemu/domain-1-t/master-key.aes\"}"

/* The replayed form of cl, rewritten; *note gets the note. */
static void replay(char **cl, size_t n, struct vm_argv *a, size_t *con, char **note)
{
    struct vm_config c;
    vm_config_init(&c);
    vs_err e = { 0 };
    assert_int_equal(vm_config_from_cmdline(&c, cl, n, "/srv", NULL), 0);
    assert_int_equal(vm_foreign_replayed(&c, false, a, con, &e), 0);
    *note = NULL;
    vm_foreign_unmanaged(a, con, note);
    vm_config_free(&c);
}

static void test_libvirt_line(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-name", "guest=t", "-S", "-object", KEY, "-machine", "pc",
                   "-chardev", "socket,id=charmonitor,fd=30,server=on,wait=off", "-mon",
                   "chardev=charmonitor,id=monitor,mode=control", "-chardev", "pty,id=charserial0,fd=31",
                   "-device", "{\"driver\":\"isa-serial\",\"chardev\":\"charserial0\",\"id\":\"serial0\"}",
                   "-netdev", "{\"type\":\"tap\",\"fd\":\"33\",\"vhost\":true,\"vhostfd\":\"35\",\"id\":\"hostnet0\"}",
                   "-netdev", "tap,fd=36,id=hostnet1", "-netdev", "user,id=n2", "-chardev", "null,id=c3",
                   "-sandbox", "on,obsolete=deny", "-nodefaults" };
    struct vm_argv a;
    size_t con;
    char *note;
    replay(cl, VS_ARRAY_SIZE(cl), &a, &con, &note);
    assert_int_equal(count(&a, "master-key"), 0);
    assert_int_equal(count(&a, "fd="), 0);
    assert_int_equal(count(&a, "\"fd\""), 0);
    assert_int_equal(count(&a, "-S"), 0);
    assert_int_not_equal(find_pair(&a, "-chardev", "null,id=charserial0"), -1);
    assert_int_not_equal(find_pair(&a, "-netdev", "user,id=hostnet0"), -1);
    assert_int_not_equal(find_pair(&a, "-netdev", "user,id=hostnet1"), -1);
    assert_int_not_equal(find_pair(&a, "-netdev", "user,id=n2"), -1);
    assert_int_not_equal(find_pair(&a, "-chardev", "null,id=c3"), -1);
    assert_int_not_equal(find_pair(&a, "-sandbox", "on,obsolete=deny"), -1);
    assert_int_not_equal(find_pair(&a, "-machine", "pc"), -1);
    assert_int_equal(count(&a, "isa-serial"), 1);
    assert_non_null(note);
    assert_non_null(strstr(note, "secret masterKey0"));
    assert_non_null(strstr(note, "chardev charserial0 (fd=31"));
    assert_non_null(strstr(note, "netdev hostnet0 (fd=33"));
    assert_non_null(strstr(note, "netdev hostnet1 (fd=36"));
    assert_null(strstr(note, "n2"));
    assert_int_equal(con, SIZE_MAX);   /* -nodefaults: no serial port of vmsnap's */
    free(note);
    vm_argv_free(&a);
}

/* A master key some object still decrypts with stays (QEMU would refuse the line without it), and so does any
 * other secret; nothing to rewrite leaves no note and the console index where it was. */
static void test_kept(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-object", KEY, "-object",
                   "secret,id=s1,file=/etc/pw", "-blockdev",
                   "{\"driver\":\"luks\",\"key-secret\":\"masterKey0\",\"node-name\":\"x\",\"file\":\"f\"}" };
    struct vm_argv a;
    size_t con;
    char *note;
    replay(cl, VS_ARRAY_SIZE(cl), &a, &con, &note);
    assert_int_equal(count(&a, "master-key.aes"), 1);
    assert_int_not_equal(find_pair(&a, "-object", "secret,id=s1,file=/etc/pw"), -1);
    assert_null(note);
    assert_int_equal(con, a.n);
    vm_argv_free(&a);
}

/* Dropping the secret ahead of the serial port moves the console's index with it. */
static void test_console_follows(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-object", KEY, "-m", "64", "-serial", "stdio", "-smp", "1" };
    struct vm_argv a;
    size_t con;
    char *note;
    replay(cl, VS_ARRAY_SIZE(cl), &a, &con, &note);
    assert_int_equal(count(&a, "master-key"), 0);
    assert_int_equal(con, 2);
    assert_string_equal(a.v[con], "-smp");
    assert_null(a.v[a.n]);
    free(note);
    vm_argv_free(&a);
}

/* -nodefaults with libvirt's JSON isa-serial: its chardev (same id) becomes vmsnap's console, no second port. */
static void test_serial_device_console(void **state)
{
    (void)state;
    char *cl[] = { "qemu-system-x86_64", "-nodefaults", "-chardev", "socket,id=charserial0,fd=31,server=on",
                   "-device", "{\"driver\":\"isa-serial\",\"chardev\":\"charserial0\",\"id\":\"serial0\"}" };
    struct vm_config c;
    vm_config_init(&c);
    assert_int_equal(vm_config_from_cmdline(&c, cl, VS_ARRAY_SIZE(cl), "/srv", NULL), 0);
    char *note = NULL;
    struct vm_launch l = { .private_qmp = "/run/q", .console = "/run/con", .replay_note = &note };
    struct vm_argv a;
    vs_err e = { 0 };
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    int i = find_pair(&a, "-chardev", NULL);
    assert_int_not_equal(i, -1);
    assert_non_null(strstr(a.v[i + 1], "id=charserial0"));
    assert_non_null(strstr(a.v[i + 1], "/run/con"));
    assert_int_equal(count(&a, "fd="), 0);
    assert_int_equal(count(&a, "vmsnap-con"), 0);
    assert_int_equal(find_pair(&a, "-serial", NULL), -1);
    assert_null(note);   /* it is the console, not dropped */
    vm_argv_free(&a);
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libvirt_line),
        cmocka_unit_test(test_kept),
        cmocka_unit_test(test_console_follows),
        cmocka_unit_test(test_serial_device_console),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
