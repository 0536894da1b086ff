/* pagefs and working sets: ranges merged into large reads in their order (pf_plan_merge); a recording keeps the
 * pages the kernel asks for in order of first touch, each once, without widening reads to 64 KiB; cut to the pages
 * a process maps (pf_mapped, pf_record_keep), a recording of a MADV_HUGEPAGE mapping keeps the touched pages, not
 * the kernel's readahead; a working set given to the prefetch lands in the page cache and is reported. The FUSE cases are skipped where FUSE cannot be
 * mounted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pagefs/pagefs.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (8u << 20)
#define PAGE 4096u

static void test_merge(void **state)
{
    (void)state;
    const struct pf_range in[] = {
        { 0, 0, 65536 }, { 0, 65536, 65536 },          /* adjacent: one read */
        { 0, 300000, 4096 },                           /* within the gap: still that read */
        { 1, 0, 4096 },                                /* another file: a new read */
        { 0, 5 << 20, 4096 },                          /* far: a new read */
        { 0, (5 << 20) - 8192, 4096 },                 /* just before it: merged backwards */
        { 0, 0, 0 },                                   /* empty: dropped */
        { 0, (5 << 20) + 65536, 2 << 20 },             /* near, but the read would exceed max: a new one */
    };
    struct pf_range *out = NULL;
    size_t n = pf_plan_merge(in, sizeof in / sizeof *in, 256 << 10, 2 << 20, &out);
    assert_int_equal(n, 4);
    assert_true(out[0].file == 0 && out[0].off == 0 && out[0].len == 300000 + 4096);
    assert_true(out[1].file == 1 && out[1].off == 0 && out[1].len == 4096);
    assert_true(out[2].file == 0 && out[2].off == (5 << 20) - 8192 && out[2].len == 12288);
    assert_true(out[3].off == (5 << 20) + 65536 && out[3].len == 2 << 20);
    free(out);
}

struct src { uint8_t *data; atomic_uint calls; _Atomic uint64_t bytes; };

static int src_read(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    (void)e;
    struct src *s = opaque;
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_add(&s->bytes, len);
    memcpy(buf, s->data + off, len);
    return 0;
}

struct fx { char dir[64]; struct src s; struct pf_mount *m; int fd; uint8_t *p; };

/* A mounted 8 MiB file, mapped with advice (MADV_RANDOM: one fault, one page asked), or skip. */
static void setup(struct fx *x, bool record, int advice)
{
    if (!pf_available())
        skip();
    snprintf(x->dir, sizeof x->dir, "/tmp/vmsnap-pagefs-ws-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    x->s.data = vs_xmalloc(SIZE);
    for (size_t i = 0; i < SIZE; i++)
        x->s.data[i] = (uint8_t)(i * 2654435761u >> 13);
    struct pf_file f = { .name = "mem", .size = SIZE, .read = src_read, .opaque = &x->s };
    vs_err e = { 0 };
    if (pf_mount(x->dir, &f, 1, &x->m, &e) < 0) {
        rmdir(x->dir);
        free(x->s.data);
        print_message("cannot mount FUSE here (%s): skipped\n", e.msg);
        skip();
    }
    if (record)
        pf_record_start(x->m);
    VS_AUTOFREE char *path = vs_xasprintf("%s/mem", x->dir);
    x->fd = open(path, O_RDONLY);
    x->p = x->fd < 0 ? MAP_FAILED : mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, x->fd, 0);
    if (x->p != MAP_FAILED)
        madvise(x->p, SIZE, advice);
}

static void teardown(struct fx *x)
{
    if (x->p != MAP_FAILED)
        munmap(x->p, SIZE);
    if (x->fd >= 0)
        close(x->fd);
    pf_unmount(x->m);
    rmdir(x->dir);
    free(x->s.data);
}

