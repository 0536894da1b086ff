/* vm: a foreign VM's main RAM as a private mapping of a page file, for a lazy resume. Its RAM block is named by
 * its backend: an -object memory-backend-* whose id -machine memory-backend= names (the block is that id), or the
 * backend QEMU makes itself for plain -m ("pc.ram" on pc and q35). Either can become a memory-backend-file of the
 * same id and size on the page file (share=off: the guest's writes never reach it); QEMU then loads the same
 * block, as libvirt's "pc.ram" backend shows for migrations between the two forms. */
#include "vm/vm.h"

#include <errno.h>
#include <string.h>

#define DEFAULT_RAM_ID "pc.ram"
#define DEFAULT_RAM_SIZE (128ull << 20)   /* QEMU's x86 default without -m */

/* Backend properties that still mean the same on a file; the rest (share, prealloc, the memfd and hugetlb ones)
 * would change the mapping or read the whole file. */
static const char keep_props[] = " id size merge dump policy host-nodes x-use-canonical-path-for-ramblock-id "
                                 "reserve ";

static const char *const ram_types[] = { "memory-backend-ram", "memory-backend-memfd", "memory-backend-file" };

/* The -object in args (option at index *at) whose id is id. */
static bool find_backend(char *const *args, size_t n, const char *id, size_t *at)
{
    for (size_t i = 0; i + 1 < n; i++) {
        const char *name = vm_qopt_name(args[i]);
        if (!name || !vm_qopt_takes_arg(name))
            continue;
        const char *v = args[++i];
        if (strcmp(name, "object"))
            continue;
        VS_AUTOFREE char *got = vm_opt_get(v, "id", false);
        if (got && !strcmp(got, id)) {
            *at = i - 1;
            return true;
        }
    }
    return false;
}

static bool is_ram_type(const char *t)
{
    for (size_t i = 0; t && i < VS_ARRAY_SIZE(ram_types); i++)
        if (!strcmp(t, ram_types[i]))
            return true;
    return false;
}

int vm_foreign_ram_check(const struct vm_config *c, const char *block, uint64_t size, char *why, size_t len)
{
    char *const *cl = c->cmdline;
    size_t n = c->n_cmdline;
    for (size_t i = 1; i < n; i++) {
        const char *name = vm_qopt_name(cl[i]);
        if (name && (!strcmp(name, "numa") || !strcmp(name, "mem-path"))) {
            snprintf(why, len, "the recorded command line places RAM with -%s", name);
            return -ENOTSUP;
        }
    }
    const char *id = c->mem_backend ? c->mem_backend : DEFAULT_RAM_ID;
    if (strcmp(block, id)) {
        snprintf(why, len, "the archive's RAM stream is block '%.64s', the VM's RAM is '%.64s'", block, id);
        return -ENOTSUP;
    }
    size_t at;
    uint64_t have = c->ram_bytes ? c->ram_bytes : DEFAULT_RAM_SIZE;
    if (find_backend(cl, n, id, &at)) {
        const char *v = cl[at + 1];
        VS_AUTOFREE char *type = vm_opt_get(v, "qom-type", true), *sz = vm_opt_get(v, "size", false);
        have = 0;
        if (sz && vs_parse_size(sz, &have) < 0)
            have = 0;
        if (!is_ram_type(type)) {
            snprintf(why, len, "the VM's RAM backend '%.64s' is not a memory-backend-ram, -memfd or -file", id);
            return -ENOTSUP;
        }
    } else if (c->mem_backend || (c->machine && strncmp(c->machine, "pc", 2) && strcmp(c->machine, "q35"))) {
        snprintf(why, len, "no -object for the VM's RAM backend '%.64s' on the recorded command line", id);
        return -ENOTSUP;
    }
    if (have != size) {
        snprintf(why, len, "RAM block '%.64s' holds %" PRIu64 " bytes in the archive, the VM's backend %" PRIu64, id,
                 size, have);
        return -ENOTSUP;
    }
    return 0;
}

void vm_foreign_ram_file(const struct vm_config *c, struct vm_argv *args, const char *mem_path)
{
    const char *id = c->mem_backend ? c->mem_backend : DEFAULT_RAM_ID;
    VS_AUTOFREE char *mp = vm_qemu_escape(mem_path);
    size_t at;
    if (!find_backend(args->v, args->n, id, &at)) {
        /* QEMU's own backend: the same, made explicit. */
        VS_AUTOFREE char *eid = vm_qemu_escape(id);
        vm_argv_add(args, "-object");
        vm_argv_addf(args, "memory-backend-file,id=%s,size=%llu,mem-path=%s,share=off", eid,
                     (unsigned long long)(c->ram_bytes ? c->ram_bytes : DEFAULT_RAM_SIZE), mp);
        vm_argv_add(args, "-machine");
        vm_argv_addf(args, "memory-backend=%s", eid);
        return;
    }
    const char *old = args->v[at + 1];
    VS_AUTOFREE char *kept = vm_opt_filter(old, keep_props, true);
    char *v;
    if (!vm_opt_is_json(old)) {
        v = vs_xasprintf("memory-backend-file,%s,mem-path=%s,share=off", kept, mp);
    } else {
        VS_AUTOFREE char *t = vm_opt_set(kept, "qom-type", "memory-backend-file");
        VS_AUTOFREE char *p = vm_opt_set(t, "mem-path", mem_path);
        v = vm_opt_set_bool(p, "share", false);
    }
    free(args->v[at + 1]);
    args->v[at + 1] = v;
}
