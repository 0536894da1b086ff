/* Unit tests for the image component against images made by qemu-img/qemu-io (run with posix_spawn, no shell):
 * reads at random offsets and the allocation map agree with `qemu-img convert -O raw`; in-memory images; errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;
static char dir[] = "/tmp/vmsnap-img-test-XXXXXX";

static const struct img_opts AUTO = { IMG_FORMAT_AUTO, NULL };

static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

/* Run argv (NULL-terminated), output discarded; returns the exit status. */
static int spawn(const char *const *argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int st = -1;
    if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0)
        waitpid(pid, &st, 0);
    posix_spawn_file_actions_destroy(&fa);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *b = vs_xmalloc((size_t)st.st_size + 1);
    assert_int_equal(vs_pread_full(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* A qcow2 image with data, zero and discarded clusters; returns its path. */
static char *make_qcow2(const char *name, const char *opts)
{
    char *img = tpath(name);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, "4M", NULL };
    if (spawn(create) != 0)
        return NULL;
    const char *io[] = { "qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 1000k 300k",
                         "-c", "write -z 1M 64k", "-c", "write -P 0x02 2M 512k", "-c", "discard 2M 256k",
                         "-c", "write -P 0x7e 4190208 4096", img, NULL };
    assert_int_equal(spawn(io), 0);
    return img;
}

/* The image must read exactly like qemu-img's raw conversion, and its map must only call zero what is zero. */
static void check_against_qemu(struct img *im, const char *img, uint64_t min_zero)
{
    VS_AUTOFREE char *ref = tpath("ref.raw");
    const char *conv[] = { "qemu-img", "convert", "-O", "raw", img, ref, NULL };
    assert_int_equal(spawn(conv), 0);
    size_t len;
    VS_AUTOFREE uint8_t *want = slurp(ref, &len);
    assert_int_equal(img_size(im), len);
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(len);
    vs_err e = { 0 };
    assert_int_equal(img_pread(im, buf, len, 0, &e), 0);
    assert_memory_equal(buf, want, len);
    uint32_t x = 11;
    for (int i = 0; i < 300; i++) {
        x = x * 1103515245u + 12345;
        size_t off = x % len, n = VS_MIN(len - off, (size_t)(x >> 5) % 200000);
        if (!n)
            continue;
        assert_int_equal(img_pread(im, buf, n, off, &e), 0);
        assert_memory_equal(buf, want + off, n);
    }
    uint64_t zero_bytes = 0, data_bytes = 0;
    for (uint64_t pos = 0, run; pos < len; pos += run) {
        unsigned flags;
        assert_int_equal(img_block_status(im, pos, len - pos, &run, &flags, &e), 0);
        assert_true(run > 0 && run <= len - pos);
        if (flags & IMG_STATUS_ZERO) {
            for (uint64_t k = 0; k < run; k++)
                assert_int_equal(want[pos + k], 0);
            zero_bytes += run;
        } else {
            data_bytes += run;
        }
    }
    assert_true(zero_bytes >= min_zero);
    assert_true(data_bytes >= 64u << 10);
    assert_int_equal(img_pread(im, buf, 2, len - 1, &e), -EINVAL);
    unlink(ref);
}

static void test_qcow2_layouts(void **state)
{
    (void)state;
    const char *opts[] = { "compat=0.10,cluster_size=512", "compat=0.10,cluster_size=64k",
                           "compat=1.1,cluster_size=4k", "compat=1.1,cluster_size=2M",
                           "extended_l2=on,cluster_size=32k" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(opts); i++) {
        VS_AUTOFREE char *img = make_qcow2("l.qcow2", opts[i]);
        uint64_t min_zero = strstr(opts[i], "2M") ? 0 : 2u << 20;   /* most of the disk was never written */
        if (!img)
            skip();
        struct img *im;
        vs_err e = { 0 };
        assert_int_equal(img_open(img, &AUTO, &im, &e), 0);
        assert_int_equal(img_format(im), IMG_FORMAT_QCOW2);
        check_against_qemu(im, img, min_zero);
        img_close(im);
        /* The same bytes from memory. */
        size_t len;
        VS_AUTOFREE uint8_t *mem = slurp(img, &len);
        assert_int_equal(img_open_mem(mem, len, "mem.qcow2", IMG_FORMAT_AUTO, &im, &e), 0);
        check_against_qemu(im, img, min_zero);
        img_close(im);
        unlink(img);
    }
}

static void test_compressed(void **state)
{
    (void)state;
    VS_AUTOFREE char *raw = tpath("c.raw");
    int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    VS_AUTOFREE uint8_t *b = vs_xmalloc(1 << 20);
    uint32_t x = 3;
    for (size_t i = 0; i < (1u << 20); i++) {
        x = x * 1103515245u + 12345;
        b[i] = i & 0x10000 ? (uint8_t)(x >> 16) : (uint8_t)"compressible "[i % 13];
    }
    assert_int_equal(vs_write_full(fd, b, 1 << 20), 0);
    close(fd);
    const char *types[] = { "compression_type=zlib", "compression_type=zstd" };
    for (size_t i = 0; i < 2; i++) {
        VS_AUTOFREE char *img = tpath("c.qcow2");
        const char *conv[] = { "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", types[i], raw, img,
                               NULL };
        if (spawn(conv) != 0)
            skip();
        struct img *im;
        vs_err e = { 0 };
        assert_int_equal(img_open(img, &AUTO, &im, &e), 0);
        VS_AUTOFREE uint8_t *got = vs_xmalloc(1 << 20);
        for (size_t off = 0; off < (1u << 20); off += 77777) {   /* odd pieces across clusters */
            size_t n = VS_MIN((size_t)77777, (size_t)(1u << 20) - off);
            assert_int_equal(img_pread(im, got + off, n, off, &e), 0);
        }
        assert_memory_equal(got, b, 1 << 20);
        img_close(im);
        unlink(img);
    }
    unlink(raw);
}

static void test_raw_and_errors(void **state)
{
    (void)state;
    VS_AUTOFREE char *raw = tpath("r.raw");
    int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(vs_pwrite_full(fd, "data", 4, 1 << 20), 0);   /* a 1 MiB hole, then data */
    close(fd);
    struct img *im;
    vs_err e = { 0 };
    assert_int_equal(img_open(raw, &AUTO, &im, &e), 0);
    assert_int_equal(img_format(im), IMG_FORMAT_RAW);
    assert_int_equal(img_size(im), (1 << 20) + 4);
    uint64_t run;
    unsigned flags;
    assert_int_equal(img_block_status(im, 0, img_size(im), &run, &flags, &e), 0);
    if (flags == IMG_STATUS_ZERO)                /* tmpfs and ext4 report the hole */
        assert_true(run > 0 && run <= (1u << 20));
    char got[4];
    assert_int_equal(img_pread(im, got, 4, 1 << 20, &e), 0);
    assert_memory_equal(got, "data", 4);
    assert_int_equal(img_pread(im, got, 4, (1 << 20) + 1, &e), -EINVAL);
    img_close(im);

    assert_int_equal(img_open(raw, &(struct img_opts){ IMG_FORMAT_QCOW2, NULL }, &im, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "not a qcow2 image"));
    assert_non_null(strstr(e.msg, "r.raw"));
    assert_true(img_open(dir, &AUTO, &im, &e) < 0);
    assert_non_null(strstr(e.msg, "directory"));

    /* A qcow2 with a backing file cannot be read from memory: refused by name. */
    VS_AUTOFREE char *top = tpath("top.qcow2");
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", "r.raw", "-F", "raw", top, NULL };
    if (spawn(create) != 0)
        skip();
    assert_int_equal(img_open(top, &AUTO, &im, &e), -EPERM);   /* not followed unless asked */
    assert_non_null(strstr(e.msg, "backing file 'r.raw'"));
    assert_non_null(strstr(e.msg, "--follow-backing"));
    assert_int_equal(img_open(top, &(struct img_opts){ IMG_FORMAT_AUTO, dir }, &im, &e), 0);
    assert_int_equal(img_backing_depth(im), 1);
    assert_int_equal(img_pread(im, got, 4, 1 << 20, &e), 0);
    assert_memory_equal(got, "data", 4);
    img_close(im);
    size_t len;
    VS_AUTOFREE uint8_t *mem = slurp(top, &len);
    assert_int_equal(img_open_mem(mem, len, "m.qcow2", IMG_FORMAT_AUTO, &im, &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "backing file 'r.raw'"));
    /* Every header byte flipped: an error or a sound image, never a crash (ASan run). */
    for (size_t i = 0; i < VS_MIN(len, (size_t)512); i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            mem[i] ^= (uint8_t)(1 << bit);
            if (img_open_mem(mem, len, "m.qcow2", IMG_FORMAT_AUTO, &im, &e) == 0)
                img_close(im);
            mem[i] ^= (uint8_t)(1 << bit);
        }
    }
    unlink(top);
    unlink(raw);
}

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(vs_write_full(fd, buf, len), 0);
    close(fd);
}

