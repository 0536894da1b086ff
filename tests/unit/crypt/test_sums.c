/* Unit tests: chunk tables (.sums) and version-2 signatures -- strict parsing of a table, the signature over its
 * digest and geometry, and the verifying source: a flipped byte in chunk k fails every read of chunk k with an error
 * naming k and its bytes, the other chunks still read, and small sequential reads cost one read of each chunk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define CHUNK (64u << 10)
#define SIZE (5 * CHUNK + 1000)   /* the last chunk is short */

static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static int mem_pread(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    (void)e;
    memcpy(buf, (const uint8_t *)opaque + off, len);
    return 0;
}

static uint8_t *data(void)
{
    uint8_t *d = vs_xmalloc(SIZE);
    for (size_t i = 0; i < SIZE; i++)
        d[i] = (uint8_t)(i * 131 + (i >> 12));
    return d;
}

static void make(const uint8_t *d, struct cr_sums *t)
{
    vs_err e = { 0 };
    assert_int_equal(cr_sums_compute(mem_pread, (void *)d, uuid, SIZE, CHUNK, t, &e), 0);
    assert_int_equal(t->count, 6);
}

/* The table of d and its .sums file (*len bytes). */
static uint8_t *made_file(const uint8_t *d, struct cr_sums *t, size_t *len)
{
    make(d, t);
    return cr_sums_format(t, len);
}

static void test_table_round_trip(void **state)
{
    (void)state;
    VS_AUTOFREE uint8_t *d = data();
    struct cr_sums t, u;
    size_t len;
    VS_AUTOFREE uint8_t *f = made_file(d, &t, &len);
    assert_int_equal(len, CR_SUMS_HEADER + 6 * CR_SUMS_HASH);
    assert_int_equal(cr_sums_file_bytes(SIZE, CHUNK), len);
    vs_err e = { 0 };
    assert_int_equal(cr_sums_parse(f, len, "t.sums", &u, &e), 0);
    assert_int_equal(u.chunk_size, CHUNK);
    assert_int_equal(u.file_size, SIZE);
    assert_memory_equal(u.h, t.h, 6 * CR_SUMS_HASH);
    for (uint64_t k = 0; k < 6; k++)
        assert_true(cr_sums_chunk_ok(&u, k, d + k * CHUNK, k == 5 ? 1000 : CHUNK));
    assert_false(cr_sums_chunk_ok(&u, 1, d, CHUNK));        /* chunk 0's bytes are not chunk 1's */
    assert_false(cr_sums_chunk_ok(&u, 5, d + 5 * CHUNK, 999));   /* nor a short read of it */
    assert_false(cr_sums_chunk_ok(&u, 6, d, 1));            /* past the table */
    cr_sums_clear(&u);
    cr_sums_clear(&t);
}

/* Each rule of the format broken once: refused with the file named. */
static void test_table_strict(void **state)
{
    (void)state;
    VS_AUTOFREE uint8_t *d = data();
    struct cr_sums t, u;
    size_t len;
    VS_AUTOFREE uint8_t *f = made_file(d, &t, &len);
    cr_sums_clear(&t);
    VS_AUTOFREE uint8_t *g = vs_xmalloc(len + 32);
    struct { size_t at; uint8_t v; size_t len; const char *words; } cases[] = {
        { 0, 'X', 0, "magic" },                 /* magic */
        { 8, 2, 0, "version 2" },               /* version */
        { 12, 15, 0, "chunk size 2^15" },       /* 32 KiB: below the minimum */
        { 12, 25, 0, "chunk size 2^25" },       /* 32 MiB: above the maximum */
        { 12, 200, 0, "chunk size 2^200" },     /* no such power */
        { 24, 7, 0, "do not cover" },           /* count */
        { 18, 9, 0, "do not cover" },           /* size (its third byte): 10 chunks, not 6 */
        { 0, 0, 1, "expected" },                /* one byte short */
        { 0, 0, 2, "expected" },                /* one byte long */
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
        size_t n = cases[i].len == 1 ? len - 1 : cases[i].len == 2 ? len + 1 : len;
        memcpy(g, f, len);
        g[len] = 0;
        if (!cases[i].len)
            g[cases[i].at] = cases[i].v;
        vs_err e = { 0 };
        if (cr_sums_parse(g, n, "x.sums", &u, &e) == 0)
            fail_msg("case %zu accepted", i);
        assert_non_null(strstr(e.msg, "chunk table x.sums"));
        if (!strstr(e.msg, cases[i].words))
            fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].words);
        assert_null(u.h);
    }
    vs_err e = { 0 };
    assert_int_not_equal(cr_sums_parse(f, 10, "x.sums", &u, &e), 0);   /* shorter than a header */
}

