/* Unit tests for QEMU's option syntax (src/vm/qopt.c): fields, ",," escapes, implied keys, option names, and
 * the reader and writer of both forms (key=value and JSON). */
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
    free(a[1]);
    const char *bad_json[] = { "{\"driver\":\"e1000\",\"mac\":\"zz\"}",
                               "{\"driver\":\"e1000\",\"mac\":null}" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad_json); i++) {
        a[1] = vs_xstrdup(bad_json[i]);
        assert_int_equal(vm_nics_remac(a, 0, 2, id, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "\"mac\":"));
        free(a[1]);
    }
    free(a[0]);
    free(a);
}

/* One reader for both forms of a value: key=value (implied first key, ",," escapes) and JSON. */
static void test_opt_get(void **state)
{
    (void)state;
    const char *kv = "virtio-blk-pci,id=d,,0,drive=n,bootindex=1", *js =
        "{\"driver\":\"virtio-blk-pci\",\"id\":\"d,0\",\"drive\":\"n\",\"bootindex\":1,\"share\":false,"
        "\"on\":true,\"x\":null,\"r\":1.5,\"file\":{\"driver\":\"file\",\"filename\":\"/a\"}}";
    const char *keys[] = { "driver", "id", "drive", "bootindex" };
    const char *want[] = { "virtio-blk-pci", "d,0", "n", "1" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(keys); i++) {
        VS_AUTOFREE char *a = vm_opt_get(kv, keys[i], i == 0), *b = vm_opt_get(js, keys[i], i == 0);
        assert_string_equal(a, want[i]);
        assert_string_equal(b, want[i]);
    }
    VS_AUTOFREE char *bare = vm_opt_get(kv, "driver", false);   /* not implied: only driver=... */
    assert_null(bare);
    VS_AUTOFREE char *f = vm_opt_get(js, "share", false), *t = vm_opt_get(js, "on", false);
    assert_string_equal(f, "off");
    assert_string_equal(t, "on");
    VS_AUTOFREE char *nul = vm_opt_get(js, "x", false), *real = vm_opt_get(js, "r", false);
    assert_null(nul);
    assert_null(real);
    VS_AUTOFREE char *nested = vm_opt_get(js, "file.filename", false), *obj = vm_opt_get(js, "file", false);
    assert_string_equal(nested, "/a");   /* as key=value writes it */
    assert_null(obj);
    /* Duplicates: key=value gives the first; JSON that repeats a key is no value, as QEMU refuses it. */
    VS_AUTOFREE char *d1 = vm_opt_get("e1000,id=a,id=b", "id", false);
    assert_string_equal(d1, "a");
    VS_AUTOFREE char *d2 = vm_opt_get("{\"driver\":\"e1000\",\"id\":\"a\",\"id\":\"b\"}", "driver", true);
    assert_null(d2);
    const char *bad[] = { "{", "{\"id\":\"a\"} x", "{\"id\":\"a\",}", "{\"id\":\"a\\u0000b\"}", "{}" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
        VS_AUTOFREE char *v = vm_opt_get(bad[i], "id", false);
        assert_null(v);
    }
}

struct seen {
    char text[512];
    size_t n;
};

static int note_field(void *opaque, const struct vm_opt_kv *f)
{
    struct seen *s = opaque;
    size_t len = strlen(s->text);
    snprintf(s->text + len, sizeof s->text - len, "%s%s=%s", len ? " " : "", f->key ? f->key : "-",
             f->value ? f->value : "(null)");
    return ++s->n == 100;
}

static void test_opt_fields(void **state)
{
    (void)state;
    struct seen s = { "", 0 };
    assert_int_equal(vm_opt_fields("pflash,file=/a,,b,readonly,unit=1", note_field, &s), 0);
    assert_string_equal(s.text, "-=pflash file=/a,b -=readonly unit=1");
    s = (struct seen){ "", 0 };
    assert_int_equal(vm_opt_fields("{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"/x\"},"
                                   "\"l\":[\"a\",{\"b\":2}],\"e\":{},\"n\":null}", note_field, &s), 0);
    assert_string_equal(s.text, "driver=qcow2 file.driver=file file.filename=/x l.0=a l.1.b=2 e=(null) n=(null)");
    assert_int_equal(vm_opt_fields("{\"a\":1,\"a\":2}", note_field, &s), -EINVAL);
    assert_int_equal(vm_opt_fields("{\"a\":1", note_field, &s), -EINVAL);
    assert_int_equal(vm_opt_fields("[1]", note_field, &s), 0);   /* not JSON here: a bare key=value field */
}

/* One writer: the value set (or removed) in the value's own form. */
static void test_opt_set(void **state)
{
    (void)state;
    char *s = vm_opt_set("e1000,id=a,,b,mac=1", "mac", "x,y");
    assert_string_equal(s, "e1000,id=a,,b,mac=x,,y");
    free(s);
    s = vm_opt_set("e1000,drive=d,id=x", "drive", NULL);
    assert_string_equal(s, "e1000,id=x");
    free(s);
    s = vm_opt_set("{\"driver\":\"e1000\",\"mac\":\"1\",\"id\":\"x\"}", "mac", "a,\"b");
    assert_string_equal(s, "{\"driver\":\"e1000\",\"mac\":\"a,\\\"b\",\"id\":\"x\"}");
    free(s);
    s = vm_opt_set("{\"driver\":\"e1000\",\"drive\":\"d\"}", "drive", NULL);
    assert_string_equal(s, "{\"driver\":\"e1000\"}");
    free(s);
    s = vm_opt_set_bool("{\"id\":\"m\"}", "share", false);
    assert_string_equal(s, "{\"id\":\"m\",\"share\":false}");
    free(s);
    s = vm_opt_set_bool("memory-backend-ram,id=m", "share", true);
    assert_string_equal(s, "memory-backend-ram,id=m,share=on");
    free(s);
    s = vm_opt_filter("{\"qom-type\":\"memory-backend-ram\",\"id\":\"m\",\"size\":1,\"share\":true}", " id size ",
                      true);
    assert_string_equal(s, "{\"id\":\"m\",\"size\":1}");
    free(s);
    assert_null(vm_opt_set("{\"a\":1,\"a\":2}", "a", "x"));
    assert_null(vm_opt_set_bool("{", "a", true));
    assert_null(vm_opt_filter("{\"a\":", " a ", true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_roundtrip), cmocka_unit_test(test_fields), cmocka_unit_test(test_implied),
        cmocka_unit_test(test_cmdline_escapes), cmocka_unit_test(test_names),
        cmocka_unit_test(test_set), cmocka_unit_test(test_macs), cmocka_unit_test(test_opt_get),
        cmocka_unit_test(test_opt_fields), cmocka_unit_test(test_opt_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
