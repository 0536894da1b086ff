/* Unit tests for the archive component: round trips, dedup, thin archives, corruption, faults, scale. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>

static char dir[] = "/tmp/vmsnap-arc-test-XXXXXX";

static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

/* Deterministic test data: random, text, zeros and repeats, in runs of odd lengths. */
static uint8_t *make_data(size_t len, uint32_t seed)
{
    uint8_t *b = vs_xmalloc(len);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len;) {
        x = x * 1103515245u + 12345;
        size_t run = VS_MIN(len - i, (size_t)(x >> 8) % 200000 + 1);
        switch ((x >> 4) % 4) {
        case 0: for (size_t k = 0; k < run; k++) { x = x * 1103515245u + 12345; b[i + k] = (uint8_t)(x >> 16); } break;
        case 1: for (size_t k = 0; k < run; k++) b[i + k] = "vmsnap archive text "[(i + k) % 20]; break;
        case 2: memset(b + i, 0, run); break;
        default: if (i >= run) memcpy(b + i, b, run); else memset(b + i, 0x5a, run); break;
        }
        i += run;
    }
    return b;
}

static void write_archive(const char *path, const struct arc_writer_opts *o, const uint8_t *data, size_t len,
                          size_t chunk)
{
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", len, &e), 0);
    for (size_t off = 0; off < len; off += chunk)
        assert_int_equal(arc_writer_write(w, data + off, VS_MIN(chunk, len - off), &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_CONFIG, "config", "{\"ram\":1}", 9, &e), 0);
    int r = arc_writer_finish(w, &e);
    if (r)
        fail_msg("%s", e.msg);
}

static void check_reads(struct arc *a, unsigned s, const uint8_t *data, size_t len)
{
    vs_err e = { 0 };
    uint8_t *buf = vs_xmalloc(len + 1);
    assert_int_equal(arc_pread(a, s, buf, len, 0, &e), 0);
    assert_memory_equal(buf, data, len);
    uint32_t x = 7;
    for (int i = 0; i < 200; i++) {
        x = x * 1103515245u + 12345;
        size_t off = x % (len + 1), n = VS_MIN(len - off, (size_t)(x >> 3) % 300000);
        assert_int_equal(arc_pread(a, s, buf, n, off, &e), 0);
        assert_memory_equal(buf, data + off, n);
    }
    assert_int_equal(arc_pread(a, s, buf, 2, len - 1, &e), -EINVAL);
    free(buf);
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len = 5 * 1024 * 1024 + 12345;
    uint8_t *data = make_data(len, 1);
    const char *codecs[] = { "none", "lz4", "zstd", "zstd:9" };
    uint32_t sizes[] = { 4096, 65536, 1u << 20 };
    VS_AUTOFREE char *p = tpath("rt.vmsnap");
    for (size_t c = 0; c < VS_ARRAY_SIZE(codecs); c++)
        for (size_t s = 0; s < VS_ARRAY_SIZE(sizes); s++) {
            struct arc_writer_opts o;
            arc_writer_opts_init(&o);
            assert_int_equal(arc_parse_codec(codecs[c], &o.codec, &o.level, NULL), 0);
            o.block_size = sizes[s];
            o.threads = (int)(s % 3) + 1;
            write_archive(p, &o, data, len, 100003);
            struct arc *a;
            vs_err e = { 0 };
            assert_int_equal(arc_open(p, NULL, &a, &e), 0);
            struct arc_stream_info si;
            assert_int_equal(arc_stream_get(a, 0, &si), 0);
            assert_int_equal(si.size, len);
            assert_int_equal(si.kind, ARC_KIND_DISK);
            assert_int_equal(si.disk_index, 0);
            assert_true(si.zero_blocks > 0 || sizes[s] > 65536);
            check_reads(a, 0, data, len);
            int cs = arc_find_stream(a, ARC_KIND_CONFIG, NULL);
            char *cfg;
            assert_true(cs > 0);
            assert_int_equal(arc_read_stream(a, (unsigned)cs, 100, &cfg, NULL, &e), 0);
            assert_string_equal(cfg, "{\"ram\":1}");
            free(cfg);
            assert_true(arc_find_stream(a, ARC_KIND_METADATA, NULL) > 0);
            assert_int_equal(arc_verify(a, NULL, &e), 0);
            arc_close(a);
        }
    free(data);
}

