/* archive: reading through the block cache — the counting wrapper around a cached archive's source, fetches
 * (cache, else source; one fetch per offset at a time), read-ahead for sequential readers and the prefetch of a
 * whole archive chain, both on a small pool of workers started on first use. */
#include "archive/bcache_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wrap_src {
    struct arc_source s;
    struct arc_source *inner;
    struct arc_bcache *bc;        /* freed before the wrapper closes; no read comes after */
};

static int wrap_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct wrap_src *w = (struct wrap_src *)s;
    atomic_fetch_add(&w->bc->src_reads, 1);
    atomic_fetch_add(&w->bc->src_bytes, len);
    if (w->bc->log_fd >= 0) {
        char line[48];
        int n = snprintf(line, sizeof line, "%" PRIu64 " %zu\n", off, len);
        vs_write_full(w->bc->log_fd, line, (size_t)n);   /* O_APPEND: one write per line, lines stay whole */
    }
    if (w->bc->delay_us)
        nanosleep(&(struct timespec){ w->bc->delay_us / 1000000, w->bc->delay_us % 1000000 * 1000 }, NULL);
    return w->inner->pread(w->inner, buf, len, off, e);
}

static int wrap_check(struct arc_source *s, vs_err *e)
{
    struct wrap_src *w = (struct wrap_src *)s;
    return w->inner->check ? w->inner->check(w->inner, e) : 0;
}

static void wrap_close(struct arc_source *s)
{
    struct wrap_src *w = (struct wrap_src *)s;
    arc_source_close(w->inner);
    free(w);
}

int arc__bc_wrap(struct arc *a, const struct arc_open_opts *o, vs_err *e)
{
    struct arc_cache_conf env;
    const struct arc_cache_conf *c = o ? o->cache : NULL;
    if (!c) {
        int r = arc_cache_conf_env(&env, e);
        if (r < 0)
            return r;
        c = &env;
    }
    if (c->mode == ARC_CACHE_OFF || (c->mode == ARC_CACHE_AUTO && !a->src->remote))
        return 0;
    struct arc_bcache *bc = vs_xcalloc(1, sizeof *bc);
    bc->a = a;
    bc->pin_fd = bc->log_fd = bc->rootfd = bc->lock_fd = -1;
    pthread_mutex_init(&bc->lock, NULL);
    pthread_cond_init(&bc->cond, NULL);
    a->bc = bc;
    int r = bc_dir_open(bc, c, e);
    if (r < 0) {
        arc__bc_free(a);
        return r;
    }
#ifdef VS_TEST_FAULTS
    const char *log = getenv("VMSNAP_TEST_SOURCE_LOG");   /* tests count what a run read from its sources */
    if (log && *log)
        bc->log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    const char *delay = getenv("VMSNAP_TEST_SOURCE_DELAY_US");   /* a far source's round trip, simulated */
    if (delay && *delay)
        bc->delay_us = VS_MAX(0L, VS_MIN(strtol(delay, NULL, 10), 1000000L));
#endif
    struct wrap_src *w = vs_xcalloc(1, sizeof *w);
    w->inner = bc->inner = a->src;
    w->bc = bc;
    w->s = *a->src;   /* name, path, size, version and flags: borrowed from the inner source */
    w->s.pread = wrap_pread;
    w->s.check = wrap_check;
    w->s.close = wrap_close;
    w->s.opaque = NULL;
    a->src = &w->s;
    return 0;
}

void arc__bc_free(struct arc *a)
{
    struct arc_bcache *bc = a->bc;
    if (!bc)
        return;
    pthread_mutex_lock(&bc->lock);
    bc->stopping = true;
    pthread_cond_broadcast(&bc->cond);
    pthread_mutex_unlock(&bc->lock);
    for (unsigned i = 0; i < bc->nworkers; i++)
        pthread_join(bc->workers[i], NULL);
    if (bc->pin_fd >= 0)
        close(bc->pin_fd);
    if (bc->log_fd >= 0)
        close(bc->log_fd);
    if (bc->lock_fd >= 0)
        close(bc->lock_fd);
    if (bc->rootfd >= 0)
        close(bc->rootfd);
    free(bc->last);
    free(bc->ra_next);
    free(bc->root);
    free(bc->dir);
    pthread_cond_destroy(&bc->cond);
    pthread_mutex_destroy(&bc->lock);
    free(bc);
    a->bc = NULL;
}

