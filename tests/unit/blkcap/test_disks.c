/* Unit tests for the choice of disks to capture (bc_disks_select): defaults, --disks, refusals that leave the list
 * as it was (freed once, whatever the outcome). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "blkcap/blkcap.h"

/* vda (writable), ide0-cd0 (read-only), orphan (writable, no device), sdb (writable). */
static void four(struct bc_disks *d)
{
    static const struct { const char *name, *qdev; bool ro; } k[] = {
        { "vda", "/machine/peripheral/vda/virtio-backend", false },
        { "ide0-cd0", "/machine/unattached/device[17]", true },
        { "orphan", NULL, false },
        { "sdb", "sdb", false },
    };
    d->n = VS_ARRAY_SIZE(k);
    d->d = vs_xcalloc(d->n, sizeof *d->d);
    for (size_t i = 0; i < d->n; i++) {
        d->d[i].name = vs_xstrdup(k[i].name);
        d->d[i].qdev = k[i].qdev ? vs_xstrdup(k[i].qdev) : NULL;
        d->d[i].node = vs_xasprintf("#block%zu", i);
        d->d[i].read_only = k[i].ro;
    }
}

static void expect_refused(const char *list, int code, const char *needle)
{
    BC_DISKS_AUTOFREE struct bc_disks d = { 0 };
    four(&d);
    char *skipped = NULL;
    vs_err e = { 0 };
    assert_int_equal(bc_disks_select(&d, list, &skipped, &e), -code);
    assert_non_null(strstr(e.msg, needle));
    assert_int_equal(d.n, 4);   /* unchanged: the cleanup frees each disk once (ASan) */
    assert_string_equal(d.d[2].name, "orphan");
    free(skipped);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused(NULL, ENOTSUP, "disk 'orphan' (node #block2) is attached to no guest device");
    expect_refused("vda,orphan", ENOTSUP, "disk 'orphan'");
    expect_refused("vda,vdz", ENOENT, "no disk 'vdz' (its disks: vda, ide0-cd0, orphan, sdb)");
    expect_refused("ide0-cd0", EROFS, "disk 'ide0-cd0' is read-only");
}

static void test_choice(void **state)
{
    (void)state;
    BC_DISKS_AUTOFREE struct bc_disks d = { 0 };
    four(&d);
    char *skipped = NULL;
    vs_err e = { 0 };
    assert_int_equal(bc_disks_select(&d, "sdb,vda", &skipped, &e), 0);
    assert_int_equal(d.n, 2);   /* QEMU's order, not the list's */
    assert_string_equal(d.d[0].name, "vda");
    assert_string_equal(d.d[1].name, "sdb");
    assert_null(skipped);   /* read-only disks are named only when the choice is the default */

    BC_DISKS_AUTOFREE struct bc_disks d2 = { 0 };
    four(&d2);
    free(d2.d[2].qdev);   /* no orphan: the default takes every writable disk */
    d2.d[2].qdev = vs_xstrdup("orphan");
    assert_int_equal(bc_disks_select(&d2, NULL, &skipped, &e), 0);
    assert_int_equal(d2.n, 3);
    assert_string_equal(skipped, "ide0-cd0");
    free(skipped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