/* A guest's raw disk whose first bytes are a qcow2 header naming a host file: read as the raw bytes it holds,
 * from a file or from memory, unless the user says qcow2; and even then the host file is not read unless
 * backing files are allowed. */
static void test_raw_disk_with_qcow2_header(void **state)
{
    (void)state;
    VS_AUTOFREE char *secret = tpath("secret");
    write_file(secret, "host secret, not the guest's", 28);
    VS_AUTOFREE char *q = tpath("evil.qcow2");
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", q, "64k", NULL };
    if (spawn(create) != 0)
        skip();
    size_t len;
    VS_AUTOFREE uint8_t *bytes = slurp(q, &len);
    VS_AUTOFREE uint8_t *got = vs_xmalloc(len);
    const char *names[] = { "disk.raw", "disk.img", "disk", "disk.qcow2.raw" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
        VS_AUTOFREE char *raw = tpath(names[i]);
        write_file(raw, bytes, len);
        struct img *im;
        vs_err e = { 0 };
        assert_int_equal(img_open(raw, &AUTO, &im, &e), 0);
        assert_int_equal(img_format(im), IMG_FORMAT_RAW);
        assert_true(img_raw_with_qcow2_magic(im));
        assert_int_equal(img_size(im), len);
        assert_int_equal(img_pread(im, got, len, 0, &e), 0);
        assert_memory_equal(got, bytes, len);
        img_close(im);
        assert_int_equal(img_open_mem(bytes, len, names[i], IMG_FORMAT_AUTO, &im, &e), 0);
        assert_int_equal(img_format(im), IMG_FORMAT_RAW);
        img_close(im);
        /* --format qcow2: the header is read, its backing file is not. */
        assert_int_equal(img_open(raw, &(struct img_opts){ IMG_FORMAT_QCOW2, NULL }, &im, &e), -EPERM);
        assert_non_null(strstr(e.msg, secret));
        unlink(raw);
    }
    unlink(q);
    unlink(secret);
}