/* ---- fetching --------------------------------------------------------------------------------------------- */

static int find_inflight(const struct arc_bcache *bc, uint64_t off)
{
    for (unsigned i = 0; i < bc->ninflight; i++)
        if (bc->inflight[i] == off)
            return (int)i;
    return -1;
}

static int fetch(struct arc *a, enum arc__bc_kind kind, uint64_t off, uint32_t len, uint64_t csum, void *buf,
                 bool demand, vs_err *e)
{
    struct arc_bcache *bc = a->bc;
    if (!bc)
        return a->src->pread(a->src, buf, len, off, e);
    struct arc__bc_key k = { .kind = (uint8_t)kind, .len = len, .offset = off, .csum = csum };
    memcpy(k.scope, bc->scope, sizeof k.scope);
    if (bc_get(bc, &k, buf)) {
        atomic_fetch_add(&bc->hits, 1);
        atomic_fetch_add(&bc->hit_bytes, len);
        return 0;
    }
    /* A read-ahead worker (or another reader) may be fetching these bytes: wait for it, not for a second copy. */
    pthread_mutex_lock(&bc->lock);
    bool waited = false;
    while (find_inflight(bc, off) >= 0) {
        pthread_cond_wait(&bc->cond, &bc->lock);
        waited = true;
    }
    bool track = bc->ninflight < BC_INFLIGHT;
    if (track)
        bc->inflight[bc->ninflight++] = off;
    pthread_mutex_unlock(&bc->lock);
    int r = 0;
    if (waited && bc_get(bc, &k, buf)) {
        atomic_fetch_add(&bc->hits, 1);
        atomic_fetch_add(&bc->hit_bytes, len);
    } else {
        if (demand)
            atomic_fetch_add(&bc->misses, 1);
        r = a->src->pread(a->src, buf, len, off, e);
        /* Only bytes that match the archive's checksum are kept; the caller reports the others. */
        if (r >= 0 && bc_payload_ok(&k, buf))
            bc_put(bc, &k, buf);
    }
    if (track) {
        pthread_mutex_lock(&bc->lock);
        int i = find_inflight(bc, off);
        bc->inflight[i] = bc->inflight[--bc->ninflight];
        pthread_cond_broadcast(&bc->cond);
        pthread_mutex_unlock(&bc->lock);
    }
    return r;
}

int arc__fetch(struct arc *a, enum arc__bc_kind kind, uint64_t off, uint32_t len, uint64_t csum, void *buf,
               vs_err *e)
{
    return fetch(a, kind, off, len, csum, buf, true, e);
}

/* ---- workers ---------------------------------------------------------------------------------------------- */

static void run_job(struct arc *a, struct bc_job j)
{
    struct arc_entry en;
    vs_err e = { 0 };
    if (arc__entry_checked(a, j.stream, j.block, &en, &e) < 0 || en.type != ARC_BLOCK_DATA)
        return;
    struct arc__bc_key k = { .kind = ARC_BC_BLOCK, .len = en.stored_len, .offset = en.offset, .csum = en.scsum };
    memcpy(k.scope, a->bc->scope, sizeof k.scope);
    if (bc_has(a->bc, &k))
        return;
    VS_AUTOFREE void *buf = vs_xmalloc(en.stored_len);
    fetch(a, ARC_BC_BLOCK, en.offset, en.stored_len, en.scsum, buf, false, &e);
}

