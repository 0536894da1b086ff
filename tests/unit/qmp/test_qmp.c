/* Unit tests for src/qmp against a misbehaving fake QMP server (fake_qmp.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "fake_qmp.h"
#include "qmp/qmp.h"

#define GENEROUS_S 10.0  /* "returned at all": far above the timeouts used, never a timing assertion */

static const struct qmp_opts quick = { .timeout_s = 0.5 };
static const struct qmp_opts normal = { .timeout_s = 10 };

/* ---- scripts ---- */

static void s_no_greeting(struct fake *f, int fd) { (void)f; srv_wait_eof(fd); }

static void s_garbage(struct fake *f, int fd)
{
    (void)f;
    srv_send(fd, "hello world\r\n");
    srv_wait_eof(fd);
}

static void s_not_qmp(struct fake *f, int fd)
{
    (void)f;
    srv_send(fd, "{\"hello\": \"world\"}\r\n");
    srv_wait_eof(fd);
}

static void s_bad_json_reply(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_decref(srv_read_cmd(f, fd));
    srv_send(fd, "{\"return\": nope}\r\n");
    srv_wait_eof(fd);
}

static void s_bytewise(struct fake *f, int fd)
{
    srv_send_bytewise(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 0, \"major\": 8}}, "
                          "\"capabilities\": []}}\r\n");
    json_t *cmd = srv_read_cmd(f, fd);
    srv_send_bytewise(fd, "{\"return\": {}, \"id\": 1}\r\n");
    json_decref(cmd);
    cmd = srv_read_cmd(f, fd);
    /* Braces and escaped quotes inside strings must not confuse the framing; two messages, no
     * newline between them, the second split across sends. */
    srv_send_bytewise(fd, "{\"event\": \"X\", \"data\": {\"s\": \"}{\\\"]\"}}{\"return\": {\"text\": \"a}b{c\\\\\"}, \"id\": 2}");
    json_decref(cmd);
    srv_wait_eof(fd);
}

#define BIG_LEN (20u << 20)

static void s_big(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd = srv_read_cmd(f, fd);
    char *blob = malloc(BIG_LEN + 1);
    memset(blob, 'z', BIG_LEN);
    blob[BIG_LEN] = 0;
    char head[128];
    snprintf(head, sizeof head, "{\"id\": %lld, \"return\": {\"blob\": \"",
             (long long)json_integer_value(json_object_get(cmd, "id")));
    srv_send(fd, head);
    srv_send(fd, blob);
    srv_send(fd, "\"}}\r\n");
    free(blob);
    json_decref(cmd);
    srv_wait_eof(fd);
}

static void s_events(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd = srv_read_cmd(f, fd);
    srv_send(fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                 "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"created\", \"id\": \"j\"}}\r\n"
                 "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", \"id\": \"j\"}}\r\n"
                 "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"null\", \"id\": \"j\"}}\r\n");
    srv_reply(fd, cmd, "{}");
    json_decref(cmd);
    cmd = srv_read_cmd(f, fd);
    srv_reply(fd, cmd, "{}");
    json_decref(cmd);
    usleep(100 * 1000);
    srv_send(fd, "{\"event\": \"RESUME\"}\r\n");
    srv_wait_eof(fd);
}

static void s_close_mid_reply(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_decref(srv_read_cmd(f, fd));
    srv_send(fd, "{\"return\": {\"status\": \"runn");
}

static void s_silent_then_late(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *first = srv_read_cmd(f, fd);      /* never answered in time */
    json_t *second = srv_read_cmd(f, fd);
    srv_reply(fd, first, "{\"first\": true}");  /* late: must be dropped by id */
    srv_reply(fd, second, "{\"second\": true}");
    json_decref(first);
    json_decref(second);
    srv_wait_eof(fd);
}

