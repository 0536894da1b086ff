/* libFuzzer target: arbitrary bytes as everything a QMP server says (greeting, replies, events), fed
 * through a socketpair to a real client that connects, runs commands and waits for events. The peer
 * half-closes after the input, so no wait can block; what is checked is memory safety, bounded
 * buffering (a small max_message) and termination. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "qmp/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 100000)  /* must fit in the socket buffer: nobody reads the other end concurrently */
        return 0;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return 0;
    int big = 1 << 20;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (vs_write_full(sp[0], data, size) < 0 || shutdown(sp[0], SHUT_WR) < 0) {
        close(sp[0]);
        close(sp[1]);
        return 0;
    }
    struct qmp_opts opts = { .timeout_s = 5, .max_message = 8192, .debug = getenv("VMSNAP_QMP_DEBUG") != NULL };
    struct qmp *q = NULL;
    if (qmp_connect_fd(sp[1], "fuzz", &opts, &q, NULL) == 0) {
        json_t *v = NULL;
        if (qmp_execute(q, "x", NULL, &v, NULL) == 0)
            json_decref(v);
        while (qmp_pop_event(q, NULL, &v) == 1)
            json_decref(v);
        json_t *match = json_pack("{s:s}", "status", "concluded");
        if (qmp_wait_event(q, "JOB_STATUS_CHANGE", match, 0, &v, NULL) == 0)
            json_decref(v);
        json_decref(match);
        qmp_has_command(q, "migrate", NULL);
        qmp_has_migrate_capability(q, "background-snapshot", NULL);
        bool running;
        char st[16];
        qmp_query_status(q, &running, st, sizeof st, NULL);
        qmp_pump(q, NULL);
        qmp_close(q);
    }
    close(sp[0]);
    return 0;
}
