/* Unit tests for src/util. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(vs_parse_size("4096", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(vs_parse_size("64K", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(vs_parse_size("64KiB", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(vs_parse_size("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(vs_parse_size("1T", &v), 0);
    assert_int_equal(v, 1ull << 40);
    assert_int_equal(vs_parse_size("", &v), -EINVAL);
    assert_int_equal(vs_parse_size("-1", &v), -EINVAL);
    assert_int_equal(vs_parse_size(" -1", &v), -EINVAL);   /* strtoull skips the blank and wraps -1 */
    assert_int_equal(vs_parse_size("\t-1M", &v), -EINVAL);
    assert_int_equal(vs_parse_size("+5", &v), -EINVAL);
    assert_int_equal(vs_parse_size(" 5", &v), -EINVAL);
    assert_int_equal(vs_parse_size("12Q", &v), -EINVAL);
    assert_int_equal(vs_parse_size("99999999999999999999", &v), -EINVAL);
    assert_int_equal(vs_parse_size("99999999999T", &v), -ERANGE);
}

static void test_mkstemp_mode(void **state)
{
    (void)state;
    char dir[] = "/tmp/vs-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    mode_t old = umask(027);
    char *t = vs_xasprintf("%s/.f.XXXXXX", dir);
    int fd = vs_mkstemp_mode(t, 0666);
    umask(old);
    assert_true(fd >= 0);
    assert_int_equal(strstr(t, "XXXXXX"), NULL);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);   /* the umask applied, not mkostemp's fixed 0600 */
    close(fd);
    unlink(t);
    free(t);
    char bad[] = "/tmp/no-x";
    assert_int_equal(vs_mkstemp_mode(bad, 0600), -1);
    rmdir(dir);
}

static void test_uuid(void **state)
{
    (void)state;
    uint8_t u[16], back[16];
    char s[37];
    assert_int_equal(vs_uuid_generate(u), 0);
    assert_int_equal(u[6] >> 4, 4);
    vs_uuid_format(u, s);
    assert_int_equal(strlen(s), 36);
    assert_int_equal(vs_uuid_parse(s, back), 0);
    assert_memory_equal(u, back, 16);
    assert_int_equal(vs_uuid_parse("not-a-uuid", back), -EINVAL);
    assert_int_equal(vs_uuid_parse("0123456789abcdef0123456789abcdef00", back), -EINVAL);
}

static void test_err(void **state)
{
    (void)state;
    vs_err e = { 0 };
    assert_int_equal(vs_err_set(&e, ENOENT, "opening '%s'", "x"), -ENOENT);
    assert_string_equal(e.msg, "opening 'x'");
    assert_int_equal(vs_err_sys(&e, EACCES, "opening '%s'", "y"), -EACCES);
    assert_string_equal(e.msg, "opening 'y': Permission denied");
    assert_int_equal(vs_err_prefix(&e, "archive"), -EACCES);
    assert_string_equal(e.msg, "archive: opening 'y': Permission denied");
    assert_int_equal(vs_err_set(NULL, 0, "x"), -EIO);
}

static void test_endian(void **state)
{
    (void)state;
    uint8_t b[8];
    vs_put_le64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 8);
    assert_int_equal(vs_get_le64(b), 0x0102030405060708ull);
    vs_put_be32(b, 0xdeadbeef);
    assert_int_equal(b[0], 0xde);
    assert_int_equal(vs_get_be32(b), 0xdeadbeef);
    vs_put_le16(b, 0xabcd);
    assert_int_equal(vs_get_le16(b), 0xabcd);
}

