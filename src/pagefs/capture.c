/* pagefs: capture a live migration stream into an archive as memory pages (docs/LAZY-RESUME.md §1).
 *
 * Bytes are read from the pipe QEMU writes and pushed through the migstream splitter. Pages of the split RAM
 * block go to an unordered archive stream ram/<idstr> at their guest offsets (the writer gathers them into
 * blocks, so nothing RAM-sized is held); the rest of the stream (the device stream) is spilled to an unlinked
 * temp file and stored as memory-device once RAM is done. Until the splitter commits (its first page of the
 * split block), the raw bytes are kept too: if it refuses the stream before that, they and the rest of the pipe
 * are stored as today's opaque `memory` stream, with a note. A refusal after the commit fails the capture. */
#include "pagefs/pagefs.h"
#include "migstream/migstream.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#define PRE_MAX (64u << 20)   /* raw bytes kept before the commit (header, block list, ROM pages) */
#define CHUNK (256u * 1024)

struct cap {
    struct arc_writer *w;
    const struct pf_capture_opts *o;
    struct pf_capture_result *res;
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
        return vs_err_set(e, -ENOTSUP, "RAM block '%s' is not in the migration stream (first block '%s')",
                          c->o->split, n ? b[0].name : "");
    if (b[k].size % MS_PAGE_SIZE)
        return vs_err_set(e, -ENOTSUP, "RAM block '%s' is not a whole number of pages", b[k].name);
    for (unsigned i = 0; i < n; i++)
        b[i].split = (int)i == k;   /* one RAM stream: the writer takes one stream at a time */
    c->split = k;
    snprintf(c->res->block, sizeof c->res->block, "%s", b[k].name);
    c->res->ram_size = b[k].size;
    return 0;
}

static int open_ram(struct cap *c, const struct ms_block *b, vs_err *e)
{
    VS_AUTOFREE char *name = vs_xasprintf("%s%s", PF_ARC_RAM_PREFIX, b->name);
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
    return r < 0 ? vs_err_sys(e, r, "spilling the device stream to a temporary file") : 0;
}

/* Opaque fallback: what was read so far, then the rest of the pipe. */
static int store_opaque(struct cap *c, const uint8_t *pre, size_t pre_len, int fd, vs_err *e)
{
    int r = arc_writer_begin(c->w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, e);
    uint64_t rest = 0;
    if (r == 0)
        r = arc_writer_write(c->w, pre, pre_len, e);
    if (r == 0)
        r = arc_writer_stream_from_fd(c->w, fd, &rest, e);
    if (r == 0)
        r = arc_writer_end(c->w, e);
    c->res->stream_bytes = pre_len + rest;
    return r;
}

static int store_device(struct cap *c, vs_err *e)
{
    if (lseek(c->dev_fd, 0, SEEK_SET) < 0)
        return vs_err_sys(e, errno, "rewinding the device stream");
    int r = arc_writer_begin(c->w, ARC_KIND_OTHER, PF_ARC_DEVICE, ARC_SIZE_UNKNOWN, e);
    if (r == 0)
        r = arc_writer_stream_from_fd(c->w, c->dev_fd, NULL, e);
    return r < 0 ? r : arc_writer_end(c->w, e);
}

static int open_spill(const struct pf_capture_opts *o, vs_err *e)
{
    const char *dir = o && o->tmpdir ? o->tmpdir : "/var/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return vs_err_sys(e, errno, "cannot create a temporary file in %s for the device stream", dir);
    return fd;
}

int pf_capture_fd(struct arc_writer *w, int fd, const struct pf_capture_opts *o, struct pf_capture_result *res,
                  vs_err *e)
{
    *res = (struct pf_capture_result){ 0 };
    struct cap c = { .w = w, .o = o, .res = res, .split = -1 };
    int r = open_spill(o, e);
    if (r < 0)
        return r;
    VS_AUTOCLOSE int dev_fd = c.dev_fd = r;
    struct ms_ops ops = { .blocks = on_blocks, .page = on_page, .device = on_device, .opaque = &c };
    MS_AUTOFREE struct ms_parser *p = NULL;
    if ((r = ms_parser_new(&ops, NULL, &p, e)) < 0)
        return r;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(CHUNK);
    VS_AUTOFREE uint8_t *pre = NULL;
    size_t pre_len = 0;
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vs_err_sys(e, errno, "reading the migration stream");
        if (n == 0)
            break;
        bool was = ms_committed(p);
        if (!was) {   /* keep the raw bytes until the splitter commits */
            if (pre_len + (size_t)n > PRE_MAX) {
                snprintf(res->note, sizeof res->note, "no page of the main RAM block in the first %u MiB",
                         PRE_MAX >> 20);
                r = -ENOTSUP;
                goto opaque;
            }
            pre = vs_xrealloc(pre, pre_len + (size_t)n);
            memcpy(pre + pre_len, buf, (size_t)n);
            pre_len += (size_t)n;
        }
        total += (uint64_t)n;
        vs_err pe = { 0 };
        r = ms_push(p, buf, (size_t)n, &pe);
        if (r < 0 && !ms_committed(p) && (r == -ENOTSUP || r == -EBADMSG)) {
            snprintf(res->note, sizeof res->note, "%s", pe.msg);
            goto opaque;
        }
        if (r < 0) {
            if (e)
                *e = pe;
            return r == -ENOTSUP ? vs_err_prefix(e, "memory stream refused after pages were stored") : r;
        }
        if (!was && ms_committed(p)) {
            free(pre);
            pre = NULL;
            pre_len = 0;
        }
    }
    if ((r = ms_finish(p, &res->sum, e)) < 0)
        return r;
    if (c.split < 0)
        return vs_err_set(e, -EBADMSG, "the migration stream has no RAM block list");
    if (!c.ram_open) {   /* no page at all: the block reads as zeros (or the parent's) */
        const struct ms_block *b = &ms_blocks(p, &(unsigned){ 0 })[c.split];
        if ((r = open_ram(&c, b, e)) < 0)
            return r;
    }
    if ((r = arc_writer_end(w, e)) < 0 || (r = store_device(&c, e)) < 0)
        return r;
    res->paged = true;
    res->stream_bytes = total;
    return 0;
opaque:
    /* The splitter wrote nothing to the archive yet: store what was read and the rest as an opaque stream. */
    res->paged = false;
    return store_opaque(&c, pre, pre_len, fd, e);
}
