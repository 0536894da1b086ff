/* image: the qcow2 reader, written from QEMU's docs/interop/qcow2.txt (versions 2 and 3; big-endian fields).
 * Only what reading needs: header, extensions, the active L1 table and L2 tables (a small LRU cache), zero and
 * unallocated clusters, subclusters (extended L2), compressed clusters. Refcounts and snapshots are not read. */
#include "image/image_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define Q_HDR_V2 72u
#define Q_HDR_V3 104u
#define Q_MAX_L1_ENTRIES (32u << 20 >> 3)          /* QEMU's limit: a 32 MiB L1 table */
#define Q_MAX_SIZE (1ull << 62)                     /* archive streams are < 2^62 bytes */
#define Q_OFFSET_MASK 0x00fffffffffffe00ull         /* bits 9..55: host offset in L1 and L2 entries */
#define Q_L1_RESERVED 0x7f000000000001ffull         /* bits 0..8 and 56..62 */
#define Q_L2_RESERVED 0x3f000000000001feull         /* bits 1..8 and 56..61 of a standard entry */
#define Q_L2_ZERO 1ull
#define Q_L2_COMPRESSED (1ull << 62)
#define Q_L2_SLOTS 8

enum { Q_INC_DIRTY = 1, Q_INC_CORRUPT = 2, Q_INC_DATA_FILE = 4, Q_INC_COMPRESSION = 8, Q_INC_EXTL2 = 16,
       Q_INC_KNOWN = 31 };
enum { Q_EXT_END = 0, Q_EXT_BACKING_FMT = 0xe2792aca, Q_EXT_FEATURES = 0x6803f857 };
enum q_kind { Q_UNALLOC, Q_ZERO, Q_DATA, Q_COMP };

/* A run of guest bytes with one status. DATA: host = file offset of the run's first byte; COMP: host = entry. */
struct q_run { enum q_kind kind; uint64_t len, host; };

struct qcow2 {
    unsigned version, cluster_bits, l2_bits, sc_bits;   /* l2_bits: log2 of entries per L2 table */
    uint64_t cluster_size;
    bool ext_l2, zstd;
    uint64_t *l1;                                       /* L2 table offsets, only the entries the size needs */
    uint64_t l1_used;
    struct { uint64_t off, used; uint8_t *t; } l2[Q_L2_SLOTS];
    uint64_t tick;
    uint8_t *cluster, *zbuf;                            /* last decompressed cluster and its compressed bytes */
    uint64_t cluster_ent;                               /* its L2 entry (0: none) */
    z_stream zs;
    bool zs_ready;
    ZSTD_DCtx *zd;
};

#define Q_ERR(e, ...) vs_err_set(e, EINVAL, "'%s' is not a valid qcow2 image: " __VA_ARGS__)

/* ---- header ---------------------------------------------------------------------------------------------- */
struct q_hdr {
    uint64_t backing_off, size, l1_off, incompat;
    uint32_t backing_len, crypt, l1_size, header_len;
    uint8_t compression;
    enum img_format backing_fmt;
};

static const char *feature_name(const uint8_t *c0, size_t off, size_t len, unsigned bit, char *buf, size_t blen)
{
    for (size_t i = 0; i + 48 <= len; i += 48)
        if (c0[off + i] == 0 && c0[off + i + 1] == bit) {
            snprintf(buf, blen, "%.46s", (const char *)c0 + off + i + 2);
            return buf;
        }
    return "no name given";
}

