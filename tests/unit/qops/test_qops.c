/* Unit tests for the pure parts of src/qops: estimate model, status and snapshot-list formatting,
 * the internal-snapshot plan (node selection and pre-checks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "qops/qops.h"

#define MiB 1048576.0

static void test_estimate_idle(void **state)
{
    (void)state;
    struct qops_estimate_in in = { .ram_bytes = 1u << 30, .throughput_bytes_per_s = 128 * MiB };
    struct qops_estimate o;
    qops_estimate_compute(&in, &o);
    assert_true(fabs(o.stop_total_s - 8.0) < 1e-9);       /* 1 GiB at 128 MiB/s */
    assert_true(fabs(o.stop_pause_s - 8.0) < 1e-9);
    assert_true(fabs(o.live_total_s - 8.0) < 1e-9);       /* nothing dirtied: one round */
    assert_true(o.live_pause_s == 0);
    assert_true(o.live_converges);
    assert_int_equal(o.live_rounds, 1);
    assert_true(fabs(o.bg_total_s - 8.0) < 1e-9);
}

static void test_estimate_converges(void **state)
{
    (void)state;
    /* 1 GiB, 128 MiB/s, guest dirties 32 MiB/s: rounds of 8 s, 2 s, 0.5 s, 0.125 s (fits 0.3 s). */
    struct qops_estimate_in in = { .ram_bytes = 1u << 30, .throughput_bytes_per_s = 128 * MiB,
                                   .dirty_bytes_per_s = 32 * MiB, .downtime_limit_s = 0.3 };
    struct qops_estimate o;
    qops_estimate_compute(&in, &o);
    assert_true(o.live_converges);
    assert_true(fabs(o.live_pause_s - 0.125) < 1e-9);
    assert_true(fabs(o.live_total_s - (8 + 2 + 0.5 + 0.125)) < 1e-9);
    assert_int_equal(o.live_rounds, 4);
    assert_true(o.live_pause_s <= 0.3);
    assert_true(fabs(o.stop_pause_s - 8.0) < 1e-9);      /* stop mode is indifferent to dirtying */
    /* The share of non-zero pages scales the first round only. */
    in.nonzero_fraction = 0.25;
    qops_estimate_compute(&in, &o);
    assert_true(fabs(o.stop_total_s - 2.0) < 1e-9);
    assert_true(fabs(o.live_pause_s - 0.125) < 1e-9);     /* 2 s, 0.5 s, 0.125 s */
}

static void test_estimate_no_convergence(void **state)
{
    (void)state;
    struct qops_estimate_in in = { .ram_bytes = 256u << 20, .throughput_bytes_per_s = 100 * MiB,
                                   .dirty_bytes_per_s = 200 * MiB, .max_rounds = 5 };
    struct qops_estimate o;
    qops_estimate_compute(&in, &o);
    assert_false(o.live_converges);
    /* Dirtying caps at all of RAM per round: the stopped rest is RAM/T. */
    assert_true(fabs(o.live_pause_s - 2.56) < 1e-9);
    assert_true(o.live_total_s > o.stop_total_s);
    in.throughput_bytes_per_s = 0;
    qops_estimate_compute(&in, &o);
    assert_true(isinf(o.stop_total_s));
}

