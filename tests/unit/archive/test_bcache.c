/* The local block cache: a second reader is served from it, it stays within its bound evicting the least recently
 * used, processes share it at once, a damaged entry is fetched again, another archive with the same checksums
 * cannot put bytes in front of this one, and a prefetched archive reads without its source. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/bcache_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BS 65536u

static char dir[] = "/tmp/vmsnap-bcache-XXXXXX";

static char *tpath(const char *n) { return vs_xasprintf("%s/%s", dir, n); }

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = seed ^ (seed >> 29);
        memcpy(p + i, &v, VS_MIN((size_t)8, n - i));
    }
}

/* A writer of path, thin over parent if not NULL. */
static struct arc_writer *new_writer(const char *path, const char *parent)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.parent_path = parent;
    o.thin = parent != NULL;
    o.threads = 1;
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(path, &o, &w, NULL), 0);
    return w;
}

/* An archive at path: one disk of nblocks incompressible 64 KiB blocks; returns its data. */
static uint8_t *make_archive(const char *path, unsigned nblocks, uint64_t seed)
{
    size_t size = (size_t)nblocks * BS;
    uint8_t *data = vs_xmalloc(size);
    fill_random(data, size, seed);
    struct arc_writer *w = new_writer(path, NULL);
    vs_err e = { 0 };
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", size, &e), 0);
    assert_int_equal(arc_writer_write(w, data, size, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    return data;
}

static struct arc *open_cached(const char *path, const char *cache, uint64_t max)
{
    struct arc_cache_conf c = { .mode = ARC_CACHE_ON, .dir = cache, .max_bytes = max };
    struct arc_open_opts o = { .cache = &c };
    struct arc *a = NULL;
    vs_err e = { 0 };
    if (arc_open(path, &o, &a, &e) < 0)
        fail_msg("%s", e.msg);
    return a;
}

static void check_block(struct arc *a, unsigned b, const uint8_t *data)
{
    static uint8_t buf[BS];
    vs_err e = { 0 };
    if (arc_pread(a, 0, buf, BS, (uint64_t)b * BS, &e) < 0)
        fail_msg("block %u: %s", b, e.msg);
    assert_memory_equal(buf, data + (size_t)b * BS, BS);
}

static struct arc_cache_stats stats(struct arc *a)
{
    struct arc_cache_stats s;
    arc_cache_stats(a, &s);
    return s;
}

/* The entry file of block b of stream 0. */
static char *entry_of(struct arc *a, unsigned b)
{
    struct arc_entry en;
    vs_err e = { 0 };
    assert_int_equal(arc__entry(a, 0, b, &en, &e), 0);
    return vs_xasprintf("%s/b-%016" PRIx64 "-%08" PRIx32 "-%016" PRIx64, a->bc->dir, en.offset, en.stored_len,
                        en.scsum);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void sleep_ms(long ms) { nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000 }, NULL); }

/* Bytes the cache directory holds, counted as the cache counts them. */
static uint64_t usage(const char *root)
{
    uint64_t total = 0;
    DIR *d = opendir(root);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        VS_AUTOFREE char *sub = vs_xasprintf("%s/%s", root, de->d_name);
        DIR *s = opendir(sub);
        for (struct dirent *f; s && (f = readdir(s));) {
            VS_AUTOFREE char *p = vs_xasprintf("%s/%s", sub, f->d_name);
            struct stat st;
            if (f->d_name[0] != '.' && stat(p, &st) == 0)
                total += VS_MAX((uint64_t)st.st_blocks * 512, ((uint64_t)st.st_size + 4095) & ~4095ull);
        }
        if (s)
            closedir(s);
    }
    if (d)
        closedir(d);
    return total;
}

