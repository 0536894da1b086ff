/* archive: the streaming writer. Blocks are assembled in pool slots, compressed and hashed by workers, then
 * committed in order: zero blocks and blocks equal to the base become index entries only, identical blocks are
 * stored once, the rest is appended to a temp file beside the target. finish() writes the top-level tables,
 * the directory and the header, then fsync, rename, fsync of the directory. */
#include "archive/writer_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

int arc__fail(struct arc_writer *w, int r, vs_err *e)
{
    if (!w->err) {
        w->err = r;
        if (e)
            w->err_msg = *e;
    }
    return r;
}

static int check(struct arc_writer *w, vs_err *e)
{
    if (w->err) {
        if (e)
            *e = w->err_msg;
        return w->err;
    }
    if (!w->in_stream)
        return vs_err_set(e, EINVAL, "%s: no stream is open", w->path);
    return 0;
}

static int append(struct arc_writer *w, const void *buf, size_t len, vs_err *e)
{
    int r = w->sink->pwrite(w->sink, buf, len, w->fpos, e);
    if (r < 0)
        return arc__fail(w, r, e);
    w->fpos += len;
    return 0;
}

/* ---- sealing -------------------------------------------------------------------------------------------- */

int arc__readback(struct arc_writer *w, const struct arc_entry *en, uint8_t *buf, const uint8_t **z, uint32_t *z_len,
                  vs_err *e)
{
    int r = w->sink->pread(w->sink, buf, en->stored_len, en->offset, e);
    if (r < 0)
        return r;
    if (arc_hash64(buf, en->stored_len) != en->scsum)
        return -EBADMSG;
    *z = buf;
    *z_len = en->stored_len;
    if (w->enc) {
        if (cr_open_inplace(&w->sealer, w->block_ad, w->block_ad_len, buf, en->stored_len) < 0)
            return -EBADMSG;
        *z = buf + CR_SEAL_NONCE;
        *z_len -= CR_SEAL_OVERHEAD;
    }
    return 0;
}

uint8_t *arc__seal_meta(struct arc_writer *w, enum arc_seal_kind kind, uint64_t n, const void *buf, size_t len)
{
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, kind, w->uuid, (uint32_t)w->nrecs, n);   /* the stream's record comes next */
    uint8_t *out = vs_xmalloc(len + CR_SEAL_OVERHEAD);
    cr_seal(&w->sealer, ad, adl, buf, len, out);
    return out;
}

/* ---- index ---------------------------------------------------------------------------------------------- */

static int flush_page(struct arc_writer *w, vs_err *e)
{
    struct wstream *st = &w->st;
    if (!st->page_n)
        return 0;
    struct arc_top t = { 0 };
    if (st->page_zero) {
        t.type = ARC_PAGE_ZERO;
    } else if (st->page_parent) {
        t.type = ARC_PAGE_PARENT;
    } else {
        t.offset = w->fpos;
        t.length = st->page_n * ARC_PAGE_ENTRY;
        VS_AUTOFREE uint8_t *sealed = w->enc ? arc__seal_meta(w, ARC_SEAL_PAGE, st->ntops, st->page, t.length) : NULL;
        if (sealed)
            t.length += CR_SEAL_OVERHEAD;
        t.csum = arc_meta_hash(sealed ? sealed : st->page, t.length);
        int r = append(w, sealed ? sealed : st->page, t.length, e);
        if (r < 0)
            return r;
    }
    if (st->ntops == st->tops_cap) {
        st->tops_cap = st->tops_cap ? 2 * st->tops_cap : 64;
        st->tops = vs_xrealloc(st->tops, st->tops_cap * sizeof *st->tops);
    }
    st->tops[st->ntops++] = t;
    st->page_n = 0;
    st->page_zero = st->page_parent = true;
    return 0;
}

