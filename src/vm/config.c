/* vm: the VM config model and its JSON form (docs/FORMAT.md, "VM config"). */
#include "vm/vm.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static const char *const role_names[VM_FILE__COUNT] = { "kernel", "initrd", "dtb" };

const char *vm_file_role_name(enum vm_file_role r)
{
    return r < VM_FILE__COUNT ? role_names[r] : "?";
}

void vm_config_init(struct vm_config *c)
{
    memset(c, 0, sizeof *c);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void vm_config_clear_xfiles(struct vm_config *c)
{
    for (size_t i = 0; i < c->n_xfiles; i++) {
        free(c->xfiles[i].name);
        free(c->xfiles[i].path);
    }
    free(c->xfiles);
    c->xfiles = NULL;
    c->n_xfiles = 0;
}

void vm_config_add_xfile(struct vm_config *c, const char *name, const char *path, bool writable)
{
    c->xfiles = vs_xrealloc(c->xfiles, (c->n_xfiles + 1) * sizeof *c->xfiles);
    c->xfiles[c->n_xfiles++] = (struct vm_xfile){ vs_xstrdup(name), vs_xstrdup(path), writable };
}

void vm_config_free(struct vm_config *c)
{
    free(c->qemu);
    free(c->qemu_version);
    free(c->machine);
    free(c->accel);
    for (int i = 0; i < VM_FILE__COUNT; i++)
        free(c->files[i]);
    free(c->append);
    free(c->mem_backend);
    for (size_t i = 0; i < c->n_disks; i++)
        vm_disk_free(&c->disks[i]);
    free(c->disks);
    free_strv(c->extra, c->n_extra);
    vm_config_clear_xfiles(c);
    free_strv(c->cmdline, c->n_cmdline);
    free(c->cwd);
    vm_config_init(c);
}

static char *dup_or_null(const char *s)
{
    return s ? vs_xstrdup(s) : NULL;
}

void vm_disk_free(struct vm_disk *d)
{
    free(d->format);
    free(d->iface);
    free(d->name);
    free(d->stream);
    free(d->device);
    free(d->node);
    free(d->drive);
    memset(d, 0, sizeof *d);
}

static char **dup_strv(char *const *v, size_t n)
{
    char **out = vs_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = vs_xstrdup(v[i]);
    return out;
}

int vm_config_copy(struct vm_config *dst, const struct vm_config *src)
{
    vm_config_init(dst);
    dst->qemu = dup_or_null(src->qemu);
    dst->qemu_version = dup_or_null(src->qemu_version);
    dst->machine = dup_or_null(src->machine);
    dst->ram_bytes = src->ram_bytes;
    dst->cpus = src->cpus;
    dst->accel = dup_or_null(src->accel);
    for (int i = 0; i < VM_FILE__COUNT; i++)
        dst->files[i] = dup_or_null(src->files[i]);
    dst->append = dup_or_null(src->append);
    dst->mem_backend = dup_or_null(src->mem_backend);
    dst->vmgenid = src->vmgenid;
    dst->n_disks = src->n_disks;
    dst->disks = vs_xcalloc(src->n_disks + 1, sizeof *dst->disks);
    for (size_t i = 0; i < src->n_disks; i++) {
        const struct vm_disk *sd = &src->disks[i];
        dst->disks[i] = (struct vm_disk){ dup_or_null(sd->format), dup_or_null(sd->iface), sd->size,
                                          dup_or_null(sd->name), dup_or_null(sd->stream), dup_or_null(sd->device),
                                          dup_or_null(sd->node), dup_or_null(sd->drive) };
    }
    dst->n_extra = src->n_extra;
    dst->extra = dup_strv(src->extra, src->n_extra);
    for (size_t i = 0; i < src->n_xfiles; i++)
        vm_config_add_xfile(dst, src->xfiles[i].name, src->xfiles[i].path, src->xfiles[i].writable);
    dst->foreign = src->foreign;
    dst->n_cmdline = src->n_cmdline;
    dst->cmdline = dup_strv(src->cmdline, src->n_cmdline);
    dst->cwd = dup_or_null(src->cwd);
    return 0;
}

/* ---- to JSON --------------------------------------------------------------------------------------------- */

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

char *vm_config_to_json(const struct vm_config *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(VM_CONFIG_VERSION));
    set_str(o, "qemu", c->qemu);
    set_str(o, "qemu-version", c->qemu_version);
    set_str(o, "machine", c->machine);
    if (c->ram_bytes)
        json_object_set_new(o, "ram", json_integer((json_int_t)c->ram_bytes));
    if (c->cpus)
        json_object_set_new(o, "cpus", json_integer(c->cpus));
    set_str(o, "accel", c->accel);
    for (int i = 0; i < VM_FILE__COUNT; i++)
        set_str(o, role_names[i], c->files[i]);
    set_str(o, "append", c->append);
    set_str(o, "memory-backend", c->mem_backend);
    if (c->vmgenid)
        json_object_set_new(o, "vmgenid", json_true());
    json_t *disks = json_array();
    for (size_t i = 0; i < c->n_disks; i++) {
        const struct vm_disk *k = &c->disks[i];
        json_t *d = json_object();
        set_str(d, "name", k->name);
        set_str(d, "stream", k->stream);
        if (k->size)
            json_object_set_new(d, "size", json_integer((json_int_t)k->size));
        set_str(d, "format", k->format);
        set_str(d, "interface", k->iface);
        set_str(d, "device", k->device);
        set_str(d, "node", k->node);
        set_str(d, "drive", k->drive);
        json_array_append_new(disks, d);
    }
    json_object_set_new(o, "disks", disks);
    json_object_set_new(o, "extra-args", strv_json(c->extra, c->n_extra));
    if (c->n_xfiles) {
        json_t *xf = json_array();
        for (size_t i = 0; i < c->n_xfiles; i++)
            json_array_append_new(xf, json_pack("{s:s,s:s,s:b}", "name", c->xfiles[i].name, "path",
                                                c->xfiles[i].path, "writable", c->xfiles[i].writable));
        json_object_set_new(o, "extra-files", xf);
    }
    if (c->foreign) {
        json_object_set_new(o, "foreign", json_true());
        json_object_set_new(o, "cmdline", strv_json(c->cmdline, c->n_cmdline));
        set_str(o, "cwd", c->cwd);
    }
    char *s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        VS_BUG("json_dumps failed");
    return s;
}

