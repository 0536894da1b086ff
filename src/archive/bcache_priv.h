/* archive: the block cache's handle, shared by bcache.c (entries on disk, eviction), bcfetch.c (fetching through
 * it) and bcpool.c (read-ahead, prefetch). docs/CACHE.md describes the directory. */
#ifndef VMSNAP_ARCHIVE_BCACHE_PRIV_H
#define VMSNAP_ARCHIVE_BCACHE_PRIV_H

#include "archive/reader_priv.h"

#define BC_WORKERS 4              /* fetches in flight for read-ahead and prefetch */
#define BC_QUEUE 256
#define BC_INFLIGHT 64
#define BC_READAHEAD 8            /* blocks fetched ahead of a sequential reader */

struct bc_job { unsigned stream; uint64_t block; bool idle; };   /* idle: queued by an idle-priority thread */

struct arc_bcache {
    struct arc *a;
    struct arc_source *inner;     /* the source a->src wraps */
    char *root, *dir;             /* the cache directory; this archive's scope directory in it */
    uint64_t max_bytes;
    uint8_t scope[16];
    int pin_fd;                   /* the scope's pin lock, held shared (arc_prefetch_all), or -1 */
    int rootfd, lock_fd;          /* the cache directory; its lock file (which also counts the bytes held) */
    int log_fd;                   /* tests: every source read as a line "OFFSET LENGTH", or -1 */
    long delay_us;                /* tests, benchmarks: each source read waits this long (a round trip) */

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t cond;          /* in-flight fetch done, job queued or done */
    uint64_t inflight[BC_INFLIGHT];
    unsigned ninflight;
    uint64_t *last, *ra_next;     /* per stream: last block loaded, first block not yet read ahead */
    struct bc_job queue[BC_QUEUE];
    unsigned qhead, qlen, busy, nworkers;
    pthread_t workers[BC_WORKERS];
    bool stopping;

    atomic_uint_fast64_t hits, hit_bytes, misses, src_reads, src_bytes, stored, bad;
};

/* bcfetch.c: arc__fetch with demand false for read-ahead and prefetch (not counted as misses). */
int bc_fetch(struct arc *a, enum arc__bc_kind kind, uint64_t off, uint32_t len, uint64_t csum, void *buf, bool demand,
             vs_err *e);

/* bcache.c: the directory. */
int bc_dir_open(struct arc_bcache *bc, const struct arc_cache_conf *c, vs_err *e);
/* 1 and buf filled when the cache holds the entry and it checks out (a damaged one is removed), else 0. */
int bc_get(struct arc_bcache *bc, const struct arc__bc_key *k, void *buf);
/* Whether p (k->len bytes) has the checksum k expects. */
bool bc_payload_ok(const struct arc__bc_key *k, const void *p);
bool bc_has(struct arc_bcache *bc, const struct arc__bc_key *k);
/* Store buf (already checked against k) under k: a temp file renamed into place. Never fails the caller. */
void bc_put(struct arc_bcache *bc, const struct arc__bc_key *k, const void *buf);
int bc_pin(struct arc_bcache *bc, vs_err *e);
/* Add what an entry just stored takes to the bytes the cache holds; past the bound, evict (bcache.c). */
void bc_account(struct arc_bcache *bc, uint64_t add);

#endif
