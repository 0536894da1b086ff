/* nbd: the overlay stack — base image, frozen layers, live layer — and its block I/O.
 *
 * Lock order: freeze_lock > stack_lock > flush_lock > stripe locks. Every I/O holds stack_lock for reading
 * (so reads run in parallel); freeze and rebase take it for writing only to swap pointers. A write that
 * covers part of a 4 KiB block merges it with the data below under that block's stripe lock. */
#include "nbd/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#define NSTRIPES 256

struct nbd_overlay {
    pthread_rwlock_t stack_lock;
    pthread_mutex_t freeze_lock, flush_lock;
    pthread_mutex_t stripes[NSTRIPES];
    struct nbd_base *base;
    struct layer **layers; /* bottom first; layers[nlayers - 1] is live */
    size_t nlayers;
    uint64_t size, nblocks;
    unsigned flags;
    char *path;    /* live layer; frozen layers are path.<seq> */
    char *tmpdir;  /* NBD_OVL_TEMP: directory removed at close */
};

static struct layer *top(struct nbd_overlay *o) { return o->layers[o->nlayers - 1]; }
static uint64_t block_len(const struct nbd_overlay *o, uint64_t b)
{
    return VS_MIN((uint64_t)NBD_BLOCK_SIZE, o->size - b * NBD_BLOCK_SIZE);
}

uint64_t nbd_overlay_size(const struct nbd_overlay *o) { return o->size; }
bool nbd_overlay_read_only(const struct nbd_overlay *o) { return o->flags & NBD_OVL_READONLY; }

/* ---- opening -------------------------------------------------------------- */

static char *layer_path(const struct nbd_overlay *o, uint32_t seq) { return vs_xasprintf("%s.%u", o->path, seq); }

static int check_base(const struct nbd_overlay *o, const struct layer *live, vs_err *e)
{
    char want[37], have[37];
    if (memcmp(live->h.base_uuid, o->base->uuid, 16)) {
        vs_uuid_format(live->h.base_uuid, want);
        vs_uuid_format(o->base->uuid, have);
        return vs_err_set(e, EINVAL, "overlay %s belongs to archive %s, not to %s", o->path, want, have);
    }
    if (live->h.disk_size != o->base->size)
        return vs_err_set(e, EINVAL, "overlay %s is for a %llu-byte disk, the base has %llu bytes", o->path,
                          (unsigned long long)live->h.disk_size, (unsigned long long)o->base->size);
    return 0;
}

/* Open path and lock it (op: LOCK_EX or LOCK_SH), never waiting. A lock on a file that a concurrent freeze or
 * creation renamed or removed in the meantime protects nothing: retry until path still names the locked file. */
static int open_locked(const char *path, int flags, int op, int *out, vs_err *e)
{
    for (int tries = 0; tries < 100; tries++) {
        VS_AUTOCLOSE int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == ELOOP)
            return vs_err_set(e, ELOOP, "overlay layer %s is a symbolic link: give the file itself", path);
        if (fd < 0)
            return vs_err_sys(e, errno, "opening overlay layer %s", path);
        if (flock(fd, op | LOCK_NB) < 0)
            return vs_err_sys(e, errno, "overlay %s is in use by another process", path);
        struct stat have, named;
        if (fstat(fd, &have) == 0 && stat(path, &named) == 0 && have.st_dev == named.st_dev &&
            have.st_ino == named.st_ino) {
            *out = VS_STEAL_FD(fd);
            return 0;
        }
    }
    return vs_err_set(e, EAGAIN, "overlay %s keeps changing while being opened", path);
}

/* A fresh layer with header h at PATH.new, held with LOCK_EX: whoever holds that lock owns the name, so a
 * creation and a freeze never build on, or remove, each other's file. */
