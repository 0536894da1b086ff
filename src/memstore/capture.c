/* memstore: capture a live migration stream into an archive as memory pages (docs/LAZY-RESUME.md §1).
 *
 * Bytes are read from the pipe QEMU writes and pushed through the migstream splitter. Pages of the split RAM
 * block go to an unordered archive stream ram/<idstr> at their guest offsets (the writer gathers them into
 * blocks, so nothing RAM-sized is held); the rest of the stream (the device stream) is spilled to an unlinked
 * temp file and stored as memory-device once RAM is done. Until the splitter commits (its first page of the
 * split block), the raw bytes are kept too: if it refuses the stream before that, they and the rest of the pipe
 * are stored as today's opaque `memory` stream, with a note. Something it does not understand after the commit
 * (a newer QEMU's addition) leaves the pages stored so far where they are: the rest of the stream is kept in the
 * device stream as QEMU sent it, which loads to the same state, with a note. */
#include "memstore/memstore.h"
#include "migstream/migstream.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#define PRE_MAX (64u << 20)   /* raw bytes kept before the commit (header, block list, ROM pages) */
#define CHUNK (256u * 1024)

struct cap {
    struct arc_writer *w;
    const struct mst_capture_opts *o;
    struct mst_capture_result *res;
    int dev_fd;                      /* spilled device stream */
    int split;                       /* index of the split block, -1 before the block list */
    bool ram_open;
};

static int pick_block(const struct cap *c, const struct ms_block *b, unsigned n)
{
    const char *want[] = { c->o && c->o->split ? c->o->split : NULL, "mem", "pc.ram" };
    for (size_t k = 0; k < VS_ARRAY_SIZE(want); k++)
        for (unsigned i = 0; want[k] && i < n; i++)
            if (!strcmp(b[i].name, want[k]))
                return (int)i;
    if (c->o && c->o->split)
        return -1;   /* asked for by name: never guess */
    int best = -1;
    for (unsigned i = 0; i < n; i++)
        if (best < 0 || b[i].size > b[best].size)
            best = (int)i;
    return best;
}

static int on_blocks(void *opaque, struct ms_block *b, unsigned n, vs_err *e)
{
    struct cap *c = opaque;
    int k = pick_block(c, b, n);
    if (k < 0)
        return vs_err_set(e, ENOTSUP, "RAM block '%s' is not in the migration stream (first block '%s')",
                          c->o->split, n ? b[0].name : "");
    if (b[k].size % MS_PAGE_SIZE)
        return vs_err_set(e, ENOTSUP, "RAM block '%s' is not a whole number of pages", b[k].name);
    for (unsigned i = 0; i < n; i++)
        b[i].split = (int)i == k;   /* one RAM stream: the writer takes one stream at a time */
    c->split = k;
    snprintf(c->res->block, sizeof c->res->block, "%s", b[k].name);
    c->res->ram_size = b[k].size;
    return 0;
}

static int open_ram(struct cap *c, const struct ms_block *b, vs_err *e)
{
    VS_AUTOFREE char *name = vs_xasprintf("%s%s", MST_RAM_PREFIX, b->name);
    int r = arc_writer_begin_unordered(c->w, ARC_KIND_OTHER, name, b->size, c->o ? c->o->hold_bytes : 0, e);
    if (r == 0)
        c->ram_open = true;
    return r;
}

static int on_page(void *opaque, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e)
{
    struct cap *c = opaque;
    int r;
    if (!c->ram_open && (r = open_ram(c, b, e)) < 0)
        return r;
    return data ? arc_writer_pwrite(c->w, data, MS_PAGE_SIZE, off, e) : arc_writer_zero(c->w, off, MS_PAGE_SIZE, e);
}

static int on_device(void *opaque, const void *buf, size_t len, vs_err *e)
{
    struct cap *c = opaque;
    int r = vs_write_full(c->dev_fd, buf, len);
    return r < 0 ? vs_err_sys(e, -r, "spilling the device stream to a temporary file") : 0;
}

static int store_device(struct cap *c, vs_err *e)
{
    if (lseek(c->dev_fd, 0, SEEK_SET) < 0)
        return vs_err_sys(e, errno, "rewinding the device stream");
    int r = arc_writer_begin(c->w, ARC_KIND_OTHER, MST_DEVICE, ARC_SIZE_UNKNOWN, e);
    if (r == 0)
        r = arc_writer_stream_from_fd(c->w, c->dev_fd, NULL, e);
    return r < 0 ? r : arc_writer_end(c->w, e);
}

static int open_spill(const struct mst_capture_opts *o, vs_err *e)
{
    const char *dir = o && o->tmpdir ? o->tmpdir : "/var/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return vs_err_sys(e, errno, "cannot create a temporary file in %s for the device stream", dir);
    return fd;
}

struct mst_capture {
    struct cap c;
    struct mst_capture_opts o;
    struct mst_capture_result res;
    struct ms_parser *p;
    uint8_t *pre;                    /* raw bytes until the splitter commits */
    size_t pre_len;
    bool opaque;                     /* fell back: bytes go to the "memory" stream */
    int err;                         /* sticky */
};

