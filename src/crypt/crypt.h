/* crypt: keys, sealing and signatures of archives, over libsodium. Prefix: cr_.
 *
 * Key files are one line of text, "<kind> <base64>\n", so they survive copy and paste and say what they hold:
 *   vmsnap-key-1          32-byte archive key (for either cipher below)     0600, made by `vmsnap keygen`
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
/* The id of a signing pair from its public key. */
void cr_pubkey_id(const uint8_t pk[CR_SIGN_PUBLIC_BYTES], char out[CR_ID_LEN + 1]);

/* Parse one key file's text (len bytes, untrusted) of the given kind into out (CR_KEY_BYTES, ... bytes). name is
 * for messages. For fuzzing and the loaders. */
int cr_keyfile_parse(const char *text, size_t len, enum cr_kind kind, uint8_t *out, size_t out_len, const char *name,
                     vs_err *e);

/* Read a small file the user named (a key, a .sig, a .sums): a regular file (a FIFO or device is refused without
 * blocking on it), with no group/other access when secret, named "<what> <path>" in messages. Up to cap bytes go
 * to buf and *len says how many: cap means the file may be longer, which the caller refuses in its own words. */
int cr_read_small(const char *path, const char *what, bool secret, char *buf, size_t cap, size_t *len, vs_err *e);

/* Wipe secrets (sodium_memzero); for cleanup attributes. */
void cr_key_wipe(struct cr_key *k);
void cr_signkey_wipe(struct cr_signkey *k);
#define CR_KEY_AUTOWIPE __attribute__((cleanup(cr_key_wipe)))
#define CR_SIGNKEY_AUTOWIPE __attribute__((cleanup(cr_signkey_wipe)))

/* ---- sealing (seal.c) --------------------------------------------------------------------------------------
 * A sealed object is a 24-byte nonce field || ciphertext || tag (16 bytes), under one archive's sealer, with
 * associated data the caller builds; the nonce is random for every object, so objects sealed twice for the same
 * place (a block stored again) never share one. Two ciphers (docs/FORMAT.md, "Encryption"):
 *   XChaCha20-Poly1305-IETF under the archive key, the whole 192-bit field as nonce (revision 11);
 *   AES-256-GCM under a subkey of the archive key for this archive's UUID (keyed BLAKE2b-256), the field's first
 *   12 bytes as nonce and the rest zero (revision 15): 1.6x faster with AES-NI; random 96-bit nonces limit a key
 *   to 2^32 objects, which the per-archive subkey makes a limit per archive. */
#define CR_SEAL_NONCE 24
#define CR_SEAL_TAG 16
#define CR_SEAL_OVERHEAD (CR_SEAL_NONCE + CR_SEAL_TAG)
#define CR_ID_BYTES (CR_ID_LEN / 2)

enum cr_cipher { CR_CIPHER_XCHACHA20POLY1305 = 0, CR_CIPHER_AES256GCM = 1 };
#define CR_CIPHER_MAX CR_CIPHER_AES256GCM

struct cr_sealer {                /* how one archive's objects are sealed */
    enum cr_cipher cipher;
    uint8_t k[CR_KEY_BYTES];      /* the archive key, or the archive's subkey */
};

const char *cr_cipher_name(enum cr_cipher c);          /* "xchacha20-poly1305", "aes-256-gcm" */
int cr_cipher_parse(const char *s, enum cr_cipher *c, vs_err *e);
/* Whether this CPU and libsodium can seal and open with c (AES-256-GCM needs AES-NI and PCLMUL). */
bool cr_cipher_available(enum cr_cipher c);
/* The fastest cipher available here: AES-256-GCM where the CPU has AES-NI, else XChaCha20-Poly1305. */
enum cr_cipher cr_cipher_default(void);
/* The sealer of the archive with this UUID under k. -ENOTSUP naming the cipher when this CPU cannot use it. */
int cr_sealer_init(struct cr_sealer *s, const struct cr_key *k, enum cr_cipher c, const uint8_t uuid[16],
                   vs_err *e);
void cr_sealer_wipe(struct cr_sealer *s);

/* Seal len bytes of in into out (len + CR_SEAL_OVERHEAD bytes). in may be out + CR_SEAL_NONCE (in place). */
void cr_seal(const struct cr_sealer *s, const void *ad, size_t ad_len, const void *in, size_t len, uint8_t *out);
/* Open a sealed object of len bytes (>= CR_SEAL_OVERHEAD) in place: on success its plaintext is at
 * obj + CR_SEAL_NONCE, len - CR_SEAL_OVERHEAD bytes. -EBADMSG when it is not authentic under s and ad (the
 * object's bytes are then undefined). */
