/* Unit tests for encrypted archives: round trips (thick, thin, unordered RAM), keys (missing, wrong, chains),
 * and tampering: blocks swapped between two archives and inside one, an old copy of a block replayed, a flipped
 * byte in every sealed structure, a header edited with its checksum repaired. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/reader_priv.h"
#include "keytest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static char dir[] = "/tmp/vmsnap-sealed-test-XXXXXX";
static struct cr_key k1, k2;
static const char *cipher;   /* each test runs once per cipher */

static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

/* Text (findable in a plain file), noise and repeats: blocks that compress, some that do not, some equal. */
static uint8_t *make_data(size_t len, uint32_t seed)
{
    uint8_t *b = vs_xmalloc(len);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i += 4096) {
        size_t n = VS_MIN((size_t)4096, len - i);
        x = x * 1103515245u + 12345;
        switch ((x >> 8) % 4) {
        case 0: for (size_t k = 0; k < n; k++) b[i + k] = "secret guest text "[(i + k) % 18]; break;
        case 1: for (size_t k = 0; k < n; k++) { x = x * 1103515245u + 12345; b[i + k] = (uint8_t)(x >> 16); } break;
        case 2: memset(b + i, 0, n); break;
        default: memset(b + i, 0x5a, n); break;
        }
    }
    return b;
}

static int write_disk(const char *path, const struct arc_writer_opts *o, const uint8_t *data, size_t len, vs_err *e)
{
    struct arc_writer *w;
    int r = arc_writer_create(path, o, &w, e);
    if (r < 0)
        return r;
    if ((r = arc_writer_begin(w, ARC_KIND_DISK, "disk0", len, e)) < 0 || (r = arc_writer_write(w, data, len, e)) < 0 ||
        (r = arc_writer_end(w, e)) < 0 || (r = arc_writer_add(w, ARC_KIND_CONFIG, "config", "{\"ram\":1}", 9, e)) < 0) {
        arc_writer_abort(w);
        return r;
    }
    return arc_writer_finish(w, e);
}

static void opts(struct arc_writer_opts *o, const char *codec, const struct cr_key *k)
{
    vs_err e = { 0 };
    arc_writer_opts_init(o);
    assert_int_equal(arc_parse_codec(codec, &o->codec, &o->level, &e), 0);
    o->block_size = 4096;
    o->key = k;
    o->cipher = cipher;
}

static void check_stream(struct arc *a, unsigned s, const uint8_t *data, size_t len)
{
    vs_err e = { 0 };
    uint8_t *buf = vs_xmalloc(len + 1);
    if (arc_pread(a, s, buf, len, 0, &e) < 0)
        fail_msg("%s", e.msg);
    assert_memory_equal(buf, data, len);
    assert_int_equal(arc_pread(a, s, buf, 100, len / 3 + 1, &e), 0);
    assert_memory_equal(buf, data + len / 3 + 1, 100);
    free(buf);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    VS_AUTOCLOSE int fd = open(path, O_RDONLY);
    assert_true(fd >= 0 && fstat(fd, &st) == 0);
    uint8_t *d = vs_xmalloc((size_t)st.st_size + 1);
    assert_int_equal(vs_read_full(fd, d, (size_t)st.st_size), st.st_size);
    *len = (size_t)st.st_size;
    return d;
}

static void spit(const char *path, const uint8_t *d, size_t len)
{
    unlink(path);
    VS_AUTOCLOSE int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(vs_write_full(fd, d, len), 0);
}

static bool file_has(const char *path, const char *needle)
{
    size_t len;
    VS_AUTOFREE uint8_t *d = slurp(path, &len);
    return memmem(d, len, needle, strlen(needle)) != NULL;
}

/* Every problem verify finds, and the first message. */
static void on_problem(void *opaque, const struct arc_problem *p)
{
    char *first = opaque;
    if (!first[0])
        snprintf(first, 512, "%s", p->msg);
}

