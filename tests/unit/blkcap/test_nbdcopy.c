/* Unit tests for bc_nbd_copy against a real NBD server (qemu-nbd, spawned without a shell): holes are not read,
 * a dirty bitmap limits the read to what changed and the rest stays the parent's, the archive reads back exactly
 * like the image, over a Unix socket or TCP; errors name the socket, the export and the bitmap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "blkcap/blkcap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

extern char **environ;
static char dir[] = "/tmp/vmsnap-blkcap-XXXXXX";
#define MiB (1024 * 1024)
#define SIZE (8 * MiB)

static char *tpath(const char *name) { return vs_xasprintf("%s/%s", dir, name); }

static int run(const char *const *argv, pid_t *bg)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int st = -1;
    if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (bg) {
        *bg = pid;
        return pid > 0 ? 0 : -1;
    }
    if (pid > 0)
        waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* qemu-nbd serving img on sock as export "disk" (and bitmap, if any); waits until it accepts. */
static pid_t serve(const char *img, const char *fmt, const char *bitmap, const char *sock)
{
    const char *argv[] = { "qemu-nbd", "-k", sock, "-f", fmt, "-r", "-x", "disk", "--persistent", img,
                           bitmap ? "-B" : NULL, bitmap, NULL };
    pid_t pid;
    assert_int_equal(run(argv, &pid), 0);
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return pid;
        usleep(20000);
    }
    fail_msg("qemu-nbd did not start on %s", sock);
    return -1;
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static void fill(uint8_t *img, uint64_t off, uint64_t len, uint8_t v) { memset(img + off, v, len); }

/* The archive's disk stream reads exactly as want. */
static void check_archive(const char *path, const uint8_t *want)
{
    vs_err e = { 0 };
    struct arc *a = NULL;
    assert_int_equal(arc_open(path, NULL, &a, &e), 0);
    int s = arc_find_stream(a, ARC_KIND_DISK, "vda");
    assert_true(s >= 0);
    uint8_t *got = vs_xmalloc(SIZE);
    assert_int_equal(arc_pread(a, (unsigned)s, got, SIZE, 0, &e), 0);
    assert_memory_equal(got, want, SIZE);
    free(got);
    arc_close(a);
}

static int copy_to(const char *out, const char *parent, const char *sock, const struct bc_copy_opts *o,
                   struct bc_copy_stats *st, vs_err *e)
{
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    wo.threads = 1;
    wo.parent_path = parent;
    wo.thin = parent != NULL;
    struct arc_writer *w = NULL;
    int r = arc_writer_create(out, &wo, &w, e);
    if (r < 0)
        return r;
    if ((r = bc_nbd_copy(sock, "disk", w, "vda", o, st, e)) < 0) {
        arc_writer_abort(w);
        return r;
    }
    return arc_writer_finish(w, e);
}

static void test_raw_holes(void **state)
{
    (void)state;
    VS_AUTOFREE char *img = tpath("raw.img");
    VS_AUTOFREE char *sock = tpath("raw.sock");
    VS_AUTOFREE char *out = tpath("raw.vmsnap");
    uint8_t *want = vs_xcalloc(1, SIZE);
    fill(want, 0, MiB, 0x11);
    fill(want, 5 * MiB, MiB / 2, 0x22);
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, SIZE), 0);
    assert_int_equal(vs_pwrite_full(fd, want, MiB, 0), 0);
    assert_int_equal(vs_pwrite_full(fd, want + 5 * MiB, MiB / 2, 5 * MiB), 0);
    close(fd);
    pid_t pid = serve(img, "raw", NULL, sock);
    vs_err e = { 0 };
    struct bc_copy_stats st;
    struct bc_copy_opts o = { .in_flight = 3, .request_bytes = 256 * 1024 };
    int r = copy_to(out, NULL, sock, &o, &st, &e);
    stop(pid);
    assert_int_equal(r, 0);
    assert_int_equal(st.size, SIZE);
    assert_true(st.data_bytes >= MiB + MiB / 2);
    assert_true(st.data_bytes < SIZE / 2);   /* the holes were not read */
    assert_int_equal(st.data_bytes + st.zero_bytes, SIZE);
    check_archive(out, want);
    free(want);
}

