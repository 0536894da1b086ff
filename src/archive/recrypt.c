/* archive: an archive written anew from another one's streams (cp --encrypt): the same stream names, kinds and
 * content under a new UUID, sealed as the writer's options say; then compared with its source, stream by stream. */
#include "archive/format.h"

#include <errno.h>
#include <string.h>

#define CHUNK (1u << 20)

/* Zero blocks go as runs, stored blocks as they read, parent blocks not at all: the writer of a thin archive
 * references its own parent (the parent's copy) for every block it was not given. */
static int copy_stream(struct arc *a, unsigned i, const struct arc_stream_info *si, struct arc_writer *w,
                       uint8_t *buf, volatile int *cancel, vs_err *e)
{
    if (si->kind == ARC_KIND_CONFIG || si->kind == ARC_KIND_METADATA) {   /* whole: a config sets feature bits */
        VS_AUTOFREE char *text = NULL;
        size_t len;
        int r = arc_read_stream(a, i, ARC_MAX_CONFIG, &text, &len, e);
        return r < 0 ? r : arc_writer_add(w, si->kind, si->name, text, len, e);
    }
    int r = arc_writer_begin(w, si->kind, si->name, si->size, e);
    uint64_t bs = si->block_size, zfrom = UINT64_MAX;
    for (uint64_t b = 0; r >= 0 && b <= si->blocks; b++) {
        struct arc_entry en = { .type = ARC_BLOCK_PARENT };
        if (b < si->blocks && (r = arc__entry(a, i, b, &en, e)) < 0)
            break;
        uint64_t off = b * bs, n = b < si->blocks ? VS_MIN(bs, si->size - off) : 0;
        if (en.type == ARC_BLOCK_ZERO) {
            zfrom = VS_MIN(zfrom, off);
            continue;
        }
        if (zfrom != UINT64_MAX && (r = arc_writer_zero(w, zfrom, off - zfrom, e)) < 0)
            break;
        zfrom = UINT64_MAX;
        if (cancel && *cancel)
            r = vs_err_set(e, EINTR, "interrupted");
        else if (en.type == ARC_BLOCK_DATA && (r = arc_pread(a, i, buf, n, off, e)) >= 0)
            r = arc_writer_pwrite(w, buf, n, off, e);
    }
    return r < 0 ? r : arc_writer_end(w, e);
}

int arc__rewrite(struct arc *a, const char *dst, const struct arc_writer_opts *wo, bool private_mode,
                 volatile int *cancel, vs_err *e)
{
    struct arc_writer *w;
    int r = arc_writer_create(dst, wo, &w, e);
    if (r < 0)
        return r;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(ARC_MAX_BLOCK_SIZE);
    for (unsigned i = 0; r >= 0 && i < arc_stream_count(a); i++) {
        struct arc_stream_info si;
        if ((r = arc_stream_get(a, i, &si)) >= 0)
            r = copy_stream(a, i, &si, w, buf, cancel, e);
    }
    if (r < 0) {
        arc_writer_abort(w);
        return r;
    }
    if (private_mode)
        arc_writer_holds_memory(w);
    return arc_writer_finish(w, e);
}

/* One stream of both: runs that are zero in both are skipped, the rest read and compared. */
static int same_stream(struct arc *a, struct arc *b, unsigned i, uint64_t size, const char *name, uint8_t *x,
                       uint8_t *y, vs_err *e)
{
    for (uint64_t off = 0, run, run2; off < size; off += run) {
        unsigned fa, fb;
        int r = arc_block_status(a, i, off, size - off, &run, &fa, e);
        if (r >= 0)
            r = arc_block_status(b, i, off, run, &run2, &fb, e);
        if (r < 0)
            return r;
        run = VS_MIN(run, run2);
        if (fa == ARC_STATUS_ZERO && fb == ARC_STATUS_ZERO)
            continue;
        run = VS_MIN(run, (uint64_t)CHUNK);
        if ((r = arc_pread(a, i, x, run, off, e)) < 0 || (r = arc_pread(b, i, y, run, off, e)) < 0)
            return r;
        if (memcmp(x, y, run))
            return vs_err_set(e, EIO, "stream '%s' differs from its source at offset %" PRIu64, name, off);
    }
    return 0;
}

int arc__same_content(struct arc *a, struct arc *b, vs_err *e)
{
    unsigned n = arc_stream_count(a);
    if (arc_stream_count(b) != n)
        return vs_err_set(e, EIO, "%u streams, its source has %u", arc_stream_count(b), n);
    VS_AUTOFREE uint8_t *x = vs_xmalloc(CHUNK), *y = vs_xmalloc(CHUNK);
    for (unsigned i = 0; i < n; i++) {
        struct arc_stream_info sa, sb;
        int r = arc_stream_get(a, i, &sa);
        if (r >= 0)
            r = arc_stream_get(b, i, &sb);
        if (r < 0)
            return r;
        if (strcmp(sa.name, sb.name) || sa.kind != sb.kind || sa.size != sb.size)
            return vs_err_set(e, EIO, "stream %u is '%s' (%s, %" PRIu64 " bytes), its source's '%s' (%s, %" PRIu64
                              " bytes)", i, sb.name, arc_kind_name(sb.kind), sb.size, sa.name,
                              arc_kind_name(sa.kind), sa.size);
        if ((r = same_stream(a, b, i, sa.size, sa.name, x, y, e)) < 0)
            return r;
    }
    return 0;
}
