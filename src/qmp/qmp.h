/* qmp: a client for QEMU's QMP protocol over a Unix socket, or through libvirt. Prefix: qmp_.
 *
 * One struct qmp is one connection: greeting read and capabilities negotiated by qmp_connect, then
 * commands sent with an "id" and their replies matched by it. Events that arrive while waiting are queued
 * on the connection (oldest first, at most QMP_MAX_QUEUED_EVENTS; beyond that the oldest are dropped) and
 * handed out by qmp_wait_event / qmp_pop_event. Every wait has a deadline: a stalled or vanished QEMU yields
 * an error, never a hang. A handle is used by one thread at a time (no internal locking).
 *
 * Errors follow util.h: negative errno plus a one-line vs_err naming the socket. Distinct codes:
 *   -EREMOTEIO  QEMU answered with an error reply; qmp_error_class()/qmp_error_desc() give its class/desc
 *               and the message reads "QMP 'cmd' failed: Class: desc". The connection stays usable.
 *   -ETIMEDOUT  no reply/greeting/event within the timeout. The connection stays usable: a late reply is
 *               recognised by its id and discarded.
 *   -ECONNRESET QEMU closed the connection.                          } these three leave the connection
 *   -EPROTO     the peer sent something that is not QMP (bad JSON).  } broken: every later call fails
 *   -EMSGSIZE   one message exceeded opts.max_message (256 MiB).     } with the same error.
 *
 * JSON values are jansson's json_t. Arguments are borrowed; returned values are new references. */
#ifndef VMSNAP_QMP_H
#define VMSNAP_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"

#define QMP_DEFAULT_TIMEOUT_S 30.0
#define QMP_DEFAULT_MAX_MESSAGE (256u << 20)
#define QMP_MAX_QUEUED_EVENTS 4096

struct qmp;

struct qmp_opts {
    double timeout_s;    /* default wait for the greeting, each reply and each write; <= 0: 30 s */
    size_t max_message;  /* largest accepted message in bytes; 0: QMP_DEFAULT_MAX_MESSAGE */
    bool debug;          /* log traffic to stderr ("qmp SOCK > ..." / "< ..."); the CLI sets it from
                            VMSNAP_QMP_DEBUG=1 — the library reads no environment */
};

/* ---- connection ---------------------------------------------------------------------------- */
/* Connect to the QMP server listening at path, read the greeting, send qmp_capabilities.
 * opts may be NULL (defaults). *out is set only on success. */
int qmp_connect(const char *path, const struct qmp_opts *opts, struct qmp **out, vs_err *e);
/* Same over an already connected stream socket (ownership of fd passes to the handle, also on
 * failure). name is used in messages, e.g. "fd 5" or the socket path. */
int qmp_connect_fd(int fd, const char *name, const struct qmp_opts *opts, struct qmp **out, vs_err *e);
/* The monitor of a running libvirt domain (name or UUID) at libvirt URI uri (NULL: libvirt's default). libvirt
 * owns the domain's only monitor, so commands travel through virDomainQemuMonitorCommandWithFiles (fds
 * included, libvirt >= 8.2) and events through libvirt's QMP event callback; everything below works the same
 * except: qmp_fd is -1, qmp_send_raw is refused, a command's deadline is libvirt's own (its monitor timeout),
 * the greeting is built from query-version, and qmp_peer_pid is the domain's QEMU process when it runs on this
 * host (found from a vCPU thread and checked against its "-name guest=NAME"; -1 otherwise) while qmp_peer_uid
 * stays unknown. libvirt records the domain as tainted "custom-monitor". -ENOTSUP if built without libvirt. */
int qmp_connect_libvirt(const char *uri, const char *domain, const struct qmp_opts *opts, struct qmp **out,
                        vs_err *e);
/* The libvirt domain (a virDomainPtr) behind a handle from qmp_connect_libvirt, NULL for any other handle: for
 * libvirt's own API on the same connection (backups, checkpoints). Valid until qmp_close. */
void *qmp_libvirt_domain(const struct qmp *q);
/* The message of this thread's last libvirt error ("unknown libvirt error" if none), for such callers. */
const char *qmp_libvirt_error(void);
void qmp_close(struct qmp *q);   /* NULL is fine; drops queued events */
void qmp_closep(struct qmp **q);
#define QMP_AUTOCLOSE __attribute__((cleanup(qmp_closep)))

void qmp_set_timeout(struct qmp *q, double timeout_s);
double qmp_timeout(const struct qmp *q);
const char *qmp_name(const struct qmp *q);      /* the socket path (or name given to connect_fd) */
int qmp_fd(const struct qmp *q);                /* for poll(): readable means a message may be waiting */
/* Credentials of the process at the other end (SO_PEERCRED at connect); pid -1 if unknown. */
pid_t qmp_peer_pid(const struct qmp *q);
uid_t qmp_peer_uid(const struct qmp *q);

/* ---- what the QEMU offers ------------------------------------------------------------------ */
/* The greeting's {"QMP": {...}} object (borrowed). */
json_t *qmp_greeting(const struct qmp *q);
/* QEMU version from the greeting (always present: connect refuses a greeting without it). */
void qmp_version(const struct qmp *q, int *major, int *minor, int *micro);
bool qmp_version_at_least(const struct qmp *q, int major, int minor);
/* Feature detection, queried once per connection on first use (query-commands,
 * query-migrate-capabilities). Return 1 present, 0 absent, negative errno if the query failed. */
