/* archive: the block cache's directory — one file per entry (stored block bytes or an index page), in one
 * subdirectory per scope (a source's name, size and version with the archive's UUID, hashed with BLAKE2b), under
 * a 0700 directory of the user's. Entries are written to a temp file and renamed, so a reader sees a whole entry
 * or none; every entry is checked (header, length, the archive's checksum) before a byte of it is used, so one
 * damaged by a crash or by hand is dropped and fetched again. The scope is what keeps a hostile archive from
 * planting bytes for another: XXH3 is no defence against a chosen collision, a scope it cannot enter is.
 * Least recently used (mtime, touched on each hit) entries go first; scopes pinned by a live reader stay.
 * docs/CACHE.md. */
#include "archive/bcache_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#define BC_MAGIC "VSBCACHE"
#define BC_VERSION 1u
#define BC_TMP_AGE_S 600          /* a temp file this old belongs to a writer that died */
#define BC_SCOPE_TAG "vmsnap block cache 1"

int arc_cache_conf_env(struct arc_cache_conf *c, vs_err *e)
{
    *c = (struct arc_cache_conf){ 0 };
    const char *m = getenv("VMSNAP_CACHE"), *d = getenv("VMSNAP_CACHE_DIR"), *s = getenv("VMSNAP_CACHE_SIZE");
    if (m && *m) {
        if (!strcmp(m, "auto"))
            c->mode = ARC_CACHE_AUTO;
        else if (!strcmp(m, "on"))
            c->mode = ARC_CACHE_ON;
        else if (!strcmp(m, "off"))
            c->mode = ARC_CACHE_OFF;
        else
            return vs_err_set(e, EINVAL, "VMSNAP_CACHE: expected auto, on or off, got '%s'", m);
    }
    if (d && *d) {
        if (d[0] != '/')
            return vs_err_set(e, EINVAL, "VMSNAP_CACHE_DIR: expected an absolute path, got '%s'", d);
        c->dir = d;
    }
    if (s && *s && (vs_parse_size(s, &c->max_bytes) < 0 || !c->max_bytes))
        return vs_err_set(e, EINVAL, "VMSNAP_CACHE_SIZE: expected a size like 512M or 8G, got '%s'", s);
    return 0;
}

/* ---- entries ---------------------------------------------------------------------------------------------- */

void arc__bc_entry_header(uint8_t *h, const struct arc__bc_key *k)
{
    memset(h, 0, ARC_BC_HEADER);
    memcpy(h, BC_MAGIC, 8);
    vs_put_le32(h + 8, BC_VERSION);
    h[12] = k->kind;
    vs_put_le64(h + 16, k->offset);
    vs_put_le32(h + 24, k->len);
    vs_put_le64(h + 32, k->csum);
    memcpy(h + 40, k->scope, 16);
    vs_put_le64(h + 56, arc_meta_hash(h, 56));
}

bool bc_payload_ok(const struct arc__bc_key *k, const void *p)
{
    return (k->kind == ARC_BC_PAGE ? arc_meta_hash(p, k->len) : arc_hash64(p, k->len)) == k->csum;
}

/* The header must be the one this key writes, byte for byte: nothing in a file is taken on trust. */
static bool header_ok(const uint8_t *h, const struct arc__bc_key *k)
{
    uint8_t want[ARC_BC_HEADER];
    arc__bc_entry_header(want, k);
    return !memcmp(h, want, ARC_BC_HEADER);
}

bool arc__bc_entry_ok(const uint8_t *file, size_t n, const struct arc__bc_key *k)
{
    return n >= ARC_BC_HEADER && n - ARC_BC_HEADER == k->len && header_ok(file, k) &&
           bc_payload_ok(k, file + ARC_BC_HEADER);
}

static char *entry_path(const struct arc_bcache *bc, const struct arc__bc_key *k)
{
    return vs_xasprintf("%s/%c-%016" PRIx64 "-%08" PRIx32 "-%016" PRIx64, bc->dir, k->kind == ARC_BC_PAGE ? 'p' : 'b',
                        k->offset, k->len, k->csum);
}

int bc_get(struct arc_bcache *bc, const struct arc__bc_key *k, void *buf)
{
    VS_AUTOFREE char *path = entry_path(bc, k);
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    uint8_t h[ARC_BC_HEADER];
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
              (uint64_t)st.st_size == ARC_BC_HEADER + (uint64_t)k->len &&
              vs_pread_full(fd, h, sizeof h, 0) == (ssize_t)sizeof h && header_ok(h, k) &&
              vs_pread_full(fd, buf, k->len, ARC_BC_HEADER) == (ssize_t)k->len && bc_payload_ok(k, buf);
    if (!ok) {
        unlink(path);
        atomic_fetch_add(&bc->bad, 1);
        return 0;
    }
    futimens(fd, NULL);   /* its last use orders eviction */
    return 1;
}