/* ---- from JSON ------------------------------------------------------------------------------------------- */

static int get_str(json_t *o, const char *k, char **out, vs_err *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return vs_err_set(e, EINVAL, "VM config: \"%s\" must be a string", k);
    *out = vs_xstrdup(json_string_value(v));
    return 0;
}

static int get_u64(json_t *o, const char *k, uint64_t max, uint64_t *out, vs_err *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return vs_err_set(e, EINVAL, "VM config: \"%s\" must be an integer from 0 to %llu", k,
                          (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_strv(json_t *o, const char *k, char ***out, size_t *n, vs_err *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return vs_err_set(e, EINVAL, "VM config: \"%s\" must be an array of strings", k);
    size_t len = json_array_size(v);
    char **a = vs_xcalloc(len + 1, sizeof *a);
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
            free_strv(a, i);
            return vs_err_set(e, EINVAL, "VM config: \"%s\"[%zu] must be a string", k, i);
        }
        a[i] = vs_xstrdup(json_string_value(s));
    }
    *out = a;
    *n = len;
    return 0;
}

/* A name becomes a file name in the run directory: lower-case letters and digits only. */
static bool xfile_name_ok(const char *n)
{
    size_t len = strlen(n);
    return len > 0 && len < VM_XFILE_NAME_MAX && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789") == len;
}

static int get_xfiles(json_t *o, struct vm_config *c, vs_err *e)
{
    json_t *v = json_object_get(o, "extra-files");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return vs_err_set(e, EINVAL, "VM config: \"extra-files\" must be an array");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        json_t *n = json_object_get(x, "name"), *p = json_object_get(x, "path"), *w = json_object_get(x, "writable");
        if (!json_is_string(n) || !xfile_name_ok(json_string_value(n)) || !json_is_string(p) ||
            json_string_value(p)[0] != '/' || (w && !json_is_boolean(w)))
            return vs_err_set(e, EINVAL, "VM config: \"extra-files\"[%zu] must be {\"name\": [a-z0-9]{1,15}, "
                              "\"path\": absolute path, \"writable\": boolean}", i);
        for (size_t k = 0; k < c->n_xfiles; k++)
            if (!strcmp(c->xfiles[k].name, json_string_value(n)))
                return vs_err_set(e, EINVAL, "VM config: \"extra-files\" names '%s' twice", c->xfiles[k].name);
        vm_config_add_xfile(c, json_string_value(n), json_string_value(p), w && json_is_true(w));
    }
    return 0;
}

/* QEMU's generated node names ("#block123") and ids (vm_qemu_id_ok). */
static bool node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (!strncmp(s, "#block", 6))
        return n > 6 && n <= 26 && strspn(s + 6, "0123456789") == n - 6;
    return vm_qemu_id_ok(s);
}

/* A qdev id, or a QOM path ("/machine/peripheral-anon/device[0]"). */
static bool device_ok(const char *s)
{
    size_t n = strlen(s);
    if (s[0] != '/')
        return vm_qemu_id_ok(s);
    return n <= 256 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/[]") == n;
}

/* Printable ASCII, 1-128 characters: it appears in messages only. */
static bool disk_name_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return n > 0 && n <= 128;
}

