/* qops: internal (qcow2) snapshots — snapshot-save/-load/-delete jobs, HMP fallback, pre-checks. */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>

static const char *op_name(enum qops_internal_op op)
{
    return op == QOPS_SAVE ? "save" : op == QOPS_LOAD ? "load" : "delete";
}

/* The nodes the operation covers: the given ones (each must exist and be able to hold snapshots), or
 * every writable top node (all must be qcow2: a writable disk left out would not match the RAM). */
static int select_devices(const char *who, const struct qops_nodes *nodes, const struct qops_internal_opts *o,
                          struct qops_strv *sel, vs_err *e)
{
    if (o->devices) {
        for (size_t i = 0; i < o->n_devices; i++) {
            const char *name = o->devices[i];
            const struct qops_node *n = qops_nodes_find(nodes, name);
            if (!n)
                return vs_err_set(e, ENOENT, "no block node '%s' on %s (internal list shows the nodes)",
                                  name, who);
            if (!qops_drv_can_snapshot(n->drv))
                return vs_err_set(e, ENOTSUP, "node '%s' is %s and cannot hold internal snapshots (only qcow2 can)",
                                  name, n->drv);
            if (!qops_strv_has(sel, name))
                qops_strv_add(sel, name);
        }
    } else {
        for (size_t i = 0; i < nodes->n; i++) {
            const struct qops_node *n = &nodes->v[i];
            if (n->ro)
                continue;
            if (!qops_drv_can_snapshot(n->drv))
                return vs_err_set(e, ENOTSUP,
                                  "node '%s'%s%s%s is a writable %s disk and cannot hold internal snapshots "
                                  "(only qcow2 can); pass --devices with the qcow2 nodes to leave it out",
                                  n->node, n->device[0] ? " (device '" : "", n->device,
                                  n->device[0] ? "')" : "", n->drv);
            qops_strv_add(sel, n->node);
        }
    }
    if (!sel->n)
        return vs_err_set(e, ENODEV, "no writable qcow2 disk on %s to hold a snapshot", who);
    return 0;
}

/* Refuse early, naming the node, what QEMU would refuse inside the job with a vaguer message. */
static int precheck(const char *who, enum qops_internal_op op, const char *tag, const struct qops_nodes *nodes,
                    const struct qops_strv *sel, const char *vmstate, vs_err *e)
{
    size_t have = 0;
    const char *missing = NULL;
    for (size_t i = 0; i < sel->n; i++) {
        const struct qops_node *n = qops_nodes_find(nodes, sel->v[i]);
        if (n && qops_node_find_snapshot(n, tag)) {
            have++;
            if (op == QOPS_SAVE)
                return vs_err_set(e, EEXIST, "snapshot '%s' already exists on node '%s' (delete it first)",
                                  tag, n->node);
        } else if (!missing) {
            missing = sel->v[i];
        }
    }
    if (op == QOPS_LOAD && missing)
        return vs_err_set(e, ENOENT, "no snapshot '%s' on node '%s' of %s", tag, missing, who);
    if (op == QOPS_DELETE && !have)
        return vs_err_set(e, ENOENT, "no snapshot '%s' on any selected node of %s", tag, who);
    if (op == QOPS_LOAD) {
        const struct qops_node *vn = qops_nodes_find(nodes, vmstate);
        const struct qops_snapshot *s = vn ? qops_node_find_snapshot(vn, tag) : NULL;
        if (s && !s->vmstate_size)
            return vs_err_set(e, ENOENT, "snapshot '%s' on node '%s' holds no VM state", tag, vmstate);
    }
    return 0;
}

