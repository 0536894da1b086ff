/* archive: the writer's worker pool (compression + hashing off the caller's thread, results committed in
 * submission order through a fixed ring of slots, so memory is bounded whatever the input size) and the
 * content-hash dedup table. */
#include "archive/writer_priv.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zstd.h>

static void process(struct arc_writer *w, struct wslot *s, void *zctx)
{
    s->zero = arc_is_zero(s->in, s->len);
    if (s->zero)
        return;
    s->csum = arc_hash64(s->in, s->len);
    s->h = XXH3_128bits(s->in, s->len);
    if (w->debug & ARC_DEBUG_COLLIDE_HASH)
        s->h = (XXH128_hash_t){ 42, 42 };
    s->z_len = (uint32_t)arc_compress(w->codec, w->level, zctx, s->in, s->len, s->z, arc_stored_bound(w->bs),
                                      &s->codec);
    s->out_len = s->z_len;
    if (w->enc) {   /* sealed here, on the workers: encryption runs in parallel, off the caller's thread */
        cr_seal(&w->sealer, w->block_ad, w->block_ad_len, s->z, s->z_len, s->out);
        s->out_len += CR_SEAL_OVERHEAD;
    }
    s->scsum = arc_hash64(s->out, s->out_len);
}

/* Linux: a thread id names one thread for setpriority. Best effort: a worker that cannot lower its priority still
 * works. */
static void lower_priority(int by)
{
    id_t self = (id_t)gettid();
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, self);
    if (errno == 0)
        (void)setpriority(PRIO_PROCESS, self, VS_MIN(cur + by, 19));
}

static void *worker(void *arg)
{
    struct arc_writer *w = arg;
    if (w->worker_nice > 0)
        lower_priority(w->worker_nice);
    void *zctx = w->codec == ARC_CODEC_ZSTD ? ZSTD_createCCtx() : NULL;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && w->work_next == w->submitted)
            pthread_cond_wait(&w->cv_work, &w->mu);
        if (w->quit)
            break;
        struct wslot *s = &w->slots[w->work_next++ % w->nslots];
        pthread_mutex_unlock(&w->mu);
        process(w, s, zctx);
        pthread_mutex_lock(&w->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&w->cv_done);
    }
    pthread_mutex_unlock(&w->mu);
    ZSTD_freeCCtx(zctx);
    return NULL;
}

void arc__pool_start(struct arc_writer *w, unsigned threads)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_done, NULL);
    w->nworkers = threads > 1 ? threads : 0;
    w->nslots = w->nworkers ? 2 * w->nworkers + 2 : 1;
    w->slots = vs_xcalloc(w->nslots, sizeof *w->slots);
    size_t ob = arc_stored_bound(w->bs);
    for (unsigned i = 0; i < w->nslots; i++) {
        w->slots[i].in = vs_xmalloc(w->bs);
        w->slots[i].out = vs_xmalloc(ob + (w->enc ? CR_SEAL_OVERHEAD : 0));
        w->slots[i].z = w->enc ? vs_xmalloc(ob) : w->slots[i].out;
    }
    if (w->codec == ARC_CODEC_ZSTD)
        w->zctx = ZSTD_createCCtx();
    w->workers = vs_xcalloc(w->nworkers ? w->nworkers : 1, sizeof *w->workers);
    for (unsigned i = 0; i < w->nworkers; i++)
        if (pthread_create(&w->workers[i], NULL, worker, w)) {
            w->nworkers = i;   /* fewer workers still work; none means inline */
            break;
        }
    if (!w->nworkers)
        w->nslots = 1;
}

void arc__pool_stop(struct arc_writer *w)
{
    if (!w->slots)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->nworkers; i++)
        pthread_join(w->workers[i], NULL);
    for (unsigned i = 0; i < w->nslots; i++) {
        free(w->slots[i].in);
        if (w->slots[i].z != w->slots[i].out)
            free(w->slots[i].z);
        free(w->slots[i].out);
    }
    free(w->slots);
    free(w->workers);
    w->slots = NULL;
    ZSTD_freeCCtx(w->zctx);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_done);
}

