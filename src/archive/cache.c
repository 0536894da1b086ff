/* archive: the reader's decompressed block cache and zstd context pool. Entries are copied in and out under
 * a->lock: callers never hold pointers into the cache, so eviction needs no reference counts. */
#include "archive/reader_priv.h"

#include <string.h>
#include <zstd.h>

void *arc__alloc(struct arc *a, size_t n)
{
    atomic_fetch_add(&a->mem, n);
    return vs_xmalloc(n);
}

void arc__free(struct arc *a, void *p, size_t n)
{
    if (!p)
        return;
    atomic_fetch_sub(&a->mem, n);
    free(p);
}

void arc__cache_init(struct arc *a, size_t bytes)
{
    size_t bs = a->info.block_size ? a->info.block_size : ARC_DEFAULT_BLOCK_SIZE;
    a->nblocks = (unsigned)VS_MAX((size_t)4, VS_MIN(bytes / bs, (size_t)65536));
    a->blocks = arc__alloc(a, a->nblocks * sizeof *a->blocks);
    memset(a->blocks, 0, a->nblocks * sizeof *a->blocks);
}

void arc__cache_free(struct arc *a)
{
    for (unsigned i = 0; i < a->nblocks; i++)
        arc__free(a, a->blocks[i].buf, a->blocks[i].len);
    arc__free(a, a->blocks, a->nblocks * sizeof *a->blocks);
    a->blocks = NULL;
    for (unsigned i = 0; i < a->ndctx; i++)
        ZSTD_freeDCtx(a->dctx[i]);
    a->ndctx = 0;
}

/* The whole entry is the key: a hostile index may point entries of another codec, length or checksum at the same
 * stored bytes, and each must get what its own entry decodes to (or its own checksum error), never another's. */
static bool same_key(const struct arc_entry *x, const struct arc_entry *y)
{
    return x->offset == y->offset && x->stored_len == y->stored_len && x->codec == y->codec && x->csum == y->csum &&
           x->scsum == y->scsum;
}

bool arc__cache_get(struct arc *a, const struct arc_entry *en, void *dst, size_t skip, size_t n)
{
    bool hit = false;
    pthread_mutex_lock(&a->lock);
    for (unsigned i = 0; i < a->nblocks; i++) {
        struct arc_block_slot *b = &a->blocks[i];
        if (b->buf && same_key(&b->key, en) && skip + n <= b->len) {
            memcpy(dst, b->buf + skip, n);
            b->tick = ++a->tick;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return hit;
}

void arc__cache_put(struct arc *a, const struct arc_entry *en, const void *src, uint32_t len)
{
    pthread_mutex_lock(&a->lock);
    struct arc_block_slot *victim = &a->blocks[0];
    for (unsigned i = 0; i < a->nblocks; i++) {
        struct arc_block_slot *b = &a->blocks[i];
        if (b->buf && same_key(&b->key, en) && b->len == len) {   /* another thread got there first */
            pthread_mutex_unlock(&a->lock);
            return;
        }
        if (b->tick < victim->tick)
            victim = b;
    }
    if (victim->len != len) {
        arc__free(a, victim->buf, victim->len);
        victim->buf = arc__alloc(a, len);
        victim->len = len;
    }
    memcpy(victim->buf, src, len);
    victim->key = *en;
    victim->tick = ++a->tick;
    pthread_mutex_unlock(&a->lock);
}

void *arc__dctx_get(struct arc *a)
{
    void *d = NULL;
    pthread_mutex_lock(&a->lock);
    if (a->ndctx)
        d = a->dctx[--a->ndctx];
    pthread_mutex_unlock(&a->lock);
    return d ? d : ZSTD_createDCtx();
}

void arc__dctx_put(struct arc *a, void *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&a->lock);
    if (a->ndctx < ARC_DCTX_POOL) {
        a->dctx[a->ndctx++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&a->lock);
    ZSTD_freeDCtx(d);
}
