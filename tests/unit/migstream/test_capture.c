/* pf_capture_fd over a real QEMU 7.2 stream (real-trimmed.stream): pages land page-addressed in ram/mem, the
 * device stream equals the splitter's, reassembly gives back an equivalent stream, a second capture against
 * the first as thin parent stores no RAM data, a refusal before the commit falls back to the opaque stream
 * byte for byte, and damage after it fails the capture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include "migstream/migstream.h"
#include "pagefs/pagefs.h"

static uint8_t *stream;
static size_t stream_len;
static char dir[] = "/tmp/vmsnap-capture-XXXXXX";

/* What a direct split of a stream gives: final pages of block 0 and the device stream. */
struct ref {
    uint64_t npages;
    uint8_t *ram;            /* npages * 4096, zero where no record */
    uint8_t *dev;
    size_t dev_len;
};

static int r_blocks(void *o, struct ms_block *b, unsigned n, vs_err *e)
{
    (void)e;
    struct ref *r = o;
    for (unsigned i = 0; i < n; i++)
        b[i].split = i == 0;
    r->npages = b[0].size / MS_PAGE_SIZE;
    r->ram = vs_xcalloc(r->npages, MS_PAGE_SIZE);
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
    *r = (struct ref){ 0 };
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
                   struct pf_capture_result *res, vs_err *e)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.parent_path = parent;
    o.thin = parent != NULL;
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(path, &o, &w, e), 0);
    int fd = memfd_with(buf, len);
    struct pf_capture_opts co = { .tmpdir = dir };
    int r = pf_capture_fd(w, fd, &co, res, e);
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

static void test_paged(void **state)
{
    (void)state;
    struct ref ref;
    reference(stream, stream_len, &ref);
    VS_AUTOFREE char *path = vs_xasprintf("%s/a.vmsnap", dir);
    struct pf_capture_result res;
    vs_err e = { 0 };
    if (capture(stream, stream_len, path, NULL, &res, &e))
        fail_msg("%s", e.msg);
    assert_true(res.paged);
    assert_string_equal(res.block, "mem");
    assert_int_equal(res.ram_size, 134217728);
    assert_int_equal(res.stream_bytes, stream_len);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    assert_true(pf_archive_is_paged(a));
    assert_int_equal(arc_find_stream(a, ARC_KIND_MEMORY, NULL), ARC_STREAM_NONE);
    uint8_t *ram, *dev;
    size_t ram_len, dev_len;
    read_stream(a, "ram/mem", &ram, &ram_len);
    assert_int_equal(ram_len, ref.npages * MS_PAGE_SIZE);
    assert_memory_equal(ram, ref.ram, ram_len);
    read_stream(a, PF_ARC_DEVICE, &dev, &dev_len);
    assert_int_equal(dev_len, ref.dev_len);
    assert_memory_equal(dev, ref.dev, dev_len);
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    /* eager path: the reassembled stream splits into the same pages and device stream */
    int out = memfd_create("out", MFD_CLOEXEC);
    assert_int_equal(pf_archive_reassemble(a, out, NULL, &e), 0);
    off_t olen = lseek(out, 0, SEEK_END);
    uint8_t *re = vs_xmalloc((size_t)olen);
    assert_int_equal(vs_pread_full(out, re, (size_t)olen, 0), olen);
    struct ref ref2;
    reference(re, (size_t)olen, &ref2);
    assert_memory_equal(ref2.ram, ref.ram, ram_len);
    assert_int_equal(ref2.dev_len, ref.dev_len);
    assert_memory_equal(ref2.dev, ref.dev, ref.dev_len);
    close(out);
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
    struct pf_capture_result res;
    vs_err e = { 0 };
    assert_int_equal(capture(m, stream_len, path, NULL, &res, &e), 0);
    assert_false(res.paged);
    assert_non_null(strstr(res.note, "XBZRLE"));
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    assert_false(pf_archive_is_paged(a));
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
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_paged), cmocka_unit_test(test_fallback) };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    const char *names[] = { "a.vmsnap", "b.vmsnap", "opaque.vmsnap", "bad.vmsnap" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
        VS_AUTOFREE char *f = vs_xasprintf("%s/%s", dir, names[i]);
        unlink(f);
    }
    rmdir(dir);
    free(stream);
    return r;
}