static int new_layer(struct nbd_overlay *o, const struct layer_hdr *h, struct layer **out, vs_err *e)
{
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.new", o->path);
    int fd;
    int r = open_locked(tmp, O_RDWR | O_CREAT, LOCK_EX, &fd, e);
    return r < 0 ? r : layer_create(tmp, fd, h, out, e);
}

/* A new overlay: PATH.new, then link(), which never replaces a PATH that a concurrent opener created
 * meanwhile (-EEXIST: open that one instead). */
static int create_live(struct nbd_overlay *o, vs_err *e)
{
    struct layer_hdr h = { .disk_size = o->base->size, .seq = 1, .base_seq = 1 };
    memcpy(h.base_uuid, o->base->uuid, 16);
    int r = vs_uuid_generate(h.stack_id);
    if (r < 0)
        return vs_err_sys(e, -r, "generating an overlay id");
    struct layer *l;
    if ((r = new_layer(o, &h, &l, e)) < 0)
        return r;
    if (link(l->path, o->path) < 0)
        r = errno == EEXIST ? -EEXIST : vs_err_sys(e, errno, "linking %s to %s", l->path, o->path);
    unlink(l->path);
    if (r == 0)
        r = vs_fsync_dir_of(o->path, e);
    if (r < 0) {
        layer_free(l);
        return r;
    }
    free(l->path);
    l->path = vs_xstrdup(o->path);
    o->layers = vs_xcalloc(1, sizeof(*o->layers));
    o->layers[0] = l;
    o->nlayers = 1;
    return 0;
}

/* Remove what an interrupted freeze or rebase left behind (docs/OVERLAY.md, "Recovery"). Only the holder of
 * the live layer's exclusive lock does this: nobody else can be freezing or rebasing meanwhile. */
static void remove_leftovers(struct nbd_overlay *o, const struct layer *live)
{
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.new", o->path);
    unlink(tmp);
    VS_AUTOFREE char *same = layer_path(o, live->h.seq); /* freeze linked it but did not rename */
    unlink(same);
    for (uint32_t s = live->h.base_seq; s-- > 0;) { /* rebase removes bottom first */
        VS_AUTOFREE char *p = layer_path(o, s);
        if (unlink(p) < 0)
            break;
    }
}

/* The live layer is locked before anything is read or removed. */
static int open_stack(struct nbd_overlay *o, vs_err *e)
{
    bool ro = o->flags & NBD_OVL_READONLY;
    struct layer *live;
    int fd;
    int r = open_locked(o->path, ro ? O_RDONLY : O_RDWR, ro ? LOCK_SH : LOCK_EX, &fd, e);
    if (r < 0 || (r = layer_open(o->path, fd, ro, &live, e)) < 0)
        return r;
    if ((r = check_base(o, live, e)) < 0) {
        layer_free(live);
        return r;
    }
    if (!ro)
        remove_leftovers(o, live);
    o->layers = vs_xcalloc((size_t)live->h.seq - live->h.base_seq + 1, sizeof(*o->layers));
    for (uint32_t s = live->h.base_seq; s < live->h.seq; s++) {
        VS_AUTOFREE char *p = layer_path(o, s);
        struct layer *l;
        if ((r = layer_open(p, -1, true, &l, e)) < 0)
            goto fail;
        o->layers[o->nlayers++] = l;
        if (l->h.seq != s || memcmp(l->h.stack_id, live->h.stack_id, 16) || l->h.disk_size != o->size) {
            r = vs_err_set(e, EINVAL, "overlay layer %s does not belong to overlay %s", p, o->path);
            goto fail;
        }
    }
    o->layers[o->nlayers++] = live;
    return 0;
fail:
    layer_free(live);
    return r;
}