static void test_status_build(void **state)
{
    (void)state;
    json_t *qs = json_pack("{s:s, s:b}", "status", "running", "running", 1);
    json_t *qm = json_pack("{s:s, s:i, s:i, s:i, s:{s:i, s:i, s:i, s:f, s:i, s:i}}", "status", "active",
                           "total-time", 2500, "setup-time", 12, "expected-downtime", 300, "ram",
                           "transferred", 1000, "remaining", 2000, "total", 3000, "mbps", 800.5,
                           "dirty-pages-rate", 77, "duplicate", 5);
    json_t *doc = qops_status_build(qs, qm);
    json_t *m = json_object_get(doc, "migration");
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "running");
    assert_true(json_is_true(json_object_get(doc, "running")));
    assert_string_equal(json_string_value(json_object_get(m, "status")), "active");
    assert_true(json_is_true(json_object_get(m, "active")));
    assert_true(fabs(json_real_value(json_object_get(m, "total_time")) - 2.5) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(m, "expected_downtime")) - 0.3) < 1e-9);
    assert_int_equal(json_integer_value(json_object_get(m, "remaining")), 2000);
    assert_int_equal(json_integer_value(json_object_get(m, "dirty_pages_rate")), 77);
    assert_int_equal(json_integer_value(json_object_get(m, "duplicate_pages")), 5);
    assert_null(json_object_get(m, "downtime"));
    char *text = qops_status_text(doc);
    assert_non_null(strstr(text, "VM: running\n"));
    assert_non_null(strstr(text, "migration: active (2.50 s, setup 0.012 s)\n"));
    assert_non_null(strstr(text, "transferred 1000 B of 2.9 KiB, remaining 2.0 KiB"));
    assert_non_null(strstr(text, "throughput 800.5 Mbit/s"));
    assert_non_null(strstr(text, "guest dirties 77 pages/s"));
    assert_non_null(strstr(text, "expected downtime 0.300 s"));
    free(text);
    json_decref(doc);
    json_decref(qm);

    /* No migration ever: query-migrate returns {}. */
    qm = json_object();
    doc = qops_status_build(qs, qm);
    m = json_object_get(doc, "migration");
    assert_string_equal(json_string_value(json_object_get(m, "status")), "none");
    assert_false(json_is_true(json_object_get(m, "active")));
    assert_int_equal(json_object_size(m), 2);
    text = qops_status_text(doc);
    assert_string_equal(text, "VM: running\nmigration: none\n");
    free(text);
    json_decref(doc);
    json_decref(qm);
    json_decref(qs);
    assert_true(qops_migration_active("pre-switchover"));
    assert_false(qops_migration_active("completed"));
    assert_false(qops_migration_active(NULL));
}

/* A query-block reply: qcow2 disk with one snapshot, a raw data disk, a read-only raw pflash, an empty cdrom. */
static json_t *sample_block(bool raw_writable)
{
    json_error_t err;
    json_t *j = json_loads(
        "[{\"device\":\"virtio0\",\"qdev\":\"/q/vd0\",\"inserted\":{\"node-name\":\"disk0\",\"drv\":\"qcow2\","
        "  \"ro\":false,\"image\":{\"snapshots\":[{\"name\":\"t1\",\"id\":\"1\",\"date-sec\":0,\"date-nsec\":5,"
        "  \"vm-state-size\":924796,\"vm-clock-sec\":3725,\"vm-clock-nsec\":261858756}]}}},"
        " {\"device\":\"\",\"qdev\":\"/q/vd1\",\"inserted\":{\"node-name\":\"data\",\"drv\":\"raw\",\"ro\":false}},"
        " {\"device\":\"pflash0\",\"qdev\":\"\",\"inserted\":{\"node-name\":\"fw\",\"drv\":\"raw\",\"ro\":true}},"
        " {\"device\":\"ide1-cd0\",\"qdev\":\"/q/cd\"}]", 0, &err);
    assert_non_null(j);
    if (!raw_writable)
        json_object_set_new(json_object_get(json_array_get(j, 1), "inserted"), "ro", json_true());
    return j;
}

static void test_nodes_format(void **state)
{
    (void)state;
    json_t *qb = sample_block(true);
    struct qops_nodes n;
    qops_nodes_parse(qb, &n);
    json_decref(qb);
    assert_int_equal(n.n, 3);
    const struct qops_node *d0 = qops_nodes_find(&n, "disk0");
    assert_non_null(d0);
    assert_int_equal(d0->n_snaps, 1);
    assert_int_equal(d0->snaps[0].vmstate_size, 924796);
    assert_int_equal(d0->snaps[0].vm_clock_ns, 3725261858756LL);
    assert_non_null(qops_node_find_snapshot(d0, "t1"));
    assert_null(qops_node_find_snapshot(d0, "t2"));

    json_t *doc = qops_nodes_json(&n);
    json_t *devs = json_object_get(doc, "devices");
    assert_int_equal(json_array_size(devs), 3);
    json_t *s = json_array_get(json_object_get(json_array_get(devs, 0), "snapshots"), 0);
    assert_string_equal(json_string_value(json_object_get(s, "tag")), "t1");
    assert_int_equal(json_integer_value(json_object_get(s, "vmstate_size")), 924796);
    assert_true(fabs(json_real_value(json_object_get(s, "vm_clock")) - 3725.261858756) < 1e-6);
    assert_false(json_is_true(json_object_get(json_array_get(devs, 1), "can_snapshot")));
    json_decref(doc);

    setenv("TZ", "UTC", 1);
    tzset();
    char *text = qops_nodes_text(&n);
    assert_non_null(strstr(text, "virtio0      disk0          t1                   1970-01-01 00:00:00  903.1 KiB "
                                 "01:02:05.261\n"));
    assert_non_null(strstr(text, "/q/vd1       data           (cannot hold snapshots: not qcow2)\n"));
    assert_non_null(strstr(text, "pflash0      fw             (read-only, not snapshotted)\n"));
    free(text);
    qops_nodes_free(&n);
}