/* Extensions follow the header inside the first cluster (c0): type, length, data padded to 8 bytes. */
static int q_extensions(struct img *im, const uint8_t *c0, size_t c0len, struct q_hdr *h, size_t *feat_off,
                        size_t *feat_len, vs_err *e)
{
    for (size_t off = h->header_len; off + 8 <= c0len;) {
        uint32_t type = vs_get_be32(c0 + off), len = vs_get_be32(c0 + off + 4);
        if (type == Q_EXT_END)
            break;
        if (len > c0len - off - 8)
            return Q_ERR(e, "header extension 0x%08" PRIx32 " at offset %zu is %" PRIu32
                         " bytes long, past the first cluster", im->name, type, off, len);
        const uint8_t *d = c0 + off + 8;
        if (type == Q_EXT_FEATURES) {
            *feat_off = off + 8;
            *feat_len = len;
        } else if (type == Q_EXT_BACKING_FMT) {
            if (len == 3 && !memcmp(d, "raw", 3))
                h->backing_fmt = IMG_FORMAT_RAW;
            else if (len == 5 && !memcmp(d, "qcow2", 5))
                h->backing_fmt = IMG_FORMAT_QCOW2;
            else
                return vs_err_set(e, ENOTSUP, "'%s': backing file format '%.*s' is not supported (raw and qcow2 "
                                  "are); flatten it first: qemu-img convert -O qcow2 '%s' FLAT.qcow2", im->name,
                                  (int)VS_MIN(len, 32u), (const char *)d, im->name);
        }
        off += 8 + (((size_t)len + 7) & ~(size_t)7);
    }
    return 0;
}

static int q_features(struct img *im, struct qcow2 *q, const struct q_hdr *h, const uint8_t *c0, size_t foff,
                      size_t flen, vs_err *e)
{
    char nm[64];
    uint64_t unknown = h->incompat & ~(uint64_t)Q_INC_KNOWN;
    if (unknown) {
        unsigned bit = (unsigned)__builtin_ctzll(unknown);
        return vs_err_set(e, ENOTSUP, "'%s' uses incompatible qcow2 feature bit %u (%s), which vmsnap does not "
                          "support", im->name, bit, feature_name(c0, foff, flen, bit, nm, sizeof nm));
    }
    if (h->incompat & Q_INC_CORRUPT)
        return vs_err_set(e, EINVAL, "'%s' is marked corrupt (qcow2 incompatible feature bit 1); check it first: "
                          "qemu-img check -r all '%s'", im->name, im->name);
    if (h->incompat & Q_INC_DATA_FILE)
        return vs_err_set(e, ENOTSUP, "'%s' keeps its data in an external data file (qcow2 incompatible feature "
                          "bit 2), which vmsnap does not support; convert it first: qemu-img convert -O qcow2 '%s' "
                          "ONE.qcow2", im->name, im->name);
    bool has_ctype = h->header_len > Q_HDR_V3;
    if (h->incompat & Q_INC_COMPRESSION) {
        if (!has_ctype || h->compression != 1)
            return vs_err_set(e, ENOTSUP, "'%s': qcow2 compression type %u is not supported (0 zlib, 1 zstd)",
                              im->name, has_ctype ? h->compression : 0);
        q->zstd = true;
    } else if (has_ctype && h->compression) {
        return Q_ERR(e, "compression type %u without the compression type feature bit", im->name,
                     h->compression);
    }
    if (h->incompat & Q_INC_EXTL2) {
        if (q->cluster_bits < 14)
            return Q_ERR(e, "extended L2 entries need clusters of at least 16 KiB (has %" PRIu64 ")", im->name,
                         q->cluster_size);
        q->ext_l2 = true;
    }
    return 0;
}

