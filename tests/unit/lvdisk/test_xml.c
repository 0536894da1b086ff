/* Unit tests for lvdisk's XML: the disks read from a libvirt domain XML, and the backup and checkpoint documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "lvdisk/lvdisk.h"

/* As libvirt 9.0 writes a running domain (trimmed): a qcow2 disk, a read-only raw one, a cdrom without medium. */
static const char domain_xml[] =
    "<domain type='qemu' id='1'>\n  <name>d</name>\n  <devices>\n"
    "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
    "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/v/a &amp; b.qcow2' index='2'/>\n      <backingStore/>\n"
    "      <target dev='vda' bus='virtio'/>\n      <alias name='virtio-disk0'/>\n    </disk>\n"
    "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
    "      <source file='/v/b.raw' index='1'/>\n      <target dev='vdb' bus='virtio'/>\n      <readonly/>\n"
    "      <alias name='virtio-disk1'/>\n    </disk>\n"
    "    <disk type='file' device=\"cdrom\">\n      <target dev='hdc' bus='ide'/>\n"
    "      <alias name='ide0-1-0'/>\n    </disk>\n"
    "    <diskette/>\n  </devices>\n</domain>\n";

/* The disks of xml, which must be accepted with want of them. */
static struct lvd_disk *parse_ok(const char *xml, size_t want)
{
    struct lvd_disk *d = NULL;
    size_t n = 0;
    vs_err e = { 0 };
    if (lvd_parse_domain_xml(xml, &d, &n, &e) < 0)
        fail_msg("refused: %s", e.msg);
    assert_int_equal(n, want);
    return d;
}

static void test_parse(void **state)
{
    (void)state;
    struct lvd_disk *d = parse_ok(domain_xml, 3);
    assert_string_equal(d[0].name, "vda");
    assert_string_equal(d[0].device, "virtio-disk0");
    assert_string_equal(d[0].stream, "disk-vda");
    assert_false(d[0].readonly);
    assert_string_equal(d[1].name, "vdb");
    assert_true(d[1].readonly);
    assert_string_equal(d[2].name, "hdc");
    assert_string_equal(d[2].device, "ide0-1-0");
    assert_true(d[2].readonly);
    free(d);
}

/* What a comment, a CDATA section or a processing instruction quotes is text, not elements: neither a disk nor the
 * end of one. */
static void test_quoted_markup(void **state)
{
    (void)state;
    static const char xml[] =
        "<domain><devices><!-- <disk device='disk'><target dev='vdz'/></disk> </devices> -->\n"
        "<disk device='disk'><?x <target dev='vdy'/> ?><target dev='vda'/><![CDATA[</disk><alias name='cd'/>]]>"
        "<alias name='virtio-disk0'/></disk>\n</devices></domain>";
    struct lvd_disk *d = parse_ok(xml, 1);
    assert_string_equal(d[0].name, "vda");
    assert_string_equal(d[0].device, "virtio-disk0");
    assert_false(d[0].readonly);
    free(d);
}

/* <metadata> holds any XML the domain's users put there: its <devices> are not the domain's. */
static void test_metadata_devices(void **state)
{
    (void)state;
    struct lvd_disk *d = parse_ok("<domain><metadata><a:x xmlns:a='u'><devices><disk><target dev='vdz'/>"
                                  "<alias name='z'/></disk></devices></a:x></metadata><devices><disk>"
                                  "<target dev='vda'/><alias name='virtio-disk0'/></disk></devices></domain>", 1);
    assert_string_equal(d[0].name, "vda");
    free(d);
}

static void expect_refused(const char *xml, const char *needle)
{
    struct lvd_disk *d = NULL;
    size_t n = 0;
    vs_err e = { 0 };
    assert_true(lvd_parse_domain_xml(xml, &d, &n, &e) < 0);
    assert_null(d);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("<domain><name>x</name></domain>", "no closed <devices>");
    expect_refused("<domain><devices><disk type='file'><target dev='vda'/></devices></domain>", "not closed");
    /* an inactive domain's XML has no aliases */
    expect_refused("<domain><devices><disk type='file'><target dev='vda'/></disk></devices></domain>",
                   "is the domain running");
    expect_refused("<domain><devices><disk><target dev='v da'/><alias name='a'/></disk></devices></domain>",
                   "plain <target dev>");
    expect_refused("<domain><devices><disk><target dev='-x'/><alias name='a'/></disk></devices></domain>",
                   "plain <target dev>");
    expect_refused("<domain><devices><disk><target dev='vda'/><alias name='a'/><!-- </disk></devices></domain>",
                   "no closed <devices>");
    expect_refused("<domain><devices><disk device=x><target dev='vda'/><alias name='a'/></disk></devices></domain>",
                   "plain <target dev>");
}

/* x holds every needle (a NULL-terminated list), then x is freed. */
static void holds(char *x, const char *const *needles)
{
    for (; *needles; needles++)
        if (!strstr(x, *needles))
            fail_msg("'%s' lacks '%s'", x, *needles);
    free(x);
}

static void plan(struct lvd_backup *b, struct lvd_disk *d, size_t n)
{
    memset(b, 0, sizeof *b);
    b->disks = d;
    b->n = n;
}

static void test_backup_xml(void **state)
{
    (void)state;
    struct lvd_disk d[3] = { { .name = "vda", .capture = true, .bitmap = true },
                             { .name = "vdb", .capture = true, .bitmap = false },
                             { .name = "hdc", .readonly = true } };
    struct lvd_backup b;
    plan(&b, d, 3);
    char *x = lvd_backup_xml(&b, "/t/it's <here>");
    assert_null(strstr(x, "incremental"));
    holds(x, (const char *[]){ "<server transport='unix' socket='/t/it&apos;s &lt;here&gt;/nbd.sock'/>",
                               "<disk name='vda' backup='yes' type='file' exportname='vda'>",
                               "<scratch file='/t/it&apos;s &lt;here&gt;/vda.scratch'/>",
                               "<disk name='hdc' backup='no'/>", NULL });
    /* thin: only the disk holding the parent's bitmap is incremental */
    snprintf(b.parent_checkpoint, sizeof b.parent_checkpoint, "vmsnap-p");
    d[0].incremental = true;
    holds(lvd_backup_xml(&b, "/t"), (const char *[]){ "<disk name='vda' backup='yes' type='file' exportname='vda' "
                                                      "backupmode='incremental' incremental='vmsnap-p' "
                                                      "exportbitmap='backup-vda'>",
                                                      "<disk name='vdb' backup='yes' type='file' exportname='vdb'>",
                                                      NULL });
    /* no checkpoint without a name, nor when no captured disk can hold a bitmap */
    assert_null(lvd_checkpoint_xml(&b));
    snprintf(b.checkpoint, sizeof b.checkpoint, "vmsnap-c");
    holds(lvd_checkpoint_xml(&b), (const char *[]){ "<name>vmsnap-c</name>", "<disk name='vda' checkpoint='bitmap'/>",
                                                    "<disk name='vdb' checkpoint='no'/>",
                                                    "<disk name='hdc' checkpoint='no'/>", NULL });
    d[0].capture = false;
    assert_null(lvd_checkpoint_xml(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_quoted_markup),
        cmocka_unit_test(test_metadata_devices),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_backup_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
