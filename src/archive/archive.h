/* archive: the .vmsnap archive — a single file holding named streams (disks, memory, config, metadata, files),
 * cut into independently compressed, checksummed blocks with a two-level index, readable at random offsets.
 * docs/FORMAT.md is the on-disk spec. Prefix: arc_.
 *
 * Reader: bytes come through a byte-range source (struct arc_source), never an mmap of the file. A handle is
 * thread-safe for every read-only call (arc_pread, arc_block_status, arc_read_stream, arc_verify, getters).
 * Writer: one stream at a time; compression and hashing run on a worker pool with bounded memory; the file is
 * written through an upload sink (a temp file beside the target renamed by arc_writer_finish(), or an S3
 * multipart upload completed there). */
#ifndef VMSNAP_ARCHIVE_H
#define VMSNAP_ARCHIVE_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

/* ---- constants ------------------------------------------------------------------------------------------- */
enum arc_kind {              /* stream kinds (on-disk values) */
    ARC_KIND_OTHER = 0,      /* unknown to this version: readable as bytes */
    ARC_KIND_DISK = 1,       /* a disk image; disks are numbered 0.. in stream order */
    ARC_KIND_MEMORY = 2,     /* QEMU migration stream, opaque */
    ARC_KIND_CONFIG = 3,     /* JSON: how to launch the VM again */
    ARC_KIND_METADATA = 4,   /* JSON: message, host, tool version, created */
    ARC_KIND_FILE = 5,       /* a named blob the VM needs (kernel, initrd, firmware vars) */
};

enum arc_codec { ARC_CODEC_NONE = 0, ARC_CODEC_LZ4 = 1, ARC_CODEC_ZSTD = 2 };

#define ARC_DEFAULT_BLOCK_SIZE (64u * 1024)
#define ARC_MIN_BLOCK_SIZE (4u * 1024)
#define ARC_MAX_BLOCK_SIZE (4u * 1024 * 1024)
#define ARC_SIZE_UNKNOWN UINT64_MAX
#define ARC_STREAM_NONE (-1)

const char *arc_kind_name(enum arc_kind k);      /* "disk", "memory", ..., "other" */
const char *arc_codec_name(enum arc_codec c);    /* "none", "lz4", "zstd" */
/* "lz4", "none", "zstd", "zstd:LEVEL" (1..19). */
int arc_parse_codec(const char *s, enum arc_codec *codec, int *level, vs_err *e);

/* ---- byte-range source ----------------------------------------------------------------------------------- */
/* Where a reader gets its bytes. pread must read exactly len bytes (a short read is an error) and be safe to
 * call from many threads at once. */
struct arc_source {
    int (*pread)(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e);
    void (*close)(struct arc_source *s);   /* frees s and what it owns */
    uint64_t size;                         /* total bytes */
    char *name;                            /* for messages (a path, a URL) */
    char *path;                            /* local file path, or NULL: parent hints resolve next to it */
    void *opaque;
    /* Optional: 0 while the bytes may still be those seen at open, else -ESTALE saying what changed (and from
     * then on always). A local file compares size and mtime of its open fd with those at open: a rewrite in
     * place is caught, a rename or replacement of the path is not a change (the fd keeps the old file). */
    int (*check)(struct arc_source *s, vs_err *e);
    /* The block cache (below): a remote source (object store, URL) gets one by default, a local file only when
     * asked. version names this version of the bytes (a local file: device, inode, mtime; an object: its ETag);
     * with name and size it scopes the cache's entries, so it must change whenever the bytes may. NULL: none. */
    bool remote;
    char *version;                         /* owned, freed by close */
    /* A verifying source (arc_source_verified): the id of the key whose signature binds the chunk table every
     * byte read is checked against. NULL: the bytes are the source's own. */
    char *signer;
};
/* A regular local file (directories, FIFOs, devices refused with a clear error). */
int arc_source_open_file(const char *path, struct arc_source **out, vs_err *e);
/* An object on a store: s3://BUCKET/KEY or a read-only http(s):// URL (src/objstore/): range GETs on kept-alive
 * connections, retried until a deadline; check compares the object's ETag and size with those at open. */
