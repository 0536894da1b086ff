/* Unit tests: signatures of archives -- sign and check (thick and thin), tampered header, directory and index page
 * caught, untrusted and missing signers refused, strict .sig parsing, trusted key sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static char tdir[] = "/tmp/vmsnap-sign-XXXXXX";

static char *path(const char *name)
{
    return vs_xasprintf("%s/%s", tdir, name);
}

/* A 1 MiB disk of 16 blocks, block i filled with i * seed, thin over parent when given (every 4th block written). */
static void write_archive_codec(const char *p, const char *parent, int seed, enum arc_codec codec)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = codec;
    o.threads = 1;
    o.parent_path = parent;
    o.thin = parent != NULL;
    struct arc_writer *w = NULL;
    vs_err e = { 0 };
    uint8_t buf[64 << 10];
    assert_int_equal(arc_writer_create(p, &o, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_DISK, "disk0", 16 * sizeof buf, &e), 0);
    for (int i = 0; i < 16; i++) {
        memset(buf, (i * seed) & 0xff, sizeof buf);
        if (!parent || i % 4 == 0)
            assert_int_equal(arc_writer_pwrite(w, buf, sizeof buf, (uint64_t)i * sizeof buf, &e), 0);
    }
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
}

static void write_archive(const char *p, const char *parent, int seed)
{
    write_archive_codec(p, parent, seed, ARC_CODEC_LZ4);
}

static int src_pread(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct arc_source *s = opaque;
    return s->pread(s, buf, len, off, e);
}

/* What `vmsnap sign` does, through the library. */
static void sign(const char *p, const struct cr_signkey *k)
{
    struct arc_source *s = NULL;
    vs_err e = { 0 };
    assert_int_equal(arc_source_open_file(p, &s, &e), 0);
    uint8_t header[CR_ARC_HEADER_BYTES], digest[CR_DIGEST_BYTES];
    assert_int_equal(src_pread(s, header, sizeof header, 0, &e), 0);
    assert_int_equal(cr_digest(src_pread, s, s->size, digest, &e), 0);
    struct cr_sig sig;
    cr_sign(k, header, s->size, digest, &sig);
    VS_AUTOFREE char *sp = vs_xasprintf("%s.sig", p);
    size_t n = 0;
    assert_int_equal(cr_sigfile_add(sp, &sig, &n, &e), 0);
    arc_source_close(s);
}

/* Check p against kr (NULL: any key); returns the result and the signer's id in who. */
static int check(const char *p, const struct cr_keyring *kr, char who[CR_ID_LEN + 1], vs_err *e)
{
    struct arc *a = NULL;
    struct arc_open_opts oo = { .no_parent = true };
    int r = arc_open(p, &oo, &a, e);
    if (r < 0)
        return r;
    VS_AUTOFREE char *sp = vs_xasprintf("%s.sig", p);
    struct cr_sigfile f;
    if ((r = cr_sigfile_load(sp, &f, e)) == 0) {
        struct arc_source *s = arc_get_source(a);
        struct cr_archive_ref ref = { .name = p, .uuid = arc_uuid(a), .size = s->size, .pread = src_pread,
                                      .opaque = s };
        const struct cr_sig *by = NULL;
        r = cr_check_archive(&ref, &f, kr, &by, e);
        if (r == 0)
            memcpy(who, by->id, CR_ID_LEN + 1);
        cr_sigfile_clear(&f);
    }
    arc_close(a);
    return r;
}

