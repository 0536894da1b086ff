/* qops_dump against a fake QMP server whose dump never ends: after the timeout vmsnap must not send `cont` (the
 * guest would run and change the memory being dumped; QEMU resumes the VM itself when the dump ends). A dump that
 * fails at once still gets the VM resumed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "qops/qops.h"
#include "../qmp/fake_qmp.h"

/* A running VM that QEMU stops for the dump; query-dump answers `dump_status` until the client leaves. */
static void serve(struct fake *f, int fd, const char *dump_status)
{
    bool running = true;
    srv_handshake(f, fd);
    json_t *cmd;
    while ((cmd = srv_read_cmd(f, fd))) {
        const char *ex = json_string_value(json_object_get(cmd, "execute"));
        if (!ex) {
            srv_reply(fd, cmd, "{}");
        } else if (!strcmp(ex, "query-dump-guest-memory-capability")) {
            srv_reply(fd, cmd, "{\"formats\": [\"elf\"]}");
        } else if (!strcmp(ex, "query-status")) {
            srv_reply(fd, cmd, running ? "{\"status\": \"running\", \"running\": true}"
                                       : "{\"status\": \"paused\", \"running\": false}");
        } else if (!strcmp(ex, "dump-guest-memory")) {
            running = false;
            srv_reply(fd, cmd, "{}");
            srv_send(fd, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 0, \"microseconds\": 0}}\r\n");
        } else if (!strcmp(ex, "query-dump")) {
            srv_reply(fd, cmd, dump_status);
        } else if (!strcmp(ex, "cont")) {
            running = true;
            snprintf(f->note, sizeof f->note, "cont");
            srv_reply(fd, cmd, "{}");
        } else {
            srv_reply(fd, cmd, "{}");
        }
        json_decref(cmd);
    }
}

static void s_endless(struct fake *f, int fd)
{
    serve(f, fd, "{\"status\": \"active\", \"completed\": 1, \"total\": 100}");
}
static void s_failed(struct fake *f, int fd) { serve(f, fd, "{\"status\": \"failed\", \"completed\": 1, \"total\": 100}"); }

static void run(fake_script *script, int want, const char *words, const char *note)
{
    struct fake f;
    fake_start(&f, script);
    vs_err e = { 0 };
    struct qmp *q;
    assert_int_equal(qmp_connect(f.path, NULL, &q, &e), 0);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct qops_dump_opts o = { .timeout_s = 0.3 };
    int r = qops_dump(q, fd, &o, NULL, &e);
    close(fd);
    qmp_close(q);
    fake_stop(&f);
    assert_int_equal(r, want);
    if (!strstr(e.msg, words))
        fail_msg("error '%s' lacks '%s'", e.msg, words);
    if (strcmp(f.note, note))
        fail_msg("after '%s' the fake saw '%s', expected '%s'", e.msg, f.note, note);
}

static void test_timeout_no_cont(void **state)
{
    (void)state;
    run(s_endless, -ETIMEDOUT, "did not complete in time", "");
}

static void test_failed_resumes(void **state)
{
    (void)state;
    run(s_failed, -EIO, "failed", "cont");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_no_cont),
        cmocka_unit_test(test_failed_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
