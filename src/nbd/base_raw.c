/* nbd: a raw image file as the read-only base of an overlay. */
#include "nbd/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

struct raw {
    int fd;
    char *path;
};

static int raw_pread(void *ctx, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct raw *r = ctx;
    ssize_t n = vs_pread_full(r->fd, buf, len, (off_t)off);
    if (n != (ssize_t)len)
        return vs_err_sys(e, n < 0 ? (int)-n : EIO, "reading %s at offset %llu", r->path, (unsigned long long)off);
    return 0;
}

static int raw_extent(void *ctx, uint64_t off, uint64_t len, uint64_t *run, uint32_t *flags, vs_err *e)
{
    (void)e;
    struct raw *r = ctx;
    off_t d = lseek(r->fd, (off_t)off, SEEK_DATA);
    if (d < 0 && errno != ENXIO) { /* no SEEK_DATA: everything is data */
        *run = len;
        *flags = 0;
        return 0;
    }
    if (d < 0 || (uint64_t)d > off) { /* a hole up to d (or to the end) */
        *run = d < 0 ? len : VS_MIN(len, (uint64_t)d - off);
        *flags = NBD_EXTENT_HOLE | NBD_EXTENT_ZERO;
        return 0;
    }
    off_t h = lseek(r->fd, (off_t)off, SEEK_HOLE);
    *run = h < 0 ? len : VS_MIN(len, (uint64_t)h - off);
    *flags = 0;
    return 0;
}

static void raw_close(struct nbd_base *b)
{
    struct raw *r = b->ctx;
    close(r->fd);
    free(r->path);
    free(r);
    free(b);
}

int nbd_base_open_raw(const char *path, struct nbd_base **out, vs_err *e)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_err_sys(e, errno, "opening raw image %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vs_err_sys(e, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode) || st.st_size <= 0)
        return vs_err_set(e, EINVAL, "raw image %s: expected a non-empty regular file", path);
    char abs[PATH_MAX];
    if (!realpath(path, abs))
        return vs_err_sys(e, errno, "resolving %s", path);
    struct nbd_base *b = vs_xcalloc(1, sizeof(*b));
    struct raw *r = vs_xcalloc(1, sizeof(*r));
    r->fd = VS_STEAL_FD(fd);
    r->path = vs_xstrdup(path);
    b->size = (uint64_t)st.st_size;
    /* A raw file has no identity of its own: name it by its absolute path. */
    VS_AUTOFREE char *key = vs_xasprintf("vmsnap-raw:%s", abs);
    XXH128_hash_t h = XXH3_128bits(key, strlen(key));
    vs_put_be64(b->uuid, h.high64);
    vs_put_be64(b->uuid + 8, h.low64);
    b->uuid[6] = (b->uuid[6] & 0x0f) | 0x80; /* RFC 4122 version 8 (custom), variant 10 */
    b->uuid[8] = (b->uuid[8] & 0x3f) | 0x80;
    b->ctx = r;
    b->pread = raw_pread;
    b->extent = raw_extent;
    b->close = raw_close;
    *out = b;
    return 0;
}

void nbd_base_close(struct nbd_base *b)
{
    if (b && b->close)
        b->close(b);
}