int nbd_overlay_open(const char *path, struct nbd_base *base, unsigned flags, struct nbd_overlay **out,
                     vs_err *e)
{
    struct nbd_overlay *o = vs_xcalloc(1, sizeof(*o));
    pthread_rwlock_init(&o->stack_lock, NULL);
    pthread_mutex_init(&o->freeze_lock, NULL);
    pthread_mutex_init(&o->flush_lock, NULL);
    for (int i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&o->stripes[i], NULL);
    o->base = base;
    o->size = base->size;
    o->nblocks = VS_DIV_ROUND_UP(o->size, NBD_BLOCK_SIZE);
    o->flags = flags;
    int r;
    if (o->size == 0) {
        r = vs_err_set(e, EINVAL, "cannot serve an empty disk");
        goto fail;
    }
    if (flags & NBD_OVL_TEMP) {
        const char *td = getenv("TMPDIR");
        o->tmpdir = vs_xasprintf("%s/vmsnap-overlay.XXXXXX", td && *td ? td : "/tmp");
        if (!mkdtemp(o->tmpdir)) {
            r = vs_err_sys(e, errno, "creating a temporary overlay directory %s", o->tmpdir);
            free(o->tmpdir);
            o->tmpdir = NULL;
            goto fail;
        }
        o->path = vs_xasprintf("%s/overlay", o->tmpdir);
    } else {
        if (!path) {
            r = vs_err_set(e, EINVAL, "no overlay path given");
            goto fail;
        }
        o->path = vs_xstrdup(path);
    }
    bool may_create = (o->flags & NBD_OVL_TEMP) || ((o->flags & NBD_OVL_CREATE) && !(o->flags & NBD_OVL_READONLY));
    struct stat st;
    if (stat(o->path, &st) < 0 && errno == ENOENT && may_create)
        r = create_live(o, e);
    else
        r = -EEXIST;
    if (r == -EEXIST)
        r = open_stack(o, e);
    if (r < 0)
        goto fail;
    *out = o;
    return 0;
fail:
    o->base = NULL; /* the caller keeps it */
    nbd_overlay_close(o);
    return r;
}

void nbd_overlay_close(struct nbd_overlay *o)
{
    if (!o)
        return;
    if (o->nlayers && !(o->flags & (NBD_OVL_READONLY | NBD_OVL_TEMP)))
        nbd_overlay_flush(o, NULL);
    for (size_t i = 0; i < o->nlayers; i++) {
        if (o->tmpdir)
            unlink(o->layers[i]->path);
        layer_free(o->layers[i]);
    }
    free(o->layers);
    if (o->tmpdir) {
        rmdir(o->tmpdir);
        free(o->tmpdir);
    }
    nbd_base_close(o->base);
    free(o->path);
    pthread_rwlock_destroy(&o->stack_lock);
    pthread_mutex_destroy(&o->freeze_lock);
    pthread_mutex_destroy(&o->flush_lock);
    for (int i = 0; i < NSTRIPES; i++)
        pthread_mutex_destroy(&o->stripes[i]);
    free(o);
}

/* ---- reading through the stack ---------------------------------------------- */

/* Where block b comes from, looking at layers [0, n): a layer index with data, ZERO, or BASE. */
enum { SRC_BASE = -1, SRC_ZERO = -2 };
static int block_source(struct nbd_overlay *o, size_t n, uint64_t b, unsigned *st)
{
    for (size_t i = n; i-- > 0;) {
        unsigned s = layer_get(o->layers[i], b);
        if (s) {
            *st = s;
            return s == NBD_BLK_DATA ? (int)i : SRC_ZERO;
        }
    }
    *st = NBD_BLK_ABSENT;
    return SRC_BASE;
}

static int read_from(struct nbd_overlay *o, int src, uint8_t *buf, size_t len, uint64_t off, vs_err *e)
{
    if (src == SRC_ZERO) {
        memset(buf, 0, len);
        return 0;
    }
    if (src == SRC_BASE)
        return o->base->pread(o->base->ctx, buf, len, off, e);
    struct layer *l = o->layers[src];
    ssize_t n = vs_pread_full(l->fd, buf, len, (off_t)(l->data_off + off));
    if (n != (ssize_t)len)
        return vs_err_sys(e, n < 0 ? (int)-n : EIO, "reading overlay layer %s at offset %llu", l->path,
                          (unsigned long long)off);
    return 0;
}