bool bc_has(struct arc_bcache *bc, const struct arc__bc_key *k)
{
    VS_AUTOFREE char *path = entry_path(bc, k);
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == ARC_BC_HEADER + (uint64_t)k->len;
}

/* What a file takes on disk, as the bound counts it. */
static uint64_t entry_usage(uint64_t size, uint64_t blocks)
{
    return VS_MAX(blocks * 512, (size + 4095) & ~4095ull);
}

static int write_entry(struct arc_bcache *bc, const struct arc__bc_key *k, const void *buf, const char *path)
{
    VS_AUTOFREE char *tmp = vs_xasprintf("%s/.tmp-XXXXXX", bc->dir);
    int fd = mkostemp(tmp, O_CLOEXEC);   /* 0600: entries may hold guest memory */
    if (fd < 0)
        return -errno;
    uint8_t h[ARC_BC_HEADER];
    arc__bc_entry_header(h, k);
    int r = vs_write_full(fd, h, sizeof h);
    if (r >= 0)
        r = vs_write_full(fd, buf, k->len);
    close(fd);
    if (r >= 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

void bc_put(struct arc_bcache *bc, const struct arc__bc_key *k, const void *buf)
{
    VS_AUTOFREE char *path = entry_path(bc, k);
    int r = write_entry(bc, k, buf, path);
    if (r == -ENOENT && mkdir(bc->dir, 0700) == 0)   /* another process's eviction removed the empty scope */
        r = write_entry(bc, k, buf, path);
    if (r < 0)
        return;   /* a cache that cannot take an entry costs a fetch later, never a failure now */
    atomic_fetch_add(&bc->stored, 1);
    bc_account(bc, entry_usage(ARC_BC_HEADER + (uint64_t)k->len, 0));
}

/* ---- directories ------------------------------------------------------------------------------------------ */

static char *default_root(vs_err *e)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    VS_AUTOFREE char *base = x && x[0] == '/' ? vs_xstrdup(x) : home && home[0] == '/' ? vs_xasprintf("%s/.cache", home)
                                                                                      : NULL;
    if (!base) {   /* no shared fallback (/tmp): another user could prepare it */
        vs_err_set(e, ENOENT, "no block cache directory: set VMSNAP_CACHE_DIR (or HOME), or VMSNAP_CACHE=off");
        return NULL;
    }
    mkdir(base, 0700);
    /* ~/.cache/vmsnap also holds the test guest and QEMU 10 (0755): ours and not writable by others is enough. */
    VS_AUTOFREE char *top = vs_xasprintf("%s/vmsnap", base);
    if (vs_dir_owned(top, true, 022, e) < 0)
        return NULL;
    return vs_xasprintf("%s/blocks", top);
}

int bc_dir_open(struct arc_bcache *bc, const struct arc_cache_conf *c, vs_err *e)
{
    bc->root = c->dir ? vs_xstrdup(c->dir) : default_root(e);
    if (!bc->root)
        return e ? e->code : -ENOENT;
    int r = vs_dir_owned(bc->root, true, 077, e);
    if (r < 0)
        return vs_err_prefix(e, "block cache (VMSNAP_CACHE_DIR; VMSNAP_CACHE=off reads without it)");
    bc->max_bytes = c->max_bytes ? c->max_bytes : ARC_CACHE_DEFAULT_SIZE;
    bc->rootfd = open(bc->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    bc->lock_fd = bc->rootfd < 0 ? -1 : openat(bc->rootfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (bc->lock_fd < 0)
        return vs_err_sys(e, errno, "block cache %s", bc->root);
    return 0;
}

int arc__bc_attach(struct arc *a, vs_err *e)
{
    struct arc_bcache *bc = a->bc;
    if (!bc)
        return 0;
    const struct arc_source *s = bc->inner;
    uint8_t size[8];
    vs_put_le64(size, s->size);
    const char *version = s->version ? s->version : "";
    if (sodium_init() < 0)
        return vs_err_set(e, EIO, "libsodium cannot start");
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof bc->scope);
    crypto_generichash_update(&st, (const uint8_t *)BC_SCOPE_TAG, sizeof BC_SCOPE_TAG);
    crypto_generichash_update(&st, (const uint8_t *)s->name, strlen(s->name) + 1);
    crypto_generichash_update(&st, size, sizeof size);
    crypto_generichash_update(&st, (const uint8_t *)version, strlen(version) + 1);
    crypto_generichash_update(&st, a->info.uuid, 16);
    crypto_generichash_final(&st, bc->scope, sizeof bc->scope);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", bc->scope[i]);
    bc->dir = vs_xasprintf("%s/%s", bc->root, hex);
    int r = vs_dir_owned(bc->dir, true, 077, e);
    return r < 0 ? vs_err_prefix(e, "block cache") : 0;
}

int bc_pin(struct arc_bcache *bc, vs_err *e)
{
    if (bc->pin_fd >= 0)
        return 0;
    VS_AUTOFREE char *p = vs_xasprintf("%s/.pin", bc->dir);
    int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    for (int i = 0; fd < 0 && errno == ENOENT && i < 3; i++) {   /* a scan removed the scope while it was empty */
        mkdir(bc->dir, 0700);
        fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0 || flock(fd, LOCK_SH) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return vs_err_sys(e, err, "block cache: cannot pin %s", bc->dir);
    }
    bc->pin_fd = fd;
    return 0;
}

/* ---- eviction --------------------------------------------------------------------------------------------- */

struct bc_ent { char name[80]; struct timespec used; uint64_t size; };

static bool scope_pinned(int sfd)
{
    VS_AUTOCLOSE int fd = openat(sfd, ".pin", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    return fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;   /* close() unlocks */
}

static int cmp_used(const void *x, const void *y)
{
    const struct bc_ent *a = x, *b = y;
    if (a->used.tv_sec != b->used.tv_sec)
        return a->used.tv_sec < b->used.tv_sec ? -1 : 1;
    return a->used.tv_nsec < b->used.tv_nsec ? -1 : a->used.tv_nsec > b->used.tv_nsec;
}

static bool is_scope_name(const char *n)
{
    return strlen(n) == 32 && strspn(n, "0123456789abcdef") == 32;
}

/* Every entry of one scope directory into *v (unless pinned); the bytes they take. */
static uint64_t scan_scope(int rootfd, const char *scope, struct bc_ent **v, size_t *n, size_t *cap, time_t now)
{
    int sfd = openat(rootfd, scope, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return 0;
    bool pinned = scope_pinned(sfd);
    DIR *d = fdopendir(sfd);
    if (!d) {
        close(sfd);
        return 0;
    }
    uint64_t total = 0;
    unsigned files = 0;
    for (struct dirent *de; (de = readdir(d));) {
        struct stat st;
        if (fstatat(sfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        files++;
        if (de->d_name[0] == '.') {
            if (!strncmp(de->d_name, ".tmp-", 5) && st.st_mtim.tv_sec + BC_TMP_AGE_S < now)
                unlinkat(sfd, de->d_name, 0);
            continue;
        }
        uint64_t size = entry_usage((uint64_t)st.st_size, (uint64_t)st.st_blocks);
        total += size;
        if (pinned || strlen(de->d_name) + 34 > sizeof (*v)->name)
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 1024;
            *v = vs_xrealloc(*v, *cap * sizeof **v);
        }
        struct bc_ent *en = &(*v)[(*n)++];
        snprintf(en->name, sizeof en->name, "%s/%s", scope, de->d_name);
        en->used = st.st_mtim;
        en->size = size;
    }
    closedir(d);
    if (!files)
        unlinkat(rootfd, scope, AT_REMOVEDIR);   /* fails harmlessly if an entry arrived meanwhile */
    return total;
}

/* Under the lock: every scope's entries counted; when they exceed max, the least recently used ones of unpinned
 * scopes removed until they take at most 90 % of it. Returns the bytes held afterwards. */
static uint64_t scan_and_evict(int rootfd, uint64_t max)
{
    int dfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);   /* its own offset, unlike a dup */
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    VS_AUTOFREE struct bc_ent *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    for (struct dirent *de; (de = readdir(d));)
        if (is_scope_name(de->d_name))
            total += scan_scope(rootfd, de->d_name, &v, &n, &cap, now);
    closedir(d);
    if (total > max && n) {   /* n may be 0: every scope pinned */
        qsort(v, n, sizeof *v, cmp_used);
        for (size_t i = 0; i < n && total > max / 10 * 9; i++)
            if (unlinkat(rootfd, v[i].name, 0) == 0 || errno == ENOENT)
                total -= v[i].size;
    }
    return total;
}

/* The bytes the cache holds are kept in the lock file, shared by every process: each entry stored adds to it under
 * the lock, and once it passes the bound a scan counts them again and evicts. So the bound holds across processes
 * up to the entries renamed into place and not yet added (one per writer at most). */
void bc_account(struct arc_bcache *bc, uint64_t add)
{
    if (flock(bc->lock_fd, LOCK_EX) < 0)
        return;
    uint8_t b[8];
    bool known = pread(bc->lock_fd, b, sizeof b, 0) == (ssize_t)sizeof b;
    uint64_t held = known ? vs_get_le64(b) + add : 0;
    if (!known || held > bc->max_bytes)
        held = scan_and_evict(bc->rootfd, bc->max_bytes);
    vs_put_le64(b, held);
    if (pwrite(bc->lock_fd, b, sizeof b, 0) != (ssize_t)sizeof b)
        ftruncate(bc->lock_fd, 0);   /* unknown: the next one counts again */
    flock(bc->lock_fd, LOCK_UN);
}
