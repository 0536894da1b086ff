/* qops: QEMU operations driven over QMP — internal (qcow2) snapshot jobs, guest memory dumps,
 * run-state/migration status and dirty-rate measurement with a snapshot-time estimate. Prefix: qops_.
 *
 * Every operation takes a connected struct qmp (the caller owns it and closes it when the command ends),
 * detects what the QEMU offers at run time (query-commands, query-dump-guest-memory-capability, ...) and
 * leaves the VM running if it was running before, also on failure. Errors: negative errno + a vs_err
 * naming the socket, node, tag or file. The library prints nothing. */
#ifndef VMSNAP_QOPS_H
#define VMSNAP_QOPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmp/qmp.h"
#include "util/util.h"

/* ---- string vectors ---------------------------------------------------------------------------- */
struct qops_strv {
    char **v;
    size_t n;
};
void qops_strv_free(struct qops_strv *s);
/* "a, b, c" (malloc'd). */
char *qops_strv_join(const struct qops_strv *s, const char *sep);
bool qops_strv_has(const struct qops_strv *s, const char *x);

/* ---- run state --------------------------------------------------------------------------------- */
/* Remember whether the VM runs now; qops_runstate_restore sends "cont" if it ran and no longer does, and checks
 * that it runs again (qmp_resume). A VM that was paused stays paused. Both say what they saw, for reports. */
struct qops_runstate {
    bool was_running;
    char status[32];                 /* query-status before the operation */
    char status_after[32];           /* query-status after qops_runstate_restore ("" if it could not be read) */
    enum qmp_resumed_by resumed_by;  /* set by qops_runstate_restore */
};
int qops_runstate_save(struct qmp *q, struct qops_runstate *rs, vs_err *e);
int qops_runstate_restore(struct qmp *q, struct qops_runstate *rs, vs_err *e);

/* ---- block nodes and internal snapshots ------------------------------------------------------- */
struct qops_snapshot {
    char *tag;               /* the snapshot's name */
    char *id;                /* QEMU's numeric id ("1") */
    int64_t date_sec;        /* host wall clock when taken */
    int64_t date_nsec;
    uint64_t vmstate_size;   /* bytes of VM state held (0: disk-only snapshot) */
    int64_t vm_clock_ns;     /* guest clock at the snapshot */
};

struct qops_node {
    char *node;              /* node name (QEMU's "#blockNNN" when the user named none) */
    char *device;            /* block backend name, "" for -device ...,drive= without one */
    char *qdev;              /* device path, may be "" */
    char *drv;               /* format driver: "qcow2", "raw", ... */
    bool ro;
    struct qops_snapshot *snaps;
    size_t n_snaps;
};

struct qops_nodes {
    struct qops_node *v;
    size_t n;
};

/* The top node of every block backend with a medium (query-block), with its internal snapshots. */
int qops_nodes_query(struct qmp *q, struct qops_nodes *out, vs_err *e);
/* The same from a query-block reply (pure; entries without a medium are skipped). */
void qops_nodes_parse(const json_t *query_block, struct qops_nodes *out);
void qops_nodes_free(struct qops_nodes *n);
const struct qops_node *qops_nodes_find(const struct qops_nodes *n, const char *node);
/* A node with a snapshot named tag, or NULL. */
const struct qops_snapshot *qops_node_find_snapshot(const struct qops_node *n, const char *tag);
bool qops_drv_can_snapshot(const char *drv);

enum qops_internal_op { QOPS_SAVE, QOPS_LOAD, QOPS_DELETE };

struct qops_internal_opts {
    const char *vmstate;          /* node holding the VM state; NULL: the first selected device */
    const char *const *devices;   /* nodes to snapshot; NULL: every writable disk (all must be qcow2) */
    size_t n_devices;
    bool force_hmp;               /* use HMP savevm/loadvm/delvm even when the QMP jobs exist */
    double timeout_s;             /* whole operation; <= 0: no limit */
};

/* What was done, for the caller's report. */
struct qops_internal_result {
    bool used_hmp;
    char vmstate[128];
    size_t n_devices;
    double seconds;
    struct qops_runstate run;   /* the VM's run state before and after, and who resumed it */
};

/* Save, load or delete the internal snapshot tag. Checks beforehand what QEMU would refuse later (a node
 * that cannot hold snapshots, a tag that exists for save or is missing for load/delete) with a message
 * naming the node; then runs the snapshot-save/-load/-delete job (or HMP when the jobs are absent),
 * follows JOB_STATUS_CHANGE to "concluded", reads the job's error from query-jobs and dismisses it. */
int qops_internal(struct qmp *q, enum qops_internal_op op, const char *tag, const struct qops_internal_opts *o,
                  struct qops_internal_result *res, vs_err *e);

/* The plan behind qops_internal (pure): the nodes to cover in *sel and the VM-state node in *vmstate
 * (pointing into sel or o), or the error QEMU would give later, said earlier and naming the node. who names
 * the VM in messages (the socket path). */
int qops_internal_plan(const struct qops_nodes *nodes, const char *who, enum qops_internal_op op, const char *tag,
                       const struct qops_internal_opts *o, struct qops_strv *sel, const char **vmstate, vs_err *e);

/* Snapshot list as one JSON document {"devices":[{"device","node","format","snapshots":[...]}]} and as
 * human text (malloc'd). Pure functions of the node list. */
json_t *qops_nodes_json(const struct qops_nodes *n);
char *qops_nodes_text(const struct qops_nodes *n);

/* ---- guest memory dump ------------------------------------------------------------------------ */

/* Formats this QEMU can write (query-dump-guest-memory-capability). */
int qops_dump_formats(struct qmp *q, struct qops_strv *out, vs_err *e);

