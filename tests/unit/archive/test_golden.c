/* The golden archives of tests/golden/: archives written at each revision of docs/FORMAT.md must stay readable
 * with the same stream contents, and each damaged one must keep failing with its named error. The archives and
 * golden.json are committed; this test only reads them (tests/golden/README.md says how they were made). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "archive/archive.h"
#include "crypt/crypt.h"
#include "vm/vm.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <xxhash.h>

static json_t *manifest;
static struct cr_key golden_key;   /* r11-test.key: opens the encrypted archives (plain ones ignore it) */

static char *gpath(const char *file) { return vs_xasprintf("%s/%s", GOLDEN_DIR, file); }

static int errno_of(const char *name)
{
    static const struct { const char *n; int v; } t[] = {
        { "EINVAL", EINVAL }, { "EIO", EIO }, { "ENOTSUP", ENOTSUP }, { "ENOENT", ENOENT },
        { "EKEYREJECTED", EKEYREJECTED },
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(t); i++)
        if (!strcmp(t[i].n, name))
            return t[i].v;
    fail_msg("golden.json names an unknown errno %s", name);
    return 0;
}

/* XXH3-128 of a whole stream as read through arc_pread, in hex. */
static int stream_hash(struct arc *a, unsigned s, uint64_t size, char out[33], vs_err *e)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    uint8_t *buf = vs_xmalloc(1 << 16);
    int r = 0;
    for (uint64_t off = 0; off < size && r == 0; off += 1 << 16) {
        size_t n = (size_t)VS_MIN((uint64_t)1 << 16, size - off);
        if ((r = arc_pread(a, s, buf, n, off, e)) == 0)
            XXH3_128bits_update(st, buf, n);
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    XXH3_freeState(st);
    free(buf);
    return r;
}

/* A foreign VM's captured disks (revision 9), as the VM config reader finds them. */
static void check_config_disks(const char *file, const char *cfg, json_t *want)
{
    if (!want)
        return;
    struct vm_config c;
    vs_err e = { 0 };
    if (vm_config_from_json(cfg, strlen(cfg), &c, &e) < 0)
        fail_msg("%s: VM config: %s", file, e.msg);
    assert_true(c.foreign);
    assert_int_equal(c.n_disks, json_array_size(want));
    json_t *w;
    size_t i;
    json_array_foreach(want, i, w) {
        const struct vm_disk *d = &c.disks[i];
        const char *drive = json_string_value(json_object_get(w, "drive"));
        assert_string_equal(d->name, json_string_value(json_object_get(w, "name")));
        assert_string_equal(d->stream, json_string_value(json_object_get(w, "stream")));
        assert_string_equal(d->node, json_string_value(json_object_get(w, "node")));
        if (drive)
            assert_string_equal(d->drive, drive);
        else
            assert_null(d->drive);
    }
    vm_config_free(&c);
}

static void check_good(json_t *g)
{
    const char *file = json_string_value(json_object_get(g, "file"));
    VS_AUTOFREE char *p = gpath(file);
    /* A hint that is a store location (revision 10) is not followed here: the parent is named, a local copy. */
    const char *hint = json_string_value(json_object_get(g, "parent-hint"));
    VS_AUTOFREE char *pp = hint ? gpath(json_string_value(json_object_get(g, "parent"))) : NULL;
    struct arc_open_opts oo = { .parent_path = pp };
    struct arc *a;
    vs_err e = { 0 };
    bool sealed = json_is_string(json_object_get(g, "key"));
    if (sealed) {   /* without its key: refused, naming the key's id */
        assert_int_equal(arc_open(p, NULL, &a, &e), -ENOKEY);
        assert_non_null(strstr(e.msg, golden_key.id));
    }
    oo.key = &golden_key;
    if (arc_open(p, &oo, &a, &e) < 0)
        fail_msg("%s: %s", file, e.msg);
    struct arc_info in;
    arc_get_info(a, &in);
    if (hint) {
        assert_string_equal(in.parent_hint, hint);
        /* followed, the hint goes to the store (which, without credentials, is not even asked) */
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        unsetenv("AWS_PROFILE");
        setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/vmsnap-golden-credentials", 1);
        struct arc *b;
        vs_err e2 = { 0 };
        assert_int_equal(arc_open(p, NULL, &b, &e2), -ENOKEY);
        if (!strstr(e2.msg, hint))
            fail_msg("%s: the parent should be looked for at %s: %s", file, hint, e2.msg);
    }
    assert_int_equal(in.version, 1);
    assert_int_equal(in.encrypted, sealed);
    assert_int_equal(in.incompat, json_integer_value(json_object_get(g, "incompat")));
    assert_int_equal(in.has_parent, json_is_string(json_object_get(g, "parent")));
    json_t *streams = json_object_get(g, "streams"), *s;
    size_t i;
    /* The manifest lists every stream but the writer's own metadata. */
    assert_int_equal(arc_stream_count(a), json_array_size(streams) + 1);
    assert_int_not_equal(arc_find_stream(a, ARC_KIND_METADATA, NULL), ARC_STREAM_NONE);
    json_array_foreach(streams, i, s) {
        const char *name = json_string_value(json_object_get(s, "name"));
        int k = arc_find_stream(a, ARC_KIND_OTHER, name);
        struct arc_stream_info si;
        if (k < 0 || arc_stream_get(a, (unsigned)k, &si) < 0)
            fail_msg("%s: no stream '%s'", file, name);
        assert_string_equal(arc_kind_name(si.kind), json_string_value(json_object_get(s, "kind")));
        assert_int_equal(si.size, json_integer_value(json_object_get(s, "size")));
        char h[33];
        if (stream_hash(a, (unsigned)k, si.size, h, &e) < 0)
            fail_msg("%s: stream '%s': %s", file, name, e.msg);
        if (strcmp(h, json_string_value(json_object_get(s, "xxh3-128"))))
            fail_msg("%s: stream '%s' reads back different bytes (XXH3-128 %s)", file, name, h);
    }
    assert_int_equal(arc_verify(a, NULL, &e), 0);
    VS_AUTOFREE char *cfg = NULL;
    if (arc_read_config(a, &cfg, NULL, &e) < 0)
        fail_msg("%s: config: %s", file, e.msg);
    check_config_disks(file, cfg, json_object_get(g, "config-disks"));
    arc_close(a);
}