static void s_error(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd = srv_read_cmd(f, fd);
    srv_send(fd, "{\"return\": {}, \"id\": 12345}\r\n");  /* someone else's reply */
    char buf[256];
    snprintf(buf, sizeof buf,
             "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has not been found\"}}\r\n",
             (long long)json_integer_value(json_object_get(cmd, "id")));
    srv_send(fd, buf);
    json_decref(cmd);
    cmd = srv_read_cmd(f, fd);
    srv_reply(fd, cmd, "{\"fine\": 1}");
    json_decref(cmd);
    srv_wait_eof(fd);
}

static void s_fd(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd = srv_read_cmd(f, fd);  /* getfd */
    const char *name = json_string_value(json_object_get(json_object_get(cmd, "arguments"), "fdname"));
    snprintf(f->note, sizeof f->note, "%s:%s", json_string_value(json_object_get(cmd, "execute")), name ? name : "-");
    if (f->received_fd >= 0 && write(f->received_fd, "ping", 4) != 4)
        f->note[0] = 0;
    srv_reply(fd, cmd, "{}");
    json_decref(cmd);
    cmd = srv_read_cmd(f, fd);  /* "check": read what the client wrote back through the passed fd */
    char got[5] = { 0 };
    if (f->received_fd >= 0 && read(f->received_fd, got, 4) == 4)
        srv_reply(fd, cmd, got[0] == 'p' ? "{\"got\": \"pong\"}" : "{\"got\": \"?\"}");
    else
        srv_reply(fd, cmd, "{\"got\": \"nothing\"}");
    json_decref(cmd);
    cmd = srv_read_cmd(f, fd);  /* add-fd */
    srv_reply(fd, cmd, f->received_fd >= 0 ? "{\"fdset-id\": 3, \"fd\": 42}" : "{}");
    json_decref(cmd);
    srv_wait_eof(fd);
}

static void s_features(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd;
    while ((cmd = srv_read_cmd(f, fd))) {
        const char *ex = json_string_value(json_object_get(cmd, "execute"));
        if (!ex)
            ex = "";
        if (!strcmp(ex, "query-commands"))
            srv_reply(fd, cmd, "[{\"name\": \"migrate\"}, {\"name\": \"snapshot-save\"}, {\"name\": \"query-status\"}]");
        else if (!strcmp(ex, "query-migrate-capabilities"))
            srv_reply(fd, cmd, "[{\"capability\": \"xbzrle\", \"state\": false}, "
                               "{\"capability\": \"background-snapshot\", \"state\": false}]");
        else if (!strcmp(ex, "query-status"))
            srv_reply(fd, cmd, "{\"status\": \"paused\", \"singlestep\": false, \"running\": false}");
        else
            srv_reply(fd, cmd, "{}");
        json_decref(cmd);
    }
}

/* A VM whose run state follows "cont" (s_cont_runs) or ignores it (s_cont_ignored, a QEMU that stays paused);
 * f->note gets the commands in order, f->queries counts query-status. */
static void run_state_server(struct fake *f, int fd, bool running, bool cont_runs)
{
    srv_handshake(f, fd);
    json_t *cmd;
    while ((cmd = srv_read_cmd(f, fd))) {
        const char *ex = json_string_value(json_object_get(cmd, "execute")) ?: "";
        size_t l = strlen(f->note);
        snprintf(f->note + l, sizeof f->note - l, "%s%s", l ? "," : "", ex);
        if (!strcmp(ex, "query-status")) {
            f->queries++;
            srv_reply(fd, cmd, running ? "{\"status\": \"running\", \"running\": true}"
                                       : "{\"status\": \"postmigrate\", \"running\": false}");
        } else {
            if (!strcmp(ex, "cont") && cont_runs)
                running = true;
            srv_reply(fd, cmd, "{}");
        }
        json_decref(cmd);
    }
}

static void s_already_running(struct fake *f, int fd) { run_state_server(f, fd, true, true); }
static void s_cont_runs(struct fake *f, int fd) { run_state_server(f, fd, false, true); }
static void s_cont_ignored(struct fake *f, int fd) { run_state_server(f, fd, false, false); }