static void test_second_reader_hits(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("hits.vmsnap"), *cache = tpath("cache-hits");
    VS_AUTOFREE uint8_t *data = make_archive(p, 32, 1);
    struct arc *a = open_cached(p, cache, 64 << 20);
    for (unsigned b = 0; b < 32; b++)   /* sequential: read-ahead fetches the next blocks meanwhile */
        check_block(a, b, data);
    struct arc_cache_stats s1 = stats(a);
    assert_true(s1.enabled);
    assert_true(s1.source_bytes >= 32ull * BS);
    assert_true(s1.stored >= 33);   /* every block and the index page */
    arc_close(a);
    a = open_cached(p, cache, 64 << 20);
    for (unsigned b = 0; b < 32; b++)
        check_block(a, b, data);
    struct arc_cache_stats s2 = stats(a);
    assert_int_equal(s2.misses, 0);
    assert_true(s2.hits >= 33);
    assert_true(s2.source_bytes * 100 < 32ull * BS);   /* only the header, directory and top-level table */
    arc_close(a);
    /* Without the cache (the default for a local file) nothing is stored. */
    struct arc *plain;
    vs_err e = { 0 };
    struct arc_cache_conf off = { .mode = ARC_CACHE_AUTO, .dir = cache };
    struct arc_open_opts o = { .cache = &off };
    assert_int_equal(arc_open(p, &o, &plain, &e), 0);
    assert_false(stats(plain).enabled);
    arc_close(plain);
    unlink(p);
}

static void test_bound_and_lru(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("lru.vmsnap"), *cache = tpath("cache-lru");
    VS_AUTOFREE uint8_t *data = make_archive(p, 24, 2);
    const uint64_t max = 1 << 20;   /* room for about 15 blocks */
    struct arc *a = open_cached(p, cache, max);
    /* Never block b + 1 after block b, so that no read-ahead muddles the order of use. */
    static const unsigned first[] = { 1, 3, 5, 7, 9, 2, 4, 6, 8, 0 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(first); i++)
        check_block(a, first[i], data);
    sleep_ms(30);
    check_block(a, 1, data);   /* a hit: block 1 is now used after every other */
    assert_int_equal(stats(a).hits, 1);
    /* What a writer that died left: removed by the next scan once old, never while it may still be written. */
    VS_AUTOFREE char *stale = vs_xasprintf("%s/.tmp-stale1", a->bc->dir), *fresh = vs_xasprintf("%s/.tmp-fresh1",
                                                                                               a->bc->dir);
    close(open(stale, O_CREAT | O_WRONLY, 0600));
    close(open(fresh, O_CREAT | O_WRONLY, 0600));
    struct timespec old[2] = { { time(NULL) - 3600, 0 }, { time(NULL) - 3600, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, stale, old, 0), 0);
    sleep_ms(30);
    for (int b = 23; b >= 16; b--)
        check_block(a, (unsigned)b, data);
    assert_false(exists(stale));
    assert_true(exists(fresh));
    assert_true(usage(cache) <= max);
    VS_AUTOFREE char *e1 = entry_of(a, 1), *e23 = entry_of(a, 23);
    assert_true(exists(e1));
    assert_true(exists(e23));
    int gone = -1;
    for (size_t i = 1; i < VS_ARRAY_SIZE(first); i++) {
        VS_AUTOFREE char *ent = entry_of(a, first[i]);
        if (!exists(ent))
            gone = (int)first[i];
    }
    assert_true(gone >= 0);   /* one of those used before block 1 went */
    struct arc_cache_stats before = stats(a);
    check_block(a, 1, data);
    assert_int_equal(stats(a).hits, before.hits + 1);
    check_block(a, (unsigned)gone, data);   /* evicted: fetched again */
    assert_int_equal(stats(a).misses, before.misses + 1);
    arc_close(a);
    unlink(p);
}

