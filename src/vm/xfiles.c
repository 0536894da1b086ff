/* vm: files named inside EXTRA-QEMU-ARGS (firmware, firmware variables, loader images): where they are in the
 * argument list, so that boot can hand QEMU the copies stored in an archive instead, and `snap` can store them. */
#include "vm/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_on(const char *v)
{
    return v && (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true"));
}

/* A file path rather than a protocol URI ("nbd:...", "json:{...}"). */
static bool is_file_path(const char *p)
{
    if (!p || !p[0])
        return false;
    const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
    return !colon || (slash && slash < colon);
}

struct refs {
    struct vm_xfile_ref *v;
    size_t n;
};

static void add_ref(struct refs *r, const char *name, size_t arg, size_t start, size_t len, bool escaped,
                    bool writable, char *path)
{
    r->v = vs_xrealloc(r->v, (r->n + 1) * sizeof *r->v);
    struct vm_xfile_ref *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->arg = arg;
    x->start = start;
    x->len = len;
    x->escaped = escaped;
    x->writable = writable;
    x->path = path;
}

#define MAX_UNITS 8

static int free_unit(const bool *used)
{
    for (int u = 0; u < MAX_UNITS; u++)
        if (!used[u])
            return u;
    return -1;
}

/* -drive if=pflash,...: its unit (unit= or index=, else the first free one, as QEMU assigns them). */
static void scan_drive(struct refs *r, char *const *args, size_t i, bool *used)
{
    const char *s = args[i];
    VS_AUTOFREE char *iface = vm_qopt_get(s, "if", NULL);
    if (!iface || strcmp(iface, "pflash"))
        return;
    VS_AUTOFREE char *unit = vm_qopt_get(s, "unit", NULL);
    VS_AUTOFREE char *index = unit ? NULL : vm_qopt_get(s, "index", NULL);
    int u = unit ? atoi(unit) : index ? atoi(index) : free_unit(used);
    if (u < 0 || u >= MAX_UNITS)
        return;
    used[u] = true;
    struct vm_qopt_field f;
    char *path = vm_qopt_get(s, "file", &f);
    if (!is_file_path(path)) {
        free(path);
        return;
    }
    VS_AUTOFREE char *ro = vm_qopt_get(s, "readonly", NULL);
    bool bare_ro = false;   /* QemuOpts: a bare "readonly" means on */
    size_t n = strlen(s), pos = 0;
    struct vm_qopt_field x;
    while (vm_qopt_next(s, n, &pos, &x))
        bare_ro |= !x.key && x.vend - x.vstart == 8 && !strncmp(s + x.vstart, "readonly", 8);
    char name[VM_XFILE_NAME_MAX];
    snprintf(name, sizeof name, "pflash%d", u);
    add_ref(r, name, i, f.vstart, f.vend - f.vstart, true, !(is_on(ro) || bare_ro), path);
}

/* -blockdev (key=value form) node names, -machine pflashN=NODE: the node's (or its file child's) filename. */
static void scan_blockdevs(struct refs *r, char *const *args, size_t n, const size_t *machines, size_t nm)
{
    for (size_t m = 0; m < nm; m++) {
        for (int u = 0; u < 2; u++) {
            char key[8];
            snprintf(key, sizeof key, "pflash%d", u);
            VS_AUTOFREE char *node = vm_qopt_get(args[machines[m]], key, NULL);
            bool ro = false;
            for (int depth = 0; node && depth < 4; depth++) {
                size_t hit = n;
                for (size_t i = 0; i + 1 < n && hit == n; i++) {
                    const char *o = vm_qopt_name(args[i]);
                    if (o && !strcmp(o, "blockdev") && args[i + 1][0] != '{') {
                        VS_AUTOFREE char *nn = vm_qopt_get(args[i + 1], "node-name", NULL);
                        if (nn && !strcmp(nn, node))
                            hit = i + 1;
                    }
                }
                free(node);
                node = NULL;
                if (hit == n)
                    break;
                VS_AUTOFREE char *rov = vm_qopt_get(args[hit], "read-only", NULL);
                ro |= is_on(rov);
                struct vm_qopt_field f;
                char *path = vm_qopt_get(args[hit], "filename", &f);
                if (!path)
                    path = vm_qopt_get(args[hit], "file.filename", &f);
                if (path && is_file_path(path)) {
                    add_ref(r, key, hit, f.vstart, f.vend - f.vstart, true, !ro, path);
                    break;
                }
                free(path);
                node = vm_qopt_get(args[hit], "file", NULL);   /* a format node over a protocol node */
            }
        }
    }
}

int vm_xfile_refs(char *const *args, size_t n, struct vm_xfile_ref **out, size_t *nout)
{
    struct refs r = { 0 };
    bool used[MAX_UNITS] = { false };
    VS_AUTOFREE size_t *machines = vs_xcalloc(n + 1, sizeof *machines);
    size_t nm = 0;
    unsigned loaders = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const char *o = vm_qopt_name(args[i]);
        if (!o)
            continue;
        const char *v = args[i + 1];
        if (!strcmp(o, "bios")) {
            add_ref(&r, "bios", i + 1, 0, strlen(v), false, false, vs_xstrdup(v));
        } else if (!strcmp(o, "pflash")) {
            int u = free_unit(used);
            if (u >= 0) {
                used[u] = true;
                char name[VM_XFILE_NAME_MAX];
                snprintf(name, sizeof name, "pflash%d", u);
                add_ref(&r, name, i + 1, 0, strlen(v), false, true, vs_xstrdup(v));
            }
        } else if (!strcmp(o, "drive")) {
            scan_drive(&r, args, i + 1, used);
        } else if (!strcmp(o, "machine") || !strcmp(o, "M")) {
            machines[nm++] = i + 1;
        } else if (!strcmp(o, "device")) {
            VS_AUTOFREE char *drv = vm_qopt_get(v, "driver", NULL);
            size_t dl = strcspn(v, ",");
            bool loader = drv ? !strcmp(drv, "loader") : dl == 6 && !strncmp(v, "loader", 6);
            struct vm_qopt_field f;
            char *path = loader ? vm_qopt_get(v, "file", &f) : NULL;
            if (path && is_file_path(path)) {
                char name[VM_XFILE_NAME_MAX];
                snprintf(name, sizeof name, "loader%u", loaders++);
                add_ref(&r, name, i + 1, f.vstart, f.vend - f.vstart, true, false, path);
            } else {
                free(path);
            }
        } else {
            continue;
        }
        i++;   /* the value was consumed */
    }
    scan_blockdevs(&r, args, n, machines, nm);
    *out = r.v;
    *nout = r.n;
    return 0;
}

void vm_xfile_refs_free(struct vm_xfile_ref *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].path);
    free(r);
}

char *vm_xfile_ref_replace(const char *arg, const struct vm_xfile_ref *r, const char *path)
{
    VS_AUTOFREE char *p = r->escaped ? vm_qemu_escape(path) : vs_xstrdup(path);
    return vs_xasprintf("%.*s%s%s", (int)r->start, arg, p, arg + r->start + r->len);
}

bool vm_xfile_is_installed(const char *path)
{
    static const char *const dirs[] = { "/usr/share/", "/usr/lib/", "/usr/lib64/", "/usr/local/share/",
                                        "/usr/local/lib/", "/nix/store/", "/gnu/store/" };
    if (!strchr(path, '/'))
        return true;   /* a bare name QEMU looks up in its data directories */
    VS_AUTOFREE char *real = realpath(path, NULL);
    const char *p = real ? real : path;
    for (size_t i = 0; i < VS_ARRAY_SIZE(dirs); i++)
        if (!strncmp(p, dirs[i], strlen(dirs[i])))
            return true;
    return false;
}