int cr_open_inplace(const struct cr_sealer *s, const void *ad, size_t ad_len, uint8_t *obj, size_t len);
/* A key id as its CR_ID_BYTES bytes and back (lower-case hex). */
void cr_id_to_bytes(const char *id, uint8_t out[CR_ID_BYTES]);
void cr_id_from_bytes(const uint8_t b[CR_ID_BYTES], char out[CR_ID_LEN + 1]);

/* ---- signatures of archives (sign.c; docs/FORMAT.md, "Signatures") -------------------------------------------
 * Detached: ARCHIVE.sig holds one line per signature, so signing never rewrites an archive (nor an object that
 * cannot be appended to). The archive's own checksums (XXH64, XXH3) catch accidents, not forgers, so a signature
 * binds every byte through a cryptographic hash:
 *   version 1: the header and a BLAKE2b-512 digest of the whole file (checking it reads the whole file);
 *   version 2: the header, the file's size and its chunk table ARCHIVE.sums (BLAKE2b-256 of every fixed-size chunk,
 *              below) through the table's BLAKE2b-512: checking it reads the header, .sig and .sums, and every
 *              chunk is checked when it is read (random access kept). */
#define CR_ARC_HEADER_BYTES 128
#define CR_DIGEST_BYTES 64
#define CR_SIG_BYTES 64
#define CR_SIGFILE_MAX 64         /* signatures in one .sig file */
#define CR_SIGFILE_MAX_BYTES (CR_SIGFILE_MAX * 301)   /* the largest .sig file: 64 lines of 300 characters + '\n' */

struct cr_sig {                   /* one signature, as stored */
    unsigned version;             /* 1 or 2 */
    uint8_t pk[CR_SIGN_PUBLIC_BYTES];
    uint8_t uuid[16];             /* the signed archive's UUID and size (also inside the signed header) */
    uint64_t file_size;
    uint32_t chunk_size;          /* version 2: the chunk table's geometry; 0 in version 1 */
    uint64_t chunk_count;
    uint8_t digest[CR_DIGEST_BYTES];   /* version 1: of the file; version 2: of its .sums file */
    uint8_t sig[CR_SIG_BYTES];
    char id[CR_ID_LEN + 1];       /* the signing key's id */
};
struct cr_sigfile { struct cr_sig *v; size_t n; };

/* Reads exactly len bytes at off (a short read is an error). */
typedef int (*cr_pread_fn)(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e);

/* ---- chunk tables (sums.c): ARCHIVE.sums, what a version-2 signature binds ----------------------------------
 * A 48-byte header (magic "VMSNSUMS", version 1, log2 of the chunk size, the archive's size, chunk count and UUID)
 * then BLAKE2b-256 of each chunk of the archive file in order (the last chunk may be short). The same bytes give
 * the same table: every signer of an archive shares one. */
#define CR_SUMS_HASH 32
#define CR_SUMS_HEADER 48
#define CR_SUMS_MIN_CHUNK (64u << 10)
#define CR_SUMS_MAX_CHUNK (16u << 20)
#define CR_SUMS_DEFAULT_CHUNK (256u << 10)
#define CR_SUMS_MAX_BYTES (256ull << 20)   /* the largest table read (8 Mi chunks: 2 TiB in 256 KiB chunks) */

struct cr_sums {
    uint8_t uuid[16];
    uint64_t file_size, count;
    uint32_t chunk_size;
    uint8_t *h;                   /* count * CR_SUMS_HASH bytes */
};
/* Whether chunk_size is one a table may have (a power of two in [CR_SUMS_MIN_CHUNK, CR_SUMS_MAX_CHUNK]). */
bool cr_sums_chunk_size_ok(uint64_t chunk_size);
/* Chunks of an archive of file_size bytes, and the bytes of its .sums file. */
uint64_t cr_sums_count(uint64_t file_size, uint32_t chunk_size);
uint64_t cr_sums_file_bytes(uint64_t file_size, uint32_t chunk_size);
/* The table of bytes [0, size) read through pread in chunks of chunk_size, for the archive with this UUID. */
int cr_sums_compute(cr_pread_fn pread, void *opaque, const uint8_t uuid[16], uint64_t size, uint32_t chunk_size,
                    struct cr_sums *out, vs_err *e);