static void test_damaged_entry_refetched(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("bad.vmsnap"), *cache = tpath("cache-bad");
    VS_AUTOFREE uint8_t *data = make_archive(p, 8, 3);
    struct arc *a = open_cached(p, cache, 64 << 20);
    for (unsigned b = 0; b < 8; b++)
        check_block(a, b, data);
    arc_close(a);
    /* A payload byte flipped, the entry cut short, a header byte flipped, an entry that is another's bytes. */
    for (int how = 0; how < 4; how++) {
        a = open_cached(p, cache, 64 << 20);
        unsigned b = 2 + (unsigned)how;
        VS_AUTOFREE char *ent = entry_of(a, b), *other = entry_of(a, 7);
        int fd = open(ent, O_RDWR);
        assert_true(fd >= 0);
        uint8_t c;
        off_t at = how == 0 ? ARC_BC_HEADER + 1000 : 20;
        if (how == 1) {
            assert_int_equal(ftruncate(fd, ARC_BC_HEADER + 100), 0);
        } else if (how == 3) {
            VS_AUTOFREE uint8_t *buf = vs_xmalloc(ARC_BC_HEADER + BS);
            int ofd = open(other, O_RDONLY);
            assert_int_equal(read(ofd, buf, ARC_BC_HEADER + BS), ARC_BC_HEADER + BS);
            close(ofd);
            assert_int_equal(pwrite(fd, buf, ARC_BC_HEADER + BS, 0), ARC_BC_HEADER + BS);
        } else {
            assert_int_equal(pread(fd, &c, 1, at), 1);
            c ^= 0x40;
            assert_int_equal(pwrite(fd, &c, 1, at), 1);
        }
        close(fd);
        check_block(a, b, data);
        struct arc_cache_stats s = stats(a);
        assert_int_equal(s.bad, 1);
        assert_int_equal(s.misses, 1);
        check_block(a, b, data);   /* stored again, whole */
        assert_int_equal(stats(a).hits, s.hits + 1);
        arc_close(a);
    }
    unlink(p);
}

static void test_other_archive_cannot_poison(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("victim.vmsnap"), *q = tpath("copy.vmsnap"), *cache = tpath("cache-poison");
    VS_AUTOFREE uint8_t *data = make_archive(p, 8, 4);
    /* A byte-for-byte copy: same UUID, same offsets, same checksums, another file. */
    VS_AUTOFREE char *cmd = vs_xasprintf("cp %s %s", p, q);
    assert_int_equal(system(cmd), 0);
    struct arc *b = open_cached(q, cache, 64 << 20);
    for (unsigned i = 0; i < 8; i++)
        check_block(b, i, data);
    /* Whatever the copy's reader stored lives in its own scope, so the entries of the victim's key do not exist:
     * bytes another archive stored (even colliding ones) are never looked at for this one. */
    struct arc *a = open_cached(p, cache, 64 << 20);
    assert_string_not_equal(a->bc->dir, b->bc->dir);
    VS_AUTOFREE char *planted = entry_of(b, 3), *mine = entry_of(a, 3);
    assert_true(exists(planted));
    assert_false(exists(mine));
    for (unsigned i = 0; i < 8; i++)
        check_block(a, i, data);
    assert_true(stats(a).source_bytes >= 8ull * BS);   /* every block came from the victim's own file */
    arc_close(a);
    arc_close(b);
    /* The same name rewritten with another archive (a new object version): nothing of the old one is used. */
    VS_AUTOFREE char *n = tpath("new.vmsnap");
    VS_AUTOFREE uint8_t *data2 = make_archive(n, 8, 5);
    assert_int_equal(rename(n, p), 0);
    a = open_cached(p, cache, 64 << 20);
    for (unsigned i = 0; i < 8; i++)
        check_block(a, i, data2);
    assert_true(stats(a).source_bytes >= 8ull * BS);
    arc_close(a);
    unlink(p);
    unlink(q);
}