/* Read [off, off + len) as seen through layers [0, n) and the base; runs of blocks with one source are
 * read with one call. */
static int stack_read(struct nbd_overlay *o, size_t n, uint8_t *buf, size_t len, uint64_t off, vs_err *e)
{
    uint64_t end = off + len;
    while (off < end) {
        uint64_t b = off / NBD_BLOCK_SIZE;
        unsigned st;
        int src = block_source(o, n, b, &st);
        uint64_t run_end = VS_MIN(end, (b + 1) * NBD_BLOCK_SIZE);
        while (run_end < end && block_source(o, n, run_end / NBD_BLOCK_SIZE, &st) == src)
            run_end = VS_MIN(end, run_end + NBD_BLOCK_SIZE);
        int r = read_from(o, src, buf, run_end - off, off, e);
        if (r < 0)
            return r;
        buf += run_end - off;
        off = run_end;
    }
    return 0;
}

static int check_range(const struct nbd_overlay *o, uint64_t len, uint64_t off, vs_err *e)
{
    if (off > o->size || len > o->size - off)
        return vs_err_set(e, EINVAL, "range %llu+%llu beyond the %llu-byte disk", (unsigned long long)off,
                          (unsigned long long)len, (unsigned long long)o->size);
    return 0;
}

int nbd_overlay_read(struct nbd_overlay *o, void *buf, size_t len, uint64_t off, vs_err *e)
{
    int r = check_range(o, len, off, e);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&o->stack_lock);
    r = stack_read(o, o->nlayers, buf, len, off, e);
    pthread_rwlock_unlock(&o->stack_lock);
    return r;
}

/* ---- writing to the live layer ------------------------------------------------ */

static int write_data(struct layer *l, const void *buf, size_t len, uint64_t off, vs_err *e)
{
    int r = vs_pwrite_full(l->fd, buf, len, (off_t)(l->data_off + off));
    if (r < 0)
        return vs_err_sys(e, -r, "writing overlay layer %s at offset %llu", l->path, (unsigned long long)off);
    return 0;
}

/* Write part of block b (src NULL: zeroes): in place when the live layer holds the block, else merged with
 * what the layers below and the base hold, so no byte of the block is lost. */
static int write_partial(struct nbd_overlay *o, uint64_t b, const uint8_t *src, size_t len, size_t boff,
                         vs_err *e)
{
    struct layer *l = top(o);
    pthread_mutex_t *m = &o->stripes[b % NSTRIPES];
    uint8_t blk[NBD_BLOCK_SIZE];
    int r;
    pthread_mutex_lock(m);
    unsigned st = layer_get(l, b);
    if (st == NBD_BLK_DATA) {
        if (!src)
            memset(blk, 0, len);
        r = write_data(l, src ? src : blk, len, b * NBD_BLOCK_SIZE + boff, e);
        goto out;
    }
    uint64_t bl = block_len(o, b);
    memset(blk, 0, sizeof(blk));
    if (st == NBD_BLK_ABSENT && (r = stack_read(o, o->nlayers - 1, blk, bl, b * NBD_BLOCK_SIZE, e)) < 0)
        goto out;
    if (src)
        memcpy(blk + boff, src, len);
    else
        memset(blk + boff, 0, len);
    if ((r = write_data(l, blk, NBD_BLOCK_SIZE, b * NBD_BLOCK_SIZE, e)) == 0)
        layer_set(l, b, 1, NBD_BLK_DATA);
out:
    pthread_mutex_unlock(m);
    return r;
}

/* Split [off, off + len) into a partial head block, whole blocks, and a partial tail block. A block that
 * reaches the end of the disk counts as whole. */