static void s_raw(struct fake *f, int fd)
{
    srv_handshake(f, fd);
    json_t *cmd = srv_read_cmd(f, fd);
    snprintf(f->note, sizeof f->note, "%s", json_string_value(json_object_get(cmd, "execute")));
    json_decref(cmd);
    srv_send(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n");
    srv_wait_eof(fd);
}

/* ---- tests ---- */

static void test_no_greeting_times_out(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_no_greeting);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    double t0 = vs_now_s();
    assert_int_equal(qmp_connect(f.path, &quick, &q, &e), -ETIMEDOUT);
    assert_true(vs_now_s() - t0 < GENEROUS_S);
    assert_null(q);
    assert_non_null(strstr(e.msg, "no greeting within 0.5 s"));
    assert_non_null(strstr(e.msg, f.path));
    fake_stop(&f);
}

static void test_garbage(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_garbage);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), -EPROTO);
    assert_non_null(strstr(e.msg, "expected a JSON object from QEMU, got byte 0x68 'h'"));
    assert_non_null(strstr(e.msg, f.path));
    fake_stop(&f);

    fake_start(&f, s_not_qmp);
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), -EPROTO);
    assert_non_null(strstr(e.msg, "not a QMP greeting"));
    fake_stop(&f);

    fake_start(&f, s_bad_json_reply);
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_execute(q, "query-status", NULL, NULL, &e), -EPROTO);
    assert_non_null(strstr(e.msg, "invalid JSON from QEMU"));
    /* The stream cannot resync: later calls fail at once with the same error. */
    assert_int_equal(qmp_execute(q, "query-status", NULL, NULL, &e), -EPROTO);
    assert_non_null(strstr(e.msg, "invalid JSON from QEMU"));
    qmp_close(q);
    fake_stop(&f);
}

static void test_bytewise_and_packed(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_bytewise);
    QMP_AUTOCLOSE struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    int maj, min, mic;
    qmp_version(q, &maj, &min, &mic);
    assert_int_equal(maj, 8);
    assert_int_equal(min, 0);
    assert_int_equal(mic, 1);
    assert_true(qmp_version_at_least(q, 7, 2));
    assert_false(qmp_version_at_least(q, 8, 1));
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "x", NULL, &ret, &e), 0);
    assert_string_equal(json_string_value(json_object_get(ret, "text")), "a}b{c\\");
    json_decref(ret);
    json_t *ev = NULL;
    assert_int_equal(qmp_pop_event(q, "X", &ev), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"), "s")), "}{\"]");
    json_decref(ev);
    qmp_close(VS_STEAL(q));
    fake_stop(&f);
}

static void test_big_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_big);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "big", NULL, &ret, &e), 0);
    const char *blob = json_string_value(json_object_get(ret, "blob"));
    assert_non_null(blob);
    assert_int_equal(strlen(blob), BIG_LEN);
    assert_int_equal(blob[BIG_LEN - 1], 'z');
    json_decref(ret);
    qmp_close(q);
    fake_stop(&f);

    /* Over the limit: a clear error, not unbounded buffering. */
    struct qmp_opts small = { .timeout_s = 10, .max_message = 1 << 20 };
    fake_start(&f, s_big);
    assert_int_equal(qmp_connect(f.path, &small, &q, &e), 0);
    assert_int_equal(qmp_execute(q, "big", NULL, &ret, &e), -EMSGSIZE);
    assert_non_null(strstr(e.msg, "larger than the limit of 1048576 bytes"));
    qmp_close(q);
    fake_stop(&f);
}

