/* pagefs: the FUSE mount (libfuse3 low-level API: the prefetcher needs inode numbers for notify_store). A flat
 * directory, inode 1 the root and inode 2+i file i; a multi-threaded loop in a thread of its own; an optional
 * prefetch thread that warms the kernel's page cache of the files after the VM runs. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "pagefs/pagefs.h"

#ifdef VMSNAP_HAVE_FUSE3
#define FUSE_USE_VERSION 312   /* fuse_loop_config API: the 3.1 compat loop leaks its config */
#include <fuse_lowlevel.h>

#define GRAIN_SHIFT 16                 /* demand-read map: one bit per 64 KiB */
#define PREFETCH_CHUNK (1u << 20)      /* one decompress + notify_store step */
#define WS_GAP (512u << 10)            /* working-set ranges this close are fetched in one read */
#define WS_MAX_READ (4u << 20)
#define WS_WORKERS 4                   /* working-set reads in flight (an object store's latency overlaps) */

#define STORE_QUEUE 16                 /* demand reads' grains waiting to be stored; more are dropped */

struct grain_store {                   /* a decoded grain range; [ask, ask+size) was the reply */
    unsigned file;
    uint64_t off, ask;
    size_t len, size;
    char buf[];
};

struct pf_mount {
    struct pf_file *files;
    unsigned n;
    struct fuse_session *se;
    pthread_t thread, pf_thread;
    bool thread_started;
    atomic_bool pf_started;            /* read by FUSE workers (a test fault point) */
    atomic_bool pf_stop;
    atomic_bool late_done;             /* tests: the one late demand read was delayed */
    atomic_uint late_file;             /* tests: its file + 1 once it waits, and its offset */
    _Atomic uint64_t late_off;
    atomic_int demand;                 /* demand reads in flight: the prefetcher waits for them */
    /* A demand read's other grain pages go to the page cache from a thread of their own: a notify_store waits for
     * pages a queued read holds locked, and FUSE workers waiting so could take every worker of the loop, leaving
     * those reads (and the faults behind them) unanswered for good. */
    pthread_t st_thread;
    bool st_started;
    pthread_mutex_t st_lock;           /* guards the queue and st_quit */
    pthread_cond_t st_cond;
    struct grain_store *st_q[STORE_QUEUE];
    unsigned st_n;
    bool st_quit;
    _Atomic uint64_t **seen;           /* per file: grains already in the page cache (read or stored) */
    pthread_mutex_t lock;              /* guards stats and the recording */
    struct pf_stats stats;
    struct pf_range *first;            /* the working set the prefetch fetches first */
    size_t nfirst;
    char *dir;                         /* the mount point */
    bool pf_rest;                      /* the rest may follow the working set (the VM runs); guarded by lock */
    pthread_cond_t go;                 /* pf_rest or pf_stop set */
    atomic_bool recording;
    uint64_t **rec_map;                /* per file: pages recorded (one bit each) */
    struct pf_range *rec;
    size_t nrec, rec_cap;
    bool rec_truncated;
};

bool pf_available(void) { return true; }

static void mark(_Atomic uint64_t *map, uint64_t off, uint64_t len)
{
    for (uint64_t g = off >> GRAIN_SHIFT; len && g <= (off + len - 1) >> GRAIN_SHIFT; g++)
        atomic_fetch_or(&map[g / 64], 1ull << (g % 64));
}

static bool all_seen(_Atomic uint64_t *map, uint64_t off, uint64_t len)
{
    for (uint64_t g = off >> GRAIN_SHIFT; g <= (off + len - 1) >> GRAIN_SHIFT; g++)
        if (!(atomic_load(&map[g / 64]) & (1ull << (g % 64))))
            return false;
    return true;
}

static void record_error(struct pf_mount *m, const char *msg)
{
    pthread_mutex_lock(&m->lock);
    if (m->stats.errors++ == 0)
        snprintf(m->stats.first_error, sizeof m->stats.first_error, "%s", msg);
    pthread_mutex_unlock(&m->lock);
}

static int file_of(struct pf_mount *m, fuse_ino_t ino)
{
    return ino >= 2 && ino - 2 < m->n ? (int)(ino - 2) : -1;
}

