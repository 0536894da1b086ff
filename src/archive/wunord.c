/* archive: unordered streams — guest RAM as QEMU's migration stream delivers it: 4 KiB units in any order, some
 * more than once (last write wins). Units are gathered per block in partial buffers; a block goes to the worker
 * pool as soon as all its units arrived, so with background-snapshot (every page exactly once, mostly in
 * ascending order) each block is compressed and stored once and few partial blocks are live at a time. The
 * index is kept in memory (one entry per block) and written in block order at the end.
 *
 * Bounded memory: at most max_parts partial blocks. Past that the oldest partial block is stored with its
 * missing units taken from its previous version (what was stored for it earlier in this stream, else the base's
 * block, else zeros); when the rest of its units arrive later it is completed the same way and stored again.
 * The bytes stored first are then referenced by no entry (FORMAT.md allows that); nothing is ever wrong. */
#include "archive/writer_priv.h"

#include <errno.h>
#include <string.h>

#define UNIT ARC_MIN_BLOCK_SIZE
#define DEFAULT_HOLD (64u << 20)

void arc__unord_init(struct arc_writer *w, size_t hold_bytes)
{
    struct wstream *st = &w->st;
    struct wunord *u = vs_xcalloc(1, sizeof *u);
    u->nblocks = VS_DIV_ROUND_UP(st->declared, w->bs);
    u->ents = vs_xcalloc(u->nblocks, sizeof *u->ents);
    u->state = vs_xcalloc(u->nblocks, 1);
    u->max_parts = VS_MAX((hold_bytes ? hold_bytes : DEFAULT_HOLD) / w->bs, (size_t)2);
    u->tab_cap = 64;
    while (u->tab_cap < 2 * u->max_parts)
        u->tab_cap *= 2;
    u->tab = vs_xcalloc(u->tab_cap, sizeof *u->tab);
    u->scratch = vs_xmalloc(w->bs);
    u->sscratch = vs_xmalloc(arc_stored_bound(w->bs) + CR_SEAL_OVERHEAD);
    st->u = u;
}

void arc__unord_free(struct wunord *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->tab_cap; i++)
        for (struct wpart *p = u->tab[i], *n; p; p = n) {
            n = p->next;
            free(p->buf);
            free(p);
        }
    free(u->tab);
    free(u->ents);
    free(u->state);
    free(u->scratch);
    free(u->sscratch);
    free(u);
}

static uint32_t blen(const struct arc_writer *w, uint64_t block)
{
    return (uint32_t)VS_MIN((uint64_t)w->bs, w->st.declared - block * w->bs);
}

static struct wpart **slot_of(struct wunord *u, uint64_t block)
{
    struct wpart **pp = &u->tab[(block * 0x9e3779b97f4a7c15ull >> 32) & (u->tab_cap - 1)];
    while (*pp && (*pp)->block != block)
        pp = &(*pp)->next;
    return pp;
}

/* What the block holds before this partial version: stored earlier in this stream, the base's, or zeros. */
static int previous(struct arc_writer *w, uint64_t block, uint8_t *out, vs_err *e)
{
    struct wunord *u = w->st.u;
    uint32_t len = blen(w, block);
    int r;
    if ((u->state[block] & UB_INFLIGHT) && (r = arc__pool_drain(w, e)) < 0)
        return arc__fail(w, r, e);
    const struct arc_entry *en = &u->ents[block];
    switch (u->state[block]) {
    case UB_ZERO:
        memset(out, 0, len);
        return 0;
    case UB_DATA:
    case UB_DEDUP: {
        const uint8_t *z;
        uint32_t zl;
        int rb = arc__readback(w, en, u->sscratch, &z, &zl, e);
        if (rb < 0 && rb != -EBADMSG)
            return arc__fail(w, vs_err_prefix(e, "reading back block %" PRIu64 " of '%s'", block, w->st.rec.name), e);
        if (rb < 0 || arc_decompress(en->codec, NULL, z, zl, out, len) < 0 ||
            arc_hash64(out, len) != en->csum)
            return arc__fail(w, vs_err_set(e, EIO, "%s: block %" PRIu64 " of '%s' changed on disk while writing",
                                           w->path, block, w->st.rec.name), e);
        return 0;
    }
    default:   /* never stored, or a parent reference: the base's bytes (zeros without a base) */
        return arc__base_read(w, out, block * w->bs, len, e);
    }
}

/* Hand a block to the pool (data copied into a slot). */
static int submit(struct arc_writer *w, uint64_t block, const uint8_t *data, vs_err *e)
{
    int r;
    if ((w->st.u->state[block] & UB_INFLIGHT) && (r = arc__pool_drain(w, e)) < 0)   /* one version in flight */
        return arc__fail(w, r, e);
    struct wslot *s = arc__slot_acquire(w, e);
    if (!s)
        return arc__fail(w, e ? e->code : -EIO, e);
    s->len = blen(w, block);
    s->block = block;
    memcpy(s->in, data, s->len);
    w->st.u->state[block] |= UB_INFLIGHT;   /* keeps the committed type until the new version commits */
    r = arc__slot_submit(w, e);
    return r < 0 ? arc__fail(w, r, e) : 0;
}

