/* Unit tests for QEMU's option syntax (src/vm/qopt.c): fields, ",," escapes, implied keys, option names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "vm/vm.h"

static void test_escape_roundtrip(void **state)
{
    (void)state;
    const char *vals[] = { "", "a", "a,b", ",", ",,", "x=y,z", "/p/a,,b," };
    for (size_t i = 0; i < VS_ARRAY_SIZE(vals); i++) {
        char *esc = vm_qemu_escape(vals[i]);
        VS_AUTOFREE char *opt = vs_xasprintf("k=%s,next=1", esc);
        struct vm_qopt_field f;
        char *back = vm_qopt_get(opt, "k", &f);
        assert_non_null(back);
        assert_string_equal(back, vals[i]);
        assert_int_equal(f.vend - f.vstart, strlen(esc));
        VS_AUTOFREE char *next = vm_qopt_get(opt, "next", NULL);
        assert_string_equal(next, "1");   /* an escaped value never adds a key */
        free(back);
        free(esc);
    }
}

static void test_fields(void **state)
{
    (void)state;
    const char *s = "pflash,file=/a,,b,readonly,unit=1";
    size_t n = strlen(s), pos = 0;
    struct vm_qopt_field f;
    const char *want_keys[] = { NULL, "file", NULL, "unit" };
    const char *want_vals[] = { "pflash", "/a,b", "readonly", "1" };
    size_t k = 0;
    while (vm_qopt_next(s, n, &pos, &f)) {
        assert_true(k < 4);
        if (want_keys[k])
            assert_true(vm_qopt_key_is(&f, want_keys[k]));
        else
            assert_null(f.key);
        VS_AUTOFREE char *v = vm_qopt_unescape(s, f.vstart, f.vend);
        assert_string_equal(v, want_vals[k]);
        k++;
    }
    assert_int_equal(k, 4);
}

static void test_implied(void **state)
{
    (void)state;
    VS_AUTOFREE char *a = vm_qopt_get_implied("q35,accel=kvm", "type");
    VS_AUTOFREE char *b = vm_qopt_get_implied("accel=kvm,type=pc", "type");
    VS_AUTOFREE char *c = vm_qopt_get_implied("accel=kvm", "type");
    VS_AUTOFREE char *d = vm_qopt_get_implied("pc,,accel=kvm", "type");
    assert_string_equal(a, "q35");
    assert_string_equal(b, "pc");
    assert_null(c);
    assert_string_equal(d, "pc,accel=kvm");
}

/* A foreign command line is read with the same rules as the file references: ",," does not end a field. */
static void test_cmdline_escapes(void **state)
{
    (void)state;
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    char *cl[] = { "qemu", "-machine", "pc,,accel=kvm", "-m", "size=64M" };
    assert_int_equal(vm_config_from_cmdline(&c, cl, VS_ARRAY_SIZE(cl), "/", &e), 0);
    assert_string_equal(c.machine, "pc,accel=kvm");
    assert_null(c.accel);
    assert_int_equal(c.ram_bytes, 64ull << 20);
    vm_config_free(&c);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(vm_qopt_name("-drive"), "drive");
    assert_string_equal(vm_qopt_name("--drive"), "drive");
    assert_null(vm_qopt_name("disk.img"));
    assert_null(vm_qopt_name("-"));
    assert_false(vm_qopt_takes_arg("nodefaults"));
    assert_true(vm_qopt_takes_arg("plugin"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_roundtrip), cmocka_unit_test(test_fields), cmocka_unit_test(test_implied),
        cmocka_unit_test(test_cmdline_escapes), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