int qmp_has_command(struct qmp *q, const char *name, vs_err *e);
int qmp_has_migrate_capability(struct qmp *q, const char *name, vs_err *e);

/* ---- commands ------------------------------------------------------------------------------ */
/* Run cmd with args (a JSON object or NULL) and wait for its reply within the connection timeout.
 * On success *ret (if ret non-NULL) gets the "return" value. */
int qmp_execute(struct qmp *q, const char *cmd, json_t *args, json_t **ret, vs_err *e);
/* Same with an explicit timeout in seconds (<= 0: the connection's). */
int qmp_execute_timeout(struct qmp *q, const char *cmd, json_t *args, double timeout_s, json_t **ret,
                        vs_err *e);
/* Same, passing fd (SCM_RIGHTS) in the same sendmsg as the command's first bytes. fd is not closed. */
int qmp_execute_with_fd(struct qmp *q, const char *cmd, json_t *args, int fd, json_t **ret, vs_err *e);
/* Class and description of the last error reply (NULL if the last command did not get one). Valid
 * until the next command on q. */
const char *qmp_error_class(const struct qmp *q);
const char *qmp_error_desc(const struct qmp *q);

/* ---- file descriptors ---------------------------------------------------------------------- */
/* getfd: QEMU keeps a dup of fd under name (used as "fd:NAME" in migrate URIs). fd stays ours. */
int qmp_getfd(struct qmp *q, const char *name, int fd, vs_err *e);
int qmp_closefd(struct qmp *q, const char *name, vs_err *e);
/* add-fd: put a dup of fd in fd set fdset_id (< 0: a new set). *fdset_out / *fd_out (may be NULL)
 * receive QEMU's fdset-id and its fd number ("/dev/fdset/N" paths). opaque may be NULL. */
int qmp_add_fd(struct qmp *q, int fd, int64_t fdset_id, const char *opaque, int64_t *fdset_out,
               int64_t *fd_out, vs_err *e);

/* ---- events -------------------------------------------------------------------------------- */
/* Return the oldest queued event named name (NULL: any) whose "data" contains every member of match
 * (NULL: no condition; each member compared with json_equal), reading from QEMU
 * for up to timeout_s seconds (< 0: the connection's timeout, 0: no waiting, only what has arrived).
 * The event is removed from the queue; *event gets the whole message {"event","data","timestamp"}.
 * -ETIMEDOUT if none came. */
int qmp_wait_event(struct qmp *q, const char *name, const json_t *match, double timeout_s, json_t **event,
                   vs_err *e);
/* Take the oldest queued event named name (NULL: any) without reading: 1 and *event set, or 0. */
int qmp_pop_event(struct qmp *q, const char *name, json_t **event);
/* Read whatever QEMU has already sent, without blocking; queue its events. Returns 0 or negative errno. */
int qmp_pump(struct qmp *q, vs_err *e);
size_t qmp_queued_events(const struct qmp *q);
void qmp_drop_events(struct qmp *q);

/* ---- run state ----------------------------------------------------------------------------- */
/* query-status: *running as QEMU says; status (if non-NULL) gets e.g. "running", "paused",
 * "postmigrate", "inmigrate" (truncated to len). */
int qmp_query_status(struct qmp *q, bool *running, char *status, size_t len, vs_err *e);
int qmp_stop(struct qmp *q, vs_err *e);
int qmp_cont(struct qmp *q, vs_err *e);
/* Make the VM run, checked, never assumed: query-status; if it is not running, cont and query-status again.
 * *sent_cont (may be NULL) says whether a cont was needed. A VM still not running after the cont is an error
 * naming its status. */
int qmp_resume(struct qmp *q, bool *sent_cont, vs_err *e);
/* How an operation left the VM in the run state it had before: checked (query-status), never assumed. QEMU >= 9.0
 * puts a background snapshot's VM back into the state it had when `migrate` started (paused: vmsnap stopped it to
 * freeze the disks); 7.2 always resumes it. */
enum qmp_resumed_by {
    QMP_RESUMED_NOT_YET,   /* only while the operation runs */
    QMP_RESUMED_QEMU,      /* QEMU resumed it itself (7.2's background snapshot, savevm, dump-guest-memory) */
    QMP_RESUMED_VMSNAP,    /* vmsnap sent cont and saw it running */
    QMP_LEFT_PAUSED,       /* it was not running before: left as found */
};
const char *qmp_resumed_by_name(enum qmp_resumed_by r);   /* "qemu", "vmsnap", "left-paused-as-found" */

/* ---- for tests and debugging --------------------------------------------------------------- */
/* Send bytes as they are (no framing added). */
int qmp_send_raw(struct qmp *q, const void *buf, size_t len, vs_err *e);
/* Next reply-like message (anything that is not an event, id or not) within timeout_s (< 0: default);
 * events met on the way are queued. *msg gets a new reference. */
int qmp_recv_reply(struct qmp *q, double timeout_s, json_t **msg, vs_err *e);

#endif
