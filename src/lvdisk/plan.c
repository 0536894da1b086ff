/* lvdisk: which disks a domain has and which of them a snapshot captures. The target dev and the alias come from
 * libvirt's live XML; everything else (read-only, node, format, size, device model) from QEMU itself. */
#include "lvdisk/lvdisk-priv.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

/* libvirt writes this XML itself: elements as "<name ...>", attribute values quoted, and the values read here (a
 * target dev, an alias) are plain identifiers. Anything else is refused rather than guessed at. */
static bool ident_ok(const char *s, size_t len)
{
    return len > 0 && len < LVD_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") >= len && s[0] != '-';
}

/* The next '<' in [p, end) that starts markup: comments, CDATA sections and processing instructions are skipped
 * whole, so what they quote ("<!-- <disk> -->") is never taken for an element. NULL if none (or one is unclosed). */
static const char *next_markup(const char *p, const char *end)
{
    static const struct { const char *open, *close; } quoted[] = {
        { "<!--", "-->" }, { "<![CDATA[", "]]>" }, { "<?", "?>" } };
    while (p && p < end && (p = memchr(p, '<', (size_t)(end - p)))) {
        size_t i = 0;
        while (i < sizeof quoted / sizeof *quoted &&
               ((size_t)(end - p) < strlen(quoted[i].open) || memcmp(p, quoted[i].open, strlen(quoted[i].open))))
            i++;
        if (i == sizeof quoted / sizeof *quoted)
            return p;
        p = memmem(p + strlen(quoted[i].open), (size_t)(end - p) - strlen(quoted[i].open), quoted[i].close,
                   strlen(quoted[i].close));
    }
    return NULL;
}

/* The first element <tag ...> in [p, end): where it starts and where its start tag ends ('>'), or NULL. */
static const char *find_tag(const char *p, const char *end, const char *tag, const char **tag_end)
{
    size_t tl = strlen(tag);
    for (; (p = next_markup(p, end)); p++) {
        if ((size_t)(end - p) > tl + 1 && !memcmp(p + 1, tag, tl) && strchr(" \t\n/>", p[1 + tl])) {
            const char *gt = memchr(p, '>', (size_t)(end - p));
            if (!gt)
                return NULL;
            *tag_end = gt;
            return p;
        }
    }
    return NULL;
}

/* The child element <tag ...> of the element whose content starts at p, as find_tag. Elements nested deeper (in
 * <metadata>, which holds whatever XML a domain's users put there) are not children. */
static const char *find_child(const char *p, const char *end, const char *tag, const char **tag_end)
{
    unsigned depth = 0;
    for (; (p = next_markup(p, end)); p++) {
        const char *gt = memchr(p, '>', (size_t)(end - p)), *te;
        if (!gt || (p[1] == '/' && depth-- == 0))
            return NULL;
        if (p[1] != '/' && p[1] != '!') {
            if (!depth && find_tag(p, gt + 1, tag, &te) == p) {
                *tag_end = te;
                return p;
            }
            depth += gt[-1] != '/';
        }
        p = gt;
    }
    return NULL;
}

/* The end tag </tag> in [p, end), outside comments and CDATA, or NULL. */
static const char *find_end_tag(const char *p, const char *end, const char *tag)
{
    size_t tl = strlen(tag);
    for (; (p = next_markup(p, end)); p++)
        if ((size_t)(end - p) >= tl + 3 && p[1] == '/' && !memcmp(p + 2, tag, tl) && p[2 + tl] == '>')
            return p;
    return NULL;
}

/* Attribute attr of the start tag [p, gt) into out (an identifier), 0; -ENOENT if absent; -EINVAL if not plain. */
static int attr(const char *p, const char *gt, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *a = p; a + nl + 2 < gt; a++) {
        if (!strchr(" \t\n", a[0]) || memcmp(a + 1, name, nl) || a[1 + nl] != '=')
            continue;
        char q = a[2 + nl];
        if (q != '\'' && q != '"')
            return -EINVAL;
        const char *v = a + 3 + nl, *ve = memchr(v, q, (size_t)(gt - v));
        if (!ve || !ident_ok(v, (size_t)(ve - v)) || (size_t)(ve - v) >= cap)
            return -EINVAL;
        memcpy(out, v, (size_t)(ve - v));
        out[ve - v] = 0;
        return 0;
    }
    return -ENOENT;
}

