/* libFuzzer target: open an archive from memory, read every stream, query allocation, verify. Each input is
 * tried as it is and again with its checksums repaired (header, directory, top-level tables, index pages, block
 * checksums): random bytes almost never pass a checksum, and the parsers behind them must be fuzzed too. */
#include "archive/format.h"

#include <string.h>

static void ignore(void *opaque, const struct arc_problem *p)
{
    (void)opaque;
    (void)p;
}

static bool in_file(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

/* The block checksums of one index page (entries of DATA blocks whose stored bytes lie in the file). */
static void repair_page(uint8_t *d, size_t size, uint8_t *page, uint32_t plen, uint64_t first_block,
                        uint32_t bs, uint64_t ssize, uint8_t *tmp)
{
    for (uint32_t k = 0; (uint64_t)(k + 1) * ARC_PAGE_ENTRY <= plen; k++) {
        struct arc_entry en;
        arc_entry_decode(page + (size_t)k * ARC_PAGE_ENTRY, &en);
        uint64_t b = first_block + k, boff = b * (uint64_t)bs;
        if (en.type != ARC_BLOCK_DATA || !in_file(en.offset, en.stored_len, size) || boff >= ssize)
            continue;
        size_t blen = (size_t)VS_MIN((uint64_t)bs, ssize - boff);
        en.scsum = arc_hash64(d + en.offset, en.stored_len);
        if (arc_decompress(en.codec, NULL, d + en.offset, en.stored_len, tmp, blen) == 0)
            en.csum = arc_hash64(tmp, blen);
        arc_entry_encode(page + (size_t)k * ARC_PAGE_ENTRY, &en);
    }
}

static void repair(uint8_t *d, size_t size)
{
    if (size < ARC_HEADER_SIZE)
        return;
    vs_put_le64(d + H_FILESIZE, size);
    uint64_t doff = vs_get_le64(d + H_DIROFF);
    uint32_t dlen = vs_get_le32(d + H_DIRLEN);
    if (doff >= ARC_HEADER_SIZE && dlen >= ARC_DIR_FIXED + 8 && in_file(doff, dlen, size)) {
        uint8_t *dir = d + doff, *tmp = malloc(1 << 20);
        size_t len = dlen - 8, p = ARC_DIR_FIXED + vs_get_le16(dir + 4);
        uint32_t ns = vs_get_le32(dir);
        for (uint32_t i = 0; i < ns && p <= len && len - p >= ARC_STREAM_REC; i++) {
            uint8_t *rec = dir + p;
            uint32_t bs = vs_get_le32(rec + 4), pe = vs_get_le32(rec + 8), tc = vs_get_le32(rec + 12);
            uint64_t ssize = vs_get_le64(rec + 16), toff = vs_get_le64(rec + 64);
            if (in_file(toff, (uint64_t)tc * ARC_TOP_ENTRY, size)) {
                for (uint32_t j = 0; j < tc; j++) {
                    uint8_t *te = d + toff + (size_t)j * ARC_TOP_ENTRY;
                    struct arc_top t;
                    arc_top_decode(te, &t);
                    if (t.type != ARC_PAGE_STORED || !in_file(t.offset, t.length, size))
                        continue;
                    if (bs <= (1u << 20) && bs && pe)
                        repair_page(d, size, d + t.offset, t.length, (uint64_t)j * pe, bs, ssize, tmp);
                    t.csum = arc_meta_hash(d + t.offset, t.length);
                    arc_top_encode(te, &t);
                }
                vs_put_le64(rec + 72, arc_meta_hash(d + toff, (size_t)tc * ARC_TOP_ENTRY));
            }
            p += ARC_STREAM_REC + rec[2];
        }
        vs_put_le64(dir + len, arc_meta_hash(dir, len));
        free(tmp);
    }
    vs_put_le64(d + ARC_HEADER_CSUM_OFF, arc_meta_hash(d, ARC_HEADER_CSUM_OFF));
}

static void one(const uint8_t *data, size_t size, uint8_t *buf)
{
    struct arc *a;
    vs_err e;
    /* A fuzzed parent hint names any local path or URL: the fuzzer opens neither (a URL waited out the store
     * client's retries, past libFuzzer's timeout). Parent references still reach the reader, and fail. */
    struct arc_open_opts oo = { .no_parent = true };
    if (arc_open_source(arc_source_open_mem(data, size, "fuzz"), &oo, &a, &e) < 0)
        return;
    for (unsigned i = 0; i < arc_stream_count(a); i++) {
        struct arc_stream_info si;
        arc_stream_get(a, i, &si);
        uint64_t len = VS_MIN(si.size, (uint64_t)(1 << 20));
        arc_pread(a, i, buf, len, 0, &e);
        if (si.size > 4096)
            arc_pread(a, i, buf, 4096, si.size - 4096, &e);
        if (si.size) {
            uint64_t run;
            unsigned fl;
            arc_block_status(a, i, 0, si.size, &run, &fl, &e);
        }
    }
    struct arc_verify_opts vo = { .problem = ignore };
    arc_verify(a, &vo, &e);
    arc_close(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(1 << 20), *copy = malloc(size ? size : 1);
    one(data, size, buf);
    memcpy(copy, data, size);
    repair(copy, size);
    one(copy, size, buf);
    free(copy);
    free(buf);
    return 0;
}
