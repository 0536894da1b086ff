/* Unit tests: key files -- generation, exclusive creation, modes, strict parsing, ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char dir[] = "/tmp/vmsnap-crypt-XXXXXX";

static char *path(const char *name)
{
    return vs_xasprintf("%s/%s", dir, name);
}

static void put(const char *p, const char *text, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(vs_write_full(fd, text, strlen(text)), 0);
    fchmod(fd, mode);
    close(fd);
}

static void test_key_roundtrip(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = path("k1");
    vs_err e = { 0 };
    struct cr_key k = { 0 }, l = { 0 };
    assert_int_equal(cr_key_generate(p, &k, &e), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cr_key_load(p, &l, &e), 0);
    assert_memory_equal(k.k, l.k, sizeof k.k);
    assert_string_equal(k.id, l.id);
    assert_int_equal(strlen(k.id), CR_ID_LEN);
    /* never overwritten */
    assert_int_equal(cr_key_generate(p, &l, &e), -EEXIST);
    assert_non_null(strstr(e.msg, "refusing to overwrite"));
    assert_int_equal(cr_key_load(p, &l, &e), 0);
    assert_memory_equal(k.k, l.k, sizeof k.k);
    /* two keys, two ids */
    VS_AUTOFREE char *p2 = path("k2");
    struct cr_key m = { 0 };
    assert_int_equal(cr_key_generate(p2, &m, &e), 0);
    assert_string_not_equal(k.id, m.id);
    /* a secret others may read is refused */
    chmod(p, 0644);
    assert_int_equal(cr_key_load(p, &l, &e), -EPERM);
    assert_non_null(strstr(e.msg, "chmod 600"));
}

static void test_signkey_roundtrip(void **state)
{
    (void)state;
    VS_AUTOFREE char *p = path("s1");
    VS_AUTOFREE char *pub = path("s1.pub");
    vs_err e = { 0 };
    struct cr_signkey k = { 0 }, l = { 0 };
    struct cr_pubkey pk = { 0 }, sk_as_pub = { 0 };
    assert_int_equal(cr_signkey_generate(p, &k, &e), 0);
    assert_int_equal(cr_signkey_load(p, &l, &e), 0);
    assert_memory_equal(k.sk, l.sk, sizeof k.sk);
    assert_memory_equal(k.pk, l.pk, sizeof k.pk);
    assert_int_equal(cr_pubkey_load(pub, &pk, &e), 0);
    assert_memory_equal(pk.pk, k.pk, sizeof k.pk);
    assert_string_equal(pk.id, k.id);
    assert_int_equal(cr_pubkey_load(p, &sk_as_pub, &e), 0);   /* the secret names its public half */
    assert_string_equal(sk_as_pub.id, k.id);
    cr_pubkey_clear(&pk);
    cr_pubkey_clear(&sk_as_pub);
    /* the kinds are not interchangeable */
    struct cr_key ak;
    assert_int_equal(cr_key_load(p, &ak, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "holds a vmsnap-sign-secret-1, expected a vmsnap-key-1"));
    /* an existing public half refuses the whole pair, leaving no secret behind */
    VS_AUTOFREE char *q = path("s2");
    VS_AUTOFREE char *qpub = path("s2.pub");
    put(qpub, "x\n", 0644);
    assert_int_equal(cr_signkey_generate(q, &k, &e), -EEXIST);
    assert_int_equal(access(q, F_OK), -1);
}

static void test_parse_strict(void **state)
{
    (void)state;
    uint8_t out[CR_KEY_BYTES];
    vs_err e = { 0 };
    static const char good[] = "vmsnap-key-1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    assert_int_equal(cr_keyfile_parse(good, strlen(good), CR_KIND_KEY, out, sizeof out, "t", &e), 0);
    assert_int_equal(out[31], 31);
    assert_int_equal(cr_keyfile_parse(good, strlen(good) - 1, CR_KIND_KEY, out, sizeof out, "t", &e), 0);
    static const char *const bad[] = {
        "",
        "vmsnap-key-1\n",
        "vmsnap-key-1 \n",
        "vmsnap-key-1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n",            /* short */
        "vmsnap-key-1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==\n",    /* long */
        "vmsnap-key-1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",      /* two lines */
        "vmsnap-key-1  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",       /* two spaces */
        "vmsnap-key-2 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "vmsnap-key-1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=junk\n",
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
        e.msg[0] = 0;
        assert_int_equal(cr_keyfile_parse(bad[i], strlen(bad[i]), CR_KIND_KEY, out, sizeof out, "t", &e), -EINVAL);
        assert_non_null(strstr(e.msg, "key file t"));
    }
}

static void test_missing(void **state)
{
    (void)state;
    vs_err e = { 0 };
    struct cr_key k;
    VS_AUTOFREE char *p = path("nope");
    assert_int_equal(cr_key_load(p, &k, &e), -ENOENT);
    assert_non_null(strstr(e.msg, p));
}

/* Whether the CPU has a flag (/proc/cpuinfo's first "flags" line). */
static bool cpu_flag(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    bool has = false;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            for (char *t = strtok(line, " \t\n"); t && !has; t = strtok(NULL, " \t\n"))
                has = !strcmp(t, flag);
            break;
        }
    if (f)
        fclose(f);
    return has;
}

/* Run first, before anything initialised libsodium: the default cipher is still the CPU's fastest. */
static void test_cipher_default(void **state)
{
    (void)state;
    bool aesni = cpu_flag("aes") && cpu_flag("pclmulqdq");
    assert_int_equal(cr_cipher_default(), aesni ? CR_CIPHER_AES256GCM : CR_CIPHER_XCHACHA20POLY1305);
    enum cr_cipher c;
    vs_err e = { 0 };
    assert_int_equal(cr_cipher_parse("xchacha20-poly1305", &c, &e), 0);
    assert_int_equal(c, CR_CIPHER_XCHACHA20POLY1305);
    assert_int_equal(cr_cipher_parse("aes-256-gcm", &c, &e), 0);
    assert_string_equal(cr_cipher_name(c), "aes-256-gcm");
    assert_int_equal(cr_cipher_parse("aes", &c, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "unknown cipher 'aes'"));
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cipher_default),
        cmocka_unit_test(test_key_roundtrip),
        cmocka_unit_test(test_signkey_roundtrip),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_missing),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    VS_AUTOFREE char *cmd = vs_xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        r = 1;
    return r;
}
