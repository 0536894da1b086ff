/* Fake QMP server (see fake_qmp.h). */
#include "fake_qmp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void *run(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    f->script(f, fd);
    close(fd);
    return NULL;
}

void fake_start(struct fake *f, fake_script *script)
{
    memset(f, 0, sizeof *f);
    f->received_fd = -1;
    f->script = script;
    snprintf(f->dir, sizeof f->dir, "/tmp/vmsnap-qmp-XXXXXX");
    if (!mkdtemp(f->dir))
        abort();
    snprintf(f->path, sizeof f->path, "%s/qmp.sock", f->dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, f->path, sizeof f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(f->lfd, 1) < 0)
        abort();
    if (pthread_create(&f->th, NULL, run, f))
        abort();
}

void fake_stop(struct fake *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
    if (f->received_fd >= 0)
        close(f->received_fd);
    unlink(f->path);
    rmdir(f->dir);
}

void srv_send(int fd, const char *s)
{
    size_t len = strlen(s), done = 0;
    while (done < len) {
        ssize_t n = send(fd, s + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;  /* the client went away; the test sees it from its side */
        done += n;
    }
}

void srv_send_bytewise(int fd, const char *s)
{
    for (; *s; s++) {
        if (send(fd, s, 1, MSG_NOSIGNAL) != 1)
            return;
        usleep(300);  /* let the client wake up for each byte */
    }
}

void srv_greeting(int fd)
{
    srv_send(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"fake\"}, "
                 "\"capabilities\": [\"oob\"]}}\r\n");
}

json_t *srv_read_cmd(struct fake *f, int fd)
{
    char line[65536];
    size_t len = 0;
    for (;;) {
        char c;
        struct iovec iov = { .iov_base = &c, .iov_len = 1 };
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = sizeof ctl.buf };
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            if (f->received_fd >= 0)
                close(f->received_fd);
            memcpy(&f->received_fd, CMSG_DATA(cm), sizeof(int));
        }
        if (c == '\n')
            break;
        if (len < sizeof line - 1)
            line[len++] = c;
    }
    line[len] = 0;
    f->commands_seen++;
    json_t *cmd = json_loads(line, 0, NULL);
    const char *ex = json_string_value(json_object_get(cmd, "execute"));
    if (ex && (!strcmp(ex, "query-commands") || !strcmp(ex, "query-migrate-capabilities")))
        f->queries++;
    return cmd ? cmd : json_object();
}

void srv_reply(int fd, json_t *cmd, const char *ret_json)
{
    json_t *ret = json_loads(ret_json, JSON_DECODE_ANY, NULL);
    json_t *r = json_pack("{s:o}", "return", ret ? ret : json_null());
    json_t *id = json_object_get(cmd, "id");
    if (id)
        json_object_set(r, "id", id);
    char *s = json_dumps(r, JSON_COMPACT);
    srv_send(fd, s);
    srv_send(fd, "\r\n");
    free(s);
    json_decref(r);
}

void srv_handshake(struct fake *f, int fd)
{
    srv_greeting(fd);
    json_t *cmd = srv_read_cmd(f, fd);
    srv_reply(fd, cmd, "{}");
    json_decref(cmd);
}

void srv_wait_eof(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}
