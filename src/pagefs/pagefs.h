/* pagefs: guest RAM served on demand. Prefix: pf_.
 *
 * - A FUSE mount holding one read-only file per RAM block, whose reads come from a page source callback (the
 *   archive's RAM streams; a local page image). QEMU maps such a file privately as the guest's RAM
 *   (`memory-backend-file,share=off`): pages are read on first touch, the guest's writes stay in QEMU's private
 *   copy. QEMU 7.2 opens the file O_RDWR even with share=off, so opens for writing are accepted; writes are
 *   refused (a private mapping never writes back). A source error fails the read: the faulting QEMU gets SIGBUS
 *   and dies rather than run on wrong data. Needs libfuse3 at build time (pf_available()).
 * - A page image: a local, checksummed sparse copy of RAM blocks (a directory with blocks.json, one sparse file
 *   and one checksum file per block), written by the migration stream splitter. For tests and a local store;
 *   docs/LAZY-RESUME.md says how the archive takes its place. */
#ifndef VMSNAP_PAGEFS_H
#define VMSNAP_PAGEFS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include "archive/archive.h"
#include "migstream/migstream.h"
#include "util/util.h"

#define PF_PAGE_SIZE 4096u

/* ---- FUSE page files ----------------------------------------------------------------------------------- */
struct pf_file {
    const char *name;              /* file name in the mount (no '/') */
    uint64_t size;
    /* Fill buf with [off, off+len) (within size, page aligned unless at the end). Thread-safe. */
    int (*read)(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e);
    /* Optional, for prefetch: *len (in: the most wanted, > 0) bytes from off all zero (*zero) or all data. */
    int (*data_run)(void *opaque, uint64_t off, uint64_t *len, bool *zero, vs_err *e);
    void *opaque;
};

struct pf_stats {
    uint64_t reads, bytes, errors; /* demand reads (the kernel asking for pages QEMU faulted on, + readahead) */
    char first_error[512];         /* "" if none */
    uint64_t prefetched;           /* bytes the prefetcher stored in the page cache */
    double prefetch_done_s;        /* seconds the prefetch took once finished, else 0 */
    char prefetch_error[512];      /* why the prefetch stopped early ("" if it did not) */
};

struct pf_mount;
bool pf_available(void);           /* built with libfuse3 */
/* Mount files on dir (an existing empty directory) and serve them from a thread until pf_unmount(). */
int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e);
void pf_unmount(struct pf_mount *m);   /* NULL is fine */
void pf_get_stats(struct pf_mount *m, struct pf_stats *out);
/* Start warming the files' page cache in the background (call once the VM runs): each file's data runs in
 * offset order, 1 MiB at a time, read through the page source by a thread at idle CPU and I/O priority that
 * waits while demand reads are in flight, and handed to the kernel with FUSE notify_store (no user memory beyond
 * one chunk; the page cache is reclaimable and refilled on demand). Ranges already read on demand are skipped;
 * holes are left to demand reads. Stops at pf_unmount(); an error stops only the prefetch (pf_stats). */
int pf_prefetch_start(struct pf_mount *m, vs_err *e);

/* ---- page image --------------------------------------------------------------------------------------- */
struct pf_image;
struct pf_image_block { char name[256]; uint64_t size; };

/* Create dir/ (must not exist) for these blocks. */
int pf_image_create(const char *dir, const struct pf_image_block *b, unsigned n, struct pf_image **out,
                    vs_err *e);
/* Write page off of block i (data NULL: zero page, a hole). */
int pf_image_put(struct pf_image *im, unsigned i, uint64_t off, const void *data, vs_err *e);
/* fsync the files, write blocks.json (temp name + rename): the image is complete. */
int pf_image_commit(struct pf_image *im, vs_err *e);
int pf_image_open(const char *dir, struct pf_image **out, vs_err *e);
void pf_image_close(struct pf_image *im);
unsigned pf_image_blocks(const struct pf_image *im, const struct pf_image_block **b);
/* Read [off, off+len) of block i checking every page's checksum: a damaged page is -EIO naming it. */
int pf_image_read(struct pf_image *im, unsigned i, void *buf, size_t len, uint64_t off, vs_err *e);
/* Whether page off of block i was never written or written as zero. */
bool pf_image_is_zero(struct pf_image *im, unsigned i, uint64_t off);