int lvd_parse_domain_xml(const char *xml, struct lvd_disk **out, size_t *n, vs_err *e)
{
    *out = NULL;
    *n = 0;
    const char *end = xml + strlen(xml), *gt;
    const char *dom = find_tag(xml, end, "domain", &gt), *dev = dom ? find_child(gt + 1, end, "devices", &gt) : NULL;
    const char *dev_end = dev ? find_end_tag(gt, end, "devices") : NULL;
    if (!dev_end)
        return vs_err_set(e, EPROTO, "libvirt's domain XML has no closed <devices> element");
    struct lvd_disk *d = NULL;
    size_t nd = 0;
    for (const char *p = gt; (p = find_tag(p, dev_end, "disk", &gt));) {
        const char *close = find_end_tag(gt, dev_end, "disk");
        if (!close) {
            free(d);
            return vs_err_set(e, EPROTO, "libvirt's domain XML: a <disk> element is not closed");
        }
        d = vs_xrealloc(d, (nd + 1) * sizeof *d);
        struct lvd_disk *k = memset(&d[nd], 0, sizeof *d);
        const char *t, *tgt = find_tag(gt, close, "target", &t), *a, *al = find_tag(gt, close, "alias", &a);
        char devtype[16] = "disk";
        int r = attr(p, gt, "device", devtype, sizeof devtype);
        if (r == -EINVAL || !tgt || attr(tgt, t, "dev", k->name, sizeof k->name) < 0 || !al ||
            attr(al, a, "name", k->device, sizeof k->device) < 0) {
            free(d);
            return vs_err_set(e, EPROTO, "libvirt's domain XML: disk %zu lacks a plain <target dev> or <alias name> "
                              "(is the domain running?)", nd);
        }
        k->readonly = !!strcmp(devtype, "disk") || find_tag(gt, close, "readonly", &t);
        snprintf(k->stream, sizeof k->stream, "disk-%s", k->name);
        nd++;
        p = close;
    }
    *out = d;
    *n = nd;
    return 0;
}

static bool qdev_is(const char *qdev, const char *id)
{
    static const char pfx[] = "/machine/peripheral/";
    size_t il = strlen(id);
    if (!strcmp(qdev, id))
        return true;
    return !strncmp(qdev, pfx, sizeof pfx - 1) && !strncmp(qdev + sizeof pfx - 1, id, il) &&
           (qdev[sizeof pfx - 1 + il] == '/' || qdev[sizeof pfx - 1 + il] == 0);
}