static void test_record(void **state)
{
    (void)state;
    struct fx x = { 0 };
    setup(&x, true, MADV_RANDOM);
    /* Checks are taken before the unmount and asserted after it: a failed assertion leaves no mount behind. */
    static const unsigned touch[] = { 40, 3, 40, 200, 3, 41 };
    bool same = x.p != MAP_FAILED;
    for (unsigned k = 0; same && k < sizeof touch / sizeof *touch; k++)
        same = !memcmp(x.p + touch[k] * PAGE, x.s.data + touch[k] * PAGE, PAGE);
    unsigned calls = atomic_load(&x.s.calls);
    struct pf_range *r = NULL;
    size_t n = 0;
    bool truncated = true;
    pf_record_stop(x.m, &r, &n, &truncated);
    teardown(&x);
    assert_true(same);
    assert_false(truncated);
    assert_int_equal(calls, 4);   /* pages 40, 3, 200, 41: each asked once, as asked (no 64 KiB widening) */
    assert_int_equal(n, 4);
    static const unsigned want[] = { 40, 3, 200, 41 };
    for (size_t i = 0; i < n; i++)
        assert_true(r[i].file == 0 && r[i].off == want[i] * PAGE && r[i].len == PAGE);
    free(r);
}

static void test_keep(void **state)
{
    (void)state;
    uint64_t m0[2] = { 0x0f0, 1ull << 63 }, m1[1] = { 0x1 };   /* file 0: pages 4-7 and 127; file 1: page 0 */
    uint64_t *keep[] = { m0, m1 };
    const struct pf_range in[] = { { 0, 64 * PAGE, 64 * PAGE },     /* 64-127: page 127 */
                                   { 0, 0, 16 * PAGE },             /* 0-15: 4-7 */
                                   { 1, 0, 2 * PAGE },              /* file 1, 0-1: 0 */
                                   { 0, 16 * PAGE, 4 * PAGE } };    /* none */
    struct pf_range *out = NULL;
    size_t n = pf_record_keep(in, 4, keep, &out);
    assert_int_equal(n, 3);
    assert_true(out[0].file == 0 && out[0].off == 127 * PAGE && out[0].len == PAGE);
    assert_true(out[1].file == 0 && out[1].off == 4 * PAGE && out[1].len == 4 * PAGE);
    assert_true(out[2].file == 1 && out[2].off == 0 && out[2].len == PAGE);
    free(out);
}

/* QEMU maps its RAM with MADV_HUGEPAGE: the kernel reads megabytes around a fault, and only the pages this process
 * maps (the touched ones and the kernel's fault-around, at most 64 KiB around each) stay in the record. */
static void test_mapped(void **state)
{
    (void)state;
    struct fx x = { 0 };
    setup(&x, true, MADV_HUGEPAGE);
    static const unsigned touch[] = { 40, 1500, 3 };
    bool same = x.p != MAP_FAILED;
    for (unsigned k = 0; same && k < sizeof touch / sizeof *touch; k++)
        same = !memcmp(x.p + touch[k] * PAGE, x.s.data + touch[k] * PAGE, PAGE);
    struct pf_range *r = NULL, *kept = NULL;
    size_t n = 0, nk = 0;
    bool truncated = true;
    pf_record_stop(x.m, &r, &n, &truncated);
    uint64_t **maps = NULL;
    vs_err e = { 0 };
    int rc = pf_mapped(getpid(), x.dir, &(struct pf_file){ .name = "mem", .size = SIZE }, 1, &maps, &e);
    if (rc == 0)
        nk = pf_record_keep(r, n, maps, &kept);
    uint64_t read = 0, total = 0;
    for (size_t i = 0; i < n; i++)
        read += r[i].len;
    unsigned found = 0;
    for (size_t i = 0; i < nk; i++) {
        total += kept[i].len;
        for (unsigned k = 0; k < sizeof touch / sizeof *touch; k++)
            found += kept[i].off <= touch[k] * PAGE && touch[k] * PAGE < kept[i].off + kept[i].len;
    }
    vs_err bad = { 0 };
    uint64_t **none = NULL;
    int rbad = pf_mapped(getpid(), "/nonexistent-vmsnap-dir", &(struct pf_file){ .name = "mem", .size = SIZE }, 1,
                         &none, &bad);
    pf_mapped_free(maps, 1);
    teardown(&x);
    print_message("read %" PRIu64 " bytes, kept %" PRIu64 " in %zu ranges\n", read, total, nk);
    assert_true(same);
    assert_int_equal(rc, 0);
    assert_int_equal(found, 3);
    assert_true(total <= 3 * 16 * PAGE);
    assert_true(rbad < 0 && strstr(bad.msg, "/nonexistent-vmsnap-dir"));
    free(r);
    free(kept);
}

