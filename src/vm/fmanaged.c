/* vm: what a managing process (libvirt) handed a foreign VM's QEMU and a replay cannot: file descriptors (fd=N
 * chardevs and netdevs) and libvirt's master key secret, a per-run file that exists only while the domain runs.
 * The VM's state depends on none of them: an fd chardev becomes a null chardev of the same id (devices bound to it
 * still resolve), an fd netdev a user-mode netdev of the same id (opened without privileges), and an unreferenced
 * master key secret goes. Each is named in a note, never dropped silently. */
#include <string.h>

#include "vm/vm.h"

/* Whether an argument other than args->v[skip] names id as a value (key=ID or "ID" in JSON). */
static bool referenced(const struct vm_argv *args, size_t skip, const char *id)
{
    VS_AUTOFREE char *kv = vs_xasprintf("=%s", id), *js = vs_xasprintf("\"%s\"", id);
    size_t n = strlen(kv);
    for (size_t i = 0; i < args->n; i++) {
        if (i == skip)
            continue;
        if (strstr(args->v[i], js))
            return true;
        for (const char *p = strstr(args->v[i], kv); p; p = strstr(p + 1, kv))
            if (p[n] == 0 || p[n] == ',')
                return true;
    }
    return false;
}

static bool is_master_key(const char *v)
{
    VS_AUTOFREE char *type = vm_opt_get(v, "qom-type", true);
    VS_AUTOFREE char *file = vm_opt_get(v, "file", false);
    const char *base = file ? strrchr(file, '/') : NULL;
    return type && !strcmp(type, "secret") && base && !strcmp(base + 1, "master-key.aes");
}

/* Appends s (freed) to *note. */
static void note_add(char **note, char *s)
{
    char *n = *note ? vs_xasprintf("%s; %s", *note, s) : vs_xstrdup(s);
    free(*note);
    free(s);
    *note = n;
}

void vm_foreign_unmanaged(struct vm_argv *args, size_t *console_at, char **note)
{
    for (size_t i = 0; i + 1 < args->n; i++) {
        const char *name = vm_qopt_name(args->v[i]);
        if (!name || !vm_qopt_takes_arg(name))
            continue;
        char **v = &args->v[i + 1];
        VS_AUTOFREE char *id = vm_opt_get(*v, "id", false);
        VS_AUTOFREE char *fd = id ? vm_opt_get(*v, "fd", false) : NULL;
        if (!fd && id && !strcmp(name, "netdev"))
            fd = vm_opt_get(*v, "fds", false);
        if (fd && !strcmp(name, "chardev")) {
            note_add(note, vs_xasprintf("chardev %s (fd=%s of the managing process) replayed as a null chardev", id, fd));
            free(*v);
            *v = vs_xasprintf("null,id=%s", id);
        } else if (fd && !strcmp(name, "netdev")) {
            note_add(note, vs_xasprintf("netdev %s (fd=%s of the managing process) replayed as -netdev user", id, fd));
            free(*v);
            *v = vs_xasprintf("user,id=%s", id);
        } else if (id && !strcmp(name, "object") && is_master_key(*v) && !referenced(args, i + 1, id)) {
            note_add(note, vs_xasprintf("secret %s (libvirt's master key, exists only while the domain runs) dropped", id));
            free(args->v[i]);
            free(*v);
            memmove(&args->v[i], &args->v[i + 2], (args->n - i - 1) * sizeof *args->v);   /* with the NULL */
            args->n -= 2;
            if (*console_at != SIZE_MAX && *console_at > i)
                *console_at -= 2;
            i--;
            continue;
        }
        i++;
    }
}
