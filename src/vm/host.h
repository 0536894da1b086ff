/* vm: private to the boot host's files — host.c (event loop), host_setup.c (the VM's start and end),
 * host_snap.c (snapshots on request). The control protocol they serve is control.c's (vm.h). */
#ifndef VMSNAP_VM_HOST_H
#define VMSNAP_VM_HOST_H

#include "crypt/crypt.h"
#include "vm/vm.h"
#include "memstore/memstore.h"
#include "pagefs/pagefs.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* One disk of the archive, served to QEMU from an overlay on it. */
struct host_disk {
    struct nbd_overlay *ovl;
    struct nbd_server *srv;
    char *sock;                    /* the NBD socket QEMU connects to */
    char *name;                    /* the archive's disk stream */
    uint64_t size;
    uint32_t parent_seq;           /* layers up to this one are in the parent chain of the next --thin snap */
    uint32_t frozen_seq;           /* the layer frozen by the snapshot under way */
};

struct host {
    const struct vm_host_opts *o;
    struct vm_state st;
    struct arc *arc;
    size_t ndisks;
    struct host_disk *disks;
    char *files[VM_FILE__COUNT];   /* usable paths of the VM's start files (extracted copies or originals) */
    bool extracted[VM_FILE__COUNT];   /* in the parent chain of the next --thin snap */
    struct vm_xfile *xfiles;       /* config.xfiles with usable paths (run-dir copies or originals) */
    bool *x_in_chain;              /* stored in the archive chain (read-only ones need no new copy in a thin snap) */
    bool *x_extracted;             /* a copy in the run directory, removed at the end */
    struct qmp *q;
    struct stat user_sock[2];      /* the user's --qmp and --console sockets as QEMU made them (st_ino 0: unknown) */
    pid_t qemu;
    int qemu_status;
    bool qemu_exited;
    int sigfd, ctl;
    int client;                    /* snap client during a snapshot */
    bool quit_requested;
    char *qemu_log;
    /* memory stored as pages (mst_capture_fd) */
    bool paged, lazy;
    int pages_fd;                  /* lazy: connection to the shared page server (host_pages.c), else -1 */
    char *pages_dir, *mem_path;    /* RUNDIR/pages (a link to the server's mount), QEMU's RAM file in it */
    char pages_error[512];         /* what the page server reported ("" if nothing) */
    pid_t pages_pid;               /* the page server (SO_PEERCRED) */
    char clone_id[37];             /* this boot's id */
    char **macs;                   /* the MACs given to the recorded NICs */
    size_t n_macs;
    char memory_note[512];         /* why paged memory is resumed eagerly */
    size_t user_extra_from;        /* config.extra[i >= this] came from this boot's own "-- ARGS" */
    char *trusted;                 /* what --trust-archive let through unchecked, NULL if nothing */
    pthread_t prefetch;            /* --prefetch all (host_prefetch.c) */
    bool prefetching;
    atomic_bool prefetch_stop;
    char *replay_notes;            /* what of a foreign command line only its managing process provided */
    char *disks_note;              /* a foreign VM's disks not captured and not replayed (vm_foreign_disks) */
    uint64_t ws_ranges, ws_pages;  /* the archive's working set (fetched first by the prefetch), 0: none */
    char ws_note[600];             /* why the archive's working set is not used ("" if it is, or there is none) */
    double running_s;              /* when the VM ran (vs_now_s), for the ws prefetch's timing */
    json_t *ws_report;             /* VM_WS_REPORT's content: what the recording and the ws prefetch reported */
    struct cr_key key;             /* the key of the archive the VM runs on (has_key), also sealing its snaps */
    bool has_key;
};
/* The host's key for readers and writers, or NULL. */
static inline const struct cr_key *host_key(const struct host *h) { return h->has_key ? &h->key : NULL; }

/* ---- host.c ---- */
/* Trouble while the VM runs (any thread): one line to the boot's log callback and, for a detached boot (its
 * stderr is /dev/null), appended to the run directory's log, qemu.log, prefixed "vmsnap: ". */
void host_log(struct host *h, const char *msg);
/* host_log as an nbd_server_opts.log callback (opaque: the host). */
void host_log_cb(void *opaque, const char *msg);

/* ---- host_setup.c ---- */
/* Open the archive, check it, set up disks, files and memory, start QEMU and resume it. On failure the caller
 * still calls host_stop_qemu and host_cleanup. */
int host_start(struct host *h, vs_err *e);
void host_stop_qemu(struct host *h);
void host_cleanup(struct host *h);

/* ---- host_prefetch.c ---- */
/* Start fetching the archive chain into the block cache (the VM runs); stop and wait for it (before arc_close). */
void host_prefetch_start(struct host *h);
void host_prefetch_stop(struct host *h);

/* ---- host_pages.c ---- */
/* Reach the page server of h->arc (starting it, a fork, if none runs; before the NBD servers' threads exist), keep
 * a reference on it, and set mem_path and pages_dir. */
int host_pages_attach(struct host *h, vs_err *e);
/* The VM runs: the server holds on to its QEMU (a reference that outlives us), and starts the prefetch if asked. */
int host_pages_running(struct host *h, bool prefetch, vs_err *e);
/* Read what the server said (non-blocking): an error into pages_error, a note into memory_note, the working set
 * recorded or prefetched into ws_report (written to the run directory, and logged). */
void host_pages_poll(struct host *h);
void host_pages_detach(struct host *h);

/* ---- host_snap.c ---- */
/* Take the snapshot rq asks for (vm_ctl_snap_fn; opaque is the host): the result object, or NULL and *e. */
json_t *host_snap(void *opaque, const struct vm_snap_request *rq, vs_err *e);

#endif
