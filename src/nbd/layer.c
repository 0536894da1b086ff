/* nbd: one overlay layer file — header, 2-bit block map, sparse data area (docs/OVERLAY.md). */
#include "nbd/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* Header field offsets (little-endian). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HDRLEN = 12, H_INCOMPAT = 16, H_COMPAT = 24, H_DISK_SIZE = 32,
    H_BLOCK_SIZE = 40, H_SEQ = 44, H_BASE_SEQ = 48, H_RESERVED = 52, H_BASE_UUID = 56, H_STACK_ID = 72,
    H_MAP_OFF = 88, H_DATA_OFF = 96, H_CHECKSUM = 104, H_LEN = 112,
};

static void layer_geometry(struct layer *l)
{
    l->nblocks = VS_DIV_ROUND_UP(l->h.disk_size, NBD_BLOCK_SIZE);
    l->nchunks = VS_DIV_ROUND_UP(l->nblocks, LAYER_CHUNK_BLOCKS);
    l->map_off = LAYER_HDR_SIZE;
    l->data_off = l->map_off + l->nchunks * LAYER_CHUNK_BYTES;
}

static void hdr_encode(const struct layer *l, const struct layer_hdr *h, uint8_t *p)
{
    memset(p, 0, LAYER_HDR_SIZE);
    memcpy(p + H_MAGIC, LAYER_MAGIC, 8);
    vs_put_le32(p + H_VERSION, LAYER_VERSION);
    vs_put_le32(p + H_HDRLEN, H_LEN);
    vs_put_le64(p + H_DISK_SIZE, h->disk_size);
    vs_put_le32(p + H_BLOCK_SIZE, NBD_BLOCK_SIZE);
    vs_put_le32(p + H_SEQ, h->seq);
    vs_put_le32(p + H_BASE_SEQ, h->base_seq);
    memcpy(p + H_BASE_UUID, h->base_uuid, 16);
    memcpy(p + H_STACK_ID, h->stack_id, 16);
    vs_put_le64(p + H_MAP_OFF, l->map_off);
    vs_put_le64(p + H_DATA_OFF, l->data_off);
    vs_put_le64(p + H_CHECKSUM, XXH64(p, H_CHECKSUM, 0));
}

static int hdr_decode(struct layer *l, const uint8_t *p, vs_err *e)
{
    if (memcmp(p + H_MAGIC, LAYER_MAGIC, 8))
        return vs_err_set(e, EINVAL, "%s: not a vmsnap overlay layer (bad magic)", l->path);
    if (vs_get_le32(p + H_VERSION) != LAYER_VERSION)
        return vs_err_set(e, ENOTSUP, "%s: overlay version %u, expected %u", l->path,
                          vs_get_le32(p + H_VERSION), LAYER_VERSION);
    if (vs_get_le64(p + H_CHECKSUM) != XXH64(p, H_CHECKSUM, 0))
        return vs_err_set(e, EINVAL, "%s: overlay header checksum mismatch", l->path);
    if (vs_get_le64(p + H_INCOMPAT))
        return vs_err_set(e, ENOTSUP, "%s: overlay uses unknown incompatible features 0x%llx", l->path,
                          (unsigned long long)vs_get_le64(p + H_INCOMPAT));
    if (vs_get_le32(p + H_BLOCK_SIZE) != NBD_BLOCK_SIZE)
        return vs_err_set(e, EINVAL, "%s: overlay block size %u, expected %u", l->path,
                          vs_get_le32(p + H_BLOCK_SIZE), NBD_BLOCK_SIZE);
    l->h.disk_size = vs_get_le64(p + H_DISK_SIZE);
    if (l->h.disk_size == 0 || l->h.disk_size > (1ULL << 50))
        return vs_err_set(e, EINVAL, "%s: overlay disk size %llu out of range", l->path,
                          (unsigned long long)l->h.disk_size);
    l->h.seq = vs_get_le32(p + H_SEQ);
    l->h.base_seq = vs_get_le32(p + H_BASE_SEQ);
    memcpy(l->h.base_uuid, p + H_BASE_UUID, 16);
    memcpy(l->h.stack_id, p + H_STACK_ID, 16);
    layer_geometry(l);
    if (vs_get_le64(p + H_MAP_OFF) != l->map_off || vs_get_le64(p + H_DATA_OFF) != l->data_off)
        return vs_err_set(e, EINVAL, "%s: overlay map/data offsets do not match the disk size", l->path);
    if (l->h.base_seq > l->h.seq)
        return vs_err_set(e, EINVAL, "%s: overlay base layer %u above layer %u", l->path, l->h.base_seq,
                          l->h.seq);
    if (l->h.base_seq == 0 || (uint64_t)l->h.seq - l->h.base_seq >= LAYER_MAX_STACK)
        return vs_err_set(e, EINVAL, "%s: overlay layers %u..%u: expected 1 to %u layers numbered from 1",
                          l->path, l->h.base_seq, l->h.seq, LAYER_MAX_STACK);
    return 0;
}

