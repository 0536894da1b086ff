/* Unit tests for unordered archive streams (guest RAM in migration order): pages in background-snapshot order,
 * precopy resends (last write wins), evictions under a tiny memory bound, thin references, refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/archive.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define PG 4096u
static char dir[] = "/tmp/vmsnap-unord-test-XXXXXX";
static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

static uint32_t rnd(uint32_t *x) { *x = *x * 1103515245u + 12345; return *x >> 8; }

/* Page content: zero, a repeated byte (compresses) or noise, chosen per page and version. */
static void fill_page(uint8_t *p, uint64_t page, uint32_t version)
{
    uint32_t x = (uint32_t)page * 2654435761u + version * 40503u + 1;
    switch (rnd(&x) % 4) {
    case 0: memset(p, 0, PG); break;
    case 1: memset(p, (int)(page + version), PG); break;
    default: for (unsigned i = 0; i < PG; i++) p[i] = (uint8_t)rnd(&x); break;
    }
}

static bool page_is_zero(const uint8_t *p)
{
    for (unsigned i = 0; i < PG; i++)
        if (p[i])
            return false;
    return true;
}

/* Write pages of model (npages) into stream `name` the way QEMU sends them: a few pages "the guest is about to
 * write" first in random order, then an ascending sweep skipping those, then `resends` pages again with new
 * content (precopy). Zero pages go through arc_writer_zero half the time. */
static void write_ram(struct arc_writer *w, const char *name, uint8_t *model, uint64_t npages, size_t hold,
                      unsigned early_pct, unsigned resends, uint32_t seed)
{
    vs_err e = { 0 };
    assert_int_equal(arc_writer_begin_unordered(w, ARC_KIND_OTHER, name, npages * PG, hold, &e), 0);
    uint8_t *sent = vs_xcalloc(npages, 1);
    uint32_t x = seed;
    for (uint64_t k = 0; k < npages * early_pct / 100; k++) {
        uint64_t p = rnd(&x) % npages;
        if (sent[p])
            continue;
        sent[p] = 1;
        if (page_is_zero(model + p * PG) && (rnd(&x) & 1))
            assert_int_equal(arc_writer_zero(w, p * PG, PG, &e), 0);
        else
            assert_int_equal(arc_writer_pwrite(w, model + p * PG, PG, p * PG, &e), 0);
    }
    for (uint64_t p = 0; p < npages; p++)
        if (!sent[p])
            assert_int_equal(arc_writer_pwrite(w, model + p * PG, PG, p * PG, &e), 0);
    for (unsigned k = 0; k < resends; k++) {
        uint64_t p = rnd(&x) % npages;
        fill_page(model + p * PG, p, k + 100);
        if (arc_writer_pwrite(w, model + p * PG, PG, p * PG, &e))
            fail_msg("%s", e.msg);
    }
    assert_int_equal(arc_writer_end(w, &e), 0);
    free(sent);
}

static void check(const char *path, const char *name, const uint8_t *model, uint64_t npages, int *parent_blocks)
{
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    int s = arc_find_stream(a, ARC_KIND_OTHER, name);
    assert_true(s >= 0);
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)s, &si);
    assert_int_equal(si.size, npages * PG);
    assert_int_equal(si.data_blocks + si.zero_blocks + si.dedup_blocks + si.parent_blocks, si.blocks);
    uint8_t *buf = vs_xmalloc(npages * PG);
    assert_int_equal(arc_pread(a, (unsigned)s, buf, npages * PG, 0, &e), 0);
    for (uint64_t p = 0; p < npages; p++)
        if (memcmp(buf + p * PG, model + p * PG, PG))
            fail_msg("page %" PRIu64 " differs", p);
    int r = arc_verify(a, NULL, &e);
    if (r)
        fail_msg("verify: %d %s", r, e.msg);
    if (parent_blocks)
        *parent_blocks = (int)si.parent_blocks;
    free(buf);
    arc_close(a);
}

static uint8_t *make_model(uint64_t npages, uint32_t version)
{
    uint8_t *m = vs_xmalloc(npages * PG);
    for (uint64_t p = 0; p < npages; p++)
        fill_page(m + p * PG, p, version);
    return m;
}

