/* migstream: writing page records, and reassembling a device stream with its pages into a stream QEMU loads. */
#include <errno.h>
#include <string.h>

#include "migstream/migstream.h"
#include "migstream/wire.h"

void ms_emitter_init(struct ms_emitter *m, uint32_t ram_section_id,
                     int (*write)(void *opaque, const void *buf, size_t len, vs_err *e), void *opaque)
{
    *m = (struct ms_emitter){ .write = write, .opaque = opaque, .section_id = ram_section_id };
}

int ms_emit_page(struct ms_emitter *m, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e)
{
    uint8_t h[5 + 8 + 1 + 255 + 1];
    size_t hl = 0;
    if (off % MS_PAGE_SIZE || off >= b->size)
        return vs_err_set(e, EINVAL, "page offset 0x%" PRIx64 " invalid for RAM block '%s'", off, b->name);
    if (!m->open) {
        h[0] = MS_SEC_PART;
        vs_put_be32(h + 1, m->section_id);
        hl = 5;
        m->open = true;
        m->in_section = 0;
    }
    bool cont = m->last == b;
    vs_put_be64(h + hl, off | (data ? MS_RAM_PAGE : MS_RAM_ZERO) | (cont ? MS_RAM_CONTINUE : 0));
    hl += 8;
    if (!cont) {
        size_t nl = strlen(b->name);
        h[hl++] = (uint8_t)nl;
        memcpy(h + hl, b->name, nl);
        hl += nl;
        m->last = b;
    }
    if (!data)
        h[hl++] = 0;
    int r = m->write(m->opaque, h, hl, e);
    if (r < 0 || !data)
        return r;
    if ((r = m->write(m->opaque, data, MS_PAGE_SIZE, e)) < 0)
        return r;
    /* Sections of bounded length, like QEMU's iterations: nothing requires it, it keeps loads incremental. */
    if (++m->in_section >= 16384)
        return ms_emit_flush(m, e);
    return 0;
}

int ms_emit_flush(struct ms_emitter *m, vs_err *e)
{
    if (!m->open)
        return 0;
    uint8_t t[8 + 5];
    vs_put_be64(t, MS_RAM_EOS);
    t[8] = MS_SEC_FOOTER;
    vs_put_be32(t + 9, m->section_id);
    m->open = false;
    return m->write(m->opaque, t, sizeof t, e);
}

/* ---- reassembly ---------------------------------------------------------------------------------------- */
/* Output goes out in large writes: a page is two records (header, data), and a write per record into QEMU's pipe
 * cost a wakeup of its reader each. Page runs are read in chunks, so a reader can fetch whole archive blocks. */
#define RA_OUT_CAP (1u << 20)
#define RA_RUN_MAX (1u << 20)

struct reasm {
    int out_fd;
    const struct ms_page_reader *r;
    struct ms_parser *p;
    struct ms_emitter em;
    uint8_t *page;          /* fill(): one page; fill_run(): RA_RUN_MAX bytes */
    uint8_t *out;           /* RA_OUT_CAP bytes pending for out_fd */
    size_t out_len;
};

static int ra_flush(struct reasm *ra, vs_err *e)
{
    int r = vs_write_full(ra->out_fd, ra->out, ra->out_len);
    ra->out_len = 0;
    return r < 0 ? vs_err_sys(e, -r, "writing the reassembled stream") : 0;
}

static int ra_write(void *opaque, const void *buf, size_t len, vs_err *e)
{
    struct reasm *ra = opaque;
    if (ra->out_len + len > RA_OUT_CAP) {
        int r = ra_flush(ra, e);
        if (r < 0)
            return r;
        if (len >= RA_OUT_CAP) {   /* a large device chunk: no point in copying it */
            r = vs_write_full(ra->out_fd, buf, len);
            return r < 0 ? vs_err_sys(e, -r, "writing the reassembled stream") : 0;
        }
    }
    memcpy(ra->out + ra->out_len, buf, len);
    ra->out_len += len;
    return 0;
}

/* The device stream is passed on whole: its page records stay where they are (see ms_reassemble). */
static int ra_blocks(void *opaque, struct ms_block *b, unsigned n, vs_err *e)
{
    (void)opaque; (void)e;
    for (unsigned i = 0; i < n; i++)
        b[i].split = false;
    return 0;
}