static int q_header(struct img *im, struct qcow2 *q, struct q_hdr *h, uint8_t **c0out, size_t *c0len,
                    vs_err *e)
{
    uint8_t b[Q_HDR_V3 + 8] = { 0 };
    if (im->file_size < Q_HDR_V2)
        return Q_ERR(e, "%" PRIu64 " bytes is too short for a header", im->name, im->file_size);
    int r = img_file_pread(im, b, sizeof b, 0, true, e);
    if (r < 0)
        return r;
    q->version = vs_get_be32(b + 4);
    q->cluster_bits = vs_get_be32(b + 20);
    if (q->version != 2 && q->version != 3)
        return vs_err_set(e, ENOTSUP, "'%s': qcow2 version %u is not supported (2 and 3 are)", im->name,
                          q->version);
    if (q->cluster_bits < 9 || q->cluster_bits > 21)
        return Q_ERR(e, "cluster_bits %u is outside 9..21", im->name, q->cluster_bits);
    q->cluster_size = 1ull << q->cluster_bits;
    h->backing_off = vs_get_be64(b + 8);
    h->backing_len = vs_get_be32(b + 16);
    h->size = vs_get_be64(b + 24);
    h->crypt = vs_get_be32(b + 32);
    h->l1_size = vs_get_be32(b + 36);
    h->l1_off = vs_get_be64(b + 40);
    h->header_len = Q_HDR_V2;
    if (q->version == 3) {
        h->incompat = vs_get_be64(b + 72);
        h->header_len = vs_get_be32(b + 100);
        if (h->header_len < Q_HDR_V3 || h->header_len % 8 || h->header_len > q->cluster_size
            || h->header_len > im->file_size)
            return Q_ERR(e, "header_length %" PRIu32 " (must be a multiple of 8 from 104 to the cluster "
                         "size, inside the file)", im->name, h->header_len);
        if (vs_get_be32(b + 96) > 6)
            return Q_ERR(e, "refcount_order %" PRIu32 " is above 6", im->name, vs_get_be32(b + 96));
        h->compression = h->header_len > Q_HDR_V3 ? b[104] : 0;
    }
    if (h->crypt)
        return vs_err_set(e, ENOTSUP, "'%s' is encrypted (%s), which vmsnap does not support; decrypt it first "
                          "with qemu-img convert", im->name, h->crypt == 1 ? "AES" : h->crypt == 2 ? "LUKS" : "unknown method");
    /* The first cluster holds the header, its extensions and usually the backing file name. */
    *c0len = (size_t)VS_MIN(q->cluster_size, im->file_size);
    *c0out = vs_xmalloc(*c0len);
    return img_file_pread(im, *c0out, *c0len, 0, false, e);
}

/* ---- L1 -------------------------------------------------------------------------------------------------- */
static int q_l1(struct img *im, struct qcow2 *q, const struct q_hdr *h, vs_err *e)
{
    if (h->size >= Q_MAX_SIZE)
        return Q_ERR(e, "virtual size %" PRIu64 " is too large", im->name, h->size);
    unsigned span_bits = q->cluster_bits + q->l2_bits;   /* guest bytes per L1 entry: at most 2^39 */
    uint64_t need = (h->size + (1ull << span_bits) - 1) >> span_bits;
    if (h->l1_size < need)
        return Q_ERR(e, "L1 table has %" PRIu32 " entries, the virtual size %" PRIu64 " needs %" PRIu64,
                     im->name, h->l1_size, h->size, need);
    if (h->l1_size > Q_MAX_L1_ENTRIES)
        return Q_ERR(e, "L1 table of %" PRIu32 " entries is larger than 32 MiB", im->name, h->l1_size);
    q->l1_used = need;
    q->l1 = vs_xcalloc((size_t)need + 1, sizeof *q->l1);
    if (!need)
        return 0;
    uint64_t bytes = need * 8;
    if (h->l1_off & (q->cluster_size - 1) || !h->l1_off || h->l1_off > im->file_size
        || bytes > im->file_size - h->l1_off)
        return Q_ERR(e, "L1 table at offset %" PRIu64 " (%" PRIu64 " bytes) is unaligned or outside the file "
                     "(%" PRIu64 " bytes)", im->name, h->l1_off, bytes, im->file_size);
    VS_AUTOFREE uint8_t *raw = vs_xmalloc((size_t)bytes);
    int r = img_file_pread(im, raw, (size_t)bytes, h->l1_off, false, e);
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < need; i++) {
        uint64_t ent = vs_get_be64(raw + i * 8), off = ent & Q_OFFSET_MASK;
        if (ent & Q_L1_RESERVED & ~0x1ffull)
            return Q_ERR(e, "L1 entry %" PRIu64 " (0x%016" PRIx64 ") has reserved bits set", im->name, i, ent);
        if (ent & 0x1ff || off & (q->cluster_size - 1) || off > im->file_size
            || q->cluster_size > im->file_size - off)
            return Q_ERR(e, "L1 entry %" PRIu64 " points to an L2 table at offset %" PRIu64 " that is "
                         "unaligned or outside the file (%" PRIu64 " bytes)", im->name, i, off, im->file_size);
        q->l1[i] = off;
    }
    return 0;
}

