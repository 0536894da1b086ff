/* Unit tests for the VM config model: JSON round trip, refusals, extra-args lifting, foreign command lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "vm/vm.h"

static void fill(struct vm_config *c)
{
    vm_config_init(c);
    c->qemu = vs_xstrdup("qemu-system-x86_64");
    c->qemu_version = vs_xstrdup("7.2.22");
    c->machine = vs_xstrdup("pc");
    c->ram_bytes = 256ull << 20;
    c->cpus = 2;
    c->accel = vs_xstrdup("tcg");
    c->files[VM_FILE_KERNEL] = vs_xstrdup("/k/vmlinuz");
    c->files[VM_FILE_INITRD] = vs_xstrdup("/k/initrd.gz");
    c->append = vs_xstrdup("console=ttyS0 quiet \"x y\"");
    c->mem_backend = vs_xstrdup(VM_MEM_BACKEND_ID);
    c->n_disks = 2;
    c->disks = vs_xcalloc(2, sizeof *c->disks);
    c->disks[0].format = vs_xstrdup("raw");
    c->disks[0].iface = vs_xstrdup("virtio");
    c->disks[0].size = 64ull << 20;
    c->disks[1].format = vs_xstrdup("raw");
    c->disks[1].name = vs_xstrdup("sdb");   /* a foreign VM's captured disk */
    c->disks[1].stream = vs_xstrdup("disk1");
    c->disks[1].device = vs_xstrdup("/machine/peripheral-anon/device[0]");
    c->disks[1].node = vs_xstrdup("#block123");
    c->disks[1].drive = vs_xstrdup("drive-sdb");
    c->n_extra = 2;
    c->extra = vs_xcalloc(3, sizeof *c->extra);
    c->extra[0] = vs_xstrdup("-rtc");
    c->extra[1] = vs_xstrdup("base=utc,clock=vm");
}

static void assert_same(const struct vm_config *a, const struct vm_config *b)
{
    assert_string_equal(a->qemu, b->qemu);
    assert_string_equal(a->qemu_version, b->qemu_version);
    assert_string_equal(a->machine, b->machine);
    assert_int_equal(a->ram_bytes, b->ram_bytes);
    assert_int_equal(a->cpus, b->cpus);
    assert_string_equal(a->accel, b->accel);
    assert_string_equal(a->files[VM_FILE_KERNEL], b->files[VM_FILE_KERNEL]);
    assert_string_equal(a->files[VM_FILE_INITRD], b->files[VM_FILE_INITRD]);
    assert_null(b->files[VM_FILE_DTB]);
    assert_string_equal(a->append, b->append);
    assert_string_equal(a->mem_backend, b->mem_backend);
    assert_int_equal(a->n_disks, b->n_disks);
    for (size_t i = 0; i < a->n_disks; i++) {
        assert_string_equal(a->disks[i].format, b->disks[i].format);
        assert_int_equal(a->disks[i].size, b->disks[i].size);
    }
    assert_string_equal(a->disks[0].iface, b->disks[0].iface);
    assert_null(b->disks[1].iface);
    assert_null(b->disks[0].name);
    assert_null(b->disks[0].drive);
    assert_string_equal(b->disks[1].name, "sdb");
    assert_string_equal(b->disks[1].stream, "disk1");
    assert_string_equal(b->disks[1].device, "/machine/peripheral-anon/device[0]");
    assert_string_equal(b->disks[1].node, "#block123");
    assert_string_equal(b->disks[1].drive, "drive-sdb");
    assert_int_equal(a->n_extra, b->n_extra);
    for (size_t i = 0; i < a->n_extra; i++)
        assert_string_equal(a->extra[i], b->extra[i]);
    assert_int_equal(a->foreign, b->foreign);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct vm_config c, d, cp;
    vs_err e = { 0 };
    fill(&c);
    char *json = vm_config_to_json(&c);
    assert_int_equal(vm_config_from_json(json, strlen(json), &d, &e), 0);
    assert_same(&c, &d);
    /* and again: the text is stable */
    char *json2 = vm_config_to_json(&d);
    assert_string_equal(json, json2);
    vm_config_copy(&cp, &d);
    assert_same(&c, &cp);
    free(json);
    free(json2);
    vm_config_free(&c);
    vm_config_free(&d);
    vm_config_free(&cp);
}

static void test_foreign_round_trip(void **state)
{
    (void)state;
    struct vm_config c, d;
    vs_err e = { 0 };
    vm_config_init(&c);
    char *argv[] = { "qemu-system-x86_64", "-m", "512", "-smp", "cpus=3,sockets=1", "-machine", "q35,accel=tcg",
                     "-kernel", "bz", "-append", "console=ttyS0", "-daemonize", "-drive", "file=d.img,if=virtio" };
    assert_int_equal(vm_config_from_cmdline(&c, argv, VS_ARRAY_SIZE(argv), "/srv/vm", &e), 0);
    assert_true(c.foreign);
    assert_int_equal(c.ram_bytes, 512ull << 20);
    assert_int_equal(c.cpus, 3);
    assert_string_equal(c.machine, "q35");
    assert_string_equal(c.accel, "tcg");
    assert_string_equal(c.files[VM_FILE_KERNEL], "/srv/vm/bz");
    assert_string_equal(c.append, "console=ttyS0");
    char *json = vm_config_to_json(&c);
    assert_int_equal(vm_config_from_json(json, strlen(json), &d, &e), 0);
    assert_true(d.foreign);
    assert_int_equal(d.n_cmdline, VS_ARRAY_SIZE(argv));
    for (size_t i = 0; i < d.n_cmdline; i++)
        assert_string_equal(d.cmdline[i], argv[i]);
    assert_string_equal(d.cwd, "/srv/vm");
    free(json);
    vm_config_free(&c);
    vm_config_free(&d);
}

