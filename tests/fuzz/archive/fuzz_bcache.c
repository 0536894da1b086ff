/* libFuzzer target: the block cache's entry check (what a reader does with a file found in the cache directory,
 * which anything with the user's rights may have written or damaged). Each input is an entry file checked against
 * the key its own header names, against a key that differs in one field, and again after its header and checksum
 * are rebuilt for its payload: then it must be accepted, and any one byte changed must make it refused. */
#include "archive/reader_priv.h"

#include <stdlib.h>
#include <string.h>

static void key_of(const uint8_t *d, struct arc__bc_key *k)
{
    *k = (struct arc__bc_key){ .kind = d[12], .offset = vs_get_le64(d + 16), .len = vs_get_le32(d + 24),
                               .csum = vs_get_le64(d + 32) };
    memcpy(k->scope, d + 40, 16);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arc__bc_key k = { .kind = ARC_BC_BLOCK };
    if (size < ARC_BC_HEADER) {
        if (arc__bc_entry_ok(data, size, &k))
            abort();
        return 0;
    }
    key_of(data, &k);
    bool ok = arc__bc_entry_ok(data, size, &k);
    struct arc__bc_key other = k;
    other.offset ^= 1;
    if (ok && arc__bc_entry_ok(data, size, &other))
        abort();   /* an entry is only ever the entry of one key */
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    k.kind = data[12] & 1 ? ARC_BC_BLOCK : ARC_BC_PAGE;
    k.len = (uint32_t)(size - ARC_BC_HEADER);
    k.csum = k.kind == ARC_BC_PAGE ? arc_meta_hash(copy + ARC_BC_HEADER, k.len) : arc_hash64(copy + ARC_BC_HEADER, k.len);
    arc__bc_entry_header(copy, &k);
    if (!arc__bc_entry_ok(copy, size, &k))
        abort();
    size_t at = (size_t)(k.csum % size);
    copy[at] ^= 0x01;
    if (arc__bc_entry_ok(copy, size, &k))
        abort();
    free(copy);
    return 0;
}