struct split { uint64_t head_len, mid_b, mid_n, tail_len; };
static struct split split_range(const struct nbd_overlay *o, uint64_t len, uint64_t off)
{
    struct split s = { 0 };
    uint64_t end = off + len;
    uint64_t boff = off % NBD_BLOCK_SIZE;
    if (boff || (end < (off / NBD_BLOCK_SIZE + 1) * NBD_BLOCK_SIZE && end != o->size)) {
        s.head_len = VS_MIN(len, NBD_BLOCK_SIZE - boff);
        off += s.head_len;
        len -= s.head_len;
    }
    s.mid_b = off / NBD_BLOCK_SIZE;
    s.mid_n = len / NBD_BLOCK_SIZE;
    if (end == o->size && len % NBD_BLOCK_SIZE)
        s.mid_n++; /* the short last block of the disk is whole */
    else
        s.tail_len = len % NBD_BLOCK_SIZE;
    return s;
}

static int writable(struct nbd_overlay *o, uint64_t len, uint64_t off, vs_err *e)
{
    if (o->flags & NBD_OVL_READONLY)
        return vs_err_set(e, EROFS, "overlay %s is read-only", o->path);
    return check_range(o, len, off, e);
}

static int finish_io(struct nbd_overlay *o, unsigned io, vs_err *e)
{
    return (io & NBD_IO_FUA) ? nbd_overlay_flush(o, e) : 0;
}

int nbd_overlay_write(struct nbd_overlay *o, const void *buf, size_t len, uint64_t off, unsigned io, vs_err *e)
{
    int r = writable(o, len, off, e);
    if (r < 0 || len == 0)
        return r;
    const uint8_t *p = buf;
    struct split s = split_range(o, len, off);
    pthread_rwlock_rdlock(&o->stack_lock);
    struct layer *l = top(o);
    if (s.head_len) {
        r = write_partial(o, off / NBD_BLOCK_SIZE, p, s.head_len, off % NBD_BLOCK_SIZE, e);
        p += s.head_len;
    }
    if (r == 0 && s.mid_n) {
        uint64_t n = VS_MIN(s.mid_n * NBD_BLOCK_SIZE, o->size - s.mid_b * NBD_BLOCK_SIZE);
        if ((r = write_data(l, p, n, s.mid_b * NBD_BLOCK_SIZE, e)) == 0)
            layer_set(l, s.mid_b, s.mid_n, NBD_BLK_DATA);
        p += n;
    }
    if (r == 0 && s.tail_len)
        r = write_partial(o, s.mid_b + s.mid_n, p, s.tail_len, 0, e);
    pthread_rwlock_unlock(&o->stack_lock);
    return r < 0 ? r : finish_io(o, io, e);
}

/* Mark whole blocks ZERO or TRIM and give their space back. */
static int discard_blocks(struct nbd_overlay *o, uint64_t b, uint64_t n, unsigned st, vs_err *e)
{
    struct layer *l = top(o);
    unsigned old = layer_set(l, b, n, st);
    if (old & (1u << NBD_BLK_DATA)) {
        if (fallocate(l->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(l->data_off + b * NBD_BLOCK_SIZE), (off_t)(n * NBD_BLOCK_SIZE)) < 0 &&
            errno != EOPNOTSUPP)
            return vs_err_sys(e, errno, "releasing blocks %llu+%llu of overlay layer %s",
                              (unsigned long long)b, (unsigned long long)n, l->path);
    }
    return 0;
}

int nbd_overlay_zero(struct nbd_overlay *o, uint64_t len, uint64_t off, unsigned io, vs_err *e)
{
    int r = writable(o, len, off, e);
    if (r < 0 || len == 0)
        return r;
    struct split s = split_range(o, len, off);
    pthread_rwlock_rdlock(&o->stack_lock);
    if (s.head_len)
        r = write_partial(o, off / NBD_BLOCK_SIZE, NULL, s.head_len, off % NBD_BLOCK_SIZE, e);
    if (r == 0 && s.mid_n)
        r = discard_blocks(o, s.mid_b, s.mid_n, NBD_BLK_ZERO, e);
    if (r == 0 && s.tail_len)
        r = write_partial(o, s.mid_b + s.mid_n, NULL, s.tail_len, 0, e);
    pthread_rwlock_unlock(&o->stack_lock);
    return r < 0 ? r : finish_io(o, io, e);
}