/* What QEMU says about each disk: node, read-only, format, size; and the device's model. */
static int from_qemu(struct lvd_backup *b, vs_err *e)
{
    json_t *blocks = NULL;
    int r = qmp_execute(b->q, "query-block", NULL, &blocks, e);
    if (r < 0)
        return r;
    for (size_t i = 0; i < b->n; i++) {
        struct lvd_disk *k = &b->disks[i];
        size_t j;
        json_t *blk, *ins = NULL;
        bool found = false;
        json_array_foreach(blocks, j, blk) {
            const char *qdev = json_string_value(json_object_get(blk, "qdev"));
            if (qdev && qdev_is(qdev, k->device)) {
                found = true;
                ins = json_object_get(blk, "inserted");
                break;
            }
        }
        if (!found) {
            json_decref(blocks);
            return vs_err_set(e, ENOENT, "disk %s: QEMU's query-block has no device '%s'", k->name, k->device);
        }
        const char *node = json_string_value(json_object_get(ins, "node-name"));
        const char *fmt = json_string_value(json_object_get(ins, "drv"));
        json_t *size = json_object_get(json_object_get(ins, "image"), "virtual-size");
        if (!ins || json_is_true(json_object_get(ins, "ro"))) {
            k->readonly = true;
            continue;
        }
        /* QEMU generates "#blockNNN" for nodes nobody named (a filter someone else inserted). */
        const char *bare = node && node[0] == '#' ? node + 1 : node;
        if (!node || !ident_ok(bare, strlen(bare)) || !fmt || strlen(fmt) >= sizeof k->format ||
            !json_is_integer(size) || json_integer_value(size) <= 0) {
            json_decref(blocks);
            return vs_err_set(e, EPROTO, "disk %s: QEMU's query-block lacks a plain node-name, drv or virtual-size",
                              k->name);
        }
        snprintf(k->node, sizeof k->node, "%s", node);
        snprintf(k->format, sizeof k->format, "%s", fmt);
        k->size = (uint64_t)json_integer_value(size);
        k->bitmap = !strcmp(fmt, "qcow2");
    }
    json_decref(blocks);
    for (size_t i = 0; i < b->n; i++) {
        struct lvd_disk *k = &b->disks[i];
        if (k->readonly)
            continue;
        VS_AUTOFREE char *path = vs_xasprintf("/machine/peripheral/%s", k->device);
        json_t *args = json_pack("{s:s,s:s}", "path", path, "property", "type"), *type = NULL;
        r = qmp_execute(b->q, "qom-get", args, &type, e);
        json_decref(args);
        if (r < 0)
            return vs_err_prefix(e, "disk %s: the model of device %s", k->name, k->device);
        const char *t = json_string_value(type);
        snprintf(k->iface, sizeof k->iface, "%s", t && ident_ok(t, strlen(t)) ? t : "unknown");
        json_decref(type);
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static void add_note(struct lvd_backup *b, const char *fmt, ...)
{
    size_t n = strlen(b->note);
    if (n && n + 2 < sizeof b->note)
        n += (size_t)snprintf(b->note + n, sizeof b->note - n, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->note + n, sizeof b->note - n, fmt, ap);
    va_end(ap);
}

static int select_disks(struct lvd_backup *b, const char *only, vs_err *e)
{
    if (only) {
        VS_AUTOFREE char *list = vs_xstrdup(only);
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            struct lvd_disk *k = NULL;
            for (size_t i = 0; i < b->n && !k; i++)
                if (!strcmp(b->disks[i].name, t))
                    k = &b->disks[i];
            if (!k)
                return vs_err_set(e, ENOENT, "--disks: the domain has no disk '%s' (a target dev such as vda)", t);
            if (k->readonly)
                return vs_err_set(e, EROFS, "--disks: disk %s is read-only (or has no medium): nothing to capture",
                                  t);
            k->capture = true;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct lvd_disk *k = &b->disks[i];
        if (!only && !k->readonly)
            k->capture = true;
        if (k->readonly)
            add_note(b, "disk %s is read-only: not captured", k->name);
        n += k->capture;
    }
    if (!n)
        return vs_err_set(e, ENOENT, "the domain has no writable disk to capture (use --memory-only)");
    return 0;
}

int lvd_plan(struct qmp *q, const char *only, struct lvd_backup *b, vs_err *e)
{
    memset(b, 0, sizeof *b);
    b->q = q;
    VS_AUTOFREE char *xml = NULL;
    int r = lvd__domain_xml(q, &xml, e);
    if (r < 0 || (r = lvd_parse_domain_xml(xml, &b->disks, &b->n, e)) < 0 || (r = from_qemu(b, e)) < 0 ||
        (r = select_disks(b, only, e)) < 0)
        return r;
    return 0;
}

/* Whether the node named node carries a persistent dirty bitmap called name. */
static bool has_bitmap(json_t *blocks, const char *node, const char *name)
{
    size_t i, j;
    json_t *blk, *bm;
    json_array_foreach(blocks, i, blk) {
        json_t *ins = json_object_get(blk, "inserted");
        if (strcmp(json_string_value(json_object_get(ins, "node-name")) ?: "", node))
            continue;
        json_array_foreach(json_object_get(ins, "dirty-bitmaps"), j, bm)
            if (!strcmp(json_string_value(json_object_get(bm, "name")) ?: "", name))
                return true;
    }
    return false;
}

int lvd_use_parent(struct lvd_backup *b, const uint8_t parent_uuid[16], vs_err *e)
{
    char u[37];
    vs_uuid_format(parent_uuid, u);
    snprintf(b->parent_checkpoint, sizeof b->parent_checkpoint, LVD_CHECKPOINT_PREFIX "%s", u);
    int r = lvd__checkpoint_exists(b->q, b->parent_checkpoint, e);
    if (r < 0)
        return r;
    if (r == 0) {
        add_note(b, "the domain has no checkpoint %s (the parent is not its latest vmsnap snapshot): every disk "
                 "read in full", b->parent_checkpoint);
        b->parent_checkpoint[0] = 0;
        return 0;
    }
    json_t *blocks = NULL;
    if ((r = qmp_execute(b->q, "query-block", NULL, &blocks, e)) < 0)
        return r;
    for (size_t i = 0; i < b->n; i++) {
        struct lvd_disk *k = &b->disks[i];
        if (!k->capture)
            continue;
        k->incremental = has_bitmap(blocks, k->node, b->parent_checkpoint);
        if (!k->incremental)
            add_note(b, "disk %s has no checkpoint bitmap (a raw image): read in full", k->name);
    }
    json_decref(blocks);
    return 0;
}