static void test_orders(void **state)
{
    (void)state;
    const uint64_t npages = 16 * 40 + 5;   /* 40 blocks of 64 KiB and a short last one */
    static const struct { int threads; size_t hold; unsigned early, resends; } cases[] = {
        { 1, 0, 0, 0 }, { 4, 0, 10, 0 }, { 1, 0, 30, 50 }, { 4, 2 * 65536, 30, 200 }, { 1, 65536, 100, 500 },
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
        VS_AUTOFREE char *path = tpath("ram.vmsnap");
        uint8_t *model = make_model(npages, 0);
        struct arc_writer_opts o;
        arc_writer_opts_init(&o);
        o.threads = cases[i].threads;
        struct arc_writer *w;
        vs_err e = { 0 };
        assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
        write_ram(w, "ram/mem", model, npages, cases[i].hold, cases[i].early, cases[i].resends, (uint32_t)i + 1);
        assert_int_equal(arc_writer_add(w, ARC_KIND_OTHER, "memory-device", "dev", 3, &e), 0);
        assert_int_equal(arc_writer_finish(w, &e), 0);
        check(path, "ram/mem", model, npages, NULL);
        free(model);
    }
}

/* Without resends and within the bound, every block is stored once: the file holds no unreferenced bytes. */
static void test_no_waste(void **state)
{
    (void)state;
    const uint64_t npages = 16 * 64;
    VS_AUTOFREE char *path = tpath("once.vmsnap");
    uint8_t *model = vs_xmalloc(npages * PG);
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < npages * PG; i++) {   /* xorshift: incompressible, no repeats */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        model[i] = (uint8_t)(x >> 24);
    }
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
    write_ram(w, "ram/mem", model, npages, 0, 20, 0, 3);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    struct arc_stream_info si;
    arc_stream_get(a, 0, &si);
    assert_int_equal(si.data_blocks, 64);
    assert_int_equal(si.stored, npages * PG);
    struct stat st;
    stat(path, &st);
    assert_true((uint64_t)st.st_size < npages * PG + 16384);
    arc_close(a);
    check(path, "ram/mem", model, npages, NULL);
    free(model);
}

/* Thin: a second capture of mostly the same RAM stores only the changed blocks; evictions stay correct. */
static void test_thin(void **state)
{
    (void)state;
    const uint64_t npages = 16 * 100;
    VS_AUTOFREE char *pp = tpath("p.vmsnap");
    VS_AUTOFREE char *cp = tpath("c.vmsnap");
    uint8_t *model = make_model(npages, 0);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(pp, &o, &w, &e), 0);
    write_ram(w, "ram/mem", model, npages, 0, 5, 0, 1);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    for (int hold = 0; hold < 2; hold++) {
        uint64_t changed[] = { 3, 700, 701, 1599 };   /* pages in 3 blocks */
        for (size_t i = 0; i < VS_ARRAY_SIZE(changed); i++)
            memset(model + changed[i] * PG, 0xc0 + hold, PG);
        o.parent_path = pp;
        o.thin = true;
        assert_int_equal(arc_writer_create(cp, &o, &w, &e), 0);
        write_ram(w, "ram/mem", model, npages, hold ? 65536 : 0, hold ? 50 : 5, 0, 7);
        assert_int_equal(arc_writer_finish(w, &e), 0);
        int parent_blocks = 0;
        check(cp, "ram/mem", model, npages, &parent_blocks);
        struct arc *a;
        assert_int_equal(arc_open(cp, NULL, &a, &e), 0);
        struct arc_stream_info si;
        arc_stream_get(a, (unsigned)arc_find_stream(a, ARC_KIND_OTHER, "ram/mem"), &si);
        assert_int_equal(si.data_blocks, 3);
        assert_int_equal(si.zero_blocks + si.parent_blocks, 97);
        arc_close(a);
        (void)parent_blocks;
        free(model);   /* the parent's content again for the next round */
        model = make_model(npages, 0);
    }
    free(model);
}

static void test_refusals(void **state)
{
    (void)state;
    VS_AUTOFREE char *path = tpath("bad.vmsnap");
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    struct arc_writer *w;
    vs_err e = { 0 };
    uint8_t page[PG] = { 1 };
    assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin_unordered(w, ARC_KIND_OTHER, "x", ARC_SIZE_UNKNOWN, 0, &e), -EINVAL);
    assert_int_equal(arc_writer_begin_unordered(w, ARC_KIND_OTHER, "ram/mem", 1 << 20, 0, &e), 0);
    assert_int_equal(arc_writer_pwrite(w, page, 512, 4096, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "units"));
    assert_int_equal(arc_writer_pwrite(w, page, PG, 1 << 20, &e), -EINVAL);
    assert_int_equal(arc_writer_pwrite(w, page, PG, 8192, &e), 0);
    assert_int_equal(arc_writer_pwrite(w, page, PG, 0, &e), 0);   /* backwards is fine here */
    arc_writer_abort(w);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orders), cmocka_unit_test(test_no_waste), cmocka_unit_test(test_thin),
        cmocka_unit_test(test_refusals),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            char *f = tpath(de->d_name);
            unlink(f);
            free(f);
        }
    if (d)
        closedir(d);
    rmdir(dir);
    return r;
}
