/* crypt: sealing with XChaCha20-Poly1305 or AES-256-GCM (libsodium), random nonces stored beside the ciphertext. */
#include "crypt/crypt.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define GCM_NONCE 12   /* of the 24-byte nonce field; the rest is zero */

static const char *const names[] = {
    [CR_CIPHER_XCHACHA20POLY1305] = "xchacha20-poly1305", [CR_CIPHER_AES256GCM] = "aes-256-gcm",
};

const char *cr_cipher_name(enum cr_cipher c) { return (unsigned)c <= CR_CIPHER_MAX ? names[c] : "unknown"; }

int cr_cipher_parse(const char *s, enum cr_cipher *c, vs_err *e)
{
    for (unsigned i = 0; i <= CR_CIPHER_MAX; i++)
        if (!strcmp(s, names[i])) {
            *c = (enum cr_cipher)i;
            return 0;
        }
    return vs_err_set(e, EINVAL, "unknown cipher '%s' (expected aes-256-gcm or xchacha20-poly1305)", s);
}

bool cr_cipher_available(enum cr_cipher c)
{
    /* libsodium knows the CPU's features only once initialised */
    return c == CR_CIPHER_XCHACHA20POLY1305 ||
           (c == CR_CIPHER_AES256GCM && cr_init(NULL) == 0 && crypto_aead_aes256gcm_is_available());
}

enum cr_cipher cr_cipher_default(void)
{
    return cr_cipher_available(CR_CIPHER_AES256GCM) ? CR_CIPHER_AES256GCM : CR_CIPHER_XCHACHA20POLY1305;
}

int cr_sealer_init(struct cr_sealer *s, const struct cr_key *k, enum cr_cipher c, const uint8_t uuid[16], vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    if ((unsigned)c > CR_CIPHER_MAX)
        return vs_err_set(e, ENOTSUP, "unknown cipher %u", (unsigned)c);
    if (!cr_cipher_available(c))
        return vs_err_set(e, ENOTSUP, "cipher %s is not available on this CPU (libsodium needs AES-NI and PCLMUL "
                          "for it)", cr_cipher_name(c));
    s->cipher = c;
    if (c == CR_CIPHER_XCHACHA20POLY1305) {
        memcpy(s->k, k->k, CR_KEY_BYTES);
        return 0;
    }
    /* A subkey per archive: the 2^32 random 96-bit nonces a GCM key allows are then per archive, not per key. */
    uint8_t msg[32] = "vmsnap-1 gcm key";
    memcpy(msg + 16, uuid, 16);
    crypto_generichash(s->k, sizeof s->k, msg, sizeof msg, k->k, CR_KEY_BYTES);
    return 0;
}

void cr_sealer_wipe(struct cr_sealer *s) { sodium_memzero(s, sizeof *s); }

void cr_seal(const struct cr_sealer *s, const void *ad, size_t ad_len, const void *in, size_t len, uint8_t *out)
{
    uint8_t *c = out + CR_SEAL_NONCE, *tag = out + CR_SEAL_NONCE + len;
    if (s->cipher == CR_CIPHER_AES256GCM) {
        memset(out, 0, CR_SEAL_NONCE);
        randombytes_buf(out, GCM_NONCE);
        crypto_aead_aes256gcm_encrypt_detached(c, tag, NULL, in, len, ad, ad_len, NULL, out, s->k);
        return;
    }
    randombytes_buf(out, CR_SEAL_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(c, tag, NULL, in, len, ad, ad_len, NULL, out, s->k);
}

int cr_open_inplace(const struct cr_sealer *s, const void *ad, size_t ad_len, uint8_t *obj, size_t len)
{
    if (len < CR_SEAL_OVERHEAD)
        return -EBADMSG;
    size_t n = len - CR_SEAL_OVERHEAD;
    uint8_t *c = obj + CR_SEAL_NONCE, *tag = obj + CR_SEAL_NONCE + n;
    int r;
    if (s->cipher == CR_CIPHER_AES256GCM) {   /* the unused part of the field is zero: no byte goes unchecked */
        static const uint8_t zero[CR_SEAL_NONCE - GCM_NONCE];
        if (sodium_memcmp(obj + GCM_NONCE, zero, sizeof zero))
            return -EBADMSG;
        r = crypto_aead_aes256gcm_decrypt_detached(c, NULL, c, n, tag, ad, ad_len, obj, s->k);
    } else {
        r = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(c, NULL, c, n, tag, ad, ad_len, obj, s->k);
    }
    return r < 0 ? -EBADMSG : 0;
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
