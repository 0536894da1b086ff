/* blkcap: disks of a running VM captured into archive disk streams. Point-in-time views come from QEMU's block
 * layer or libvirt's backup jobs, exported over NBD; they are read here with libnbd. Prefix: bc_. */
#ifndef VMSNAP_BLKCAP_H
#define VMSNAP_BLKCAP_H

#include <stdbool.h>
#include <stdint.h>
#include "archive/archive.h"
#include "qmp/qmp.h"
#include "util/util.h"

struct bc_copy_opts {
    const char *bitmap;       /* NULL: read every allocated extent (base:allocation; holes become zero blocks);
                                 else read only the extents dirty in meta context "qemu:dirty-bitmap:<bitmap>",
                                 everything else keeps the writer's base (a thin archive's reference) */
    unsigned in_flight;       /* NBD requests in flight, 0 = 8 */
    uint32_t request_bytes;   /* bytes per read request, 0 = 1 MiB (capped by the server's maximum) */
    bool (*cancelled)(void *opaque);                       /* polled; true stops with -ECANCELED */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    void *opaque;
};

struct bc_copy_stats {
    uint64_t size;            /* the export's size */
    uint64_t data_bytes;      /* read and written */
    uint64_t zero_bytes;      /* holes / zeros: written as zero blocks without reading */
    uint64_t skipped_bytes;   /* clean in the bitmap: left to the writer's base */
};

/* Connect to the NBD server at socket_path (a Unix socket's path, or tcp:HOST:PORT), export export_name, read-only; begin a stream
 * (ARC_KIND_DISK, stream, the export's size) in w, write the export into it in order with several reads in
 * flight, end the stream. The server's replies are checked (extents inside the export and non-empty); a missing
 * meta context (the bitmap) is an error naming it. st may be NULL. */
int bc_nbd_copy(const char *socket_path, const char *export_name, struct arc_writer *w, const char *stream,
                const struct bc_copy_opts *o, struct bc_copy_stats *st, vs_err *e);

/* ---- an NBD server that a QEMU runs already (nbdfind.c) ------------------------------------------------------
 * Where it listens, which QMP does not tell: the one of QEMU's listening sockets (its chardevs left alone) that
 * lists export_name, an export the caller added under a name nobody else can know. *addr (malloc'd) is a Unix
 * socket's path or tcp:HOST:PORT, as bc_nbd_copy takes it. Fails naming each socket tried and what it was: no NBD
 * server, one that requires TLS, one without that export. */
int bc_nbd_find(struct qmp *q, const char *export_name, char **addr, vs_err *e);
/* Within blkcap: connect h to such an address, libnbd's way (-1, nbd_get_error), aio or not. */
struct nbd_handle;
int bc__nbd_connect(struct nbd_handle *h, const char *addr, bool aio);

/* ---- the disks of a running QEMU (disks.c) ----------------------------------------------------------------
 * From query-block: every device with a medium, in QEMU's order. -drive VMs have generated node names
 * ("#block123"), -blockdev VMs have no BlockBackend name. */
struct bc_disk {
    char *name;        /* the device's qdev id, else its BlockBackend (drive) name, else its node: what --disks takes */
    char *qdev;        /* query-block's qdev: the id or QOM path whose "drive" property qom-set changes; NULL: a
                        * medium attached to no device */
    char *device;      /* qdev id, or the QOM path of the device (a virtio-blk-pci, not its virtio-backend) */
    char *interface;   /* the device's driver: virtio-blk-pci, scsi-hd, ide-hd, ... */
    char *node;        /* node-name the device's drive points to */
    char *drive;       /* BlockBackend name (-drive id), NULL for a -blockdev device */
    char *driver;      /* the node's driver: qcow2, raw, ... (a persistent dirty bitmap needs qcow2) */
    uint64_t size;
    bool read_only;
};
struct bc_disks {
    size_t n;
    struct bc_disk *d;
};
void bc_disks_free(struct bc_disks *d);
void bc_disks_freep(struct bc_disks *d);
#define BC_DISKS_AUTOFREE __attribute__((cleanup(bc_disks_freep)))
/* Read the VM's disks (query-block; qom-get of each device's type). */
int bc_disks_query(struct qmp *q, struct bc_disks *out, vs_err *e);
/* Keep the disks to capture, in QEMU's order: those named in list ("vda,sdb"; NULL: every writable one). Read-only
 * disks are dropped and named in *skipped (malloc'd, comma-separated, NULL when none). A name in list that is not
 * a disk, or is read-only, is refused naming the disks there are; so is a chosen writable medium attached to no
 * device (nothing to put a filter in front of). */
