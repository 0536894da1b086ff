/* migstream unit tests over real streams trimmed by tests/fuzz/migstream/make-seeds.py (which also wrote what an
 * independent reading finds in them: *.json): QEMU 7.2's background snapshot (real-trimmed) and QEMU 10.0's
 * precopy stream, which has a command section (qemu10-precopy).
 * Split in any chunking gives the same pages and device stream; split + reassemble + split is a fixed point; every
 * truncation fails; each unsupported feature and each contradiction is refused with the right error; with
 * keep_unknown_rest, something unknown after pages were delivered keeps the rest opaque and the result, eager or
 * lazy, means the same as the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <jansson.h>

#include "migstream/migstream.h"
#include "memstore/memstore.h"

static uint8_t *stream;
static size_t stream_len;
static json_t *expect;

struct got {
    unsigned nblocks;
    struct ms_block blocks[MS_MAX_BLOCKS];
    uint8_t **pages;               /* final content of split block 0, per page (NULL: zero) */
    bool *seen;
    size_t npages;
    uint64_t records;
    uint8_t *dev;
    size_t dev_len, dev_cap;
    bool committed_at_first_page;      /* ms_committed() seen from the first page callback */
    struct ms_parser *p;
    const struct got *seed;        /* RAM before the stream (a lazy destination's), else all zero */
};

static int g_blocks(void *o, struct ms_block *b, unsigned n, vs_err *e)
{
    (void)e;
    struct got *g = o;
    for (unsigned i = 0; i < n; i++)
        b[i].split = i == 0;       /* the main RAM only, as boot would */
    memcpy(g->blocks, b, n * sizeof *b);
    g->nblocks = n;
    g->npages = b[0].size / MS_PAGE_SIZE;
    g->pages = calloc(g->npages, sizeof *g->pages);
    g->seen = calloc(g->npages, 1);
    for (size_t i = 0; g->seed && i < g->npages; i++) {
        if (g->seed->pages[i]) {
            g->pages[i] = malloc(MS_PAGE_SIZE);
            memcpy(g->pages[i], g->seed->pages[i], MS_PAGE_SIZE);
        }
    }
    return 0;
}

static int g_page(void *o, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e)
{
    (void)e;
    struct got *g = o;
    assert_int_equal(b->index, 0);
    if (g->records++ == 0)
        g->committed_at_first_page = ms_committed(g->p);
    size_t i = off / MS_PAGE_SIZE;
    free(g->pages[i]);
    g->pages[i] = NULL;
    g->seen[i] = true;
    if (data) {
        g->pages[i] = malloc(MS_PAGE_SIZE);
        memcpy(g->pages[i], data, MS_PAGE_SIZE);
    }
    return 0;
}

static int g_device(void *o, const void *buf, size_t len, vs_err *e)
{
    (void)e;
    struct got *g = o;
    if (g->dev_len + len > g->dev_cap) {
        g->dev_cap = (g->dev_len + len) * 2;
        g->dev = realloc(g->dev, g->dev_cap);
    }
    memcpy(g->dev + g->dev_len, buf, len);
    g->dev_len += len;
    return 0;
}

static void got_free(struct got *g)
{
    for (size_t i = 0; i < g->npages; i++)
        free(g->pages[i]);
    free(g->pages);
    free(g->seen);
    free(g->dev);
    memset(g, 0, sizeof *g);
}

/* Split buf in chunks of `chunk` bytes (0: at once). Returns ms_push/ms_finish's result. */
static int split_with(const uint8_t *buf, size_t len, size_t chunk, bool keep_rest, struct got *g,
                      struct ms_summary *sum, vs_err *e)
{
    struct ms_ops ops = { .blocks = g_blocks, .page = g_page, .device = g_device, .opaque = g };
    struct ms_opts o = { .keep_unknown_rest = keep_rest };
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    assert_int_equal(ms_parser_new(&ops, &o, &p, e), 0);
    g->p = p;
    int r = 0;
    for (size_t off = 0; off < len && r == 0;) {
        size_t n = chunk ? VS_MIN(chunk, len - off) : len;
        r = ms_push(p, buf + off, n, e);
        off += n;
    }
    if (r == 0)
        r = ms_finish(p, sum, e);
    return r;
}