static void flip(const char *p, uint64_t off)
{
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void put(const char *p, const void *b, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(vs_write_full(fd, b, n), 0);
    close(fd);
}

static void copy(const char *from, const char *to)
{
    VS_AUTOFREE char *cmd = vs_xasprintf("cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static uint64_t read_le64(const char *p, uint64_t off)
{
    int fd = open(p, O_RDONLY);
    uint8_t b[8];
    assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
    close(fd);
    return vs_get_le64(b);
}

struct keys { struct cr_signkey a, b; struct cr_keyring only_a, only_b; };

static void make_keys(struct keys *k)
{
    vs_err e = { 0 };
    VS_AUTOFREE char *pa = path("ka"), *pb = path("kb");
    if (access(pa, F_OK) != 0) {
        assert_int_equal(cr_signkey_generate(pa, &k->a, &e), 0);
        assert_int_equal(cr_signkey_generate(pb, &k->b, &e), 0);
    }
    assert_int_equal(cr_signkey_load(pa, &k->a, &e), 0);
    assert_int_equal(cr_signkey_load(pb, &k->b, &e), 0);
    VS_AUTOFREE char *qa = path("ka.pub"), *qb = path("kb.pub");
    assert_int_equal(cr_keyring_load(qa, &k->only_a, &e), 0);
    assert_int_equal(cr_keyring_load(qb, &k->only_b, &e), 0);
}

static void drop_keys(struct keys *k)
{
    cr_keyring_clear(&k->only_a);
    cr_keyring_clear(&k->only_b);
}

static void test_roundtrip_thick_thin(void **state)
{
    (void)state;
    struct keys k;
    make_keys(&k);
    VS_AUTOFREE char *base = path("base.vmsnap"), *child = path("child.vmsnap");
    write_archive(base, NULL, 3);
    write_archive(child, base, 5);
    sign(base, &k.a);
    sign(child, &k.a);
    vs_err e = { 0 };
    char who[CR_ID_LEN + 1];
    assert_int_equal(check(base, &k.only_a, who, &e), 0);
    assert_string_equal(who, k.a.id);
    assert_int_equal(check(child, &k.only_a, who, &e), 0);
    /* Without trusted keys any valid signature is reported. */
    assert_int_equal(check(child, NULL, who, &e), 0);
    assert_string_equal(who, k.a.id);
    /* Another key: refused, naming the key there and the one trusted. */
    assert_int_equal(check(child, &k.only_b, who, &e), -EPERM);
    assert_non_null(strstr(e.msg, "not signed by a trusted key"));
    assert_non_null(strstr(e.msg, k.a.id));
    assert_non_null(strstr(e.msg, k.b.id));
    /* A second signature by b is added beside a's; re-signing with a replaces a's. */
    sign(child, &k.b);
    sign(child, &k.a);
    VS_AUTOFREE char *sp = vs_xasprintf("%s.sig", child);
    struct cr_sigfile f;
    assert_int_equal(cr_sigfile_load(sp, &f, &e), 0);
    assert_int_equal(f.n, 2);
    cr_sigfile_clear(&f);
    assert_int_equal(check(child, &k.only_b, who, &e), 0);
    assert_string_equal(who, k.b.id);
    drop_keys(&k);
}

static void put_le64_at(int fd, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    vs_put_le64(b, v);
    assert_int_equal(pwrite(fd, b, 8, (off_t)off), 8);
}

static uint8_t *read_at(int fd, uint64_t off, size_t len)
{
    uint8_t *b = vs_xmalloc(len);
    assert_int_equal(pread(fd, b, len, (off_t)off), (ssize_t)len);
    return b;
}

/* Make the checksum of the header or of the directory right again after a change: what a forger does. */
static void fix_header(int fd, const char *p)
{
    (void)p;
    VS_AUTOFREE uint8_t *h = read_at(fd, 0, 120);
    put_le64_at(fd, 120, XXH64(h, 120, 0));
}

static void fix_directory(int fd, const char *p)
{
    uint64_t dir = read_le64(p, 80), dlen = read_le64(p, 88) & 0xffffffffu;
    VS_AUTOFREE uint8_t *d = read_at(fd, dir, dlen - 8);
    put_le64_at(fd, dir + dlen - 8, XXH64(d, dlen - 8, 0));
}

/* A signed archive, then a copy with one byte flipped at where() (and a checksum fixed up by fix, if given) under
 * the original's .sig: the check's result. */
static int tampered(uint64_t (*where)(const char *p), void (*fix)(int fd, const char *p), vs_err *e)
{
    struct keys k;
    make_keys(&k);
    VS_AUTOFREE char *good = path("good.vmsnap"), *bad = path("bad.vmsnap");
    VS_AUTOFREE char *gs = vs_xasprintf("%s.sig", good), *bs = vs_xasprintf("%s.sig", bad);
    unlink(gs);
    write_archive(good, NULL, 7);
    sign(good, &k.a);
    copy(good, bad);
    copy(gs, bs);
    char who[CR_ID_LEN + 1];
    assert_int_equal(check(bad, &k.only_a, who, e), 0);
    flip(bad, where(bad));
    if (fix) {
        int fd = open(bad, O_RDWR);
        assert_true(fd >= 0);
        fix(fd, bad);
        close(fd);
    }
    int r = check(bad, &k.only_a, who, e);
    drop_keys(&k);
    return r;
}

static uint64_t at_header(const char *p) { (void)p; return 64; }   /* the creation time */
static uint64_t at_directory(const char *p) { return read_le64(p, 80) + 8 + 24; }   /* stream 0's "stored" */
static uint64_t at_index(const char *p)
{
    uint64_t dir = read_le64(p, 80), hint = read_le64(p, dir + 4) & 0xffff;
    uint64_t top = read_le64(p, dir + 8 + hint + 64);   /* the first stream's top-level table */
    return read_le64(p, top) + 20;                       /* its first index page, an entry's checksum */
}
static uint64_t at_block(const char *p) { (void)p; return 128 + 10; }

static void test_tampered(void **state)
{
    (void)state;
    vs_err e = { 0 };
    /* Damage: the reader's own checksums catch it (at open, or when the digest reads the block). */
    assert_true(tampered(at_header, NULL, &e) < 0);
    assert_true(tampered(at_directory, NULL, &e) < 0);
    assert_true(tampered(at_index, NULL, &e) < 0);
    assert_int_equal(tampered(at_block, NULL, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "content differs from what key"));
    /* Forgery: checksums made right again. A header the reader accepts is not the one signed. */
    assert_int_equal(tampered(at_header, fix_header, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "does not match its header"));
    assert_int_equal(tampered(at_directory, fix_directory, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "content differs from what key"));
}

/* What a forger can do with the archive's own checksums: change a block and fix every checksum above it (XXH3 of
 * the block, XXH64 of its index page, of the top-level table, of the directory). The reader finds the archive
 * sound; a signature over the header and those checksums would still hold. The digest does not. */
static void test_forged_checksums(void **state)
{
    (void)state;
    struct keys k;
    make_keys(&k);
    VS_AUTOFREE char *good = path("fc.vmsnap"), *bad = path("fc2.vmsnap");
    VS_AUTOFREE char *gs = vs_xasprintf("%s.sig", good), *bs = vs_xasprintf("%s.sig", bad);
    write_archive_codec(good, NULL, 'b', ARC_CODEC_NONE);   /* stored bytes = data: one XXH3 covers both */
    vs_err e = { 0 };
    sign(good, &k.a);
    copy(good, bad);
    copy(gs, bs);

    int fd = open(bad, O_RDWR);
    assert_true(fd >= 0);
    uint64_t dir = read_le64(bad, 80), hint = read_le64(bad, dir + 4) & 0xffff, rec = dir + 8 + hint;
    uint64_t top = read_le64(bad, rec + 64), page = read_le64(bad, top);
    uint32_t plen = (uint32_t)read_le64(bad, top + 8);
    uint64_t ent = page + 32;                              /* block 1 (block 0 is zeros) */
    uint64_t at = read_le64(bad, ent);
    uint32_t slen = (uint32_t)read_le64(bad, ent + 8);
    VS_AUTOFREE uint8_t *data = read_at(fd, at, slen);
    data[100] ^= 0x20;                                     /* block 1 is all 'b': 'b' -> 'B' */
    assert_int_equal(pwrite(fd, data, slen, (off_t)at), (ssize_t)slen);
    put_le64_at(fd, ent + 16, XXH3_64bits(data, slen));
    put_le64_at(fd, ent + 24, XXH3_64bits(data, slen));
    VS_AUTOFREE uint8_t *pg = read_at(fd, page, plen);
    put_le64_at(fd, top + 16, XXH64(pg, plen, 0));
    VS_AUTOFREE uint8_t *tt = read_at(fd, top, 24);       /* one index page: one top entry */
    put_le64_at(fd, rec + 72, XXH64(tt, 24, 0));
    fix_directory(fd, bad);
    close(fd);

    struct arc *a = NULL;
    assert_int_equal(arc_open(bad, NULL, &a, &e), 0);
    struct arc_verify_opts vo = { 0 };
    assert_int_equal(arc_verify(a, &vo, &e), 0);           /* sound as far as its checksums go */
    uint8_t got;
    assert_int_equal(arc_pread(a, 0, &got, 1, (64 << 10) + 100, &e), 0);
    assert_int_equal(got, 'B');
    arc_close(a);
    char who[CR_ID_LEN + 1];
    assert_int_equal(check(bad, &k.only_a, who, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "content differs from what key"));
    drop_keys(&k);
}

static void test_sigfile_strict(void **state)
{
    (void)state;
    struct keys k;
    make_keys(&k);
    struct cr_sig s = { .file_size = 4096 };
    uint8_t header[CR_ARC_HEADER_BYTES] = { 1 }, digest[CR_DIGEST_BYTES] = { 2 };
    cr_sign(&k.a, header, 4096, digest, &s);
    assert_true(cr_sig_valid(&s, header));
    header[5] ^= 1;
    assert_false(cr_sig_valid(&s, header));
    header[5] ^= 1;
    struct cr_sigfile one = { .v = &s, .n = 1 }, f;
    VS_AUTOFREE char *text = cr_sigfile_format(&one);
    vs_err e = { 0 };
    size_t len = strlen(text);
    assert_int_equal(cr_sigfile_parse(text, len, "t.sig", &f, &e), 0);
    assert_int_equal(f.n, 1);
    assert_memory_equal(f.v[0].sig, s.sig, sizeof s.sig);
    assert_string_equal(f.v[0].id, k.a.id);
    assert_true(cr_sig_valid(&f.v[0], header));
    cr_sigfile_clear(&f);
    assert_int_equal(cr_sigfile_parse(text, len - 1, "t.sig", &f, &e), 0);   /* no final newline */
    cr_sigfile_clear(&f);

    struct { const char *what, *expect; } bad[] = {
        { "", "is empty" },
        { "hello\n", "line 1: expected" },
        { "\n", "line 1: expected" },
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
        assert_int_equal(cr_sigfile_parse(bad[i].what, strlen(bad[i].what), "t.sig", &f, &e), -EINVAL);
        assert_non_null(strstr(e.msg, bad[i].expect));
        assert_non_null(strstr(e.msg, "t.sig"));
    }
    /* Damaged lines: a carriage return, a blank line after, a wrong id, base64 garbage, a second line cut. */
    VS_AUTOFREE char *crlf = vs_xasprintf("%.*s\r\n", (int)len - 1, text);
    VS_AUTOFREE char *blank = vs_xasprintf("%s\n", text);
    VS_AUTOFREE char *id = vs_xstrdup(text), *b64 = vs_xstrdup(text), *cut = vs_xasprintf("%s%.40s", text, text);
    id[19] = id[19] == 'a' ? 'b' : 'a';
    b64[60] = '*';
    const char *lines[] = { crlf, blank, id, b64, cut };
    const char *expect[] = { "line 1: expected", "line 2: expected", "does not name the key", "not 184 bytes",
                             "line 2: expected" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(lines); i++) {
        assert_int_equal(cr_sigfile_parse(lines[i], strlen(lines[i]), "t.sig", &f, &e), -EINVAL);
        assert_non_null(strstr(e.msg, expect[i]));
    }
    /* At most 64 signatures. */
    VS_AUTOFREE char *many = vs_xmalloc(65 * len + 1);
    for (int i = 0; i < 65; i++)
        memcpy(many + i * len, text, len);
    assert_int_equal(cr_sigfile_parse(many, 64 * len, "t.sig", &f, &e), 0);
    assert_int_equal(f.n, 64);
    cr_sigfile_clear(&f);
    assert_int_equal(cr_sigfile_parse(many, 65 * len, "t.sig", &f, &e), -EINVAL);
    /* A file full of garbage, through the loader. */
    VS_AUTOFREE char *gp = path("garbage.sig");
    put(gp, "\x89PNG\r\n\x1a\n\0\0garbage", 18);
    assert_int_equal(cr_sigfile_load(gp, &f, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "garbage.sig line 1: expected \"vmsnap-signature-1 KEYID BASE64\""));
    VS_AUTOFREE char *none = path("none.sig");
    assert_int_equal(cr_sigfile_load(none, &f, &e), -ENOENT);
    drop_keys(&k);
}

static void test_keyring(void **state)
{
    (void)state;
    struct keys k;
    make_keys(&k);
    vs_err e = { 0 };
    struct cr_keyring kr;
    VS_AUTOFREE char *kd = path("trusted"), *empty = path("empty");
    assert_int_equal(mkdir(kd, 0755), 0);
    assert_int_equal(mkdir(empty, 0755), 0);
    VS_AUTOFREE char *pa = path("ka.pub"), *pb = path("kb.pub"), *da = path("trusted/a.pub"),
                     *db = path("trusted/b.pub"), *other = path("trusted/README");
    copy(pa, da);
    copy(pb, db);
    copy(pa, other);   /* not *.pub: ignored */
    assert_int_equal(cr_keyring_load(kd, &kr, &e), 0);
    assert_int_equal(kr.n, 2);
    assert_non_null(cr_keyring_find(&kr, k.a.pk));
    assert_non_null(cr_keyring_find(&kr, k.b.pk));
    cr_keyring_clear(&kr);
    /* A secret key file is a key too (its public half). */
    VS_AUTOFREE char *sa = path("ka");
    assert_int_equal(cr_keyring_load(sa, &kr, &e), 0);
    assert_non_null(cr_keyring_find(&kr, k.a.pk));
    cr_keyring_clear(&kr);
    assert_int_equal(cr_keyring_load(empty, &kr, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "no public key file"));
    VS_AUTOFREE char *junk = path("trusted/junk.pub");
    put(junk, "ssh-ed25519 AAAA\n", 17);
    assert_int_equal(cr_keyring_load(kd, &kr, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "junk.pub"));
    drop_keys(&k);
}

/* Signatures made at revision 12 of docs/FORMAT.md over golden archives: the signed message, the digest and the
.sig lines as committed still check out (a change to any of them breaks signatures already made). */
static void test_golden(void **state)
{
    (void)state;
    vs_err e = { 0 };
    struct cr_keyring kr;
    assert_int_equal(cr_keyring_load(GOLDEN_DIR "/sign-test.pub", &kr, &e), 0);
    const char *files[] = { GOLDEN_DIR "/r1-thick.vmsnap", GOLDEN_DIR "/r1-thin.vmsnap" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(files); i++) {
        char who[CR_ID_LEN + 1];
        assert_int_equal(check(files[i], &kr, who, &e), 0);
        assert_string_equal(who, "e32909c19e448b2d");
    }
    cr_keyring_clear(&kr);
}

/* A version-2 signature made at revision 14 over a golden archive, with its chunk table: the message, the .sig line
 * and the .sums file as committed still check out, and the archive's chunks are the table's. */
static void test_golden_v2(void **state)
{
    (void)state;
    vs_err e = { 0 };
    struct cr_keyring kr;
    struct cr_sigfile f;
    struct cr_sums t;
    const char *arc = GOLDEN_DIR "/r2-paged.vmsnap";
    assert_int_equal(cr_keyring_load(GOLDEN_DIR "/sign-test.pub", &kr, &e), 0);
    assert_int_equal(cr_sigfile_load(GOLDEN_DIR "/r2-paged.vmsnap.sig", &f, &e), 0);
    struct arc *a = NULL;
    struct arc_open_opts oo = { .no_parent = true };
    assert_int_equal(arc_open(arc, &oo, &a, &e), 0);
    struct arc_source *s = arc_get_source(a);
    struct cr_archive_ref ref = { .name = arc, .uuid = arc_uuid(a), .size = s->size, .pread = src_pread, .opaque = s };
    const struct cr_sig *by = NULL;
    assert_int_equal(cr_check_archive(&ref, &f, &kr, &by, &e), 0);
    assert_int_equal(by->version, 2);
    assert_string_equal(by->id, "e32909c19e448b2d");
    char buf[4096];
    size_t len = 0;
    assert_int_equal(cr_read_small(GOLDEN_DIR "/r2-paged.vmsnap.sums", "chunk table", false, buf, sizeof buf, &len,
                                   &e), 0);
    assert_int_equal(cr_sums_bind(by, (const uint8_t *)buf, len, "r2-paged.vmsnap.sums", &t, &e), 0);
    VS_AUTOFREE uint8_t *data = vs_xmalloc(s->size);
    assert_int_equal(src_pread(s, data, s->size, 0, &e), 0);
    for (uint64_t k = 0; k < t.count; k++)
        assert_true(cr_sums_chunk_ok(&t, k, data + k * t.chunk_size,
                                     (size_t)VS_MIN((uint64_t)t.chunk_size, s->size - k * t.chunk_size)));
    cr_sums_clear(&t);
    arc_close(a);
    cr_sigfile_clear(&f);
    cr_keyring_clear(&kr);
}

int main(void)
{
    if (!mkdtemp(tdir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_thick_thin),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_forged_checksums),
        cmocka_unit_test(test_sigfile_strict),
        cmocka_unit_test(test_keyring),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_v2),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    VS_AUTOFREE char *cmd = vs_xasprintf("rm -rf '%s'", tdir);
    if (system(cmd) != 0)
        r = 1;
    return r;
}
