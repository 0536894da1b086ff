/* archive: the verifying source -- an archive's bytes served only once checked against the chunk table a signature
 * binds (docs/FORMAT.md, "Signatures"). Reads are served from whole chunks; the last partly read chunks are kept,
 * verified, so that the many small reads of index pages and blocks next to each other cost one chunk, and readers
 * of a chunk being fetched (the block cache's read-ahead workers, a page server's threads) wait for that fetch. */
#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16

/* A kept chunk: empty (neither buf nor loading), being fetched by one reader (loading), or verified (buf). */
struct slot { uint64_t k; uint8_t *buf; uint64_t tick; bool loading; };

struct vsrc {
    struct arc_source s;
    struct arc_source *inner;
    struct cr_sums t;
    pthread_mutex_t lock;         /* guards slots and tick */
    pthread_cond_t done;          /* a fetch into a slot ended */
    struct slot slots[SLOTS];
    uint64_t tick;
    int log_fd;                   /* tests: every chunk read from inner, "offset length" per line */
};

static size_t chunk_len(const struct vsrc *v, uint64_t k)
{
    return (size_t)VS_MIN((uint64_t)v->t.chunk_size, v->s.size - k * v->t.chunk_size);
}

/* Chunks k .. k+n-1 from inner into buf in one read (a far store: one request), each checked. */
static int load(struct vsrc *v, uint64_t k, uint64_t n, uint8_t *buf, vs_err *e)
{
    uint64_t off = k * v->t.chunk_size;
    size_t len = (size_t)(VS_MIN((k + n) * v->t.chunk_size, v->s.size) - off);
    if (v->log_fd >= 0) {
        char line[48];
        int l = snprintf(line, sizeof line, "%" PRIu64 " %zu\n", off, len);
        vs_write_full(v->log_fd, line, (size_t)l);   /* O_APPEND: lines stay whole */
    }
    int r = v->inner->pread(v->inner, buf, len, off, e);
    for (uint64_t i = k; r >= 0 && i < k + n; i++) {
        uint64_t at = i * v->t.chunk_size;
        size_t cl = chunk_len(v, i);
        if (!cr_sums_chunk_ok(&v->t, i, buf + (at - off), cl))
            r = vs_err_set(e, EBADMSG, "archive %s: chunk %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64 ") does not "
                           "match the chunk table key %s signed: it changed after signing", v->s.name, i, at,
                           at + cl, v->s.signer);
    }
    return r;
}

static struct slot *find(struct vsrc *v, uint64_t k)
{
    for (unsigned i = 0; i < SLOTS; i++)
        if ((v->slots[i].buf || v->slots[i].loading) && v->slots[i].k == k)
            return &v->slots[i];
    return NULL;
}

/* The least recently used slot not being fetched into, or NULL when all are. */
static struct slot *victim(struct vsrc *v)
{
    struct slot *old = NULL;
    for (unsigned i = 0; i < SLOTS; i++)
        if (!v->slots[i].loading && (!old || v->slots[i].tick < old->tick))
            old = &v->slots[i];
    return old;
}

/* n bytes at skip of chunk k into dst: from a kept chunk, else fetched once into a slot while other readers of it
 * wait for that fetch. */
static int partial(struct vsrc *v, uint64_t k, uint8_t *dst, size_t skip, size_t n, vs_err *e)
{
    pthread_mutex_lock(&v->lock);
    struct slot *sl;
    for (;;) {
        if ((sl = find(v, k)) && sl->buf) {
            memcpy(dst, sl->buf + skip, n);
            sl->tick = ++v->tick;
            pthread_mutex_unlock(&v->lock);
            return 0;
        }
        if (!sl && (sl = victim(v)))
            break;
        pthread_cond_wait(&v->done, &v->lock);   /* being fetched, or every slot is */
    }
    uint8_t *drop = sl->buf;
    *sl = (struct slot){ .k = k, .loading = true, .tick = ++v->tick };
    pthread_mutex_unlock(&v->lock);
    free(drop);
    uint8_t *c = vs_xmalloc(chunk_len(v, k));
    int r = load(v, k, 1, c, e);
    if (r == 0)
        memcpy(dst, c + skip, n);
    pthread_mutex_lock(&v->lock);
    sl->loading = false;
    sl->buf = r == 0 ? VS_STEAL(c) : NULL;   /* a failed fetch leaves the slot empty: the next reader tries again */
    pthread_cond_broadcast(&v->done);
    pthread_mutex_unlock(&v->lock);
    free(c);
    return r;
}

static int v_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct vsrc *v = (struct vsrc *)s;
    if (off > s->size || len > s->size - off)
        return vs_err_set(e, EIO, "%s: truncated: wanted %zu bytes at offset %" PRIu64 " of %" PRIu64, s->name, len,
                          off, s->size);
    uint8_t *dst = buf;
    while (len) {
        uint64_t k = off / v->t.chunk_size;
        size_t skip = (size_t)(off - k * v->t.chunk_size), cl = chunk_len(v, k), n = VS_MIN(len, cl - skip);
        int r = 0;
        if (n == cl) {   /* whole chunks: straight into the caller's buffer */
            uint64_t m = 1;
            while (k + m < v->t.count && len - n >= chunk_len(v, k + m))
                n += chunk_len(v, k + m++);
            r = load(v, k, m, dst, e);
        } else {
            r = partial(v, k, dst, skip, n, e);
        }
        if (r < 0)
            return r;
        dst += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int v_check(struct arc_source *s, vs_err *e)
{
    struct vsrc *v = (struct vsrc *)s;
    return v->inner->check ? v->inner->check(v->inner, e) : 0;
}

static void v_close(struct arc_source *s)
{
    struct vsrc *v = (struct vsrc *)s;
    for (unsigned i = 0; i < SLOTS; i++)
        free(v->slots[i].buf);
    if (v->log_fd >= 0)
        close(v->log_fd);
    cr_sums_clear(&v->t);
    arc_source_close(v->inner);
    pthread_mutex_destroy(&v->lock);
    pthread_cond_destroy(&v->done);
    free(s->name);
    free(s->path);
    free(s->version);
    free(s->signer);
    free(v);
}

struct arc_source *arc_source_verified(struct arc_source *inner, struct cr_sums *sums, const char *signer)
{
    struct vsrc *v = vs_xcalloc(1, sizeof *v);
    v->inner = inner;
    v->t = *sums;
    *sums = (struct cr_sums){ 0 };
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->done, NULL);
    v->log_fd = -1;
#ifdef VS_TEST_FAULTS
    const char *log = getenv("VMSNAP_TEST_VERIFIED_LOG");   /* tests count what checking read from archives */
    if (log && *log)
        v->log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
#endif
    v->s.pread = v_pread;
    v->s.check = v_check;
    v->s.close = v_close;
    v->s.size = inner->size;
    v->s.name = vs_xstrdup(inner->name);
    v->s.path = inner->path ? vs_xstrdup(inner->path) : NULL;
    v->s.remote = inner->remote;
    v->s.version = inner->version ? vs_xstrdup(inner->version) : NULL;   /* the same bytes: the same cache scope */
    v->s.signer = vs_xstrdup(signer);
    return &v->s;
}