int nbd_overlay_trim(struct nbd_overlay *o, uint64_t len, uint64_t off, unsigned io, vs_err *e)
{
    int r = writable(o, len, off, e);
    if (r < 0 || len == 0)
        return r;
    struct split s = split_range(o, len, off);
    if (!s.mid_n)
        return 0;
    pthread_rwlock_rdlock(&o->stack_lock);
    r = discard_blocks(o, s.mid_b, s.mid_n, NBD_BLK_TRIM, e);
    pthread_rwlock_unlock(&o->stack_lock);
    return r < 0 ? r : finish_io(o, io, e);
}

int nbd_overlay_flush(struct nbd_overlay *o, vs_err *e)
{
    if (o->flags & NBD_OVL_READONLY)
        return 0;
    pthread_rwlock_rdlock(&o->stack_lock);
    pthread_mutex_lock(&o->flush_lock);
    int r = layer_sync(top(o), e);
    pthread_mutex_unlock(&o->flush_lock);
    pthread_rwlock_unlock(&o->stack_lock);
    return r;
}

int nbd_overlay_extent(struct nbd_overlay *o, uint64_t off, uint64_t len, uint64_t *run, uint32_t *flags,
                       vs_err *e)
{
    int r = check_range(o, len, off, e);
    if (r < 0)
        return r;
    if (len == 0)
        return vs_err_set(e, EINVAL, "empty extent query");
    pthread_rwlock_rdlock(&o->stack_lock);
    /* Scan at most 64 MiB per call: a shorter run is allowed, and callers looping over many extents stay linear. */
    uint64_t end = VS_MIN(off + len, (off / NBD_BLOCK_SIZE + LAYER_CHUNK_BLOCKS) * NBD_BLOCK_SIZE);
    uint64_t b = off / NBD_BLOCK_SIZE;
    unsigned st;
    int src = block_source(o, o->nlayers, b, &st);
    if (src == SRC_BASE) {
        /* Base blocks: ask the base, but stop where an overlay layer takes over. */
        uint64_t stop = (b + 1) * NBD_BLOCK_SIZE;
        while (stop < end && block_source(o, o->nlayers, stop / NBD_BLOCK_SIZE, &st) == SRC_BASE)
            stop += NBD_BLOCK_SIZE;
        stop = VS_MIN(stop, end);
        if (o->base->extent) {
            r = o->base->extent(o->base->ctx, off, stop - off, run, flags, e);
        } else {
            *run = stop - off;
            *flags = 0;
        }
    } else {
        uint32_t f = st == NBD_BLK_DATA ? 0 : st == NBD_BLK_ZERO ? NBD_EXTENT_ZERO
                                                                  : NBD_EXTENT_ZERO | NBD_EXTENT_HOLE;
        uint64_t stop = (b + 1) * NBD_BLOCK_SIZE;
        unsigned st2;
        while (stop < end && (block_source(o, o->nlayers, stop / NBD_BLOCK_SIZE, &st2), st2 == st))
            stop += NBD_BLOCK_SIZE;
        *run = VS_MIN(stop, end) - off;
        *flags = f;
    }
    pthread_rwlock_unlock(&o->stack_lock);
    return r;
}

/* ---- freeze and rebase ------------------------------------------------------------ */