static void fill_attr(struct pf_mount *m, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    int i = file_of(m, ino);
    if (i < 0) {
        st->st_mode = S_IFDIR | 0500;
        st->st_nlink = 2;
        return;
    }
    st->st_mode = S_IFREG | 0600;  /* "writable" so QEMU's O_RDWR open passes; writes are refused */
    st->st_nlink = 1;
    st->st_size = (off_t)m->files[i].size;
    st->st_blocks = (blkcnt_t)(m->files[i].size / 512);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;   /* content never changes: keep the page cache */
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct pf_mount *m = fuse_req_userdata(req);
    for (unsigned i = 0; parent == FUSE_ROOT_ID && i < m->n; i++) {
        if (strcmp(name, m->files[i].name))
            continue;
        struct fuse_entry_param ep = { .ino = i + 2, .attr_timeout = 3600, .entry_timeout = 3600 };
        fill_attr(m, ep.ino, &ep.attr);
        fuse_reply_entry(req, &ep);
        return;
    }
    fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct pf_mount *m = fuse_req_userdata(req);
    if (ino != FUSE_ROOT_ID && file_of(m, ino) < 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct stat st;
    fill_attr(m, ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
    (void)fi;
    struct pf_mount *m = fuse_req_userdata(req);
    int i = file_of(m, ino);
    /* A truncate to the size it has is harmless (QEMU may do it); anything else would change the content. */
    if (i < 0 || (to_set & ~FUSE_SET_ATTR_SIZE) || ((to_set & FUSE_SET_ATTR_SIZE)
                                                     && (uint64_t)attr->st_size != m->files[i].size)) {
        fuse_reply_err(req, i < 0 ? EPERM : EROFS);
        return;
    }
    struct stat st;
    fill_attr(m, ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    struct pf_mount *m = fuse_req_userdata(req);
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    VS_AUTOFREE char *buf = vs_xmalloc(size);
    size_t used = 0;
    for (unsigned k = (unsigned)off; k < m->n + 2; k++) {   /* entry k: ".", "..", files; its next offset k+1 */
        struct stat st = { .st_ino = k < 2 ? FUSE_ROOT_ID : k, .st_mode = k < 2 ? S_IFDIR : S_IFREG };
        const char *name = k == 0 ? "." : k == 1 ? ".." : m->files[k - 2].name;
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)k + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct pf_mount *m = fuse_req_userdata(req);
    if (file_of(m, ino) < 0) {
        fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
        return;
    }
    if (fi->flags & O_TRUNC) {
        fuse_reply_err(req, EROFS);
        return;
    }
    fi->keep_cache = 1;            /* content never changes: keep pages across opens */
    fuse_reply_open(req, fi);
}

/* len bytes of file i at off into the kernel's page cache: 0 or a negative errno. */
static int store(struct pf_mount *m, unsigned i, uint64_t off, const void *buf, size_t len)
{
    if (!len)
        return 0;
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].mem = (void *)buf;
    return fuse_lowlevel_notify_store(m->se, i + 2, (off_t)off, &bv, 0);
}

/* The pages of [off, off+len) of file i not recorded yet, as ranges in the recording (runs of new pages). */
static void record(struct pf_mount *m, unsigned i, uint64_t off, size_t len)
{
    pthread_mutex_lock(&m->lock);
    uint64_t *map = m->rec_map[i];
    uint64_t p1 = VS_DIV_ROUND_UP(off + len, PF_PAGE_SIZE);
    for (uint64_t p = off / PF_PAGE_SIZE; p < p1 && atomic_load(&m->recording);) {
        if (map[p / 64] & (1ull << (p % 64))) {
            p++;
            continue;
        }
        uint64_t q = p;
        for (; q < p1 && !(map[q / 64] & (1ull << (q % 64))); q++)
            map[q / 64] |= 1ull << (q % 64);
        if (m->nrec == PF_RECORD_MAX) {
            m->rec_truncated = true;
            atomic_store(&m->recording, false);
            break;
        }
        if (m->nrec == m->rec_cap) {
            m->rec_cap = m->rec_cap ? 2 * m->rec_cap : 1024;
            m->rec = vs_xrealloc(m->rec, m->rec_cap * sizeof *m->rec);
        }
        m->rec[m->nrec++] = (struct pf_range){ i, p * PF_PAGE_SIZE, (q - p) * PF_PAGE_SIZE };
        p = q;
    }
    pthread_mutex_unlock(&m->lock);
}

void pf_record_start(struct pf_mount *m)
{
    pthread_mutex_lock(&m->lock);
    if (!m->rec_map) {
        m->rec_map = vs_xcalloc(m->n ? m->n : 1, sizeof *m->rec_map);
        for (unsigned i = 0; i < m->n; i++)
            m->rec_map[i] = vs_xcalloc(VS_DIV_ROUND_UP(m->files[i].size, PF_PAGE_SIZE) / 64 + 1, sizeof(uint64_t));
    }
    atomic_store(&m->recording, true);
    pthread_mutex_unlock(&m->lock);
}

void pf_record_stop(struct pf_mount *m, struct pf_range **out, size_t *n, bool *truncated)
{
    pthread_mutex_lock(&m->lock);
    atomic_store(&m->recording, false);
    *out = m->rec;
    *n = m->nrec;
    *truncated = m->rec_truncated;
    m->rec = NULL;
    m->nrec = m->rec_cap = 0;
    pthread_mutex_unlock(&m->lock);
}

static void sleep_ms(long ms) { nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL); }

/* tests: the late read waits for the file VMSNAP_TEST_LATE_ARM names, if any (the test's moment) */
static bool late_armed(void)
{
    const char *p = getenv("VMSNAP_TEST_LATE_ARM");
    return !p || access(p, F_OK) == 0;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    struct pf_mount *m = fuse_req_userdata(req);
    int i = file_of(m, ino);
    if (i < 0) {
        fuse_reply_err(req, EBADF);
        return;
    }
    struct pf_file *f = &m->files[i];
    if (off < 0 || (uint64_t)off >= f->size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size = (size_t)VS_MIN((uint64_t)size, f->size - (uint64_t)off);
    /* A demand read decodes the whole 64 KiB grains it touches: the archive decodes (and, when it is sealed,
     * authenticates) whole blocks anyway, and a guest touching a block's pages in scattered order would otherwise
     * have it decoded again for each page once the block cache moved on. The rest of the grains goes to the page
     * cache after the reply, so the guest's next faults there are minor. A grain seen before whose pages the kernel
     * dropped is read as asked. */
    uint64_t g0 = (uint64_t)off, g1 = (uint64_t)off + size;
    bool rec = atomic_load(&m->recording);
    if (rec)
        record(m, (unsigned)i, (uint64_t)off, size);
    if (size && !rec && !all_seen(m->seen[i], g0, size)) {
        g0 &= ~((1ull << GRAIN_SHIFT) - 1);
        g1 = VS_MIN(VS_DIV_ROUND_UP(g1, 1ull << GRAIN_SHIFT) << GRAIN_SHIFT, f->size);
    }
    size_t skip = (size_t)((uint64_t)off - g0), len = (size_t)(g1 - g0);
    /* tests: a worker that picks the read up late (a loaded host): the kernel holds its pages locked meanwhile
     * and the prefetcher, seeing no demand read, stores into them */
    if (m->pf_started && vs_test_fault("pagefs-read-late") && late_armed() && !atomic_exchange(&m->late_done, true)) {
        atomic_store(&m->late_off, (uint64_t)off);
        atomic_store(&m->late_file, (unsigned)i + 1);
        sleep_ms(10000);
    }
    atomic_fetch_add(&m->demand, 1);
    struct grain_store *gs = vs_xmalloc(sizeof *gs + (len ? len : 1));
    *gs = (struct grain_store){ (unsigned)i, g0, (uint64_t)off, len, size };
    vs_err e = { 0 };
    int r = f->read(f->opaque, gs->buf, len, g0, &e);
    atomic_fetch_sub(&m->demand, 1);
    if (r < 0) {
        free(gs);
        record_error(m, e.msg);
        fuse_reply_err(req, EIO);
        return;
    }
    pthread_mutex_lock(&m->lock);
    m->stats.reads++;
    m->stats.bytes += size;
    pthread_mutex_unlock(&m->lock);
    fuse_reply_buf(req, gs->buf + skip, size);
    /* After the reply, which unlocks the asked pages; best effort: a page not stored is read on demand. */
    pthread_mutex_lock(&m->st_lock);
    bool queued = len > size && !m->st_quit && m->st_n < STORE_QUEUE;
    if (queued) {
        m->st_q[m->st_n++] = gs;
        pthread_cond_signal(&m->st_cond);
    }
    pthread_mutex_unlock(&m->st_lock);
    if (!queued) {
        mark(m->seen[i], (uint64_t)off, size);
        free(gs);
    }
}

/* The storer: the queued grains' other pages into the page cache, then marked seen. */
static void *store_thread(void *arg)
{
    struct pf_mount *m = arg;
    pthread_mutex_lock(&m->st_lock);
    for (;;) {
        while (!m->st_n && !m->st_quit)
            pthread_cond_wait(&m->st_cond, &m->st_lock);
        if (m->st_quit)
            break;
        struct grain_store *g = m->st_q[0];
        memmove(m->st_q, m->st_q + 1, --m->st_n * sizeof *m->st_q);
        pthread_mutex_unlock(&m->st_lock);
        size_t skip = (size_t)(g->ask - g->off);
        bool stored = !store(m, g->file, g->off, g->buf, skip) &&
                      !store(m, g->file, g->ask + g->size, g->buf + skip + g->size, g->len - skip - g->size);
        mark(m->seen[g->file], stored ? g->off : g->ask, stored ? g->len : g->size);
        free(g);
        pthread_mutex_lock(&m->st_lock);
    }
    for (unsigned k = 0; k < m->st_n; k++) {   /* left unstored: only what the replies brought in is seen */
        mark(m->seen[m->st_q[k]->file], m->st_q[k]->ask, m->st_q[k]->size);
        free(m->st_q[k]);
    }
    m->st_n = 0;
    pthread_mutex_unlock(&m->st_lock);
    return NULL;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino; (void)buf; (void)size; (void)off; (void)fi;
    fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init, .lookup = op_lookup, .getattr = op_getattr, .setattr = op_setattr, .readdir = op_readdir,
    .open = op_open, .read = op_read, .write = op_write,
};

static void *loop_thread(void *arg)
{
    struct pf_mount *m = arg;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg) {
        fuse_loop_cfg_set_clone_fd(cfg, 0);
        fuse_session_loop_mt(m->se, cfg);
        fuse_loop_cfg_destroy(cfg);
    }
    return NULL;
}

/* ---- prefetch ------------------------------------------------------------------------------------------- */

/* Prefetch file i: its non-zero data in offset order, decompressed here and stored into the kernel's page
 * cache of the file with notify_store (bounded: one chunk of user memory; the page cache is reclaimable).
 * Grains a demand read already brought in are skipped. */
static int prefetch_file(struct pf_mount *m, unsigned i, uint8_t *buf, vs_err *e)
{
    struct pf_file *f = &m->files[i];
    for (uint64_t off = 0; off < f->size && !atomic_load(&m->pf_stop);) {
        uint64_t len = VS_MIN((uint64_t)PREFETCH_CHUNK, f->size - off);
        bool zero = false;
        if (f->data_run) {
            int r = f->data_run(f->opaque, off, &len, &zero, e);
            if (r < 0)
                return r;
            len = VS_MIN(len, (uint64_t)PREFETCH_CHUNK);
        }
        if (zero || all_seen(m->seen[i], off, len)) {   /* holes read as zeros quickly on demand */
            off += len;
            continue;
        }
        while (atomic_load(&m->demand) > 0 && !atomic_load(&m->pf_stop))
            sleep_ms(1);   /* a vCPU waits on a demand read: leave it the CPU and the archive */
        int r = f->read(f->opaque, buf, (size_t)len, off, e);
        if (r < 0)
            return r;
        if ((r = store(m, i, off, buf, (size_t)len)) < 0)
            return vs_err_sys(e, -r, "storing %" PRIu64 " bytes at offset %" PRIu64 " of %s in the page cache", len,
                              off, f->name);
        mark(m->seen[i], off, len);
        pthread_mutex_lock(&m->lock);
        m->stats.prefetched += len;
        pthread_mutex_unlock(&m->lock);
        off += len;
    }
    return 0;
}

/* The working-set phase: its merged reads, taken in order by WS_WORKERS threads. */
struct ws_job {
    struct pf_mount *m;
    const struct pf_range *req;
    size_t n;
    atomic_size_t next;
    _Atomic uint64_t fetched, requests;
    pthread_mutex_t lock;              /* guards err */
    vs_err err;
};

static void *ws_worker(void *arg)
{
    struct ws_job *j = arg;
    struct pf_mount *m = j->m;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(WS_MAX_READ);
    for (size_t k; (k = atomic_fetch_add(&j->next, 1)) < j->n && !atomic_load(&m->pf_stop);) {
        const struct pf_range *q = &j->req[k];
        struct pf_file *f = &m->files[q->file];
        if (all_seen(m->seen[q->file], q->off, q->len))
            continue;
        vs_err e = { 0 };
        int r = f->read(f->opaque, buf, (size_t)q->len, q->off, &e);
        if (r == 0 && (r = store(m, q->file, q->off, buf, (size_t)q->len)) < 0)
            vs_err_sys(&e, -r, "storing %" PRIu64 " bytes at offset %" PRIu64 " of %s in the page cache", q->len,
                       q->off, f->name);
        if (r < 0) {
            pthread_mutex_lock(&j->lock);
            if (!j->err.code)
                j->err = e;
            pthread_mutex_unlock(&j->lock);
            atomic_store(&j->next, j->n);   /* the others stop too */
            break;
        }
        mark(m->seen[q->file], q->off, q->len);
        atomic_fetch_add(&j->fetched, q->len);
        atomic_fetch_add(&j->requests, 1);
    }
    return NULL;
}

/* Fetch the working set (m->first): 0, or an error that stops the whole prefetch. */
static int prefetch_ws(struct pf_mount *m, vs_err *e)
{
    double t0 = vs_now_s();
    VS_AUTOFREE struct pf_range *grains = vs_xcalloc(m->nfirst ? m->nfirst : 1, sizeof *grains);
    for (size_t i = 0; i < m->nfirst; i++) {   /* whole 64 KiB grains: what a demand read decodes anyway */
        const struct pf_range *x = &m->first[i];
        uint64_t size = m->files[x->file].size, lo = x->off & ~((1ull << GRAIN_SHIFT) - 1);
        uint64_t hi = VS_MIN(VS_DIV_ROUND_UP(x->off + x->len, 1ull << GRAIN_SHIFT) << GRAIN_SHIFT, size);
        grains[i] = (struct pf_range){ x->file, lo, hi - lo };
    }
    VS_AUTOFREE struct pf_range *req = NULL;
    struct ws_job j = { .m = m, .n = pf_plan_merge(grains, m->nfirst, WS_GAP, WS_MAX_READ, &req) };
    j.req = req;
    pthread_mutex_init(&j.lock, NULL);
    pthread_t t[WS_WORKERS];
    unsigned started = 0;
    for (; started < WS_WORKERS && started < j.n; started++)
        if (pthread_create(&t[started], NULL, ws_worker, &j))
            break;
    if (!started && j.n)
        ws_worker(&j);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_destroy(&j.lock);
    if (j.err.code) {
        *e = j.err;
        return vs_err_prefix(e, "working set");
    }
    uint64_t in_cache = 0;
    for (size_t i = 0; i < m->nfirst; i++)
        if (all_seen(m->seen[m->first[i].file], m->first[i].off, m->first[i].len))
            in_cache += m->first[i].len;
    pthread_mutex_lock(&m->lock);
    m->stats.ws_bytes = in_cache;
    m->stats.ws_fetched = atomic_load(&j.fetched);
    m->stats.ws_requests = atomic_load(&j.requests);
    m->stats.prefetched += m->stats.ws_fetched;
    m->stats.ws_done_s = atomic_load(&m->pf_stop) ? 0 : VS_MAX(vs_now_s() - t0, 1e-6);
    m->stats.ws_start_s = t0;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* Open the files (fds[n]) so that the kernel knows their inodes: notify_store needs them, and before QEMU opens a
 * file (a working set fetched while QEMU starts) nobody else has looked it up. */
static int hold_files(struct pf_mount *m, int *fds, vs_err *e)
{
    for (unsigned i = 0; i < m->n; i++) {
        VS_AUTOFREE char *path = vs_xasprintf("%s/%s", m->dir, m->files[i].name);
        if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return vs_err_sys(e, errno, "opening %s", path);
    }
    return 0;
}

/* tests: the prefetcher's first store goes to the first page of the late demand read, which the kernel holds
 * locked until that read is answered (the race of a loaded host, made certain). */
static void prefetch_late(struct pf_mount *m, uint8_t *buf)
{
    while (!atomic_load(&m->late_file) && !atomic_load(&m->pf_stop))
        sleep_ms(1);
    unsigned i = atomic_load(&m->late_file);
    uint64_t off = atomic_load(&m->late_off);
    vs_err e = { 0 };
    if (i-- && m->files[i].read(m->files[i].opaque, buf, PF_PAGE_SIZE, off, &e) == 0)
        store(m, i, off, buf, PF_PAGE_SIZE);
}

static void *prefetch_thread(void *arg)
{
    struct pf_mount *m = arg;
    vs_err e = { 0 };
    double t0 = vs_now_s();
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(PREFETCH_CHUNK);
    if (vs_test_fault("pagefs-read-late"))
        prefetch_late(m, buf);
    VS_AUTOFREE int *fds = vs_xmalloc((m->n ? m->n : 1) * sizeof *fds);
    memset(fds, 0xff, (m->n ? m->n : 1) * sizeof *fds);
    int r = m->nfirst ? hold_files(m, fds, &e) : 0;
    if (r == 0 && m->nfirst)
        r = prefetch_ws(m, &e);
    pthread_mutex_lock(&m->lock);   /* started early: the rest waits until the VM runs */
    while (!m->pf_rest && !atomic_load(&m->pf_stop))
        pthread_cond_wait(&m->go, &m->lock);
    pthread_mutex_unlock(&m->lock);
    for (unsigned i = 0; i < m->n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    vs_thread_idle();
    for (unsigned i = 0; r == 0 && i < m->n && !atomic_load(&m->pf_stop); i++)
        r = prefetch_file(m, i, buf, &e);
    pthread_mutex_lock(&m->lock);
    if (r < 0)   /* not a page error of the VM: a demand read of that page reports it if it is ever needed */
        snprintf(m->stats.prefetch_error, sizeof m->stats.prefetch_error, "%s", e.msg);
    else if (!atomic_load(&m->pf_stop))
        m->stats.prefetch_done_s = vs_now_s() - t0;
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void pf_prefetch_first(struct pf_mount *m, const struct pf_range *r, size_t n)
{
    if (m->pf_started)
        return;
    free(m->first);
    m->first = vs_xcalloc(n ? n : 1, sizeof *r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)   /* only ranges inside the files */
        if (r[i].file < m->n && r[i].len && r[i].off < m->files[r[i].file].size &&
            r[i].len <= m->files[r[i].file].size - r[i].off)
            m->first[k++] = r[i];
    m->nfirst = k;
}

static int start_thread(struct pf_mount *m, vs_err *e)
{
    int r = pthread_create(&m->pf_thread, NULL, prefetch_thread, m);
    if (r)
        return vs_err_sys(e, r, "starting the prefetch thread");
    m->pf_started = true;
    return 0;
}

int pf_prefetch_start(struct pf_mount *m, vs_err *e)
{
    pthread_mutex_lock(&m->lock);
    m->pf_rest = true;
    pthread_cond_broadcast(&m->go);
    pthread_mutex_unlock(&m->lock);
    return m->pf_started ? 0 : start_thread(m, e);
}

int pf_prefetch_ws_start(struct pf_mount *m, vs_err *e)
{
    return m->pf_started || !m->nfirst ? 0 : start_thread(m, e);
}

/* ---- mount ---------------------------------------------------------------------------------------------- */

/* The prefetcher and the storer end while the loop still serves: a notify_store waits for pages that a read the
 * kernel queued holds locked. Ending the loop first leaves that read unanswered and the storing thread in the
 * kernel for good (uninterruptible): the process can never exit, its /dev/fuse fd (whose release would abort the
 * read) stays open, and QEMUs and readers of those pages wait in D state with it. */
static void stop_stores(struct pf_mount *m)
{
    pthread_mutex_lock(&m->lock);
    atomic_store(&m->pf_stop, true);
    pthread_cond_broadcast(&m->go);   /* a prefetcher waiting for the VM to run */
    pthread_mutex_unlock(&m->lock);
    if (m->pf_started) {
        pthread_join(m->pf_thread, NULL);
        m->pf_started = false;
    }
    pthread_mutex_lock(&m->st_lock);
    m->st_quit = true;
    pthread_cond_signal(&m->st_cond);
    pthread_mutex_unlock(&m->st_lock);
    if (m->st_started) {
        pthread_join(m->st_thread, NULL);
        m->st_started = false;
    }
}

void pf_unmount(struct pf_mount *m)
{
    if (!m)
        return;
    stop_stores(m);
    if (m->se) {
        fuse_session_exit(m->se);
        if (m->thread_started) {
            fuse_session_unmount(m->se);   /* the loop's reads of /dev/fuse end: the thread returns */
            pthread_join(m->thread, NULL);
        }
        fuse_session_destroy(m->se);
    }
    for (unsigned i = 0; i < m->n; i++) {
        free((char *)m->files[i].name);
        free(m->seen ? (void *)m->seen[i] : NULL);
    }
    free(m->seen);
    for (unsigned i = 0; m->rec_map && i < m->n; i++)
        free(m->rec_map[i]);
    free(m->rec_map);
    free(m->rec);
    free(m->first);
    free(m->files);
    free(m->dir);
    pthread_cond_destroy(&m->go);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->st_lock);
    pthread_cond_destroy(&m->st_cond);
    free(m);
}

int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e)
{
    struct pf_mount *m = vs_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->go, NULL);
    m->dir = vs_xstrdup(dir);
    pthread_mutex_init(&m->st_lock, NULL);
    pthread_cond_init(&m->st_cond, NULL);
    m->files = vs_xcalloc(n ? n : 1, sizeof *m->files);
    m->seen = vs_xcalloc(n ? n : 1, sizeof *m->seen);
    m->n = n;
    for (unsigned i = 0; i < n; i++) {
        m->files[i] = files[i];
        m->files[i].name = vs_xstrdup(files[i].name);
        uint64_t grains = (files[i].size >> GRAIN_SHIFT) + 1;
        m->seen[i] = vs_xcalloc((size_t)(grains + 63) / 64, sizeof(uint64_t));
    }
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    if (fuse_opt_add_arg(&args, "vmsnap") || fuse_opt_add_arg(&args, "-o")
        || fuse_opt_add_arg(&args, "fsname=vmsnap-pages,subtype=vmsnap")) {
        fuse_opt_free_args(&args);
        pf_unmount(m);
        return vs_err_set(e, ENOMEM, "FUSE arguments");
    }
    m->se = fuse_session_new(&args, &ops, sizeof ops, m);
    fuse_opt_free_args(&args);
    if (!m->se) {
        pf_unmount(m);
        return vs_err_set(e, EIO, "FUSE: cannot create a file system for %s", dir);
    }
    if (fuse_session_mount(m->se, dir) != 0) {
        pf_unmount(m);
        return vs_err_set(e, EIO, "FUSE: cannot mount on %s (is /dev/fuse usable, fusermount3 installed?)", dir);
    }
    int r = pthread_create(&m->st_thread, NULL, store_thread, m);
    if (r) {
        fuse_session_unmount(m->se);
        pf_unmount(m);
        return vs_err_sys(e, r, "starting the FUSE store thread");
    }
    m->st_started = true;
    r = pthread_create(&m->thread, NULL, loop_thread, m);
    if (r) {
        fuse_session_unmount(m->se);
        pf_unmount(m);
        return vs_err_sys(e, r, "starting the FUSE thread");
    }
    m->thread_started = true;
    *out = m;
    return 0;
}

void pf_unmount_exiting(struct pf_mount *m)
{
    stop_stores(m);
    fuse_session_exit(m->se);
    fuse_session_unmount(m->se);
}

void pf_get_stats(struct pf_mount *m, struct pf_stats *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    pthread_mutex_unlock(&m->lock);
}

#else /* !VMSNAP_HAVE_FUSE3 */

struct pf_mount { int unused; };
bool pf_available(void) { return false; }
int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e)
{
    (void)files; (void)n; (void)out;
    return vs_err_set(e, ENOTSUP, "cannot serve RAM lazily on %s: vmsnap was built without libfuse3", dir);
}
void pf_unmount(struct pf_mount *m) { (void)m; }
void pf_unmount_exiting(struct pf_mount *m) { (void)m; }
void pf_get_stats(struct pf_mount *m, struct pf_stats *out) { (void)m; memset(out, 0, sizeof *out); }
int pf_prefetch_start(struct pf_mount *m, vs_err *e) { (void)m; (void)e; return 0; }
int pf_prefetch_ws_start(struct pf_mount *m, vs_err *e) { (void)m; (void)e; return 0; }
void pf_prefetch_first(struct pf_mount *m, const struct pf_range *r, size_t n) { (void)m; (void)r; (void)n; }
void pf_record_start(struct pf_mount *m) { (void)m; }
void pf_record_stop(struct pf_mount *m, struct pf_range **out, size_t *n, bool *truncated)
{
    (void)m;
    *out = NULL;
    *n = 0;
    *truncated = false;
}

#endif