int arc_source_open_url(const char *url, struct arc_source **out, vs_err *e);
/* By location: a URL as above, else a local file. */
int arc_source_open(const char *loc, struct arc_source **out, vs_err *e);
/* Bytes in memory, borrowed (must outlive the source). For fuzzing and tests. */
struct arc_source *arc_source_open_mem(const void *buf, size_t len, const char *name);
void arc_source_close(struct arc_source *s);
/* A source serving inner's bytes only once checked against a signed chunk table (taken over, and inner too, from
 * the call on): every read is served from whole chunks whose BLAKE2b-256 is the table's, a few verified chunks are
 * kept for the reads next to them, and no read costs more than a chunk on either side. A mismatch is -EBADMSG
 * naming the archive, the chunk and its byte range. signer (copied) is the id of the key that signed the table. */
struct cr_sums;
struct arc_source *arc_source_verified(struct arc_source *inner, struct cr_sums *sums, const char *signer);

/* ---- upload sink ---------------------------------------------------------------------------------------------- */
/* Where a writer's bytes go. The writer only appends, except that it rewrites bytes inside the first 8 MiB (its
 * header at offset 0) before finish; it may read back bytes it wrote (dedup compares, unordered streams), which
 * a sink may refuse with -ENOTSUP for bytes it already sent. finish makes the archive durable and publishes it
 * under its name, 0600 when private_mode (guest memory) else 0666 minus the umask, and frees the sink whatever
 * the outcome; abort discards everything (no file, no object) and frees it. */
struct arc_sink {
    int (*pwrite)(struct arc_sink *s, const void *buf, size_t len, uint64_t off, vs_err *e);
    int (*pread)(struct arc_sink *s, void *buf, size_t len, uint64_t off, vs_err *e);
    int (*finish)(struct arc_sink *s, bool private_mode, vs_err *e);
    void (*abort)(struct arc_sink *s);
    char *name;                /* the location as given, for messages */
    char *path;                /* local path, or NULL */
};
/* A local file: a 0600 temp file beside path; finish: mode, fsync, rename, fsync of the directory. */
int arc_sink_open_file(const char *path, struct arc_sink **out, vs_err *e);
/* s3://BUCKET/KEY: a multipart upload (src/archive/sink_s3.c). */
int arc_sink_open_s3(const char *loc, struct arc_sink **out, vs_err *e);
/* By location: s3:// or a local path (http(s) URLs are refused: read-only). */
int arc_sink_open(const char *loc, struct arc_sink **out, vs_err *e);
void arc_sink_abort(struct arc_sink *s);   /* NULL is fine */

/* ---- reader ---------------------------------------------------------------------------------------------- */
struct arc;
struct cr_key;

/* The local block cache: stored block bytes and index pages of archives read from far away, kept in files under
 * a private directory shared by every process of the user, bounded (least recently used evicted), each entry
 * scoped to one source version and archive UUID and checked against the archive's checksums before use
 * (docs/CACHE.md). */
enum arc_cache_mode {
    ARC_CACHE_AUTO = 0,        /* remote sources only */
    ARC_CACHE_ON,              /* every source, local files too (a file on a network filesystem; tests) */
    ARC_CACHE_OFF,
};
#define ARC_CACHE_DEFAULT_SIZE (8ull << 30)
struct arc_cache_conf {
    enum arc_cache_mode mode;
    const char *dir;           /* NULL: $XDG_CACHE_HOME or ~/.cache, then vmsnap/blocks */
    uint64_t max_bytes;        /* 0: ARC_CACHE_DEFAULT_SIZE */
};
/* The configuration from the environment: VMSNAP_CACHE (auto, on, off), VMSNAP_CACHE_DIR, VMSNAP_CACHE_SIZE (a
 * size like 2G). Strings are borrowed from the environment. A bad value is an error naming the variable. */
int arc_cache_conf_env(struct arc_cache_conf *c, vs_err *e);

/* Encrypted archives (docs/FORMAT.md "Encryption"): the header stays readable (info: "encrypted", key id); the
 * directory, index and blocks open only with the archive's key. A thin archive and its parents share one key. */