int bc_disks_select(struct bc_disks *d, const char *list, char **skipped, vs_err *e);

/* ---- point-in-time views of a running QEMU's disks (fleece.c) -----------------------------------------------
 * Per disk: a fleecing target of vmsnap's own (a qcow2 that QEMU creates on a file vmsnap opened, unlinked and
 * handed over with add-fd, in dir), a copy-before-write filter over the disk's node (cbw-timeout,
 * on-cbw-error=break-snapshot: a guest write never fails or waits long because of vmsnap, the view breaks
 * instead), put in front of the device with qom-set of its "drive" property, then a snapshot-access node exported
 * read-only over NBD on a 0600 socket in dir (a listening socket vmsnap made, passed with getfd), or on the NBD
 * server the VM runs already (its manager's: it stays, only vmsnap's exports come and go). Everything is named
 * vmsnap-<tag>-<i>-*, each export under a name with a random part; end removes all of it in reverse order,
 * whatever happened before. */
struct bc_fleece;
/* Before the pause: the NBD server started, or the one QEMU runs found (bc_nbd_find, through a probe export of an
 * empty node; refused naming why when vmsnap cannot read through it, e.g. TLS), targets and filters added (not yet
 * in the guest's path). On failure nothing is left. d's strings are borrowed: d must outlive f. */
int bc_fleece_prepare(struct qmp *q, const struct bc_disks *d, const char *dir, struct bc_fleece **out, vs_err *e);
/* The instant (the VM stopped): each device's drive moved onto its filter. */
int bc_fleece_insert(struct bc_fleece *f, vs_err *e);
/* After the pause: each view exported and copied into stream "disk<i>" of w (i in the order of d). */
int bc_fleece_copy(struct bc_fleece *f, struct arc_writer *w, const struct bc_copy_opts *o, vs_err *e);
/* Remove everything added, in reverse order; every step is tried. 0, or the first failure (QEMU's words). */
int bc_fleece_end(struct bc_fleece *f, vs_err *e);
/* Ends it if not ended (errors dropped) and frees it. NULL is fine. */
void bc_fleece_free(struct bc_fleece *f);
void bc_fleece_freep(struct bc_fleece **f);
#define BC_FLEECE_AUTOFREE __attribute__((cleanup(bc_fleece_freep)))
/* Incremental captures, before bc_fleece_insert: at the instant each disk gets dirty bitmap `next` (persistent on
 * qcow2), which tells the next capture what changed since this one; when every disk has a recording, consistent
 * bitmap `prev` (may be NULL), the copy reads only what it marks. Returns whether it will; else *missing (malloc'd)
 * names the disks without it. */
int bc_fleece_bitmaps(struct bc_fleece *f, const char *next, const char *prev, char **missing, vs_err *e);
/* Once the archive is durable: keep `next`, remove every other vmsnap-* bitmap of the disks (stale: the chain has
 * moved on). Without it, freeing f removes `next`. */
int bc_fleece_commit(struct bc_fleece *f, vs_err *e);
/* Seconds the pause spent in bc_fleece_insert. */
double bc_fleece_insert_s(const struct bc_fleece *f);
/* Bytes of data bc_fleece_copy read from the views (holes and, incrementally, clean areas are not read). */
uint64_t bc_fleece_read_bytes(const struct bc_fleece *f);

#endif