static int split(const uint8_t *buf, size_t len, size_t chunk, struct got *g, struct ms_summary *sum, vs_err *e)
{
    return split_with(buf, len, chunk, false, g, sum, e);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t digest(const struct got *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < g->npages; i++) {
        if (!g->seen[i])
            continue;
        uint8_t le[8];
        vs_put_le64(le, i * MS_PAGE_SIZE);
        h = fnv(h, le, 8);
        if (g->pages[i])
            h = fnv(h, g->pages[i], MS_PAGE_SIZE);
    }
    return h;
}

static void test_split_real(void **state)
{
    (void)state;
    static const size_t chunks[] = { 0, 1, 7, 4095, 4097, 65536 };
    uint64_t want = strtoull(json_string_value(json_object_get(expect, "digest")), NULL, 16);
    uint8_t *dev0 = NULL;
    size_t dev0_len = 0;
    for (size_t c = 0; c < VS_ARRAY_SIZE(chunks); c++) {
        struct got g = { 0 };
        struct ms_summary s;
        vs_err e = { 0 };
        int r = split(stream, stream_len, chunks[c], &g, &s, &e);
        if (r)
            fail_msg("chunk %zu: %s", chunks[c], e.msg);
        assert_int_equal(s.pages, json_integer_value(json_object_get(expect, "pages")));
        assert_int_equal(s.zero_pages, json_integer_value(json_object_get(expect, "zero_pages")));
        assert_int_equal(s.kept_pages, json_integer_value(json_object_get(expect, "kept_pages")));
        assert_int_equal(s.devices, json_integer_value(json_object_get(expect, "devices")));
        assert_int_equal(s.bytes_in, stream_len);
        assert_string_equal(s.machine, json_string_value(json_object_get(expect, "machine")));
        json_t *bl = json_object_get(expect, "blocks");
        assert_int_equal(g.nblocks, json_array_size(bl));
        for (unsigned i = 0; i < g.nblocks; i++) {
            assert_string_equal(g.blocks[i].name, json_string_value(json_array_get(json_array_get(bl, i), 0)));
            assert_int_equal(g.blocks[i].size, json_integer_value(json_array_get(json_array_get(bl, i), 1)));
        }
        assert_true(digest(&g) == want);
        assert_true(g.committed_at_first_page);
        if (c == 0) {
            dev0 = g.dev;
            dev0_len = g.dev_len;
            g.dev = NULL;
            assert_true(dev0_len < stream_len);
        } else {
            assert_int_equal(g.dev_len, dev0_len);
            assert_memory_equal(g.dev, dev0, dev0_len);
        }
        got_free(&g);
    }
    free(dev0);
}

/* ---- reassembly: device stream + pages -> stream; split again gives the same pages and device stream ------- */
struct src { struct got *g; };

static int r_fill(void *o, const struct ms_block *b, uint64_t off, uint8_t *buf, bool *zero, vs_err *e)
{
    (void)b; (void)e;
    struct got *g = ((struct src *)o)->g;
    uint8_t *p = g->pages[off / MS_PAGE_SIZE];
    *zero = p == NULL;
    if (p)
        memcpy(buf, p, MS_PAGE_SIZE);
    return 0;
}

static bool r_want(void *o, const struct ms_block *b) { (void)o; return b->index == 0; }