static int verify_msg(struct arc *a, char *first)
{
    first[0] = 0;
    vs_err e = { 0 };
    struct arc_verify_opts vo = { .problem = on_problem, .opaque = first };
    return arc_verify(a, &vo, &e);
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len = 3 * 1024 * 1024 + 777;
    VS_AUTOFREE uint8_t *data = make_data(len, 1);
    const char *codecs[] = { "none", "lz4", "zstd" };
    int threads[] = { 1, 3 };
    for (unsigned c = 0; c < 3; c++)
        for (unsigned t = 0; t < 2; t++) {
            VS_AUTOFREE char *p = tpath("rt.vmsnap");
            struct arc_writer_opts o;
            opts(&o, codecs[c], &k1);
            o.threads = threads[t];
            vs_err e = { 0 };
            if (write_disk(p, &o, data, len, &e) < 0)
                fail_msg("%s", e.msg);
            assert_false(file_has(p, "secret guest text"));   /* nothing in the clear: data, */
            assert_false(file_has(p, "disk0"));                /* stream names, config */
            assert_false(file_has(p, "\"ram\""));
            ARC_AUTOCLOSE struct arc *a = open_key(p, &k1);
            struct arc_info in;
            arc_get_info(a, &in);
            assert_true(in.encrypted);
            assert_string_equal(in.key_id, k1.id);
            int s = arc_find_stream(a, ARC_KIND_DISK, "disk0");
            assert_int_equal(s, 0);
            check_stream(a, 0, data, len);
            struct arc_stream_info si;
            arc_stream_get(a, 0, &si);
            assert_true(si.dedup_blocks > 0);   /* dedup within one key still works */
            assert_true(si.zero_blocks > 0);
            char first[512];
            assert_int_equal(verify_msg(a, first), 0);
            unlink(p);
        }
}

static void test_keys(void **state)
{
    (void)state;
    size_t len = 100000;
    VS_AUTOFREE uint8_t *data = make_data(len, 2);
    VS_AUTOFREE char *p = tpath("keys.vmsnap");
    struct arc_writer_opts o;
    opts(&o, "lz4", &k1);
    vs_err e = { 0 };
    assert_int_equal(write_disk(p, &o, data, len, &e), 0);
    struct arc *a = NULL;
    assert_int_equal(arc_open(p, NULL, &a, &e), -ENOKEY);
    VS_AUTOFREE char *want = vs_xasprintf("archive %s is encrypted with key %s; pass --key", p, k1.id);
    assert_string_equal(e.msg, want);
    struct arc_open_opts oo = { .key = &k2 };
    assert_int_equal(arc_open(p, &oo, &a, &e), -EKEYREJECTED);
    assert_non_null(strstr(e.msg, want));
    assert_non_null(strstr(e.msg, k2.id));
    /* info: the header without a key */
    oo = (struct arc_open_opts){ .header_only = true };
    assert_int_equal(arc_open(p, &oo, &a, &e), 0);
    struct arc_info in;
    arc_get_info(a, &in);
    assert_true(in.encrypted);
    assert_string_equal(in.key_id, k1.id);
    assert_int_equal(arc_stream_count(a), 0);
    arc_close(a);
    /* a plain archive opens with or without a key */
    opts(&o, "lz4", NULL);
    assert_int_equal(write_disk(p, &o, data, len, &e), 0);
    a = open_key(p, &k1);
    arc_get_info(a, &in);
    assert_false(in.encrypted);
    assert_string_equal(in.key_id, "");
    check_stream(a, 0, data, len);
    arc_close(a);
}

