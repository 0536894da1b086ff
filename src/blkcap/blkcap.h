/* blkcap: disks of a running VM captured into archive disk streams. Point-in-time views come from QEMU's block
 * layer or libvirt's backup jobs, exported over NBD; they are read here with libnbd. Prefix: bc_. */
#ifndef VMSNAP_BLKCAP_H
#define VMSNAP_BLKCAP_H

#include <stdbool.h>
#include <stdint.h>
#include "archive/archive.h"
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

/* Connect to the NBD server on the Unix socket socket_path, export export_name, read-only; begin a stream
 * (ARC_KIND_DISK, stream, the export's size) in w, write the export into it in order with several reads in
 * flight, end the stream. The server's replies are checked (extents inside the export and non-empty); a missing
 * meta context (the bitmap) is an error naming it. st may be NULL. */
int bc_nbd_copy(const char *socket_path, const char *export_name, struct arc_writer *w, const char *stream,
                const struct bc_copy_opts *o, struct bc_copy_stats *st, vs_err *e);

#endif
