/* libFuzzer target: an overlay layer file (header and block map, docs/OVERLAY.md) from the fuzz input, opened
 * read-only from a memfd; when it decodes, every block state is read back and counted. For inputs of even
 * length the header checksum is recomputed first, so mutations reach the fields behind it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "nbd/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-layer", MFD_CLOEXEC);
    if (fd < 0 || (size && vs_pwrite_full(fd, data, size, 0) < 0))
        abort();
    if (size >= 112 && size % 2 == 0) {
        uint8_t sum[8];
        vs_put_le64(sum, XXH64(data, 104, 0));
        if (vs_pwrite_full(fd, sum, 8, 104) < 0)
            abort();
    }
    struct layer *l;
    if (layer_open("fuzz-layer", fd, true, &l, NULL) < 0)
        return 0;
    if (l->h.base_seq == 0 || l->h.base_seq > l->h.seq || l->h.seq - l->h.base_seq >= LAYER_MAX_STACK)
        abort(); /* the bounds open_stack sizes its table by */
    uint64_t counts[4];
    layer_count(l, counts);
    for (uint64_t b = 0; b < l->nblocks && b < (1u << 20); b++)
        (void)layer_get(l, b);
    layer_free(l);
    return 0;
}
