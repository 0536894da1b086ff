/* Unit tests for encrypting copies (arc_copy with encrypt): a plain thin chain (zero runs, parent references,
 * RAM stored out of order) written anew and sealed, parents first; the copy's streams, block kinds and bytes are
 * the source's, under new UUIDs; an encrypted source re-encrypted; the refusals, and nothing left after one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/archive.h"
#include "crypt/crypt.h"
#include "keytest.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEN (1u << 20)
#define BS 16384u

static char dir[] = "/tmp/vmsnap-recrypt-test-XXXXXX";
static struct cr_key k1, k2;
static uint8_t *base_data, *child_data, *ram;

static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

/* disk0 (data, a zero run, text), RAM pages out of order, a config; a thin child of it when parent is given. */
static void write_arc(const char *path, const char *parent, const uint8_t *disk)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.block_size = BS;
    o.parent_path = parent;
    o.thin = parent != NULL;
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(path, &o, &w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_DISK, "disk0", disk, LEN, &e), 0);
    assert_int_equal(arc_writer_begin_unordered(w, ARC_KIND_OTHER, "ram/mem", 64 * 4096, 0, &e), 0);
    for (int p = 63; p >= 0; p -= 3)
        assert_int_equal(arc_writer_pwrite(w, ram + p * 4096, 4096, (uint64_t)p * 4096, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_add(w, ARC_KIND_CONFIG, "config", "{\"vmgenid\":true}", 16, &e), 0);
    arc_writer_holds_memory(w);
    if (arc_writer_finish(w, &e) < 0)
        fail_msg("%s", e.msg);
}

struct seen { int n; char dst[4][256]; char from[4][20]; };

static void on_copied(void *opaque, const struct arc_copied *c)
{
    struct seen *s = opaque;
    assert_true(s->n < 4 && c->key_id && !c->skipped && c->bytes > 0);
    snprintf(s->dst[s->n], sizeof s->dst[0], "%s", c->dst);
    snprintf(s->from[s->n], sizeof s->from[0], "%s", c->from_key_id ? c->from_key_id : "");
    s->n++;
}

/* Same names, kinds, sizes and block kinds, and the same bytes; another UUID. */
static void same_archive(struct arc *a, struct arc *b)
{
    assert_int_equal(arc_stream_count(a), arc_stream_count(b));
    assert_memory_not_equal(arc_uuid(a), arc_uuid(b), 16);
    VS_AUTOFREE uint8_t *x = vs_xmalloc(LEN), *y = vs_xmalloc(LEN);
    vs_err e = { 0 };
    for (unsigned i = 0; i < arc_stream_count(a); i++) {
        struct arc_stream_info sa, sb;
        assert_int_equal(arc_stream_get(a, i, &sa), 0);
        assert_int_equal(arc_stream_get(b, i, &sb), 0);
        assert_string_equal(sa.name, sb.name);
        assert_int_equal(sa.kind, sb.kind);
        assert_int_equal(sa.size, sb.size);
        assert_int_equal(sa.zero_blocks, sb.zero_blocks);
        assert_int_equal(sa.parent_blocks, sb.parent_blocks);
        assert_int_equal(arc_pread(a, i, x, sa.size, 0, &e), 0);
        assert_int_equal(arc_pread(b, i, y, sb.size, 0, &e), 0);
        assert_memory_equal(x, y, sa.size);
    }
}