/* The .sums file of s (malloc'd, *len bytes). */
uint8_t *cr_sums_format(const struct cr_sums *s, size_t *len);
/* A .sums file's bytes (untrusted), strict: header fields, exact length. name is for messages. */
int cr_sums_parse(const uint8_t *buf, size_t len, const char *name, struct cr_sums *out, vs_err *e);
/* Whether chunk k's bytes (data, len = the chunk's length) are those of the table. */
bool cr_sums_chunk_ok(const struct cr_sums *s, uint64_t k, const void *data, size_t len);
/* The .sums file that version-2 signature s binds: its bytes hash to s's digest and describe s's archive, size and
 * chunks. A one-line error naming the file otherwise. */
int cr_sums_bind(const struct cr_sig *s, const uint8_t *buf, size_t len, const char *name, struct cr_sums *out,
                 vs_err *e);
void cr_sums_clear(struct cr_sums *s);

/* BLAKE2b-512 of bytes [0, size) read through pread. */
int cr_digest(cr_pread_fn pread, void *opaque, uint64_t size, uint8_t out[CR_DIGEST_BYTES], vs_err *e);
/* k's version-1 signature of an archive with this header (its first 128 bytes), size and digest. */
void cr_sign(const struct cr_signkey *k, const uint8_t header[CR_ARC_HEADER_BYTES], uint64_t file_size,
             const uint8_t digest[CR_DIGEST_BYTES], struct cr_sig *out);
/* k's version-2 signature of an archive with this header and chunk table. */
void cr_sign_sums(const struct cr_signkey *k, const uint8_t header[CR_ARC_HEADER_BYTES], const struct cr_sums *t,
                  struct cr_sig *out);
/* Whether s signs this header with its own size and digest (the caller compares those with the file's). */
bool cr_sig_valid(const struct cr_sig *s, const uint8_t header[CR_ARC_HEADER_BYTES]);

/* A .sig file's text (untrusted): strict, at most CR_SIGFILE_MAX lines. name is for messages. */
int cr_sigfile_parse(const char *text, size_t len, const char *name, struct cr_sigfile *out, vs_err *e);
/* The text of f (malloc'd). */
char *cr_sigfile_format(const struct cr_sigfile *f);
/* -ENOENT (with a message) when there is no such file. */
int cr_sigfile_load(const char *path, struct cr_sigfile *out, vs_err *e);
/* Put s into f (in memory), replacing a signature of the same archive by the same key. name is for messages. */
int cr_sigfile_put(struct cr_sigfile *f, const struct cr_sig *s, const char *name, vs_err *e);
/* Add s to the .sig file at path (made if missing) with cr_sigfile_put, then cr_file_replace. *count gets the
 * signatures it now holds. The caller serialises writers of one file. */
int cr_sigfile_add(const char *path, const struct cr_sig *s, size_t *count, vs_err *e);
/* Replace the file at path with len bytes: a temp file beside it (mode 0666 minus the umask), fsync'd, renamed.
 * what names it in messages ("signature file"). */
int cr_file_replace(const char *path, const char *what, const void *buf, size_t len, vs_err *e);
void cr_sigfile_clear(struct cr_sigfile *f);

/* Trusted public keys: one key file, or every *.pub file of a directory (any bad one is an error). */
struct cr_keyring { struct cr_pubkey *v; size_t n; char *from; };
int cr_keyring_load(const char *path, struct cr_keyring *out, vs_err *e);
const struct cr_pubkey *cr_keyring_find(const struct cr_keyring *kr, const uint8_t pk[CR_SIGN_PUBLIC_BYTES]);
void cr_keyring_clear(struct cr_keyring *kr);

/* One archive to check: its name (messages), UUID and size as opened, and its bytes. */
struct cr_archive_ref {
    const char *name;
    const uint8_t *uuid;
    uint64_t size;
    cr_pread_fn pread;
    void *opaque;
};
/* Find in f a signature of the archive by a key of kr (NULL: by any key) that checks out over the header read now
 * and the archive's size, a version-2 one first. *by gets it. For version 1 the file's digest is computed here
 * (only once a signature over the header holds); for version 2 nothing more is read: the caller binds the chunk
 * table (cr_sums_bind) and checks every chunk it reads against it. A one-line error naming the archive and why
 * otherwise (-EPERM: no such signature; -EBADMSG: a trusted key's signature fails). */
int cr_check_archive(const struct cr_archive_ref *a, const struct cr_sigfile *f, const struct cr_keyring *kr,
                     const struct cr_sig **by, vs_err *e);

#endif