/* Thin archives inherit the parent's key; another key or a plain parent is refused. */
static void test_thin(void **state)
{
    (void)state;
    size_t len = 1 << 20;
    VS_AUTOFREE uint8_t *data = make_data(len, 3);
    VS_AUTOFREE uint8_t *data2 = vs_xmalloc(len);
    memcpy(data2, data, len);
    memset(data2 + 8192, 0x77, 20000);
    VS_AUTOFREE char *base = tpath("base.vmsnap"), *child = tpath("child.vmsnap"), *plain = tpath("plain.vmsnap");
    struct arc_writer_opts o;
    vs_err e = { 0 };
    opts(&o, "zstd", &k1);
    assert_int_equal(write_disk(base, &o, data, len, &e), 0);
    opts(&o, "zstd", NULL);   /* no key: the parent's is taken (read with parent_key) */
    o.parent_path = base;
    o.parent_key = &k1;
    o.thin = true;
    if (write_disk(child, &o, data2, len, &e) < 0)
        fail_msg("%s", e.msg);
    ARC_AUTOCLOSE struct arc *a = open_key(child, &k1);
    struct arc_info in;
    arc_get_info(a, &in);
    assert_true(in.encrypted && in.has_parent);
    struct arc_stream_info si;
    arc_stream_get(a, 0, &si);
    assert_true(si.parent_blocks > 0 && si.data_blocks > 0);
    check_stream(a, 0, data2, len);
    char first[512];
    assert_int_equal(verify_msg(a, first), 0);

    o.key = &k2;   /* another key for a thin child */
    assert_int_equal(write_disk(child, &o, data2, len, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "a thin archive uses its parent's key"));
    o.parent_key = NULL;   /* the parent needs k1 */
    assert_int_equal(write_disk(child, &o, data2, len, &e), -EKEYREJECTED);
    opts(&o, "lz4", NULL);
    assert_int_equal(write_disk(plain, &o, data, len, &e), 0);
    o.key = &k1;
    o.parent_path = plain;
    o.thin = true;
    assert_int_equal(write_disk(child, &o, data2, len, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "is not encrypted"));
    /* a thick copy of an encrypted base may take another key */
    opts(&o, "lz4", &k2);
    o.parent_path = base;
    o.parent_key = &k1;
    VS_AUTOFREE char *thick = tpath("thick.vmsnap");
    assert_int_equal(write_disk(thick, &o, data2, len, &e), 0);
    ARC_AUTOCLOSE struct arc *t = open_key(thick, &k2);
    check_stream(t, 0, data2, len);
    /* and one without a key stays encrypted with the base's */
    o.key = NULL;
    assert_int_equal(write_disk(thick, &o, data2, len, &e), 0);
    ARC_AUTOCLOSE struct arc *t1 = open_key(thick, &k1);
    check_stream(t1, 0, data2, len);
    unlink(child);
    unlink(thick);
    unlink(plain);
}

/* RAM as pages, unordered, with a tiny hold so blocks are stored twice: the old copies stay in the file. */
static void write_ram(const char *path, const struct cr_key *k, uint8_t *model, uint64_t npages)
{
    struct arc_writer_opts o;
    opts(&o, "lz4", k);
    o.block_size = 16384;
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin_unordered(w, ARC_KIND_OTHER, "ram/mem", npages * 4096, 1, &e), 0);
    for (uint64_t p = 0; p < npages; p += 2)   /* even pages first: every block is flushed half-full */
        assert_int_equal(arc_writer_pwrite(w, model + p * 4096, 4096, p * 4096, &e), 0);
    for (uint64_t p = 1; p < npages; p += 2) {
        for (int i = 0; i < 4096; i++)
            model[p * 4096 + i] = (uint8_t)(p * 7 + (uint64_t)i * 13);
        assert_int_equal(arc_writer_pwrite(w, model + p * 4096, 4096, p * 4096, &e), 0);
    }
    assert_int_equal(arc_writer_end(w, &e), 0);
    arc_writer_holds_memory(w);
    if (arc_writer_finish(w, &e) < 0)
        fail_msg("%s", e.msg);
}

