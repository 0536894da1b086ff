/* memstore: RAM page streams in a .vmsnap archive (docs/LAZY-RESUME.md): one stream per split RAM block, named
 * MST_RAM_PREFIX + block idstr, page i at byte i*4096, zero pages stored as zero blocks; the device stream
 * (the migration stream without those pages) as MST_DEVICE. Until the format has kinds of its own for them they
 * are kind "other": an older vmsnap sees no memory stream and never feeds QEMU a stream without its RAM. */
#include <errno.h>
#include <string.h>

#include "memstore/memstore.h"

int mst_ram_read(const struct mst_ram *r, void *buf, size_t len, uint64_t off, vs_err *e)
{
    /* A VM reads its RAM from the archive for its whole life: a file rewritten in place (size or mtime of the
     * open fd changed) is refused from then on, even for blocks whose checksums would still pass. */
    int rc = arc_check_unchanged(r->a, e);
    if (rc == 0)
        rc = arc_pread(r->a, r->stream, buf, len, off, e);   /* every block checked; damage is an error */
    return rc;
}

int mst_ram_data_run(const struct mst_ram *r, uint64_t off, uint64_t *len, bool *zero, vs_err *e)
{
    unsigned fl;
    int rc = arc_block_status(r->a, r->stream, off, *len, len, &fl, e);
    *zero = fl == ARC_STATUS_ZERO;
    return rc;
}

int mst_ram_streams(struct arc *a, struct mst_ram **out, unsigned *n, vs_err *e)
{
    unsigned ns = arc_stream_count(a), k = 0;
    VS_AUTOFREE struct mst_ram *rs = vs_xcalloc(ns ? ns : 1, sizeof *rs);
    size_t plen = strlen(MST_RAM_PREFIX);
    for (unsigned i = 0; i < ns; i++) {
        struct arc_stream_info si;
        int r = arc_stream_get(a, i, &si);
        if (r < 0)
            return vs_err_set(e, -r, "reading the stream list");
        if (si.kind != ARC_KIND_OTHER || strncmp(si.name, MST_RAM_PREFIX, plen) != 0)
            continue;
        if (si.size == 0 || si.size % MST_PAGE_SIZE)
            return vs_err_set(e, EINVAL, "RAM stream '%s' has size %" PRIu64 ", not whole pages", si.name, si.size);
        rs[k++] = (struct mst_ram){ .a = a, .stream = i, .block = si.name + plen, .size = si.size };
    }
    *out = VS_STEAL(rs);
    *n = k;
    return 0;
}

int mst_image_to_archive(struct mst_image *im, struct arc_writer *w, vs_err *e)
{
    const struct mst_image_block *b;
    unsigned n = mst_image_blocks(im, &b);
    VS_AUTOFREE uint8_t *page = vs_xmalloc(MST_PAGE_SIZE);
    arc_writer_holds_memory(w);
    for (unsigned i = 0; i < n; i++) {
        VS_AUTOFREE char *name = vs_xasprintf("%s%s", MST_RAM_PREFIX, b[i].name);
        int r = arc_writer_begin(w, ARC_KIND_OTHER, name, b[i].size, e);
        for (uint64_t off = 0; r == 0 && off < b[i].size; off += MST_PAGE_SIZE) {
            if (mst_image_is_zero(im, i, off))
                continue;   /* skipped bytes of a stream without base are zeros */
            if ((r = mst_image_read(im, i, page, MST_PAGE_SIZE, off, e)) == 0)
                r = arc_writer_pwrite(w, page, MST_PAGE_SIZE, off, e);
        }
        if (r == 0)
            r = arc_writer_end(w, e);
        if (r < 0)
            return vs_err_prefix(e, "RAM block '%s'", b[i].name);
    }
    return 0;
}

bool mst_is_paged(struct arc *a)
{
    return arc_find_stream(a, ARC_KIND_OTHER, MST_DEVICE) != ARC_STREAM_NONE;
}

static int ram_stream(struct arc *a, const struct ms_block *b)
{
    VS_AUTOFREE char *name = vs_xasprintf("%s%s", MST_RAM_PREFIX, b->name);
    return arc_find_stream(a, ARC_KIND_OTHER, name);
}

static bool ra_want(void *opaque, const struct ms_block *b) { return ram_stream(opaque, b) >= 0; }

/* A run of pages: up to len bytes of one allocation status, data read whole blocks at a time. */
static int ra_fill_run(void *opaque, const struct ms_block *b, uint64_t off, size_t len, uint8_t *buf, size_t *got,
                       bool *zero, vs_err *e)
{
    struct arc *a = opaque;
    int s = ram_stream(a, b);
    uint64_t run;
    unsigned fl;
    int r = arc_block_status(a, (unsigned)s, off, len, &run, &fl, e);
    if (r < 0)
        return r;
    *got = (size_t)run;
    if ((*zero = fl == ARC_STATUS_ZERO))
        return 0;
    return arc_pread(a, (unsigned)s, buf, *got, off, e);   /* the caller names the block and page */
}

/* The device stream straight from the archive into the parser: no copy of it anywhere, whatever size it claims. */
struct dev_src { struct arc *a; unsigned stream; uint64_t size; };

static int push_device(void *opaque, struct ms_parser *p, vs_err *e)
{
    struct dev_src *d = opaque;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(1 << 20);
    for (uint64_t off = 0; off < d->size;) {
        size_t n = (size_t)VS_MIN((uint64_t)1 << 20, d->size - off);
        int r = arc_pread(d->a, d->stream, buf, n, off, e);
        if (r < 0 || (r = ms_push(p, buf, n, e)) < 0)
            return r;
        off += n;
    }
    return 0;
}

int mst_reassemble(struct arc *a, int out_fd, struct ms_summary *sum, vs_err *e)
{
    int dev = arc_find_stream(a, ARC_KIND_OTHER, MST_DEVICE);
    if (dev == ARC_STREAM_NONE)
        return vs_err_set(e, ENOENT, "no \"%s\" stream: memory is not stored as pages", MST_DEVICE);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)dev, &si);
    struct dev_src d = { .a = a, .stream = (unsigned)dev, .size = si.size };
    struct ms_page_reader rd = { .fill_run = ra_fill_run, .want = ra_want, .opaque = a };
    return ms_reassemble_from(push_device, &d, out_fd, &rd, sum, e);
}