static struct cr_signkey key(void)
{
    struct cr_signkey k = { 0 };
    vs_err e = { 0 };
    assert_int_equal(cr_init(&e), 0);
    crypto_sign_ed25519_keypair(k.pk, k.sk);
    cr_pubkey_id(k.pk, k.id);
    return k;
}

/* A version-2 signature survives its .sig line, binds the table through its digest and its geometry. */
static void test_sig_v2(void **state)
{
    (void)state;
    VS_AUTOFREE uint8_t *d = data();
    struct cr_sums t, u;
    make(d, &t);
    uint8_t header[CR_ARC_HEADER_BYTES] = { 0 };
    memcpy(header + 32, uuid, 16);
    struct cr_signkey k = key();
    struct cr_sig s;
    cr_sign_sums(&k, header, &t, &s);
    assert_int_equal(s.version, 2);
    struct cr_sigfile f = { 0 }, g;
    vs_err e = { 0 };
    assert_int_equal(cr_sigfile_put(&f, &s, "x.sig", &e), 0);
    VS_AUTOFREE char *text = cr_sigfile_format(&f);
    assert_int_equal(strlen(text), 301);
    assert_memory_equal(text, "vmsnap-signature-2 ", 19);
    assert_int_equal(cr_sigfile_parse(text, strlen(text), "x.sig", &g, &e), 0);
    assert_int_equal(g.n, 1);
    assert_true(cr_sig_valid(&g.v[0], header));
    size_t len;
    VS_AUTOFREE uint8_t *file = cr_sums_format(&t, &len);
    assert_int_equal(cr_sums_bind(&g.v[0], file, len, "x.sums", &u, &e), 0);
    cr_sums_clear(&u);
    file[CR_SUMS_HEADER + 40] ^= 1;   /* a table that is not the signed one */
    assert_int_equal(cr_sums_bind(&g.v[0], file, len, "x.sums", &u, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "chunk table x.sums is not the one key"));
    struct cr_sig bad = g.v[0];
    bad.chunk_size *= 2;   /* other geometry: the signature no longer holds */
    assert_false(cr_sig_valid(&bad, header));
    header[0] ^= 1;
    assert_false(cr_sig_valid(&g.v[0], header));
    cr_sigfile_clear(&f);
    cr_sigfile_clear(&g);
    cr_sums_clear(&t);
}

/* A memory source that counts what is read from it, each read taking delay_ms (a far store). */
struct counted { struct arc_source s; struct arc_source *inner; atomic_uint reads; unsigned delay_ms; };

static int counted_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct counted *c = (struct counted *)s;
    atomic_fetch_add(&c->reads, 1);
    if (c->delay_ms)
        nanosleep(&(struct timespec){ 0, c->delay_ms * 1000000L }, NULL);
    return c->inner->pread(c->inner, buf, len, off, e);
}

static void counted_close(struct arc_source *s)
{
    arc_source_close(((struct counted *)s)->inner);
    free(s);
}

static struct arc_source *verified(const uint8_t *d, struct cr_sums *t, struct counted **cnt)
{
    struct counted *c = vs_xcalloc(1, sizeof *c);
    c->inner = arc_source_open_mem(d, SIZE, "a.vmsnap");
    c->s = *c->inner;
    c->s.pread = counted_pread;
    c->s.close = counted_close;
    *cnt = c;
    return arc_source_verified(&c->s, t, "0123456789abcdef");
}