static void test_unordered_and_replay(void **state)
{
    (void)state;
    uint64_t npages = 64;
    VS_AUTOFREE uint8_t *model = make_data(npages * 4096, 4);
    VS_AUTOFREE char *p = tpath("ram.vmsnap"), *q = tpath("ram2.vmsnap");
    write_ram(p, &k1, model, npages);
    ARC_AUTOCLOSE struct arc *a = open_key(p, &k1);
    check_stream(a, 0, model, npages * 4096);
    char first[512];
    assert_int_equal(verify_msg(a, first), 0);
    /* A block's current copy replaced by an earlier sealed block of this archive of the same length (an older
     * copy of it, or another block): authentic on its own, yet not the object the sealed index names. */
    struct arc_entry en;
    vs_err e = { 0 };
    size_t len;
    VS_AUTOFREE uint8_t *d = slurp(p, &len);
    bool replayed = false;
    for (uint64_t b = 0; b < 16 && !replayed; b++) {
        assert_int_equal(arc__entry(a, 0, b, &en, &e), 0);
        if (en.type != ARC_BLOCK_DATA)
            continue;
        /* the older copy: the last sealed object before this one of the same length, found by trying offsets */
        for (uint64_t off = ARC_HEADER_SIZE; off + en.stored_len <= en.offset; off++) {
            uint8_t *obj = vs_xmalloc(en.stored_len);
            memcpy(obj, d + off, en.stored_len);
            uint8_t ad[ARC_SEAL_AD_MAX];
            size_t adl = arc__seal_ad(ad, ARC_SEAL_BLOCK, arc_uuid(a), 0, 0);
            bool ok = cr_open_inplace(&a->sealer, ad, adl, obj, en.stored_len) == 0;
            free(obj);
            if (!ok)
                continue;
            memcpy(d + en.offset, d + off, en.stored_len);
            spit(q, d, len);
            ARC_AUTOCLOSE struct arc *r = open_key(q, &k1);
            uint8_t buf[16384];
            assert_int_equal(arc_pread(r, 0, buf, sizeof buf, b * 16384, &e), -EIO);
            VS_AUTOFREE char *want = vs_xasprintf("stream 'ram/mem' block %" PRIu64, b);
            assert_non_null(strstr(e.msg, want));
            replayed = true;
            break;
        }
    }
    assert_true(replayed);
    unlink(q);
}

/* Blocks of two archives with one key, same geometry: a block of B copied over A's is caught, and so is a swap
 * of two blocks inside A. */
static void test_swaps(void **state)
{
    (void)state;
    size_t len = 64 * 4096;
    VS_AUTOFREE uint8_t *da = vs_xmalloc(len), *db = vs_xmalloc(len);
    uint32_t x = 5;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345;
        da[i] = (uint8_t)(x >> 16);
        db[i] = (uint8_t)(x >> 8);
    }
    VS_AUTOFREE char *pa = tpath("a.vmsnap"), *pb = tpath("b.vmsnap"), *pq = tpath("q.vmsnap");
    struct arc_writer_opts o;
    opts(&o, "none", &k1);
    vs_err e = { 0 };
    assert_int_equal(write_disk(pa, &o, da, len, &e), 0);
    assert_int_equal(write_disk(pb, &o, db, len, &e), 0);
    ARC_AUTOCLOSE struct arc *a = open_key(pa, &k1);
    ARC_AUTOCLOSE struct arc *b = open_key(pb, &k1);
    struct arc_entry ea, eb, ea2;
    assert_int_equal(arc__entry(a, 0, 3, &ea, &e), 0);
    assert_int_equal(arc__entry(b, 0, 3, &eb, &e), 0);
    assert_int_equal(arc__entry(a, 0, 9, &ea2, &e), 0);
    assert_int_equal(ea.stored_len, eb.stored_len);
    size_t la, lb;
    VS_AUTOFREE uint8_t *fa = slurp(pa, &la), *fb = slurp(pb, &lb);
    VS_AUTOFREE uint8_t *m = vs_xmalloc(la);
    uint8_t buf[4096];

    memcpy(m, fa, la);   /* B's block 3 into A's block 3 */
    memcpy(m + ea.offset, fb + eb.offset, ea.stored_len);
    spit(pq, m, la);
    struct arc *q = open_key(pq, &k1);
    assert_int_equal(arc_pread(q, 0, buf, 4096, 3 * 4096, &e), -EIO);
    assert_non_null(strstr(e.msg, "stream 'disk0' block 3"));
    assert_int_equal(arc_pread(q, 0, buf, 4096, 4 * 4096, &e), 0);   /* the others still read */
    arc_close(q);

    memcpy(m, fa, la);   /* A's blocks 3 and 9 swapped */
    memcpy(m + ea.offset, fa + ea2.offset, ea.stored_len);
    memcpy(m + ea2.offset, fa + ea.offset, ea.stored_len);
    spit(pq, m, la);
    q = open_key(pq, &k1);
    assert_int_equal(arc_pread(q, 0, buf, 4096, 3 * 4096, &e), -EIO);
    assert_int_equal(arc_pread(q, 0, buf, 4096, 9 * 4096, &e), -EIO);
    char first[512];
    assert_int_equal(verify_msg(q, first), 2);
    arc_close(q);

    memcpy(m, fa, la);   /* B's whole index page (stream 0, page 0) into A: both sealed for their own archive */
    const struct arc_top *ta = &a->streams[0].tops[0], *tb = &b->streams[0].tops[0];
    assert_int_equal(ta->length, tb->length);
    memcpy(m + ta->offset, fb + tb->offset, ta->length);
    spit(pq, m, la);
    q = open_key(pq, &k1);
    assert_int_equal(arc_pread(q, 0, buf, 4096, 0, &e), -EIO);
    assert_non_null(strstr(e.msg, "index page 0"));
    arc_close(q);
    unlink(pq);
}

