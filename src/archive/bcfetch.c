/* archive: reading through the block cache — the counting wrapper around a cached archive's source, and fetches:
 * the cache, else the source, one fetch per offset at a time. */
#include "archive/bcache_priv.h"

#include <errno.h>
#include <fcntl.h>
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

int bc_fetch(struct arc *a, enum arc__bc_kind kind, uint64_t off, uint32_t len, uint64_t csum, void *buf, bool demand,
             vs_err *e)
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
    return bc_fetch(a, kind, off, len, csum, buf, true, e);
}
