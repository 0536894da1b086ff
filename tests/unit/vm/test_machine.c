/* Unit tests for machine types: names, the type an older archive ran, the refusal message, the pin in QEMU's argv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "vm/vm.h"

static void test_name_ok(void **state)
{
    (void)state;
    const char *good[] = { "pc-i440fx-7.2", "pc-q35-4.0.1", "microvm", "none", "pc_x.1" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(good); i++)
        assert_true(vm_machine_name_ok(good[i]));
    char longest[VM_MACHINE_NAME_MAX + 1];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    const char *bad[] = { "", "-pc", "pc,accel=kvm", "pc,,x", "a b", "type=pc", "pc\n", "pc/1", longest };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++)
        assert_false(vm_machine_name_ok(bad[i]));
    assert_false(vm_machine_name_ok(NULL));
    longest[VM_MACHINE_NAME_MAX - 1] = 0;
    assert_true(vm_machine_name_ok(longest));
}

static void infer_is(const char *machine, const char *ver, char *const *extra, size_t n, const char *want)
{
    char *got = vm_machine_infer(machine, ver, extra, n);
    if (!want)
        assert_null(got);
    else
        assert_string_equal(got, want);
    free(got);
}

static void test_infer(void **state)
{
    (void)state;
    /* Archives that recorded the alias they were started with, or nothing (QEMU's default "pc"). */
    infer_is(NULL, "7.2.22", NULL, 0, "pc-i440fx-7.2");
    infer_is("pc", "10.0.2", NULL, 0, "pc-i440fx-10.0");
    infer_is("q35", "7.2.22", NULL, 0, "pc-q35-7.2");
    infer_is("pc", "8.2", NULL, 0, "pc-i440fx-8.2");
    /* Versioned or unversioned types are what ran, whatever the version. */
    infer_is("pc-q35-6.2", "7.2.22", NULL, 0, "pc-q35-6.2");
    infer_is("microvm", NULL, NULL, 0, "microvm");
    /* An alias without a version cannot be resolved. */
    infer_is(NULL, NULL, NULL, 0, NULL);
    infer_is("q35", "seven", NULL, 0, NULL);
    /* The extra args' last -machine/-M type; option values are not options. */
    char *m1[] = { "-M", "q35" };
    infer_is(NULL, "7.2.1", m1, 2, "pc-q35-7.2");
    char *m2[] = { "-machine", "type=q35,smm=off", "-rtc", "base=utc" };
    infer_is(NULL, "7.2.1", m2, 4, "pc-q35-7.2");
    char *m3[] = { "-machine", "pc", "--machine", "microvm,x-option-roms=off" };
    infer_is(NULL, "7.2.1", m3, 4, "microvm");
    char *m4[] = { "-append", "-M q35", "-machine", "smm=off" };
    infer_is(NULL, "7.2.1", m4, 4, "pc-i440fx-7.2");
    /* A recorded versioned type wins over the alias that asked for it. */
    infer_is("pc-q35-7.2", "7.2.1", m1, 2, "pc-q35-7.2");
}

static void test_check(void **state)
{
    (void)state;
    char *names[] = { "pc-i440fx-2.10", "pc-q35-7.2", "pc-i440fx-7.2", "microvm", "pc-i440fx-2.9", "none" };
    struct vm_machines m = { .version = "7.2.22", .n = VS_ARRAY_SIZE(names), .names = names };
    vs_err e = { 0 };
    assert_int_equal(vm_machine_check(&m, "/usr/bin/qemu-system-x86_64", "pc-i440fx-7.2", "7.2.22", &e), 0);
    assert_int_equal(vm_machine_check(&m, "/usr/bin/qemu-system-x86_64", "pc-i440fx-10.0", "10.0.2", &e), -ENOTSUP);
    const char *want[] = { "'pc-i440fx-10.0'", "QEMU 10.0.2", "/usr/bin/qemu-system-x86_64", "QEMU 7.2.22",
                           "pc-i440fx-2.9 to pc-i440fx-7.2 (3)" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(want); i++)
        if (!strstr(e.msg, want[i]))
            fail_msg("'%s' not in: %s", want[i], e.msg);
    assert_null(strchr(e.msg, '\n'));
    assert_int_equal(vm_machine_check(&m, "q", "pc-q35-10.0", NULL, &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "pc-q35-7.2 to pc-q35-7.2 (1)"));
    assert_non_null(strstr(e.msg, "unknown version"));
    assert_int_equal(vm_machine_check(&m, "q", "virt-9.0", "9.0.0", &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "no machine type of that family"));
}

/* A resume names the recorded type last, so -machine/-M in the extra args cannot replace it; a cold boot does not
 * pin (the extra args choose). */
static void test_argv_pin(void **state)
{
    (void)state;
    struct vm_config c;
    vm_config_init(&c);
    c.machine = vs_xstrdup("pc-i440fx-7.2");
    c.ram_bytes = 256 << 20;
    c.mem_backend = vs_xstrdup("mem");
    char *extra[] = { "-M", "q35", NULL };
    c.extra = extra;
    c.n_extra = 2;
    struct vm_launch l = { .qemu = "qemu", .private_qmp = "/run/q.sock", .incoming = true };
    struct vm_argv a;
    assert_int_equal(vm_build_argv(&c, &l, &a, NULL), 0);
    ssize_t pin = -1, alias = -1;
    for (size_t i = 0; i + 1 < a.n; i++) {
        if (!strcmp(a.v[i], "-machine") && !strcmp(a.v[i + 1], "type=pc-i440fx-7.2"))
            pin = (ssize_t)i;
        if (!strcmp(a.v[i], "-M") && !strcmp(a.v[i + 1], "q35"))
            alias = (ssize_t)i;
    }
    assert_true(alias >= 0 && pin > alias);
    vm_argv_free(&a);
    l.incoming = false;
    assert_int_equal(vm_build_argv(&c, &l, &a, NULL), 0);
    for (size_t i = 0; i + 1 < a.n; i++)
        assert_false(!strncmp(a.v[i + 1], "type=", 5));
    vm_argv_free(&a);
    c.extra = NULL;
    c.n_extra = 0;
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_ok), cmocka_unit_test(test_infer), cmocka_unit_test(test_check),
        cmocka_unit_test(test_argv_pin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
