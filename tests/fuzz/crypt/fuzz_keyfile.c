/* libFuzzer target: the key-file parser, each input tried as every kind of key file. */
#include "crypt/crypt.h"

#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t len[] = { CR_KEY_BYTES, CR_SIGN_SECRET_BYTES, CR_SIGN_PUBLIC_BYTES };
    uint8_t out[CR_SIGN_SECRET_BYTES];
    if (sodium_init() < 0)
        return 0;
    for (int k = CR_KIND_KEY; k <= CR_KIND_SIGN_PUBLIC; k++)
        cr_keyfile_parse((const char *)data, size, (enum cr_kind)k, out, len[k], "fuzz", NULL);
    return 0;
}