/* One byte flipped in each sealed structure of each stream, and in the header (checksum repaired). */
static void test_flips(void **state)
{
    (void)state;
    size_t len = 40 * 4096;
    VS_AUTOFREE uint8_t *data = make_data(len, 6);
    VS_AUTOFREE char *p = tpath("f.vmsnap"), *q = tpath("fq.vmsnap");
    struct arc_writer_opts o;
    opts(&o, "lz4", &k1);
    vs_err e = { 0 };
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_DISK, "disk0", data, len, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_FILE, "kernel", data + 4096, 3 * 4096, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_CONFIG, "config", "{\"ram\":1}", 9, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    ARC_AUTOCLOSE struct arc *a = open_key(p, &k1);
    size_t flen;
    VS_AUTOFREE uint8_t *f = slurp(p, &flen);
    for (unsigned s = 0; s < arc_stream_count(a); s++) {
        struct arc_stream *st = &a->streams[s];
        uint64_t where[3] = { st->top_offset + 30, st->tops[0].offset + 30, 0 };
        for (uint64_t b = 0; b < st->blocks && !where[2]; b++) {
            struct arc_entry en;
            assert_int_equal(arc__entry(a, s, b, &en, &e), 0);
            if (en.type == ARC_BLOCK_DATA)
                where[2] = en.offset + en.stored_len / 2;   /* in the ciphertext */
        }
        for (unsigned k = 0; k < 3; k++) {
            f[where[k]] ^= 0x10;
            spit(q, f, flen);
            f[where[k]] ^= 0x10;
            struct arc_open_opts oo = { .key = &k1 };
            struct arc *r = NULL;
            int rc = arc_open(q, &oo, &r, &e);
            if (rc == 0) {   /* pages and blocks: caught on read and by verify */
                VS_AUTOFREE uint8_t *buf = vs_xmalloc(st->size);
                rc = arc_pread(r, s, buf, st->size, 0, &e);
                char first[512];
                assert_true(verify_msg(r, first) > 0);
                arc_close(r);
            }
            assert_int_equal(rc, -EIO);
            assert_non_null(strstr(e.msg, st->name));
        }
    }
    /* the directory */
    f[a->dir_off + 50] ^= 1;
    spit(q, f, flen);
    f[a->dir_off + 50] ^= 1;
    struct arc *r = NULL;
    struct arc_open_opts oo = { .key = &k1 };
    assert_int_equal(arc_open(q, &oo, &r, &e), -EIO);
    assert_non_null(strstr(e.msg, "directory"));
    /* a header field changed and its checksum repaired: the directory no longer authenticates */
    vs_put_le64(f + H_CREATED, vs_get_le64(f + H_CREATED) + 1);
    vs_put_le64(f + ARC_HEADER_CSUM_OFF, arc_meta_hash(f, ARC_HEADER_CSUM_OFF));
    spit(q, f, flen);
    assert_int_equal(arc_open(q, &oo, &r, &e), -EIO);
    assert_non_null(strstr(e.msg, "does not authenticate"));
    unlink(q);
    unlink(p);
}

static int setup(void **state)
{
    (void)state;
    return keytest_setup(dir, &k1, &k2);
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
            unlinkat(dirfd(d), de->d_name, 0);
    if (d)
        closedir(d);
    rmdir(dir);
    return 0;
}

