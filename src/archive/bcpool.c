/* archive: the block cache's pool of workers (started on first use): read-ahead for sequential readers and the
 * prefetch of a whole archive chain; and the cache's statistics. */
#include "archive/bcache_priv.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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
    bc_fetch(a, ARC_BC_BLOCK, en.offset, en.stored_len, en.scsum, buf, false, &e);
}

/* Whether the calling thread runs at idle priority (the page server's rest-of-RAM prefetch): what it queues runs
 * at idle priority too, whichever thread started the worker that takes it. */
static bool caller_idle(void)
{
    return sched_getscheduler(0) == SCHED_IDLE;
}

/* Leaving SCHED_IDLE takes CAP_SYS_NICE (root here) or RLIMIT_NICE room for the thread's nice value (sched(7)). */
static bool may_leave_idle(void)
{
    struct rlimit rl;
    int nice = getpriority(PRIO_PROCESS, 0);   /* this thread's */
    return geteuid() == 0 ||
           (getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || (rlim_t)(20 - nice) <= rl.rlim_cur));
}

/* A worker's own priority, CPU and I/O, as it started (normal: SCHED_OTHER when an idle thread started it); cpu:
 * whether it may take SCHED_IDLE for a job, that is come back from it (else an idle job gets the I/O class only,
 * rather than every later read-ahead running idle). */
struct bc_prio { int policy, ioprio; struct sched_param sp; bool idle, cpu; };

static void prio_switch(struct bc_prio *p, bool idle)
{
    if (p->idle == idle)
        return;
    static const struct sched_param zero = { 0 };
    if (p->cpu)   /* best effort: the job runs either way */
        pthread_setschedparam(pthread_self(), idle ? SCHED_IDLE : p->policy, idle ? &zero : &p->sp);
    vs_thread_set_ioprio(idle ? VS_IOPRIO_IDLE : p->ioprio);
    p->idle = idle;
}

static void *worker(void *opaque)
{
    struct arc_bcache *bc = opaque;
    struct bc_prio prio = { .policy = SCHED_OTHER, .cpu = may_leave_idle() };
    if (!caller_idle()) {
        pthread_getschedparam(pthread_self(), &prio.policy, &prio.sp);
        int io = vs_thread_ioprio();
        prio.ioprio = io > 0 && io != VS_IOPRIO_IDLE ? io : 0;
    } else {
        prio.idle = true;   /* started by an idle caller: SCHED_OTHER, I/O class "none" for a normal job */
    }
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
        prio_switch(&prio, j.idle);
        run_job(bc->a, j);
        pthread_mutex_lock(&bc->lock);
        bc->busy--;
        pthread_cond_broadcast(&bc->cond);
    }
    pthread_mutex_unlock(&bc->lock);
    return NULL;
}

/* Under bc->lock: queue a job and make sure a worker is there to take it. */
static void push_locked(struct arc_bcache *bc, unsigned stream, uint64_t block, bool idle)
{
    bc->queue[(bc->qhead + bc->qlen) % BC_QUEUE] = (struct bc_job){ stream, block, idle };
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
    bool idle = caller_idle();
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
            push_locked(bc, stream, b, idle);
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
    bool idle = caller_idle();
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
                push_locked(bc, si, b, idle);
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
            if ((r = bc_fetch(a, ARC_BC_BLOCK, en.offset, en.stored_len, en.scsum, buf, false, e)) < 0)
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
