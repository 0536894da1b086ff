/* archive: the associated data that binds each sealed structure of an encrypted archive to its place. */
#include "archive/format.h"

#include <string.h>

/* 16-byte labels, NUL-padded: a structure of one kind never opens as another. */
static const char label[][16] = {
    [ARC_SEAL_DIR] = "vmsnap-1 dir", [ARC_SEAL_TOP] = "vmsnap-1 top",
    [ARC_SEAL_PAGE] = "vmsnap-1 page", [ARC_SEAL_BLOCK] = "vmsnap-1 block",
};

size_t arc__seal_ad(uint8_t *ad, enum arc_seal_kind kind, const uint8_t *hdr, uint32_t stream, uint64_t n)
{
    memcpy(ad, label[kind], 16);
    if (kind == ARC_SEAL_DIR) {   /* the whole header but its checksum: every header field is authenticated */
        memcpy(ad + 16, hdr, ARC_HEADER_CSUM_OFF);
        return 16 + ARC_HEADER_CSUM_OFF;
    }
    memcpy(ad + 16, hdr, 16);
    if (kind == ARC_SEAL_BLOCK)
        return 32;
    vs_put_le32(ad + 32, stream);
    if (kind == ARC_SEAL_TOP)
        return 36;
    vs_put_le64(ad + 36, n);
    return 44;
}