/* Store a partial block, its missing units from the previous version, and drop it. */
static int flush_part(struct arc_writer *w, struct wpart **pp, vs_err *e)
{
    struct wunord *u = w->st.u;
    struct wpart *p = *pp;
    int r = 0;
    *pp = p->next;
    u->nparts--;
    if (p->have < p->need) {
        if ((r = previous(w, p->block, u->scratch, e)) == 0)
            for (uint32_t i = 0; i < p->need; i++)
                if (!(p->bits[i / 64] >> (i % 64) & 1)) {
                    uint32_t o = i * UNIT;
                    memcpy(p->buf + o, u->scratch + o, VS_MIN(UNIT, blen(w, p->block) - o));
                }
    }
    if (r == 0) {
        if (u->state[p->block] != UB_NONE)
            u->rewrites++;
        r = submit(w, p->block, p->buf, e);
    }
    free(p->buf);
    free(p);
    return r;
}

static int evict_oldest(struct arc_writer *w, vs_err *e)
{
    struct wunord *u = w->st.u;
    struct wpart **best = NULL;
    for (size_t i = 0; i < u->tab_cap; i++)
        for (struct wpart **pp = &u->tab[i]; *pp; pp = &(*pp)->next)
            if (!best || (*pp)->seq < (*best)->seq)
                best = pp;
    return best ? flush_part(w, best, e) : 0;
}

int arc__unord_put(struct arc_writer *w, const void *buf, uint64_t len, uint64_t off, vs_err *e)
{
    struct wstream *st = &w->st;
    struct wunord *u = st->u;
    if (off % UNIT || (len % UNIT && off + len != st->declared))
        return vs_err_set(e, EINVAL, "%s: stream '%s': write at %" PRIu64 "+%" PRIu64 " is not in whole %u-byte units",
                          w->path, st->rec.name, off, len, UNIT);
    const uint8_t *src = buf;
    while (len) {
        uint64_t block = off / w->bs;
        uint32_t boff = (uint32_t)(off % w->bs), bl = blen(w, block);
        uint32_t n = (uint32_t)VS_MIN(len, (uint64_t)bl - boff);
        struct wpart **pp = slot_of(u, block);
        int r;
        if (!*pp) {
            if (u->nparts >= u->max_parts) {
                if ((r = evict_oldest(w, e)) < 0)
                    return r;
                pp = slot_of(u, block);
            }
            struct wpart *p = vs_xcalloc(1, sizeof *p);
            p->block = block;
            p->seq = u->seq++;
            p->need = VS_DIV_ROUND_UP(bl, UNIT);
            p->buf = vs_xmalloc(w->bs);
            *pp = p;
            u->nparts++;
        }
        struct wpart *p = *pp;
        if (src)
            memcpy(p->buf + boff, src, n);
        else
            memset(p->buf + boff, 0, n);
        for (uint32_t i = boff / UNIT; i < VS_DIV_ROUND_UP(boff + n, UNIT); i++)
            if (!(p->bits[i / 64] >> (i % 64) & 1)) {
                p->bits[i / 64] |= 1ull << (i % 64);
                p->have++;
            }
        if (p->have == p->need && (r = flush_part(w, pp, e)) < 0)
            return r;
        off += n;
        len -= n;
        if (src)
            src += n;
        st->pos = VS_MAX(st->pos, off);
    }
    return 0;
}

void arc__unord_committed(struct arc_writer *w, const struct wslot *s, const struct arc_entry *en, int ub)
{
    struct wunord *u = w->st.u;
    struct wrec *rec = &w->st.rec;
    switch (u->state[s->block] & ~UB_INFLIGHT) {   /* a rewritten block: its earlier version no longer counts */
    case UB_ZERO: rec->zero_blocks--; break;
    case UB_PARENT: rec->parent_blocks--; break;
    case UB_DEDUP: rec->dedup_blocks--; break;
    case UB_DATA: rec->data_blocks--; break;   /* its stored bytes stay in the file, counted in `stored` */
    default: break;
    }
    u->ents[s->block] = *en;
    u->state[s->block] = (uint8_t)ub;
}

int arc__unord_end(struct arc_writer *w, vs_err *e)
{
    struct wstream *st = &w->st;
    struct wunord *u = st->u;
    int r;
    for (size_t i = 0; i < u->tab_cap; i++)
        while (u->tab[i])
            if ((r = flush_part(w, &u->tab[i], e)) < 0)
                return r;
    if ((r = arc__pool_drain(w, e)) < 0)
        return arc__fail(w, r, e);
    /* Blocks never written keep the base's content: a reference (thin, same geometry), else a copy or zeros. */
    struct arc_stream_info si = { 0 };
    if (st->base_stream >= 0)
        arc_stream_get(w->base, (unsigned)st->base_stream, &si);
    for (uint64_t b = 0; b < u->nblocks; b++) {
        if (u->state[b] != UB_NONE)
            continue;
        if (st->base_stream < 0 || b * w->bs >= si.size) {
            u->state[b] = UB_ZERO;
            st->rec.zero_blocks++;
        } else if (w->thin && si.block_size == w->bs && (b + 1) * w->bs <= si.size && blen(w, b) == w->bs) {
            u->ents[b] = (struct arc_entry){ .type = ARC_BLOCK_PARENT };
            u->state[b] = UB_PARENT;
            st->rec.parent_blocks++;
        } else if ((r = arc__base_read(w, u->scratch, b * w->bs, blen(w, b), e)) < 0 ||
                   (r = submit(w, b, u->scratch, e)) < 0) {
            return r;
        }
    }
    if ((r = arc__pool_drain(w, e)) < 0)
        return arc__fail(w, r, e);
    for (uint64_t b = 0; b < u->nblocks; b++)
        if ((r = arc__add_entries(w, &u->ents[b], 1, e)) < 0)
            return r;
    st->next_block = u->nblocks;
    st->pos = st->declared;
    return 0;
}