/* ---- RAM in an archive ---------------------------------------------------------------------------------- */
#define PF_ARC_RAM_PREFIX "ram/"           /* stream "ram/<idstr>": one RAM block, page-addressed */
#define PF_ARC_DEVICE "memory-device"      /* the migration stream without the split blocks' pages */
/* One pf_file per RAM stream of a (held open) archive, reading through arc_pread. */
int pf_archive_files(struct arc *a, struct pf_file **files, unsigned *n, vs_err *e);
void pf_archive_files_free(struct pf_file *files, unsigned n);
/* Eager restore from such an archive: write the complete migration stream (the device stream with the RAM
 * streams' non-zero pages put back, ms_reassemble) to out_fd, e.g. the pipe QEMU loads from. Every page read
 * is checked against its block's checksum. */
int pf_archive_reassemble(struct arc *a, int out_fd, struct ms_summary *sum, vs_err *e);
/* Whether the archive holds memory as pages (a PF_ARC_DEVICE stream). */
bool pf_archive_is_paged(struct arc *a);
/* Write each block of the image as a RAM stream (zero pages as zero blocks). The caller adds PF_ARC_DEVICE. */
int pf_image_to_archive(struct pf_image *im, struct arc_writer *w, vs_err *e);

/* ---- capture: a migration stream into an archive, page-addressed ------------------------------------------ */
struct pf_capture_opts {
    const char *split;             /* RAM block to store as pages; NULL: "mem", else "pc.ram", else the largest */
    size_t hold_bytes;             /* bound on partial RAM blocks held (arc_writer_begin_unordered); 0 = 64 MiB */
    const char *tmpdir;            /* where the device stream is spilled (unlinked file); NULL = /var/tmp */
};
struct pf_capture_result {
    bool paged;                    /* false: stored as the opaque "memory" stream (see note) */
    char note[512];                /* why the stream was stored opaque; when paged, what part of it the device
                                    * stream keeps as QEMU sent it ("" if none) */
    char block[256];               /* the RAM block stored as pages */
    uint64_t ram_size;
    uint64_t stream_bytes;         /* bytes read from fd */
    struct ms_summary sum;         /* the splitter's summary (paged) */
};
/* Read a migration stream from fd until EOF into w (no stream open): the RAM block as stream
 * PF_ARC_RAM_PREFIX<idstr> (unordered: pages as QEMU sends them, zero pages elided, thin against the base's
 * stream of that name) and then PF_ARC_DEVICE. If the splitter refuses the stream before it committed (no page
 * stored yet), everything is stored as the opaque kind-memory stream "memory" instead: returns 0 with
 * res->paged false and res->note saying why (the caller warns). Something not understood after that keeps the
 * rest of the stream in PF_ARC_DEVICE as it came (res->paged true, res->note says so; it restores the same). A
 * malformed stream or an error fails (the caller aborts the archive: a snapshot is never half paged). Memory: hold_bytes + the RAM index (32 bytes per
 * 64 KiB) + up to 64 MiB of raw bytes before the commit (in practice a few KB) + the splitter's tail. */
int pf_capture_fd(struct arc_writer *w, int fd, const struct pf_capture_opts *o, struct pf_capture_result *res,
                  vs_err *e);
/* The same, pushed: new, push the bytes as they come, finish at EOF (fills res), free. After a failed push the
 * capture refuses everything (the caller drains its input and aborts the archive). */
struct pf_capture;
int pf_capture_new(struct arc_writer *w, const struct pf_capture_opts *o, struct pf_capture **out, vs_err *e);
int pf_capture_push(struct pf_capture *c, const void *buf, size_t len, vs_err *e);
int pf_capture_finish(struct pf_capture *c, struct pf_capture_result *res, vs_err *e);
void pf_capture_free(struct pf_capture *c);   /* NULL is fine */

#endif
