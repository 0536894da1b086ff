/* mst_capture_fd over a real QEMU 7.2 stream (real-trimmed.stream): pages land page-addressed in ram/mem, the
 * device stream equals the splitter's, reassembly gives back an equivalent stream, a second capture against
 * the first as thin parent stores no RAM data, a refusal before the commit falls back to the opaque stream
 * byte for byte, something unknown after it keeps the rest in the device stream (the archive restores the same
 * RAM, eagerly or lazily), and damage after it fails the capture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include "migstream/migstream.h"
#include "memstore/memstore.h"

static uint8_t *stream;
static size_t stream_len;
static char dir[] = "/tmp/vmsnap-capture-XXXXXX";

/* What a direct split of a stream gives: final pages of block 0 and the device stream. */
struct ref {
    uint64_t npages;
    uint8_t *ram;            /* npages * 4096, zero where no record */
    uint8_t *dev;
    size_t dev_len;
    const uint8_t *seed;     /* RAM before the stream (a lazy destination's), npages * 4096, or NULL */
};

static int r_blocks(void *o, struct ms_block *b, unsigned n, vs_err *e)
{
    (void)e;
    struct ref *r = o;
    for (unsigned i = 0; i < n; i++)
        b[i].split = i == 0;
    r->npages = b[0].size / MS_PAGE_SIZE;
    r->ram = vs_xcalloc(r->npages, MS_PAGE_SIZE);
    if (r->seed)
        memcpy(r->ram, r->seed, r->npages * MS_PAGE_SIZE);
    return 0;
}

static int r_page(void *o, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e)
{
    (void)e, (void)b;
    struct ref *r = o;
    if (data)
        memcpy(r->ram + off, data, MS_PAGE_SIZE);
    else
        memset(r->ram + off, 0, MS_PAGE_SIZE);
    return 0;
}

static int r_device(void *o, const void *buf, size_t len, vs_err *e)
{
    (void)e;
    struct ref *r = o;
    r->dev = vs_xrealloc(r->dev, r->dev_len + len);
    memcpy(r->dev + r->dev_len, buf, len);
    r->dev_len += len;
    return 0;
}

static void reference(const uint8_t *buf, size_t len, struct ref *r)
{
    *r = (struct ref){ .seed = r->seed };
    struct ms_ops ops = { .blocks = r_blocks, .page = r_page, .device = r_device, .opaque = r };
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    vs_err e = { 0 };
    struct ms_summary s;
    assert_int_equal(ms_parser_new(&ops, NULL, &p, &e), 0);
    assert_int_equal(ms_push(p, buf, len, &e), 0);
    assert_int_equal(ms_finish(p, &s, &e), 0);
}

static int memfd_with(const void *buf, size_t len)
{
    int fd = memfd_create("stream", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(vs_write_full(fd, buf, len), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static int capture(const uint8_t *buf, size_t len, const char *path, const char *parent,
                   struct mst_capture_result *res, vs_err *e)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.parent_path = parent;
    o.thin = parent != NULL;
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(path, &o, &w, e), 0);
    int fd = memfd_with(buf, len);
    struct mst_capture_opts co = { .tmpdir = dir };
    int r = mst_capture_fd(w, fd, &co, res, e);
    close(fd);
    if (r < 0) {
        arc_writer_abort(w);
        return r;
    }
    return arc_writer_finish(w, e);
}

static void read_stream(struct arc *a, const char *name, uint8_t **out, size_t *len)
{
    int s = arc_find_stream(a, ARC_KIND_OTHER, name);
    assert_true(s >= 0);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)s, &si);
    *len = si.size;
    *out = vs_xmalloc(si.size + 1);
    vs_err e = { 0 };
    assert_int_equal(arc_pread(a, (unsigned)s, *out, si.size, 0, &e), 0);
}