static int find_layer(struct nbd_overlay *o, uint32_t seq, size_t *idx, vs_err *e)
{
    for (size_t i = 0; i < o->nlayers; i++)
        if (o->layers[i]->h.seq == seq) {
            *idx = i;
            return 0;
        }
    return vs_err_set(e, ENOENT, "overlay %s has no layer %u", o->path, seq);
}

int nbd_overlay_freeze(struct nbd_overlay *o, uint32_t *seq, vs_err *e)
{
    if (o->flags & NBD_OVL_READONLY)
        return vs_err_set(e, EROFS, "overlay %s is read-only", o->path);
    pthread_mutex_lock(&o->freeze_lock);
    struct layer *old = top(o);
    struct layer_hdr h = old->h;
    h.seq++;
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.new", o->path);
    VS_AUTOFREE char *frozen = layer_path(o, old->h.seq);
    struct layer *fresh = NULL;
    int r = 0;
    if (old->h.seq == UINT32_MAX || (uint64_t)h.seq - h.base_seq >= LAYER_MAX_STACK)
        r = vs_err_set(e, ENOSPC, "overlay %s holds layers %u..%u, the most one stack may: a snapshot (rebase) "
                       "must drop frozen layers first", o->path, h.base_seq, old->h.seq);
    if (r == 0)
        r = new_layer(o, &h, &fresh, e); /* a failure leaves PATH.new to the next open's recovery */
    if (r < 0)
        goto out;
    /* The switch: PATH.<seq> names the old live layer, then PATH atomically becomes the new one. Requests
     * in flight finish first; nothing here depends on how much was written. */
    pthread_rwlock_wrlock(&o->stack_lock);
    if (link(o->path, frozen) < 0) {
        r = vs_err_sys(e, errno, "linking %s to %s", o->path, frozen);
    } else if (rename(tmp, o->path) < 0) {
        r = vs_err_sys(e, errno, "renaming %s to %s", tmp, o->path);
        unlink(frozen);
    } else {
        o->layers = vs_xrealloc(o->layers, (o->nlayers + 1) * sizeof(*o->layers));
        o->layers[o->nlayers++] = fresh;
        free(old->path);
        old->path = VS_STEAL(frozen);
        free(fresh->path);
        fresh->path = vs_xstrdup(o->path);
    }
    pthread_rwlock_unlock(&o->stack_lock);
    if (r < 0) {
        unlink(tmp);
        layer_free(fresh);
        goto out;
    }
    /* The frozen layer takes no more writes: make it complete on disk, then the rename durable. Others may
     * now open it read-only (shared lock); nobody may open it for writing. */
    flock(old->fd, LOCK_SH | LOCK_NB);
    pthread_mutex_lock(&o->flush_lock);
    r = layer_sync(old, e);
    pthread_mutex_unlock(&o->flush_lock);
    if (r == 0)
        r = vs_fsync_dir_of(o->path, e);
    if (r == 0 && seq)
        *seq = old->h.seq;
out:
    pthread_mutex_unlock(&o->freeze_lock);
    return r;
}

int nbd_overlay_layers(struct nbd_overlay *o, struct nbd_layer_info **out, size_t *n, vs_err *e)
{
    (void)e;
    pthread_rwlock_rdlock(&o->stack_lock);
    struct nbd_layer_info *v = vs_xcalloc(o->nlayers, sizeof(*v));
    for (size_t i = 0; i < o->nlayers; i++) {
        uint64_t c[4];
        layer_count(o->layers[i], c);
        v[i].seq = o->layers[i]->h.seq;
        v[i].frozen = i + 1 < o->nlayers;
        v[i].data_blocks = c[NBD_BLK_DATA];
        v[i].zero_blocks = c[NBD_BLK_ZERO];
        v[i].trim_blocks = c[NBD_BLK_TRIM];
        snprintf(v[i].path, sizeof(v[i].path), "%s", o->layers[i]->path);
    }
    *n = o->nlayers;
    pthread_rwlock_unlock(&o->stack_lock);
    *out = v;
    return 0;
}

