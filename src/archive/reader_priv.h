/* archive: reader internals shared by reader.c, cache.c and verify.c. */
#ifndef VMSNAP_ARCHIVE_READER_PRIV_H
#define VMSNAP_ARCHIVE_READER_PRIV_H

#include "archive/format.h"

#include <pthread.h>
#include <stdatomic.h>

struct arc_stream {
    enum arc_kind kind;
    uint8_t codec;
    int disk_index;
    char name[256];
    uint32_t block_size, page_entries, top_count;
    uint64_t size, stored, blocks;
    uint64_t data_blocks, zero_blocks, dedup_blocks, parent_blocks;
    uint64_t top_offset, top_csum;
    struct arc_top *tops;
    int parent_stream;            /* same-named stream in the parent, or -1 */
};

struct arc_page_slot { int stream; uint64_t page; uint8_t *buf; uint32_t len; uint64_t tick; };
/* A decompressed block, keyed by everything its entry says about the stored bytes: two entries may share the
 * stored bytes' offset yet decode them differently (codec, length) or expect other data (checksums). */
struct arc_block_slot { struct arc_entry key; uint32_t len; uint8_t *buf; uint64_t tick; };

#define ARC_PAGE_SLOTS 16
#define ARC_DCTX_POOL 8

struct arc_bcache;

struct arc {
    struct arc_source *src;
    struct arc_bcache *bc;        /* the local block cache, or NULL (bcache.c) */
    struct arc *parent;
    bool own_parent;
    struct arc_info info;
    char *hint;
    uint64_t dir_off;
    struct arc_stream *streams;
    unsigned nstreams, streams_cap;

    pthread_mutex_t lock;         /* guards the caches, the dctx pool and tick */
    uint64_t tick;
    struct arc_page_slot pages[ARC_PAGE_SLOTS];
    struct arc_block_slot *blocks;
    unsigned nblocks;
    void *dctx[ARC_DCTX_POOL];
    unsigned ndctx;
    atomic_size_t mem;            /* bytes allocated by the handle */
    bool enc;                     /* sealed: key holds its key, sealer how its objects open */
    struct cr_key key;
    enum cr_cipher cipher;        /* from the header (encrypted archives) */
    struct cr_sealer sealer;
};

/* Allocation that counts towards arc_mem_usage(). */
void *arc__alloc(struct arc *a, size_t n);
void arc__free(struct arc *a, void *p, size_t n);

/* Block geometry. */
static inline uint64_t arc__block_len(const struct arc_stream *s, uint64_t block)
{
    uint64_t start = block * s->block_size;
    return VS_MIN((uint64_t)s->block_size, s->size - start);
}

/* Index page (cached, checksummed) -> decoded entry (validated for this archive). */
int arc__entry_checked(struct arc *a, unsigned stream, uint64_t block, struct arc_entry *en, vs_err *e);
/* Read, check and decompress one stored block into dst (arc__block_len bytes). */
int arc__load_block(struct arc *a, unsigned stream, uint64_t block, const struct arc_entry *en, void *dst, vs_err *e);
/* Load one index page without the cache (verify). buf gets page_entries*32 bytes at most. */
int arc__read_page(struct arc *a, unsigned stream, uint64_t page, uint8_t *buf, uint32_t *len, vs_err *e);
int arc__check_entry(struct arc *a, unsigned stream, uint64_t block, const struct arc_entry *en, vs_err *e);

/* Open a sealed structure of this archive in place (len stored bytes at buf); its plaintext then starts at buf,
 * len - CR_SEAL_OVERHEAD bytes. what names it in the error ("stream 'x' index page 3"). */
int arc__unseal(struct arc *a, enum arc_seal_kind kind, uint32_t stream, uint64_t n, uint8_t *buf, size_t len,
                uint64_t file_off, const char *what, vs_err *e);
/* Bytes a structure of n plaintext bytes takes in this archive. */
static inline uint64_t arc__sealed_len(const struct arc *a, uint64_t n) { return n + (a->enc ? CR_SEAL_OVERHEAD : 0); }

/* Block cache (cache.c). */
void arc__cache_init(struct arc *a, size_t bytes);
void arc__cache_free(struct arc *a);
bool arc__cache_get(struct arc *a, const struct arc_entry *en, void *dst, size_t skip, size_t n);
void arc__cache_put(struct arc *a, const struct arc_entry *en, const void *src, uint32_t len);
void *arc__dctx_get(struct arc *a);
void arc__dctx_put(struct arc *a, void *d);

/* Local block cache (bcache.c; docs/CACHE.md). */
enum arc__bc_kind { ARC_BC_BLOCK = 1, ARC_BC_PAGE = 2 };
struct arc__bc_key {
    uint8_t kind;                 /* enum arc__bc_kind: the checksum is XXH3_64 (block) or XXH64 (page) */
    uint32_t len;
    uint64_t offset, csum;
    uint8_t scope[16];
};
#define ARC_BC_HEADER 64u
/* Whether an entry file's bytes (n of them) are exactly the entry for k: header fields, header checksum, length
 * and the payload's checksum. */
bool arc__bc_entry_ok(const uint8_t *file, size_t n, const struct arc__bc_key *k);
void arc__bc_entry_header(uint8_t *h, const struct arc__bc_key *k);
/* open_chain: when a cache is wanted, a->bc is made and a->src wrapped (to count what is read from it); after the
 * header: the cache's scope and directory. arc_close: arc__bc_free before anything else. */
int arc__bc_wrap(struct arc *a, const struct arc_open_opts *o, vs_err *e);
int arc__bc_attach(struct arc *a, vs_err *e);
void arc__bc_free(struct arc *a);
/* len bytes at off of the archive, expected to hash to csum: from the cache when it holds them, else from the
 * source (stored in the cache when they match). Without a cache: the source. */
int arc__fetch(struct arc *a, enum arc__bc_kind kind, uint64_t off, uint32_t len, uint64_t csum, void *buf,
               vs_err *e);
/* A block of the stream is being loaded: sequential loads start read-ahead of the next blocks. */
void arc__bc_readahead(struct arc *a, unsigned stream, uint64_t block);

#endif
