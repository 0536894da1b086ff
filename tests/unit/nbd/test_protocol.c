/* Unit tests for the NBD protocol side (handshake.c, request.c, transmit.c): a hand-written client drives
 * nbd_server_serve_fds() over a socketpair, byte by byte as proto.md describes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/nbd.h"
#include "nbd/proto.h"

#define DISK (1u << 20)

struct fx {
    char dir[64], img[96];
    struct nbd_overlay *o;
    struct nbd_server *srv;
    int c;  /* client end */
    pthread_t th;
    int srv_fd, srv_ret;
    vs_err srv_err;
};

static void *serve(void *arg)
{
    struct fx *f = arg;
    f->srv_ret = nbd_server_serve_fds(f->srv, f->srv_fd, f->srv_fd, &f->srv_err);
    close(f->srv_fd);
    return NULL;
}

/* A fixture with an empty image file of DISK bytes (fd returned, open). */
static struct fx *fx_new(int *fd)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vmsnap-test-proto.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->img, sizeof(f->img), "%s/img", f->dir);
    *fd = open(f->img, O_RDWR | O_CREAT, 0600);
    assert_int_equal(ftruncate(*fd, DISK), 0);
    return f;
}

/* Serve base b through a temporary overlay on a socketpair, in a thread. */
static int fx_start(void **state, struct fx *f, struct nbd_base *b, unsigned flags, const struct nbd_server_opts *so)
{
    assert_int_equal(nbd_overlay_open(NULL, b, NBD_OVL_TEMP | flags, &f->o, NULL), 0);
    assert_int_equal(nbd_server_new(f->o, so, &f->srv, NULL), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->c = sv[0];
    f->srv_fd = sv[1];
    pthread_create(&f->th, NULL, serve, f);
    *state = f;
    return 0;
}

static int setup_ro(void **state, unsigned flags)
{
    int fd;
    struct fx *f = fx_new(&fd);
    uint8_t *buf = malloc(DISK);
    for (size_t i = 0; i < DISK; i++)
        buf[i] = (uint8_t)(i * 3 + 1);
    assert_int_equal(vs_pwrite_full(fd, buf, DISK, 0), 0);
    free(buf);
    close(fd);
    struct nbd_base *b;
    assert_int_equal(nbd_base_open_raw(f->img, &b, NULL), 0);
    struct nbd_server_opts so = { .threads = 3 };
    return fx_start(state, f, b, flags, &so);
}
static int setup(void **state) { return setup_ro(state, 0); }
static int setup_readonly(void **state) { return setup_ro(state, NBD_OVL_READONLY); }

static int teardown(void **state)
{
    struct fx *f = *state;
    close(f->c);
    if (!pthread_equal(f->th, pthread_self()))
        pthread_join(f->th, NULL);
    nbd_server_free(f->srv);
    nbd_overlay_close(f->o);
    unlink(f->img);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void rd(struct fx *f, void *buf, size_t len) { assert_int_equal(vs_read_full(f->c, buf, len), (ssize_t)len); }
static void wr(struct fx *f, const void *buf, size_t len) { assert_int_equal(vs_write_full(f->c, buf, len), 0); }

/* The server closed its end: reading gives EOF. */
static void expect_closed(struct fx *f)
{
    uint8_t b;
    assert_int_equal(read(f->c, &b, 1), 0);
}

static void greet(struct fx *f, uint32_t cflags)
{
    uint8_t h[18];
    rd(f, h, sizeof(h));
    assert_true(vs_get_be64(h) == NBD_INIT_MAGIC);
    assert_true(vs_get_be64(h + 8) == NBD_OPTS_MAGIC);
    assert_int_equal(vs_get_be16(h + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    uint8_t c[4];
    vs_put_be32(c, cflags);
    wr(f, c, 4);
}

static void send_opt(struct fx *f, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    vs_put_be64(h, NBD_OPTS_MAGIC);
    vs_put_be32(h + 8, opt);
    vs_put_be32(h + 12, len);
    wr(f, h, sizeof(h));
    if (len)
        wr(f, data, len);
}

/* Read one option reply; returns its type, payload in buf (up to cap). */
static uint32_t opt_reply(struct fx *f, uint32_t opt, uint8_t *buf, size_t cap, uint32_t *len)
{
    uint8_t h[20];
    rd(f, h, sizeof(h));
    assert_true(vs_get_be64(h) == NBD_REP_MAGIC);
    assert_int_equal(vs_get_be32(h + 8), opt);
    *len = vs_get_be32(h + 16);
    assert_true(*len <= cap);
    rd(f, buf, *len);
    return vs_get_be32(h + 12);
}

static void expect_reply(struct fx *f, uint32_t opt, uint32_t type)
{
    uint8_t buf[4096];
    uint32_t len;
    assert_int_equal(opt_reply(f, opt, buf, sizeof(buf), &len), type);
}

/* NBD_OPT_GO with structured replies and base:allocation; returns transmission flags. */
static uint16_t go(struct fx *f, bool structured)
{
    uint8_t buf[4096];
    uint32_t len, t;
    if (structured) {
        send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        expect_reply(f, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
        uint8_t q[4 + 0 + 4 + 4 + 15];
        vs_put_be32(q, 0);
        vs_put_be32(q + 4, 1);
        vs_put_be32(q + 8, 15);
        memcpy(q + 12, "base:allocation", 15);
        send_opt(f, NBD_OPT_SET_META_CONTEXT, q, sizeof(q));
        assert_int_equal(opt_reply(f, NBD_OPT_SET_META_CONTEXT, buf, sizeof(buf), &len), NBD_REP_META_CONTEXT);
        assert_int_equal(len, 4 + 15);
        expect_reply(f, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK);
    }
    uint8_t g[4 + 3 + 2 + 2];
    vs_put_be32(g, 3);
    memcpy(g + 4, "any", 3);
    vs_put_be16(g + 7, 1);
    vs_put_be16(g + 9, NBD_INFO_BLOCK_SIZE);
    send_opt(f, NBD_OPT_GO, g, sizeof(g));
    uint16_t eflags = 0;
    bool export = false;
    while ((t = opt_reply(f, NBD_OPT_GO, buf, sizeof(buf), &len)) == NBD_REP_INFO) {
        if (vs_get_be16(buf) == NBD_INFO_EXPORT) {
            assert_int_equal(len, 12);
            assert_int_equal(vs_get_be64(buf + 2), DISK);
            eflags = vs_get_be16(buf + 10);
            export = true;
        }
    }
    assert_int_equal(t, NBD_REP_ACK);
    assert_true(export);
    return eflags;
}

static void request(struct fx *f, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off, uint32_t len)
{
    uint8_t h[NBD_REQUEST_SIZE];
    vs_put_be32(h, NBD_REQUEST_MAGIC);
    vs_put_be16(h + 4, flags);
    vs_put_be16(h + 6, type);
    vs_put_be64(h + 8, cookie);
    vs_put_be64(h + 16, off);
    vs_put_be32(h + 24, len);
    wr(f, h, sizeof(h));
}

/* Simple reply: returns its error. */
static uint32_t simple_reply(struct fx *f, uint64_t cookie)
{
    uint8_t h[16];
    rd(f, h, sizeof(h));
    assert_int_equal(vs_get_be32(h), NBD_SIMPLE_REPLY_MAGIC);
    assert_true(vs_get_be64(h + 8) == cookie);
    return vs_get_be32(h + 4);
}

/* One structured chunk; payload into buf. Returns the type. */
static uint16_t chunk(struct fx *f, uint64_t cookie, uint16_t *flags, uint8_t *buf, size_t cap, uint32_t *len)
{
    uint8_t h[20];
    rd(f, h, sizeof(h));
    assert_int_equal(vs_get_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
    assert_true(vs_get_be64(h + 8) == cookie);
    *flags = vs_get_be16(h + 4);
    *len = vs_get_be32(h + 16);
    assert_true(*len <= cap);
    rd(f, buf, *len);
    return vs_get_be16(h + 6);
}

static void test_handshake_options(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_opt(f, 99, "junk", 4);
    expect_reply(f, 99, NBD_REP_ERR_UNSUP);
    send_opt(f, NBD_OPT_LIST, NULL, 0);
    expect_reply(f, NBD_OPT_LIST, NBD_REP_SERVER);
    expect_reply(f, NBD_OPT_LIST, NBD_REP_ACK);
    send_opt(f, NBD_OPT_LIST, "x", 1);
    expect_reply(f, NBD_OPT_LIST, NBD_REP_ERR_INVALID);
    send_opt(f, NBD_OPT_STARTTLS, NULL, 0);
    expect_reply(f, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY);
    /* Meta contexts need structured replies first. */
    send_opt(f, NBD_OPT_SET_META_CONTEXT, "\0\0\0\0\0\0\0\0", 8);
    expect_reply(f, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID);
    /* INFO with a name length that runs past the data. */
    send_opt(f, NBD_OPT_INFO, "\0\0\0\x50\0\0", 6);
    expect_reply(f, NBD_OPT_INFO, NBD_REP_ERR_INVALID);
    send_opt(f, NBD_OPT_INFO, "\0\0\0\0\0\0", 6);
    uint8_t buf[64];
    uint32_t len, t;
    while ((t = opt_reply(f, NBD_OPT_INFO, buf, sizeof(buf), &len)) == NBD_REP_INFO)
        ;
    assert_int_equal(t, NBD_REP_ACK);
    send_opt(f, NBD_OPT_ABORT, NULL, 0);
    expect_reply(f, NBD_OPT_ABORT, NBD_REP_ACK);
    expect_closed(f);
}

static void test_bad_option_magic(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
    wr(f, "NOTMAGIC\0\0\0\x07\0\0\0\0", 16);
    expect_closed(f);
}

static void test_unknown_client_flags(void **state)
{
    struct fx *f = *state;
    greet(f, 0x80);
    expect_closed(f);
}

static void test_export_name(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
    send_opt(f, NBD_OPT_EXPORT_NAME, "whatever", 8);
    uint8_t r[134];
    rd(f, r, sizeof(r)); /* no NO_ZEROES: 124 zero bytes follow */
    assert_int_equal(vs_get_be64(r), DISK);
    for (int i = 10; i < 134; i++)
        assert_int_equal(r[i], 0);
    request(f, NBD_CMD_READ, 0, 7, 100, 16);
    assert_int_equal(simple_reply(f, 7), 0);
    uint8_t d[16];
    rd(f, d, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(d[i], (uint8_t)((100 + i) * 3 + 1));
    request(f, NBD_CMD_DISC, 0, 8, 0, 0);
    expect_closed(f);
}

static void test_transmission(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint16_t ef = go(f, true);
    assert_true(ef & NBD_FLAG_SEND_FLUSH);
    assert_true(ef & NBD_FLAG_SEND_DF);
    assert_false(ef & NBD_FLAG_READ_ONLY);
    uint8_t data[6000];
    memset(data, 0x5e, sizeof(data));
    request(f, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 1000, sizeof(data));
    wr(f, data, sizeof(data));
    assert_int_equal(simple_reply(f, 1), 0);
    uint8_t buf[8 + 8000];
    uint16_t fl;
    uint32_t len;
    request(f, NBD_CMD_READ, 0, 2, 0, 8000);
    assert_int_equal(chunk(f, 2, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_OFFSET_DATA);
    assert_true(fl & NBD_REPLY_FLAG_DONE);
    assert_int_equal(len, 8 + 8000);
    assert_int_equal(vs_get_be64(buf), 0);
    assert_int_equal(buf[8 + 999], (uint8_t)(999 * 3 + 1));
    assert_int_equal(buf[8 + 1000], 0x5e);
    assert_int_equal(buf[8 + 6999], 0x5e);
    assert_int_equal(buf[8 + 7000], (uint8_t)(7000 * 3 + 1));
    /* Past the end: an error chunk, and the stream stays in sync. */
    request(f, NBD_CMD_READ, 0, 3, DISK - 10, 20);
    assert_int_equal(chunk(f, 3, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(vs_get_be32(buf), NBD_EINVAL);
    /* A rejected write's payload is skipped. */
    request(f, NBD_CMD_WRITE, 0, 4, DISK - 10, 100);
    wr(f, data, 100);
    assert_int_equal(chunk(f, 4, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(vs_get_be32(buf), NBD_ENOSPC);
    /* Unknown command and unknown flag. */
    request(f, 42, 0, 5, 0, 0);
    assert_int_equal(chunk(f, 5, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(vs_get_be32(buf), NBD_EINVAL);
    request(f, NBD_CMD_FLUSH, NBD_CMD_FLAG_REQ_ONE, 6, 0, 0);
    assert_int_equal(chunk(f, 6, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_ERROR);
    /* Trim and write-zeroes, then block status sees them. */
    request(f, NBD_CMD_TRIM, 0, 7, 65536, 65536);
    assert_int_equal(simple_reply(f, 7), 0);
    request(f, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 8, 131072, 4096);
    assert_int_equal(simple_reply(f, 8), 0);
    request(f, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 9, 100, 4096);
    assert_int_equal(chunk(f, 9, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(vs_get_be32(buf), NBD_ENOTSUP);
    request(f, NBD_CMD_BLOCK_STATUS, 0, 10, 65536, 3 * 65536);
    assert_int_equal(chunk(f, 10, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    assert_int_equal(len, 4 + 3 * 8);
    assert_int_equal(vs_get_be32(buf + 4), 65536);
    assert_int_equal(vs_get_be32(buf + 8), NBD_EXTENT_HOLE | NBD_EXTENT_ZERO);
    assert_int_equal(vs_get_be32(buf + 12), 4096);
    assert_int_equal(vs_get_be32(buf + 16), NBD_EXTENT_ZERO);
    assert_int_equal(vs_get_be32(buf + 20), 65536 - 4096 + 65536);
    assert_int_equal(vs_get_be32(buf + 24), 0);
    request(f, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 11, 65536, 100);
    assert_int_equal(chunk(f, 11, &fl, buf, sizeof(buf), &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    assert_int_equal(len, 12);
    assert_int_equal(vs_get_be32(buf + 4), 100);
    request(f, NBD_CMD_FLUSH, 0, 12, 0, 0);
    assert_int_equal(simple_reply(f, 12), 0);
    /* Bad magic: the server hangs up. */
    wr(f, "garbage-garbage-garbage-garb", NBD_REQUEST_SIZE);
    expect_closed(f);
}

static void test_oversize_write_disconnects(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    go(f, false);
    request(f, NBD_CMD_READ, 0, 1, 0, NBD_MAX_PAYLOAD + 1);
    assert_int_equal(simple_reply(f, 1), NBD_EOVERFLOW);
    request(f, NBD_CMD_WRITE, 0, 2, 0, 0xffffffffu);
    expect_closed(f);
}

static void test_disconnect_mid_request(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    go(f, false);
    request(f, NBD_CMD_WRITE, 0, 1, 0, 4096);
    wr(f, "half", 4);
    shutdown(f->c, SHUT_WR);
    expect_closed(f);
    pthread_join(f->th, NULL);
    f->th = pthread_self();
    assert_true(f->srv_ret < 0);
    assert_non_null(strstr(f->srv_err.msg, "inside a 4096-byte write"));
    /* Nothing was written. */
    uint8_t b[4];
    assert_int_equal(nbd_overlay_read(f->o, b, 4, 0, NULL), 0);
    assert_int_equal(b[0], 1);
}

static void test_read_only(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint16_t ef = go(f, false);
    assert_true(ef & NBD_FLAG_READ_ONLY);
    request(f, NBD_CMD_WRITE, 0, 1, 0, 4);
    wr(f, "abcd", 4);
    assert_int_equal(simple_reply(f, 1), NBD_EPERM);
    request(f, NBD_CMD_TRIM, 0, 2, 0, 4096);
    assert_int_equal(simple_reply(f, 2), NBD_EPERM);
    request(f, NBD_CMD_READ, 0, 3, 0, 4);
    assert_int_equal(simple_reply(f, 3), 0);
    uint8_t d[4];
    rd(f, d, 4);
    assert_int_equal(d[0], 1);
}

/* A base whose reads fail while `fail` is set, as an archive whose store went away; the server's log lines. */
struct flaky {
    void *ctx;
    int (*pread)(void *ctx, void *buf, size_t len, uint64_t off, vs_err *e);
    void (*close)(struct nbd_base *b);
    atomic_bool fail;
    pthread_mutex_t mu;
    char lines[4][700];
    unsigned nlines;
};
static struct flaky flaky = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int flaky_pread(void *ctx, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct flaky *fk = ctx;
    if (atomic_load(&fk->fail))
        return vs_err_set(e, EIO, "s3://b/k: stream 'disk0' block %llu: no answer from the store",
                          (unsigned long long)(off / 4096));
    return fk->pread(fk->ctx, buf, len, off, e);
}

static void flaky_close(struct nbd_base *b)
{
    b->ctx = flaky.ctx;
    flaky.close(b);
}

static void flaky_log(void *opaque, const char *msg)
{
    struct flaky *fk = opaque;
    pthread_mutex_lock(&fk->mu);
    if (fk->nlines < 4)
        snprintf(fk->lines[fk->nlines], sizeof fk->lines[0], "%s", msg);
    fk->nlines++;
    pthread_mutex_unlock(&fk->mu);
}

static int setup_flaky(void **state)
{
    int fd;
    struct fx *f = fx_new(&fd);
    close(fd);
    struct nbd_base *b;
    assert_int_equal(nbd_base_open_raw(f->img, &b, NULL), 0);
    flaky.ctx = b->ctx, flaky.pread = b->pread, flaky.close = b->close;
    atomic_store(&flaky.fail, false);
    flaky.nlines = 0;
    b->ctx = &flaky, b->pread = flaky_pread, b->close = flaky_close;
    struct nbd_server_opts so = { .threads = 3, .log = flaky_log, .log_opaque = &flaky };
    return fx_start(state, f, b, NBD_OVL_READONLY, &so);
}

/* Reads that fail give EIO and one log line per episode (until a read succeeds), naming the cause; good reads
 * log nothing. */
static void test_read_failures_logged(void **state)
{
    struct fx *f = *state;
    greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    go(f, false);
    uint8_t d[4096];
    uint64_t cookie = 1;
    request(f, NBD_CMD_READ, 0, cookie, 0, 4096);
    assert_int_equal(simple_reply(f, cookie++), 0);
    rd(f, d, 4096);
    assert_int_equal(flaky.nlines, 0);
    for (int episode = 0; episode < 2; episode++) {
        atomic_store(&flaky.fail, true);
        for (int i = 0; i < 3; i++) {
            request(f, NBD_CMD_READ, 0, cookie, 8192 * (uint64_t)(i + 1), 4096);
            assert_int_equal(simple_reply(f, cookie++), NBD_EIO);
        }
        assert_int_equal(flaky.nlines, episode + 1);
        assert_non_null(strstr(flaky.lines[episode], "disk read failed"));
        assert_non_null(strstr(flaky.lines[episode], "s3://b/k: stream 'disk0' block 2: no answer from the store"));
        atomic_store(&flaky.fail, false);
        request(f, NBD_CMD_READ, 0, cookie, 0, 4096);
        assert_int_equal(simple_reply(f, cookie++), 0);
        rd(f, d, 4096);
        assert_int_equal(flaky.nlines, episode + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_option_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_client_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transmission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_write_disconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup_readonly, teardown),
        cmocka_unit_test_setup_teardown(test_read_failures_logged, setup_flaky, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