static int retire_one(struct arc_writer *w, vs_err *e)
{
    struct wslot *s = &w->slots[w->retired % w->nslots];
    pthread_mutex_lock(&w->mu);
    while (s->state != SLOT_DONE)
        pthread_cond_wait(&w->cv_done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    int r = arc__commit(w, s, e);
    s->state = SLOT_FREE;
    w->retired++;
    return r;
}

struct wslot *arc__slot_acquire(struct arc_writer *w, vs_err *e)
{
    while (w->submitted - w->retired >= w->nslots)
        if (retire_one(w, e) < 0)
            return NULL;
    return &w->slots[w->submitted % w->nslots];
}

int arc__slot_submit(struct arc_writer *w, vs_err *e)
{
    struct wslot *s = &w->slots[w->submitted % w->nslots];
    s->state = SLOT_PENDING;
    if (!w->nworkers) {
        process(w, s, w->zctx);
        s->state = SLOT_DONE;
        w->submitted++;
        return retire_one(w, e);
    }
    pthread_mutex_lock(&w->mu);
    w->submitted++;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int arc__pool_drain(struct arc_writer *w, vs_err *e)
{
    while (w->retired < w->submitted) {
        int r = retire_one(w, e);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- dedup ---------------------------------------------------------------------------------------------- */

static size_t dd_slot(const struct arc_writer *w, XXH128_hash_t h) { return (size_t)(h.low64 & (w->dd_cap - 1)); }

/* Equal content only if the stored bytes read back from the file (opened, when sealed) are equal to this block's
 * compressed bytes with the same codec (decompression is a function), so a hash collision can never merge
 * different blocks. Sealed blocks differ in their random nonces, never in what they open to. */
bool arc__dedup_find(struct arc_writer *w, const struct wslot *s, struct arc_entry *en, vs_err *e)
{
    (void)e;
    if (!w->dd_cap)
        return false;
    for (size_t i = dd_slot(w, s->h), n = 0; w->dd[i].used && n < w->dd_cap; i = (i + 1) & (w->dd_cap - 1), n++) {
        struct dd_ent *d = &w->dd[i];
        if (d->h.low64 != s->h.low64 || d->h.high64 != s->h.high64 || d->len != s->len ||
            d->en.stored_len != s->out_len || d->en.codec != s->codec)
            continue;
        const uint8_t *z;
        uint32_t zl;
        vs_err ignored;   /* a sink that cannot read back (already uploaded): not a candidate */
        if (arc__readback(w, &d->en, w->cmpbuf, &z, &zl, &ignored) < 0 || zl != s->z_len)
            continue;
        if (!memcmp(z, s->z, zl)) {
            *en = d->en;
            return true;
        }
    }
    return false;
}

void arc__dedup_add(struct arc_writer *w, const struct wslot *s, const struct arc_entry *en)
{
    if (w->dd_n >= w->dd_max)
        return;   /* bounded memory: later blocks are simply not dedup candidates */
    if ((w->dd_n + 1) * 2 > w->dd_cap) {
        size_t old_cap = w->dd_cap;
        struct dd_ent *old = w->dd;
        w->dd_cap = old_cap ? old_cap * 2 : 1024;
        w->dd = vs_xcalloc(w->dd_cap, sizeof *w->dd);
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].used) {
                size_t j = dd_slot(w, old[i].h);
                while (w->dd[j].used)
                    j = (j + 1) & (w->dd_cap - 1);
                w->dd[j] = old[i];
            }
        free(old);
    }
    size_t j = dd_slot(w, s->h);
    while (w->dd[j].used)
        j = (j + 1) & (w->dd_cap - 1);
    w->dd[j] = (struct dd_ent){ .h = s->h, .en = *en, .len = s->len, .used = true };
    w->dd_n++;
}

void arc__dedup_free(struct arc_writer *w)
{
    free(w->dd);
    w->dd = NULL;
    w->dd_cap = w->dd_n = 0;
}
