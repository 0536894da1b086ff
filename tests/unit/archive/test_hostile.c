/* The archive reader against hostile directories: stream records sharing one top-level table (memory grew as
 * streams x table size), names and hints that are not printable UTF-8, and the block cache's key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/reader_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char path[64];

/* An archive in memory: nstreams sparse streams of size bytes (all zero: top tables of zero pages). */
static uint8_t *make(unsigned nstreams, uint64_t size, const char *first_name, size_t *len)
{
    snprintf(path, sizeof path, "/tmp/vmsnap-hostile-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.threads = 1;
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
    for (unsigned i = 0; i < nstreams; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%03u", i);
        assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, i ? name : first_name, size, &e), 0);
        assert_int_equal(arc_writer_end(w, &e), 0);
    }
    assert_int_equal(arc_writer_finish(w, &e), 0);
    fd = open(path, O_RDONLY);
    off_t n = lseek(fd, 0, SEEK_END);
    uint8_t *img = vs_xmalloc((size_t)n);
    assert_int_equal(pread(fd, img, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    *len = (size_t)n;
    return img;
}

/* The i-th stream record of the directory. */
static uint8_t *record(uint8_t *img, unsigned i)
{
    uint8_t *d = img + vs_get_le64(img + H_DIROFF);
    uint8_t *r = d + ARC_DIR_FIXED + vs_get_le16(d + 4);
    while (i--)
        r += ARC_STREAM_REC + r[2];
    return r;
}

static void rehash_dir(uint8_t *img)
{
    uint8_t *d = img + vs_get_le64(img + H_DIROFF);
    size_t len = vs_get_le32(img + H_DIRLEN) - 8;
    vs_put_le64(d + len, arc_meta_hash(d, len));
}

static int open_img(const uint8_t *img, size_t len, struct arc **a, vs_err *e)
{
    return arc_open_source(arc_source_open_mem(img, len, "hostile"), NULL, a, e);
}

static void test_shared_top_table(void **state)
{
    (void)state;
    enum { N = 64 };
    size_t len;
    /* 1 TiB of 64 KiB blocks: 4096 top entries, a 96 KiB table per stream. */
    uint8_t *img = make(N, 1ull << 40, "s000", &len);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(open_img(img, len, &a, &e), 0);
    /* Honest: every table is in the file once, so the tables held cost about the file's size. */
    size_t honest = arc_mem_usage(a);
    arc_close(a);
    assert_true(len > N * 4096u * ARC_TOP_ENTRY);
    /* Every record pointing at stream 0's table (same content, same checksum): N tables from one. */
    for (unsigned i = 1; i < N; i++)
        memcpy(record(img, i) + 64, record(img, 0) + 64, 16);
    rehash_dir(img);
    int r = open_img(img, len, &a, &e);
    if (r == 0) {
        size_t mem = arc_mem_usage(a);
        arc_close(a);
        fail_msg("shared top-level tables accepted (%zu bytes held; %zu with a table each)", mem, honest);
    }
    assert_int_equal(r, -EIO);
    assert_non_null(strstr(e.msg, "overlapping top-level indexes"));
    free(img);
}

static void test_partial_overlap(void **state)
{
    (void)state;
    size_t len;
    uint8_t *img = make(2, 1ull << 40, "s000", &len);
    struct arc *a;
    vs_err e = { 0 };
    uint8_t *r0 = record(img, 0), *r1 = record(img, 1);
    /* Stream 1's table one entry into stream 0's: the bytes differ, so give it the checksum they have. */
    uint64_t off = vs_get_le64(r0 + 64) + ARC_TOP_ENTRY;
    vs_put_le64(r1 + 64, off);
    vs_put_le64(r1 + 72, arc_meta_hash(img + off, (size_t)vs_get_le32(r1 + 12) * ARC_TOP_ENTRY));
    rehash_dir(img);
    assert_int_equal(open_img(img, len, &a, &e), -EIO);
    assert_non_null(strstr(e.msg, "overlapping top-level indexes"));
    free(img);
}

static void check_name_refused(const char *bad, const char *words)
{
    size_t len;
    uint8_t *img = make(1, 4096, "XXXX", &len);
    uint8_t *r = record(img, 0);
    assert_int_equal(r[2], 4);
    memcpy(r + ARC_STREAM_REC, bad, 4);
    rehash_dir(img);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(open_img(img, len, &a, &e), -EIO);
    if (!strstr(e.msg, words))
        fail_msg("'%s' lacks '%s'", e.msg, words);
    free(img);
}

static void test_names(void **state)
{
    (void)state;
    check_name_refused("\x1b]0;", "not UTF-8 text");    /* terminal escape */
    check_name_refused("ab\xff" "c", "not UTF-8 text");  /* not UTF-8 */
    check_name_refused("a\xc0\xafz", "not UTF-8 text");  /* overlong '/' */
    check_name_refused("a\xc2\x9b" "b", "not UTF-8 text"); /* C1 CSI */
    check_name_refused("a\0bc", "not UTF-8 text");
    size_t len;
    uint8_t *img = make(1, 4096, "d\xc3\xa9j\xc3\xa0", &len);   /* UTF-8 text is fine */
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(open_img(img, len, &a, &e), 0);
    assert_int_equal(arc_find_stream(a, ARC_KIND_OTHER, "d\xc3\xa9j\xc3\xa0"), 0);
    arc_close(a);
    free(img);
    /* The writer refuses what readers would. */
    struct arc_writer *w;
    snprintf(path, sizeof path, "/tmp/vmsnap-hostile-w");
    assert_int_equal(arc_writer_create(path, NULL, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "a\nb", 1, &e), -EINVAL);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "\xfe", 1, &e), -EINVAL);
    arc_writer_abort(w);
}