/* Wait for the job to conclude, then read its error and dismiss it. */
static int follow_job(struct qmp *q, const char *cmd, const char *tag, const char *id, const struct qops_deadline *dl,
                      vs_err *e)
{
    QOPS_JSON_AUTODECREF json_t *match = json_pack("{s:s, s:s}", "id", id, "status", "concluded");
    for (;;) {
        double slice = qops_deadline_slice(dl, 1.0);
        if (slice < 0)
            return vs_err_set(e, ETIMEDOUT, "job '%s' on %s did not conclude in time (it keeps running; "
                              "see query-jobs)", id, qmp_name(q));
        QOPS_JSON_AUTODECREF json_t *ev = NULL;
        int r = qmp_wait_event(q, "JOB_STATUS_CHANGE", match, slice, &ev, e);
        if (r == 0)
            break;
        if (r != -ETIMEDOUT)
            return r;
        /* No event yet: make sure the job still exists (an event can be lost to a full queue). */
        QOPS_JSON_AUTODECREF json_t *jobs = NULL;
        if ((r = qmp_execute(q, "query-jobs", NULL, &jobs, e)) < 0)
            return r;
        size_t i;
        json_t *j;
        bool found = false, concluded = false;
        json_array_foreach(jobs, i, j) {
            if (!strcmp(qops_json_str(j, "id", ""), id)) {
                found = true;
                concluded = !strcmp(qops_json_str(j, "status", ""), "concluded");
            }
        }
        if (!found)
            return vs_err_set(e, EIO, "job '%s' vanished from query-jobs on %s", id, qmp_name(q));
        if (concluded)
            break;
    }
    QOPS_JSON_AUTODECREF json_t *jobs = NULL;
    int r = qmp_execute(q, "query-jobs", NULL, &jobs, e);
    if (r < 0)
        return r;
    char errbuf[400] = "";
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        const char *msg = json_string_value(json_object_get(j, "error"));
        if (!strcmp(qops_json_str(j, "id", ""), id) && msg)
            snprintf(errbuf, sizeof errbuf, "%s", msg);
    }
    vs_err de;
    QOPS_JSON_AUTODECREF json_t *args = json_pack("{s:s}", "id", id);
    int dr = qmp_execute(q, "job-dismiss", args, NULL, &de);
    if (errbuf[0])
        return vs_err_set(e, EIO, "%s of '%s' on %s failed (job '%s'): %s", cmd, tag, qmp_name(q), id, errbuf);
    if (dr < 0) {
        *e = de;
        return dr;
    }
    return 0;
}

static int run_job(struct qmp *q, enum qops_internal_op op, const char *tag, const struct qops_strv *sel,
                   const char *vmstate, const struct qops_deadline *dl, vs_err *e)
{
    VS_AUTOFREE char *id = qops_job_id(op_name(op));
    json_t *devs = json_array();
    for (size_t i = 0; i < sel->n; i++)
        json_array_append_new(devs, json_string(sel->v[i]));
    QOPS_JSON_AUTODECREF json_t *args = json_pack("{s:s, s:s, s:o}", "job-id", id, "tag", tag, "devices", devs);
    if (op != QOPS_DELETE)
        json_object_set_new(args, "vmstate", json_string(vmstate));
    const char *cmd = op == QOPS_SAVE ? "snapshot-save" : op == QOPS_LOAD ? "snapshot-load" : "snapshot-delete";
    int r = qmp_execute(q, cmd, args, NULL, e);
    if (r < 0)
        return r;
    return follow_job(q, cmd, tag, id, dl, e);
}

/* HMP takes one line; refuse what its argument parser would split or unquote. */
static int run_hmp(struct qmp *q, enum qops_internal_op op, const char *tag, double timeout_s, vs_err *e)
{
    if (strpbrk(tag, " \t\"'\\"))
        return vs_err_set(e, EINVAL, "tag '%s' has spaces, quotes or backslashes, which HMP %svm cannot take",
                          tag, op == QOPS_DELETE ? "del" : op_name(op));
    VS_AUTOFREE char *line = vs_xasprintf("%s %s", op == QOPS_SAVE ? "savevm" : op == QOPS_LOAD ? "loadvm" : "delvm",
                                          tag);
    QOPS_JSON_AUTODECREF json_t *args = json_pack("{s:s}", "command-line", line);
    QOPS_JSON_AUTODECREF json_t *ret = NULL;
    int r = qmp_execute_timeout(q, "human-monitor-command", args, timeout_s > 0 ? timeout_s : 24 * 3600.0, &ret, e);
    if (r < 0)
        return r;
    const char *out = json_string_value(ret);
    if (out && *out) {
        /* HMP reports failure only as text: "Error: ...\r\n". */
        char msg[400];
        snprintf(msg, sizeof msg, "%s", out);
        msg[strcspn(msg, "\r\n")] = 0;
        const char *m = !strncmp(msg, "Error: ", 7) ? msg + 7 : msg;
        return vs_err_set(e, EIO, "HMP '%s' on %s failed: %s", line, qmp_name(q), m);
    }
    return 0;
}