/* The cipher is named in the header (AES-256-GCM: incompatible bit 3 and the cipher byte; XChaCha20-Poly1305 as
 * revision 11 wrote it, neither), and in AES-256-GCM's nonce field the 12 unused bytes must stay zero. */
static void test_cipher_header(void **state)
{
    (void)state;
    size_t len = 8 * 4096;
    VS_AUTOFREE uint8_t *data = make_data(len, 9);
    VS_AUTOFREE char *p = tpath("cipher.vmsnap"), *q = tpath("cipher2.vmsnap");
    struct arc_writer_opts o;
    opts(&o, "lz4", &k1);
    vs_err e = { 0 };
    assert_int_equal(write_disk(p, &o, data, len, &e), 0);
    size_t n;
    VS_AUTOFREE uint8_t *d = slurp(p, &n);
    bool gcm = !strcmp(cipher, "aes-256-gcm");
    assert_int_equal(!!(vs_get_le64(d + H_INCOMPAT) & ARC_INCOMPAT_CIPHER), gcm);
    assert_int_equal(d[H_CIPHER], gcm ? CR_CIPHER_AES256GCM : 0);
    ARC_AUTOCLOSE struct arc *a = open_key(p, &k1);
    struct arc_info ai;
    arc_get_info(a, &ai);
    assert_string_equal(ai.cipher, cipher);
    struct arc_entry en;
    assert_int_equal(arc__entry(a, 0, 0, &en, &e), 0);
    assert_int_equal(en.type, ARC_BLOCK_DATA);
    uint8_t obj[4096 + 64 + CR_SEAL_OVERHEAD];
    assert_true(en.stored_len <= sizeof obj);
    memcpy(obj, d + en.offset, en.stored_len);
    d[en.offset + 20] ^= 1;   /* in the nonce field: part of XChaCha's nonce; unused, zero, with GCM */
    spit(q, d, n);
    ARC_AUTOCLOSE struct arc *b = open_key(q, &k1);
    uint8_t buf[4096];
    assert_int_equal(arc_pread(b, 0, buf, sizeof buf, 0, &e), -EIO);
    /* the seal itself refuses it, behind the stored-bytes checksum too */
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, ARC_SEAL_BLOCK, arc_uuid(a), 0, 0);
    assert_int_equal(cr_open_inplace(&a->sealer, ad, adl, obj, en.stored_len), 0);
    memcpy(obj, d + en.offset, en.stored_len);
    assert_int_equal(cr_open_inplace(&a->sealer, ad, adl, obj, en.stored_len), -EBADMSG);
    /* a thin child sealed with the other cipher: each archive of a chain has its own, one key opens them all */
    VS_AUTOFREE char *c = tpath("cipher-child.vmsnap");
    opts(&o, "lz4", &k1);
    o.cipher = gcm ? "xchacha20-poly1305" : "aes-256-gcm";
    o.parent_path = p;
    o.parent_key = &k1;
    o.thin = true;
    memset(data + 4096, 0x77, 100);
    assert_int_equal(write_disk(c, &o, data, len, &e), 0);
    ARC_AUTOCLOSE struct arc *ch = open_key(c, &k1);
    arc_get_info(ch, &ai);
    assert_string_equal(ai.cipher, o.cipher);
    assert_true(ai.has_parent);
    check_stream(ch, 0, data, len);
    unlink(c);
    unlink(q);
    unlink(p);
}

static int run(const char *c)
{
    cipher = c;
    strcpy(dir, "/tmp/vmsnap-sealed-test-XXXXXX");   /* a fresh directory per group */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_keys),  cmocka_unit_test(test_thin),
        cmocka_unit_test(test_unordered_and_replay), cmocka_unit_test(test_swaps), cmocka_unit_test(test_flips),
        cmocka_unit_test(test_cipher_header),
    };
    print_message("cipher %s\n", c);
    return cmocka_run_group_tests(tests, setup, teardown);
}

int main(void)
{
    vs_err e;
    if (cr_init(&e) < 0 || !cr_cipher_available(CR_CIPHER_AES256GCM))
        print_message("aes-256-gcm: not available on this CPU, skipped\n");
    int r = run("xchacha20-poly1305");
    return cr_cipher_available(CR_CIPHER_AES256GCM) ? r + run("aes-256-gcm") : r;
}