static void *feed(void *arg)
{
    int *fds = arg;
    uint8_t *d = make_data(3000001, 9);
    for (size_t off = 0; off < 3000001; off += 7777)
        vs_write_full(fds[1], d + off, VS_MIN((size_t)7777, 3000001 - off));
    close(fds[1]);
    free(d);
    return NULL;
}

static void test_unknown_length(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("mem.vmsnap");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pthread_t t;
    pthread_create(&t, NULL, feed, fds);
    struct arc_writer *w;
    vs_err e = { 0 };
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_ZSTD;
    o.threads = 2;
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, &e), 0);
    uint64_t n;
    assert_int_equal(arc_writer_stream_from_fd(w, fds[0], &n, &e), 0);
    assert_int_equal(n, 3000001);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    pthread_join(t, NULL);
    close(fds[0]);
    struct arc *a;
    assert_int_equal(arc_open(p, NULL, &a, &e), 0);
    int s = arc_find_stream(a, ARC_KIND_MEMORY, NULL);
    assert_true(s >= 0);
    uint8_t *d = make_data(3000001, 9);
    check_reads(a, (unsigned)s, d, 3000001);
    free(d);
    arc_close(a);
}

static void test_zero_and_dedup(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("zd.vmsnap");
    size_t len = 16 << 20;
    uint8_t *data = vs_xcalloc(1, len);
    uint8_t *blk = make_data(65536, 3);
    for (size_t off = 1 << 20; off < 9 << 20; off += 65536)
        memcpy(data + off, blk, 65536);   /* 128 identical blocks */
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    write_archive(p, &o, data, len, 1 << 20);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(p, NULL, &a, &e), 0);
    struct arc_stream_info si;
    arc_stream_get(a, 0, &si);
    assert_int_equal(si.zero_blocks, 256 - 128);
    assert_int_equal(si.data_blocks, 1);
    assert_int_equal(si.dedup_blocks, 127);
    struct stat st;
    stat(p, &st);
    assert_true(st.st_size < 200 * 1024);
    uint64_t run;
    unsigned fl;
    assert_int_equal(arc_block_status(a, 0, 0, len, &run, &fl, &e), 0);
    assert_int_equal(fl, ARC_STATUS_ZERO);
    assert_int_equal(run, 1 << 20);
    assert_int_equal(arc_block_status(a, 0, 1 << 20, len - (1 << 20), &run, &fl, &e), 0);
    assert_int_equal(fl, ARC_STATUS_DATA);
    assert_int_equal(run, 8 << 20);
    check_reads(a, 0, data, len);
    arc_close(a);
    free(blk);
    free(data);
}

/* Every content hash collides: different blocks must never be merged, identical ones still may be. */
static void test_forced_collision(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("coll.vmsnap");
    size_t len = 4 << 20;
    uint8_t *data = make_data(len, 4);
    memcpy(data + (2 << 20), data, 65536);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.debug = ARC_DEBUG_COLLIDE_HASH;
    write_archive(p, &o, data, len, 65536);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(p, NULL, &a, &e), 0);
    check_reads(a, 0, data, len);
    struct arc_stream_info si;
    arc_stream_get(a, 0, &si);
    assert_true(si.dedup_blocks >= 1);
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    arc_close(a);
    free(data);
}