static void test_processes_share(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("shared.vmsnap"), *cache = tpath("cache-shared");
    VS_AUTOFREE uint8_t *data = make_archive(p, 40, 6);
    const uint64_t max = 1 << 20;   /* smaller than the archive: they evict each other's entries meanwhile */
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (!kids[k]) {
            struct arc_cache_conf c = { .mode = ARC_CACHE_ON, .dir = cache, .max_bytes = max };
            struct arc_open_opts o = { .cache = &c };
            struct arc *a;
            vs_err e = { 0 };
            static uint8_t buf[BS];
            if (arc_open(p, &o, &a, &e) < 0)
                _exit(2);
            for (unsigned round = 0; round < 3; round++)
                for (unsigned i = 0; i < 40; i++) {
                    unsigned b = (i * 17 + (unsigned)k * 5 + round) % 40;
                    if (arc_pread(a, 0, buf, BS, (uint64_t)b * BS, &e) < 0 || memcmp(buf, data + (size_t)b * BS, BS))
                        _exit(3);
                }
            struct arc_cache_stats s;
            arc_cache_stats(a, &s);
            arc_close(a);
            _exit(s.hits ? 0 : 4);
        }
    }
    for (int k = 0; k < 4; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    /* The count of bytes held is shared: at most an entry per process is on disk and not yet counted. */
    uint64_t used = usage(cache);
    if (used > max + 4 * (ARC_BC_HEADER + BS + 4096))
        fail_msg("the cache holds %" PRIu64 " bytes, bound %" PRIu64, used, max);
    unlink(p);
}

static void test_prefetch_all(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("pre.vmsnap"), *cache = tpath("cache-pre"), *p2 = tpath("pre2.vmsnap");
    VS_AUTOFREE uint8_t *data = make_archive(p, 24, 7);
    int fd = open(p, O_RDONLY);
    off_t len = lseek(fd, 0, SEEK_END);
    uint8_t *img = vs_xmalloc((size_t)len);
    assert_int_equal(pread(fd, img, (size_t)len, 0), len);
    close(fd);
    struct arc_cache_conf c = { .mode = ARC_CACHE_ON, .dir = cache, .max_bytes = 16 << 20 };
    struct arc_open_opts o = { .cache = &c };
    struct arc *a;
    vs_err e = { 0 };
    assert_int_equal(arc_open_source(arc_source_open_mem(img, (size_t)len, "store://pre"), &o, &a, &e), 0);
    uint64_t fetched = 0;
    atomic_bool stop = false;
    if (arc_prefetch_all(a, &stop, &fetched, &e) < 0)
        fail_msg("%s", e.msg);
    assert_true(fetched >= 24ull * BS);
    /* The store now answers with other bytes (gone, replaced): every read still comes out right, from the cache. */
    memset(img, 0xa5, (size_t)len);
    uint64_t src = stats(a).source_bytes;
    /* Another archive read through a cache bound far below what both need: it cannot evict a pinned archive. */
    VS_AUTOFREE uint8_t *data2 = make_archive(p2, 40, 8);
    struct arc *b = open_cached(p2, cache, 1 << 20);
    for (unsigned i = 0; i < 40; i++)
        check_block(b, i, data2);
    arc_close(b);
    for (unsigned i = 0; i < 24; i++)
        check_block(a, i, data);
    assert_int_equal(stats(a).source_bytes, src);
    arc_close(a);
    free(img);
    /* No worker thread (none could be started): the prefetch fetches everything itself. */
    setenv("VMSNAP_TEST_FAULT", "bcache-workers", 1);
    VS_AUTOFREE char *nw = vs_xasprintf("%s-noworkers", cache);
    c.dir = nw;
    assert_int_equal(arc_open(p, &o, &a, &e), 0);
    if (arc_prefetch_all(a, &stop, &fetched, &e) < 0)
        fail_msg("%s", e.msg);
    assert_true(fetched >= 24ull * BS);
    assert_int_equal(a->bc->nworkers, 0);
    arc_close(a);
    unsetenv("VMSNAP_TEST_FAULT");
    c.dir = cache;
    /* An archive larger than the cache is refused with a message saying which bound. */
    c.max_bytes = 1 << 20;
    assert_int_equal(arc_open(p, &o, &a, &e), 0);
    assert_int_equal(arc_prefetch_all(a, &stop, &fetched, &e), -EFBIG);
    assert_non_null(strstr(e.msg, "--cache-size"));
    arc_close(a);
    unlink(p);
    unlink(p2);
}