struct qops_dump_opts {
    const char *format;      /* "elf" (NULL), "kdump-zlib", "kdump-lzo", "kdump-snappy", "win-dmp" */
    bool paging;             /* follow the guest's page tables (ELF only) */
    double timeout_s;        /* <= 0: no limit */
    /* Called about twice a second while the dump runs (may be NULL). */
    void (*progress)(void *opaque, uint64_t completed, uint64_t total);
    void *opaque;
};

struct qops_dump_result {
    uint64_t total;          /* bytes of guest memory QEMU dumped */
    double seconds;
    struct qops_runstate run;   /* the VM's run state before and after, and who resumed it */
};

/* Dump guest memory into fd (a file the caller opened; QEMU gets a dup through getfd, never a path).
 * Runs detached: progress from query-dump, completion from DUMP_COMPLETED. QEMU stops the VM during
 * the dump; it runs again afterwards if it ran before. A format QEMU lacks is refused (-ENOTSUP) with
 * the list it has. */
int qops_dump(struct qmp *q, int fd, const struct qops_dump_opts *o, struct qops_dump_result *res, vs_err *e);

/* ---- status ----------------------------------------------------------------------------------- */
/* {"status","running","migration":{...}} from query-status and query-migrate, sizes in bytes and times
 * in seconds (QEMU's milliseconds converted); migration is {} when none ever ran. */
int qops_status(struct qmp *q, json_t **out, vs_err *e);
/* The same from the two replies (pure; used by qops_status and tests). */
json_t *qops_status_build(const json_t *query_status, const json_t *query_migrate);
/* Human text of a qops_status document (malloc'd, ends with a newline). */
char *qops_status_text(const json_t *doc);
/* True while a migration (or snapshot through migration) is under way. */
bool qops_migration_active(const char *migration_status);

/* ---- dirty rate and the snapshot-time estimate ------------------------------------------------ */
struct qops_dirty_rate {
    double mib_per_s;        /* as QEMU reports it (MiB/s) */
    int64_t calc_time_s;
    uint64_t sample_pages;
    char mode[32];
};
/* Start calc-dirty-rate over seconds (1..60) in page-sampling mode (the only mode that works without KVM
 * dirty tracking: the bitmap mode aborts a TCG QEMU 7.2). The measurement runs inside QEMU: the caller may
 * disconnect meanwhile and fetch the result later with qops_dirty_rate_result (-EAGAIN while measuring). */
int qops_dirty_rate_start(struct qmp *q, int seconds, vs_err *e);
int qops_dirty_rate_result(struct qmp *q, struct qops_dirty_rate *out, vs_err *e);
/* Both, waiting on the same connection. */
int qops_dirty_rate_measure(struct qmp *q, int seconds, struct qops_dirty_rate *out, vs_err *e);

/* What the estimate needs from the VM. */
struct qops_vm_facts {
    uint64_t ram_bytes;            /* query-memory-size-summary base-memory (+ plugged) */
    uint64_t max_bandwidth;        /* migration max-bandwidth, bytes/s (0: unknown) */
    double downtime_limit_s;       /* migration downtime-limit */
    bool has_background_snapshot;  /* capability present */
    /* From the last completed migration, if any (0 when none). */
    double last_bytes_per_s;       /* transferred / (total-time - setup-time) */
    double last_nonzero_fraction;  /* normal pages / (normal + duplicate) */
};
int qops_vm_facts_query(struct qmp *q, struct qops_vm_facts *out, vs_err *e);

struct qops_estimate_in {
    uint64_t ram_bytes;
    double nonzero_fraction;       /* share of RAM pages that are not zero, (0,1]; <= 0: 1 */
    double dirty_bytes_per_s;
    double throughput_bytes_per_s; /* how fast QEMU streams page data */
    double downtime_limit_s;       /* <= 0: QEMU's default 0.3 s */
    int max_rounds;                /* <= 0: 30 */
};

struct qops_estimate {
    double stop_total_s;     /* stop, save all RAM, cont: paused for all of it */
    double stop_pause_s;
    double live_total_s;     /* iterative precopy */
    double live_pause_s;     /* last round, VM stopped */
    uint64_t live_bytes;     /* page bytes sent over all rounds */
    int live_rounds;
    bool live_converges;     /* false: dirtying outpaces the stream; the pause is then a stop-and-copy of
                                what is still dirty after max_rounds */
    double bg_total_s;       /* background-snapshot: RAM once, write-faulted pages first */
    double bg_pause_s;       /* device state only: ~0 in this model */
};
/* The model (pure): see qops_estimate_model_text. */
void qops_estimate_compute(const struct qops_estimate_in *in, struct qops_estimate *out);
/* A paragraph explaining the model, for --help. */
#define QOPS_ESTIMATE_MODEL_TEXT\
    "Model: R = guest RAM, f = share of non-zero pages (1 unless a previous migration of this VM\n"\
    "measured it; zero pages cost almost nothing in the stream), D = dirty rate, T = throughput\n"\
    "(--throughput, else the byte rate of the last completed migration, else QEMU's max-bandwidth,\n"\
    "which caps a migration's stream and is 128 MiB/s unless changed), L = downtime-limit.\n"\
    "  stop mode (stop, save all RAM, cont): paused for the whole save, R*f/T.\n"\
    "  live (precopy): round 0 sends R*f in t0 = R*f/T; each later round sends what was dirtied during\n"\
    "  the previous one, min(R, D*t)/T; once a round would fit in L the VM stops for it: that is the\n"\
    "  pause. If D >= T the rounds never shrink: after 30 rounds the rest is sent stopped.\n"\
    "  background-snapshot: RAM sent once (R*f/T), the pause holds only device state (~0 here).\n"\
    "Estimates ignore device state and setup time and assume the dirty rate stays as measured.\n"

#endif