static void test_text(void **state)
{
    (void)state;
    static const char *const good[] = { "", "disk0", "d\xc3\xa9j\xc3\xa0", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "\xc2\xa0" };
    static const char *const bad[] = { "\x1b[2J", "a\nb", "\x7f", "\xc2\x9b", "\xc0\xaf", "\xe0\x80\xaf",
                                       "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\xc3", "\xe2\x82",
                                       "\xf8\x88\x80\x80\x80" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(good); i++)
        assert_true(vs_text_ok(good[i], strlen(good[i])));
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++)
        if (vs_text_ok(bad[i], strlen(bad[i])))
            fail_msg("bad text %zu accepted", i);
    assert_false(vs_text_ok("a\0b", 3));
    VS_AUTOFREE char *x = vs_text_escape("ok\x1b[1m\xff\xc3\xa9");
    assert_string_equal(x, "ok\\x1b[1m\\xff\xc3\xa9");
    VS_AUTOFREE char *y = vs_text_escape(x);   /* escaping twice changes nothing */
    assert_string_equal(y, x);
}

static void test_dir_owned(void **state)
{
    (void)state;
    char base[] = "/tmp/vs-dir-XXXXXX";
    assert_non_null(mkdtemp(base));
    VS_AUTOFREE char *d = vs_xasprintf("%s/d", base), *l = vs_xasprintf("%s/l", base);
    vs_err e = { 0 };
    assert_int_equal(vs_dir_owned(d, false, 077, &e), -ENOENT);
    assert_int_equal(vs_dir_owned(d, true, 077, &e), 0);           /* made 0700 */
    assert_int_equal(chmod(d, 0755), 0);
    assert_int_equal(vs_dir_owned(d, false, 022, &e), 0);
    assert_int_equal(vs_dir_owned(d, false, 077, &e), -EPERM);     /* others may read it */
    assert_non_null(strstr(e.msg, d));
    assert_int_equal(symlink(d, l), 0);
    assert_int_equal(vs_dir_owned(l, true, 0, &e), -EPERM);        /* a symlink is never ours */
    unlink(l);
    rmdir(d);
    rmdir(base);
}

/* vs_recv_line: lines split and joined across reads, an unterminated last line at EOF, the limit, the watch fd. */
static void test_recv_line(void **state)
{
    (void)state;
    int sv[2], pipefd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(pipefd), 0);
    char buf[16 + 1];
    size_t have = 0, used = 0;
    vs_err e = { 0 };
    assert_int_equal(vs_write_full(sv[0], "ab\ncd", 5), 0);
    assert_int_equal(vs_recv_line(sv[1], pipefd[0], buf, 16, &have, &used, 5, &e), 2);
    assert_string_equal(buf, "ab");
    have -= used;
    memmove(buf, buf + used, have);
    /* Nothing more yet: the watch fd interrupts the wait. */
    assert_int_equal(write(pipefd[1], "x", 1), 1);
    assert_int_equal(vs_recv_line(sv[1], pipefd[0], buf, 16, &have, &used, 5, &e), -EINTR);
    assert_int_equal(vs_recv_line(sv[1], -1, buf, 16, &have, &used, 0.05, &e), -ETIMEDOUT);
    assert_non_null(strstr(e.msg, "no complete line within 0.05 s"));
    assert_int_equal(vs_write_full(sv[0], "e", 1), 0);
    shutdown(sv[0], SHUT_WR);
    assert_int_equal(vs_recv_line(sv[1], -1, buf, 16, &have, &used, 5, &e), 3);   /* "cde" ended by EOF */
    assert_string_equal(buf, "cde");
    have = 0;
    assert_int_equal(vs_recv_line(sv[1], -1, buf, 16, &have, &used, 5, &e), -ECONNRESET);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vs_write_full(sv[0], "0123456789abcdefgh\n", 19), 0);
    have = 0;
    assert_int_equal(vs_recv_line(sv[1], -1, buf, 16, &have, &used, 5, &e), -EMSGSIZE);
    assert_non_null(strstr(e.msg, "longer than 16 bytes"));
    close(sv[0]);
    close(sv[1]);
    close(pipefd[0]);
    close(pipefd[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_mkstemp_mode),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_endian),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_dir_owned),
        cmocka_unit_test(test_recv_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
