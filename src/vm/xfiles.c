/* vm: files named inside EXTRA-QEMU-ARGS (firmware, firmware variables, loader images): where they are in the
 * argument list, so that boot can hand QEMU the copies stored in an archive instead, and `snap` can store them. */
#include "vm/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One comma-separated field of a QEMU option value; ",," is a literal comma. Value span [vstart, vend). */
struct field {
    const char *key;   /* NULL for a bare field (no '=') */
    size_t klen, vstart, vend;
};

static bool next_field(const char *s, size_t n, size_t *pos, struct field *f)
{
    size_t i = *pos, start = i;
    if (i > n)
        return false;
    while (i < n && !(s[i] == ',' && s[i + 1] != ','))
        i += s[i] == ',' ? 2 : 1;
    if (i > n)
        i = n;
    *pos = i + 1;
    const char *eq = memchr(s + start, '=', i - start);
    f->key = eq ? s + start : NULL;
    f->klen = eq ? (size_t)(eq - (s + start)) : 0;
    f->vstart = eq ? (size_t)(eq - s) + 1 : start;
    f->vend = i;
    return true;
}

static bool key_is(const struct field *f, const char *k)
{
    return f->key && f->klen == strlen(k) && !strncmp(f->key, k, f->klen);
}

static char *unescape(const char *s, size_t start, size_t end)
{
    char *out = vs_xmalloc(end - start + 1), *p = out;
    for (size_t i = start; i < end; i++) {
        *p++ = s[i];
        if (s[i] == ',' && i + 1 < end && s[i + 1] == ',')
            i++;
    }
    *p = 0;
    return out;
}

/* Value of key in an option string (unescaped), or NULL; *f gets its field. */
static char *get_key(const char *s, const char *key, struct field *f)
{
    size_t n = strlen(s), pos = 0;
    struct field x;
    while (next_field(s, n, &pos, &x))
        if (key_is(&x, key)) {
            if (f)
                *f = x;
            return unescape(s, x.vstart, x.vend);
        }
    return NULL;
}

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

static const char *opt_of(const char *a)
{
    if (a[0] != '-' || a[1] == 0)
        return NULL;
    return a[1] == '-' ? a + 2 : a + 1;
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
    VS_AUTOFREE char *iface = get_key(s, "if", NULL);
    if (!iface || strcmp(iface, "pflash"))
        return;
    VS_AUTOFREE char *unit = get_key(s, "unit", NULL);
    VS_AUTOFREE char *index = unit ? NULL : get_key(s, "index", NULL);
    int u = unit ? atoi(unit) : index ? atoi(index) : free_unit(used);
    if (u < 0 || u >= MAX_UNITS)
        return;
    used[u] = true;
    struct field f;
    char *path = get_key(s, "file", &f);
    if (!is_file_path(path)) {
        free(path);
        return;
    }
    VS_AUTOFREE char *ro = get_key(s, "readonly", NULL);
    bool bare_ro = false;   /* QemuOpts: a bare "readonly" means on */
    size_t n = strlen(s), pos = 0;
    struct field x;
    while (next_field(s, n, &pos, &x))
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
            VS_AUTOFREE char *node = get_key(args[machines[m]], key, NULL);
            bool ro = false;
            for (int depth = 0; node && depth < 4; depth++) {
                size_t hit = n;
                for (size_t i = 0; i + 1 < n && hit == n; i++) {
                    const char *o = opt_of(args[i]);
                    if (o && !strcmp(o, "blockdev") && args[i + 1][0] != '{') {
                        VS_AUTOFREE char *nn = get_key(args[i + 1], "node-name", NULL);
                        if (nn && !strcmp(nn, node))
                            hit = i + 1;
                    }
                }
                free(node);
                node = NULL;
                if (hit == n)
                    break;
                VS_AUTOFREE char *rov = get_key(args[hit], "read-only", NULL);
                ro |= is_on(rov);
                struct field f;
                char *path = get_key(args[hit], "filename", &f);
                if (!path)
                    path = get_key(args[hit], "file.filename", &f);
                if (path && is_file_path(path)) {
                    add_ref(r, key, hit, f.vstart, f.vend - f.vstart, true, !ro, path);
                    break;
                }
                free(path);
                node = get_key(args[hit], "file", NULL);   /* a format node over a protocol node */
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
        const char *o = opt_of(args[i]);
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
            VS_AUTOFREE char *drv = get_key(v, "driver", NULL);
            size_t dl = strcspn(v, ",");
            bool loader = drv ? !strcmp(drv, "loader") : dl == 6 && !strncmp(v, "loader", 6);
            struct field f;
            char *path = loader ? get_key(v, "file", &f) : NULL;
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