static void test_verifying_source(void **state)
{
    (void)state;
    VS_AUTOFREE uint8_t *d = data(), *buf = vs_xmalloc(SIZE);
    struct cr_sums t;
    make(d, &t);
    d[3 * CHUNK + 77] ^= 0x10;   /* after signing: chunk 3 */
    struct counted *c;
    struct arc_source *v = verified(d, &t, &c);
    assert_null(t.h);   /* taken over */
    assert_string_equal(v->signer, "0123456789abcdef");
    assert_int_equal(v->size, SIZE);
    vs_err e = { 0 };
    /* Small sequential reads of chunk 0: one read of the chunk, the rest from the kept copy. */
    for (size_t off = 0; off < CHUNK; off += 4096)
        assert_int_equal(v->pread(v, buf + off, 4096, off, &e), 0);
    assert_int_equal(c->reads, 1);
    assert_memory_equal(buf, d, CHUNK);
    /* Across chunks 1..2 with partial ends, and the short last chunk. */
    assert_int_equal(v->pread(v, buf, CHUNK + 10, CHUNK + 100, &e), 0);
    assert_memory_equal(buf, d + CHUNK + 100, CHUNK + 10);
    assert_int_equal(v->pread(v, buf, 1000, 5 * CHUNK, &e), 0);
    assert_memory_equal(buf, d + 5 * CHUNK, 1000);
    /* Whole chunks: one read of the source for the run of them. */
    unsigned before = c->reads;
    assert_int_equal(v->pread(v, buf, 3 * CHUNK, 0, &e), 0);
    assert_int_equal(c->reads, before + 1);
    assert_memory_equal(buf, d, 3 * CHUNK);
    e = (vs_err){ 0 };
    assert_int_equal(v->pread(v, buf, SIZE, 0, &e), -EBADMSG);   /* the whole file: chunk 3 named */
    assert_non_null(strstr(e.msg, "chunk 3 (bytes 196608..262144)"));
    /* Any read touching chunk 3 fails, naming it and its bytes; nothing of it reaches the caller. */
    uint64_t at[] = { 3 * CHUNK, 3 * CHUNK + 77, 4 * CHUNK - 1, 2 * CHUNK + 5 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(at); i++) {
        memset(buf, 0xee, 8192);
        e = (vs_err){ 0 };
        assert_int_equal(v->pread(v, buf, i == 3 ? CHUNK : 1, at[i], &e), -EBADMSG);
        assert_non_null(strstr(e.msg, "archive a.vmsnap: chunk 3 (bytes 196608..262144)"));
        assert_non_null(strstr(e.msg, "0123456789abcdef"));
        if (i < 3)
            assert_int_equal(buf[0], 0xee);
    }
    /* Past the end: an error, not a read. */
    assert_int_equal(v->pread(v, buf, 2, SIZE - 1, &e), -EIO);
    arc_source_close(v);
}

struct reader { struct arc_source *v; uint64_t off; int r; uint8_t buf[4096]; };

static void *read_one(void *p)
{
    struct reader *rd = p;
    vs_err e = { 0 };
    rd->r = rd->v->pread(rd->v, rd->buf, sizeof rd->buf, rd->off, &e);
    return NULL;
}

/* Readers of one chunk at once (read-ahead workers): one fetch of it, the others wait for it. */
static void test_one_fetch_per_chunk(void **state)
{
    (void)state;
    VS_AUTOFREE uint8_t *d = data();
    struct cr_sums t;
    make(d, &t);
    struct counted *c;
    struct arc_source *v = verified(d, &t, &c);
    c->delay_ms = 50;
    struct reader rd[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        rd[i] = (struct reader){ .v = v, .off = 4 * CHUNK + (uint64_t)i * 8192 };
        assert_int_equal(pthread_create(&th[i], NULL, read_one, &rd[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(rd[i].r, 0);
        assert_memory_equal(rd[i].buf, d + rd[i].off, sizeof rd[i].buf);
    }
    assert_int_equal(atomic_load(&c->reads), 1);
    arc_source_close(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_round_trip),
        cmocka_unit_test(test_table_strict),
        cmocka_unit_test(test_sig_v2),
        cmocka_unit_test(test_verifying_source),
        cmocka_unit_test(test_one_fetch_per_chunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