static void test_hint(void **state)
{
    (void)state;
    size_t len;
    uint8_t *img = make(1, 4096, "disk", &len);
    /* Give the archive a 4-byte hint: records move up by 4 within the same directory length is not possible, so
     * rebuild the directory with the hint in front. */
    uint64_t doff = vs_get_le64(img + H_DIROFF);
    uint32_t dlen = vs_get_le32(img + H_DIRLEN);
    uint8_t *nimg = vs_xcalloc(1, len + 4);
    memcpy(nimg, img, doff);
    uint8_t *d = nimg + doff;
    memcpy(d, img + doff, ARC_DIR_FIXED);
    vs_put_le16(d + 4, 4);
    memcpy(d + ARC_DIR_FIXED, "\x1b[2J", 4);
    memcpy(d + ARC_DIR_FIXED + 4, img + doff + ARC_DIR_FIXED, dlen - ARC_DIR_FIXED);
    vs_put_le32(nimg + H_DIRLEN, dlen + 4);
    vs_put_le64(nimg + H_FILESIZE, len + 4);
    rehash_dir(nimg);
    vs_put_le64(nimg + ARC_HEADER_CSUM_OFF, arc_meta_hash(nimg, ARC_HEADER_CSUM_OFF));
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(open_img(nimg, len + 4, &a, &e), -EIO);
    assert_non_null(strstr(e.msg, "parent hint is not UTF-8 text"));
    memcpy(d + ARC_DIR_FIXED, "../x", 4);   /* the same archive with a printable hint opens */
    rehash_dir(nimg);
    assert_int_equal(open_img(nimg, len + 4, &a, &e), 0);
    arc_close(a);
    free(nimg);
    free(img);
}

/* Two entries naming the same stored bytes but another codec or checksum: each gets its own decoding. */
static void test_cache_key(void **state)
{
    (void)state;
    size_t len;
    uint8_t *img = make(1, 4096, "disk", &len);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(open_img(img, len, &a, &e), 0);
    uint8_t x[4096], y[4096], out[16];
    memset(x, 'x', sizeof x);
    memset(y, 'y', sizeof y);
    struct arc_entry lz4 = { .offset = 4096, .stored_len = 100, .type = ARC_BLOCK_DATA, .codec = ARC_CODEC_LZ4,
                             .csum = arc_hash64(x, sizeof x), .scsum = 7 };
    arc__cache_put(a, &lz4, x, sizeof x);
    struct arc_entry other[] = { lz4, lz4, lz4, lz4 };
    other[0].codec = ARC_CODEC_ZSTD;
    other[1].csum = arc_hash64(y, sizeof y);
    other[2].scsum = 8;
    other[3].stored_len = 101;
    for (unsigned i = 0; i < 4; i++)
        if (arc__cache_get(a, &other[i], out, 0, sizeof out))
            fail_msg("entry variant %u got the bytes cached for another entry at the same offset", i);
    arc__cache_put(a, &other[1], y, sizeof y);
    assert_true(arc__cache_get(a, &lz4, out, 8, sizeof out));
    assert_memory_equal(out, x, sizeof out);
    assert_true(arc__cache_get(a, &other[1], out, 8, sizeof out));
    assert_memory_equal(out, y, sizeof out);
    arc_close(a);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_top_table), cmocka_unit_test(test_partial_overlap),
        cmocka_unit_test(test_names),            cmocka_unit_test(test_hint),
        cmocka_unit_test(test_cache_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
