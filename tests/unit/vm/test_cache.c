/* Unit tests for the private cache of facts that cost a QEMU start (the KVM verdict, machine lists): entries
 * keyed by the binary, written by rename, and only ever in a directory that no other user can prepare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "vm/vm.h"

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.' || (de->d_name[1] && strcmp(de->d_name, ".."));
    if (d)
        closedir(d);
    return n;
}

static void test_cache(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/vmsnap-cache-test-XXXXXX";
    const char *root = mkdtemp(tmpl);
    assert_non_null(root);
    VS_AUTOFREE char *dir = vm_cache_dir(root);
    assert_non_null(dir);
    json_t *key = json_pack("{s:s,s:i}", "binary", "/usr/bin/q", "size", 1), *other = json_pack("{s:s}", "x", "y");
    json_t *val = json_pack("{s:s}", "version", "7.2.22");
    assert_null(vm_cache_get(dir, "m.json", key));
    vm_cache_put(dir, "m.json", key, val);
    vm_cache_put(dir, "m.json", key, val);   /* replaced, never a second file or a temp left behind */
    assert_int_equal(entries(dir), 1);
    VS_AUTOFREE char *file = vs_xasprintf("%s/m.json", dir);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    json_t *got = vm_cache_get(dir, "m.json", key);
    assert_true(json_equal(got, val));
    json_decref(got);
    assert_null(vm_cache_get(dir, "m.json", other));   /* another binary, size or mtime: probe again */
    /* Not private: not used. A symlink to a private directory: not used either. */
    VS_AUTOFREE char *link = vs_xasprintf("%s.link", root);
    assert_int_equal(symlink(root, link), 0);
    VS_AUTOFREE char *via_link = vm_cache_dir(link);
    assert_null(via_link);
    unlink(link);
    assert_int_equal(chmod(root, 0755), 0);
    VS_AUTOFREE char *open_dir = vm_cache_dir(root);
    assert_null(open_dir);
    /* A symlinked entry is not read. */
    assert_int_equal(chmod(root, 0700), 0);
    VS_AUTOFREE char *sl = vs_xasprintf("%s/s.json", dir);
    assert_int_equal(symlink(file, sl), 0);
    assert_null(vm_cache_get(dir, "s.json", key));
    unlink(sl);
    /* The default directory: a private one below $XDG_CACHE_HOME/vmsnap, which others must not be able to write;
     * no shared fallback without HOME. */
    setenv("XDG_CACHE_HOME", root, 1);
    VS_AUTOFREE char *def = vm_cache_dir(NULL);
    VS_AUTOFREE char *want = vs_xasprintf("%s/vmsnap/probes", root);
    assert_non_null(def);
    assert_string_equal(def, want);
    assert_int_equal(stat(def, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    VS_AUTOFREE char *top = vs_xasprintf("%s/vmsnap", root);
    assert_int_equal(chmod(top, 0777), 0);
    VS_AUTOFREE char *shared = vm_cache_dir(NULL);
    assert_null(shared);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    VS_AUTOFREE char *none = vm_cache_dir(NULL);
    assert_null(none);
    rmdir(def);
    rmdir(top);
    unlink(file);
    rmdir(dir);
    json_decref(key);
    json_decref(other);
    json_decref(val);
}

/* The KVM verdict is cached the same way: never in a directory others can read or write. (/bin/false stands in
 * for a QEMU whose KVM probe fails.) */
static void test_accel_cache_private(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/vmsnap-cache-test-XXXXXX";
    const char *root = mkdtemp(tmpl);
    assert_non_null(root);
    assert_int_equal(chmod(root, 0755), 0);
    char out[8];
    assert_int_equal(vm_accel_resolve("auto", "/bin/false", root, out, NULL), 0);
    assert_string_equal(out, "tcg");
    assert_int_equal(entries(root), 0);
    assert_int_equal(chmod(root, 0700), 0);
    assert_int_equal(vm_accel_resolve("auto", "/bin/false", root, out, NULL), 0);
    assert_int_equal(entries(root), access("/dev/kvm", R_OK | W_OK) == 0 ? 1 : 0);
    DIR *d = opendir(root);
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') {
            VS_AUTOFREE char *f = vs_xasprintf("%s/%s", root, de->d_name);
            unlink(f);
        }
    closedir(d);
    rmdir(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_accel_cache_private),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