/* Add count entries equal to *en for the next blocks. Whole zero/parent pages cost no page at all. */
int arc__add_entries(struct arc_writer *w, const struct arc_entry *en, uint64_t count, vs_err *e)
{
    struct wstream *st = &w->st;
    uint32_t pe = st->rec.page_entries;
    while (count) {
        if (!st->page_n && count >= pe && en->type != ARC_BLOCK_DATA) {
            st->page_n = pe;
            st->page_zero = en->type == ARC_BLOCK_ZERO;
            st->page_parent = en->type == ARC_BLOCK_PARENT;
            int r = flush_page(w, e);
            if (r < 0)
                return r;
            count -= pe;
            continue;
        }
        arc_entry_encode(st->page + (size_t)st->page_n * ARC_PAGE_ENTRY, en);
        st->page_zero &= en->type == ARC_BLOCK_ZERO;
        st->page_parent &= en->type == ARC_BLOCK_PARENT;
        st->page_n++;
        count--;
        if (st->page_n == pe) {
            int r = flush_page(w, e);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* ---- block commit (in order, caller's thread) ---------------------------------------------------------- */

int arc__base_read(struct arc_writer *w, void *buf, uint64_t off, size_t len, vs_err *e)
{
    struct wstream *st = &w->st;
    memset(buf, 0, len);
    if (st->base_stream < 0)
        return 0;
    struct arc_stream_info si;
    arc_stream_get(w->base, (unsigned)st->base_stream, &si);
    if (off >= si.size)
        return 0;
    int r = arc_pread(w->base, (unsigned)st->base_stream, buf, VS_MIN((uint64_t)len, si.size - off), off, e);
    return r < 0 ? arc__fail(w, vs_err_prefix(e, "reading base archive"), e) : 0;
}

/* Same bytes as the base's block at this index? (checksum first, then a byte compare: never trust a hash) */
static int equals_base(struct arc_writer *w, const struct wslot *s, vs_err *e)
{
    struct wstream *st = &w->st;
    if (!w->thin || st->base_stream < 0 || arc__block_size(w->base, (unsigned)st->base_stream) != w->bs)
        return 0;
    struct arc_stream_info si;
    arc_stream_get(w->base, (unsigned)st->base_stream, &si);
    if (s->block >= si.blocks || VS_MIN((uint64_t)w->bs, si.size - s->block * w->bs) != s->len)
        return 0;
    struct arc_entry en;
    int r = arc__entry(w->base, (unsigned)st->base_stream, s->block, &en, e);
    if (r < 0)
        return arc__fail(w, vs_err_prefix(e, "reading base archive"), e);
    if (en.type == ARC_BLOCK_ZERO || (en.type == ARC_BLOCK_DATA && en.csum != s->csum))
        return 0;
    r = arc__base_read(w, w->cmpbuf, s->block * w->bs, s->len, e);
    if (r < 0)
        return r;
    return !memcmp(w->cmpbuf, s->in, s->len);
}

int arc__commit(struct arc_writer *w, struct wslot *s, vs_err *e)
{
    if (w->err)
        return check(w, e);
    struct wrec *rec = &w->st.rec;
    struct arc_entry en = { 0 };
    int r, ub = UB_DATA;
    if (s->zero) {
        rec->zero_blocks++;
        ub = UB_ZERO;
    } else if ((r = equals_base(w, s, e)) != 0) {
        if (r < 0)
            return r;
        en.type = ARC_BLOCK_PARENT;
        rec->parent_blocks++;
        ub = UB_PARENT;
    } else if (arc__dedup_find(w, s, &en, e)) {
        rec->dedup_blocks++;
        ub = UB_DEDUP;
    } else {
        en = (struct arc_entry){ .offset = w->fpos, .stored_len = s->out_len, .type = ARC_BLOCK_DATA,
                                 .codec = s->codec, .csum = s->csum, .scsum = s->scsum };
        r = append(w, s->out, s->out_len, e);
        if (r < 0)
            return r;
        rec->data_blocks++;
        rec->stored += s->out_len;
        arc__dedup_add(w, s, &en);
    }
    if (w->st.u) {   /* indexed at the end, in block order */
        arc__unord_committed(w, s, &en, ub);
        return 0;
    }
    return arc__add_entries(w, &en, 1, e);
}

/* ---- block assembly ------------------------------------------------------------------------------------- */

static uint32_t block_len(const struct wstream *st, uint64_t block, uint32_t bs)
{
    if (st->declared == ARC_SIZE_UNKNOWN)
        return bs;
    return (uint32_t)VS_MIN((uint64_t)bs, st->declared - block * bs);
}

static int start_block(struct arc_writer *w, uint64_t block, vs_err *e)
{
    struct wslot *s = arc__slot_acquire(w, e);
    if (!s)
        return arc__fail(w, e ? e->code : -EIO, e);
    w->st.cur = s->in;
    w->st.cur_block = block;
    w->st.cur_fill = 0;
    w->st.cur_active = true;
    return 0;
}

/* Complete the block being assembled up to len bytes (from the base) and hand it to the pool. */
static int submit_block(struct arc_writer *w, uint32_t len, vs_err *e)
{
    struct wstream *st = &w->st;
    if (st->cur_fill < len) {
        int r = arc__base_read(w, st->cur + st->cur_fill, st->cur_block * w->bs + st->cur_fill, len - st->cur_fill, e);
        if (r < 0)
            return r;
    }
    struct wslot *s = &w->slots[w->submitted % w->nslots];
    s->len = len;
    s->block = st->cur_block;
    st->cur_active = false;
    st->next_block = st->cur_block + 1;
    int r = arc__slot_submit(w, e);
    return r < 0 ? arc__fail(w, r, e) : 0;
}

/* Blocks [from, to) not written by the caller: zeros, or what the base holds there. */
static int fill_blocks(struct arc_writer *w, uint64_t from, uint64_t to, bool zero, vs_err *e)
{
    struct wstream *st = &w->st;
    if (from >= to)
        return 0;
    int r = arc__pool_drain(w, e);
    if (r < 0)
        return arc__fail(w, r, e);
    struct arc_stream_info si = { 0 };
    if (st->base_stream >= 0)
        arc_stream_get(w->base, (unsigned)st->base_stream, &si);
    uint64_t b = from;
    while (b < to) {
        uint64_t n = to - b;
        struct arc_entry en = { .type = ARC_BLOCK_ZERO };
        if (!zero && st->base_stream >= 0 && b * w->bs < si.size) {
            /* Whole base blocks of the same size may be referenced (thin); anything else is copied. */
            uint64_t full = si.size / w->bs;   /* base blocks that are complete */
            if (w->thin && si.block_size == w->bs && b < full) {
                en.type = ARC_BLOCK_PARENT;
                n = VS_MIN(n, full - b);
            } else {
                uint64_t run;
                unsigned fl;
                uint32_t len = block_len(st, b, w->bs);
                uint64_t blen = VS_MIN((uint64_t)len, si.size - b * w->bs);
                r = arc_block_status(w->base, (unsigned)st->base_stream, b * w->bs, blen, &run, &fl, e);
                if (r < 0)
                    return arc__fail(w, vs_err_prefix(e, "reading base archive"), e);
                if (!(fl == ARC_STATUS_ZERO && run == blen)) {
                    if ((r = start_block(w, b, e)) < 0 || (r = submit_block(w, len, e)) < 0)
                        return r;
                    b++;
                    continue;
                }
                n = 1;
            }
        } else if (!zero && st->base_stream >= 0) {
            n = to - b;   /* past the base's end: zeros */
        }
        if ((r = arc__pool_drain(w, e)) < 0)
            return arc__fail(w, r, e);
        if (en.type == ARC_BLOCK_PARENT)
            w->st.rec.parent_blocks += n;
        else
            w->st.rec.zero_blocks += n;
        if ((r = arc__add_entries(w, &en, n, e)) < 0)
            return r;
        b += n;
    }
    st->next_block = to;
    return 0;
}

/* Write (buf) or zero (buf == NULL) [off, off+len). */
static int put(struct arc_writer *w, const void *buf, uint64_t len, uint64_t off, vs_err *e)
{
    int r = check(w, e);
    if (r < 0)
        return r;
    struct wstream *st = &w->st;
    if (off < st->pos && !st->u)
        return vs_err_set(e, EINVAL, "%s: stream '%s': write at %" PRIu64 " before the current position %" PRIu64,
                          w->path, st->rec.name, off, st->pos);
    if (st->declared != ARC_SIZE_UNKNOWN && (off > st->declared || len > st->declared - off))
        return vs_err_set(e, EINVAL, "%s: stream '%s': write at %" PRIu64 "+%" PRIu64 " past its size %" PRIu64,
                          w->path, st->rec.name, off, len, st->declared);
    if (off + len > (UINT64_MAX >> 2))
        return vs_err_set(e, EFBIG, "%s: stream '%s' too large", w->path, st->rec.name);
    if (st->u)
        return arc__unord_put(w, buf, len, off, e);
    const uint8_t *src = buf;
    while (len) {
        uint64_t block = off / w->bs;
        uint32_t boff = (uint32_t)(off % w->bs);
        if (st->cur_active && block != st->cur_block && (r = submit_block(w, block_len(st, st->cur_block, w->bs), e)) < 0)
            return r;
        uint64_t n = VS_MIN(len, (uint64_t)w->bs - boff);
        if (!st->cur_active) {
            if ((r = fill_blocks(w, st->next_block, block, false, e)) < 0)
                return r;
            if (!buf && boff == 0 && n == block_len(st, block, w->bs)) {   /* whole zero blocks: no data */
                uint64_t nb = len / w->bs;
                if (st->declared != ARC_SIZE_UNKNOWN && off + len == st->declared && len % w->bs)
                    nb++;
                if ((r = fill_blocks(w, block, block + nb, true, e)) < 0)
                    return r;
                uint64_t adv = VS_MIN(len, nb * w->bs);
                off += adv;
                len -= adv;
                src = NULL;
                st->pos = off;
                continue;
            }
            if ((r = start_block(w, block, e)) < 0)
                return r;
        }
        if (boff > st->cur_fill &&
            (r = arc__base_read(w, st->cur + st->cur_fill, block * w->bs + st->cur_fill, boff - st->cur_fill, e)) < 0)
            return r;
        if (src)
            memcpy(st->cur + boff, src, n);
        else
            memset(st->cur + boff, 0, n);
        st->cur_fill = boff + (uint32_t)n;
        off += n;
        len -= n;
        if (src)
            src += n;
        st->pos = off;
        if (st->cur_fill == w->bs && (r = submit_block(w, w->bs, e)) < 0)
            return r;
    }
    return 0;
}

int arc_writer_pwrite(struct arc_writer *w, const void *buf, size_t len, uint64_t off, vs_err *e)
{
    return put(w, buf, len, off, e);
}

int arc_writer_write(struct arc_writer *w, const void *buf, size_t len, vs_err *e)
{
    return put(w, buf, len, w->st.pos, e);
}

int arc_writer_zero(struct arc_writer *w, uint64_t off, uint64_t len, vs_err *e)
{
    return put(w, NULL, len, off, e);
}

int arc_writer_stream_from_fd(struct arc_writer *w, int fd, uint64_t *copied, vs_err *e)
{
    size_t cap = 1u << 20;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(cap);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = vs_read_full(fd, buf, cap);
        if (n < 0)
            return vs_err_sys(e, (int)-n, "%s: reading the input of stream '%s'", w->path, w->st.rec.name);
        if (n == 0)
            break;
        int r = arc_writer_write(w, buf, (size_t)n, e);
        if (r < 0)
            return r;
        total += (uint64_t)n;
    }
    if (copied)
        *copied = total;
    return 0;
}

uint64_t arc_writer_position(const struct arc_writer *w) { return w->st.pos; }
const uint8_t *arc_writer_uuid(const struct arc_writer *w) { return w->uuid; }

/* ---- streams -------------------------------------------------------------------------------------------- */

int arc_writer_begin(struct arc_writer *w, enum arc_kind kind, const char *name, uint64_t size, vs_err *e)
{
    if (w->err)
        return check(w, e);
    if (w->in_stream)
        return vs_err_set(e, EBUSY, "%s: stream '%s' is still open", w->path, w->st.rec.name);
    size_t nl = name ? strlen(name) : 0;
    if (!nl || nl > 255 || !vs_text_ok(name, nl))
        return vs_err_set(e, EINVAL, "%s: stream names are 1..255 bytes of UTF-8 text without control characters",
                          w->path);
    for (size_t i = 0; i < w->nrecs; i++)
        if (!strcmp(w->recs[i].name, name))
            return vs_err_set(e, EEXIST, "%s: stream '%s' already exists", w->path, name);
    if (w->nrecs >= ARC_MAX_STREAMS)
        return vs_err_set(e, E2BIG, "%s: too many streams", w->path);
    if (kind == ARC_KIND_CONFIG && !w->adding)
        return vs_err_set(e, EINVAL, "%s: a config stream is written whole, with arc_writer_add", w->path);
    if (size != ARC_SIZE_UNKNOWN && size > (UINT64_MAX >> 2))
        return vs_err_set(e, EFBIG, "%s: stream '%s' too large", w->path, name);
    struct wstream *st = &w->st;
    uint8_t *page = st->page;
    struct arc_top *tops = st->tops;
    *st = (struct wstream){ .declared = size, .base_stream = -1, .page = page, .tops = tops, .page_zero = true,
                            .page_parent = true };
    st->rec.kind = (uint8_t)kind;
    st->rec.codec = (uint8_t)w->codec;
    memcpy(st->rec.name, name, nl + 1);
    st->rec.block_size = w->bs;
    st->rec.page_entries = ARC_DEFAULT_PAGE_ENTRIES;
    if (!st->page)
        st->page = vs_xmalloc((size_t)ARC_DEFAULT_PAGE_ENTRIES * ARC_PAGE_ENTRY);
    if (w->base)
        st->base_stream = arc_find_stream(w->base, ARC_KIND_OTHER, name);
    if (kind == ARC_KIND_METADATA)
        w->has_metadata = true;
    if (kind == ARC_KIND_MEMORY)
        w->holds_memory = true;
    w->in_stream = true;
    return 0;
}

int arc_writer_begin_unordered(struct arc_writer *w, enum arc_kind kind, const char *name, uint64_t size,
                               size_t hold_bytes, vs_err *e)
{
    if (size == ARC_SIZE_UNKNOWN || size == 0)
        return vs_err_set(e, EINVAL, "%s: unordered stream '%s' needs a known, non-zero size", w->path,
                          name ? name : "");
    int r = arc_writer_begin(w, kind, name, size, e);
    if (r < 0)
        return r;
    arc__unord_init(w, hold_bytes);
    return 0;
}

int arc_writer_end(struct arc_writer *w, vs_err *e)
{
    int r = check(w, e);
    if (r < 0)
        return r;
    struct wstream *st = &w->st;
    uint64_t size = st->declared == ARC_SIZE_UNKNOWN ? st->pos : st->declared;
    if (st->declared == ARC_SIZE_UNKNOWN)
        st->declared = size;   /* the last block is as long as what was written */
    uint64_t blocks = VS_DIV_ROUND_UP(size, w->bs);
    if (st->u) {
        if ((r = arc__unord_end(w, e)) < 0)
            return r;
        arc__unord_free(st->u);
        st->u = NULL;
    }
    if (st->cur_active && (r = submit_block(w, block_len(st, st->cur_block, w->bs), e)) < 0)
        return r;
    if ((r = fill_blocks(w, st->next_block, blocks, false, e)) < 0)
        return r;
    if ((r = arc__pool_drain(w, e)) < 0)
        return arc__fail(w, r, e);
    if ((r = flush_page(w, e)) < 0)
        return r;
    struct wrec *rec = &st->rec;
    rec->size = size;
    rec->top_count = (uint32_t)st->ntops;
    if (st->ntops != VS_DIV_ROUND_UP(blocks, rec->page_entries))
        VS_BUG("stream '%s': %zu index pages for %" PRIu64 " blocks", rec->name, st->ntops, blocks);
    size_t tl = st->ntops * ARC_TOP_ENTRY;
    VS_AUTOFREE uint8_t *raw = vs_xmalloc(tl ? tl : 1);
    for (size_t i = 0; i < st->ntops; i++)
        arc_top_encode(raw + i * ARC_TOP_ENTRY, &st->tops[i]);
    if (tl && w->enc) {
        uint8_t *sealed = arc__seal_meta(w, ARC_SEAL_TOP, 0, raw, tl);
        free(raw);
        raw = sealed;
        tl += CR_SEAL_OVERHEAD;
    }
    rec->top_offset = tl ? w->fpos : 0;
    rec->top_csum = arc_meta_hash(raw, tl);
    if ((r = append(w, raw, tl, e)) < 0)
        return r;
    w->recs = vs_xrealloc(w->recs, (w->nrecs + 1) * sizeof *w->recs);
    w->recs[w->nrecs++] = *rec;
    st->ntops = 0;
    w->in_stream = false;
    return 0;
}

int arc_writer_add(struct arc_writer *w, enum arc_kind kind, const char *name, const void *buf, size_t len,
                   vs_err *e)
{
    w->adding = true;
    int r = arc_writer_begin(w, kind, name, len, e);
    w->adding = false;
    if (r >= 0)
        r = arc_writer_write(w, buf, len, e);
    if (r >= 0)
        r = arc_writer_end(w, e);
    if (r >= 0 && kind == ARC_KIND_CONFIG)
        w->incompat |= arc__config_features(buf, len);
    return r;
}