static int tmpfd_with(const void *buf, size_t len)
{
    char path[] = "/tmp/vmsnap-ms-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(vs_write_full(fd, buf, len), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void test_reassemble_fixed_point(void **state)
{
    (void)state;
    struct got g = { 0 }, g2 = { 0 };
    struct ms_summary s, s2;
    vs_err e = { 0 };
    assert_int_equal(split(stream, stream_len, 0, &g, &s, &e), 0);
    int dfd = tmpfd_with(g.dev, g.dev_len);
    int ofd = tmpfd_with("", 0);
    struct src so = { &g };
    struct ms_page_reader rd = { .fill = r_fill, .want = r_want, .opaque = &so };
    if (ms_reassemble(dfd, ofd, &rd, NULL, &e))
        fail_msg("%s", e.msg);
    off_t n = lseek(ofd, 0, SEEK_END);
    uint8_t *full = malloc((size_t)n);
    assert_int_equal(vs_pread_full(ofd, full, (size_t)n, 0), n);
    close(dfd);
    close(ofd);
    if (split(full, (size_t)n, 0, &g2, &s2, &e))
        fail_msg("%s", e.msg);
    /* Same final RAM (zero pages are not re-sent: a fresh destination reads zero) and the same device stream. */
    size_t nonzero = 0;
    for (size_t i = 0; i < g.npages; i++)
        nonzero += g.pages[i] != NULL;
    assert_int_equal(s2.pages, nonzero);
    assert_int_equal(s2.zero_pages, 0);
    for (size_t i = 0; i < g.npages; i++) {
        assert_int_equal(g.pages[i] != NULL, g2.pages[i] != NULL);
        if (g.pages[i])
            assert_memory_equal(g.pages[i], g2.pages[i], MS_PAGE_SIZE);
    }
    assert_int_equal(g2.dev_len, g.dev_len);
    assert_memory_equal(g2.dev, g.dev, g.dev_len);
    free(full);
    got_free(&g);
    got_free(&g2);
}

/* ---- reassembly by runs: the same bytes as page by page -------------------------------------------------- */
#define SYN_PAGES 2048u   /* 8 MiB of pages: the output crosses the 1 MiB write buffer several times */

/* Page i: a hole (i % 7 == 0 or beyond SYN_PAGES), stored but all zero (i % 7 == 1), or a pattern. */
static int syn_kind(size_t i) { return i >= SYN_PAGES || i % 7 == 0 ? 0 : i % 7 == 1 ? 1 : 2; }

static void syn_page(size_t i, uint8_t *buf)
{
    for (size_t j = 0; j < MS_PAGE_SIZE; j++)
        buf[j] = syn_kind(i) == 2 ? (uint8_t)(i * 31 + j * 7 + 1) : 0;
}

static int syn_fill(void *o, const struct ms_block *b, uint64_t off, uint8_t *buf, bool *zero, vs_err *e)
{
    (void)o; (void)b; (void)e;
    size_t i = off / MS_PAGE_SIZE;
    if ((*zero = syn_kind(i) != 2))   /* fill() reports every all-zero page */
        return 0;
    syn_page(i, buf);
    return 0;
}

/* Runs of varying length: holes as long as they go (up to len), stored pages 1..5 at a time (zero ones included:
 * the reassembler must skip them). */
static int syn_run(void *o, const struct ms_block *b, uint64_t off, size_t len, uint8_t *buf, size_t *got,
                   bool *zero, vs_err *e)
{
    (void)o; (void)b; (void)e;
    assert_true(len > 0 && len % MS_PAGE_SIZE == 0 && len <= (1u << 20) && off + len <= b->size);
    size_t i = off / MS_PAGE_SIZE, n = 0, max = len / MS_PAGE_SIZE;
    *zero = syn_kind(i) == 0;
    if (*zero) {
        while (n < max && syn_kind(i + n) == 0)
            n++;
    } else {
        for (; n < max && n < 1 + i % 5 && syn_kind(i + n) != 0; n++)
            syn_page(i + n, buf + n * MS_PAGE_SIZE);
    }
    *got = n * MS_PAGE_SIZE;
    return 0;
}

static uint8_t *reassemble_with(const struct ms_page_reader *rd, const struct got *g, size_t *len)
{
    vs_err e = { 0 };
    int dfd = tmpfd_with(g->dev, g->dev_len);
    int ofd = tmpfd_with("", 0);
    if (ms_reassemble(dfd, ofd, rd, NULL, &e))
        fail_msg("%s", e.msg);
    off_t n = lseek(ofd, 0, SEEK_END);
    uint8_t *out = malloc((size_t)n);
    assert_int_equal(vs_pread_full(ofd, out, (size_t)n, 0), n);
    close(dfd);
    close(ofd);
    *len = (size_t)n;
    return out;
}

static void test_reassemble_runs(void **state)
{
    (void)state;
    struct got g = { 0 }, g2 = { 0 };
    struct ms_summary s, s2;
    vs_err e = { 0 };
    assert_int_equal(split(stream, stream_len, 0, &g, &s, &e), 0);
    struct ms_page_reader by_page = { .fill = syn_fill, .want = r_want };
    struct ms_page_reader by_run = { .fill_run = syn_run, .want = r_want };
    size_t n1, n2;
    uint8_t *a = reassemble_with(&by_page, &g, &n1), *b = reassemble_with(&by_run, &g, &n2);
    assert_true(n1 > 4 * (1u << 20));
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    /* And it is the stream meant: exactly the stored non-zero pages, the same device stream. */
    if (split(b, n2, 0, &g2, &s2, &e))
        fail_msg("%s", e.msg);
    uint8_t want[MS_PAGE_SIZE];
    for (size_t i = 0; i < g2.npages; i++) {
        assert_int_equal(g2.pages[i] != NULL, syn_kind(i) == 2);
        if (g2.pages[i]) {
            syn_page(i, want);
            assert_memory_equal(g2.pages[i], want, MS_PAGE_SIZE);
        }
    }
    assert_int_equal(g2.dev_len, g.dev_len);
    assert_memory_equal(g2.dev, g.dev, g.dev_len);
    free(a);
    free(b);
    got_free(&g);
    got_free(&g2);
}

/* ---- failures ---------------------------------------------------------------------------------------------- */
static void test_truncations_fail(void **state)
{
    (void)state;
    for (size_t cut = 0; cut < stream_len; cut += cut < 2048 ? 1 : 997) {
        struct got g = { 0 };
        struct ms_summary s;
        vs_err e = { 0 };
        int r = split(stream, cut, 0, &g, &s, &e);
        if (r == 0)
            fail_msg("stream cut at %zu of %zu accepted", cut, stream_len);
        assert_true(r == -EBADMSG || r == -ENOTSUP);
        got_free(&g);
    }
}

/* Offset of the first page record: after the ram setup section's footer, 5 bytes of PART header. */
static size_t first_record(void)
{
    struct got g = { 0 };
    struct ms_summary s;
    vs_err e = { 0 };
    struct ms_ops ops = { .blocks = g_blocks, .page = g_page, .device = g_device, .opaque = &g };
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    ms_parser_new(&ops, NULL, &p, &e);
    size_t i = 0;
    while (!ms_blocks(p, &(unsigned){ 0 }))
        assert_int_equal(ms_push(p, stream + i++, 1, &e), 0);
    (void)s;
    got_free(&g);
    return i + 8 + 5 + 5;          /* EOS, footer, PART header */
}

static int mutated(size_t at, uint8_t xor_mask, uint8_t set, bool use_set, vs_err *e)
{
    uint8_t *m = malloc(stream_len);
    memcpy(m, stream, stream_len);
    m[at] = use_set ? set : m[at] ^ xor_mask;
    struct got g = { 0 };
    struct ms_summary s;
    int r = split(m, stream_len, 0, &g, &s, e);
    got_free(&g);
    free(m);
    return r;
}

static void test_refusals(void **state)
{
    (void)state;
    vs_err e = { 0 };
    size_t rec = first_record();
    /* first record's flag byte is its 8th byte: 0x08 (page) or 0x02 (zero), no CONTINUE in the first */
    assert_int_equal(stream[rec + 7] & ~0x20, 0x08);
    assert_int_equal(mutated(rec + 7, 0x40, 0, false, &e), -ENOTSUP);       /* XBZRLE */
    assert_non_null(strstr(e.msg, "XBZRLE"));
    assert_int_equal(mutated(rec + 6, 0x01, 0, false, &e), -ENOTSUP);       /* compressed */
    assert_non_null(strstr(e.msg, "COMPRESS_PAGE"));
    assert_int_equal(mutated(rec + 6, 0x02, 0, false, &e), -ENOTSUP);       /* MULTIFD_FLUSH bit */
    assert_int_equal(mutated(7, 0x01, 0, false, &e), -ENOTSUP);             /* stream version 2 */
    assert_int_equal(mutated(0, 0xff, 0, false, &e), -EBADMSG);             /* magic */
    assert_int_equal(mutated(rec - 5, 0, 0x08, true, &e), -ENOTSUP);        /* QEMU_VM_COMMAND */
    assert_int_equal(mutated(rec - 1, 0x01, 0, false, &e), -ENOTSUP);       /* PART of another section */
    assert_int_equal(mutated(rec, 0x40, 0, false, &e), -EBADMSG);           /* page beyond its block */
    assert_non_null(strstr(e.msg, "beyond RAM block 'mem'"));
    assert_int_equal(mutated(rec + 9, 0x01, 0, false, &e), -EBADMSG);       /* unknown block name */
    assert_int_equal(mutated(rec - 6, 0x01, 0, false, &e), -EBADMSG);       /* setup footer's section id */
    assert_int_equal(mutated(rec - 12, 0x10, 0, false, &e), -EBADMSG);      /* ram setup EOS with offset bits */
    assert_int_equal(mutated(rec - 10, 0x01, 0, false, &e), -ENOTSUP);      /* no footer */
    assert_int_equal(mutated(stream_len - 3, 0, 'X', true, &e), -EBADMSG);  /* JSON description damaged */
}

static void test_committed(void **state)
{
    (void)state;
    struct ms_ops ops = { 0 };
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    vs_err e = { 0 };
    ms_parser_new(&ops, NULL, &p, &e);
    size_t rec = first_record();
    assert_int_equal(ms_push(p, stream, rec + 8 + 4 + 3, &e), 0);
    assert_false(ms_committed(p));
    assert_int_equal(ms_push(p, stream + rec + 15, 4096, &e), 0);
    assert_true(ms_committed(p));
}

/* ---- command sections (QEMU 10) ------------------------------------------------------------------------------ */
/* Offset of QEMU 10.0's SWITCHOVER_START command, sent before the END section of precopy. */
static size_t switchover_at(uint32_t ram_sid)
{
    uint8_t pat[10] = { 0x08, 0x00, 0x0b, 0x00, 0x00, 0x03 };
    vs_put_be32(pat + 6, ram_sid);
    const uint8_t *h = memmem(stream, stream_len, pat, sizeof pat);
    assert_non_null(h);
    return (size_t)(h - stream);
}

static void test_command_sections(void **state)
{
    (void)state;
    struct got g = { 0 };
    struct ms_summary s;
    vs_err e = { 0 };
    if (split(stream, stream_len, 0, &g, &s, &e))
        fail_msg("%s", e.msg);
    size_t at = switchover_at(s.ram_section_id);
    /* passed on in place: in the device stream, just before the END section */
    uint8_t cmd_end[6] = { 0x08, 0x00, 0x0b, 0x00, 0x00, 0x03 };
    assert_non_null(memmem(g.dev, g.dev_len, cmd_end, sizeof cmd_end));
    got_free(&g);
    assert_int_equal(mutated(at + 2, 0, 0x07, true, &e), -ENOTSUP);       /* PACKAGED: a nested stream */
    assert_non_null(strstr(e.msg, "command section 7 (PACKAGED"));
    assert_int_equal(mutated(at + 2, 0, 0x03, true, &e), -ENOTSUP);       /* POSTCOPY_ADVISE */
    assert_int_equal(mutated(at + 2, 0, 0x63, true, &e), -ENOTSUP);       /* unknown */
    assert_non_null(strstr(e.msg, "command section 99 (unknown"));
    assert_int_equal(mutated(at + 4, 0, 0x01, true, &e), -EBADMSG);       /* SWITCHOVER_START carries no data */
}

/* ---- something unknown after pages were delivered: the rest is kept opaque ------------------------------------ */
static uint8_t *inject(size_t at, const uint8_t *u, size_t ulen, size_t *len)
{
    uint8_t *m = malloc(stream_len + ulen);
    memcpy(m, stream, at);
    memcpy(m + at, u, ulen);
    memcpy(m + at + ulen, stream + at, stream_len - at);
    *len = stream_len + ulen;
    return m;
}

static bool page_equal(const uint8_t *a, const uint8_t *b)
{
    static const uint8_t zero[MS_PAGE_SIZE];
    return memcmp(a ? a : zero, b ? b : zero, MS_PAGE_SIZE) == 0;
}

/* The stream with unit u inserted at byte at: refused by default; with keep_unknown_rest, pages stop at u and the
 * rest is kept (the same in any chunking). Reassembled (eager), and with u taken out again, it is the original
 * stream in meaning: the same final RAM and the same device stream. The device stream loaded over the stored
 * pages (lazy) gives the same RAM too. */
static void check_opaque_rest(size_t at, const uint8_t *u, size_t ulen)
{
    size_t n;
    uint8_t *m = inject(at, u, ulen, &n);
    struct got ref = { 0 }, g = { 0 }, eager = { 0 }, lazy = { 0 };
    struct ms_summary s;
    vs_err e = { 0 };
    assert_int_equal(split(stream, stream_len, 0, &ref, &s, &e), 0);
    uint64_t all_pages = s.pages;
    assert_int_equal(split(m, n, 0, &g, &s, &e), -ENOTSUP);
    got_free(&g);
    static const size_t chunks[] = { 1, 4097, 0 };
    for (size_t c = 0; c < VS_ARRAY_SIZE(chunks); c++) {
        uint8_t *prev = g.dev;
        size_t prev_len = g.dev_len;
        g.dev = NULL;
        got_free(&g);
        if (split_with(m, n, chunks[c], true, &g, &s, &e))
            fail_msg("chunk %zu: %s", chunks[c], e.msg);
        assert_int_equal(s.opaque_from, at);
        assert_non_null(strstr(s.opaque_why, "unsupported"));
        assert_true(s.pages > 0 && s.pages < all_pages);
        if (prev) {
            assert_int_equal(g.dev_len, prev_len);
            assert_memory_equal(g.dev, prev, prev_len);
        }
        free(prev);
    }
    /* the rest is the device stream's end, as it came */
    assert_memory_equal(g.dev + g.dev_len - (n - at), m + at, n - at);

    /* eager: reassembled, u taken out again */
    struct src so = { &g };
    struct ms_page_reader rd = { .fill = r_fill, .want = r_want, .opaque = &so };
    size_t flen;
    uint8_t *full = reassemble_with(&rd, &g, &flen);
    size_t uat = flen - (n - at);
    assert_memory_equal(full + uat, u, ulen);
    memmove(full + uat, full + uat + ulen, flen - uat - ulen);
    if (split(full, flen - ulen, 0, &eager, &s, &e))
        fail_msg("eager: %s", e.msg);
    for (size_t i = 0; i < ref.npages; i++)
        if (!page_equal(ref.pages[i], eager.pages[i]))
            fail_msg("eager: page %zu differs", i);
    assert_int_equal(eager.dev_len, ref.dev_len);
    assert_memory_equal(eager.dev, ref.dev, ref.dev_len);

    /* lazy: the device stream, u taken out, over the stored pages */
    size_t dat = g.dev_len - (n - at);
    memmove(g.dev + dat, g.dev + dat + ulen, g.dev_len - dat - ulen);
    lazy.seed = &g;
    if (split(g.dev, g.dev_len - ulen, 0, &lazy, &s, &e))
        fail_msg("lazy: %s", e.msg);
    for (size_t i = 0; i < ref.npages; i++)
        if (!page_equal(ref.pages[i], lazy.pages[i]))
            fail_msg("lazy: page %zu differs", i);
    free(full);
    free(m);
    got_free(&ref);
    got_free(&g);
    got_free(&eager);
    got_free(&lazy);
}

static void test_unknown_after_pages(void **state)
{
    (void)state;
    size_t rec = first_record();
    /* Record k >= 1 of the first section (CONTINUE records of 'mem', whose header is not in the device stream):
     * after the first one (with the block name), 8 + 4096 bytes each. */
    size_t rec10 = rec + 8 + 1 + 3 + MS_PAGE_SIZE + 9 * (8 + MS_PAGE_SIZE);
    assert_int_equal(stream[rec10 + 7], 0x28);
    static const uint8_t flush[8] = { 0, 0, 0, 0, 0, 0, 0x02, 0x00 };           /* MULTIFD_FLUSH (8.x, multifd) */
    check_opaque_rest(rec10, flush, sizeof flush);
    /* between the two PART sections: a command section nobody knows */
    size_t sec2 = rec + 8 + 1 + 3 + MS_PAGE_SIZE + 19 * (8 + MS_PAGE_SIZE) + 8 + 5;
    assert_int_equal(stream[sec2], 0x02);
    static const uint8_t cmd[9] = { 0x08, 0x00, 0x42, 0x00, 0x04, 'v', 'm', 's', 'n' };
    check_opaque_rest(sec2, cmd, sizeof cmd);
    /* in the second section, after a ROM page (its header is in the device stream) and a page of 'mem' */
    struct got g = { 0 };
    struct ms_summary s;
    vs_err e = { 0 };
    assert_int_equal(split(stream, stream_len, 0, &g, &s, &e), 0);
    got_free(&g);
    size_t rom = sec2 + 5 + (8 + 1 + 3 + MS_PAGE_SIZE) + 3 * (8 + MS_PAGE_SIZE) + 8 * (8 + 1);
    assert_int_equal(stream[rom + 7] & 0x20, 0);                              /* names its block */
    assert_int_equal(stream[rom + 8], strlen("/rom@etc/acpi/tables"));
    check_opaque_rest(rom, flush, sizeof flush);
    /* after that ROM page, before a CONTINUE record of its block: the kept record already set the block */
    size_t rom2 = rom + 8 + 1 + strlen("/rom@etc/acpi/tables") + MS_PAGE_SIZE;
    assert_int_equal(stream[rom2 + 7], 0x28);
    check_opaque_rest(rom2, flush, sizeof flush);
}

/* ---- the page image: round trip, checksums ------------------------------------------------------------------ */
static void test_page_image(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmsnap-pf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *img = vs_xasprintf("%s/img", dir);
    struct mst_image_block b = { .name = "mem", .size = 16 * MST_PAGE_SIZE };
    struct mst_image *im = NULL;
    vs_err e = { 0 };
    assert_int_equal(mst_image_create(img, &b, 1, &im, &e), 0);
    uint8_t page[MST_PAGE_SIZE], buf[3 * MST_PAGE_SIZE];
    memset(page, 0xab, sizeof page);
    assert_int_equal(mst_image_put(im, 0, 4 * MST_PAGE_SIZE, page, &e), 0);
    assert_int_equal(mst_image_put(im, 0, 5 * MST_PAGE_SIZE, page, &e), 0);
    assert_int_equal(mst_image_put(im, 0, 5 * MST_PAGE_SIZE, NULL, &e), 0);    /* zeroed after being sent */
    assert_int_equal(mst_image_put(im, 0, 16 * MST_PAGE_SIZE, page, &e), -EINVAL);
    assert_int_equal(mst_image_commit(im, &e), 0);
    mst_image_close(im);
    assert_int_equal(mst_image_open(img, &im, &e), 0);
    assert_int_equal(mst_image_read(im, 0, buf, sizeof buf, 3 * MST_PAGE_SIZE, &e), 0);
    assert_int_equal(buf[0], 0);
    assert_memory_equal(buf + MST_PAGE_SIZE, page, MST_PAGE_SIZE);
    assert_int_equal(buf[2 * MST_PAGE_SIZE], 0);
    assert_true(mst_image_is_zero(im, 0, 5 * MST_PAGE_SIZE));
    assert_false(mst_image_is_zero(im, 0, 4 * MST_PAGE_SIZE));
    assert_int_equal(mst_image_read(im, 0, buf, 100, 4 * MST_PAGE_SIZE + 10, &e), 0);   /* partial page */
    mst_image_close(im);
    /* damage: a byte in the data page, then a byte in a hole */
    char *f = vs_xasprintf("%s/block0.img", img);
    int fd = open(f, O_RDWR);
    assert_int_equal(vs_pwrite_full(fd, "x", 1, 4 * MST_PAGE_SIZE + 7), 0);
    assert_int_equal(vs_pwrite_full(fd, "y", 1, 9 * MST_PAGE_SIZE), 0);
    close(fd);
    assert_int_equal(mst_image_open(img, &im, &e), 0);
    assert_int_equal(mst_image_read(im, 0, buf, MST_PAGE_SIZE, 4 * MST_PAGE_SIZE, &e), -EIO);
    assert_non_null(strstr(e.msg, "page 0x4000 of RAM block 'mem' fails its checksum"));
    assert_int_equal(mst_image_read(im, 0, buf, 2, 9 * MST_PAGE_SIZE + 5, &e), -EIO);
    assert_int_equal(mst_image_read(im, 0, buf, MST_PAGE_SIZE, 8 * MST_PAGE_SIZE, &e), 0);
    mst_image_close(im);
    char *cmd = vs_xasprintf("rm -rf '%s'", dir);   /* test cleanup only: our own mkdtemp path */
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f);
    free(img);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("cannot open %s", path);
    off_t n = lseek(fd, 0, SEEK_END);
    uint8_t *b = malloc((size_t)n + 1);
    assert_int_equal(vs_pread_full(fd, b, (size_t)n, 0), n);
    close(fd);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* The stream under test and what make-seeds.py found in it. */
static void load(const char *name)
{
    free(stream);
    json_decref(expect);
    size_t jl;
    char *path = vs_xasprintf("%s/%s.stream", MS_TEST_DATA, name);
    stream = slurp(path, &stream_len);
    free(path);
    path = vs_xasprintf("%s/%s.json", MS_TEST_DATA, name);
    char *j = (char *)slurp(path, &jl);
    expect = json_loads(j, 0, NULL);
    free(j);
    free(path);
}

static int use_qemu10(void **state) { (void)state; load("qemu10-precopy"); return 0; }
static int use_qemu72(void **state) { (void)state; load("real-trimmed"); return 0; }

int main(void)
{
    load("real-trimmed");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_real),
        cmocka_unit_test_setup_teardown(test_split_real, use_qemu10, use_qemu72),
        cmocka_unit_test(test_reassemble_fixed_point),
        cmocka_unit_test_setup_teardown(test_reassemble_fixed_point, use_qemu10, use_qemu72),
        cmocka_unit_test(test_reassemble_runs),
        cmocka_unit_test(test_truncations_fail),
        cmocka_unit_test_setup_teardown(test_truncations_fail, use_qemu10, use_qemu72),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_committed),
        cmocka_unit_test_setup_teardown(test_command_sections, use_qemu10, use_qemu72),
        cmocka_unit_test(test_unknown_after_pages),
        cmocka_unit_test(test_page_image),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(expect);
    free(stream);
    return r;
}
