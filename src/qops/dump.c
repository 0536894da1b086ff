/* qops: guest memory dump through dump-guest-memory, output passed as an fd (never a path or a shell). */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>

int qops_dump_formats(struct qmp *q, struct qops_strv *out, vs_err *e)
{
    QOPS_JSON_AUTODECREF json_t *ret = NULL;
    *out = (struct qops_strv){ 0 };
    int r = qmp_execute(q, "query-dump-guest-memory-capability", NULL, &ret, e);
    if (r < 0)
        return r;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(ret, "formats"), i, f)
        if (json_is_string(f))
            qops_strv_add(out, json_string_value(f));
    return 0;
}

/* DUMP_COMPLETED carries {"result": DumpQueryResult, "error"?: str}. */
static int dump_outcome(struct qmp *q, const json_t *data, struct qops_dump_result *res, vs_err *e)
{
    const json_t *result = json_object_get(data, "result");
    const char *status = qops_json_str(result, "status", "?");
    const char *err = json_string_value(json_object_get(data, "error"));
    int64_t total = qops_json_int(result, "total", 0);
    res->total = total > 0 ? (uint64_t)total : 0;
    if (err || strcmp(status, "completed"))
        return vs_err_set(e, EIO, "memory dump on %s ended '%s': %s", qmp_name(q), status, err ? err : "no reason given");
    return 0;
}

/* *running: the dump outlived the deadline and still runs (QEMU resumes the VM itself when it ends). */
static int wait_dump(struct qmp *q, const struct qops_dump_opts *o, const struct qops_deadline *dl,
                     struct qops_dump_result *res, bool *running, vs_err *e)
{
    for (;;) {
        double slice = qops_deadline_slice(dl, 0.5);
        if (slice < 0) {
            *running = true;
            return vs_err_set(e, ETIMEDOUT, "memory dump on %s did not complete in time (it keeps running and "
                              "QEMU resumes the VM when it ends; see query-dump)", qmp_name(q));
        }
        QOPS_JSON_AUTODECREF json_t *ev = NULL;
        int r = qmp_wait_event(q, "DUMP_COMPLETED", NULL, slice, &ev, e);
        if (r == 0)
            return dump_outcome(q, json_object_get(ev, "data"), res, e);
        if (r != -ETIMEDOUT)
            return r;
        QOPS_JSON_AUTODECREF json_t *st = NULL;
        if ((r = qmp_execute(q, "query-dump", NULL, &st, e)) < 0)
            return r;
        const char *status = qops_json_str(st, "status", "?");
        if (!strcmp(status, "failed"))
            return vs_err_set(e, EIO, "memory dump on %s failed (query-dump says 'failed')", qmp_name(q));
        if (!strcmp(status, "none"))
            return vs_err_set(e, EIO, "memory dump on %s is not running (query-dump says 'none')", qmp_name(q));
        if (o->progress)
            o->progress(o->opaque, (uint64_t)qops_json_int(st, "completed", 0), (uint64_t)qops_json_int(st, "total", 0));
        /* "completed" without the event yet: the next wait picks the event up. */
    }
}

int qops_dump(struct qmp *q, int fd, const struct qops_dump_opts *o, struct qops_dump_result *res, vs_err *e)
{
    struct qops_dump_opts dflt = { 0 };
    struct qops_dump_result dummy;
    if (!o)
        o = &dflt;
    if (!res)
        res = &dummy;
    *res = (struct qops_dump_result){ 0 };
    const char *format = o->format ? o->format : "elf";
    if (o->paging && strcmp(format, "elf"))
        return vs_err_set(e, EINVAL, "--paging works only with the elf format, not '%s'", format);

    struct qops_strv formats __attribute__((cleanup(qops_strv_free))) = { 0 };
    int r = qops_dump_formats(q, &formats, e);
    if (r < 0)
        return r;
    if (!qops_strv_has(&formats, format)) {
        VS_AUTOFREE char *list = qops_strv_join(&formats, ", ");
        return vs_err_set(e, ENOTSUP, "dump format '%s' is not supported by the QEMU on %s (it supports: %s)",
                          format, qmp_name(q), list);
    }

    struct qops_runstate *rs = &res->run;
    if ((r = qops_runstate_save(q, rs, e)) < 0)
        return r;
    struct qops_deadline dl;
    qops_deadline_init(&dl, o->timeout_s);
    double t0 = vs_now_s();
    VS_AUTOFREE char *fdname = qops_job_id("dump");
    bool still_running = false;
    if ((r = qmp_getfd(q, fdname, fd, e)) < 0)
        return r;
    VS_AUTOFREE char *proto = vs_xasprintf("fd:%s", fdname);
    QOPS_JSON_AUTODECREF json_t *args = json_pack("{s:b, s:s, s:b, s:s}", "paging", o->paging, "protocol", proto,
                                           "detach", 1, "format", format);
    r = qmp_execute(q, "dump-guest-memory", args, NULL, e);
    if (r < 0) {
        /* QEMU takes the fd only once the dump starts: drop it, or it stays open inside QEMU. */
        vs_err ce;
        qmp_closefd(q, fdname, &ce);
    } else {
        r = wait_dump(q, o, &dl, res, &still_running, e);
    }
    /* Never cont under a running dump: the guest would change the memory being written. */
    vs_err re;
    int rr = still_running ? 0 : qops_runstate_restore(q, rs, &re);
    if (r < 0)
        return r;
    if (rr < 0) {
        *e = re;
        return rr;
    }
    res->seconds = vs_now_s() - t0;
    return 0;
}