/* ---- mapping --------------------------------------------------------------------------------------------- */
static int q_l2(struct img *im, struct qcow2 *q, uint64_t off, const uint8_t **t, vs_err *e)
{
    unsigned victim = 0;
    for (unsigned i = 0; i < Q_L2_SLOTS; i++) {
        if (q->l2[i].t && q->l2[i].off == off) {
            q->l2[i].used = ++q->tick;
            *t = q->l2[i].t;
            return 0;
        }
        if (q->l2[i].used < q->l2[victim].used)
            victim = i;
    }
    if (!q->l2[victim].t)
        q->l2[victim].t = vs_xmalloc((size_t)q->cluster_size);
    q->l2[victim].off = 0;
    q->l2[victim].used = 0;
    int r = img_file_pread(im, q->l2[victim].t, (size_t)q->cluster_size, off, false, e);
    if (r < 0)
        return r;
    q->l2[victim].off = off;
    q->l2[victim].used = ++q->tick;
    *t = q->l2[victim].t;
    return 0;
}

static enum q_kind sc_kind(uint64_t bitmap, unsigned sc)
{
    return bitmap >> sc & 1 ? Q_DATA : bitmap >> (32 + sc) & 1 ? Q_ZERO : Q_UNALLOC;
}

/* The run starting at guest offset off (< size), at most maxlen bytes, inside one L2 entry or one empty L1 span. */
static int q_map(struct img *im, uint64_t off, uint64_t maxlen, struct q_run *run, vs_err *e)
{
    struct qcow2 *q = im->priv;
    uint64_t cs = q->cluster_size, co = off & (cs - 1), ci = off >> q->cluster_bits;
    uint64_t l1i = ci >> q->l2_bits, l2i = ci & ((1ull << q->l2_bits) - 1);
    *run = (struct q_run){ .kind = Q_UNALLOC, .len = VS_MIN(maxlen, cs - co) };
    if (l1i >= q->l1_used)
        VS_BUG("guest offset %" PRIu64 " beyond the L1 table", off);
    if (!q->l1[l1i]) {
        run->len = VS_MIN(maxlen, ((l1i + 1) << (q->cluster_bits + q->l2_bits)) - off);
        return 0;
    }
    const uint8_t *t;
    int r = q_l2(im, q, q->l1[l1i], &t, e);
    if (r < 0)
        return r;
    const uint8_t *p = t + (l2i << (q->ext_l2 ? 4 : 3));
    uint64_t ent = vs_get_be64(p), bitmap = q->ext_l2 ? vs_get_be64(p + 8) : 0, host = ent & Q_OFFSET_MASK;
    const char *bad = NULL;
    if (ent & Q_L2_COMPRESSED) {
        if (bitmap)
            bad = "a compressed cluster with a subcluster bitmap";
        run->kind = Q_COMP;
        run->host = ent;
    } else if (ent & Q_L2_RESERVED || (ent & Q_L2_ZERO && (q->version == 2 || q->ext_l2))) {
        bad = "reserved bits set";
    } else if (host & (cs - 1) || (host >= im->file_size && (q->ext_l2 ? (uint32_t)bitmap : !(ent & Q_L2_ZERO)))) {
        bad = "a data cluster unaligned or outside the file";
    } else if (q->ext_l2) {
        unsigned sc = (unsigned)(co >> q->sc_bits), end = sc + 1;
        if ((uint32_t)bitmap & (uint32_t)(bitmap >> 32))
            bad = "subclusters both allocated and zero";
        else if ((uint32_t)bitmap && !host)
            bad = "allocated subclusters without a host cluster";
        while (end < 32 && sc_kind(bitmap, end) == sc_kind(bitmap, sc))
            end++;
        run->kind = sc_kind(bitmap, sc);
        run->len = VS_MIN(maxlen, ((uint64_t)end << q->sc_bits) - co);
    } else {
        run->kind = ent & Q_L2_ZERO ? Q_ZERO : host ? Q_DATA : Q_UNALLOC;
    }
    if (bad)
        return Q_ERR(e, "L2 table at offset %" PRIu64 ", entry %" PRIu64 " (guest offset %" PRIu64 ", 0x%016"
                     PRIx64 "): %s", im->name, q->l1[l1i], l2i, off - co, ent, bad);
    if (run->kind == Q_DATA)
        run->host = host + co;
    return 0;
}