struct arc_open_opts {
    const struct arc_cache_conf *cache;   /* NULL: arc_cache_conf_env() */
    struct arc *parent;        /* use this already-open parent (borrowed; must outlive the child), or */
    const char *parent_path;   /* open the parent from this path instead of the stored hint */
    bool no_parent;            /* do not resolve the parent: reads of parent blocks fail (for info) */
    size_t cache_bytes;        /* decompressed block cache; 0 = default (8 MiB) */
    const struct cr_key *key;  /* the key of an encrypted archive and its chain (copied); NULL: none */
    bool header_only;          /* an encrypted archive without its key opens with its header only (no streams,
                                  no parent): for info. Otherwise that is an error naming the key's id */
    /* Called with the source of the archive and of each parent before a byte is read through it: may replace *src
     * by a source over it (taking *src over), e.g. arc_source_verified. On failure *src is still the caller's
     * and the open fails. The block cache sits above what it returns. NULL: none. */
    int (*wrap)(void *opaque, struct arc_source **src, vs_err *e);
    void *wrap_opaque;
};

/* Open an archive. The source is owned by the handle from the call on (closed on failure too). */
int arc_open(const char *path, const struct arc_open_opts *o, struct arc **out, vs_err *e);
int arc_open_source(struct arc_source *src, const struct arc_open_opts *o, struct arc **out, vs_err *e);
void arc_close(struct arc *a);
void arc_closep(struct arc **a);
#define ARC_AUTOCLOSE __attribute__((cleanup(arc_closep)))

struct arc_info {
    uint32_t version;          /* format version */
    uint64_t incompat, compat; /* feature bits */
    uint8_t uuid[16];
    bool has_parent;
    uint8_t parent_uuid[16];
    const char *parent_hint;   /* relative path hint ("" if none); valid while the handle is open */
    uint64_t created;          /* unix seconds */
    uint64_t file_size;
    uint32_t block_size;
    unsigned nstreams;
    bool encrypted;            /* sealed with the key named by key_id */
    char key_id[17];           /* "" when not encrypted */
    const char *cipher;        /* "xchacha20-poly1305" or "aes-256-gcm"; NULL when not encrypted */
    bool locked;               /* encrypted and opened without its key (header_only): no streams, no parent hint */
};
void arc_get_info(const struct arc *a, struct arc_info *out);
const uint8_t *arc_uuid(const struct arc *a);
/* Whether the archive and its parents still hold the bytes they held at open (arc_source.check): -ESTALE naming
 * the file that changed. Cheap (an fstat per file): for readers that live long, e.g. lazily resumed memory. */
int arc_check_unchanged(struct arc *a, vs_err *e);
/* The resolved parent, or NULL (not thin, or opened with no_parent). */
struct arc *arc_parent(const struct arc *a);
/* The source the handle reads its bytes from (borrowed): for checks over the file's own bytes (signatures). */
struct arc_source *arc_get_source(const struct arc *a);
/* Bytes of memory the handle has allocated now (index pages, caches, tables; not counting the parent). */
size_t arc_mem_usage(const struct arc *a);

struct arc_stream_info {
    enum arc_kind kind;
    int disk_index;            /* 0.. among disk streams in stream order, else -1 */
    const char *name;          /* valid while the handle is open */
    uint64_t size;             /* logical bytes */
    uint64_t stored;           /* compressed bytes stored in this archive for the stream (dedup'd once) */
    uint32_t block_size;
    uint64_t blocks;           /* logical blocks */
    uint64_t data_blocks;      /* stored here */
    uint64_t zero_blocks;      /* all-zero, no space */
    uint64_t dedup_blocks;     /* references to a block stored earlier in this archive */
    uint64_t parent_blocks;    /* references to the parent */
    enum arc_codec codec;      /* codec the writer was asked for */
};
unsigned arc_stream_count(const struct arc *a);
int arc_stream_get(const struct arc *a, unsigned i, struct arc_stream_info *out);
/* Index of the first stream of that kind (and name, if non-NULL), or ARC_STREAM_NONE. */
int arc_find_stream(const struct arc *a, enum arc_kind kind, const char *name);
/* Index of the n-th disk stream (0-based), or ARC_STREAM_NONE. */
int arc_find_disk(const struct arc *a, int n);

