/* libFuzzer target: the .sig file parser (signature files travel with archives), and the check of each parsed
 * signature against a fixed header. */
#include "crypt/crypt.h"

#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t header[CR_ARC_HEADER_BYTES];
    struct cr_sigfile f;
    if (sodium_init() < 0 || cr_sigfile_parse((const char *)data, size, "fuzz", &f, NULL) < 0)
        return 0;
    for (size_t i = 0; i < f.n; i++)
        (void)cr_sig_valid(&f.v[i], header);
    free(cr_sigfile_format(&f));
    cr_sigfile_clear(&f);
    return 0;
}
