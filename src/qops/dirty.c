/* qops: dirty-rate measurement (calc-dirty-rate / query-dirty-rate) and the facts the estimate needs. */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>
#include <time.h>

int qops_dirty_rate_start(struct qmp *q, int seconds, vs_err *e)
{
    if (seconds < 1 || seconds > 60)
        return vs_err_set(e, EINVAL, "dirty-rate measuring time must be 1..60 seconds, not %d", seconds);
    int r = qmp_has_command(q, "calc-dirty-rate", e);
    if (r <= 0)
        return r < 0 ? r : vs_err_set(e, ENOTSUP, "the QEMU on %s has no calc-dirty-rate (QEMU 5.2+)", qmp_name(q));
    /* Page sampling, explicitly: dirty-bitmap mode needs KVM's dirty log (a TCG QEMU 7.2 aborts on it). */
    QOPS_JSON_AUTODECREF json_t *args = json_pack("{s:I}", "calc-time", (json_int_t)seconds);
    if (qmp_version_at_least(q, 6, 2))
        json_object_set_new(args, "mode", json_string("page-sampling"));
    return qmp_execute(q, "calc-dirty-rate", args, NULL, e);
}

int qops_dirty_rate_result(struct qmp *q, struct qops_dirty_rate *out, vs_err *e)
{
    QOPS_JSON_AUTODECREF json_t *info = NULL;
    *out = (struct qops_dirty_rate){ 0 };
    int r = qmp_execute(q, "query-dirty-rate", NULL, &info, e);
    if (r < 0)
        return r;
    const char *status = qops_json_str(info, "status", "?");
    if (!strcmp(status, "measuring"))
        return -EAGAIN;
    if (strcmp(status, "measured"))
        return vs_err_set(e, ENOENT, "no dirty-rate measurement on %s (status '%s')", qmp_name(q), status);
    json_t *rate = json_object_get(info, "dirty-rate");
    if (!json_is_integer(rate))
        return vs_err_set(e, EPROTO, "query-dirty-rate on %s says 'measured' but gives no dirty-rate", qmp_name(q));
    out->mib_per_s = (double)json_integer_value(rate);
    out->calc_time_s = qops_json_int(info, "calc-time", 0);
    out->sample_pages = (uint64_t)qops_json_int(info, "sample-pages", 0);
    snprintf(out->mode, sizeof out->mode, "%s", qops_json_str(info, "mode", "page-sampling"));
    return 0;
}

int qops_dirty_rate_measure(struct qmp *q, int seconds, struct qops_dirty_rate *out, vs_err *e)
{
    int r = qops_dirty_rate_start(q, seconds, e);
    if (r < 0)
        return r;
    double end = vs_now_s() + seconds + 30.0;
    nanosleep(&(struct timespec){ .tv_sec = seconds }, NULL);
    while ((r = qops_dirty_rate_result(q, out, e)) == -EAGAIN) {
        if (vs_now_s() > end)
            return vs_err_set(e, ETIMEDOUT, "dirty-rate measurement on %s did not finish", qmp_name(q));
        nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000 * 1000 }, NULL);
    }
    return r;
}

int qops_vm_facts_query(struct qmp *q, struct qops_vm_facts *out, vs_err *e)
{
    *out = (struct qops_vm_facts){ 0 };
    QOPS_JSON_AUTODECREF json_t *mem = NULL;
    QOPS_JSON_AUTODECREF json_t *params = NULL;
    QOPS_JSON_AUTODECREF json_t *mig = NULL;
    int r = qmp_execute(q, "query-memory-size-summary", NULL, &mem, e);
    if (r < 0)
        return r;
    int64_t base = qops_json_int(mem, "base-memory", 0), plugged = qops_json_int(mem, "plugged-memory", 0);
    if (base <= 0)
        return vs_err_set(e, EPROTO, "query-memory-size-summary on %s gives no base-memory", qmp_name(q));
    out->ram_bytes = (uint64_t)base + (uint64_t)(plugged > 0 ? plugged : 0);

    if ((r = qmp_execute(q, "query-migrate-parameters", NULL, &params, e)) < 0)
        return r;
    int64_t bw = qops_json_int(params, "max-bandwidth", 0);
    out->max_bandwidth = bw > 0 ? (uint64_t)bw : 0;
    out->downtime_limit_s = qops_json_int(params, "downtime-limit", 300) / 1000.0;

    r = qmp_has_migrate_capability(q, "background-snapshot", e);
    if (r < 0)
        return r;
    out->has_background_snapshot = r > 0;

    /* A finished migration of this VM is a measurement of how fast QEMU streams it here. */
    if ((r = qmp_execute(q, "query-migrate", NULL, &mig, e)) < 0)
        return r;
    const json_t *ram = json_object_get(mig, "ram");
    if (!strcmp(qops_json_str(mig, "status", ""), "completed") && json_is_object(ram)) {
        double secs = ((double)qops_json_int(mig, "total-time", 0) - (double)qops_json_int(mig, "setup-time", 0)) / 1000.0;
        int64_t sent = qops_json_int(ram, "transferred", 0);
        int64_t normal = qops_json_int(ram, "normal", 0), dup = qops_json_int(ram, "duplicate", 0);
        if (secs > 0.01 && sent > 0)
            out->last_bytes_per_s = sent / secs;
        if (normal >= 0 && dup >= 0 && (double)normal + (double)dup > 0)
            out->last_nonzero_fraction = (double)normal / ((double)normal + (double)dup);
    }
    return 0;
}
