/* Unit tests for QEMU's option syntax (src/vm/qopt.c): fields, ",," escapes, implied keys, option names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
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

static void test_set(void **state)
{
    (void)state;
    char *s = vm_qopt_set("virtio-net-pci,mac=52:54:00:00:00:01,netdev=n0", "mac", "02:00:00:00:00:02");
    assert_string_equal(s, "virtio-net-pci,mac=02:00:00:00:00:02,netdev=n0");
    free(s);
    s = vm_qopt_set("e1000", "mac", "a,b");   /* appended, escaped */
    assert_string_equal(s, "e1000,mac=a,,b");
    free(s);
    s = vm_qopt_set("x,id=a,,b,mac=1", "mac", "2");   /* ",," inside a value is no field boundary */
    assert_string_equal(s, "x,id=a,,b,mac=2");
    free(s);
}

static void test_macs(void **state)
{
    (void)state;
    uint8_t id[16] = { 1, 2, 3 }, id2[16] = { 9 }, m[6], m2[6], parsed[6];
    vm_mac_for_clone(id, 0, m);
    vm_mac_for_clone(id, 1, m2);
    assert_int_equal(m[0] & 3, 2);    /* locally administered, unicast */
    assert_int_equal(m2[0] & 3, 2);
    assert_memory_not_equal(m, m2, 6);
    vm_mac_for_clone(id2, 0, m2);
    assert_memory_not_equal(m, m2, 6);
    assert_true(vm_mac_parse("52:54:00:Ab:cd:0f", parsed));
    assert_int_equal(parsed[3], 0xab);
    assert_false(vm_mac_parse("52:54:00:ab:cd", parsed));
    assert_false(vm_mac_parse("52:54:00:ab:cd:0f:", parsed));
    assert_false(vm_mac_parse("52-54-00-ab-cd-0f", parsed));
    assert_false(vm_mac_parse("52:54:00:ab:cd:0g", parsed));

    char *args[] = { "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-blk-pci,drive=d", "-nic",
                     "user,mac=52:54:00:00:00:09", "-net", "nic,model=e1000", "-net", "user",
                     "-device", "{\"driver\":\"e1000\",\"id\":\"x\"}", "-device", "driver=rtl8139,mac=52:54:00:00:00:01" };
    char **a = vs_xcalloc(VS_ARRAY_SIZE(args), sizeof *a);
    for (size_t i = 0; i < VS_ARRAY_SIZE(args); i++)
        a[i] = vs_xstrdup(args[i]);
    vs_err e = { 0 };
    assert_int_equal(vm_nics_remac(a, 0, VS_ARRAY_SIZE(args), id, &e), 5);
    vm_mac_for_clone(id, 0, m);
    char want[64];
    snprintf(want, sizeof want, "virtio-net-pci,netdev=n0,mac=%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
             m[4], m[5]);
    assert_string_equal(a[1], want);
    assert_string_equal(a[3], "virtio-blk-pci,drive=d");
    assert_non_null(strstr(a[5], "user,mac=")); assert_null(strstr(a[5], "52:54:00:00:00:09"));
    assert_non_null(strstr(a[7], "nic,model=e1000,macaddr="));
    assert_string_equal(a[9], "user");
    assert_non_null(strstr(a[11], "\"mac\":"));
    assert_non_null(strstr(a[13], "driver=rtl8139,mac=")); assert_null(strstr(a[13], "52:54:00:00:00:01"));
    for (size_t i = 0; i < VS_ARRAY_SIZE(args); i++)
        free(a[i]);

    char *bad[] = { "-device", "e1000,mac=zz" };
    a[0] = vs_xstrdup(bad[0]);
    a[1] = vs_xstrdup(bad[1]);
    assert_int_equal(vm_nics_remac(a, 0, 2, id, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "e1000,mac=zz"));
    free(a[0]);
    free(a[1]);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_roundtrip), cmocka_unit_test(test_fields), cmocka_unit_test(test_implied),
        cmocka_unit_test(test_cmdline_escapes), cmocka_unit_test(test_names),
        cmocka_unit_test(test_set), cmocka_unit_test(test_macs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