static void make_parent_child(const char *pp, const char *cp, uint8_t **pdata, uint8_t **cdata, size_t len)
{
    *pdata = make_data(len, 5);
    *cdata = vs_xmalloc(len);
    memcpy(*cdata, *pdata, len);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    write_archive(pp, &o, *pdata, len, 1 << 20);
    /* child: a few 4 KiB changes merged positionally; untouched blocks come from the parent */
    struct arc_writer *w;
    vs_err e = { 0 };
    o.parent_path = pp;
    o.thin = true;
    assert_int_equal(arc_writer_create(cp, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", len, &e), 0);
    uint64_t offs[] = { 4096, 70000, 1 << 20, (1 << 20) + 8192, len - 4096 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(offs); i++) {
        memset(*cdata + offs[i], 0xee, 4096);
        assert_int_equal(arc_writer_pwrite(w, *cdata + offs[i], 4096, offs[i], &e), 0);
    }
    assert_int_equal(arc_writer_finish(w, &e), 0);
}

static void test_thin(void **state)
{
    (void)state;
    VS_AUTOFREE char *pp = tpath("parent.vmsnap");
    VS_AUTOFREE char *cp = tpath("child.vmsnap");
    VS_AUTOFREE char *moved = tpath("moved.vmsnap");
    size_t len = 3 << 20;
    uint8_t *pd, *cd;
    make_parent_child(pp, cp, &pd, &cd, len);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(cp, NULL, &a, &e), 0);
    assert_non_null(arc_parent(a));
    struct arc_stream_info si;
    arc_stream_get(a, 0, &si);
    assert_int_equal(si.data_blocks + si.dedup_blocks, 4);
    assert_int_equal(si.parent_blocks, si.blocks - 4);
    check_reads(a, 0, cd, len);
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    arc_close(a);
    struct stat st;
    stat(cp, &st);
    assert_true(st.st_size < 300 * 1024);

    /* thick copy of the same: no parent needed */
    VS_AUTOFREE char *tp = tpath("thick.vmsnap");
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.parent_path = cp;
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(tp, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", len, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    assert_int_equal(rename(pp, moved), 0);
    assert_int_equal(arc_open(tp, NULL, &a, &e), 0);
    assert_null(arc_parent(a));
    check_reads(a, 0, cd, len);
    arc_close(a);

    /* parent missing: clear error, nothing read */
    assert_int_equal(arc_open(cp, NULL, &a, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "not found"));
    /* explicit parent path works */
    struct arc_open_opts oo = { .parent_path = moved };
    assert_int_equal(arc_open(cp, &oo, &a, &e), 0);
    check_reads(a, 0, cd, len);
    arc_close(a);
    /* wrong parent under the expected name: UUID mismatch */
    arc_writer_opts_init(&o);
    write_archive(pp, &o, pd, len, 1 << 20);
    assert_int_equal(arc_open(cp, NULL, &a, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "UUID"));
    /* no_parent: opens, but parent blocks fail loudly instead of reading zeros */
    oo = (struct arc_open_opts){ .no_parent = true };
    assert_int_equal(arc_open(cp, &oo, &a, &e), 0);
    uint8_t buf[16];
    assert_true(arc_pread(a, 0, buf, sizeof buf, 65536 * 5, &e) < 0);
    arc_close(a);
    free(pd);
    free(cd);
}

static uint8_t *slurp(const char *p, size_t *len)
{
    int fd = open(p, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    uint8_t *b = vs_xmalloc((size_t)st.st_size);
    assert_int_equal(vs_read_full(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void count_problem(void *opaque, const struct arc_problem *p)
{
    (void)p;
    ++*(int *)opaque;
}

/* Returns true if the damage was detected (open failed or verify found a problem); asserts that no read ever
 * returned bytes different from the original. */
static bool damaged_detected(const uint8_t *img, size_t len, const uint8_t *data, size_t dlen)
{
    struct arc *a;
    vs_err e = { 0 };
    if (arc_open_source(arc_source_open_mem(img, len, "damaged"), NULL, &a, &e) < 0)
        return true;
    int probs = 0;
    struct arc_verify_opts vo = { .problem = count_problem, .opaque = &probs };
    int n = arc_verify(a, &vo, &e);
    uint8_t *buf = vs_xmalloc(dlen);
    int s = arc_find_disk(a, 0);
    if (s >= 0 && arc_pread(a, (unsigned)s, buf, dlen, 0, &e) == 0)
        assert_memory_equal(buf, data, dlen);
    free(buf);
    arc_close(a);
    assert_int_equal(n, probs);
    return n > 0;
}

/* A long-lived reader notices an archive (or its parent) rewritten in place, not a rename of its path. */
static void test_unchanged(void **state)
{
    (void)state;
    VS_AUTOFREE char *pp = tpath("uparent.vmsnap");
    VS_AUTOFREE char *cp = tpath("uchild.vmsnap");
    VS_AUTOFREE char *moved = tpath("umoved.vmsnap");
    size_t len = 3 << 20;
    uint8_t *pd, *cd;
    make_parent_child(pp, cp, &pd, &cd, len);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open(cp, NULL, &a, &e), 0);
    assert_int_equal(arc_check_unchanged(a, &e), 0);
    /* renamed, and another file put under the old name: the open fd still reads the original */
    assert_int_equal(rename(cp, moved), 0);
    FILE *f = fopen(cp, "w");
    fputs("not an archive", f);
    fclose(f);
    assert_int_equal(arc_check_unchanged(a, &e), 0);
    check_reads(a, 0, cd, len);
    /* the parent's mtime touched: stale, and stays so even with the mtime put back */
    struct stat st;
    assert_int_equal(stat(pp, &st), 0);
    struct timespec later[2] = { st.st_atim, { st.st_mtim.tv_sec + 10, st.st_mtim.tv_nsec } };
    assert_int_equal(utimensat(AT_FDCWD, pp, later, 0), 0);
    assert_int_equal(arc_check_unchanged(a, &e), -ESTALE);
    assert_non_null(strstr(e.msg, "uparent.vmsnap"));
    assert_non_null(strstr(e.msg, "modified in place"));
    struct timespec back[2] = { st.st_atim, st.st_mtim };
    assert_int_equal(utimensat(AT_FDCWD, pp, back, 0), 0);
    assert_int_equal(arc_check_unchanged(a, &e), -ESTALE);
    arc_close(a);
    /* a byte appended to the archive itself */
    assert_int_equal(arc_open(moved, NULL, &a, &e), 0);
    assert_int_equal(arc_check_unchanged(a, &e), 0);
    int fd = open(moved, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    assert_int_equal(arc_check_unchanged(a, &e), -ESTALE);
    assert_non_null(strstr(e.msg, "umoved.vmsnap"));
    arc_close(a);
    /* memory sources have nothing to check */
    struct arc_source *ms = arc_source_open_mem(cd, 16, "mem");
    assert_null(ms->check);
    arc_source_close(ms);
    unlink(cp);
    unlink(moved);
    unlink(pp);
    free(pd);
    free(cd);
}

/* Blocks stored uncompressed are read in place into the caller's buffer: damage there is still caught (and the
 * caller's bytes are never returned as good). */
static void test_corruption_uncompressed(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("plain.vmsnap");
    size_t dlen = 40000;
    uint8_t *data = make_data(dlen, 7);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_NONE;
    o.block_size = 4096;
    write_archive(p, &o, data, dlen, 4096);
    size_t len;
    uint8_t *img = slurp(p, &len);
    uint8_t *copy = vs_xmalloc(len);
    for (size_t i = 0; i < len; i += 5) {
        memcpy(copy, img, len);
        copy[i] ^= (uint8_t)(1u << (i % 8));
        if (!damaged_detected(copy, len, data, dlen))
            fail_msg("flip of byte %zu of %zu not detected", i, len);
    }
    free(copy);
    free(img);
    free(data);
    unlink(p);
}

static void test_corruption_every_byte(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("small.vmsnap");
    size_t dlen = 40000;
    uint8_t *data = make_data(dlen, 6);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.block_size = 4096;
    write_archive(p, &o, data, dlen, 4096);
    size_t len;
    uint8_t *img = slurp(p, &len);
    uint8_t *copy = vs_xmalloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, img, len);
        copy[i] ^= (uint8_t)(1u << (i % 8));
        if (!damaged_detected(copy, len, data, dlen))
            fail_msg("flip of byte %zu of %zu not detected", i, len);
    }
    /* truncation at every length */
    for (size_t l = 0; l < len; l += (l < 256 ? 1 : 7)) {
        struct arc *a;
        vs_err e = { 0 };
        if (arc_open_source(arc_source_open_mem(img, l, "trunc"), NULL, &a, &e) == 0)
            fail_msg("truncated to %zu bytes opened", l);
        assert_true(strlen(e.msg) > 0);
    }
    free(copy);
    free(img);
    free(data);
}

static void rehash_header(uint8_t *h)
{
    uint8_t tmp[8];
    extern uint64_t arc_meta_hash(const void *p, size_t len);
    vs_put_le64(tmp, arc_meta_hash(h, 120));
    memcpy(h + 120, tmp, 8);
}

static void test_feature_flags(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("flags.vmsnap");
    uint8_t *data = make_data(100000, 2);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    write_archive(p, &o, data, 100000, 4096);
    size_t len;
    uint8_t *img = slurp(p, &len);
    struct arc *a;
    vs_err e = { 0 };
    img[16] |= 0x80;   /* unknown incompatible bit 7 */
    rehash_header(img);
    assert_int_equal(arc_open_source(arc_source_open_mem(img, len, "x"), NULL, &a, &e), -ENOTSUP);
    assert_non_null(strstr(e.msg, "unsupported features"));
    img[16] &= 0x7f;
    img[24] |= 0x80;   /* unknown compatible bit: ignored */
    rehash_header(img);
    assert_int_equal(arc_open_source(arc_source_open_mem(img, len, "x"), NULL, &a, &e), 0);
    check_reads(a, 0, data, 100000);
    arc_close(a);
    memcpy(img, "NOTVMSNP", 8);
    assert_int_equal(arc_open_source(arc_source_open_mem(img, len, "x"), NULL, &a, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "magic"));
    free(img);
    free(data);
}

/* Archive with one small disk and the given config; returns its incompatible feature bits. */
static uint64_t write_with_config(const char *path, const char *cfg)
{
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, NULL, &w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_DISK, "disk0", "data", 4, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_CONFIG, "config", cfg, strlen(cfg), &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    struct arc_info in;
    arc_get_info(a, &in);
    VS_AUTOFREE char *text = NULL;
    assert_int_equal(arc_read_config(a, &text, NULL, &e), 1);
    assert_string_equal(text, cfg);
    arc_close(a);
    return in.incompat;
}

/* A config with "vmgenid": true sets incompatible bit 1, which readers check against the config. */
static void test_vmgenid_bit(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("genid.vmsnap");
    assert_int_equal(write_with_config(p, "{\"version\":1}"), 0);
    assert_int_equal(write_with_config(p, "{\"version\":1,\"vmgenid\":false}"), 0);
    assert_int_equal(write_with_config(p, "{\"version\":1,\"vmgenid\":true}"), 2);

    /* The bit with a config that does not say vmgenid: damage, named. */
    write_with_config(p, "{\"version\":1}");
    size_t len;
    uint8_t *img = slurp(p, &len);
    img[16] |= 2;
    rehash_header(img);
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open_source(arc_source_open_mem(img, len, "x"), NULL, &a, &e), 0);
    char *text = (char *)"unchanged";
    assert_int_equal(arc_read_config(a, &text, NULL, &e), -EIO);
    assert_null(text);
    assert_non_null(strstr(e.msg, "feature bit 'vmgenid' is set but the config"));
    arc_close(a);
    free(img);

    /* Only arc_writer_add writes a config stream (it must see the whole JSON). */
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(p, NULL, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_CONFIG, "config", 2, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "arc_writer_add"));
    arc_writer_abort(w);
}

struct rt { struct arc *a; const uint8_t *data; size_t len; unsigned seed; int fails; };

static void *reader_thread(void *arg)
{
    struct rt *t = arg;
    uint8_t *buf = vs_xmalloc(200000);
    unsigned x = t->seed;
    for (int i = 0; i < 2000; i++) {
        x = x * 1103515245u + 12345;
        size_t off = x % t->len, n = VS_MIN(t->len - off, (size_t)(x >> 5) % 200000);
        vs_err e;
        if (arc_pread(t->a, 0, buf, n, off, &e) || memcmp(buf, t->data + off, n))
            t->fails++;
    }
    free(buf);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("mt.vmsnap");
    size_t len = 8 << 20;
    uint8_t *data = make_data(len, 8);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_ZSTD;
    o.block_size = 16384;
    write_archive(p, &o, data, len, 1 << 20);
    struct arc *a;
    vs_err e = { 0 };
    struct arc_open_opts oo = { .cache_bytes = 256 * 1024 };   /* small: eviction under contention */
    assert_int_equal(arc_open(p, &oo, &a, &e), 0);
    pthread_t th[6];
    struct rt rts[6];
    for (int i = 0; i < 6; i++) {
        rts[i] = (struct rt){ .a = a, .data = data, .len = len, .seed = (unsigned)i + 1 };
        pthread_create(&th[i], NULL, reader_thread, &rts[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rts[i].fails, 0);
    }
    arc_close(a);
    free(data);
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."));
    closedir(d);
    return n;
}

static void test_disk_full_and_abort(void **state)
{
    (void)state;
    int before = count_entries();
    VS_AUTOFREE char *p = tpath("full.vmsnap");
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 1 << 20;   /* writes past 1 MiB fail as on a full disk */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    uint8_t *data = make_data(8 << 20, 10);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_NONE;
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    int r = arc_writer_begin(w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, &e);
    for (size_t off = 0; r == 0 && off < (8u << 20); off += 65536)
        r = arc_writer_write(w, data + off, 65536, &e);
    if (r == 0)
        r = arc_writer_finish(w, &e);
    else
        arc_writer_abort(w);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_true(r < 0);
    assert_non_null(strstr(e.msg, "writing archive"));
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(count_entries(), before);
    /* abort leaves nothing either */
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_FILE, "kernel", data, 1000, &e), 0);
    arc_writer_abort(w);
    assert_int_equal(count_entries(), before);
    free(data);
}

/* A 1 TiB sparse disk: packing skips the holes, opening reads only the header, directory and top level. */
static void test_sparse_terabyte(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("tera.vmsnap");
    uint64_t size = 1ull << 40;
    uint8_t *blk = make_data(65536, 11);
    for (size_t i = 0; i < 65536; i++)
        blk[i] |= 1;   /* no zero block */
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", size, &e), 0);
    uint64_t offs[] = { 0, 1ull << 30, 777ull << 30, size - 65536 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(offs); i++) {
        assert_int_equal(arc_writer_zero(w, arc_writer_position(w), offs[i] - arc_writer_position(w), &e), 0);
        assert_int_equal(arc_writer_pwrite(w, blk, 65536, offs[i], &e), 0);
    }
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct stat st;
    stat(p, &st);
    assert_true(st.st_size < 4 << 20);
    struct arc *a;
    assert_int_equal(arc_open(p, NULL, &a, &e), 0);
    size_t mem = arc_mem_usage(a);
    print_message("1 TiB sparse archive: %lld bytes on disk, %zu bytes of reader memory after open\n",
                  (long long)st.st_size, mem);
    assert_true(mem < (2u << 20));   /* generous: the top level is 96 KiB, the default cache is bounded */
    uint8_t buf[65536];
    for (size_t i = 0; i < VS_ARRAY_SIZE(offs); i++) {
        assert_int_equal(arc_pread(a, 0, buf, sizeof buf, offs[i], &e), 0);
        assert_memory_equal(buf, blk, sizeof buf);
    }
    assert_int_equal(arc_pread(a, 0, buf, 4096, 5ull << 30, &e), 0);
    { static const uint8_t z[4096]; assert_memory_equal(buf, z, 4096); }
    uint64_t run;
    unsigned fl;
    assert_int_equal(arc_block_status(a, 0, 65536, size - 65536, &run, &fl, &e), 0);
    assert_int_equal(fl, ARC_STATUS_ZERO);
    assert_int_equal(run, (1ull << 30) - 65536);
    assert_true(arc_mem_usage(a) < (4u << 20));
    arc_close(a);
    free(blk);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_unknown_length),
        cmocka_unit_test(test_zero_and_dedup),     cmocka_unit_test(test_forced_collision),
        cmocka_unit_test(test_thin),               cmocka_unit_test(test_corruption_every_byte),
        cmocka_unit_test(test_corruption_uncompressed),
        cmocka_unit_test(test_unchanged),
        cmocka_unit_test(test_feature_flags),      cmocka_unit_test(test_vmgenid_bit),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_disk_full_and_abort), cmocka_unit_test(test_sparse_terabyte),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))) {
            char *f = tpath(de->d_name);
            unlink(f);
            free(f);
        }
    if (d)
        closedir(d);
    rmdir(dir);
    return r;
}
