/* A deliberately scriptable fake QMP server for fault injection: a thread that accepts one
 * connection on a Unix socket in a temporary directory and runs a script against it. Scripts never
 * use cmocka asserts (not thread-safe); they record what they saw in struct fake for the test. */
#ifndef FAKE_QMP_H
#define FAKE_QMP_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>

struct fake;
typedef void fake_script(struct fake *f, int fd);

struct fake {
    char dir[64];
    char path[100];
    int lfd;
    pthread_t th;
    fake_script *script;
    /* Filled by scripts. */
    int commands_seen;
    int queries;            /* count of query-commands / query-migrate-capabilities received */
    int received_fd;        /* fd received with SCM_RIGHTS, -1 if none */
    char note[256];         /* free text a script reports (e.g. what it read through a passed fd) */
};

void fake_start(struct fake *f, fake_script *script);
void fake_stop(struct fake *f);   /* joins the thread, removes the socket and directory */

/* Script helpers. */
void srv_send(int fd, const char *s);
void srv_send_bytewise(int fd, const char *s);
void srv_greeting(int fd);
/* Read one command line; returns it parsed (NULL at EOF). A passed fd goes to f->received_fd. */
json_t *srv_read_cmd(struct fake *f, int fd);
/* Reply to cmd with "return": ret_json (text). */
void srv_reply(int fd, json_t *cmd, const char *ret_json);
void srv_handshake(struct fake *f, int fd);
void srv_wait_eof(int fd);

#endif