/* One entry of "disks". A foreign VM's entries are captured disks: stream and node are required. */
static int get_disk(json_t *d, size_t i, bool foreign, struct vm_disk *k, vs_err *e)
{
    int r;
    if ((r = get_str(d, "format", &k->format, e)) < 0 || (r = get_str(d, "interface", &k->iface, e)) < 0 ||
        (r = get_u64(d, "size", UINT64_C(1) << 62, &k->size, e)) < 0 || (r = get_str(d, "name", &k->name, e)) < 0 ||
        (r = get_str(d, "stream", &k->stream, e)) < 0 || (r = get_str(d, "device", &k->device, e)) < 0 ||
        (r = get_str(d, "node", &k->node, e)) < 0 || (r = get_str(d, "drive", &k->drive, e)) < 0)
        return r;
    const char *bad = NULL;
    if (k->name && !disk_name_ok(k->name))
        bad = "\"name\" must be 1-128 printable ASCII characters";
    else if (k->stream && !k->stream[0])
        bad = "\"stream\" must name a disk stream";
    else if (k->device && !device_ok(k->device))
        bad = "\"device\" must be a QEMU id or a QOM path";
    else if (k->node && !node_name_ok(k->node))
        bad = "\"node\" must be a QEMU node name";
    else if (k->drive && !vm_qemu_id_ok(k->drive))
        bad = "\"drive\" must be a QEMU id";
    else if (k->format && strcmp(k->format, "raw") && foreign)
        bad = "\"format\" of a captured disk must be raw";
    else if (foreign && (!k->stream || !k->node))
        bad = "a foreign VM's captured disk needs \"stream\" and \"node\"";
    if (bad)
        return vs_err_set(e, EINVAL, "VM config: \"disks\"[%zu]: %s", i, bad);
    return 0;
}

static int parse_obj(json_t *o, struct vm_config *c, vs_err *e)
{
    uint64_t ver = 0, cpus = 0;
    int r;
    if (!json_is_object(o))
        return vs_err_set(e, EINVAL, "VM config: expected a JSON object");
    if ((r = get_u64(o, "version", UINT32_MAX, &ver, e)) < 0)
        return r;
    if (ver == 0 || ver > VM_CONFIG_VERSION)
        return vs_err_set(e, ENOTSUP, "VM config: version %llu not supported (this vmsnap reads up to %d)",
                          (unsigned long long)ver, VM_CONFIG_VERSION);
    if ((r = get_str(o, "qemu", &c->qemu, e)) < 0 || (r = get_str(o, "qemu-version", &c->qemu_version, e)) < 0 ||
        (r = get_str(o, "machine", &c->machine, e)) < 0 || (r = get_str(o, "accel", &c->accel, e)) < 0 ||
        (r = get_str(o, "append", &c->append, e)) < 0 || (r = get_str(o, "memory-backend", &c->mem_backend, e)) < 0 ||
        (r = get_str(o, "cwd", &c->cwd, e)) < 0)
        return r;
    for (int i = 0; i < VM_FILE__COUNT; i++)
        if ((r = get_str(o, role_names[i], &c->files[i], e)) < 0)
            return r;
    if ((r = get_u64(o, "ram", UINT64_C(1) << 50, &c->ram_bytes, e)) < 0 ||
        (r = get_u64(o, "cpus", 4096, &cpus, e)) < 0)
        return r;
    c->cpus = (unsigned)cpus;
    json_t *f = json_object_get(o, "foreign");
    if (f && !json_is_boolean(f))
        return vs_err_set(e, EINVAL, "VM config: \"foreign\" must be a boolean");
    c->foreign = f && json_is_true(f);
    json_t *disks = json_object_get(o, "disks");
    if (disks && !json_is_array(disks))
        return vs_err_set(e, EINVAL, "VM config: \"disks\" must be an array");
    size_t nd = disks ? json_array_size(disks) : 0;
    c->disks = vs_xcalloc(nd + 1, sizeof *c->disks);
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(disks, i);
        if (!json_is_object(d))
            return vs_err_set(e, EINVAL, "VM config: \"disks\"[%zu] must be an object", i);
        c->n_disks = i + 1;
        if ((r = get_disk(d, i, c->foreign, &c->disks[i], e)) < 0)
            return r;
    }
    if ((r = get_strv(o, "extra-args", &c->extra, &c->n_extra, e)) < 0 ||
        (r = get_strv(o, "cmdline", &c->cmdline, &c->n_cmdline, e)) < 0 || (r = get_xfiles(o, c, e)) < 0)
        return r;
    json_t *g = json_object_get(o, "vmgenid");
    if (g && !json_is_boolean(g))
        return vs_err_set(e, EINVAL, "VM config: \"vmgenid\" must be true or false");
    c->vmgenid = json_is_true(g);
    if (c->foreign && c->n_cmdline == 0)
        return vs_err_set(e, EINVAL, "VM config: a foreign VM's config must hold its \"cmdline\"");
    return 0;
}

int vm_config_from_json(const char *text, size_t len, struct vm_config *out, vs_err *e)
{
    json_error_t je;
    vm_config_init(out);
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return vs_err_set(e, EINVAL, "VM config: invalid JSON at line %d: %s", je.line, je.text);
    int r = parse_obj(o, out, e);
    json_decref(o);
    if (r < 0)
        vm_config_free(out);
    return r;
}
