/* Unit tests for the overlay stack (src/nbd/overlay.c, layer.c) over a real raw image file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "nbd/nbd.h"

#define DISK (4u << 20)        /* 4 MiB of base */
#define ODD_DISK (DISK + 1000) /* a disk whose last block is short */

struct fx {
    char dir[64], img[96], ovl[96];
};

static uint8_t base_byte(uint64_t off) { return (uint8_t)(off * 7 + (off >> 12) * 13 + 1); }

static void make_image(const char *path, uint64_t size, uint8_t xor)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(size);
    for (uint64_t i = 0; i < size; i++)
        buf[i] = base_byte(i) ^ xor;
    assert_int_equal(vs_pwrite_full(fd, buf, size, 0), 0);
    free(buf);
    close(fd);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vmsnap-test-ovl.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->img, sizeof(f->img), "%s/img", f->dir);
    snprintf(f->ovl, sizeof(f->ovl), "%s/ovl", f->dir);
    make_image(f->img, DISK, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir); /* test scaffolding only */
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct nbd_overlay *open_ovl(struct fx *f, const char *img, unsigned flags)
{
    struct nbd_base *b;
    vs_err e = { 0 };
    assert_int_equal(nbd_base_open_raw(img, &b, &e), 0);
    struct nbd_overlay *o = NULL;
    int r = nbd_overlay_open(f->ovl, b, flags, &o, &e);
    if (r < 0)
        fail_msg("%s", e.msg);
    return o;
}

/* Expected content: base bytes with some ranges replaced. */
static void expect_base(struct nbd_overlay *o, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_int_equal(nbd_overlay_read(o, buf, len, off, NULL), 0);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != base_byte(off + i))
            fail_msg("byte %llu: %u, base has %u", (unsigned long long)(off + i), buf[i], base_byte(off + i));
    free(buf);
}

static void expect_fill(struct nbd_overlay *o, uint64_t off, size_t len, uint8_t v)
{
    uint8_t *buf = malloc(len);
    assert_int_equal(nbd_overlay_read(o, buf, len, off, NULL), 0);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != v)
            fail_msg("byte %llu: %u, expected %u", (unsigned long long)(off + i), buf[i], v);
    free(buf);
}

static void fill(struct nbd_overlay *o, uint64_t off, size_t len, uint8_t v, unsigned io)
{
    uint8_t *buf = malloc(len);
    memset(buf, v, len);
    vs_err e = { 0 };
    if (nbd_overlay_write(o, buf, len, off, io, &e) < 0)
        fail_msg("%s", e.msg);
    free(buf);
}

static void test_partial_rmw(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    fill(o, 4096 + 10, 100, 0xaa, 0);          /* inside one block */
    fill(o, 3 * 4096 - 5, 4096 + 10, 0xbb, 0); /* head and tail partial across a boundary */
    expect_base(o, 0, 4096 + 10);
    expect_fill(o, 4096 + 10, 100, 0xaa);
    expect_base(o, 4096 + 110, 2 * 4096 - 115);
    expect_fill(o, 3 * 4096 - 5, 4096 + 10, 0xbb);
    expect_base(o, 4 * 4096 + 5, 4096);
    /* A second partial write into a block the live layer holds is done in place. */
    fill(o, 4096 + 200, 10, 0xcc, NBD_IO_FUA);
    expect_fill(o, 4096 + 10, 100, 0xaa);
    expect_fill(o, 4096 + 200, 10, 0xcc);
    expect_base(o, 4096 + 210, 100);
    nbd_overlay_close(o);
}

struct racer {
    struct nbd_overlay *o;
    int id;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    /* Each thread owns 64 bytes of every one of 64 blocks: concurrent partial writes must all survive. */
    for (int b = 0; b < 64; b++) {
        uint8_t v[64];
        memset(v, 0x40 + r->id, sizeof(v));
        nbd_overlay_write(r->o, v, sizeof(v), (uint64_t)b * 4096 + (uint64_t)r->id * 64, 0, NULL);
    }
    return NULL;
}