static void *worker(void *opaque)
{
    struct arc_bcache *bc = opaque;
    pthread_mutex_lock(&bc->lock);
    for (;;) {
        while (!bc->qlen && !bc->stopping)
            pthread_cond_wait(&bc->cond, &bc->lock);
        if (bc->stopping)
            break;
        struct bc_job j = bc->queue[bc->qhead];
        bc->qhead = (bc->qhead + 1) % BC_QUEUE;
        bc->qlen--;
        bc->busy++;
        pthread_mutex_unlock(&bc->lock);
        run_job(bc->a, j);
        pthread_mutex_lock(&bc->lock);
        bc->busy--;
        pthread_cond_broadcast(&bc->cond);
    }
    pthread_mutex_unlock(&bc->lock);
    return NULL;
}

/* Under bc->lock: queue a job and make sure a worker is there to take it. */
static void push_locked(struct arc_bcache *bc, unsigned stream, uint64_t block)
{
    bc->queue[(bc->qhead + bc->qlen) % BC_QUEUE] = (struct bc_job){ stream, block };
    bc->qlen++;
    if (bc->nworkers < BC_WORKERS && bc->nworkers < bc->qlen + bc->busy && !vs_test_fault("bcache-workers")) {
        sigset_t all, old;   /* signals stay with the threads that wait for them (the boot host's signalfd) */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&bc->workers[bc->nworkers], NULL, worker, bc) == 0)
            bc->nworkers++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (!bc->nworkers)
        bc->qlen = 0;   /* no thread to run it: read-ahead is best effort, a prefetch fetches the rest itself */
    pthread_cond_broadcast(&bc->cond);
}

void arc__bc_readahead(struct arc *a, unsigned stream, uint64_t block)
{
    struct arc_bcache *bc = a->bc;
    if (!bc)
        return;
    pthread_mutex_lock(&bc->lock);
    if (!bc->last) {
        bc->last = vs_xmalloc(a->nstreams * sizeof *bc->last);
        bc->ra_next = vs_xcalloc(a->nstreams, sizeof *bc->ra_next);
        for (unsigned i = 0; i < a->nstreams; i++)
            bc->last[i] = UINT64_MAX;   /* so that block 0 counts as the start of a sequential read */
    }
    bool sequential = bc->last[stream] + 1 == block;
    bc->last[stream] = block;
    if (sequential && !bc->stopping) {
        uint64_t b = VS_MAX(block + 1, bc->ra_next[stream]);
        uint64_t end = VS_MIN(block + 1 + BC_READAHEAD, a->streams[stream].blocks);
        for (; b < end && bc->qlen < BC_QUEUE; b++)
            push_locked(bc, stream, b);
        bc->ra_next[stream] = VS_MAX(bc->ra_next[stream], b);
    }
    pthread_mutex_unlock(&bc->lock);
}

/* ---- prefetch, stats -------------------------------------------------------------------------------------- */

/* Bytes the cache would need for every stored block and index page of the chain's cached archives. */
static uint64_t chain_need(const struct arc *a)
{
    uint64_t need = 0;
    for (; a; a = a->parent)
        for (unsigned i = 0; a->bc && i < a->nstreams; i++)
            need += a->streams[i].stored +
                    (uint64_t)a->streams[i].top_count * a->streams[i].page_entries * ARC_PAGE_ENTRY;
    return need;
}

