/* blkcap: the disks of a running QEMU as its devices see them (query-block), and the choice of which to capture. */
#include "blkcap/blkcap.h"

#include <errno.h>
#include <string.h>

static void disk_free(struct bc_disk *k)
{
    free(k->name);
    free(k->qdev);
    free(k->device);
    free(k->interface);
    free(k->node);
    free(k->drive);
    free(k->driver);
}

void bc_disks_free(struct bc_disks *d)
{
    for (size_t i = 0; i < d->n; i++)
        disk_free(&d->d[i]);
    free(d->d);
    d->d = NULL;
    d->n = 0;
}

void bc_disks_freep(struct bc_disks *d)
{
    bc_disks_free(d);
}

static char *qom_type(struct qmp *q, const char *path, vs_err *e)
{
    json_t *args = json_pack("{s:s,s:s}", "path", path, "property", "type"), *ret = NULL;
    int r = qmp_execute(q, "qom-get", args, &ret, e);
    json_decref(args);
    if (r < 0)
        return NULL;
    char *t = json_is_string(ret) ? vs_xstrdup(json_string_value(ret)) : NULL;
    json_decref(ret);
    if (!t)
        vs_err_set(e, EPROTO, "QMP qom-get of %s's type: not a string", path);
    return t;
}

/* query-block names a virtio-blk device by its virtio-backend child; the device a user (and a resume) knows is its
 * parent, the virtio-blk-pci. Its qdev id when it lives under /machine/peripheral/, else its QOM path. */
static void identify(struct qmp *q, struct bc_disk *k, vs_err *e)
{
    VS_AUTOFREE char *dev = vs_xstrdup(k->qdev);
    static const char backend[] = "/virtio-backend";
    size_t n = strlen(dev);
    if (n > sizeof backend && !strcmp(dev + n - (sizeof backend - 1), backend))
        dev[n - (sizeof backend - 1)] = 0;
    static const char periph[] = "/machine/peripheral/";
    if (!strncmp(dev, periph, sizeof periph - 1) && !strchr(dev + sizeof periph - 1, '/'))
        k->device = vs_xstrdup(dev + sizeof periph - 1);
    else
        k->device = vs_xstrdup(dev);
    k->interface = qom_type(q, dev, e);
}

static int parse_one(struct qmp *q, json_t *b, struct bc_disk *k, vs_err *e)
{
    json_t *ins = json_object_get(b, "inserted");
    const char *bb = json_string_value(json_object_get(b, "device"));
    const char *qdev = json_string_value(json_object_get(b, "qdev"));
    const char *node = json_string_value(json_object_get(ins, "node-name"));
    json_t *size = json_object_get(json_object_get(ins, "image"), "virtual-size");
    if (!node || !json_is_integer(size) || json_integer_value(size) < 0)
        return vs_err_set(e, EPROTO, "QMP query-block: a medium without node-name or virtual-size");
    if (!strncmp(node, "vmsnap-", 7))
        return vs_err_set(e, EBUSY, "disk '%s' is on node %s, a snapshot node that a vmsnap which did not end (killed?) "
                          "left in this VM: its device must be put back on its own node (qom-set of its \"drive\") "
                          "and vmsnap's nodes, exports and NBD server removed first",
                          qdev && qdev[0] ? qdev : bb ? bb : node, node);
    k->node = vs_xstrdup(node);
    k->size = (uint64_t)json_integer_value(size);
    k->read_only = json_is_true(json_object_get(ins, "ro"));
    k->drive = bb && bb[0] ? vs_xstrdup(bb) : NULL;
    k->driver = vs_xstrdup(json_string_value(json_object_get(ins, "drv")) ?: "?");
    if (!qdev || !qdev[0]) {   /* refused if chosen (bc_disks_select) */
        k->name = vs_xstrdup(k->drive ? k->drive : node);
        return 0;
    }
    k->qdev = vs_xstrdup(qdev);
    vs_err te = { 0 };
    identify(q, k, &te);
    if (!k->interface)
        return vs_err_set(e, -te.code ?: EIO, "disk %s: %s", qdev, te.msg);
    k->name = vs_xstrdup(strchr(k->device, '/') ? (k->drive ? k->drive : node) : k->device);
    return 0;
}

int bc_disks_query(struct qmp *q, struct bc_disks *out, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-block", NULL, &ret, e);
    if (r < 0)
        return r;
    BC_DISKS_AUTOFREE struct bc_disks d = { 0 };
    size_t i;
    json_t *b;
    d.d = vs_xcalloc(json_array_size(ret) + 1, sizeof *d.d);
    json_array_foreach(ret, i, b) {
        if (!json_object_get(b, "inserted"))
            continue;   /* an empty drive (no medium) */
        struct bc_disk *k = &d.d[d.n++];
        if ((r = parse_one(q, b, k, e)) < 0) {
            json_decref(ret);
            return r;
        }
    }
    json_decref(ret);
    *out = d;
    d = (struct bc_disks){ 0 };
    return 0;
}

static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n))
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static void append(char **s, const char *name)
{
    char *t = *s ? vs_xasprintf("%s, %s", *s, name) : vs_xstrdup(name);
    free(*s);
    *s = t;
}

int bc_disks_select(struct bc_disks *d, const char *list, char **skipped, vs_err *e)
{
    VS_AUTOFREE char *names = NULL;
    for (size_t i = 0; i < d->n; i++)
        append(&names, d->d[i].name);
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < d->n && !found; i++)
            if (strlen(d->d[i].name) == len && !strncmp(p, d->d[i].name, len)) {
                found = true;
                if (d->d[i].read_only)
                    return vs_err_set(e, EROFS, "--disks: disk '%.*s' is read-only: a snapshot keeps no copy of it",
                                      (int)len, p);
            }
        if (!found)
            return vs_err_set(e, ENOENT, "--disks: this VM has no disk '%.*s' (its disks: %s)", (int)len, p,
                              names ? names : "none");
        p += len + (p[len] == ',');
    }
    for (size_t i = 0; i < d->n; i++) {   /* refusals first: d is unchanged on failure */
        struct bc_disk *k = &d->d[i];
        if ((list ? listed(list, k->name) : !k->read_only) && !k->qdev)
            return vs_err_set(e, ENOTSUP, "disk '%s' (node %s) is attached to no guest device: nothing to put a "
                              "snapshot filter in front of (--disks chooses the disks to capture)", k->name, k->node);
    }
    *skipped = NULL;
    size_t kept = 0;
    for (size_t i = 0; i < d->n; i++) {
        struct bc_disk *k = &d->d[i];
        if (list ? listed(list, k->name) : !k->read_only) {
            d->d[kept++] = *k;
            continue;
        }
        if (k->read_only && !list)
            append(skipped, k->name);
        disk_free(k);
    }
    d->n = kept;
    return 0;
}