/* What the block cache did for a handle and its parents since open. */
struct arc_cache_stats {
    bool enabled;              /* some archive of the chain reads through the cache */
    uint64_t hits, hit_bytes;  /* blocks and index pages served from the cache */
    uint64_t misses;           /* blocks and index pages a reader waited for from the source */
    uint64_t source_reads, source_bytes;   /* everything read from the sources (open, misses, read-ahead) */
    uint64_t stored;           /* entries written into the cache */
    uint64_t bad;              /* entries that failed their checks (dropped, fetched again) */
};
void arc_cache_stats(const struct arc *a, struct arc_cache_stats *out);
/* Fetch every stored block and index page of the archive and its parents into the cache, several at a time, and
 * keep them there while the handle is open (pinned: other processes' eviction skips them); from then on reads
 * need no source. Archives without a cache are skipped. Stops early when *stop becomes true (-ECANCELED).
 * Refuses an archive that stores more than 90 % of the cache's bound. *fetched gets the bytes fetched. */
int arc_prefetch_all(struct arc *a, const atomic_bool *stop, uint64_t *fetched, vs_err *e);

/* Read len bytes at off of a stream, across blocks and through the parent chain. Every block is checked against
 * its checksum: damaged data is an error, never returned (after an error buf's contents are undefined). Reading
 * past the end of the stream is -EINVAL. */
int arc_pread(struct arc *a, unsigned stream, void *buf, size_t len, uint64_t off, vs_err *e);

/* Allocation status of [off, off+len): on success *run (>0, <= len) bytes from off all have status *flags. */
#define ARC_STATUS_ZERO 1u     /* reads as zeros and takes no space (a hole) */
#define ARC_STATUS_DATA 2u     /* stored data (here or in a parent) */
int arc_block_status(struct arc *a, unsigned stream, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags,
                     vs_err *e);

/* Read a whole small stream (config JSON) into a malloc'd, NUL-terminated buffer; refuses streams > max. */
int arc_read_stream(struct arc *a, unsigned stream, size_t max, char **out, size_t *len, vs_err *e);
/* Read the config stream (at most ARC_MAX_CONFIG bytes) like arc_read_stream, after checking that the header's
 * feature bits agree with it (a bit whose config key is missing is damage). 1 and the text, or 0 and NULL when
 * the archive has no config stream. */
#define ARC_MAX_CONFIG (1u << 20)
int arc_read_config(struct arc *a, char **out, size_t *len, vs_err *e);

/* Write a whole stream into fd (a new, empty regular file) at its offsets, zero runs left as holes, and size fd to
 * the stream: a stream of zeros costs no disk and no time. progress(opaque, bytes) may be NULL. */
int arc_extract_fd(struct arc *a, unsigned stream, int fd, void (*progress)(void *opaque, uint64_t done),
                   void *opaque, vs_err *e);

/* Check everything: directory, index pages, every block of every stream, and the parent chain. Calls cb for
 * each problem (stream = -1 / block = UINT64_MAX when not about a block). Returns the number of problems
 * found (0 = sound), or a negative errno if checking could not run at all. */
struct arc_problem {
    int stream;                /* stream index or -1 */
    const char *stream_name;   /* or "" */
    uint64_t block;            /* block index in the stream or UINT64_MAX */
    uint64_t offset;           /* logical offset of the block in the stream */
    uint64_t file_offset;      /* where in the archive file (0 if unknown) */
    const char *msg;           /* what is wrong, one line */
};
struct arc_verify_opts {
    void (*problem)(void *opaque, const struct arc_problem *p);
    void (*progress)(void *opaque, uint64_t done, uint64_t total);  /* logical bytes checked, may be NULL */
    void *opaque;
    bool no_parent_chain;      /* do not descend into the parent's own blocks */
};
int arc_verify(struct arc *a, const struct arc_verify_opts *o, vs_err *e);

