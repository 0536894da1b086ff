/* Unit tests for files named inside EXTRA-QEMU-ARGS: which are found, what is stored, how boot's argv names the
 * stored copies (escaped), and the config's "extra-files" field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vm/vm.h"

static const struct vm_xfile_ref *find(const struct vm_xfile_ref *r, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(r[i].name, name))
            return &r[i];
    return NULL;
}

static void test_refs(void **state)
{
    (void)state;
    char *args[] = {
        "-bios", "/fw/my,bios.bin",
        "-drive", "if=pflash,format=raw,unit=1,file=/fw/VA,,RS.fd",
        "-drive", "file=/fw/CODE.fd,if=pflash,format=raw,readonly=on",
        "-drive", "file=/disk.img,if=virtio",
        "-drive", "if=pflash,file=nbd:localhost:10809",
        "-device", "loader,addr=0x1000,file=/fw/blob.bin",
        "-device", "virtio-rng-pci",
        "-nodefaults",
    };
    struct vm_xfile_ref *r = NULL;
    size_t n = 0;
    assert_int_equal(vm_xfile_refs(args, VS_ARRAY_SIZE(args), &r, &n), 0);
    assert_int_equal(n, 4);
    const struct vm_xfile_ref *b = find(r, n, "bios"), *v = find(r, n, "pflash1"), *c = find(r, n, "pflash0"),
                              *l = find(r, n, "loader0");
    assert_non_null(b);
    assert_non_null(v);
    assert_non_null(c);
    assert_non_null(l);
    assert_string_equal(b->path, "/fw/my,bios.bin");
    assert_false(b->escaped);
    assert_false(b->writable);
    assert_string_equal(v->path, "/fw/VA,RS.fd");   /* unescaped */
    assert_true(v->writable);
    assert_string_equal(c->path, "/fw/CODE.fd");    /* unit 1 taken: the first free is 0 */
    assert_false(c->writable);
    assert_string_equal(l->path, "/fw/blob.bin");
    assert_false(l->writable);

    /* Replacing escapes commas in option syntax and keeps the rest of the argument. */
    VS_AUTOFREE char *nv = vm_xfile_ref_replace(args[v->arg], v, "/run/x,y/fw-pflash1");
    assert_string_equal(nv, "if=pflash,format=raw,unit=1,file=/run/x,,y/fw-pflash1");
    VS_AUTOFREE char *nc = vm_xfile_ref_replace(args[c->arg], c, "/run/fw-pflash0");
    assert_string_equal(nc, "file=/run/fw-pflash0,if=pflash,format=raw,readonly=on");
    VS_AUTOFREE char *nb = vm_xfile_ref_replace(args[b->arg], b, "/run/a,b");
    assert_string_equal(nb, "/run/a,b");            /* -bios takes a raw path */
    vm_xfile_refs_free(r, n);
}

static void test_blockdev_and_pflash(void **state)
{
    (void)state;
    char *args[] = {
        "-blockdev", "driver=file,filename=/fw/code.fd,node-name=codef,read-only=on",
        "-blockdev", "driver=raw,node-name=code,file=codef,read-only=on",
        "-blockdev", "driver=raw,node-name=vars,file.driver=file,file.filename=/fw/vars.fd",
        "-machine", "pc,pflash0=code,pflash1=vars",
        "-blockdev", "{\"driver\":\"file\",\"filename\":\"/json.fd\",\"node-name\":\"j\"}",
    };
    struct vm_xfile_ref *r = NULL;
    size_t n = 0;
    vm_xfile_refs(args, VS_ARRAY_SIZE(args), &r, &n);
    assert_int_equal(n, 2);
    const struct vm_xfile_ref *c = find(r, n, "pflash0"), *v = find(r, n, "pflash1");
    assert_non_null(c);
    assert_non_null(v);
    assert_string_equal(c->path, "/fw/code.fd");
    assert_int_equal(c->arg, 1);
    assert_false(c->writable);
    assert_string_equal(v->path, "/fw/vars.fd");
    assert_true(v->writable);
    vm_xfile_refs_free(r, n);

    char *legacy[] = { "-pflash", "/fw/OVMF.fd" };
    vm_xfile_refs(legacy, 2, &r, &n);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].name, "pflash0");
    assert_true(r[0].writable);
    vm_xfile_refs_free(r, n);
}

