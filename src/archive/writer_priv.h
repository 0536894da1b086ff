/* archive: writer internals shared by writer.c (streams, blocks, index) and wpool.c (worker pool, dedup). */
#ifndef VMSNAP_ARCHIVE_WRITER_PRIV_H
#define VMSNAP_ARCHIVE_WRITER_PRIV_H

#include "archive/format.h"

#include <pthread.h>
#include <xxhash.h>

enum { SLOT_FREE, SLOT_PENDING, SLOT_DONE };

/* One block on its way through the pool: filled by the caller's thread, compressed and hashed by a worker,
 * committed (written, indexed) in submission order by the caller's thread. */
struct wslot {
    uint8_t *in, *out;
    uint8_t *z;               /* the compressed block: out itself, or (encrypted) what out holds sealed */
    uint32_t len, out_len, z_len;
    uint64_t block;
    int state;
    bool zero;
    uint8_t codec;
    uint64_t csum, scsum;
    XXH128_hash_t h;
};

struct dd_ent { XXH128_hash_t h; struct arc_entry en; uint32_t len; bool used; };

/* A finished stream's directory record. */
struct wrec {
    uint8_t kind, codec;
    char name[256];
    uint32_t block_size, page_entries, top_count;
    uint64_t size, stored, data_blocks, zero_blocks, dedup_blocks, parent_blocks, top_offset, top_csum;
};

struct wstream {
    struct wrec rec;
    uint64_t declared;        /* ARC_SIZE_UNKNOWN or the size given to begin */
    uint64_t pos;             /* bytes decided so far */
    bool cur_active;
    uint64_t cur_block;
    uint32_t cur_fill;        /* valid prefix of the block being assembled */
    uint8_t *cur;             /* the slot buffer it is assembled in */
    uint64_t next_block;      /* first block not yet submitted or committed */
    int base_stream;          /* same-named stream in the base, or -1 */
    uint8_t *page;
    uint32_t page_n;
    bool page_zero, page_parent;
    struct arc_top *tops;
    size_t ntops, tops_cap;
    struct wunord *u;         /* unordered stream (arc_writer_begin_unordered), else NULL */
};

/* An unordered stream: its index is built in memory (one entry per block) and written at the end; blocks are
 * assembled in partial buffers (at most max_parts) from 4 KiB units arriving in any order. */
enum { UB_NONE, UB_ZERO, UB_PARENT, UB_DEDUP, UB_DATA, UB_INFLIGHT = 0x80 };
struct wpart {
    struct wpart *next;       /* hash chain */
    uint64_t block, seq;
    uint32_t have, need;      /* units present / units in the block */
    uint64_t bits[ARC_MAX_BLOCK_SIZE / ARC_MIN_BLOCK_SIZE / 64];
    uint8_t *buf;
};
struct wunord {
    uint64_t nblocks;
    struct arc_entry *ents;
    uint8_t *state;           /* UB_* per block */
    struct wpart **tab;
    size_t tab_cap, nparts, max_parts;
    uint64_t seq, rewrites;
    uint8_t *scratch, *sscratch;
};

struct arc_writer {
    char *path;               /* the location, for messages */
    struct arc_sink *sink;
    uint64_t fpos;
    enum arc_codec codec;
    int level;
    uint32_t bs;
    bool thin;
    unsigned debug;
    int worker_nice;
    bool enc;                 /* sealed with key (docs/FORMAT.md "Encryption") */
    struct cr_key key;
    struct cr_sealer sealer;  /* the key (XChaCha20-Poly1305) or this archive's subkey (AES-256-GCM) */
    uint8_t block_ad[ARC_SEAL_AD_MAX];
    size_t block_ad_len;
    struct arc *base;
    bool own_base;
    uint8_t uuid[16];
    uint64_t created;
    char *hint, *message;
    struct wrec *recs;
    size_t nrecs;
    bool in_stream, has_metadata;
    bool adding;              /* inside arc_writer_add (the only way to write a config stream) */
    uint64_t incompat;        /* feature bits the config asked for (ARC_INCOMPAT_PARENT comes from thin) */
    bool holds_memory;        /* a stream holds guest RAM: the archive is 0600 */
    struct wstream st;
    int err;                  /* sticky failure */
    vs_err err_msg;

    /* pool */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    pthread_t *workers;
    unsigned nworkers;
    bool quit;
    struct wslot *slots;
    unsigned nslots;
    uint64_t submitted, retired, work_next;
    void *zctx;               /* for inline compression */

    /* dedup */
    struct dd_ent *dd;
    size_t dd_cap, dd_n, dd_max;
    uint8_t *cmpbuf;          /* block-size scratch for byte compares */
};

/* writer.c: the stored bytes of an entry of this archive read back into buf (arc_stored_bound + CR_SEAL_OVERHEAD
 * bytes), checked and opened: *z, *z_len the compressed block. The sink's error if they cannot be read (*e set),
 * -EBADMSG if they changed since written. */
int arc__readback(struct arc_writer *w, const struct arc_entry *en, uint8_t *buf, const uint8_t **z, uint32_t *z_len,
                  vs_err *e);
/* Seal n bytes of a structure (index page, top-level table) of the current stream into a new buffer. */
uint8_t *arc__seal_meta(struct arc_writer *w, enum arc_seal_kind kind, uint64_t n, const void *buf, size_t len);

/* wpool.c */
void arc__pool_start(struct arc_writer *w, unsigned threads);
void arc__pool_stop(struct arc_writer *w);
struct wslot *arc__slot_acquire(struct arc_writer *w, vs_err *e);   /* may commit older blocks */
int arc__slot_submit(struct arc_writer *w, vs_err *e);               /* the acquired slot */
int arc__pool_drain(struct arc_writer *w, vs_err *e);                /* commit everything in flight */
/* writer.c: commit a processed slot (in order). */
int arc__commit(struct arc_writer *w, struct wslot *s, vs_err *e);
int arc__fail(struct arc_writer *w, int r, vs_err *e);                       /* sticky error */
int arc__base_read(struct arc_writer *w, void *buf, uint64_t off, size_t len, vs_err *e);
int arc__add_entries(struct arc_writer *w, const struct arc_entry *en, uint64_t count, vs_err *e);
/* wunord.c: unordered streams. */
void arc__unord_init(struct arc_writer *w, size_t hold_bytes);
void arc__unord_free(struct wunord *u);
int arc__unord_put(struct arc_writer *w, const void *buf, uint64_t len, uint64_t off, vs_err *e);
void arc__unord_committed(struct arc_writer *w, const struct wslot *s, const struct arc_entry *en, int ub);
int arc__unord_end(struct arc_writer *w, vs_err *e);   /* everything committed and indexed */
/* dedup table: find a stored block with the same content (byte-checked), or remember a new one. */
bool arc__dedup_find(struct arc_writer *w, const struct wslot *s, struct arc_entry *en, vs_err *e);
void arc__dedup_add(struct arc_writer *w, const struct wslot *s, const struct arc_entry *en);
void arc__dedup_free(struct arc_writer *w);

#endif