/* ---- copy ------------------------------------------------------------------------------------------------- */
/* Copy the archive at src to dst (local paths, s3://, http(s) sources) byte for byte, never decompressed, through
 * an upload sink (atomic: nothing under dst unless complete), then verify the copy by reading it back from dst; a
 * copy that fails verification is removed. With with_parents, a thin archive's chain is copied first, each parent
 * to where dst's parent hint leads (one already there with the right UUID is kept). copied(opaque, c) is called
 * for each archive copied (may be NULL).
 * With encrypt, every archive is written anew instead (same streams and content, a new UUID) sealed with that
 * key, and compared with its source by reading both back: a thin archive only with with_parents, its parents
 * encrypted first and never written over an existing file; on failure nothing written by the call is left. */
struct arc_copied {
    const char *src, *dst;
    uint64_t bytes;
    bool skipped;              /* a parent already at dst */
    const char *key_id;        /* written anew, sealed with this key (encrypt), else NULL */
    const char *from_key_id;   /* ... from a source sealed with this key, else NULL */
};
struct arc_copy_opts {
    bool with_parents;
    void (*copied)(void *opaque, const struct arc_copied *c);
    void *opaque;
    volatile int *cancel;      /* non-zero (a signal handler's flag): stop, discard the copy in progress */
    const struct cr_key *key;  /* reads (and verifies) encrypted archives: the copy stays sealed as it is */
    const struct cr_key *encrypt;   /* write every archive anew, sealed with this key */
    const char *cipher;        /* with encrypt: as arc_writer_opts.cipher */
    /* arc_open_opts.wrap for every read of a source archive, the bytes copied included. NULL: none. */
    int (*wrap)(void *opaque, struct arc_source **src, vs_err *e);
    void *wrap_opaque;
};
int arc_copy(const char *src, const char *dst, const struct arc_copy_opts *o, vs_err *e);

/* ---- writer ---------------------------------------------------------------------------------------------- */
struct arc_writer;

#define ARC_DEBUG_COLLIDE_HASH 1u   /* tests: every content hash collides (proves byte compare before dedup) */

struct arc_writer_opts {
    enum arc_codec codec;      /* start from arc_writer_opts_init() (LZ4); a zeroed struct means NONE */
    int level;                 /* zstd level (1..19), 0 = default (3) */
    uint32_t block_size;       /* power of two in [ARC_MIN_BLOCK_SIZE, ARC_MAX_BLOCK_SIZE]; a thin archive takes
                                  its parent's */
    int threads;               /* compression workers; 0 = online CPUs, 1 = compress in the caller */
    const char *parent_path;   /* base archive: thin (references) or thick (copy), see `thin` */
    struct arc *parent;        /* or an already-open base (borrowed) */
    bool thin;                 /* with a base: store only blocks that differ and reference the base */
    const char *message;       /* recorded in the metadata stream */
    size_t dedup_max_entries;  /* cap of the in-memory dedup table; 0 = default (1 Mi entries) */
    unsigned debug;            /* ARC_DEBUG_* */
    const struct cr_key *key;  /* seal the archive with this key (copied). NULL: plain, unless the base is
                                  encrypted: then the base's key. A thin archive must use its parent's key */
    const struct cr_key *parent_key;   /* opens parent_path when it is encrypted */
    const char *cipher;        /* of an encrypted archive: "aes-256-gcm" or "xchacha20-poly1305"; NULL: the fastest
                                  this CPU has (AES-256-GCM with AES-NI) */
    /* arc_open_opts.wrap for opening parent_path (and its chain), e.g. reads checked against signed chunk tables;
     * NULL: none */
    int (*parent_wrap)(void *opaque, struct arc_source **src, vs_err *e);
    void *parent_wrap_opaque;
    int worker_nice;           /* compression workers add this to their own nice value (0: unchanged): during a
                                  live snapshot the guest's vCPU then wins a busy CPU over compression */
};
void arc_writer_opts_init(struct arc_writer_opts *o);   /* LZ4, 64 KiB, threads 0 */

