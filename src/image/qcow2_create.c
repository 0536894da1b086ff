/* image: an empty qcow2 v3 image, written by vmsnap itself (no qemu-img): a scratch target that QEMU fills with
 * the blocks a guest overwrites while a point-in-time view of its disk is read. Layout (64 KiB clusters): header,
 * refcount table, one refcount block, L1 table (all L2 entries unallocated: the image reads as its backing). */
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#define CLUSTER_BITS 16
#define CLUSTER ((uint64_t)1 << CLUSTER_BITS)
#define L2_COVERS (CLUSTER * (CLUSTER / 8))   /* bytes of disk one L2 table maps */

int img_qcow2_create(const char *path, uint64_t size, vs_err *e)
{
    if (size == 0 || size > (UINT64_C(1) << 50))
        return vs_err_set(e, EINVAL, "%s: a qcow2 image of %llu bytes is not made here", path,
                          (unsigned long long)size);
    uint64_t l1_size = VS_DIV_ROUND_UP(size, L2_COVERS);
    uint64_t l1_clusters = VS_DIV_ROUND_UP(l1_size * 8, CLUSTER);
    uint64_t clusters = 3 + l1_clusters;   /* header, refcount table, refcount block, L1 */
    VS_AUTOFREE uint8_t *buf = vs_xcalloc(3, CLUSTER);
    uint8_t *h = buf;
    memcpy(h, "QFI\xfb", 4);
    vs_put_be32(h + 4, 3);                        /* version */
    vs_put_be32(h + 20, CLUSTER_BITS);
    vs_put_be64(h + 24, size);
    vs_put_be32(h + 36, (uint32_t)l1_size);
    vs_put_be64(h + 40, 3 * CLUSTER);             /* L1 table */
    vs_put_be64(h + 48, CLUSTER);                 /* refcount table, one cluster */
    vs_put_be32(h + 56, 1);
    vs_put_be32(h + 96, 4);                       /* refcount_order: 16-bit refcounts */
    vs_put_be32(h + 100, 104);                    /* header_length; the extension list ends with zeros */
    vs_put_be64(buf + CLUSTER, 2 * CLUSTER);      /* refcount table[0] -> the refcount block */
    for (uint64_t i = 0; i < clusters; i++)       /* every cluster of the file is used once */
        buf[2 * CLUSTER + 2 * i + 1] = 1;
    VS_AUTOCLOSE int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return vs_err_sys(e, errno, "creating %s", path);
    int r = vs_write_full(fd, buf, 3 * CLUSTER);
    if (r == 0 && ftruncate(fd, (off_t)(clusters * CLUSTER)) < 0)   /* the L1 table: zeros */
        r = -errno;
    if (r < 0) {
        unlink(path);
        return vs_err_sys(e, -r, "writing %s", path);
    }
    return 0;
}