static void test_good(void **state)
{
    (void)state;
    json_t *g;
    size_t i, revs = 0;
    json_array_foreach(json_object_get(manifest, "archives"), i, g) {
        check_good(g);
        revs |= 1u << json_integer_value(json_object_get(g, "revision"));
    }
    assert_int_equal(revs, 0xae7e);   /* revisions 1..6, 9..11, 13 and 15 of docs/FORMAT.md */
}

/* Each damaged archive fails where golden.json says, with its errno and a message naming the damage. */
static void check_damaged(json_t *d)
{
    const char *file = json_string_value(json_object_get(d, "file"));
    const char *step = json_string_value(json_object_get(d, "step"));
    const char *want = json_string_value(json_object_get(d, "message"));
    int err = errno_of(json_string_value(json_object_get(d, "error")));
    VS_AUTOFREE char *p = gpath(file);
    struct arc *a = NULL;
    vs_err e = { 0 };
    struct arc_open_opts oo = { .key = &golden_key };
    int r = arc_open(p, &oo, &a, &e);
    if (strcmp(step, "open")) {
        if (r < 0)
            fail_msg("%s: should open (damage is found at %s): %s", file, step, e.msg);
        if (!strcmp(step, "read")) {
            const char *name = json_string_value(json_object_get(d, "stream"));
            int s = arc_find_stream(a, ARC_KIND_OTHER, name);
            struct arc_stream_info si;
            assert_int_equal(arc_stream_get(a, (unsigned)s, &si), 0);
            char h[33];
            r = stream_hash(a, (unsigned)s, si.size, h, &e);
        } else {
            assert_string_equal(step, "config");
            VS_AUTOFREE char *cfg = NULL;
            r = arc_read_config(a, &cfg, NULL, &e);
        }
        assert_true(arc_verify(a, NULL, &(vs_err){ 0 }) > 0);   /* verify finds it too */
        arc_close(a);
    }
    if (r != -err || !strstr(e.msg, want) || !strstr(e.msg, file))
        fail_msg("%s: got %d '%s', expected -%s with '%s' naming the file", file, r, e.msg,
                 json_string_value(json_object_get(d, "error")), want);
}

static void test_damaged(void **state)
{
    (void)state;
    json_t *d;
    size_t i;
    json_array_foreach(json_object_get(manifest, "damaged"), i, d)
        check_damaged(d);
    assert_true(i >= 10);
}

/* Every archive in the directory is in the manifest (none is silently skipped), and each stays small. */
static void test_listed(void **state)
{
    (void)state;
    DIR *dir = opendir(GOLDEN_DIR);
    assert_non_null(dir);
    struct dirent *de;
    unsigned n = 0;
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (l < 7 || strcmp(de->d_name + l - 7, ".vmsnap"))
            continue;
        bool found = false;
        json_t *g;
        size_t i;
        json_array_foreach(json_object_get(manifest, "archives"), i, g)
            found |= !strcmp(json_string_value(json_object_get(g, "file")), de->d_name);
        json_array_foreach(json_object_get(manifest, "damaged"), i, g)
            found |= !strcmp(json_string_value(json_object_get(g, "file")), de->d_name);
        if (!found)
            fail_msg("%s is not listed in golden.json", de->d_name);
        VS_AUTOFREE char *p = gpath(de->d_name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        assert_true(ftell(f) < 16 * 1024);
        fclose(f);
        n++;
    }
    closedir(dir);
    assert_int_equal(n, json_array_size(json_object_get(manifest, "archives")) +
                            json_array_size(json_object_get(manifest, "damaged")));
}

int main(void)
{
    json_error_t je;
    VS_AUTOFREE char *mp = gpath("golden.json");
    manifest = json_load_file(mp, 0, &je);
    if (!manifest) {
        fprintf(stderr, "%s: %s\n", mp, je.text);
        return 1;
    }
    /* A private copy of the committed key file: git keeps no modes, and key files readable by others are refused. */
    VS_AUTOFREE char *kp = gpath("r11-test.key");
    char tmp[] = "/tmp/vmsnap-golden-key-XXXXXX";
    int fd = mkstemp(tmp);
    FILE *in = fopen(kp, "r");
    char line[256];
    size_t n = in ? fread(line, 1, sizeof line, in) : 0;
    if (in)
        fclose(in);
    vs_err e = { 0 };
    int kr = fd >= 0 && vs_write_full(fd, line, n) == 0 ? cr_key_load(tmp, &golden_key, &e) : -EIO;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    if (kr < 0 || cr_init(&e) < 0) {
        fprintf(stderr, "%s: %s\n", kp, e.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good), cmocka_unit_test(test_damaged), cmocka_unit_test(test_listed),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(manifest);
    return r;
}