static void test_concurrent_partial(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    pthread_t th[8];
    struct racer rs[8];
    for (int i = 0; i < 8; i++) {
        rs[i] = (struct racer){ o, i };
        pthread_create(&th[i], NULL, race, &rs[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int b = 0; b < 64; b++) {
        for (int i = 0; i < 8; i++)
            expect_fill(o, (uint64_t)b * 4096 + i * 64, 64, (uint8_t)(0x40 + i));
        expect_base(o, (uint64_t)b * 4096 + 512, 4096 - 512);
    }
    nbd_overlay_close(o);
}

static void test_trim_zero(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    fill(o, 0, 64 * 1024, 0x11, 0);
    vs_err e = { 0 };
    assert_int_equal(nbd_overlay_zero(o, 10000, 4096 + 100, 0, &e), 0); /* partial head, whole, partial tail */
    expect_fill(o, 0, 4096 + 100, 0x11);
    expect_fill(o, 4096 + 100, 10000, 0);
    expect_fill(o, 4096 + 10100, 64 * 1024 - 14196, 0x11);
    /* Trim: whole blocks read as zero and report a hole; partial ends are left alone. */
    assert_int_equal(nbd_overlay_trim(o, 3 * 4096, 100 * 4096 + 1, 0, &e), 0);
    expect_base(o, 100 * 4096, 4096);
    expect_fill(o, 101 * 4096, 2 * 4096, 0);
    expect_base(o, 103 * 4096, 4096);
    uint64_t run;
    uint32_t fl;
    assert_int_equal(nbd_overlay_extent(o, 101 * 4096, 10 * 4096, &run, &fl, &e), 0);
    assert_int_equal(run, 2 * 4096);
    assert_int_equal(fl, NBD_EXTENT_HOLE | NBD_EXTENT_ZERO);
    assert_int_equal(nbd_overlay_extent(o, 2 * 4096, 10 * 4096, &run, &fl, &e), 0);
    assert_int_equal(fl, NBD_EXTENT_ZERO);
    assert_int_equal(run, 4096); /* block 2 is zero, block 3 holds the partial tail of the zeroing */
    assert_int_equal(nbd_overlay_extent(o, 0, 4096, &run, &fl, &e), 0);
    assert_int_equal(fl, 0);
    /* Out of range is refused before anything happens. */
    assert_int_equal(nbd_overlay_write(o, "x", 1, DISK, 0, &e), -EINVAL);
    assert_int_equal(nbd_overlay_zero(o, 2, DISK - 1, 0, &e), -EINVAL);
    nbd_overlay_close(o);
}

static int collect(void *opaque, uint64_t block, uint64_t count, enum nbd_block_state st)
{
    char *s = opaque;
    sprintf(s + strlen(s), "%llu+%llu:%d ", (unsigned long long)block, (unsigned long long)count, st);
    return 0;
}

static void test_freeze_rebase(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    vs_err e = { 0 };
    fill(o, 0, 8192, 0xa1, 0);
    assert_int_equal(nbd_overlay_zero(o, 4096, 5 * 4096, 0, &e), 0);
    uint32_t seq = 0;
    assert_int_equal(nbd_overlay_freeze(o, &seq, &e), 0);
    assert_int_equal(seq, 1);
    fill(o, 4096, 4096 + 50, 0xb2, 0); /* live layer: block 1 whole, 50 bytes of block 2 */
    /* The visible disk sees the stack; the frozen view does not see later writes. */
    expect_fill(o, 0, 4096, 0xa1);
    expect_fill(o, 4096, 4096 + 50, 0xb2);
    expect_base(o, 8192 + 50, 4046);
    uint8_t buf[8192];
    assert_int_equal(nbd_overlay_read_at(o, 1, buf, sizeof(buf), 0, &e), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa1);
    char runs[256] = "";
    assert_int_equal(nbd_overlay_layer_runs(o, 1, collect, runs, &e), 0);
    assert_string_equal(runs, "0+2:1 5+1:2 ");
    assert_int_equal(nbd_overlay_layer_runs(o, 2, collect, runs, &e), -EBUSY); /* live */
    struct nbd_layer_info *li;
    size_t n;
    assert_int_equal(nbd_overlay_layers(o, &li, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_true(li[0].frozen && !li[1].frozen);
    assert_int_equal(li[0].data_blocks, 2);
    assert_int_equal(li[1].data_blocks, 2);
    free(li);
    nbd_overlay_close(o);

    /* Read-only (commit): nothing writes the live layer, so its runs can be listed. */
    o = open_ovl(f, f->img, NBD_OVL_READONLY);
    runs[0] = 0;
    assert_int_equal(nbd_overlay_layer_runs(o, 2, collect, runs, &e), 0);
    assert_string_equal(runs, "1+2:1 ");
    nbd_overlay_close(o);

    /* Reopen: the stack comes back. */
    o = open_ovl(f, f->img, 0);
    expect_fill(o, 4096, 4096 + 50, 0xb2);
    expect_fill(o, 0, 4096, 0xa1);
    expect_fill(o, 5 * 4096, 4096, 0);

    /* A new image holding the disk as of layer 1, then rebase onto it: layer 1 goes away. */
    char img2[128];
    snprintf(img2, sizeof(img2), "%s/img2", f->dir);
    int fd = open(img2, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t *all = malloc(DISK);
    assert_int_equal(nbd_overlay_read_at(o, 1, all, DISK, 0, &e), 0);
    assert_int_equal(vs_pwrite_full(fd, all, DISK, 0), 0);
    close(fd);
    free(all);
    struct nbd_base *b2;
    assert_int_equal(nbd_base_open_raw(img2, &b2, &e), 0);
    assert_int_equal(nbd_overlay_rebase(o, 1, b2, &e), 0);
    expect_fill(o, 0, 4096, 0xa1);
    expect_fill(o, 4096, 4096 + 50, 0xb2);
    expect_fill(o, 5 * 4096, 4096, 0);
    char l1[128];
    snprintf(l1, sizeof(l1), "%s.1", f->ovl);
    struct stat st;
    assert_int_equal(stat(l1, &st), -1);
    nbd_overlay_close(o);

    /* The overlay now belongs to img2: the old image is refused, naming both. */
    struct nbd_base *b;
    assert_int_equal(nbd_base_open_raw(f->img, &b, &e), 0);
    assert_int_equal(nbd_overlay_open(f->ovl, b, 0, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "belongs to archive"));
    nbd_base_close(b);
    o = open_ovl(f, img2, 0);
    expect_fill(o, 4096, 4096 + 50, 0xb2);
    nbd_overlay_close(o);
}

static void test_crash_keeps_flushed(void **state)
{
    struct fx *f = *state;
    pid_t pid = fork();
    if (pid == 0) {
        struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
        fill(o, 0, 3 * 4096, 0x5a, 0);
        fill(o, 10 * 4096 + 7, 99, 0x6b, 0);
        nbd_overlay_flush(o, NULL);
        fill(o, 20 * 4096, 4096, 0x7c, NBD_IO_FUA);
        fill(o, 30 * 4096, 4096, 0x7d, 0); /* never flushed */
        _exit(0);                          /* no close, no flush: as if killed */
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct nbd_overlay *o = open_ovl(f, f->img, 0);
    expect_fill(o, 0, 3 * 4096, 0x5a);
    expect_fill(o, 10 * 4096 + 7, 99, 0x6b);
    expect_base(o, 10 * 4096, 7);
    expect_fill(o, 20 * 4096, 4096, 0x7c);
    nbd_overlay_close(o);
}

static void test_odd_size_and_errors(void **state)
{
    struct fx *f = *state;
    char img[128];
    snprintf(img, sizeof(img), "%s/odd", f->dir);
    make_image(img, ODD_DISK, 0);
    struct nbd_overlay *o = open_ovl(f, img, NBD_OVL_CREATE);
    assert_int_equal(nbd_overlay_size(o), ODD_DISK);
    fill(o, DISK, 1000, 0x33, 0);     /* the short last block, written whole */
    fill(o, DISK - 10, 20, 0x44, 0);  /* across the last boundary */
    expect_fill(o, DISK - 10, 20, 0x44);
    expect_fill(o, DISK + 10, 990, 0x33);
    vs_err e = { 0 };
    assert_int_equal(nbd_overlay_zero(o, 1000, DISK, 0, &e), 0);
    expect_fill(o, DISK, 1000, 0);
    nbd_overlay_close(o);
    /* Another process (or open) holding the overlay is refused. */
    o = open_ovl(f, img, 0);
    struct nbd_base *b;
    assert_int_equal(nbd_base_open_raw(img, &b, &e), 0);
    struct nbd_overlay *o2;
    assert_true(nbd_overlay_open(f->ovl, b, 0, &o2, &e) < 0);
    assert_non_null(strstr(e.msg, "in use"));
    nbd_base_close(b);
    nbd_overlay_close(o);
    /* A damaged header is a clear error. */
    int fd = open(f->ovl, O_RDWR);
    assert_int_equal(vs_pwrite_full(fd, "X", 1, 50), 0);
    close(fd);
    assert_int_equal(nbd_base_open_raw(img, &b, &e), 0);
    assert_int_equal(nbd_overlay_open(f->ovl, b, 0, &o2, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "checksum"));
    nbd_base_close(b);
    /* Read-only and temporary overlays. */
    o = open_ovl(f, f->img, NBD_OVL_TEMP | NBD_OVL_READONLY);
    assert_int_equal(nbd_overlay_write(o, "x", 1, 0, 0, &e), -EROFS);
    expect_base(o, 0, 8192);
    nbd_overlay_close(o);
}

/* A 1 TiB disk with a few MiB written costs a few MiB, on disk and when reopened. */
static int record_disk(void *opaque, const char *path, unsigned disk, struct nbd_base **out, vs_err *e)
{
    (void)path;
    (void)out;
    *(unsigned *)opaque = disk;
    return vs_err_set(e, ENOENT, "test: no base");
}

/* A "disk" the open_base callback's unsigned cannot hold is refused, not cut to its low 32 bits (disk 0). */
static void test_control_rebase_disk_range(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    unsigned disk = 12345;
    struct nbd_control *c = NULL;
    vs_err e = { 0 };
    assert_int_equal(nbd_control_start(o, NULL, record_disk, &disk, &c, &e), 0);
    char *r = nbd_control_handle(c, "{\"cmd\":\"rebase\",\"layer\":1,\"archive\":\"/x\",\"disk\":4294967296}");
    assert_non_null(strstr(r, "\"ok\":false"));
    assert_int_equal(disk, 12345);   /* never asked for disk 0 */
    free(r);
    r = nbd_control_handle(c, "{\"cmd\":\"rebase\",\"layer\":1,\"archive\":\"/x\",\"disk\":4294967295}");
    assert_int_equal(disk, 4294967295u);
    free(r);
    nbd_control_stop(c);
    nbd_overlay_close(o);
}

static void test_space_follows_writes(void **state)
{
    struct fx *f = *state;
    char img[128];
    snprintf(img, sizeof(img), "%s/huge", f->dir);
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(ftruncate(fd, 1LL << 40), 0);
    close(fd);
    struct nbd_overlay *o = open_ovl(f, img, NBD_OVL_CREATE);
    uint64_t written = 0;
    for (uint64_t i = 0; i < 512; i++) { /* 512 x 8 KiB spread over the whole disk */
        fill(o, i * ((1ULL << 40) / 512) + 1000, 8192, (uint8_t)i, 0);
        written += 3 * 4096; /* an unaligned 8 KiB write touches 3 blocks */
    }
    assert_int_equal(nbd_overlay_flush(o, NULL), 0);
    nbd_overlay_close(o);
    struct stat st;
    assert_int_equal(stat(f->ovl, &st), 0);
    uint64_t used = (uint64_t)st.st_blocks * 512;
    /* data + one 4 KiB map chunk per 64 MiB region touched + header, with room for filesystem metadata */
    assert_true(used <= written + 512 * 4096 + 4096 + (1u << 20));
    o = open_ovl(f, img, 0);
    expect_fill(o, 100 * ((1ULL << 40) / 512) + 1000, 8192, 100);
    nbd_overlay_close(o);
}

/* Rewrite the live layer's seq and base_seq (header offsets 44 and 48) with a valid checksum. */
static void set_seqs(const char *path, uint32_t seq, uint32_t base_seq)
{
    int fd = open(path, O_RDWR);
    uint8_t h[112];
    assert_int_equal(vs_pread_full(fd, h, sizeof(h), 0), sizeof(h));
    vs_put_le32(h + 44, seq);
    vs_put_le32(h + 48, base_seq);
    vs_put_le64(h + 104, XXH64(h, 104, 0));
    assert_int_equal(vs_pwrite_full(fd, h, sizeof(h), 0), 0);
    close(fd);
}

/* The layer count comes from the file: 0xFFFFFFFF - 0 + 1 must not wrap to an empty table that open then
 * writes past, and a stack too deep to open is refused by name. */
static void test_layer_count_from_header(void **state)
{
    struct fx *f = *state;
    nbd_overlay_close(open_ovl(f, f->img, NBD_OVL_CREATE));
    /* Frozen layers 0 and 1 of the same stack: without the bound, the table sized for "0 layers" is written past. */
    for (uint32_t s = 0; s < 2; s++) {
        char p[128];
        snprintf(p, sizeof(p), "%s.%u", f->ovl, s);
        uint8_t *buf = malloc(16384);
        int in = open(f->ovl, O_RDONLY), out = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
        struct stat st;
        assert_int_equal(fstat(in, &st), 0);
        assert_int_equal(vs_pread_full(in, buf, 16384, 0), 16384);
        assert_int_equal(vs_pwrite_full(out, buf, 16384, 0), 0);
        assert_int_equal(ftruncate(out, st.st_size), 0);
        close(in);
        close(out);
        free(buf);
        set_seqs(p, s, 0);
    }
    static const uint32_t bad[][2] = { { 0xFFFFFFFFu, 0 }, { 0xFFFFFFFFu, 1 }, { 5000, 1 }, { 3, 0 } };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_seqs(f->ovl, bad[i][0], bad[i][1]);
        for (unsigned ro = 0; ro < 2; ro++) {
            struct nbd_base *b;
            struct nbd_overlay *o = NULL;
            vs_err e = { 0 };
            assert_int_equal(nbd_base_open_raw(f->img, &b, &e), 0);
            assert_int_equal(nbd_overlay_open(f->ovl, b, ro ? NBD_OVL_READONLY : 0, &o, &e), -EINVAL);
            assert_non_null(strstr(e.msg, f->ovl));
            assert_non_null(strstr(e.msg, "layers"));
            nbd_base_close(b);
        }
    }
    /* The deepest stack allowed still opens (its frozen layers are missing here: that error, not the count). */
    set_seqs(f->ovl, 4096, 1);
    struct nbd_base *b;
    struct nbd_overlay *o = NULL;
    vs_err e = { 0 };
    assert_int_equal(nbd_base_open_raw(f->img, &b, &e), 0);
    assert_true(nbd_overlay_open(f->ovl, b, NBD_OVL_READONLY, &o, &e) < 0);
    assert_non_null(strstr(e.msg, ".1"));
    nbd_base_close(b);
}

struct opener { struct fx *f; atomic_bool stop; unsigned tries, opened; };

static void *open_loop(void *arg)
{
    struct opener *op = arg;
    while (!atomic_load(&op->stop)) {
        struct nbd_base *b;
        struct nbd_overlay *o = NULL;
        vs_err e = { 0 };
        assert_int_equal(nbd_base_open_raw(op->f->img, &b, &e), 0);
        if (nbd_overlay_open(op->f->ovl, b, 0, &o, &e) == 0) {
            op->opened++;
            nbd_overlay_close(o);
        } else {
            nbd_base_close(b);
        }
        op->tries++;
    }
    return NULL;
}

/* A read-write open that fails because the overlay is in use must not remove anything: a freeze loop against
 * concurrent opens keeps every frozen layer and never fails. */
static void test_freeze_vs_open(void **state)
{
    struct fx *f = *state;
    struct nbd_overlay *o = open_ovl(f, f->img, NBD_OVL_CREATE);
    struct opener op = { .f = f };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_loop, &op), 0);
    enum { N = 300 };
    for (uint32_t i = 1; i <= N; i++) {
        fill(o, (i % 64) * 4096, 4096, (uint8_t)i, 0);
        uint32_t seq = 0;
        vs_err e = { 0 };
        if (nbd_overlay_freeze(o, &seq, &e) < 0)
            fail_msg("freeze %u: %s", i, e.msg);
        assert_int_equal(seq, i);
    }
    atomic_store(&op.stop, true);
    pthread_join(th, NULL);
    assert_true(op.tries > 0);
    assert_int_equal(op.opened, 0);
    for (uint32_t s = 1; s <= N; s++) {
        char p[128];
        struct stat st;
        snprintf(p, sizeof(p), "%s.%u", f->ovl, s);
        if (stat(p, &st) < 0)
            fail_msg("frozen layer %s is gone", p);
    }
    nbd_overlay_close(o);
    o = open_ovl(f, f->img, 0);
    expect_fill(o, 0, 4096, (uint8_t)(N - N % 64));
    nbd_overlay_close(o);
}

struct creator { struct fx *f; char path[128]; pthread_barrier_t *go; struct nbd_overlay *o; };

static void *create_one(void *arg)
{
    struct creator *c = arg;
    struct nbd_base *b;
    vs_err e = { 0 };
    assert_int_equal(nbd_base_open_raw(c->f->img, &b, &e), 0);
    pthread_barrier_wait(c->go);
    if (nbd_overlay_open(c->path, b, NBD_OVL_CREATE, &c->o, &e) < 0) {
        c->o = NULL;
        nbd_base_close(b);
    }
    return NULL;
}

/* Two processes creating the same new overlay at once: exactly one gets it, the other is refused; never two
 * live layers, one of them replaced under its writer (whose writes would be lost). */
static void test_concurrent_create(void **state)
{
    struct fx *f = *state;
    for (int round = 0; round < 200; round++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct creator c[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            c[i] = (struct creator){ .f = f, .go = &go };
            snprintf(c[i].path, sizeof(c[i].path), "%s/new%d", f->dir, round);
            assert_int_equal(pthread_create(&th[i], NULL, create_one, &c[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        if (!c[0].o == !c[1].o)
            fail_msg("round %d: %s openers hold %s", round, c[0].o ? "both" : "no", c[0].path);
        for (int i = 0; i < 2; i++)
            if (c[i].o) {
                fill(c[i].o, 0, 4096, (uint8_t)round, 0);
                nbd_overlay_close(c[i].o);
            }
        struct nbd_base *b;
        struct nbd_overlay *o;
        vs_err e = { 0 };
        assert_int_equal(nbd_base_open_raw(f->img, &b, &e), 0);
        if (nbd_overlay_open(c[0].path, b, NBD_OVL_READONLY, &o, &e) < 0)
            fail_msg("round %d: %s", round, e.msg);
        expect_fill(o, 0, 4096, (uint8_t)round);
        nbd_overlay_close(o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_partial_rmw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layer_count_from_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze_vs_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze_rebase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_keeps_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_size_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space_follows_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_rebase_disk_range, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