/* Inflate (raw deflate, as QEMU writes it) or zstd-decompress one cluster into q->cluster. */
static int q_decompress(struct img *im, struct qcow2 *q, uint64_t ent, uint64_t guest, vs_err *e)
{
    if (q->cluster_ent == ent)
        return 0;
    q->cluster_ent = 0;
    unsigned x = 62 - (q->cluster_bits - 8);
    uint64_t host = ent & ((1ull << x) - 1), cs = q->cluster_size;
    uint64_t len = ((((ent & ((1ull << 62) - 1)) >> x) + 1) << 9) - (host & 511);   /* <= 2 * cs */
    if (host >> 56 || host >= im->file_size)
        return Q_ERR(e, "compressed cluster for guest offset %" PRIu64 " at offset %" PRIu64 " is outside the "
                     "file", im->name, guest, host);
    len = VS_MIN(len, im->file_size - host);            /* the last sector may end the file early */
    if (!q->cluster) {
        q->cluster = vs_xmalloc((size_t)cs);
        q->zbuf = vs_xmalloc((size_t)cs * 2);
    }
    int r = img_file_pread(im, q->zbuf, (size_t)len, host, false, e);
    if (r < 0)
        return r;
    bool ok;
    if (q->zstd) {
        if (!q->zd)
            q->zd = ZSTD_createDCtx();
        ZSTD_DCtx_reset(q->zd, ZSTD_reset_session_only);
        ZSTD_inBuffer in = { q->zbuf, (size_t)len, 0 };
        ZSTD_outBuffer out = { q->cluster, (size_t)cs, 0 };
        size_t zr = 1;
        while (out.pos < out.size && in.pos < in.size && zr && !ZSTD_isError(zr))
            zr = ZSTD_decompressStream(q->zd, &out, &in);
        ok = !ZSTD_isError(zr) && out.pos == out.size;
    } else {
        if (!q->zs_ready && inflateInit2(&q->zs, -15) != Z_OK)
            return vs_err_set(e, ENOMEM, "'%s': cannot set up zlib", im->name);
        q->zs_ready = true;
        inflateReset(&q->zs);
        q->zs.next_in = q->zbuf;
        q->zs.avail_in = (uInt)len;
        q->zs.next_out = q->cluster;
        q->zs.avail_out = (uInt)cs;
        int zr = inflate(&q->zs, Z_FINISH);
        ok = (zr == Z_STREAM_END || zr == Z_OK || zr == Z_BUF_ERROR) && q->zs.avail_out == 0;
    }
    if (!ok)
        return Q_ERR(e, "compressed cluster for guest offset %" PRIu64 " at offset %" PRIu64 " does not "
                     "decompress (%s) to a whole cluster", im->name, guest, host, q->zstd ? "zstd" : "zlib");
    q->cluster_ent = ent;
    return 0;
}

/* Unallocated: the backing file's bytes (zeros past its end), or zeros. */
static int q_backing_read(struct img *im, uint8_t *p, uint64_t n, uint64_t off, vs_err *e)
{
    uint64_t have = 0;
    if (im->backing && off < img_size(im->backing)) {
        have = VS_MIN(n, img_size(im->backing) - off);
        int r = img_pread(im->backing, p, (size_t)have, off, e);
        if (r < 0)
            return r;
    }
    memset(p + have, 0, (size_t)(n - have));
    return 0;
}