static int prefetch_one(struct arc *a, const atomic_bool *stop, vs_err *e)
{
    struct arc_bcache *bc = a->bc;
    int r = bc_pin(bc, e);
    if (r < 0)
        return r;
    for (unsigned si = 0; si < a->nstreams; si++) {
        const struct arc_stream *s = &a->streams[si];
        for (uint64_t b = 0; b < s->blocks; b++) {
            if (s->tops[b / s->page_entries].type != ARC_PAGE_STORED) {
                b += s->page_entries - 1 - b % s->page_entries;
                continue;
            }
            pthread_mutex_lock(&bc->lock);
            while (bc->qlen == BC_QUEUE && !bc->stopping)
                pthread_cond_wait(&bc->cond, &bc->lock);
            if (!bc->stopping)
                push_locked(bc, si, b);
            pthread_mutex_unlock(&bc->lock);
            if (stop && atomic_load(stop))
                return vs_err_set(e, ECANCELED, "%s: prefetch stopped", a->src->name);
        }
    }
    pthread_mutex_lock(&bc->lock);
    while ((bc->qlen || bc->busy) && !bc->stopping)
        pthread_cond_wait(&bc->cond, &bc->lock);
    pthread_mutex_unlock(&bc->lock);
    return 0;
}

/* What a whole block and page walk through the cache finds missing or damaged afterwards: none, or the error. */
static int check_complete(struct arc *a, const atomic_bool *stop, vs_err *e)
{
    for (unsigned si = 0; si < a->nstreams; si++) {
        const struct arc_stream *s = &a->streams[si];
        for (uint64_t b = 0; b < s->blocks; b++) {
            if (stop && atomic_load(stop))
                return vs_err_set(e, ECANCELED, "%s: prefetch stopped", a->src->name);
            struct arc_entry en;
            int r = arc__entry_checked(a, si, b, &en, e);   /* a page fetched again is in the cache from here on */
            if (r < 0)
                return r;
            if (en.type != ARC_BLOCK_DATA)
                continue;
            struct arc__bc_key k = { .kind = ARC_BC_BLOCK, .len = en.stored_len, .offset = en.offset,
                                     .csum = en.scsum };
            memcpy(k.scope, a->bc->scope, sizeof k.scope);
            if (bc_has(a->bc, &k))
                continue;
            VS_AUTOFREE void *buf = vs_xmalloc(en.stored_len);
            if ((r = fetch(a, ARC_BC_BLOCK, en.offset, en.stored_len, en.scsum, buf, false, e)) < 0)
                return vs_err_prefix(e, "stream '%s' block %" PRIu64, s->name, b);
        }
    }
    return 0;
}

static uint64_t source_bytes(const struct arc *a)
{
    uint64_t n = 0;
    for (; a; a = a->parent)
        n += a->bc ? atomic_load(&a->bc->src_bytes) : 0;
    return n;
}

int arc_prefetch_all(struct arc *a, const atomic_bool *stop, uint64_t *fetched, vs_err *e)
{
    uint64_t before = source_bytes(a), need = chain_need(a);
    for (struct arc *x = a; x; x = x->parent)
        if (x->bc && need > x->bc->max_bytes / 10 * 9)
            return vs_err_set(e, EFBIG, "%s: the archive chain stores up to %" PRIu64 " bytes, more than 90%% of the "
                              "block cache's bound of %" PRIu64 " bytes (--cache-size or VMSNAP_CACHE_SIZE)",
                              a->src->name, need, x->bc->max_bytes);
    for (struct arc *x = a; x; x = x->parent) {
        int r = x->bc ? prefetch_one(x, stop, e) : 0;
        if (r >= 0 && x->bc)
            r = check_complete(x, stop, e);
        if (r < 0)
            return r;
    }
    if (fetched)
        *fetched = source_bytes(a) - before;
    return 0;
}

void arc_cache_stats(const struct arc *a, struct arc_cache_stats *out)
{
    *out = (struct arc_cache_stats){ 0 };
    for (; a; a = a->parent) {
        struct arc_bcache *bc = a->bc;
        if (!bc)
            continue;
        out->enabled = true;
        out->hits += atomic_load(&bc->hits);
        out->hit_bytes += atomic_load(&bc->hit_bytes);
        out->misses += atomic_load(&bc->misses);
        out->source_reads += atomic_load(&bc->src_reads);
        out->source_bytes += atomic_load(&bc->src_bytes);
        out->stored += atomic_load(&bc->stored);
        out->bad += atomic_load(&bc->bad);
    }
}