/* Create the archive that finish() will put at path: a local path (a temp file beside it until then) or
 * s3://BUCKET/KEY (arc_sink_open). */
int arc_writer_create(const char *path, const struct arc_writer_opts *o, struct arc_writer **out, vs_err *e);

/* Start a stream. size is the logical size if known (disks), or ARC_SIZE_UNKNOWN (memory stream: its size is
 * where the last write ended). Names are unique per archive, 1..255 bytes; pack names disks "disk0", "disk1"...
 * In a thin or thick archive with a base, a stream's base is the base's stream of the same name. */
int arc_writer_begin(struct arc_writer *w, enum arc_kind kind, const char *name, uint64_t size, vs_err *e);
/* Start a stream of known size whose 4 KiB units may be written in any order and more than once, the last write
 * winning (guest RAM as QEMU's migration stream delivers it; its 4 KiB pages at their offsets). Writes and zeroes
 * must cover whole 4 KiB units (the stream's last unit may be short). A block is compressed and stored once all
 * its units arrived; partial blocks are held in memory, at most hold_bytes of them (0: 64 MiB; the index adds 32
 * bytes per block until arc_writer_end). Past that bound the oldest partial block is stored with its missing
 * units as arc_writer_pwrite says for skipped bytes, and stored again once they arrive (the first copy then
 * stays in the file unreferenced). Units never written keep the base's content, as for arc_writer_pwrite. */
int arc_writer_begin_unordered(struct arc_writer *w, enum arc_kind kind, const char *name, uint64_t size,
                               size_t hold_bytes, vs_err *e);
/* Append at the current position. */
int arc_writer_write(struct arc_writer *w, const void *buf, size_t len, vs_err *e);
/* Write at off >= the current position (positions only move forward; any offset in an unordered stream). Bytes skipped over keep the base's
 * content: a reference to the parent (thin), a copy of the base (thick), or zeros (no base). Partly written
 * blocks are completed from the same source. */
int arc_writer_pwrite(struct arc_writer *w, const void *buf, size_t len, uint64_t off, vs_err *e);
/* Declare [off, off+len) zero (off >= current position): stored as zero blocks, whatever the base holds. */
int arc_writer_zero(struct arc_writer *w, uint64_t off, uint64_t len, vs_err *e);
/* Append everything read from fd until EOF (a pipe from QEMU); *copied gets the byte count (may be NULL). */
int arc_writer_stream_from_fd(struct arc_writer *w, int fd, uint64_t *copied, vs_err *e);
/* End the current stream (fills the rest of a known-size stream as arc_writer_pwrite says). */
int arc_writer_end(struct arc_writer *w, vs_err *e);
/* begin + write + end of a small stream (config, metadata, file blobs). A config stream is written only this
 * way: its keys set the archive's incompatible feature bits (a config with "vmgenid": true sets VMGENID). */
int arc_writer_add(struct arc_writer *w, enum arc_kind kind, const char *name, const void *buf, size_t len,
                   vs_err *e);
/* Bytes accepted for the current stream so far (for progress). */
uint64_t arc_writer_position(const struct arc_writer *w);
/* The archive's UUID (known from create on). */
const uint8_t *arc_writer_uuid(const struct arc_writer *w);

/* Declare that the archive holds guest memory in streams of another kind (RAM as pages): finish() then makes it
 * 0600 whatever the umask, as it does for any archive with an ARC_KIND_MEMORY stream. Any other archive gets
 * 0666 minus the umask. */
void arc_writer_holds_memory(struct arc_writer *w);
/* Complete the archive: index, directory, header, fsync, rename to the final path, fsync the directory.
 * Writes a metadata stream if none was added. Frees w whatever the outcome; on failure nothing is left
 * under the final name nor the temp name. */
int arc_writer_finish(struct arc_writer *w, vs_err *e);
/* Discard: remove the temp file and free w. NULL is fine. */
void arc_writer_abort(struct arc_writer *w);
void arc_writer_abortp(struct arc_writer **w);
#define ARC_WRITER_AUTOABORT __attribute__((cleanup(arc_writer_abortp)))

#endif
