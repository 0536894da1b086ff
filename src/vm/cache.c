/* vm: small per-user caches of facts that cost a QEMU start (the KVM verdict, a QEMU binary's machine types).
 * Each entry is one JSON file {"key": ..., "value": ...} in a private directory: another local user must not be
 * able to plant or redirect one, so the directory is checked (ours, not a symlink, no group/other access) and an
 * entry is written to a fresh temp file that is renamed into place. A cache that cannot be used only costs the
 * probe again: it never fails the caller. */
#include "vm/vm.h"

#include <errno.h>
#include <xxhash.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

/* A directory of ours, not a symlink, that others cannot write (private: nor read). 0 ok, else -errno. */
static char *make_dir(char *dir, mode_t forbidden)
{
    if (vs_dir_owned(dir, true, forbidden, NULL) < 0) {
        free(dir);
        return NULL;
    }
    return dir;
}

char *vm_cache_dir(const char *override)
{
    if (override)
        return vs_dir_owned(override, false, 077, NULL) == 0 ? vs_xstrdup(override) : NULL;
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    VS_AUTOFREE char *base = NULL;
    if (x && x[0] == '/')
        base = vs_xstrdup(x);
    else if (h && h[0] == '/')
        base = vs_xasprintf("%s/.cache", h);
    else
        return NULL;   /* no shared fallback (/tmp): another user could prepare it */
    mkdir(base, 0700);
    /* ~/.cache/vmsnap also holds the test guest and QEMU 10 (made 0755 by their scripts): ours and not writable
     * by others is enough there; the entries live in a 0700 directory below it. */
    char *top = make_dir(vs_xasprintf("%s/vmsnap", base), 022);
    if (!top)
        return NULL;
    char *dir = make_dir(vs_xasprintf("%s/probes", top), 077);
    free(top);
    return dir;
}

json_t *vm_cache_binary_key(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) < 0)
        return NULL;
    return json_pack("{s:s,s:I,s:I,s:I}", "binary", path, "size", (json_int_t)st.st_size, "mtime",
                     (json_int_t)st.st_mtim.tv_sec, "mtime-ns", (json_int_t)st.st_mtim.tv_nsec);
}

char *vm_cache_name(const char *what, const char *binary)
{
    uint64_t h = XXH3_64bits(binary, strlen(binary));   /* one file per binary: two QEMUs do not evict each other */
    return vs_xasprintf("%s-%016llx.json", what, (unsigned long long)h);
}

json_t *vm_cache_get(const char *dir, const char *name, const json_t *key)
{
    if (!dir || !key)
        return NULL;
    VS_AUTOFREE char *path = vs_xasprintf("%s/%s", dir, name);
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_size > (1 << 20))
        return NULL;
    json_t *doc = json_loadfd(fd, 0, NULL);
    json_t *k = json_object_get(doc, "key"), *v = json_object_get(doc, "value");
    json_t *out = k && v && json_equal(k, key) ? json_incref(v) : NULL;
    json_decref(doc);
    return out;
}

void vm_cache_put(const char *dir, const char *name, const json_t *key, const json_t *value)
{
    if (!dir || !key || !value)
        return;
    VS_AUTOFREE char *path = vs_xasprintf("%s/%s", dir, name);
    VS_AUTOFREE char *tmp = vs_xasprintf("%s/.%s.XXXXXX", dir, name);
    int fd = vs_mkstemp_mode(tmp, 0600);
    if (fd < 0)
        return;
    json_t *doc = json_pack("{s:O,s:O}", "key", key, "value", value);
    bool ok = doc && json_dumpfd(doc, fd, JSON_COMPACT) == 0;
    json_decref(doc);
    if (close(fd) < 0 || !ok || rename(tmp, path) < 0)
        unlink(tmp);
}

char *vm_which(const char *name)
{
    if (strchr(name, '/'))
        return vs_xstrdup(name);
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    VS_AUTOFREE char *copy = vs_xstrdup(path);
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *p = vs_xasprintf("%s/%s", d, name);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}