static int plan(bool raw_writable, enum qops_internal_op op, const char *tag, const struct qops_internal_opts *o,
                const char **vmstate, size_t *n_sel, vs_err *e)
{
    json_t *qb = sample_block(raw_writable);
    struct qops_nodes n;
    struct qops_strv sel = { 0 };
    qops_nodes_parse(qb, &n);
    json_decref(qb);
    int r = qops_internal_plan(&n, "SOCK", op, tag, o, &sel, vmstate, e);
    static char vm[64];
    if (r == 0) {
        snprintf(vm, sizeof vm, "%s", *vmstate);
        *vmstate = vm;
    }
    *n_sel = sel.n;
    qops_strv_free(&sel);
    qops_nodes_free(&n);
    return r;
}

static void test_internal_plan(void **state)
{
    (void)state;
    struct qops_internal_opts o = { 0 };
    const char *vm = NULL;
    size_t n;
    vs_err e = { 0 };

    /* A writable raw disk: refused, naming the node and the way out. */
    assert_int_equal(plan(true, QOPS_SAVE, "x", &o, &vm, &n, &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "node 'data' is a writable raw disk and cannot hold internal snapshots"));
    assert_non_null(strstr(e.msg, "--devices"));
    /* Read-only disks are left out; the qcow2 disk carries the VM state. */
    assert_int_equal(plan(false, QOPS_SAVE, "x", &o, &vm, &n, &e), 0);
    assert_string_equal(vm, "disk0");
    assert_int_equal(n, 1);
    /* Explicit devices. */
    const char *devs[] = { "disk0" };
    o.devices = devs, o.n_devices = 1;
    assert_int_equal(plan(true, QOPS_SAVE, "x", &o, &vm, &n, &e), 0);
    const char *bad[] = { "disk0", "data" };
    o.devices = bad, o.n_devices = 2;
    assert_int_equal(plan(true, QOPS_SAVE, "x", &o, &vm, &n, &e), -ENOTSUP);
    assert_string_equal(e.msg, "node 'data' is raw and cannot hold internal snapshots (only qcow2 can)");
    const char *none[] = { "nope" };
    o.devices = none;
    o.n_devices = 1;
    assert_int_equal(plan(true, QOPS_SAVE, "x", &o, &vm, &n, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "no block node 'nope' on SOCK"));
    o.devices = devs;
    o.vmstate = "fw";
    assert_int_equal(plan(true, QOPS_SAVE, "x", &o, &vm, &n, &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "vmstate node 'fw' is raw"));
    o = (struct qops_internal_opts){ 0 };

    /* Tags. */
    assert_int_equal(plan(false, QOPS_SAVE, "t1", &o, &vm, &n, &e), -EEXIST);
    assert_string_equal(e.msg, "snapshot 't1' already exists on node 'disk0' (delete it first)");
    assert_int_equal(plan(false, QOPS_LOAD, "t2", &o, &vm, &n, &e), -ENOENT);
    assert_string_equal(e.msg, "no snapshot 't2' on node 'disk0' of SOCK");
    assert_int_equal(plan(false, QOPS_DELETE, "t2", &o, &vm, &n, &e), -ENOENT);
    assert_int_equal(plan(false, QOPS_LOAD, "t1", &o, &vm, &n, &e), 0);
    assert_int_equal(plan(false, QOPS_DELETE, "t1", &o, &vm, &n, &e), 0);
}

static void test_strv(void **state)
{
    (void)state;
    char *v[] = { "elf", "kdump-zlib", "win-dmp" };
    struct qops_strv s = { v, 3 };
    char *j = qops_strv_join(&s, ", ");
    assert_string_equal(j, "elf, kdump-zlib, win-dmp");
    free(j);
    assert_true(qops_strv_has(&s, "win-dmp"));
    assert_false(qops_strv_has(&s, "kdump-lzo"));
    struct qops_strv empty = { 0 };
    j = qops_strv_join(&empty, ", ");
    assert_string_equal(j, "");
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_idle),
        cmocka_unit_test(test_estimate_converges),
        cmocka_unit_test(test_estimate_no_convergence),
        cmocka_unit_test(test_status_build),
        cmocka_unit_test(test_nodes_format),
        cmocka_unit_test(test_internal_plan),
        cmocka_unit_test(test_strv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