static void test_first(void **state)
{
    (void)state;
    struct fx x = { 0 };
    setup(&x, false, MADV_RANDOM);
    const struct pf_range ws[] = { { 0, 5 << 20, 3 * PAGE }, { 0, 1 << 20, PAGE }, { 0, (1 << 20) + 8 * PAGE, PAGE },
                                   { 0, SIZE, PAGE } /* outside: ignored */ };
    pf_prefetch_first(x.m, ws, sizeof ws / sizeof *ws);
    vs_err e = { 0 };
    int r = pf_prefetch_start(x.m, &e);
    struct pf_stats st = { 0 };
    for (double t0 = vs_now_s(); r == 0 && !st.ws_done_s && vs_now_s() - t0 < 20; usleep(1000))
        pf_get_stats(x.m, &st);
    unsigned char vec[3];
    bool resident = x.p != MAP_FAILED && mincore(x.p + (5 << 20), 3 * PAGE, vec) == 0 && (vec[0] & vec[1] & vec[2] & 1);
    teardown(&x);
    assert_int_equal(r, 0);
    assert_true(st.ws_done_s > 0);
    assert_int_equal(st.ws_bytes, 5 * PAGE);
    assert_int_equal(st.ws_requests, 2);           /* two 64 KiB-rounded reads: 5 MiB, and 1 MiB merged */
    assert_int_equal(st.ws_fetched, 2 * 65536);
    assert_true(resident);
}

static struct pf_stats wait_stats(struct pf_mount *m, bool ws)
{
    struct pf_stats st = { 0 };
    for (double t0 = vs_now_s(); !(ws ? st.ws_done_s : st.prefetch_done_s) && vs_now_s() - t0 < 20; usleep(1000))
        pf_get_stats(m, &st);
    return st;
}

/* Started before the VM runs: the working set alone, the rest once pf_prefetch_start says the VM runs. Without a
 * working set, the early start does nothing. */
static void test_first_early(void **state)
{
    (void)state;
    struct fx x = { 0 };
    setup(&x, false, MADV_RANDOM);
    vs_err e = { 0 };
    int r0 = pf_prefetch_ws_start(x.m, &e);
    usleep(100000);
    struct pf_stats none;
    pf_get_stats(x.m, &none);
    const struct pf_range ws[] = { { 0, 5 << 20, 3 * PAGE } };
    pf_prefetch_first(x.m, ws, 1);
    int r1 = pf_prefetch_ws_start(x.m, &e);
    struct pf_stats first = wait_stats(x.m, true);
    usleep(100000);
    struct pf_stats waited;
    pf_get_stats(x.m, &waited);
    int r2 = pf_prefetch_start(x.m, &e);
    struct pf_stats all = wait_stats(x.m, false);
    teardown(&x);
    assert_int_equal(r0, 0);
    assert_int_equal(none.prefetched, 0);
    assert_int_equal(r1, 0);
    assert_int_equal(r2, 0);
    assert_true(first.ws_done_s > 0 && first.ws_start_s > 0);
    assert_int_equal(first.ws_bytes, 3 * PAGE);
    assert_int_equal(waited.prefetched, 65536);   /* the working set's grain, nothing more */
    assert_int_equal(waited.prefetch_done_s, 0);
    assert_true(all.prefetch_done_s > 0 && all.prefetched > 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_merge), cmocka_unit_test(test_record),
                                        cmocka_unit_test(test_keep), cmocka_unit_test(test_mapped),
                                        cmocka_unit_test(test_first), cmocka_unit_test(test_first_early) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