int nbd_overlay_layer_runs(struct nbd_overlay *o, uint32_t seq, nbd_run_fn fn, void *opaque, vs_err *e)
{
    pthread_rwlock_rdlock(&o->stack_lock);
    size_t i = 0;
    int r = find_layer(o, seq, &i, e);
    /* The live layer changes under a writer; read-only (commit), nothing writes it. */
    if (r == 0 && i + 1 == o->nlayers && !(o->flags & NBD_OVL_READONLY))
        r = vs_err_set(e, EBUSY, "overlay layer %u is live; freeze it first", seq);
    struct layer *l = r == 0 ? o->layers[i] : NULL;
    for (uint64_t b = 0; r == 0 && b < o->nblocks;) {
        if (!atomic_load(&l->chunks[b / LAYER_CHUNK_BLOCKS])) {
            b = (b / LAYER_CHUNK_BLOCKS + 1) * LAYER_CHUNK_BLOCKS;
            continue;
        }
        unsigned st = layer_get(l, b);
        uint64_t n = 1;
        while (b + n < o->nblocks && layer_get(l, b + n) == st)
            n++;
        if (st)
            r = fn(opaque, b, n, st);
        b += n;
    }
    pthread_rwlock_unlock(&o->stack_lock);
    return r;
}

int nbd_overlay_read_at(struct nbd_overlay *o, uint32_t seq, void *buf, size_t len, uint64_t off, vs_err *e)
{
    int r = check_range(o, len, off, e);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&o->stack_lock);
    size_t i = 0;
    if ((r = find_layer(o, seq, &i, e)) == 0)
        r = stack_read(o, i + 1, buf, len, off, e);
    pthread_rwlock_unlock(&o->stack_lock);
    return r;
}

int nbd_overlay_rebase(struct nbd_overlay *o, uint32_t seq, struct nbd_base *new_base, vs_err *e)
{
    if (o->flags & NBD_OVL_READONLY)
        return vs_err_set(e, EROFS, "overlay %s is read-only", o->path);
    if (new_base->size != o->size)
        return vs_err_set(e, EINVAL, "new base has %llu bytes, overlay %s serves %llu",
                          (unsigned long long)new_base->size, o->path, (unsigned long long)o->size);
    pthread_mutex_lock(&o->freeze_lock);
    size_t k = 0;
    int r = find_layer(o, seq, &k, e);
    if (r == 0 && k + 1 == o->nlayers)
        r = vs_err_set(e, EBUSY, "overlay layer %u is live; freeze it before rebasing", seq);
    if (r < 0) {
        pthread_mutex_unlock(&o->freeze_lock);
        return r;
    }
    struct layer_hdr h = top(o)->h;
    memcpy(h.base_uuid, new_base->uuid, 16);
    h.base_seq = seq + 1;
    nbd_overlay_flush(o, NULL); /* keeps the header write below short */
    pthread_rwlock_wrlock(&o->stack_lock);
    r = layer_write_hdr(top(o), &h, e);
    struct nbd_base *old_base = NULL;
    struct layer **gone = NULL;
    if (r == 0) {
        old_base = o->base;
        o->base = new_base;
        gone = vs_xmalloc((k + 1) * sizeof(*gone));
        memcpy(gone, o->layers, (k + 1) * sizeof(*gone));
        memmove(o->layers, o->layers + k + 1, (o->nlayers - k - 1) * sizeof(*o->layers));
        o->nlayers -= k + 1;
    }
    pthread_rwlock_unlock(&o->stack_lock);
    if (r == 0) {
        for (size_t i = 0; i <= k; i++) { /* bottom first: see remove_leftovers() */
            unlink(gone[i]->path);
            layer_free(gone[i]);
        }
        free(gone);
        vs_fsync_dir_of(o->path, NULL);
        nbd_base_close(old_base);
    }
    pthread_mutex_unlock(&o->freeze_lock);
    return r;
}
