/* The working-set record (docs/FORMAT.md, "Working set"): what encode writes parses back the same; every damaged
 * or out-of-bounds record is refused with a message, never read past its end; an archive's working set is checked
 * against its RAM streams; archives of earlier revisions (the golden ones) have none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "archive/archive.h"
#include "memstore/memstore.h"

static struct mst_ws_stream streams[2] = { { "ram/mem", 1 << 20 }, { "ram/pc.ram", 64 << 10 } };
static struct mst_ws_entry entries[3] = { { 0, 32, 4096 * 100 }, { 1, 1, 0 }, { 0, 2, 0 } };

static void sample(struct mst_ws *ws)
{
    *ws = (struct mst_ws){ .nstreams = 2, .streams = streams, .n = 3, .entries = entries };
}

static void resign(uint8_t *b, size_t len)
{
    vs_put_le64(b + len - 8, XXH64(b, len - 8, 0));
}

/* buf after edit(buf) and a fresh checksum: refused, with a message containing want. */
static void refused(const uint8_t *good, size_t len, size_t at, const void *bytes, size_t n, const char *want)
{
    uint8_t *b = malloc(len);
    memcpy(b, good, len);
    memcpy(b + at, bytes, n);
    resign(b, len);
    struct mst_ws ws;
    vs_err e = { 0 };
    assert_true(mst_ws_parse(b, len, &ws, &e) < 0);
    if (!strstr(e.msg, want))
        fail_msg("expected '%s' in: %s", want, e.msg);
    free(b);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct mst_ws in, out;
    sample(&in);
    uint8_t *b;
    size_t len;
    vs_err e = { 0 };
    assert_int_equal(mst_ws_encode(&in, &b, &len, &e), 0);
    assert_int_equal(len, 32 + (9 + 7) + (9 + 10) + 3 * 16 + 8);
    assert_memory_equal(b, "vmsnapws", 8);
    assert_int_equal(mst_ws_parse(b, len, &out, &e), 0);
    assert_int_equal(out.nstreams, 2);
    assert_string_equal(out.streams[1].name, "ram/pc.ram");
    assert_int_equal(out.streams[0].size, 1 << 20);
    assert_int_equal(out.n, 3);
    assert_memory_equal(out.entries, entries, sizeof entries);
    assert_int_equal(out.pages, 35);
    mst_ws_free(&out);
    free(b);
}

static void test_damage(void **state)
{
    (void)state;
    struct mst_ws in, out;
    sample(&in);
    uint8_t *b;
    size_t len;
    assert_int_equal(mst_ws_encode(&in, &b, &len, NULL), 0);
    for (size_t i = 0; i < len; i++) {   /* any flipped bit: the checksum (or the magic) */
        b[i] ^= 0x10;
        assert_true(mst_ws_parse(b, len, &out, NULL) < 0);
        b[i] ^= 0x10;
    }
    for (size_t n = 0; n < len; n++)   /* any truncation */
        assert_true(mst_ws_parse(b, n, &out, NULL) < 0);
    uint8_t *longer = calloc(1, len + 16);   /* trailing bytes, even re-signed */
    memcpy(longer, b, len - 8);
    resign(longer, len + 16);
    assert_true(mst_ws_parse(longer, len + 16, &out, NULL) < 0);
    free(longer);

    size_t ent = len - 8 - 3 * 16;   /* the first range */
    uint8_t v[8];
    vs_put_le32(v, 2);
    refused(b, len, 8, v, 4, "version 2");
    refused(b, len, 24, "\1", 1, "version");                        /* reserved */
    vs_put_le32(v, 3);
    refused(b, len, 16, v, 4, "working set");                       /* a third stream record it does not have */
    vs_put_le32(v, MST_WS_MAX_ENTRIES + 1);
    refused(b, len, 20, v, 4, "at most");
    refused(b, len, 32 + 9, "xam", 3, "not a RAM stream");           /* "xam/mem" */
    refused(b, len, 32 + 9 + 7 + 9, "ram/mem\0\0\0", 10, "unnamed");   /* a NUL in a name */
    vs_put_le64(v, 4097);
    refused(b, len, 32, v, 8, "whole pages");                        /* stream size */
    vs_put_le32(v, 2);
    refused(b, len, ent, v, 4, "bad stream");                        /* stream index */
    vs_put_le32(v, 0);
    refused(b, len, ent + 4, v, 4, "bad stream, length");            /* zero pages */
    vs_put_le64(v, 4096 * 100 + 512);
    refused(b, len, ent + 8, v, 8, "alignment");
    vs_put_le32(v, 157);                                             /* 100 + 157 pages > 256 */
    refused(b, len, ent + 4, v, 4, "outside stream ram/mem");
    vs_put_le32(v, UINT32_MAX);
    refused(b, len, ent + 4, v, 4, "outside");
    vs_put_le64(v, UINT64_MAX - 4095);
    refused(b, len, ent + 8, v, 8, "outside");
    free(b);
}