static struct layer *layer_alloc(const char *path)
{
    struct layer *l = vs_xcalloc(1, sizeof(*l));
    l->fd = -1;
    l->path = vs_xstrdup(path);
    return l;
}

static void layer_alloc_map(struct layer *l)
{
    l->chunks = vs_xcalloc(l->nchunks, sizeof(*l->chunks));
    l->dirty = vs_xcalloc(l->nchunks, sizeof(*l->dirty));
}

void layer_free(struct layer *l)
{
    if (!l)
        return;
    if (l->chunks)
        for (uint64_t c = 0; c < l->nchunks; c++)
            free(atomic_load(&l->chunks[c]));
    free(l->chunks);
    free((void *)l->dirty);
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

int layer_create(const char *path, int fd, const struct layer_hdr *h, struct layer **out, vs_err *e)
{
    struct layer *l = layer_alloc(path);
    l->fd = fd;
    l->h = *h;
    layer_geometry(l);
    uint8_t hdr[LAYER_HDR_SIZE];
    hdr_encode(l, h, hdr);
    int r;
    /* The file spans header + map + data; holes cost nothing. Truncated first: a reused file may hold a
     * stale map. */
    if (ftruncate(l->fd, 0) < 0 || ftruncate(l->fd, (off_t)(l->data_off + l->nblocks * NBD_BLOCK_SIZE)) < 0 ||
        (r = vs_pwrite_full(l->fd, hdr, sizeof(hdr), 0)) < 0 || fdatasync(l->fd) < 0) {
        r = vs_err_sys(e, errno, "writing overlay layer %s", path);
        layer_free(l);
        return r;
    }
    layer_alloc_map(l);
    *out = l;
    return 0;
}

/* Read the map chunks that hold data; SEEK_DATA skips the holes of a sparse map. */
static int load_map(struct layer *l, vs_err *e)
{
    uint64_t end = l->data_off;
    off_t pos = (off_t)l->map_off;
    uint8_t buf[LAYER_CHUNK_BYTES];
    while ((uint64_t)pos < end) {
        off_t d = lseek(l->fd, pos, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            break;
        if (d < 0)
            d = pos; /* no SEEK_DATA: read everything */
        if ((uint64_t)d >= end)
            break;
        uint64_t c = ((uint64_t)d - l->map_off) / LAYER_CHUNK_BYTES;
        ssize_t n = vs_pread_full(l->fd, buf, sizeof(buf), (off_t)(l->map_off + c * LAYER_CHUNK_BYTES));
        if (n != (ssize_t)sizeof(buf))
            return vs_err_sys(e, n < 0 ? (int)-n : EIO, "%s: reading block map chunk %llu", l->path,
                              (unsigned long long)c);
        bool any = false;
        for (size_t i = 0; i < sizeof(buf) && !any; i++)
            any = buf[i] != 0;
        if (any) {
            uint64_t *words = vs_xmalloc(LAYER_CHUNK_BYTES);
            for (unsigned w = 0; w < LAYER_CHUNK_WORDS; w++)
                words[w] = vs_get_le64(buf + 8 * w);
            /* Bits of blocks past the end of the disk must be zero. */
            uint64_t first = c * LAYER_CHUNK_BLOCKS;
            for (uint64_t b = l->nblocks; b < first + LAYER_CHUNK_BLOCKS; b++)
                if (b >= first && (words[(b - first) / 32] >> ((b - first) % 32 * 2) & 3)) {
                    free(words);
                    return vs_err_set(e, EINVAL, "%s: block map marks block %llu past the end of the disk",
                                      l->path, (unsigned long long)b);
                }
            atomic_store(&l->chunks[c], words);
        }
        pos = (off_t)(l->map_off + (c + 1) * LAYER_CHUNK_BYTES);
    }
    return 0;
}

int layer_open(const char *path, int fd, bool rdonly, struct layer **out, vs_err *e)
{
    struct layer *l = layer_alloc(path);
    uint8_t hdr[LAYER_HDR_SIZE];
    int r;
    l->fd = fd >= 0 ? fd : open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (l->fd < 0) {
        r = vs_err_sys(e, errno, "opening overlay layer %s", path);
        goto fail;
    }
    ssize_t n = vs_pread_full(l->fd, hdr, sizeof(hdr), 0);
    if (n < 0) {
        r = vs_err_sys(e, (int)-n, "reading overlay layer %s", path);
        goto fail;
    }
    if (n < H_LEN) {
        r = vs_err_set(e, EINVAL, "%s: overlay layer truncated (%zd header bytes, expected %d)", path, n, H_LEN);
        goto fail;
    }
    if ((r = hdr_decode(l, hdr, e)) < 0)
        goto fail;
    layer_alloc_map(l);
    if ((r = load_map(l, e)) < 0)
        goto fail;
    *out = l;
    return 0;
fail:
    layer_free(l);
    return r;
}

static uint64_t *chunk_get_or_alloc(struct layer *l, uint64_t c)
{
    uint64_t *p = atomic_load_explicit(&l->chunks[c], memory_order_acquire);
    if (p)
        return p;
    uint64_t *fresh = vs_xcalloc(LAYER_CHUNK_WORDS, sizeof(uint64_t));
    if (atomic_compare_exchange_strong(&l->chunks[c], &p, fresh))
        return fresh;
    free(fresh);
    return p;
}

unsigned layer_set(struct layer *l, uint64_t b, uint64_t n, unsigned st)
{
    unsigned old = 0;
    uint64_t pattern = st * 0x5555555555555555ULL; /* st repeated in every 2-bit slot */
    while (n) {
        uint64_t c = b / LAYER_CHUNK_BLOCKS, in = b % LAYER_CHUNK_BLOCKS;
        uint64_t *words = chunk_get_or_alloc(l, c);
        uint64_t bit = in % 32, cnt = VS_MIN(n, 32 - bit);
        uint64_t mask = (cnt == 32 ? ~0ULL : ((1ULL << (2 * cnt)) - 1)) << (2 * bit);
        _Atomic uint64_t *w = (_Atomic uint64_t *)&words[in / 32];
        uint64_t cur = atomic_load(w), next;
        do {
            next = (cur & ~mask) | (pattern & mask);
        } while (cur != next && !atomic_compare_exchange_weak(w, &cur, next));
        for (uint64_t i = 0; i < cnt; i++)
            old |= 1u << ((cur >> (2 * (bit + i))) & 3);
        if (cur != next)
            atomic_store_explicit(&l->dirty[c], 1, memory_order_release);
        b += cnt;
        n -= cnt;
    }
    return old;
}

int layer_sync(struct layer *l, vs_err *e)
{
    /* Snapshot the changed chunks first: a state seen here was set after its data was written, so the
     * fdatasync below covers that data before the map that claims it reaches the disk. */
    uint64_t ndirty = 0, cap = 0;
    uint64_t *idx = NULL;
    uint8_t *snap = NULL;
    for (uint64_t c = 0; c < l->nchunks; c++) {
        if (!atomic_load_explicit(&l->dirty[c], memory_order_acquire))
            continue;
        atomic_store(&l->dirty[c], 0);
        if (ndirty == cap) {
            cap = cap ? 2 * cap : 16;
            idx = vs_xrealloc(idx, cap * sizeof(*idx));
            snap = vs_xrealloc(snap, cap * LAYER_CHUNK_BYTES);
        }
        uint64_t *words = atomic_load(&l->chunks[c]);
        for (unsigned w = 0; w < LAYER_CHUNK_WORDS; w++)
            vs_put_le64(snap + ndirty * LAYER_CHUNK_BYTES + 8 * w,
                        atomic_load((_Atomic uint64_t *)&words[w]));
        idx[ndirty++] = c;
    }
    int r = 0;
    if (fdatasync(l->fd) < 0) {
        r = vs_err_sys(e, errno, "flushing overlay layer %s", l->path);
        goto out;
    }
    for (uint64_t i = 0; i < ndirty; i++) {
        r = vs_pwrite_full(l->fd, snap + i * LAYER_CHUNK_BYTES, LAYER_CHUNK_BYTES,
                           (off_t)(l->map_off + idx[i] * LAYER_CHUNK_BYTES));
        if (r < 0) {
            vs_err_sys(e, -r, "writing block map of overlay layer %s", l->path);
            goto out;
        }
    }
    if (ndirty && fdatasync(l->fd) < 0)
        r = vs_err_sys(e, errno, "flushing block map of overlay layer %s", l->path);
out:
    if (r < 0) /* try again at the next flush */
        for (uint64_t i = 0; i < ndirty; i++)
            atomic_store(&l->dirty[idx[i]], 1);
    free(idx);
    free(snap);
    return r;
}

int layer_write_hdr(struct layer *l, const struct layer_hdr *h, vs_err *e)
{
    uint8_t hdr[LAYER_HDR_SIZE];
    hdr_encode(l, h, hdr);
    int r = vs_pwrite_full(l->fd, hdr, sizeof(hdr), 0);
    if (r < 0 || fdatasync(l->fd) < 0)
        return vs_err_sys(e, r < 0 ? -r : errno, "writing header of overlay layer %s", l->path);
    l->h = *h;
    return 0;
}

void layer_count(const struct layer *l, uint64_t counts[4])
{
    memset(counts, 0, 4 * sizeof(uint64_t));
    for (uint64_t c = 0; c < l->nchunks; c++) {
        uint64_t *words = atomic_load(&l->chunks[c]);
        if (!words)
            continue;
        for (unsigned w = 0; w < LAYER_CHUNK_WORDS; w++) {
            uint64_t v = atomic_load((_Atomic uint64_t *)&words[w]);
            for (unsigned i = 0; v && i < 32; i++, v >>= 2)
                counts[v & 3]++;
        }
    }
    counts[0] = 0; /* absent blocks are not counted */
}