static void test_events(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_events);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_stop(q, &e), 0);
    assert_int_equal(qmp_queued_events(q), 4);

    json_t *want = json_pack("{s:s, s:s}", "status", "concluded", "id", "j");
    json_t *ev = NULL;
    assert_int_equal(qmp_wait_event(q, "JOB_STATUS_CHANGE", want, 0, &ev, &e), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"), "status")), "concluded");
    json_decref(ev);
    json_decref(want);
    assert_int_equal(qmp_queued_events(q), 3);

    assert_int_equal(qmp_pop_event(q, NULL, &ev), 1);  /* oldest first */
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
    json_decref(ev);
    assert_int_equal(qmp_pop_event(q, "STOP", &ev), 0);

    /* An event that arrives after the reply is read while waiting for it. */
    assert_int_equal(qmp_execute(q, "y", NULL, NULL, &e), 0);
    assert_int_equal(qmp_wait_event(q, "RESUME", NULL, 5, &ev, &e), 0);
    json_decref(ev);
    double t0 = vs_now_s();
    assert_int_equal(qmp_wait_event(q, "SHUTDOWN", NULL, 0.2, &ev, &e), -ETIMEDOUT);
    assert_true(vs_now_s() - t0 < GENEROUS_S);
    assert_null(ev);
    assert_non_null(strstr(e.msg, "no event 'SHUTDOWN' within 0.2 s"));
    assert_int_equal(qmp_queued_events(q), 2);  /* the two other JOB_STATUS_CHANGE */
    assert_int_equal(qmp_pump(q, &e), 0);
    qmp_drop_events(q);
    assert_int_equal(qmp_queued_events(q), 0);
    qmp_close(q);
    fake_stop(&f);
}

static void test_close_mid_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_close_mid_reply);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_execute(q, "query-status", NULL, NULL, &e), -ECONNRESET);
    char want[300];
    snprintf(want, sizeof want, "QMP socket '%s': connection closed by QEMU while waiting for reply to 'query-status'",
             f.path);
    assert_string_equal(e.msg, want);
    assert_int_equal(qmp_execute(q, "cont", NULL, NULL, &e), -ECONNRESET);
    qmp_close(q);
    fake_stop(&f);
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_silent_then_late);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &quick, &q, &e), 0);
    double t0 = vs_now_s();
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "slow", NULL, &ret, &e), -ETIMEDOUT);
    assert_true(vs_now_s() - t0 < GENEROUS_S);
    assert_null(ret);
    assert_non_null(strstr(e.msg, "no reply to 'slow' within 0.5 s"));
    /* Still usable; the late reply to 'slow' is recognised by its id and dropped. */
    assert_int_equal(qmp_execute_timeout(q, "next", NULL, 10, &ret, &e), 0);
    assert_true(json_is_true(json_object_get(ret, "second")));
    assert_null(json_object_get(ret, "first"));
    json_decref(ret);
    qmp_close(q);
    fake_stop(&f);
}

static void test_error_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_error);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_peer_pid(q), getpid());
    assert_int_equal(qmp_peer_uid(q), getuid());
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "foo", NULL, &ret, &e), -EREMOTEIO);
    assert_null(ret);
    assert_string_equal(e.msg, "QMP 'foo' failed: CommandNotFound: The command foo has not been found");
    assert_string_equal(qmp_error_class(q), "CommandNotFound");
    assert_string_equal(qmp_error_desc(q), "The command foo has not been found");
    json_t *args = json_pack("{s:i}", "n", 1);
    assert_int_equal(qmp_execute(q, "bar", args, &ret, &e), 0);
    assert_int_equal(args->refcount, 1);  /* borrowed, not stolen */
    json_decref(args);
    assert_null(qmp_error_class(q));
    assert_int_equal(json_integer_value(json_object_get(ret, "fine")), 1);
    json_decref(ret);
    /* Arguments that are not an object are refused before anything is sent. */
    json_t *arr = json_array();
    assert_int_equal(qmp_execute(q, "bar", arr, NULL, &e), -EINVAL);
    json_decref(arr);
    qmp_close(q);
    fake_stop(&f);
}