/* Capture buf into dir/name (as pages); returns the archive's path. */
static char *capture_paged(const uint8_t *buf, size_t len, const char *name, struct mst_capture_result *res)
{
    char *path = vs_xasprintf("%s/%s", dir, name);
    vs_err e = { 0 };
    if (capture(buf, len, path, NULL, res, &e))
        fail_msg("%s", e.msg);
    assert_true(res->paged);
    return path;
}

/* The stream eager restore feeds QEMU. */
static uint8_t *reassembled(struct arc *a, size_t *len)
{
    vs_err e = { 0 };
    int out = memfd_create("out", MFD_CLOEXEC);
    assert_int_equal(mst_reassemble(a, out, NULL, &e), 0);
    *len = (size_t)lseek(out, 0, SEEK_END);
    uint8_t *re = vs_xmalloc(*len);
    assert_int_equal(vs_pread_full(out, re, *len, 0), (ssize_t)*len);
    close(out);
    return re;
}

static void test_paged(void **state)
{
    (void)state;
    struct ref ref = { 0 };
    reference(stream, stream_len, &ref);
    struct mst_capture_result res;
    vs_err e = { 0 };
    VS_AUTOFREE char *path = capture_paged(stream, stream_len, "a.vmsnap", &res);
    assert_string_equal(res.block, "mem");
    assert_int_equal(res.ram_size, 134217728);
    assert_int_equal(res.stream_bytes, stream_len);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    assert_true(mst_is_paged(a));
    assert_int_equal(arc_find_stream(a, ARC_KIND_MEMORY, NULL), ARC_STREAM_NONE);
    uint8_t *ram, *dev;
    size_t ram_len, dev_len;
    read_stream(a, "ram/mem", &ram, &ram_len);
    assert_int_equal(ram_len, ref.npages * MS_PAGE_SIZE);
    assert_memory_equal(ram, ref.ram, ram_len);
    read_stream(a, MST_DEVICE, &dev, &dev_len);
    assert_int_equal(dev_len, ref.dev_len);
    assert_memory_equal(dev, ref.dev, dev_len);
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    /* eager path: the reassembled stream splits into the same pages and device stream */
    size_t olen;
    uint8_t *re = reassembled(a, &olen);
    struct ref ref2 = { 0 };
    reference(re, olen, &ref2);
    assert_memory_equal(ref2.ram, ref.ram, ram_len);
    assert_int_equal(ref2.dev_len, ref.dev_len);
    assert_memory_equal(ref2.dev, ref.dev, ref.dev_len);
    arc_close(a);

    /* thin: the same RAM again stores no RAM data */
    VS_AUTOFREE char *child = vs_xasprintf("%s/b.vmsnap", dir);
    if (capture(stream, stream_len, child, path, &res, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(arc_open(child, NULL, &a, &e), 0);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)arc_find_stream(a, ARC_KIND_OTHER, "ram/mem"), &si);
    assert_int_equal(si.data_blocks + si.dedup_blocks, 0);
    assert_true(si.parent_blocks > 0);
    free(ram);
    read_stream(a, "ram/mem", &ram, &ram_len);
    assert_memory_equal(ram, ref.ram, ram_len);
    arc_close(a);
    free(ram), free(dev), free(re);
    free(ref.ram), free(ref.dev), free(ref2.ram), free(ref2.dev);
}

/* Offset of the first page record's flag byte (a page record of block 'mem' right after the setup section). */
static size_t first_flags(void)
{
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    struct ms_ops ops = { 0 };
    vs_err e = { 0 };
    ms_parser_new(&ops, NULL, &p, &e);
    size_t i = 0;
    while (!ms_blocks(p, &(unsigned){ 0 }))
        assert_int_equal(ms_push(p, stream + i++, 1, &e), 0);
    return i + 8 + 5 + 5 + 7;      /* EOS, footer, PART header, then byte 7 of the be64 */
}

