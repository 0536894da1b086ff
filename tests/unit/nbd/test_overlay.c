/* Unit tests for the overlay stack (src/nbd/overlay.c, layer.c) over a real raw image file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_partial_rmw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze_rebase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_keeps_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_size_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space_follows_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
