/* nbd: disk N of a .vmsnap archive as the base of an overlay (reads decompress through the archive's cache). */
#include "nbd/internal.h"
#include "archive/archive.h"

#include <errno.h>
#include <string.h>

#define ARCHIVE_CACHE (64u << 20) /* decompressed blocks kept for re-reads (default is 8 MiB) */

struct abase {
    struct arc *a;
    unsigned stream;
};

static int ab_pread(void *ctx, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct abase *ab = ctx;
    return arc_pread(ab->a, ab->stream, buf, len, off, e);
}

static int ab_extent(void *ctx, uint64_t off, uint64_t len, uint64_t *run, uint32_t *flags, vs_err *e)
{
    struct abase *ab = ctx;
    unsigned f;
    int r = arc_block_status(ab->a, ab->stream, off, len, run, &f, e);
    if (r < 0)
        return r;
    *flags = (f & ARC_STATUS_ZERO) ? NBD_EXTENT_HOLE | NBD_EXTENT_ZERO : 0;
    return 0;
}

static void ab_close(struct nbd_base *b)
{
    struct abase *ab = b->ctx;
    arc_close(ab->a);
    free(ab);
    free(b);
}

void nbd_base_archive_identity(const uint8_t archive_uuid[16], unsigned disk, uint8_t out[16])
{
    memcpy(out, archive_uuid, 16);
    out[15] ^= (uint8_t)disk;
}

int nbd_base_open_archive(const char *path, unsigned disk, const struct cr_key *key, struct nbd_base **out,
                          vs_err *e)
{
    return nbd_base_open_archive_checked(path, disk, key, NULL, NULL, NULL, out, e);
}

int nbd_base_open_archive_checked(const char *path, unsigned disk, const struct cr_key *key, nbd_wrap_source_fn wrap,
                                  nbd_check_archive_fn check, void *opaque, struct nbd_base **out, vs_err *e)
{
    struct arc_open_opts oo = { .cache_bytes = ARCHIVE_CACHE, .key = key, .wrap = wrap, .wrap_opaque = opaque };
    struct arc *a;
    int r = arc_open(path, &oo, &a, e);
    if (r < 0)
        return r;
    if (check && (r = check(opaque, a, e)) < 0) {
        arc_close(a);
        return r;
    }
    int s = arc_find_disk(a, (int)disk);
    struct arc_stream_info si;
    if (s == ARC_STREAM_NONE) {
        unsigned n = 0;
        while (arc_find_disk(a, (int)n) != ARC_STREAM_NONE)
            n++;
        arc_close(a);
        return vs_err_set(e, ENOENT, "%s has no disk %u (it has %u disk%s, numbered from 0)", path, disk, n,
                          n == 1 ? "" : "s");
    }
    if ((r = arc_stream_get(a, (unsigned)s, &si)) < 0) {
        arc_close(a);
        return vs_err_set(e, -r, "%s: reading disk %u's description", path, disk);
    }
    if (si.size == 0) {
        arc_close(a);
        return vs_err_set(e, EINVAL, "%s: disk %u is empty", path, disk);
    }
    struct nbd_base *b = vs_xcalloc(1, sizeof(*b));
    struct abase *ab = vs_xcalloc(1, sizeof(*ab));
    ab->a = a;
    ab->stream = (unsigned)s;
    b->size = si.size;
    nbd_base_archive_identity(arc_uuid(a), disk, b->uuid);
    b->ctx = ab;
    b->pread = ab_pread;
    b->extent = ab_extent;
    b->close = ab_close;
    *out = b;
    return 0;
}