/* With backing files allowed: only regular files inside the allowed directory, whatever the name says. */
static void test_backing_rules(void **state)
{
    (void)state;
    VS_AUTOFREE char *sub = tpath("sub");
    assert_int_equal(mkdir(sub, 0700), 0);
    VS_AUTOFREE char *outside = tpath("outside.raw");
    write_file(outside, "outside", 7);
    VS_AUTOFREE char *inside = tpath("sub/inside.raw");
    write_file(inside, "inside!", 7);
    VS_AUTOFREE char *fifo = tpath("sub/fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    VS_AUTOFREE char *link = tpath("sub/link.raw");
    assert_int_equal(symlink(outside, link), 0);
    VS_AUTOFREE char *zero = tpath("sub/zero");
    assert_int_equal(symlink("/dev/zero", zero), 0);
    struct { const char *backing; int ok; const char *needle; } cases[] = {
        { "inside.raw", 1, NULL },
        { "../outside.raw", 0, "outside" },
        { outside, 0, "outside" },
        { "link.raw", 0, "outside" },
        { "fifo", 0, "not a regular file" },
        { "zero", 0, "/dev/zero" },
        { "/dev/zero", 0, "/dev/zero" },
        { "missing.raw", 0, "missing.raw" },
    };
    VS_AUTOFREE char *top = tpath("sub/top.qcow2");
    for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
        const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", cases[i].backing, "-F", "raw",
                                 top, "64k", NULL };
        if (spawn(create) != 0)
            skip();
        struct img *im = NULL;
        vs_err e = { 0 };
        int r = img_open(top, &(struct img_opts){ IMG_FORMAT_AUTO, sub }, &im, &e);
        if (cases[i].ok) {
            assert_int_equal(r, 0);
            char got[7];
            assert_int_equal(img_pread(im, got, 7, 0, &e), 0);
            assert_memory_equal(got, "inside!", 7);
            img_close(im);
        } else {
            if (r == 0)
                fail_msg("backing file '%s' was followed", cases[i].backing);
            if (!strstr(e.msg, cases[i].needle) || !strstr(e.msg, "top.qcow2"))
                fail_msg("backing file '%s': %s", cases[i].backing, e.msg);
        }
    }
    /* A wider directory allows the file outside sub/. */
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "../outside.raw", "-F", "raw",
                             top, "64k", NULL };
    assert_int_equal(spawn(create), 0);
    struct img *im = NULL;
    vs_err e = { 0 };
    assert_int_equal(img_open(top, &(struct img_opts){ IMG_FORMAT_AUTO, dir }, &im, &e), 0);
    img_close(im);
    /* Everything allowed still means regular files only. */
    const char *dev[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/dev/zero", "-F", "raw", top, "64k",
                          NULL };
    assert_int_equal(spawn(dev), 0);
    assert_int_equal(img_open(top, &(struct img_opts){ IMG_FORMAT_AUTO, "/" }, &im, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "not a regular file"));
    unlink(top), unlink(zero), unlink(link), unlink(fifo), unlink(inside), unlink(outside), rmdir(sub);
}

