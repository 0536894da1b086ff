/* Integration checks of src/qmp against a real QEMU. Run by test_qmp_qemu.py, which starts QEMU and
 * always kills it: qmp_qemu SOCKET QEMU-PID. Exits 0 when every check passed, 1 at the first failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qmp/qmp.h"

static int failures;

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            failures++;                                                                         \
            return;                                                                             \
        }                                                                                       \
    } while (0)

static void status_is(struct qmp *q, const char *want, bool want_running)
{
    vs_err e = { 0 };
    bool running = !want_running;
    char st[32] = "";
    CHECK(qmp_query_status(q, &running, st, sizeof st, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(st, want) && running == want_running, "status %s/%d, expected %s", st, running, want);
}

static void check_greeting(struct qmp *q, pid_t qemu_pid)
{
    int maj = 0, min = 0, mic = -1;
    qmp_version(q, &maj, &min, &mic);
    printf("QEMU %d.%d.%d\n", maj, min, mic);
    CHECK(maj >= 7 && mic >= 0, "version %d.%d.%d", maj, min, mic);
    CHECK(json_is_array(json_object_get(qmp_greeting(q), "capabilities")), "greeting lacks capabilities");
    CHECK(qmp_peer_pid(q) == qemu_pid, "peer pid %d, QEMU is %d", (int)qmp_peer_pid(q), (int)qemu_pid);
}

static void check_stop_cont(struct qmp *q)
{
    vs_err e = { 0 };
    json_t *ev = NULL;
    status_is(q, "running", true);
    CHECK(qmp_stop(q, &e) == 0, "%s", e.msg);
    CHECK(qmp_wait_event(q, "STOP", NULL, 10, &ev, &e) == 0, "%s", e.msg);
    CHECK(json_is_object(json_object_get(ev, "timestamp")), "STOP without timestamp");
    json_decref(ev);
    status_is(q, "paused", false);
    CHECK(qmp_cont(q, &e) == 0, "%s", e.msg);
    CHECK(qmp_wait_event(q, "RESUME", NULL, 10, &ev, &e) == 0, "%s", e.msg);
    json_decref(ev);
    status_is(q, "running", true);
}

static void check_errors(struct qmp *q)
{
    vs_err e = { 0 };
    json_t *ret = NULL;
    CHECK(qmp_execute(q, "no-such-command", NULL, &ret, &e) == -EREMOTEIO, "%s", e.msg);
    CHECK(!strcmp(qmp_error_class(q), "CommandNotFound"), "class %s", qmp_error_class(q));
    CHECK(!strcmp(e.msg, "QMP 'no-such-command' failed: CommandNotFound: The command no-such-command has not been found"),
          "%s", e.msg);
    /* Malformed JSON straight onto the wire: QEMU answers with an id-less error, the connection survives. */
    const char raw[] = "{\"execute\": }\n";
    CHECK(qmp_send_raw(q, raw, strlen(raw), &e) == 0, "%s", e.msg);
    json_t *msg = NULL;
    CHECK(qmp_recv_reply(q, 10, &msg, &e) == 0, "%s", e.msg);
    CHECK(json_is_object(json_object_get(msg, "error")), "no error for malformed JSON");
    json_decref(msg);
    status_is(q, "running", true);
}

static void check_fds(struct qmp *q)
{
    vs_err e = { 0 };
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
    CHECK(qmp_getfd(q, "vmsnap-test", p[1], &e) == 0, "%s", e.msg);
    close(p[1]);
    /* QEMU holds the write end now: no EOF on the read end. */
    char c;
    CHECK(read(p[0], &c, 1) < 0 && errno == EAGAIN, "QEMU does not hold the passed fd");
    CHECK(qmp_closefd(q, "vmsnap-test", &e) == 0, "%s", e.msg);
    CHECK(read(p[0], &c, 1) == 0, "closefd did not close QEMU's copy");
    CHECK(qmp_closefd(q, "vmsnap-test", &e) == -EREMOTEIO, "closefd of an unknown name: %s", e.msg);
    CHECK(strstr(qmp_error_desc(q), "not found"), "%s", qmp_error_desc(q));
    /* getfd without an fd attached is refused by QEMU. */
    json_t *args = json_pack("{s:s}", "fdname", "nofd");
    CHECK(qmp_execute(q, "getfd", args, NULL, &e) == -EREMOTEIO, "%s", e.msg);
    json_decref(args);

    int64_t set = -1, qfd = -1;
    CHECK(qmp_add_fd(q, p[0], -1, "vmsnap test", &set, &qfd, &e) == 0, "%s", e.msg);
    CHECK(set >= 0 && qfd >= 0, "fdset %lld fd %lld", (long long)set, (long long)qfd);
    args = json_pack("{s:I}", "fdset-id", (json_int_t)set);
    CHECK(qmp_execute(q, "remove-fd", args, NULL, &e) == 0, "%s", e.msg);
    json_decref(args);
    close(p[0]);
}

static void check_features(struct qmp *q)
{
    vs_err e = { 0 };
    CHECK(qmp_has_command(q, "migrate", &e) == 1, "migrate: %s", e.msg);
    CHECK(qmp_has_command(q, "getfd", &e) == 1, "getfd");
    CHECK(qmp_has_command(q, "no-such-command", &e) == 0, "no-such-command");
    CHECK(qmp_has_command(q, "snapshot-save", &e) == qmp_version_at_least(q, 6, 0), "snapshot-save");
    CHECK(qmp_has_migrate_capability(q, "background-snapshot", &e) == qmp_version_at_least(q, 6, 0),
          "background-snapshot: %s", e.msg);
    CHECK(qmp_has_migrate_capability(q, "mapped-ram", &e) == qmp_version_at_least(q, 9, 0), "mapped-ram");
    CHECK(qmp_has_migrate_capability(q, "no-such-cap", &e) == 0, "no-such-cap");
    /* A reply of a few hundred KB. */
    json_t *schema = NULL;
    CHECK(qmp_execute(q, "query-qmp-schema", NULL, &schema, &e) == 0, "%s", e.msg);
    CHECK(json_array_size(schema) > 100, "schema of %zu entries", json_array_size(schema));
    json_decref(schema);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: qmp_qemu SOCKET QEMU-PID\n");
        return 2;
    }
    struct qmp_opts opts = { .timeout_s = 30, .debug = getenv("VMSNAP_QMP_DEBUG") != NULL };
    vs_err e = { 0 };
    QMP_AUTOCLOSE struct qmp *q = NULL;
    if (qmp_connect(argv[1], &opts, &q, &e) < 0) {
        fprintf(stderr, "FAIL connect: %s\n", e.msg);
        return 1;
    }
    check_greeting(q, (pid_t)atoi(argv[2]));
    check_stop_cont(q);
    check_errors(q);
    check_fds(q);
    check_features(q);
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
