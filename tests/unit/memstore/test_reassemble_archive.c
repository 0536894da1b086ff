/* An eager paged resume reassembles the stream from the archive. The device stream used to be copied whole into a
 * memfd first: a tiny archive claiming a huge (all-zero) device stream made that copy as large. It is now read
 * straight from the archive into the parser: under a small RLIMIT_FSIZE nothing fails on a file size, and the
 * parser's own refusal of the bytes is what is reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "archive/archive.h"
#include "memstore/memstore.h"

static void test_huge_device_stream(void **state)
{
    (void)state;
    char path[] = "/tmp/vmsnap-reasm-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    vs_err e = { 0 };
    struct arc_writer *w;
    assert_int_equal(arc_writer_create(path, NULL, &w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_OTHER, "ram/mem", 1 << 20, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_begin(w, ARC_KIND_OTHER, MST_DEVICE, 1ull << 30, &e), 0);
    assert_int_equal(arc_writer_end(w, &e), 0);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    struct arc *a;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    unlink(path);

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = { 16 << 20, 16 << 20 };
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int r = mst_reassemble(a, out, NULL, &e);
    close(out);
    arc_close(a);
    assert_true(r < 0);
    if (strstr(e.msg, "copying") || strstr(e.msg, "too large"))
        fail_msg("the device stream was copied: %s", e.msg);
    assert_non_null(strstr(e.msg, "device stream"));
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_huge_device_stream) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
