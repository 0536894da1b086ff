/* Unit test of pagefs demand reads: a page fault brings in its whole 64 KiB grain, so the guest's later faults
 * on the other pages of that grain, in any order, are served from the page cache without asking the source (an
 * encrypted archive would otherwise decode and authenticate the block again for each page). Needs FUSE (root or
 * fusermount3): skipped where it cannot mount. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pagefs/pagefs.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (1u << 20)
#define GRAIN (64u << 10)

struct src { uint8_t *data; atomic_uint calls; };

static int src_read(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    (void)e;
    struct src *s = opaque;
    atomic_fetch_add(&s->calls, 1);
    memcpy(buf, s->data + off, len);
    return 0;
}

static void test_grain(void **state)
{
    (void)state;
    if (!pf_available())
        skip();
    char dir[] = "/tmp/vmsnap-pagefs-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct src s = { .data = vs_xmalloc(SIZE) };
    for (size_t i = 0; i < SIZE; i++)
        s.data[i] = (uint8_t)(i * 2654435761u >> 13);
    struct pf_file f = { .name = "mem", .size = SIZE, .read = src_read, .opaque = &s };
    struct pf_mount *m = NULL;
    vs_err e = { 0 };
    if (pf_mount(dir, &f, 1, &m, &e) < 0) {
        rmdir(dir);
        free(s.data);
        print_message("cannot mount FUSE here (%s): skipped\n", e.msg);
        skip();
    }
    VS_AUTOFREE char *path = vs_xasprintf("%s/mem", dir);
    int fd = open(path, O_RDONLY);
    uint8_t *p = fd < 0 ? MAP_FAILED : mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
    /* Checks are recorded and asserted after the unmount: a failed assertion must not leave the mount behind. */
    bool mapped = p != MAP_FAILED, same = mapped, resident = false;
    unsigned grain_calls = 0;
    if (mapped && madvise(p, SIZE, MADV_RANDOM) == 0) {   /* no read-around: one fault, one page asked */
        static const unsigned order[] = { 9, 2, 15, 0, 7, 12, 4, 1, 14, 3, 11, 6, 13, 5, 10, 8 };
        same &= !memcmp(p + 3 * GRAIN + 9 * 4096, s.data + 3 * GRAIN + 9 * 4096, 4096);
        /* The rest of the grain is stored after the reply to that first fault: wait until the kernel has it. */
        unsigned char vec[16];
        for (double t0 = vs_now_s(); !resident && vs_now_s() - t0 < 10;) {
            resident = mincore(p + 3 * GRAIN, GRAIN, vec) == 0;
            for (unsigned k = 0; k < 16; k++)
                resident &= vec[k] & 1;
            if (!resident)
                usleep(1000);
        }
        for (unsigned k = 1; k < 16; k++) {   /* the other pages of grain 3, scattered */
            size_t off = 3 * GRAIN + order[k] * 4096u;
            same &= !memcmp(p + off, s.data + off, 4096);
        }
        grain_calls = atomic_load(&s.calls);
        same &= !memcmp(p, s.data, SIZE);   /* everything reads right */
    }
    if (mapped)
        munmap(p, SIZE);
    if (fd >= 0)
        close(fd);
    pf_unmount(m);
    rmdir(dir);
    free(s.data);
    print_message("source asked %u time(s) for one grain's 16 pages\n", grain_calls);
    assert_true(mapped);
    assert_true(same);
    assert_true(resident);
    assert_int_equal(grain_calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_grain) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
