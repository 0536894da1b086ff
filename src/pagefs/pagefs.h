/* pagefs: guest RAM served on demand. Prefix: pf_.
 *
 * A FUSE mount holding one read-only file per RAM block, whose reads come from a page source callback (the
 * archive's RAM streams; a local page image). QEMU maps such a file privately as the guest's RAM
 * (`memory-backend-file,share=off`): pages are read on first touch, the guest's writes stay in QEMU's private
 * copy. QEMU 7.2 opens the file O_RDWR even with share=off, so opens for writing are accepted; writes are
 * refused (a private mapping never writes back). A source error fails the read: the faulting QEMU gets SIGBUS
 * and dies rather than run on wrong data. Needs libfuse3 at build time (pf_available()). The pages themselves
 * come from memstore (an archive's RAM streams, a local page image) or any other source. */
#ifndef VMSNAP_PAGEFS_H
#define VMSNAP_PAGEFS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include "archive/archive.h"
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
    /* The working set fetched first (pf_prefetch_first), once that phase ended: */
    uint64_t ws_bytes;             /* bytes of its ranges that were in the page cache then (fetched or read before) */
    uint64_t ws_fetched;           /* bytes that phase read (ranges merged into larger reads: gaps included) */
    uint64_t ws_requests;          /* reads it made */
    double ws_done_s;              /* seconds it took, else 0 */
    double ws_start_s;             /* when it started (vs_now_s) */
};

/* A range of file `file` (its index in the mount). */
struct pf_range { unsigned file; uint64_t off, len; };
#define PF_RECORD_MAX (1u << 20)   /* ranges a recording keeps */

struct pf_mount;
bool pf_available(void);           /* built with libfuse3 */
/* Mount files on dir (an existing empty directory) and serve them from a thread until pf_unmount(). */
int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e);
void pf_unmount(struct pf_mount *m);   /* NULL is fine */
/* For a process that exits right after: unmount (lazily: a mapping left keeps its pages until the kernel aborts the
 * connection when the process's /dev/fuse fd closes) without waiting for the server threads, whose reads of
 * /dev/fuse may end only once every user of the file system is gone. */
void pf_unmount_exiting(struct pf_mount *m);
void pf_get_stats(struct pf_mount *m, struct pf_stats *out);
/* Start warming the files' page cache in the background (call once the VM runs): each file's data runs in
 * offset order, 1 MiB at a time, read through the page source by a thread at idle CPU and I/O priority that
 * waits while demand reads are in flight, and handed to the kernel with FUSE notify_store (no user memory beyond
 * one chunk; the page cache is reclaimable and refilled on demand). Ranges already read on demand are skipped;
 * holes are left to demand reads. Stops at pf_unmount(); an error stops only the prefetch (pf_stats). */
int pf_prefetch_start(struct pf_mount *m, vs_err *e);
/* Before pf_prefetch_start: a working set (copied) that the prefetch fetches first, in this order, at normal
 * priority and without waiting for demand reads (the guest is about to ask for exactly these pages): ranges
 * rounded to 64 KiB, near ones merged into reads of up to 4 MiB, 4 in flight (4 buffers of 4 MiB while that
 * phase runs); then the rest as above. Ranges outside the files are dropped. */
void pf_prefetch_first(struct pf_mount *m, const struct pf_range *r, size_t n);
/* After pf_prefetch_first, before the VM runs: fetch the working set now (QEMU's start and device-state load
 * overlap it; the files are opened here so that the kernel knows them); the rest waits for pf_prefetch_start.
 * Without a working set, nothing. */
int pf_prefetch_ws_start(struct pf_mount *m, vs_err *e);
/* Merge ranges in their order: a range that overlaps or lies within gap bytes of the current read (same file)
 * extends it while it stays within max bytes; else it starts the next read. *out (malloc'd): the reads. */
size_t pf_plan_merge(const struct pf_range *in, size_t n, uint64_t gap, uint64_t max, struct pf_range **out);

/* Recording (call right after pf_mount, before anything reads): the ranges the kernel asks for are kept in order of
 * first touch, page-aligned, each page once (a read that repeats pages keeps only its new ones); demand reads are
 * then served as asked (not widened to 64 KiB, which would hide the neighbouring pages' first touch). At most
 * PF_RECORD_MAX ranges: past that the recording stops (*truncated). */
void pf_record_start(struct pf_mount *m);
/* Stop recording and take the ranges (malloc'd, *n of them; NULL when none). */
void pf_record_stop(struct pf_mount *m, struct pf_range **out, size_t *n, bool *truncated);
/* What the guest touched, not what readahead brought: QEMU maps its RAM with MADV_HUGEPAGE, for which the kernel
 * reads 4 MiB around every fault whatever the mount's readahead (max_readahead 0 and PR_SET_THP_DISABLE change
 * nothing), so a recording's reads are mostly pages nobody used. The pages a process has mapped (present or
 * swapped) are the ones it touched, plus the kernel's fault-around (up to 64 KiB around a fault, of pages already
 * in the page cache). pf_mapped: per file of the mount on dir, one bit per page that process pid maps (malloc'd,
 * pf_mapped_free). pf_record_keep: the recorded ranges, in their order, cut to the pages set in keep[file]. */
int pf_mapped(int pid, const char *dir, const struct pf_file *files, unsigned n, uint64_t ***out, vs_err *e);
void pf_mapped_free(uint64_t **maps, unsigned n);
size_t pf_record_keep(const struct pf_range *in, size_t n, uint64_t *const *keep, struct pf_range **out);
/* ---- an archive's RAM streams as page files ------------------------------------------------------------- */
/* One pf_file per RAM stream of a (held open) archive (memstore's mst_ram_streams), reading through arc_pread. */
int pf_archive_files(struct arc *a, struct pf_file **files, unsigned *n, vs_err *e);
void pf_archive_files_free(struct pf_file *files, unsigned n);

#endif
