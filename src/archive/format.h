/* archive: private on-disk layout (docs/FORMAT.md is the spec) and helpers shared by reader and writer.
 * Byte order only through vs_get/put_le* (util.h); no structs laid over buffers. */
#ifndef VMSNAP_ARCHIVE_FORMAT_H
#define VMSNAP_ARCHIVE_FORMAT_H

#include "archive/archive.h"
#include "crypt/crypt.h"

#include <inttypes.h>

#define ARC_MAGIC "\x89VSNAP\r\n"
#define ARC_MAGIC_LEN 8
#define ARC_VERSION 1u
#define ARC_HEADER_SIZE 128u
#define ARC_HEADER_CSUM_OFF 120u

/* Header field offsets. */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HDRSIZE = 12, H_INCOMPAT = 16, H_COMPAT = 24, H_UUID = 32, H_PUUID = 48,
    H_CREATED = 64, H_FILESIZE = 72, H_DIROFF = 80, H_DIRLEN = 88, H_BLOCKSIZE = 92, H_KEYID = 96, H_CIPHER = 104,
    H_RESERVED = 105,
};

#define ARC_INCOMPAT_PARENT (1ull << 0)   /* thin: blocks may live in the parent */
#define ARC_INCOMPAT_VMGENID (1ull << 1)  /* config says "vmgenid": true (a resume must recreate the device) */
#define ARC_INCOMPAT_ENCRYPTED (1ull << 2) /* directory, tables, pages and blocks sealed; key id in the header */
#define ARC_INCOMPAT_CIPHER (1ull << 3)  /* with ENCRYPTED: the header's cipher byte names the cipher (not XChaCha) */
#define ARC_INCOMPAT_KNOWN (ARC_INCOMPAT_PARENT | ARC_INCOMPAT_VMGENID | ARC_INCOMPAT_ENCRYPTED | ARC_INCOMPAT_CIPHER)
#define ARC_COMPAT_KNOWN 0ull

/* Directory: fixed part, then per stream a fixed record + name, then an XXH64. */
#define ARC_DIR_FIXED 8u
#define ARC_STREAM_REC 104u
#define ARC_MAX_STREAMS 4096u
#define ARC_MAX_DIR_LEN (16u << 20)

/* Top-level table entries (one per index page) and index entries (one per block). */
#define ARC_TOP_ENTRY 24u
#define ARC_PAGE_ENTRY 32u
#define ARC_DEFAULT_PAGE_ENTRIES 4096u
#define ARC_MIN_PAGE_ENTRIES 16u
#define ARC_MAX_PAGE_ENTRIES 65536u

enum arc_page_type { ARC_PAGE_STORED = 0, ARC_PAGE_ZERO = 1, ARC_PAGE_PARENT = 2 };
enum arc_block_type { ARC_BLOCK_ZERO = 0, ARC_BLOCK_DATA = 1, ARC_BLOCK_PARENT = 2 };

struct arc_entry {
    uint64_t offset;       /* file offset of the stored bytes */
    uint32_t stored_len;
    uint8_t type;          /* enum arc_block_type */
    uint8_t codec;
    uint16_t reserved;
    uint64_t csum;         /* XXH3_64 of the uncompressed block */
    uint64_t scsum;        /* XXH3_64 of the stored bytes */
};

struct arc_top {
    uint64_t offset;
    uint32_t length;
    uint32_t type;         /* enum arc_page_type */
    uint64_t csum;         /* XXH64 of the page bytes */
};

void arc_entry_encode(uint8_t *p, const struct arc_entry *en);
void arc_entry_decode(const uint8_t *p, struct arc_entry *en);
void arc_top_encode(uint8_t *p, const struct arc_top *t);
void arc_top_decode(const uint8_t *p, struct arc_top *t);

/* Largest stored size a block of block_size bytes may have (any codec). */
size_t arc_stored_bound(uint32_t block_size);
bool arc_block_size_ok(uint64_t bs);

/* Compress src into dst (cap >= arc_stored_bound); returns stored length and sets *codec_used (NONE when
 * compression does not help). zctx is a ZSTD_CCtx* or NULL. */
size_t arc_compress(enum arc_codec codec, int level, void *zctx, const void *src, size_t len, void *dst, size_t cap,
                    uint8_t *codec_used);
/* Decompress exactly out_len bytes; returns 0 or -EIO (bad data) / -ENOTSUP (unknown codec). zdctx may be NULL. */
int arc_decompress(uint8_t codec, void *zdctx, const void *src, size_t len, void *dst, size_t out_len);

uint64_t arc_hash64(const void *p, size_t len);        /* XXH3_64: block data */
uint64_t arc_meta_hash(const void *p, size_t len);     /* XXH64 seed 0: header, directory, top, pages */
bool arc_is_zero(const void *p, size_t len);

/* Sealed structures (seal.c, docs/FORMAT.md "Encryption"): what the associated data of each kind binds. */
enum arc_seal_kind { ARC_SEAL_DIR, ARC_SEAL_TOP, ARC_SEAL_PAGE, ARC_SEAL_BLOCK };
#define ARC_SEAL_AD_MAX (16u + ARC_HEADER_CSUM_OFF)
/* Associated data of a sealed structure into ad (ARC_SEAL_AD_MAX bytes); returns its length. For ARC_SEAL_DIR
 * `hdr` is the header's first 120 bytes, else the archive's UUID; stream and n (page number) as the kind uses them. */
size_t arc__seal_ad(uint8_t *ad, enum arc_seal_kind kind, const uint8_t *hdr, uint32_t stream, uint64_t n);

/* Incompatible feature bits a config stream's JSON calls for (config.c). */
uint64_t arc__config_features(const void *text, size_t len);

/* Reader internals the writer uses on its base archive. */
int arc__entry(struct arc *a, unsigned stream, uint64_t block, struct arc_entry *en, vs_err *e);
/* recrypt.c: the archive at dst written anew from a's streams (same names, kinds, content; a new UUID) with wo;
 * blocks a references in its parent are referenced in wo's parent. Nothing at dst on failure. */
int arc__rewrite(struct arc *a, const char *dst, const struct arc_writer_opts *wo, bool private_mode,
                 volatile int *cancel, vs_err *e);
/* 0 when b's streams have a's names, kinds, sizes and bytes (read through both chains), else an error saying
 * where they differ. */
int arc__same_content(struct arc *a, struct arc *b, vs_err *e);
/* Stream's block size and page geometry. */
uint32_t arc__block_size(const struct arc *a, unsigned stream);

#endif