/* What a thick archive stores: writable files always, read-only ones only outside the QEMU installation;
 * relative paths become absolute. */
static void test_config_xfiles(void **state)
{
    (void)state;
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *args[] = { "-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE.fd,readonly=on",
                     "-drive", "if=pflash,format=raw,unit=1,file=rel/vars.fd", "-bios", "bios-256k.bin",
                     "-device", "loader,file=/home/u/x.bin" };
    assert_int_equal(vm_config_add_extra(&c, args, VS_ARRAY_SIZE(args), &e), 0);
    VS_AUTOFREE char *want = vs_xasprintf("if=pflash,format=raw,unit=1,file=%s/rel/vars.fd", cwd);
    if (!strchr(cwd, ','))
        assert_string_equal(c.extra[3], want);
    assert_string_equal(c.extra[5], "bios-256k.bin");   /* found in QEMU's data directories */
    assert_int_equal(c.n_xfiles, 2);
    assert_string_equal(c.xfiles[0].name, "pflash1");
    assert_true(c.xfiles[0].writable);
    assert_true(c.xfiles[0].path[0] == '/');
    assert_string_equal(c.xfiles[1].name, "loader0");
    assert_false(c.xfiles[1].writable);

    /* JSON round trip. */
    VS_AUTOFREE char *js = vm_config_to_json(&c);
    struct vm_config d;
    assert_int_equal(vm_config_from_json(js, strlen(js), &d, &e), 0);
    assert_int_equal(d.n_xfiles, 2);
    assert_string_equal(d.xfiles[0].path, c.xfiles[0].path);
    assert_true(d.xfiles[0].writable);
    assert_false(d.xfiles[1].writable);
    vm_config_free(&d);
    vm_config_free(&c);

    /* A name becomes a run-directory file name: only [a-z0-9]. */
    const char *bad = "{\"version\":1,\"extra-files\":[{\"name\":\"../x\",\"path\":\"/a\",\"writable\":true}]}";
    assert_true(vm_config_from_json(bad, strlen(bad), &d, &e) < 0);
    assert_non_null(strstr(e.msg, "extra-files"));
    const char *rel = "{\"version\":1,\"extra-files\":[{\"name\":\"bios\",\"path\":\"a\"}]}";
    assert_true(vm_config_from_json(rel, strlen(rel), &d, &e) < 0);
}

/* Boot's argv: each stored file named by its copy, everything else as recorded. */
static void test_argv_rewrite(void **state)
{
    (void)state;
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    char *args[] = { "-bios", "/fw/bios.bin", "-drive", "if=pflash,format=raw,unit=0,file=/fw/c.fd,readonly=on",
                     "-drive", "if=pflash,format=raw,unit=1,file=/fw/v.fd" };
    assert_int_equal(vm_config_add_extra(&c, args, VS_ARRAY_SIZE(args), &e), 0);
    c.ram_bytes = 128 << 20;
    struct vm_xfile over[] = { { "pflash1", "/run/d,1/fw-pflash1", true }, { "bios", "/run/d,1/fw-bios", false } };
    struct vm_launch l = { .accel = "tcg", .private_qmp = "/run/q.sock", .xfiles = over, .n_xfiles = 2 };
    struct vm_argv a;
    assert_int_equal(vm_build_argv(&c, &l, &a, &e), 0);
    bool bios = false, vars = false, code = false;
    for (size_t i = 0; i < a.n; i++) {
        bios |= !strcmp(a.v[i], "/run/d,1/fw-bios");
        vars |= !strcmp(a.v[i], "if=pflash,format=raw,unit=1,file=/run/d,,1/fw-pflash1");
        code |= !strcmp(a.v[i], "if=pflash,format=raw,unit=0,file=/fw/c.fd,readonly=on");
    }
    assert_true(bios && vars && code);
    vm_argv_free(&a);
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_blockdev_and_pflash),
        cmocka_unit_test(test_config_xfiles),
        cmocka_unit_test(test_argv_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
