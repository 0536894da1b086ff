/* qops: the VM's block nodes (query-block) and their internal snapshots, as data, JSON and text. */
#include "qops/qops.h"
#include "qops/qops-priv.h"

#include <errno.h>
#include <string.h>
#include <time.h>

bool qops_drv_can_snapshot(const char *drv)
{
    /* Of the formats Debian's QEMU opens read-write, only qcow2 stores internal snapshots. */
    return drv && !strcmp(drv, "qcow2");
}

static void parse_snapshots(struct qops_node *n, const json_t *arr)
{
    size_t i;
    json_t *s;
    if (!json_is_array(arr))
        return;
    n->snaps = vs_xcalloc(json_array_size(arr) ? json_array_size(arr) : 1, sizeof *n->snaps);
    json_array_foreach(arr, i, s) {
        struct qops_snapshot *o = &n->snaps[n->n_snaps++];
        o->tag = vs_xstrdup(qops_json_str(s, "name", ""));
        o->id = vs_xstrdup(qops_json_str(s, "id", ""));
        o->date_sec = qops_json_int(s, "date-sec", 0);
        o->date_nsec = qops_json_int(s, "date-nsec", 0);
        int64_t vs = qops_json_int(s, "vm-state-size", 0);
        o->vmstate_size = vs > 0 ? (uint64_t)vs : 0;
        int64_t ns;
        if (__builtin_mul_overflow(qops_json_int(s, "vm-clock-sec", 0), (int64_t)1000000000, &ns) ||
            __builtin_add_overflow(ns, qops_json_int(s, "vm-clock-nsec", 0), &ns))
            ns = 0;   /* nonsense from QEMU: show 0 rather than wrap */
        o->vm_clock_ns = ns;
    }
}

int qops_nodes_query(struct qmp *q, struct qops_nodes *out, vs_err *e)
{
    QOPS_JSON_AUTODECREF json_t *ret = NULL;
    *out = (struct qops_nodes){ 0 };
    int r = qmp_execute(q, "query-block", NULL, &ret, e);
    if (r < 0)
        return r;
    if (!json_is_array(ret))
        return vs_err_set(e, EPROTO, "query-block on %s did not return a list", qmp_name(q));
    qops_nodes_parse(ret, out);
    return 0;
}

void qops_nodes_parse(const json_t *ret, struct qops_nodes *out)
{
    *out = (struct qops_nodes){ 0 };
    if (!json_is_array(ret))
        return;
    size_t i;
    json_t *b;
    out->v = vs_xcalloc(json_array_size(ret) ? json_array_size(ret) : 1, sizeof *out->v);
    json_array_foreach(ret, i, b) {
        json_t *ins = json_object_get(b, "inserted");
        if (!json_is_object(ins))
            continue;   /* empty drive (no medium) */
        struct qops_node *n = &out->v[out->n++];
        n->node = vs_xstrdup(qops_json_str(ins, "node-name", ""));
        n->device = vs_xstrdup(qops_json_str(b, "device", ""));
        n->qdev = vs_xstrdup(qops_json_str(b, "qdev", ""));
        n->drv = vs_xstrdup(qops_json_str(ins, "drv", "?"));
        n->ro = json_is_true(json_object_get(ins, "ro"));
        parse_snapshots(n, json_object_get(json_object_get(ins, "image"), "snapshots"));
    }
}

void qops_nodes_free(struct qops_nodes *n)
{
    for (size_t i = 0; i < n->n; i++) {
        struct qops_node *x = &n->v[i];
        for (size_t j = 0; j < x->n_snaps; j++) {
            free(x->snaps[j].tag);
            free(x->snaps[j].id);
        }
        free(x->snaps);
        free(x->node);
        free(x->device);
        free(x->qdev);
        free(x->drv);
    }
    free(n->v);
    *n = (struct qops_nodes){ 0 };
}

const struct qops_node *qops_nodes_find(const struct qops_nodes *n, const char *node)
{
    for (size_t i = 0; i < n->n; i++)
        if (!strcmp(n->v[i].node, node))
            return &n->v[i];
    return NULL;
}

const struct qops_snapshot *qops_node_find_snapshot(const struct qops_node *n, const char *tag)
{
    for (size_t i = 0; i < n->n_snaps; i++)
        if (!strcmp(n->snaps[i].tag, tag))
            return &n->snaps[i];
    return NULL;
}

json_t *qops_nodes_json(const struct qops_nodes *n)
{
    json_t *devs = json_array();
    for (size_t i = 0; i < n->n; i++) {
        const struct qops_node *x = &n->v[i];
        json_t *snaps = json_array();
        for (size_t j = 0; j < x->n_snaps; j++) {
            const struct qops_snapshot *s = &x->snaps[j];
            json_array_append_new(snaps, json_pack("{s:s, s:s, s:f, s:I, s:f}",
                "tag", s->tag, "id", s->id,
                "date", (double)s->date_sec + s->date_nsec / 1e9,
                "vmstate_size", (json_int_t)s->vmstate_size,
                "vm_clock", s->vm_clock_ns / 1e9));
        }
        json_array_append_new(devs, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:o}",
            "device", x->device, "node", x->node, "qdev", x->qdev, "format", x->drv,
            "read_only", x->ro, "can_snapshot", qops_drv_can_snapshot(x->drv), "snapshots", snaps));
    }
    return json_pack("{s:o}", "devices", devs);
}

/* "HH:MM:SS.mmm" like QEMU's "info snapshots". */
static void fmt_clock(int64_t ns, char *buf, size_t len)
{
    if (ns < 0)
        ns = 0;
    int64_t ms = ns / 1000000;
    snprintf(buf, len, "%02lld:%02lld:%02lld.%03lld", (long long)(ms / 3600000), (long long)(ms / 60000 % 60),
             (long long)(ms / 1000 % 60), (long long)(ms % 1000));
}

char *qops_nodes_text(const struct qops_nodes *n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        VS_BUG("open_memstream failed");
    fprintf(f, "%-12s %-14s %-20s %-19s %10s %12s\n", "DEVICE", "NODE", "TAG", "DATE", "VM STATE", "VM CLOCK");
    for (size_t i = 0; i < n->n; i++) {
        const struct qops_node *x = &n->v[i];
        const char *dev = x->device[0] ? x->device : (x->qdev[0] ? x->qdev : "-");
        if (!x->n_snaps) {
            fprintf(f, "%-12s %-14s %s\n", dev, x->node,
                    qops_drv_can_snapshot(x->drv) ? "(no snapshots)"
                    : x->ro ? "(read-only, not snapshotted)" : "(cannot hold snapshots: not qcow2)");
            continue;
        }
        for (size_t j = 0; j < x->n_snaps; j++) {
            const struct qops_snapshot *s = &x->snaps[j];
            char date[32] = "-", size[32], clock[32];
            time_t t = (time_t)s->date_sec;
            struct tm tm;
            if (localtime_r(&t, &tm))
                strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
            vs_fmt_size(s->vmstate_size, size, sizeof size);
            fmt_clock(s->vm_clock_ns, clock, sizeof clock);
            fprintf(f, "%-12s %-14s %-20s %-19s %10s %12s\n", dev, x->node, s->tag, date, size, clock);
        }
    }
    fclose(f);
    return buf;
}
