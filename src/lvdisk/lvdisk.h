/* lvdisk: the disks of a running libvirt domain, captured through libvirt's own pull-mode backup API. Prefix: lvd_.
 *
 * vmsnap never inserts block nodes behind libvirt's back: virDomainBackupBegin (with the domain stopped, in the
 * pause of the memory snapshot) makes libvirt open a scratch image per disk (empty qcow2 images vmsnap made, so
 * libvirt need not create them in the pause), start copy-before-write and serve every disk's point-in-time view
 * read-only over NBD on a Unix socket in a private directory. vmsnap reads them (bc_nbd_copy) and ends the job
 * (virDomainAbortJob), which stops the NBD server; then it removes the directory.
 * --thin uses libvirt checkpoints: every capture creates checkpoint "vmsnap-<archive uuid>" atomically with the
 * backup on the disks that can hold a persistent bitmap (qcow2); a thin capture reads only the blocks dirty since
 * its parent's checkpoint. Older vmsnap checkpoints are deleted once a capture succeeded. */
#ifndef VMSNAP_LVDISK_H
#define VMSNAP_LVDISK_H

#include "archive/archive.h"
#include "blkcap/blkcap.h"
#include "qmp/qmp.h"
#include "util/util.h"

#include <stdbool.h>
#include <stdint.h>

#define LVD_CHECKPOINT_PREFIX "vmsnap-"
#define LVD_NAME_MAX 64

/* One disk of the domain (live XML + query-block). */
struct lvd_disk {
    char name[LVD_NAME_MAX];     /* target dev: "vda" (what --disks takes) */
    char device[LVD_NAME_MAX];   /* libvirt's alias, the qdev id: "virtio-disk0" */
    char node[LVD_NAME_MAX];     /* node-name the device's drive points to: "libvirt-1-format" ("" if no medium) */
    char iface[LVD_NAME_MAX];    /* device driver: "virtio-blk-pci" */
    char format[32];             /* image format QEMU opened: "qcow2", "raw" */
    char stream[LVD_NAME_MAX + 8];   /* archive stream: "disk-vda" */
    uint64_t size;
    bool readonly;               /* read-only or no medium: never captured */
    bool capture;                /* selected for this snapshot */
    bool bitmap;                 /* can carry the new checkpoint (qcow2) */
    bool incremental;            /* has the parent checkpoint's bitmap: only its dirty blocks are read */
    struct bc_copy_stats stats;  /* what lvd_copy read */
};

/* One capture. Filled by lvd_plan, used from the pause to the end. */
struct lvd_backup {
    struct qmp *q;               /* borrowed: from qmp_connect_libvirt */
    size_t n;
    struct lvd_disk *disks;      /* every disk of the domain, in its XML order */
    char *dir;                   /* private directory of the NBD socket and scratch images, NULL until begin */
    char *socket;
    char checkpoint[64];         /* created by this capture ("" if no captured disk can hold one) */
    char parent_checkpoint[64];  /* used for incremental reads ("" for a full read) */
    bool begun;                  /* the backup job runs */
    bool checkpoint_made;        /* the checkpoint exists (until lvd_end keeps or deletes it) */
    char note[512];              /* skipped disks and full reads of a thin capture, for the user ("" if none) */
};

/* Find the domain's disks and select those to capture: every writable one, or the targets named in only
 * ("vda,vdb"; NULL: all). A name that is not a disk, or that names a read-only one, is refused; read-only disks
 * are skipped with a note. Refuses a domain without a writable disk to capture. Nothing is changed. */
int lvd_plan(struct qmp *q, const char *only, struct lvd_backup *b, vs_err *e);
/* --thin: the parent archive's checkpoint. Disks holding its bitmap are read incrementally; the rest (no
 * checkpoint, a raw image) are read in full (the thin writer keeps only what differs), said in b->note. */
int lvd_use_parent(struct lvd_backup *b, const uint8_t parent_uuid[16], vs_err *e);
/* In the pause (the domain stopped): start the pull-mode backup and the checkpoint "vmsnap-<uuid>". tmpdir: where
 * the private directory goes (NULL: $TMPDIR or /var/tmp); it belongs to the QEMU process's user, mode 0700. */
int lvd_begin(struct lvd_backup *b, const uint8_t uuid[16], const char *tmpdir, vs_err *e);
/* Read every captured disk into stream disk->stream of w. how (may be NULL): cancelled, progress (per disk),
 * opaque, in_flight, request_bytes for bc_nbd_copy; the bitmap is lvdisk's choice. */
int lvd_copy(struct lvd_backup *b, struct arc_writer *w, const struct bc_copy_opts *how, vs_err *e);
/* End the backup job, waiting until libvirt says it is over (the scratch images are gone then). Once the disks are
 * read: QEMU cannot end a migration (other than a background snapshot) while the job holds the disks. */
int lvd_stop_job(struct lvd_backup *b, vs_err *e);
/* End the backup job if it still runs and remove the private directory. ok: the archive was written, so older
 * vmsnap checkpoints are deleted; else this capture's checkpoint is. Safe to call when the job never began. The
 * first failure goes to *e; every step is tried. */
int lvd_end(struct lvd_backup *b, bool ok, vs_err *e);
void lvd_free(struct lvd_backup *b);

/* Pure pieces, for tests. */
/* The disks of a libvirt domain XML (<devices><disk> with <target dev> and <alias name>): malloc'd array. */
int lvd_parse_domain_xml(const char *xml, struct lvd_disk **out, size_t *n, vs_err *e);
/* The backup and checkpoint XML for b (checkpoint NULL when no captured disk can hold a bitmap). */
char *lvd_backup_xml(const struct lvd_backup *b, const char *dir);
char *lvd_checkpoint_xml(const struct lvd_backup *b);

#endif