static void test_bitmap_thin(void **state)
{
    (void)state;
    VS_AUTOFREE char *img = tpath("d.qcow2");
    VS_AUTOFREE char *sock = tpath("q.sock");
    VS_AUTOFREE char *full = tpath("full.vmsnap");
    VS_AUTOFREE char *thin = tpath("thin.vmsnap");
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", img, "8M", NULL };
    assert_int_equal(run(create, NULL), 0);
    const char *w1[] = { "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 8M", img, NULL };
    assert_int_equal(run(w1, NULL), 0);
    uint8_t *want = vs_xmalloc(SIZE);
    fill(want, 0, SIZE, 0x11);
    vs_err e = { 0 };
    pid_t pid = serve(img, "qcow2", NULL, sock);
    int r = copy_to(full, NULL, sock, NULL, NULL, &e);
    stop(pid);
    assert_int_equal(r, 0);
    check_archive(full, want);

    const char *add[] = { "qemu-img", "bitmap", "--add", img, "b0", NULL };
    assert_int_equal(run(add, NULL), 0);
    const char *w2[] = { "qemu-io", "-f", "qcow2", "-c", "write -P 0x55 2M 64k", "-c", "write -z 6M 128k", img,
                         NULL };
    assert_int_equal(run(w2, NULL), 0);
    fill(want, 2 * MiB, 64 * 1024, 0x55);
    fill(want, 6 * MiB, 128 * 1024, 0);
    pid = serve(img, "qcow2", "b0", sock);
    struct bc_copy_stats st;
    struct bc_copy_opts o = { .bitmap = "b0" };
    r = copy_to(thin, full, sock, &o, &st, &e);
    /* the same server without the bitmap: a clear error naming it */
    struct bc_copy_opts o2 = { .bitmap = "nope" };
    VS_AUTOFREE char *bad = tpath("bad.vmsnap");
    int r2 = copy_to(bad, full, sock, &o2, NULL, &e);
    stop(pid);
    assert_int_equal(r, 0);
    assert_int_equal(st.data_bytes, 192 * 1024);   /* only what the bitmap marks */
    assert_int_equal(st.skipped_bytes, SIZE - 192 * 1024);
    check_archive(thin, want);
    assert_int_equal(r2, -ENOENT);
    assert_non_null(strstr(e.msg, "dirty bitmap 'nope'"));
    assert_int_equal(access(bad, F_OK), -1);
    free(want);
}

/* A TCP port nobody listens on now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* tcp:HOST:PORT: the same copy over TCP; a port nobody serves is named in the error. */
static void test_tcp(void **state)
{
    (void)state;
    VS_AUTOFREE char *img = tpath("t.img");
    VS_AUTOFREE char *out = tpath("t.vmsnap");
    uint8_t *want = vs_xcalloc(1, SIZE);
    fill(want, 3 * MiB, MiB, 0x44);
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, SIZE), 0);
    assert_int_equal(vs_pwrite_full(fd, want + 3 * MiB, MiB, 3 * MiB), 0);
    close(fd);
    char port[16], addr[64];
    snprintf(port, sizeof port, "%d", free_port());
    snprintf(addr, sizeof addr, "tcp:127.0.0.1:%s", port);
    const char *argv[] = { "qemu-nbd", "-b", "127.0.0.1", "-p", port, "-f", "raw", "-r", "-x", "disk",
                           "--persistent", img, NULL };
    pid_t pid;
    assert_int_equal(run(argv, &pid), 0);
    vs_err e = { 0 };
    int r = -1;
    for (int i = 0; i < 200 && r < 0; i++) {   /* until qemu-nbd listens */
        if ((r = copy_to(out, NULL, addr, NULL, NULL, &e)) < 0)
            usleep(20000);
    }
    stop(pid);
    assert_int_equal(r, 0);
    check_archive(out, want);
    free(want);
    assert_true(copy_to(out, NULL, addr, NULL, NULL, &e) < 0);
    assert_non_null(strstr(e.msg, addr));
}

static bool always(void *opaque)
{
    (void)opaque;
    return true;
}

static void test_errors(void **state)
{
    (void)state;
    VS_AUTOFREE char *sock = tpath("none.sock");
    VS_AUTOFREE char *out = tpath("none.vmsnap");
    vs_err e = { 0 };
    assert_true(copy_to(out, NULL, sock, NULL, NULL, &e) < 0);
    assert_non_null(strstr(e.msg, sock));
    assert_non_null(strstr(e.msg, "'disk'"));

    VS_AUTOFREE char *img = tpath("c.img");
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t *buf = vs_xmalloc(SIZE);
    memset(buf, 0x33, SIZE);
    assert_int_equal(vs_pwrite_full(fd, buf, SIZE, 0), 0);
    close(fd);
    free(buf);
    VS_AUTOFREE char *csock = tpath("c.sock");
    pid_t pid = serve(img, "raw", NULL, csock);
    struct bc_copy_opts o = { .cancelled = always };
    int r = copy_to(out, NULL, csock, &o, NULL, &e);
    stop(pid);
    assert_int_equal(r, -ECANCELED);
    assert_non_null(strstr(e.msg, "cancelled"));
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_holes),
        cmocka_unit_test(test_bitmap_thin),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tcp),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    const char *rm[] = { "rm", "-rf", dir, NULL };
    run(rm, NULL);
    return r;
}
