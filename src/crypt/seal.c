/* crypt: sealing with XChaCha20-Poly1305 (libsodium), random nonces stored beside the ciphertext. */
#include "crypt/crypt.h"

#include <errno.h>
#include <sodium.h>

void cr_seal(const struct cr_key *k, const void *ad, size_t ad_len, const void *in, size_t len, uint8_t *out)
{
    randombytes_buf(out, CR_SEAL_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out + CR_SEAL_NONCE, out + CR_SEAL_NONCE + len, NULL, in,
                                                        len, ad, ad_len, NULL, out, k->k);
}

int cr_open_inplace(const struct cr_key *k, const void *ad, size_t ad_len, uint8_t *obj, size_t len)
{
    if (len < CR_SEAL_OVERHEAD)
        return -EBADMSG;
    size_t n = len - CR_SEAL_OVERHEAD;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(obj + CR_SEAL_NONCE, NULL, obj + CR_SEAL_NONCE, n,
                                                            obj + CR_SEAL_NONCE + n, ad, ad_len, obj, k->k) < 0)
        return -EBADMSG;
    return 0;
}

void cr_id_to_bytes(const char *id, uint8_t out[CR_ID_BYTES])
{
    if (sodium_hex2bin(out, CR_ID_BYTES, id, CR_ID_LEN, NULL, NULL, NULL) < 0)
        sodium_memzero(out, CR_ID_BYTES);
}

void cr_id_from_bytes(const uint8_t b[CR_ID_BYTES], char out[CR_ID_LEN + 1])
{
    sodium_bin2hex(out, CR_ID_LEN + 1, b, CR_ID_BYTES);
}