static bool ra_wants(const struct reasm *ra, const struct ms_block *b)
{
    return !ra->r->want || ra->r->want(ra->r->opaque, b);
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (size_t i = 0; i < MS_PAGE_SIZE / 8; i += 8)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    return true;
}

/* Pages of block b from off (non-zero ones emitted) through fill_run: returns bytes consumed (> 0). */
static int64_t ra_run(struct reasm *ra, const struct ms_block *b, uint64_t off, vs_err *e)
{
    size_t want = (size_t)VS_MIN((uint64_t)RA_RUN_MAX, b->size - off), got = 0;
    bool zero = false;
    int r = ra->r->fill_run(ra->r->opaque, b, off, want, ra->page, &got, &zero, e);
    if (r < 0)
        return r;
    if (got == 0 || got > want || got % MS_PAGE_SIZE)
        return vs_err_set(e, EIO, "page reader returned %zu bytes for a run of %zu", got, want);
    for (size_t k = 0; !zero && k < got; k += MS_PAGE_SIZE)
        if (!page_is_zero(ra->page + k) && (r = ms_emit_page(&ra->em, b, off + k, ra->page + k, e)) < 0)
            return r;
    return (int64_t)got;
}

static int ra_setup_done(void *opaque, vs_err *e)
{
    struct reasm *ra = opaque;
    unsigned n;
    const struct ms_block *b = ms_blocks(ra->p, &n);
    ms_emitter_init(&ra->em, ms_ram_section_id(ra->p), ra_write, ra);
    for (unsigned i = 0; i < n; i++) {
        if (!ra_wants(ra, &b[i]))
            continue;
        for (uint64_t off = 0; off < b[i].size;) {
            uint64_t at = off;
            int r = 0;
            if (ra->r->fill_run) {
                int64_t got = ra_run(ra, &b[i], off, e);
                r = got < 0 ? (int)got : 0;
                off += got > 0 ? (uint64_t)got : 0;
            } else {
                bool zero = false;
                r = ra->r->fill(ra->r->opaque, &b[i], off, ra->page, &zero, e);
                if (r == 0 && !zero)   /* zero pages are skipped: the destination's fresh RAM is zero */
                    r = ms_emit_page(&ra->em, &b[i], off, ra->page, e);
                off += MS_PAGE_SIZE;
            }
            if (r < 0)
                return vs_err_prefix(e, "RAM block '%s' page 0x%" PRIx64, b[i].name, at);
        }
    }
    return ms_emit_flush(&ra->em, e);
}

int ms_reassemble_from(int (*push_device)(void *opaque, struct ms_parser *p, vs_err *e), void *opaque, int out_fd,
                       const struct ms_page_reader *r, struct ms_summary *sum, vs_err *e)
{
    struct reasm ra = { .out_fd = out_fd, .r = r };
    VS_AUTOFREE uint8_t *page = vs_xmalloc(r->fill_run ? RA_RUN_MAX : MS_PAGE_SIZE);
    VS_AUTOFREE uint8_t *out = vs_xmalloc(RA_OUT_CAP);
    ra.page = page;
    ra.out = out;
    struct ms_ops ops = { .blocks = ra_blocks, .device = ra_write, .ram_setup_done = ra_setup_done, .opaque = &ra };
    struct ms_opts o = { .keep_unknown_rest = true };
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    int rc = ms_parser_new(&ops, &o, &p, e);
    if (rc < 0)
        return rc;
    ra.p = p;
    if ((rc = push_device(opaque, p, e)) < 0)
        return vs_err_prefix(e, "device stream");
    if ((rc = ms_finish(p, sum, e)) < 0)
        return vs_err_prefix(e, "device stream");
    return ra_flush(&ra, e);
}

static int push_fd(void *opaque, struct ms_parser *p, vs_err *e) { return ms_push_fd(p, *(int *)opaque, e); }

int ms_reassemble(int dev_fd, int out_fd, const struct ms_page_reader *r, struct ms_summary *sum, vs_err *e)
{
    return ms_reassemble_from(push_fd, &dev_fd, out_fd, r, sum, e);
}