static void test_chain(void **state)
{
    (void)state;
    VS_AUTOFREE char *pb = tpath("base.vmsnap"), *pc = tpath("child.vmsnap"), *out = tpath("out");
    VS_AUTOFREE char *eb = tpath("out/base.vmsnap"), *ec = tpath("out/child.vmsnap");
    write_arc(pb, NULL, base_data);
    write_arc(pc, pb, child_data);
    assert_int_equal(mkdir(out, 0700), 0);
    struct seen s = { 0 };
    struct arc_copy_opts o = { .with_parents = true, .encrypt = &k1, .copied = on_copied, .opaque = &s };
    vs_err e = { 0 };
    if (arc_copy(pc, ec, &o, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(s.n, 2);   /* the parent first */
    assert_string_equal(s.dst[0], eb);
    assert_string_equal(s.dst[1], ec);
    ARC_AUTOCLOSE struct arc *a = open_key(pc, NULL), *b = open_key(ec, &k1);
    struct arc_info bi;
    arc_get_info(b, &bi);
    assert_true(bi.encrypted && bi.has_parent && !strcmp(bi.key_id, k1.id) && !strcmp(bi.parent_hint, "base.vmsnap"));
    assert_true(bi.incompat & 2);   /* VMGENID: the config went through the writer */
    assert_non_null(arc_parent(b));
    assert_memory_equal(bi.parent_uuid, arc_uuid(arc_parent(b)), 16);
    same_archive(a, b);
    same_archive(arc_parent(a), arc_parent(b));
    struct stat st;
    assert_int_equal(stat(ec, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);   /* it holds RAM */

    /* re-encrypted with another key: the source's key is needed, the copy says what it was */
    VS_AUTOFREE char *out2 = tpath("out2"), *rc = tpath("out2/child.vmsnap"), *rb = tpath("out2/base.vmsnap");
    assert_int_equal(mkdir(out2, 0700), 0);
    o.encrypt = &k2;
    assert_int_equal(arc_copy(ec, rc, &o, &e), -ENOKEY);
    assert_non_null(strstr(e.msg, "pass --key"));
    o.key = &k1;
    o.cipher = "xchacha20-poly1305";
    s.n = 0;
    if (arc_copy(ec, rc, &o, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.from[1], k1.id);
    ARC_AUTOCLOSE struct arc *r = open_key(rc, &k2);
    struct arc_info ri;
    arc_get_info(r, &ri);
    assert_string_equal(ri.cipher, "xchacha20-poly1305");
    same_archive(a, r);

    /* refusals leave nothing: a thin source without its chain, a parent's copy already there, a child that cannot
     * be written after its parent was */
    o = (struct arc_copy_opts){ .encrypt = &k1 };
    VS_AUTOFREE char *x = tpath("x.vmsnap");
    assert_int_equal(arc_copy(pc, x, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "add --with-parents"));
    o.with_parents = true;
    assert_int_equal(arc_copy(pc, ec, &o, &e), -EEXIST);
    assert_non_null(strstr(e.msg, "exists"));
    VS_AUTOFREE char *out3 = tpath("out3"), *dc = tpath("out3/child.vmsnap"), *db = tpath("out3/base.vmsnap");
    assert_int_equal(mkdir(out3, 0700), 0);
    assert_int_equal(mkdir(dc, 0700), 0);   /* the child cannot be written */
    assert_true(arc_copy(pc, dc, &o, &e) < 0);
    assert_int_equal(access(db, F_OK), -1);   /* the parent written first is gone again */
    rmdir(dc);
    rmdir(out3);
}

static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        VS_AUTOFREE char *p = vs_xasprintf("%s/%s", path, de->d_name);
        if (de->d_type == DT_DIR)
            rm_tree(p);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    return rmdir(path);
}

static int setup(void **state)
{
    (void)state;
    if (keytest_setup(dir, &k1, &k2) < 0)
        return -1;
    base_data = vs_xcalloc(1, LEN);
    child_data = vs_xmalloc(LEN);
    ram = vs_xmalloc(64 * 4096);
    for (size_t i = 0; i < LEN / 2; i++)   /* the second half is zero */
        base_data[i] = (uint8_t)(i * 31 / 7 + (i >> 12));
    memcpy(child_data, base_data, LEN);
    memset(child_data + 3 * BS + 100, 0xc5, 5000);
    memset(child_data + 10 * BS, 0, BS);
    for (size_t i = 0; i < 64 * 4096; i++)
        ram[i] = (uint8_t)(i % 4096 < 2048 ? i / 4096 : i * 13);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(base_data);
    free(child_data);
    free(ram);
    return rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_chain) };
    return cmocka_run_group_tests(tests, setup, teardown);
}