static void test_fallback(void **state)
{
    (void)state;
    uint8_t *m = vs_xmalloc(stream_len);
    memcpy(m, stream, stream_len);
    size_t at = first_flags();
    assert_int_equal(m[at] & ~0x20, 0x08);
    m[at] |= 0x40;   /* XBZRLE: refused before any page was stored */
    VS_AUTOFREE char *path = vs_xasprintf("%s/opaque.vmsnap", dir);
    struct mst_capture_result res;
    vs_err e = { 0 };
    assert_int_equal(capture(m, stream_len, path, NULL, &res, &e), 0);
    assert_false(res.paged);
    assert_non_null(strstr(res.note, "XBZRLE"));
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    assert_false(mst_is_paged(a));
    int s = arc_find_stream(a, ARC_KIND_MEMORY, NULL);
    assert_true(s >= 0);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)s, &si);
    assert_int_equal(si.size, stream_len);
    uint8_t *got = vs_xmalloc(stream_len);
    assert_int_equal(arc_pread(a, (unsigned)s, got, stream_len, 0, &e), 0);
    assert_memory_equal(got, m, stream_len);   /* the opaque stream, byte for byte */
    arc_close(a);

    /* damage after pages were stored: the capture fails, nothing is left */
    memcpy(m, stream, stream_len);
    m[stream_len - 3] = 'X';   /* JSON description */
    VS_AUTOFREE char *bad = vs_xasprintf("%s/bad.vmsnap", dir);
    assert_int_equal(capture(m, stream_len, bad, NULL, &res, &e), -EBADMSG);
    assert_int_equal(access(bad, F_OK), -1);
    free(got);
    free(m);
}

/* The eager stream of an archive whose device stream ends with an opaque rest of rest_len bytes of the captured
 * stream, starting with the injected unit u: with u taken out, it means what want (the stream without u) does. */
static void check_eager(struct arc *a, size_t rest_len, const uint8_t *u, size_t ulen, const struct ref *want)
{
    size_t olen;
    uint8_t *re = reassembled(a, &olen);
    size_t uat = olen - rest_len;
    assert_memory_equal(re + uat, u, ulen);
    memmove(re + uat, re + uat + ulen, olen - uat - ulen);
    struct ref got = { 0 };
    reference(re, olen - ulen, &got);
    assert_memory_equal(got.ram, want->ram, want->npages * MS_PAGE_SIZE);
    assert_int_equal(got.dev_len, want->dev_len);
    assert_memory_equal(got.dev, want->dev, want->dev_len);
    free(re), free(got.ram), free(got.dev);
}

/* A command section nobody knows, between the two PART sections (pages were stored before it). */
static void test_opaque_rest(void **state)
{
    (void)state;
    static const uint8_t u[9] = { 0x08, 0x00, 0x42, 0x00, 0x04, 'v', 'm', 's', 'n' };
    size_t at = first_flags() - 7 + 8 + 1 + 3 + MS_PAGE_SIZE + 19 * (8 + MS_PAGE_SIZE) + 8 + 5;
    assert_int_equal(stream[at], 0x02);
    size_t n = stream_len + sizeof u;
    uint8_t *m = vs_xmalloc(n);
    memcpy(m, stream, at);
    memcpy(m + at, u, sizeof u);
    memcpy(m + at + sizeof u, stream + at, stream_len - at);
    struct mst_capture_result res;
    vs_err e = { 0 };
    VS_AUTOFREE char *path = capture_paged(m, n, "rest.vmsnap", &res);
    assert_non_null(strstr(res.note, "is kept as QEMU sent it"));
    assert_non_null(strstr(res.note, "command section 66 (unknown"));
    struct ref ref = { 0 }, lazy = { 0 };
    reference(stream, stream_len, &ref);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    /* eager: the reassembled stream without u means what the original does */
    check_eager(a, n - at, u, sizeof u, &ref);
    /* lazy: the device stream without u, loaded over ram/mem */
    uint8_t *ram, *dev;
    size_t ram_len, dev_len;
    read_stream(a, "ram/mem", &ram, &ram_len);
    read_stream(a, MST_DEVICE, &dev, &dev_len);
    size_t dat = dev_len - (n - at);
    assert_memory_equal(dev + dat, u, sizeof u);
    memmove(dev + dat, dev + dat + sizeof u, dev_len - dat - sizeof u);
    lazy.seed = ram;
    reference(dev, dev_len - sizeof u, &lazy);
    assert_memory_equal(lazy.ram, ref.ram, ref.npages * MS_PAGE_SIZE);
    arc_close(a);
    free(m), free(ram), free(dev);
    free(ref.ram), free(ref.dev), free(lazy.ram), free(lazy.dev);
}