/* A captured foreign VM's disks: where its command line put them, in disk-stream order. */
static void test_foreign_disks(void **state)
{
    (void)state;
    const char *json = "{\"version\": 1, \"foreign\": true, \"cmdline\": [\"qemu\"], \"disks\": ["
        "{\"name\": \"vda\", \"stream\": \"disk-vda\", \"size\": 1048576, \"format\": \"raw\", "
        "\"interface\": \"virtio-blk-pci\", \"device\": \"vda\", \"node\": \"a-fmt\"},"
        "{\"name\": \"ide0-hd0\", \"stream\": \"disk-ide0-hd0\", \"format\": \"raw\", \"interface\": \"ide-hd\", "
        "\"device\": \"/machine/unattached/device[22]\", \"node\": \"#block142\", \"drive\": \"ide0-hd0\"}]}";
    struct vm_config c, d;
    vs_err e = { 0 };
    assert_int_equal(vm_config_from_json(json, strlen(json), &c, &e), 0);
    assert_int_equal(c.n_disks, 2);
    assert_string_equal(c.disks[0].name, "vda");
    assert_string_equal(c.disks[0].stream, "disk-vda");
    assert_int_equal(c.disks[0].size, 1048576);
    assert_string_equal(c.disks[0].iface, "virtio-blk-pci");
    assert_string_equal(c.disks[0].node, "a-fmt");
    assert_null(c.disks[0].drive);
    assert_string_equal(c.disks[1].device, "/machine/unattached/device[22]");
    assert_string_equal(c.disks[1].node, "#block142");
    assert_string_equal(c.disks[1].drive, "ide0-hd0");
    char *out = vm_config_to_json(&c);
    vm_config_copy(&d, &c);
    char *out2 = vm_config_to_json(&d);
    assert_string_equal(out, out2);
    assert_non_null(strstr(out, "\"drive\": \"ide0-hd0\""));
    free(out);
    free(out2);
    vm_config_free(&c);
    vm_config_free(&d);
}

static void expect_refused(const char *json, const char *needle)
{
    struct vm_config c;
    vs_err e = { 0 };
    assert_true(vm_config_from_json(json, strlen(json), &c, &e) < 0);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("", "invalid JSON");
    expect_refused("[]", "expected a JSON object");
    expect_refused("{}", "version 0");
    expect_refused("{\"version\": 99}", "version 99");
    expect_refused("{\"version\": 1, \"ram\": \"1G\"}", "\"ram\"");
    expect_refused("{\"version\": 1, \"ram\": -5}", "\"ram\"");
    expect_refused("{\"version\": 1, \"cpus\": 100000}", "\"cpus\"");
    expect_refused("{\"version\": 1, \"disks\": {}}", "\"disks\"");
    expect_refused("{\"version\": 1, \"disks\": [3]}", "\"disks\"[0]");
    expect_refused("{\"version\": 1, \"extra-args\": [\"-a\", 1]}", "\"extra-args\"[1]");
    expect_refused("{\"version\": 1, \"foreign\": true}", "cmdline");
    expect_refused("{\"version\": 1, \"version\": 1}", "invalid JSON");
    /* a captured disk's names reach QEMU's command line: QEMU's own syntax only */
#define FD(d) "{\"version\": 1, \"foreign\": true, \"cmdline\": [\"q\"], \"disks\": [" d "]}"
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"a,file=/etc/shadow\"}"), "\"node\" must be a QEMU node name");
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"#blockx\"}"), "\"node\"");
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"n\", \"drive\": \"d d\"}"), "\"drive\" must be a QEMU id");
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"n\", \"device\": \"/a/../b;c\"}"), "\"device\"");
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"n\", \"name\": \"a\\u001b[2J\"}"), "\"name\"");
    expect_refused(FD("{\"stream\": \"s\", \"node\": \"n\", \"format\": \"qcow2\"}"), "must be raw");
    expect_refused(FD("{\"node\": \"n\"}"), "needs \"stream\" and \"node\"");
    expect_refused(FD("{\"stream\": \"s\", \"node\": 5}"), "\"node\" must be a string");
    /* unknown keys are ignored */
    struct vm_config c;
    const char *ok = "{\"version\": 1, \"future\": {\"x\": 1}, \"ram\": 1024}";
    assert_int_equal(vm_config_from_json(ok, strlen(ok), &c, NULL), 0);
    assert_int_equal(c.ram_bytes, 1024);
    vm_config_free(&c);
}

static void test_extra_lifting(void **state)
{
    (void)state;
    struct vm_config c;
    vs_err e = { 0 };
    vm_config_init(&c);
    char *args[] = { "-kernel", "/abs/vmlinuz", "--initrd", "rel/initrd.gz", "-append", "console=ttyS0",
                     "-rtc", "base=utc" };
    assert_int_equal(vm_config_add_extra(&c, args, VS_ARRAY_SIZE(args), &e), 0);
    assert_string_equal(c.files[VM_FILE_KERNEL], "/abs/vmlinuz");
    assert_true(c.files[VM_FILE_INITRD][0] == '/');
    assert_non_null(strstr(c.files[VM_FILE_INITRD], "/rel/initrd.gz"));
    assert_string_equal(c.append, "console=ttyS0");
    assert_int_equal(c.n_extra, 2);
    assert_string_equal(c.extra[0], "-rtc");
    assert_string_equal(c.extra[1], "base=utc");
    char *bad[] = { "-kernel" };
    assert_true(vm_config_add_extra(&c, bad, 1, &e) < 0);
    assert_non_null(strstr(e.msg, "-kernel"));
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_foreign_round_trip),
        cmocka_unit_test(test_foreign_disks),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_extra_lifting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