int mst_capture_new(struct arc_writer *w, const struct mst_capture_opts *o, struct mst_capture **out, vs_err *e)
{
    int fd = open_spill(o, e);
    if (fd < 0)
        return fd;
    struct mst_capture *cp = vs_xcalloc(1, sizeof *cp);
    arc_writer_holds_memory(w);
    if (o)
        cp->o = *o;
    cp->c = (struct cap){ .w = w, .o = &cp->o, .res = &cp->res, .dev_fd = fd, .split = -1 };
    struct ms_ops ops = { .blocks = on_blocks, .page = on_page, .device = on_device, .opaque = &cp->c };
    struct ms_opts mo = { .keep_unknown_rest = true };
    int r = ms_parser_new(&ops, &mo, &cp->p, e);
    if (r < 0) {
        mst_capture_free(cp);
        return r;
    }
    *out = cp;
    return 0;
}

void mst_capture_free(struct mst_capture *cp)
{
    if (!cp)
        return;
    ms_parser_free(cp->p);
    if (cp->c.dev_fd >= 0)
        close(cp->c.dev_fd);
    free(cp->pre);
    free(cp);
}

/* The splitter wrote nothing to the archive yet: store what was read as an opaque stream, the rest follows. */
static int go_opaque(struct mst_capture *cp, vs_err *e)
{
    cp->opaque = true;
    int r = arc_writer_begin(cp->c.w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, e);
    if (r == 0)
        r = arc_writer_write(cp->c.w, cp->pre, cp->pre_len, e);
    free(cp->pre);
    cp->pre = NULL;
    return r;
}

int mst_capture_push(struct mst_capture *cp, const void *buf, size_t len, vs_err *e)
{
    if (cp->err)
        return vs_err_set(e, -cp->err, "memory capture already failed");
    cp->res.stream_bytes += len;
    int r;
    if (cp->opaque) {
        r = arc_writer_write(cp->c.w, buf, len, e);
        goto out;
    }
    bool was = ms_committed(cp->p);
    if (!was) {   /* keep the raw bytes until the splitter commits */
        if (cp->pre_len + len > PRE_MAX) {
            snprintf(cp->res.note, sizeof cp->res.note, "no page of the main RAM block in the first %u MiB",
                     PRE_MAX >> 20);
            if ((r = go_opaque(cp, e)) == 0)
                r = arc_writer_write(cp->c.w, buf, len, e);
            goto out;
        }
        cp->pre = vs_xrealloc(cp->pre, cp->pre_len + len);
        memcpy(cp->pre + cp->pre_len, buf, len);
        cp->pre_len += len;
    }
    vs_err pe = { 0 };
    r = ms_push(cp->p, buf, len, &pe);
    if (r < 0 && !ms_committed(cp->p) && (r == -ENOTSUP || r == -EBADMSG)) {
        snprintf(cp->res.note, sizeof cp->res.note, "%s", pe.msg);
        r = go_opaque(cp, e);   /* pre already holds this chunk */
        goto out;
    }
    if (r == 0 && !ms_committed(cp->p) && ms_opaque_rest(cp->p)) {   /* no page stored: one opaque stream is simpler */
        snprintf(cp->res.note, sizeof cp->res.note, "%s", ms_opaque_rest(cp->p));
        r = go_opaque(cp, e);
        goto out;
    }
    if (r < 0) {
        if (e)
            *e = pe;
        if (r == -ENOTSUP)
            vs_err_prefix(e, "memory stream refused after pages were stored");
        goto out;
    }
    if (!was && ms_committed(cp->p)) {
        free(cp->pre);
        cp->pre = NULL;
        cp->pre_len = 0;
    }
out:
    if (r < 0)
        cp->err = r;
    return r;
}

int mst_capture_finish(struct mst_capture *cp, struct mst_capture_result *res, vs_err *e)
{
    int r = cp->err;
    if (r < 0)
        return vs_err_set(e, -r, "memory capture already failed");
    if (cp->opaque) {
        r = arc_writer_end(cp->c.w, e);
    } else if ((r = ms_finish(cp->p, &cp->res.sum, e)) == 0) {
        if (cp->res.sum.opaque_from)
            snprintf(cp->res.note, sizeof cp->res.note, "the migration stream from byte %" PRIu64 " on is kept as "
                     "QEMU sent it (%.300s)", cp->res.sum.opaque_from, cp->res.sum.opaque_why);
        if (cp->c.split < 0)
            r = vs_err_set(e, EBADMSG, "the migration stream has no RAM block list");
        else if (!cp->c.ram_open)   /* no page at all: the block reads as zeros (or the parent's) */
            r = open_ram(&cp->c, &ms_blocks(cp->p, &(unsigned){ 0 })[cp->c.split], e);
        if (r == 0)
            r = arc_writer_end(cp->c.w, e);
        if (r == 0)
            r = store_device(&cp->c, e);
        cp->res.paged = r == 0;
    }
    if (r < 0)
        cp->err = r;
    else if (res)
        *res = cp->res;
    return r;
}

int mst_capture_fd(struct arc_writer *w, int fd, const struct mst_capture_opts *o, struct mst_capture_result *res,
                  vs_err *e)
{
    *res = (struct mst_capture_result){ 0 };
    struct mst_capture *cp = NULL;
    int r = mst_capture_new(w, o, &cp, e);
    if (r < 0)
        return r;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(CHUNK);
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = vs_err_sys(e, errno, "reading the migration stream");
            break;
        }
        if (n == 0) {
            r = mst_capture_finish(cp, res, e);
            break;
        }
        if ((r = mst_capture_push(cp, buf, (size_t)n, e)) < 0)
            break;
    }
    mst_capture_free(cp);
    return r;
}
