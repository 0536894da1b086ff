/* qmp: private declarations shared by the files of the component (not for other components). */
#ifndef VMSNAP_QMP_PRIV_H
#define VMSNAP_QMP_PRIV_H

#include "qmp/qmp.h"

struct qmp_event_node {
    json_t *msg;
    struct qmp_event_node *next;
};

struct qmp_libvirt;

struct qmp {
    int fd;                     /* -1 for a libvirt handle */
    struct qmp_libvirt *lv;     /* non-NULL: commands and events travel through libvirt (libvirt.c) */
    char *name;                 /* socket path, for messages */
    double timeout_s;
    size_t max_message;
    bool debug;
    pid_t peer_pid;
    uid_t peer_uid;

    json_t *greeting;           /* the {"QMP": ...} member */
    int version[3];
    int64_t next_id;

    /* Receive buffer: bytes [start, len) are unconsumed; scanning has reached 'scan'. While depth > 0
     * a message that began at 'start' is incomplete. */
    char *buf;
    size_t len, cap, start, scan;
    int depth;
    bool in_str, esc;

    /* A broken stream (peer gone, garbage, oversize) can never resync: later calls fail with this. */
    vs_err dead;

    struct qmp_event_node *ev_head, *ev_tail;
    size_t ev_count, ev_dropped;

    char *err_class, *err_desc;  /* of the last error reply */

    json_t *commands;            /* feature detection caches: objects used as sets */
    json_t *migrate_caps;
};

/* ---- conn.c ---- */
/* A handle with the common fields set from opts; fd (may be -1) is owned by it. */
struct qmp *qmp__alloc(int fd, const char *name, const struct qmp_opts *opts);

/* ---- libvirt.c: the libvirt transport (stubs without libvirt) ---- */
/* Run one command (text: a JSON object without "id") through libvirt, fd attached if >= 0; *reply gets the whole
 * reply object ("return" or "error" checked by the caller). */
int qmp__lv_exchange(struct qmp *q, const char *cmd, const char *text, int fd, json_t **reply, vs_err *e);
/* Next event libvirt delivered, running its event loop until deadline: as qmp__read_message. */
int qmp__lv_read_event(struct qmp *q, double deadline, const char *what, json_t **msg, vs_err *e);
void qmp__lv_close(struct qmp *q);

/* ---- wire.c: framing, reading and sending ---- */
/* Absolute deadline (vs_now_s) for a wait of timeout_s (< 0: the connection's). */
double qmp__deadline(const struct qmp *q, double timeout_s);
/* Next complete message. 1: *msg set; 0: deadline passed; < 0: connection broken (q->dead set).
 * 'what' completes "connection closed by QEMU while waiting for <what>". */
int qmp__read_message(struct qmp *q, double deadline, const char *what, json_t **msg, vs_err *e);
/* Send len bytes, the first ones together with fd (SCM_RIGHTS) if fd >= 0. */
int qmp__send(struct qmp *q, const char *data, size_t len, int fd, double deadline, const char *what,
              vs_err *e);
/* Fail with the stored error if the connection is broken. */
int qmp__check_alive(struct qmp *q, vs_err *e);
int qmp__kill(struct qmp *q, vs_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void qmp__log(const struct qmp *q, char dir, const char *data, size_t len);

/* ---- event.c ---- */
/* Queue msg (reference stolen) if it is an event; 1 if it was one, 0 otherwise. */
int qmp__maybe_queue_event(struct qmp *q, json_t *msg);
void qmp__free_events(struct qmp *q);

#endif