static void test_fd_passing(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_fd);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_getfd(q, "migfd", sp[1], &e), 0);
    char buf[5] = { 0 };
    assert_int_equal(read(sp[0], buf, 4), 4);  /* the server wrote through the fd it received */
    assert_string_equal(buf, "ping");
    assert_int_equal(write(sp[0], "pong", 4), 4);
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "check", NULL, &ret, &e), 0);
    assert_string_equal(json_string_value(json_object_get(ret, "got")), "pong");
    json_decref(ret);
    int64_t set = -1, qfd = -1;
    assert_int_equal(qmp_add_fd(q, sp[1], -1, NULL, &set, &qfd, &e), 0);
    assert_int_equal(set, 3);
    assert_int_equal(qfd, 42);
    assert_int_equal(qmp_execute_with_fd(q, "getfd", NULL, -1, NULL, &e), -EBADF);
    qmp_close(q);
    fake_stop(&f);
    assert_string_equal(f.note, "getfd:migfd");
    close(sp[0]);
    close(sp[1]);
}

static void test_features_and_status(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_features);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    assert_int_equal(qmp_has_command(q, "migrate", &e), 1);
    assert_int_equal(qmp_has_command(q, "snapshot-save", &e), 1);
    assert_int_equal(qmp_has_command(q, "migrate-incoming", &e), 0);
    assert_int_equal(qmp_has_migrate_capability(q, "background-snapshot", &e), 1);
    assert_int_equal(qmp_has_migrate_capability(q, "mapped-ram", &e), 0);
    bool running = true;
    char st[32];
    assert_int_equal(qmp_query_status(q, &running, st, sizeof st, &e), 0);
    assert_false(running);
    assert_string_equal(st, "paused");
    qmp_close(q);
    fake_stop(&f);
    assert_int_equal(f.queries, 2);  /* each list fetched once per connection */
}

/* qmp_resume reads the state back: cont only when not running, and an error naming the state when the VM still
 * does not run after it. */
static void test_resume_checked(void **state)
{
    (void)state;
    static const struct {
        fake_script *script;
        int rc;
        bool sent;
        const char *seen;
    } cases[] = {
        { s_already_running, 0, false, "query-status" },
        { s_cont_runs, 0, true, "query-status,cont,query-status" },
        { s_cont_ignored, -EAGAIN, true, "query-status,cont,query-status" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fake f;
        fake_start(&f, cases[i].script);
        struct qmp *q = NULL;
        vs_err e = { 0 };
        assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
        bool sent = !cases[i].sent;
        assert_int_equal(qmp_resume(q, &sent, &e), cases[i].rc);
        assert_int_equal(sent, cases[i].sent);
        if (cases[i].rc)
            assert_non_null(strstr(e.msg, "is 'postmigrate' after cont"));
        qmp_close(q);
        fake_stop(&f);
        assert_string_equal(f.note, cases[i].seen);
    }
}

static void test_raw(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, s_raw);
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect(f.path, &normal, &q, &e), 0);
    const char raw[] = "{\"execute\": \"raw-thing\"}\n";
    assert_int_equal(qmp_send_raw(q, raw, strlen(raw), &e), 0);
    json_t *msg = NULL;
    assert_int_equal(qmp_recv_reply(q, 5, &msg, &e), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(msg, "error"), "class")), "GenericError");
    json_decref(msg);
    qmp_close(q);
    fake_stop(&f);
    assert_string_equal(f.note, "raw-thing");
}

static void test_connect_errors(void **state)
{
    (void)state;
    struct qmp *q = NULL;
    vs_err e = { 0 };
    assert_int_equal(qmp_connect("/nonexistent/vmsnap/qmp.sock", NULL, &q, &e), -ENOENT);
    assert_string_equal(e.msg, "QMP socket '/nonexistent/vmsnap/qmp.sock': cannot connect: No such file or directory");
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    assert_int_equal(qmp_connect(longp, NULL, &q, &e), -ENAMETOOLONG);
    assert_null(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_greeting_times_out),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bytewise_and_packed),
        cmocka_unit_test(test_big_reply),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_close_mid_reply),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_fd_passing),
        cmocka_unit_test(test_features_and_status),
        cmocka_unit_test(test_resume_checked),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_connect_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
