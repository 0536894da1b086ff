/* qops: run state + MigrationInfo, normalised to bytes and seconds, as JSON and as text. */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>

bool qops_migration_active(const char *s)
{
    static const char *const active[] = { "setup", "active", "postcopy-active", "postcopy-paused",
                                          "postcopy-recover-setup", "postcopy-recover", "pre-switchover",
                                          "device", "wait-unplug", "cancelling", "colo" };
    for (size_t i = 0; s && i < VS_ARRAY_SIZE(active); i++)
        if (!strcmp(s, active[i]))
            return true;
    return false;
}

static void copy_int(json_t *dst, const char *to, const json_t *src, const char *from)
{
    json_t *v = json_object_get(src, from);
    if (json_is_integer(v))
        json_object_set_new(dst, to, json_integer(json_integer_value(v)));
}

static void copy_ms(json_t *dst, const char *to, const json_t *src, const char *from)
{
    json_t *v = json_object_get(src, from);
    if (json_is_number(v))
        json_object_set_new(dst, to, json_real(json_number_value(v) / 1000.0));
}

json_t *qops_status_build(const json_t *qs, const json_t *qm)
{
    json_t *mig = json_object();
    const char *ms = qops_json_str(qm, "status", "none");
    json_object_set_new(mig, "status", json_string(ms));
    json_object_set_new(mig, "active", json_boolean(qops_migration_active(ms)));
    copy_ms(mig, "total_time", qm, "total-time");
    copy_ms(mig, "setup_time", qm, "setup-time");
    copy_ms(mig, "expected_downtime", qm, "expected-downtime");
    copy_ms(mig, "downtime", qm, "downtime");
    copy_int(mig, "cpu_throttle_percentage", qm, "cpu-throttle-percentage");
    const char *err = qops_json_str(qm, "error-desc", NULL);
    if (err)
        json_object_set_new(mig, "error", json_string(err));
    json_t *blocked = json_object_get(qm, "blocked-reasons");
    if (json_is_array(blocked))
        json_object_set(mig, "blocked_reasons", blocked);
    const json_t *ram = json_object_get(qm, "ram");
    if (json_is_object(ram)) {
        static const char *const ints[][2] = {
            { "transferred", "transferred" }, { "remaining", "remaining" }, { "total", "total" },
            { "duplicate_pages", "duplicate" }, { "normal_pages", "normal" }, { "normal_bytes", "normal-bytes" },
            { "dirty_pages_rate", "dirty-pages-rate" }, { "dirty_sync_count", "dirty-sync-count" },
            { "page_size", "page-size" }, { "pages_per_second", "pages-per-second" },
            { "precopy_bytes", "precopy-bytes" }, { "downtime_bytes", "downtime-bytes" },
            { "postcopy_bytes", "postcopy-bytes" }, { "postcopy_requests", "postcopy-requests" },
        };
        for (size_t i = 0; i < VS_ARRAY_SIZE(ints); i++)
            copy_int(mig, ints[i][0], ram, ints[i][1]);
        json_t *mbps = json_object_get(ram, "mbps");
        if (json_is_number(mbps))
            json_object_set_new(mig, "throughput_mbps", json_real(json_number_value(mbps)));
    }
    return json_pack("{s:s, s:b, s:o}", "status", qops_json_str(qs, "status", "?"), "running",
                     json_is_true(json_object_get(qs, "running")), "migration", mig);
}

int qops_status(struct qmp *q, json_t **out, vs_err *e)
{
    QOPS_JSON_AUTODECREF json_t *qs = NULL;
    QOPS_JSON_AUTODECREF json_t *qm = NULL;
    int r = qmp_execute(q, "query-status", NULL, &qs, e);
    if (r < 0)
        return r;
    if ((r = qmp_execute(q, "query-migrate", NULL, &qm, e)) < 0)
        return r;
    if (!json_is_object(qs) || !json_is_object(qm))
        return vs_err_set(e, EPROTO, "query-status/query-migrate on %s returned no object", qmp_name(q));
    *out = qops_status_build(qs, qm);
    return 0;
}

static void put_size(FILE *f, const char *label, const json_t *m, const char *key)
{
    json_t *v = json_object_get(m, key);
    if (!json_is_integer(v))
        return;
    char buf[32];
    fprintf(f, "%s%s", label, vs_fmt_size((uint64_t)json_integer_value(v), buf, sizeof buf));
}

char *qops_status_text(const json_t *doc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        VS_BUG("open_memstream failed");
    const json_t *m = json_object_get(doc, "migration");
    fprintf(f, "VM: %s\n", qops_json_str(doc, "status", "?"));
    fprintf(f, "migration: %s", qops_json_str(m, "status", "none"));
    if (json_object_get(m, "total_time"))
        fprintf(f, " (%.2f s", qops_json_num(m, "total_time", 0));
    if (json_object_get(m, "setup_time"))
        fprintf(f, ", setup %.3f s", qops_json_num(m, "setup_time", 0));
    if (json_object_get(m, "total_time"))
        fputc(')', f);
    fputc('\n', f);
    if (json_object_get(m, "transferred")) {
        put_size(f, "  transferred ", m, "transferred");
        put_size(f, " of ", m, "total");
        put_size(f, ", remaining ", m, "remaining");
        fputc('\n', f);
    }
    if (json_object_get(m, "throughput_mbps")) {
        fprintf(f, "  throughput %.1f Mbit/s", qops_json_num(m, "throughput_mbps", 0));
        if (json_object_get(m, "pages_per_second"))
            fprintf(f, ", %lld pages/s", (long long)qops_json_int(m, "pages_per_second", 0));
        fputc('\n', f);
    }
    if (json_object_get(m, "dirty_pages_rate") || json_object_get(m, "dirty_sync_count"))
        fprintf(f, "  guest dirties %lld pages/s, %lld dirty syncs\n", (long long)qops_json_int(m, "dirty_pages_rate", 0),
                (long long)qops_json_int(m, "dirty_sync_count", 0));
    if (json_object_get(m, "normal_pages"))
        fprintf(f, "  pages sent: %lld normal, %lld zero\n", (long long)qops_json_int(m, "normal_pages", 0),
                (long long)qops_json_int(m, "duplicate_pages", 0));
    if (json_object_get(m, "expected_downtime"))
        fprintf(f, "  expected downtime %.3f s\n", qops_json_num(m, "expected_downtime", 0));
    if (json_object_get(m, "downtime"))
        fprintf(f, "  downtime %.3f s\n", qops_json_num(m, "downtime", 0));
    if (json_object_get(m, "cpu_throttle_percentage"))
        fprintf(f, "  guest CPUs throttled %lld%%\n", (long long)qops_json_int(m, "cpu_throttle_percentage", 0));
    if (json_object_get(m, "error"))
        fprintf(f, "  error: %s\n", qops_json_str(m, "error", ""));
    fclose(f);
    return buf;
}
