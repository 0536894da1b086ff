/* image: disk images as pack's input — raw files or block devices, and qcow2 (versions 2 and 3) read by our own
 * parser (no qemu-img, no shell). Gives the virtual size, reads at any offset and an allocation map, so pack
 * copies data and declares holes zero without ever making a temporary raw copy. Prefix: img_.
 *
 * qcow2 support: 512 B .. 2 MiB clusters, standard and extended L2 entries (subclusters), zero and unallocated
 * clusters, compressed clusters (zlib/deflate and zstd), a backing chain of raw/qcow2 files on request (relative
 * names resolve next to the image that names them). Refused with a clear error: encryption, external data files, the corrupt
 * bit, unknown incompatible feature bits (named, with the image's own feature name when it has one).
 * Every offset and length taken from the file is checked; a damaged image is an error naming the file, never a
 * crash. A handle is not thread-safe (tables and a decompressed cluster are cached in it). */
#ifndef VMSNAP_IMAGE_H
#define VMSNAP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

enum img_format { IMG_FORMAT_AUTO = 0, IMG_FORMAT_RAW = 1, IMG_FORMAT_QCOW2 = 2 };

const char *img_format_name(enum img_format f);                  /* "auto", "raw", "qcow2" */
int img_parse_format(const char *s, enum img_format *out);       /* "raw", "qcow2", "auto"; -EINVAL otherwise */

struct img;

/* How pack reads a disk. The format comes from the user, or from the file's name, never from the bytes alone: a
 * guest writes its raw disk's bytes, and a qcow2 header it writes there must not make the host read other files.
 * AUTO: qcow2 when the name ends in ".qcow2" (any case), which then must carry the qcow2 magic; raw otherwise.
 * Backing files are followed only when backing_dir is set, and only to regular files whose real path (symbolic
 * links and ".." resolved) lies inside backing_dir; with backing_dir NULL an image with a backing file is
 * refused, naming it. A backing file's format is the one its image records, else the same rule by its name. */
struct img_opts {
    enum img_format format;
    const char *backing_dir;
};
int img_open(const char *path, const struct img_opts *opts, struct img **out, vs_err *e);
/* The file was read as raw although it starts with the qcow2 magic (AUTO, not named .qcow2): worth a note. */
bool img_raw_with_qcow2_magic(const struct img *im);
/* An image held in memory (borrowed; must outlive the handle), for fuzzing and tests. Backing files are
 * refused (there is no directory to resolve them in). */
int img_open_mem(const void *buf, size_t len, const char *name, enum img_format fmt, struct img **out, vs_err *e);
void img_close(struct img *im);
void img_closep(struct img **im);
#define IMG_AUTOCLOSE __attribute__((cleanup(img_closep)))

enum img_format img_format(const struct img *im);  /* the format actually read (never AUTO) */
uint64_t img_size(const struct img *im);            /* virtual disk size in bytes */
const char *img_name(const struct img *im);         /* the path or name given at open */
/* Depth of the backing chain below this image (0: none). */
unsigned img_backing_depth(const struct img *im);

/* Read exactly len bytes at off of the virtual disk; off + len must not pass img_size (-EINVAL). */
int img_pread(struct img *im, void *buf, size_t len, uint64_t off, vs_err *e);

/* Allocation status of [off, off+len) (len > 0, inside the disk): on success *run (>0, <= len) bytes from off all
 * have status *flags. ZERO means the range reads as zeros without being stored (holes, qcow2 zero and unallocated
 * clusters); DATA means stored bytes (which may still be zeros). */
#define IMG_STATUS_ZERO 1u
#define IMG_STATUS_DATA 2u
int img_block_status(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e);

/* Create path (new, mode 0600) as an empty qcow2 v3 image of size bytes: every cluster unallocated, no backing
 * file named (whoever opens it gives it one). */
int img_qcow2_create(const char *path, uint64_t size, vs_err *e);

#endif