static int q_pread(struct img *im, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct qcow2 *q = im->priv;
    uint8_t *p = buf;
    while (len) {
        struct q_run run, next;
        int r = q_map(im, off, len, &run, e);
        uint64_t n = run.len;
        if (r < 0)
            return r;
        switch (run.kind) {
        case Q_UNALLOC:
            r = q_backing_read(im, p, n, off, e);
            break;
        case Q_ZERO:
            memset(p, 0, (size_t)n);
            break;
        case Q_COMP:
            r = q_decompress(im, q, run.host, off, e);
            if (r == 0)
                memcpy(p, q->cluster + (off & (q->cluster_size - 1)), (size_t)n);
            break;
        case Q_DATA:   /* one pread for clusters that follow each other in the file too */
            while (n < len && (r = q_map(im, off + n, len - n, &next, e)) == 0 && next.kind == Q_DATA
                   && next.host == run.host + n)
                n += next.len;
            if (r == 0)
                r = img_file_pread(im, p, (size_t)n, run.host, true, e);
            break;
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

static int q_status1(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e)
{
    struct q_run m;
    int r = q_map(im, off, len, &m, e);
    if (r < 0)
        return r;
    *run = m.len;
    *flags = m.kind == Q_DATA || m.kind == Q_COMP ? IMG_STATUS_DATA : IMG_STATUS_ZERO;
    if (m.kind == Q_UNALLOC && im->backing && off < img_size(im->backing))
        return img_block_status(im->backing, off, VS_MIN(m.len, img_size(im->backing) - off), run, flags, e);
    return 0;
}

/* Adjacent runs of one status are merged, so a sparse disk is a few calls, not one per cluster. */
static int q_status(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e)
{
    int r = q_status1(im, off, len, run, flags, e);
    while (r == 0 && *run < len) {
        uint64_t n;
        unsigned f;
        r = q_status1(im, off + *run, len - *run, &n, &f, e);
        if (r < 0 || f != *flags)
            break;
        *run += n;
    }
    return r < 0 ? r : 0;
}

static void q_free(struct img *im)
{
    struct qcow2 *q = im->priv;
    if (!q)
        return;
    for (unsigned i = 0; i < Q_L2_SLOTS; i++)
        free(q->l2[i].t);
    if (q->zs_ready)
        inflateEnd(&q->zs);
    ZSTD_freeDCtx(q->zd);
    free(q->l1);
    free(q->cluster);
    free(q->zbuf);
    free(q);
    im->priv = NULL;
}

static const struct img_ops qcow2_ops = { q_pread, q_status, q_free };

int img_qcow2_open(struct img *im, vs_err *e)
{
    struct qcow2 *q = vs_xcalloc(1, sizeof *q);
    im->priv = q;
    im->ops = &qcow2_ops;
    im->format = IMG_FORMAT_QCOW2;
    struct q_hdr h = { .backing_fmt = IMG_FORMAT_AUTO };
    VS_AUTOFREE uint8_t *c0 = NULL;
    size_t c0len = 0, foff = 0, flen = 0;
    int r = q_header(im, q, &h, &c0, &c0len, e);
    if (r == 0)
        r = q_extensions(im, c0, c0len, &h, &foff, &flen, e);
    if (r == 0)
        r = q_features(im, q, &h, c0, foff, flen, e);
    if (r < 0)
        return r;
    q->l2_bits = q->cluster_bits - (q->ext_l2 ? 4 : 3);
    q->sc_bits = q->cluster_bits - 5;
    r = q_l1(im, q, &h, e);
    if (r < 0)
        return r;
    im->size = h.size;
    if (!h.backing_off)
        return 0;
    if (!h.backing_len || h.backing_len > 1023 || h.backing_off > im->file_size
        || h.backing_len > im->file_size - h.backing_off)
        return Q_ERR(e, "backing file name at offset %" PRIu64 " (%" PRIu32 " bytes) is empty, longer than "
                     "1023 bytes or outside the file", im->name, h.backing_off, h.backing_len);
    char name[1024];
    r = img_file_pread(im, name, h.backing_len, h.backing_off, false, e);
    if (r < 0)
        return r;
    name[h.backing_len] = 0;
    if (strlen(name) != h.backing_len)
        return Q_ERR(e, "backing file name contains a NUL byte", im->name);
    return img_open_backing(im, name, h.backing_fmt, &im->backing, e);
}