int qops_internal_plan(const struct qops_nodes *nodes, const char *who, enum qops_internal_op op, const char *tag,
                       const struct qops_internal_opts *o, struct qops_strv *sel, const char **vmstate, vs_err *e)
{
    int r = select_devices(who, nodes, o, sel, e);
    if (r < 0)
        return r;
    const char *vm = o->vmstate ? o->vmstate : sel->v[0];
    if (op != QOPS_DELETE && !qops_strv_has(sel, vm)) {
        const struct qops_node *vn = qops_nodes_find(nodes, vm);
        if (!vn)
            return vs_err_set(e, ENOENT, "no block node '%s' on %s for the VM state", vm, who);
        if (!qops_drv_can_snapshot(vn->drv))
            return vs_err_set(e, ENOTSUP, "vmstate node '%s' is %s and cannot hold VM state (only qcow2 can)",
                              vm, vn->drv);
        return vs_err_set(e, EINVAL, "vmstate node '%s' must be one of --devices", vm);
    }
    if ((r = precheck(who, op, tag, nodes, sel, vm, e)) < 0)
        return r;
    *vmstate = vm;
    return 0;
}

int qops_internal(struct qmp *q, enum qops_internal_op op, const char *tag, const struct qops_internal_opts *o,
                  struct qops_internal_result *res, vs_err *e)
{
    struct qops_internal_opts dflt = { 0 };
    struct qops_internal_result dummy;
    if (!o)
        o = &dflt;
    if (!res)
        res = &dummy;
    *res = (struct qops_internal_result){ 0 };
    int r = qops_check_text("snapshot tag", tag, e);
    if (r < 0)
        return r;

    double t0 = vs_now_s();
    struct qops_deadline dl;
    qops_deadline_init(&dl, o->timeout_s);

    int has_jobs = qmp_has_command(q, op == QOPS_SAVE ? "snapshot-save" : op == QOPS_LOAD ? "snapshot-load"
                                                                                            : "snapshot-delete", e);
    if (has_jobs < 0)
        return has_jobs;
    bool hmp = o->force_hmp || !has_jobs;
    if (hmp && (o->devices || o->vmstate))
        return vs_err_set(e, ENOTSUP, "--devices/--vmstate need QEMU's snapshot-%s job (QEMU 6.0+); %s",
                          op_name(op), has_jobs ? "HMP was forced" : "this QEMU has only HMP savevm/loadvm/delvm");

    struct qops_nodes nodes __attribute__((cleanup(qops_nodes_free))) = { 0 };
    struct qops_strv sel __attribute__((cleanup(qops_strv_free))) = { 0 };
    const char *vmstate = NULL;
    if ((r = qops_nodes_query(q, &nodes, e)) < 0)
        return r;
    if ((r = qops_internal_plan(&nodes, qmp_name(q), op, tag, o, &sel, &vmstate, e)) < 0)
        return r;

    struct qops_runstate *rs = &res->run;
    if ((r = qops_runstate_save(q, rs, e)) < 0)
        return r;
    res->used_hmp = hmp;
    snprintf(res->vmstate, sizeof res->vmstate, "%s", op == QOPS_DELETE ? "" : vmstate);
    res->n_devices = sel.n;
    r = hmp ? run_hmp(q, op, tag, o->timeout_s, e) : run_job(q, op, tag, &sel, vmstate, &dl, e);

    /* A failed load leaves QEMU in "restore-vm"; a save stops the VM for its duration. Either way the
     * VM must run again if it ran before. */
    vs_err re;
    int rr = qops_runstate_restore(q, rs, &re);
    if (r < 0) {
        if (rr < 0 && e) {
            size_t l = strlen(e->msg);
            snprintf(e->msg + l, sizeof e->msg - l, " (and resuming the VM failed: %s)", re.msg);
        }
        return r;
    }
    if (rr < 0) {
        *e = re;
        return rr;
    }
    res->seconds = vs_now_s() - t0;
    return 0;
}
