/* image: internals shared by image.c (handles, raw) and qcow2.c. */
#ifndef VMSNAP_IMAGE_PRIV_H
#define VMSNAP_IMAGE_PRIV_H

#include "image/image.h"

#include <stdbool.h>

#define IMG_MAX_CHAIN 16   /* backing chain depth: deeper is refused (also stops loops) */

struct img_ops {
    int (*pread)(struct img *im, void *buf, size_t len, uint64_t off, vs_err *e);
    int (*status)(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e);
    void (*free)(struct img *im);
};

/* The container (the file's bytes, or memory) and what the format made of it. */
struct img {
    const struct img_ops *ops;
    enum img_format format;
    char *name;              /* for messages */
    char *path;              /* local path, or NULL in memory: backing names resolve next to it */
    char *backing_root;      /* real path backing files must lie in; NULL: backing files refused */
    bool qcow2_magic;        /* the container starts with the qcow2 magic */
    int fd;                  /* -1 in memory */
    bool seekable_holes;     /* raw regular file: SEEK_DATA/SEEK_HOLE give the holes */
    const uint8_t *mem;
    uint64_t file_size;      /* bytes of the container */
    uint64_t size;           /* virtual disk size */
    unsigned depth;          /* position in a backing chain (0: the image pack was given) */
    void *priv;              /* the format's state */
    struct img *backing;     /* opened backing file (qcow2), closed with this handle */
};

/* image.c */
/* Read container bytes [off, off+len). Bytes past the end of the container read as zeros when zero_tail (qcow2
 * data clusters may end the file before their end, QEMU does the same), else a short file is an error. */
int img_file_pread(struct img *im, void *buf, size_t len, uint64_t off, bool zero_tail, vs_err *e);
/* Open a backing file of parent: name as stored in the image, fmt from its extension or AUTO. Refused unless
 * parent->backing_root allows it (see struct img_opts). */
int img_open_backing(struct img *parent, const char *name, enum img_format fmt, struct img **out, vs_err *e);

/* qcow2.c: parse the header and tables of im (container set up, magic seen); sets ops, size and priv. */
int img_qcow2_open(struct img *im, vs_err *e);

#endif
