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
#include "util/util.h"

#define PF_PAGE_SIZE 4096u

/* ---- FUSE page files ----------------------------------------------------------------------------------- */
struct pf_file {
    const char *name;              /* file name in the mount (no '/') */
    uint64_t size;
    /* Fill buf with [off, off+len) (within size, page aligned unless at the end). Thread-safe. */
    int (*read)(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e);
    void *opaque;
};

struct pf_stats {
    uint64_t reads, bytes, errors;
    char first_error[512];         /* "" if none */
};

struct pf_mount;
bool pf_available(void);           /* built with libfuse3 */
/* Mount files on dir (an existing empty directory) and serve them from a thread until pf_unmount(). */
int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e);
void pf_unmount(struct pf_mount *m);   /* NULL is fine */
void pf_get_stats(struct pf_mount *m, struct pf_stats *out);

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
/* Write each block of the image as a RAM stream (zero pages as zero blocks). The caller adds PF_ARC_DEVICE. */
int pf_image_to_archive(struct pf_image *im, struct arc_writer *w, vs_err *e);

#endif