/* An opaque rest larger than the device stream eager restore keeps in memory (64 MiB): 66 MiB of pages of 'mem'
 * follow the unknown command. The eager stream still means the same (it goes through a temporary file). */
static void test_big_rest(void **state)
{
    (void)state;
    static const uint8_t u[9] = { 0x08, 0x00, 0x42, 0x00, 0x04, 'v', 'm', 's', 'n' };
    const size_t npages = 66u << 8, at = first_flags() - 7 + 8 + 1 + 3 + MS_PAGE_SIZE + 19 * (8 + MS_PAGE_SIZE) + 8 + 5;
    size_t body = 5 + 4 + npages * (8 + MS_PAGE_SIZE) + 13;   /* one PART section of npages pages */
    size_t n = stream_len + sizeof u + body;
    uint8_t *m = vs_xmalloc(n), *q = m + at;
    memcpy(m, stream, at);
    memcpy(q, u, sizeof u);
    q += sizeof u;
    uint8_t *sec = q;
    *q++ = 0x02;
    vs_put_be32(q, vs_get_be32(stream + at + 1));   /* the ram section's id, from the next PART header */
    q += 4;
    for (size_t i = 0; i < npages; i++) {
        vs_put_be64(q, (uint64_t)i * MS_PAGE_SIZE | 0x08 | (i ? 0x20 : 0));
        q += 8;
        if (!i) {
            memcpy(q, "\3mem", 4);
            q += 4;
        }
        memset(q, (int)(i % 251) + 1, MS_PAGE_SIZE);
        q += MS_PAGE_SIZE;
    }
    vs_put_be64(q, 0x10);
    q[8] = 0x7e;
    memcpy(q + 9, sec + 1, 4);
    q += 13;
    memcpy(q, stream + at, stream_len - at);
    struct mst_capture_result res;
    vs_err e = { 0 };
    VS_AUTOFREE char *path = capture_paged(m, n, "big.vmsnap", &res);
    assert_non_null(strstr(res.note, "is kept as QEMU sent it"));
    /* the same stream without u is what the eager stream without u must mean */
    memmove(m + at, m + at + sizeof u, n - at - sizeof u);
    struct ref ref = { 0 };
    reference(m, n - sizeof u, &ref);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)arc_find_stream(a, ARC_KIND_OTHER, MST_DEVICE), &si);
    assert_true(si.size > (64u << 20));
    check_eager(a, n - at, u, sizeof u, &ref);
    arc_close(a);
    free(m), free(ref.ram), free(ref.dev);
}

int main(void)
{
    VS_AUTOFREE char *p = vs_xasprintf("%s/real-trimmed.stream", MS_TEST_DATA);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !mkdtemp(dir))
        return 1;
    stream_len = (size_t)lseek(fd, 0, SEEK_END);
    stream = vs_xmalloc(stream_len);
    if (vs_pread_full(fd, stream, stream_len, 0) != (ssize_t)stream_len)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_paged), cmocka_unit_test(test_fallback),
                                        cmocka_unit_test(test_opaque_rest), cmocka_unit_test(test_big_rest) };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    const char *names[] = { "a.vmsnap", "b.vmsnap", "opaque.vmsnap", "bad.vmsnap", "rest.vmsnap", "big.vmsnap" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
        VS_AUTOFREE char *f = vs_xasprintf("%s/%s", dir, names[i]);
        unlink(f);
    }
    rmdir(dir);
    free(stream);
    return r;
}
