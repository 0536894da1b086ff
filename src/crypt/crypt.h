/* crypt: keys, sealing and signatures of archives, over libsodium. Prefix: cr_.
 *
 * Key files are one line of text, "<kind> <base64>\n", so they survive copy and paste and say what they hold:
 *   vmsnap-key-1          32-byte archive key (XChaCha20-Poly1305)          0600, made by `vmsnap keygen`
 *   vmsnap-sign-secret-1  64-byte Ed25519 secret key (seed + public key)     0600, `vmsnap keygen --sign`
 *   vmsnap-sign-public-1  32-byte Ed25519 public key                         beside it as FILE.pub
 * A key's id names it in messages and archives without revealing it: the first 8 bytes, in hex, of
 * BLAKE2b-128("vmsnap key id 1" || kind || public material), where the material is the archive key itself (a
 * 256-bit key: its hash does not help guess it) or the public key of a signing pair (so both files share an id).
 * Secret files are refused when group or others may read them, as ssh does. */
#ifndef VMSNAP_CRYPT_H
#define VMSNAP_CRYPT_H

#include <stdint.h>
#include "util/util.h"

#define CR_KEY_BYTES 32
#define CR_SIGN_SECRET_BYTES 64
#define CR_SIGN_PUBLIC_BYTES 32
#define CR_ID_LEN 16              /* hex characters of a key id */

enum cr_kind { CR_KIND_KEY, CR_KIND_SIGN_SECRET, CR_KIND_SIGN_PUBLIC };

/* Call once before any other cr_ function (sodium_init); safe to call again. */
int cr_init(vs_err *e);

struct cr_key {                   /* an archive key */
    uint8_t k[CR_KEY_BYTES];
    char id[CR_ID_LEN + 1];
};
struct cr_signkey {               /* a signing pair */
    uint8_t sk[CR_SIGN_SECRET_BYTES];
    uint8_t pk[CR_SIGN_PUBLIC_BYTES];
    char id[CR_ID_LEN + 1];
};
struct cr_pubkey {                /* a trusted public key */
    uint8_t pk[CR_SIGN_PUBLIC_BYTES];
    char id[CR_ID_LEN + 1];
    char *path;                   /* file it came from (messages); owned */
};

/* New archive key at path (0600, created exclusively: an existing file is never overwritten). */
int cr_key_generate(const char *path, struct cr_key *out, vs_err *e);
/* New signing pair: the secret at path (0600, exclusive) and the public key at path.pub (0644, exclusive). */
int cr_signkey_generate(const char *path, struct cr_signkey *out, vs_err *e);

int cr_key_load(const char *path, struct cr_key *out, vs_err *e);
int cr_signkey_load(const char *path, struct cr_signkey *out, vs_err *e);
/* A public key file; a signing secret file is accepted too (its public half is taken). */
int cr_pubkey_load(const char *path, struct cr_pubkey *out, vs_err *e);
void cr_pubkey_clear(struct cr_pubkey *k);

/* Parse one key file's text (len bytes, untrusted) of the given kind into out (CR_KEY_BYTES, ... bytes). name is
 * for messages. For fuzzing and the loaders. */
int cr_keyfile_parse(const char *text, size_t len, enum cr_kind kind, uint8_t *out, size_t out_len, const char *name,
                     vs_err *e);

/* Wipe secrets (sodium_memzero); for cleanup attributes. */
void cr_key_wipe(struct cr_key *k);
void cr_signkey_wipe(struct cr_signkey *k);
#define CR_KEY_AUTOWIPE __attribute__((cleanup(cr_key_wipe)))
#define CR_SIGNKEY_AUTOWIPE __attribute__((cleanup(cr_signkey_wipe)))

/* ---- sealing (seal.c) --------------------------------------------------------------------------------------
 * A sealed object is nonce (24 random bytes) || ciphertext || tag (16 bytes): XChaCha20-Poly1305-IETF under an
 * archive key, with associated data the caller builds. A fresh random 192-bit nonce per object: objects sealed
 * twice for the same place (a block stored again) can never share a nonce. */
#define CR_SEAL_NONCE 24
#define CR_SEAL_TAG 16
#define CR_SEAL_OVERHEAD (CR_SEAL_NONCE + CR_SEAL_TAG)
#define CR_ID_BYTES (CR_ID_LEN / 2)

/* Seal len bytes of in into out (len + CR_SEAL_OVERHEAD bytes). in may be out + CR_SEAL_NONCE (in place). */
void cr_seal(const struct cr_key *k, const void *ad, size_t ad_len, const void *in, size_t len, uint8_t *out);
/* Open a sealed object of len bytes (>= CR_SEAL_OVERHEAD) in place: on success its plaintext is at
 * obj + CR_SEAL_NONCE, len - CR_SEAL_OVERHEAD bytes. -EBADMSG when it is not authentic under k and ad (the
 * object's bytes are then undefined). */
int cr_open_inplace(const struct cr_key *k, const void *ad, size_t ad_len, uint8_t *obj, size_t len);
/* A key id as its CR_ID_BYTES bytes and back (lower-case hex). */
void cr_id_to_bytes(const char *id, uint8_t out[CR_ID_BYTES]);
void cr_id_from_bytes(const uint8_t b[CR_ID_BYTES], char out[CR_ID_LEN + 1]);

#endif