/* vmsnap's own empty qcow2: qemu-img finds it clean, our parser reads it as zeros of the right size. */
static void test_create(void **state)
{
    (void)state;
    static const uint64_t sizes[] = { 4096, 64ull << 20, (512ull << 20) + 1, 3ull << 40 };
    vs_err e = { 0 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(sizes); i++) {
        VS_AUTOFREE char *img = tpath("new.qcow2");
        assert_int_equal(img_qcow2_create(img, sizes[i], &e), 0);
        assert_true(img_qcow2_create(img, sizes[i], &e) < 0);   /* never over an existing file */
        const char *chk[] = { "qemu-img", "check", "-q", "-f", "qcow2", img, NULL };
        assert_int_equal(spawn(chk), 0);
        IMG_AUTOCLOSE struct img *im = NULL;
        assert_int_equal(img_open(img, &AUTO, &im, &e), 0);
        assert_int_equal(img_size(im), sizes[i]);
        uint64_t run;
        unsigned flags;
        assert_int_equal(img_block_status(im, 0, sizes[i], &run, &flags, &e), 0);
        assert_int_equal(run, sizes[i]);
        assert_int_equal(flags, IMG_STATUS_ZERO);
        unlink(img);
    }
    VS_AUTOFREE char *zero = tpath("zero.qcow2");
    assert_true(img_qcow2_create(zero, 0, &e) < 0);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_layouts),
        cmocka_unit_test(test_compressed),
        cmocka_unit_test(test_raw_and_errors),
        cmocka_unit_test(test_raw_disk_with_qcow2_header),
        cmocka_unit_test(test_backing_rules),
        cmocka_unit_test(test_create),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    return r;
}