/* A thin archive: its parent's blocks are fetched and pinned too, and the bound counts the whole chain. */
static void test_prefetch_chain(void **state)
{
    (void)state;
    VS_AUTOFREE char *pp = tpath("chain-parent.vmsnap"), *cp = tpath("chain-child.vmsnap"), *cache = tpath("cache-chain");
    VS_AUTOFREE uint8_t *data = make_archive(pp, 16, 11);
    struct arc_writer *w = new_writer(cp, pp);
    vs_err e = { 0 };
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", 16ull * BS, &e), 0);
    fill_random(data + 8 * BS, 8 * BS, 12);   /* the second half changes */
    assert_int_equal(arc_writer_pwrite(w, data + 8 * BS, 8 * BS, 8 * BS, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct arc_cache_conf c = { .mode = ARC_CACHE_ON, .dir = cache, .max_bytes = 3 << 19 };   /* 1.5 MiB */
    struct arc_open_opts o = { .cache = &c };
    struct arc *a;
    uint64_t fetched = 0;
    atomic_bool stop = false;
    /* Each archive alone fits in 90 % of the bound, both together do not. */
    assert_int_equal(arc_open(cp, &o, &a, &e), 0);
    assert_non_null(arc_parent(a));
    assert_int_equal(arc_prefetch_all(a, &stop, &fetched, &e), -EFBIG);
    assert_non_null(strstr(e.msg, "chain"));
    arc_close(a);
    c.max_bytes = 4 << 20;
    assert_int_equal(arc_open(cp, &o, &a, &e), 0);
    if (arc_prefetch_all(a, &stop, &fetched, &e) < 0)
        fail_msg("%s", e.msg);
    assert_true(fetched >= 16ull * BS);   /* 8 blocks of the child, 8 of the parent */
    uint64_t src = stats(a).source_bytes;
    for (unsigned i = 0; i < 16; i++)
        check_block(a, i, data);
    assert_int_equal(stats(a).source_bytes, src);
    arc_close(a);
    unlink(pp);
    unlink(cp);
}

/* A source that says it is remote gets the cache without being asked; VMSNAP_CACHE=off keeps it out. */
static void test_remote_by_default(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("remote.vmsnap"), *cache = tpath("cache-remote");
    VS_AUTOFREE uint8_t *data = make_archive(p, 4, 10);
    setenv("VMSNAP_CACHE_DIR", cache, 1);
    for (int off = 0; off < 2; off++) {
        if (off)
            setenv("VMSNAP_CACHE", "off", 1);
        struct arc_source *src;
        vs_err e = { 0 };
        assert_int_equal(arc_source_open_file(p, &src, &e), 0);
        src->remote = true;
        struct arc *a;
        assert_int_equal(arc_open_source(src, NULL, &a, &e), 0);
        check_block(a, 2, data);
        assert_int_equal(stats(a).enabled, !off);
        assert_int_equal(stats(a).stored, off ? 0 : 2);   /* the index page and the block */
        arc_close(a);
    }
    unsetenv("VMSNAP_CACHE");
    unsetenv("VMSNAP_CACHE_DIR");
    unlink(p);
}

static void test_env(void **state)
{
    (void)state;
    struct arc_cache_conf c;
    vs_err e = { 0 };
    setenv("VMSNAP_CACHE", "sometimes", 1);
    assert_int_equal(arc_cache_conf_env(&c, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "VMSNAP_CACHE"));
    setenv("VMSNAP_CACHE", "on", 1);
    setenv("VMSNAP_CACHE_DIR", "relative/dir", 1);
    assert_int_equal(arc_cache_conf_env(&c, &e), -EINVAL);
    setenv("VMSNAP_CACHE_DIR", "/x/y", 1);
    setenv("VMSNAP_CACHE_SIZE", "2G", 1);
    assert_int_equal(arc_cache_conf_env(&c, &e), 0);
    assert_int_equal(c.mode, ARC_CACHE_ON);
    assert_string_equal(c.dir, "/x/y");
    assert_int_equal(c.max_bytes, 2ull << 30);
    /* A cache directory others can read is refused, naming it. */
    VS_AUTOFREE char *p = tpath("env.vmsnap"), *open_dir = tpath("cache-open");
    VS_AUTOFREE uint8_t *data = make_archive(p, 1, 9);
    assert_int_equal(mkdir(open_dir, 0755), 0);
    chmod(open_dir, 0755);
    setenv("VMSNAP_CACHE_DIR", open_dir, 1);
    struct arc *a;
    assert_true(arc_open(p, NULL, &a, &e) < 0);
    assert_non_null(strstr(e.msg, open_dir));
    unsetenv("VMSNAP_CACHE");
    unsetenv("VMSNAP_CACHE_DIR");
    unsetenv("VMSNAP_CACHE_SIZE");
    rmdir(open_dir);
    unlink(p);
}

/* Threads of this process in the idle I/O class and, where a thread may come back from it (root), at SCHED_IDLE. */
static int idle_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        int tid = atoi(de->d_name);
        if (tid > 0 && syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, tid) == 3 << 13 /* IOPRIO_CLASS_IDLE */ &&
            (geteuid() != 0 || sched_getscheduler(tid) == SCHED_IDLE))
            n++;
    }
    closedir(d);
    return n;
}

