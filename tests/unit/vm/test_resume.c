/* vm_resume_memory against a fake QMP server that takes the pipe's read end and never reads it, as QEMU does when
 * it refuses migrate-incoming (the fd stays in its fd table) or stalls loading (the fd stays in the migration).
 * resume must fail with QEMU's words and return, never hang on a feeder blocked in write(). */
#include "vm/vm.h"
#include "../qmp/fake_qmp.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define STREAM_BYTES (8u << 20)   /* well past the 1 MiB pipe: the feeder blocks unless someone reads */

static char arc_path[64];

static int make_archive(void **state)
{
    (void)state;
    snprintf(arc_path, sizeof arc_path, "/tmp/vmsnap-resume-XXXXXX");
    int fd = mkstemp(arc_path);
    assert_true(fd >= 0);
    close(fd);
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_NONE;
    o.threads = 1;
    struct arc_writer *w;
    vs_err e = { 0 };
    assert_int_equal(arc_writer_create(arc_path, &o, &w, &e), 0);
    uint8_t *buf = malloc(STREAM_BYTES);
    for (size_t i = 0; i < STREAM_BYTES; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    assert_int_equal(arc_writer_add(w, ARC_KIND_MEMORY, "memory", buf, STREAM_BYTES, &e), 0);
    free(buf);
    assert_int_equal(arc_writer_finish(w, &e), 0);
    return 0;
}

static int remove_archive(void **state)
{
    (void)state;
    unlink(arc_path);
    return 0;
}

/* Reply to each command until EOF; getfd's fd is kept (never read) unless closefd drops it. */
static void serve(struct fake *f, int fd, const char *incoming_reply, const char *status)
{
    srv_handshake(f, fd);
    json_t *cmd;
    while ((cmd = srv_read_cmd(f, fd))) {
        const char *ex = json_string_value(json_object_get(cmd, "execute"));
        if (ex && !strcmp(ex, "migrate-incoming") && incoming_reply) {
            char *s = NULL;
            json_int_t id = json_integer_value(json_object_get(cmd, "id"));
            if (asprintf(&s, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": \"%s\"}}\r\n",
                         (long long)id, incoming_reply) > 0)
                srv_send(fd, s);
            free(s);
        } else if (ex && !strcmp(ex, "query-migrate")) {
            srv_reply(fd, cmd, status);
        } else {
            if (ex && !strcmp(ex, "closefd") && f->received_fd >= 0) {
                close(f->received_fd);
                f->received_fd = -1;
                snprintf(f->note, sizeof f->note, "closefd");
            }
            srv_reply(fd, cmd, "{}");
        }
        json_decref(cmd);
    }
}

static void s_refused(struct fake *f, int fd) { serve(f, fd, "fake refuses the incoming migration", NULL); }
static void s_stalled(struct fake *f, int fd) { serve(f, fd, NULL, "{\"status\": \"active\"}"); }
static void s_failed(struct fake *f, int fd)
{
    serve(f, fd, NULL, "{\"status\": \"failed\", \"error-desc\": \"fake load error\"}");
}

static void run(fake_script *script, double timeout_s, int want, const char *words)
{
    struct fake f;
    fake_start(&f, script);
    alarm(60);   /* a hang is the bug: fail loudly rather than wait for meson's timeout */
    vs_err e = { 0 };
    struct qmp *q;
    assert_int_equal(qmp_connect(f.path, NULL, &q, &e), 0);
    ARC_AUTOCLOSE struct arc *a = NULL;
    assert_int_equal(arc_open(arc_path, NULL, &a, &e), 0);
    int s = arc_find_stream(a, ARC_KIND_MEMORY, NULL);
    assert_true(s >= 0);
    int r = vm_resume_memory(q, a, (unsigned)s, timeout_s, &e);
    alarm(0);
    assert_int_equal(r, want);
    if (!strstr(e.msg, words))
        fail_msg("error '%s' lacks '%s'", e.msg, words);
    qmp_close(q);
    fake_stop(&f);
}

static void test_refused(void **state)
{
    (void)state;
    run(s_refused, 30, -EREMOTEIO, "fake refuses the incoming migration");
}

static void test_stalled(void **state)
{
    (void)state;
    run(s_stalled, 0.3, -ETIMEDOUT, "did not finish loading");
}

static void test_failed(void **state)
{
    (void)state;
    run(s_failed, 30, -EIO, "fake load error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_stalled),
        cmocka_unit_test(test_failed),
    };
    return cmocka_run_group_tests(tests, make_archive, remove_archive);
}
