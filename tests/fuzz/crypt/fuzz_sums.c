/* libFuzzer target: the .sums parser (chunk tables travel with archives: untrusted), the check of a chunk against a
 * parsed table, and the binding of a table to a version-2 signature. */
#include "crypt/crypt.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t zero[1024];
    struct cr_sums t;
    if (sodium_init() < 0)
        return 0;
    struct cr_sig s = { .version = 2, .file_size = 1000, .chunk_size = CR_SUMS_MIN_CHUNK, .chunk_count = 1 };
    if (cr_sums_bind(&s, data, size, "fuzz", &t, NULL) == 0)   /* the digest never matches: refused */
        abort();
    if (cr_sums_parse(data, size, "fuzz", &t, NULL) < 0)
        return 0;
    if (t.count * CR_SUMS_HASH + CR_SUMS_HEADER != size)
        abort();
    for (uint64_t k = 0; k < t.count && k < 4; k++)
        (void)cr_sums_chunk_ok(&t, k, zero, (size_t)VS_MIN((uint64_t)sizeof zero, t.file_size - k * t.chunk_size));
    size_t len;
    uint8_t *again = cr_sums_format(&t, &len);
    if (len != size || memcmp(again, data, size))   /* a table that parses is its own canonical form */
        abort();
    free(again);
    cr_sums_clear(&t);
    return 0;
}