static void test_encode_checks(void **state)
{
    (void)state;
    struct mst_ws ws;
    sample(&ws);
    struct mst_ws_entry bad[1] = { { 0, 1, 1 << 20 } };   /* one page past the end */
    ws.entries = bad;
    ws.n = 1;
    uint8_t *b = NULL;
    size_t len;
    vs_err e = { 0 };
    assert_true(mst_ws_encode(&ws, &b, &len, &e) < 0);
    assert_null(b);
    struct mst_ws_stream twice[2] = { { "ram/mem", 4096 }, { "ram/mem", 4096 } };
    sample(&ws);
    ws.streams = twice;
    ws.n = 0;
    assert_true(mst_ws_encode(&ws, &b, &len, &e) < 0);
    assert_non_null(strstr(e.msg, "twice"));
}

/* An archive holding RAM stream ram/mem of ram bytes and, if ws is given, that record as its working set. */
static struct arc *archive(uint64_t ram, const void *ws, size_t len)
{
    char path[] = "/tmp/vmsnap-wset-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    vs_err e = { 0 };
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(path, NULL, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_OTHER, "ram/mem", ram, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    if (ws)
        assert_int_equal(arc_writer_add(w, ARC_KIND_OTHER, MST_WS_STREAM, ws, len, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    unlink(path);
    return a;
}

static void test_archive(void **state)
{
    (void)state;
    struct mst_ws in = { .nstreams = 1, .streams = streams, .n = 1, .entries = entries }, out;
    uint8_t *b;
    size_t len;
    vs_err e = { 0 };
    assert_int_equal(mst_ws_encode(&in, &b, &len, &e), 0);
    struct arc *a = archive(1 << 20, NULL, 0);   /* none */
    assert_int_equal(mst_ws_read(a, &out, &e), 0);
    arc_close(a);
    a = archive(1 << 20, b, len);
    assert_int_equal(mst_ws_read(a, &out, &e), 1);
    assert_int_equal(out.pages, 32);
    mst_ws_free(&out);
    arc_close(a);
    a = archive(2 << 20, b, len);   /* the RAM stream is not the size recorded */
    assert_true(mst_ws_read(a, &out, &e) < 0);
    assert_non_null(strstr(e.msg, "stream working-set"));
    assert_non_null(strstr(e.msg, "ram/mem"));
    arc_close(a);
    b[len - 1] ^= 1;
    a = archive(1 << 20, b, len);
    assert_true(mst_ws_read(a, &out, &e) < 0);
    assert_non_null(strstr(e.msg, "checksum"));
    arc_close(a);
    free(b);
}

/* Archives written before revision 13 have no working set; revision 13's golden one has its own. */
static void test_golden(void **state)
{
    (void)state;
    const char *files[] = { "r1-thick.vmsnap", "r2-paged.vmsnap", "r3-files.vmsnap", "r4-vmgenid.vmsnap",
                            "r5-vmgenid.vmsnap", "r6-machine.vmsnap" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, files[i]);
        struct arc *a;
        vs_err e = { 0 };
        if (arc_open(path, NULL, &a, &e) < 0)
            fail_msg("%s: %s", files[i], e.msg);
        struct mst_ws ws;
        assert_int_equal(mst_ws_read(a, &ws, &e), 0);
        arc_close(a);
    }
    /* Revision 13's: pages 200, 3, 64-67, in that order. */
    char path[4096];
    snprintf(path, sizeof path, "%s/r13-working-set.vmsnap", GOLDEN_DIR);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    struct mst_ws ws;
    assert_int_equal(mst_ws_read(a, &ws, &e), 1);
    arc_close(a);
    assert_int_equal(ws.n, 3);
    assert_string_equal(ws.streams[0].name, "ram/mem");
    assert_true(ws.entries[0].off == 200 * 4096 && ws.entries[0].pages == 1);
    assert_true(ws.entries[1].off == 3 * 4096 && ws.entries[2].off == 64 * 4096 && ws.entries[2].pages == 4);
    mst_ws_free(&ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_damage), cmocka_unit_test(test_encode_checks),
        cmocka_unit_test(test_archive), cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
