/* qops: helpers shared by the operations — run state kept across an operation, string vectors. */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>

int qops_runstate_save(struct qmp *q, struct qops_runstate *rs, vs_err *e)
{
    *rs = (struct qops_runstate){ 0 };
    return qmp_query_status(q, &rs->was_running, rs->status, sizeof rs->status, e);
}

int qops_runstate_restore(struct qmp *q, struct qops_runstate *rs, vs_err *e)
{
    bool sent_cont = false;
    if (rs->was_running) {
        int r = qmp_resume(q, &sent_cont, e);
        if (r < 0) {
            vs_err_prefix(e, "VM on %s was running before", qmp_name(q));
            return r;
        }
        /* qmp_resume's last query-status said so */
        rs->resumed_by = sent_cont ? QMP_RESUMED_VMSNAP : QMP_RESUMED_QEMU;
        snprintf(rs->status_after, sizeof rs->status_after, "running");
        return 0;
    }
    rs->resumed_by = QMP_LEFT_PAUSED;
    /* For the report only: failing to read it leaves "" and does not fail the operation. */
    if (qmp_query_status(q, NULL, rs->status_after, sizeof rs->status_after, NULL) < 0)
        rs->status_after[0] = 0;
    return 0;
}

void qops_strv_free(struct qops_strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (struct qops_strv){ 0 };
}

void qops_strv_add(struct qops_strv *s, const char *x)
{
    s->v = vs_xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = vs_xstrdup(x);
}

bool qops_strv_has(const struct qops_strv *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], x))
            return true;
    return false;
}

char *qops_strv_join(const struct qops_strv *s, const char *sep)
{
    size_t len = 1;
    for (size_t i = 0; i < s->n; i++)
        len += strlen(s->v[i]) + strlen(sep);
    char *out = vs_xmalloc(len);
    out[0] = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            strcat(out, sep);
        strcat(out, s->v[i]);
    }
    return out;
}

const char *qops_json_str(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

int64_t qops_json_int(const json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d > -9.2e18 && d < 9.2e18 ? (int64_t)d : dflt;
    }
    return dflt;
}

double qops_json_num(const json_t *o, const char *key, double dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

void qops_deadline_init(struct qops_deadline *d, double timeout_s)
{
    d->end = timeout_s > 0 ? vs_now_s() + timeout_s : 0;
}

/* Seconds to wait next: at most slice, less near the deadline; -1 once it has passed. */
double qops_deadline_slice(const struct qops_deadline *d, double slice)
{
    if (!d->end)
        return slice;
    double left = d->end - vs_now_s();
    if (left <= 0)
        return -1;
    return left < slice ? left : slice;
}

char *qops_job_id(const char *what)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t u[16];
    char tail[9];
    if (vs_uuid_generate(u) < 0)
        memset(u, 0, sizeof u);
    for (int i = 0; i < 4; i++) {
        tail[2 * i] = hex[u[i] >> 4];
        tail[2 * i + 1] = hex[u[i] & 15];
    }
    tail[8] = 0;
    return vs_xasprintf("vmsnap-%s-%ld-%s", what, (long)getpid(), tail);
}

int qops_check_text(const char *what, const char *s, vs_err *e)
{
    if (!s || !*s)
        return vs_err_set(e, EINVAL, "%s must not be empty", what);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return vs_err_set(e, EINVAL, "%s '%s' contains a control character", what, s);
    if (strlen(s) > 127)
        return vs_err_set(e, EINVAL, "%s '%.32s...' is longer than 127 bytes", what, s);
    return 0;
}