static void *idle_prefetch(void *opaque)
{
    static const struct sched_param zero = { 0 };
    vs_err e = { 0 };   /* no cmocka assertion off the test's thread */
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &zero) ||
        syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13 /* IOPRIO_CLASS_IDLE */) < 0)
        return (void *)(intptr_t)-EPERM;   /* as the page server's prefetcher does */
    return (void *)(intptr_t)arc_prefetch_all(opaque, NULL, NULL, &e);
}

/* Workers started by a normal reader's read-ahead run an idle-priority caller's prefetch at idle priority. */
static void test_idle_caller_idle_workers(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = tpath("idle.vmsnap"), *cache = tpath("cache-idle");
    VS_AUTOFREE uint8_t *data = make_archive(p, 32, 9);
    struct arc *a = open_cached(p, cache, 64 << 20);
    for (unsigned b = 0; b < 4; b++)   /* sequential: this (normal) thread starts the workers */
        check_block(a, b, data);
    assert_int_equal(idle_threads(), 0);
    pthread_t t;
    void *r;
    assert_int_equal(pthread_create(&t, NULL, idle_prefetch, a), 0);
    assert_int_equal(pthread_join(t, &r), 0);
    assert_int_equal((intptr_t)r, 0);
    assert_true(idle_threads() >= 1);   /* the workers that ran its jobs */
    arc_close(a);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_reader_hits),      cmocka_unit_test(test_bound_and_lru),
        cmocka_unit_test(test_damaged_entry_refetched), cmocka_unit_test(test_other_archive_cannot_poison),
        cmocka_unit_test(test_processes_share),         cmocka_unit_test(test_prefetch_all),
        cmocka_unit_test(test_prefetch_chain),          cmocka_unit_test(test_remote_by_default),       cmocka_unit_test(test_env),
        cmocka_unit_test(test_idle_caller_idle_workers),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    VS_AUTOFREE char *cmd = vs_xasprintf("rm -rf %s", dir);
    if (system(cmd) != 0)
        r = 1;
    return r;
}
