/* nbd: an NBD server (fixed newstyle, structured replies, base:allocation) over a layered 4 KiB copy-on-write
 * overlay that sits on a read-only base image (a .vmsnap archive's disk, or a raw file).
 * Prefix: nbd_. The library never prints or exits; `vmsnap serve` and `vmsnap boot` drive it.
 *
 *   base image (read-only)  <-  frozen layers (immutable)  <-  live layer (takes writes)
 *
 * Formats and protocols: docs/OVERLAY.md (layer files), docs/CONTROL.md (control socket). */
#ifndef VMSNAP_NBD_H
#define VMSNAP_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

#define NBD_BLOCK_SIZE 4096u

/* ---- base image --------------------------------------------------------
 * The read-only data under the overlay. Callbacks must be thread-safe (called from many threads at once). */
#define NBD_EXTENT_HOLE 1u /* not allocated (NBD_STATE_HOLE) */
#define NBD_EXTENT_ZERO 2u /* reads as zeroes (NBD_STATE_ZERO) */

struct nbd_base {
    uint64_t size;     /* bytes */
    uint8_t uuid[16];  /* identity: an overlay refuses a base with another UUID */
    void *ctx;
    /* Read exactly len bytes at off (off + len <= size). Returns 0 or -errno. */
    int (*pread)(void *ctx, void *buf, size_t len, uint64_t off, vs_err *e);
    /* Status of the range starting at off: *flags (NBD_EXTENT_*) holds for *run bytes, 0 < *run <= len.
     * May be NULL (everything is data). */
    int (*extent)(void *ctx, uint64_t off, uint64_t len, uint64_t *run, uint32_t *flags, vs_err *e);
    /* Release ctx and the struct itself. */
    void (*close)(struct nbd_base *b);
};

/* A raw image file as base (tests, benchmarks, qemu-nbd-style serving). Its UUID is derived from the file's
 * absolute path, so an overlay follows the file it was made for. */
struct cr_key;
int nbd_base_open_raw(const char *path, struct nbd_base **out, vs_err *e);
void nbd_base_close(struct nbd_base *b);
/* Disk N (from 0, in pack order) of a .vmsnap archive as base, with its own reader (64 MiB block cache); an empty
 * disk is refused. Its identity is nbd_base_archive_identity(), the one rule for `serve` and `boot` alike. */
int nbd_base_open_archive(const char *path, unsigned disk, const struct cr_key *key, struct nbd_base **out,
                          vs_err *e);
/* The same, with wrap(opaque, ...) as arc_open_opts.wrap (may be NULL) and check(opaque, archive) run on the
 * opened archive before anything of it is used (signatures; may be NULL). */
struct arc;
struct arc_source;
typedef int (*nbd_wrap_source_fn)(void *opaque, struct arc_source **src, vs_err *e);
typedef int (*nbd_check_archive_fn)(void *opaque, struct arc *a, vs_err *e);
int nbd_base_open_archive_checked(const char *path, unsigned disk, const struct cr_key *key, nbd_wrap_source_fn wrap,
                                  nbd_check_archive_fn check, void *opaque, struct nbd_base **out, vs_err *e);
/* Identity of disk N of an archive (docs/OVERLAY.md): the archive's UUID with its last byte XORed with N, so an
 * overlay made for one disk is refused on another disk of the same archive. */
void nbd_base_archive_identity(const uint8_t archive_uuid[16], unsigned disk, uint8_t out[16]);

/* ---- overlay -------------------------------------------------------------
 * Layer files: PATH is the live layer, PATH.<seq> the frozen ones (docs/OVERLAY.md). All calls are thread-safe.
 * Reads never serialize behind one global lock; freeze/rebase wait only for requests in flight. */
struct nbd_overlay;

enum {
    NBD_OVL_CREATE = 1 << 0,   /* create PATH if absent */
    NBD_OVL_TEMP = 1 << 1,     /* PATH is NULL: temporary layers in $TMPDIR, removed by close */
    NBD_OVL_READONLY = 1 << 2, /* refuse writes (-EROFS) and never modify the files */
};

/* Open (or create) the overlay stack at path over base. On success the overlay owns base.
 * A stack made for another base (UUID or size) is refused with a message naming both UUIDs. */
int nbd_overlay_open(const char *path, struct nbd_base *base, unsigned flags, struct nbd_overlay **out,
                     vs_err *e);
/* Flush, unlock and free (removes temporary layers). NULL is fine. */
void nbd_overlay_close(struct nbd_overlay *o);
uint64_t nbd_overlay_size(const struct nbd_overlay *o);
bool nbd_overlay_read_only(const struct nbd_overlay *o);

enum { NBD_IO_FUA = 1 << 0, NBD_IO_NO_HOLE = 1 << 1 };
/* I/O on the visible disk (top of the stack). Ranges must lie within the disk. Return 0 or -errno. */
int nbd_overlay_read(struct nbd_overlay *o, void *buf, size_t len, uint64_t off, vs_err *e);
int nbd_overlay_write(struct nbd_overlay *o, const void *buf, size_t len, uint64_t off, unsigned io, vs_err *e);
int nbd_overlay_zero(struct nbd_overlay *o, uint64_t len, uint64_t off, unsigned io, vs_err *e);
/* Discard whole 4 KiB blocks inside the range (partial blocks are left as they are); they read as zeroes. */
int nbd_overlay_trim(struct nbd_overlay *o, uint64_t len, uint64_t off, unsigned io, vs_err *e);
/* Everything written so far is on stable storage when this returns 0. */
int nbd_overlay_flush(struct nbd_overlay *o, vs_err *e);
/* Status of the visible disk from off: *flags (NBD_EXTENT_*) holds for *run bytes (0 < *run <= len). */
int nbd_overlay_extent(struct nbd_overlay *o, uint64_t off, uint64_t len, uint64_t *run, uint32_t *flags,
                       vs_err *e);

/* ---- layers: freeze and rebase ------------------------------------------- */
struct nbd_layer_info {
    uint32_t seq;        /* layer number; the live layer has the highest */
    bool frozen;
    uint64_t data_blocks, zero_blocks, trim_blocks; /* blocks this layer changes */
    char path[4096];
};
/* Make the live layer immutable and put a fresh live layer on top: O(1) in what was written, waits only for
 * requests in flight. The frozen layer is flushed before this returns. *seq gets the frozen layer's number. */
int nbd_overlay_freeze(struct nbd_overlay *o, uint32_t *seq, vs_err *e);
/* Layers, bottom first. *out is malloc'd. */
int nbd_overlay_layers(struct nbd_overlay *o, struct nbd_layer_info **out, size_t *n, vs_err *e);

/* Blocks a frozen layer (or any layer of a read-only overlay) changes, as runs [block, block + count) of one
 * state, in block order. */
enum nbd_block_state { NBD_BLK_ABSENT = 0, NBD_BLK_DATA = 1, NBD_BLK_ZERO = 2, NBD_BLK_TRIM = 3 };
typedef int (*nbd_run_fn)(void *opaque, uint64_t block, uint64_t count, enum nbd_block_state st);
int nbd_overlay_layer_runs(struct nbd_overlay *o, uint32_t seq, nbd_run_fn fn, void *opaque, vs_err *e);
/* Read the disk as it was when layer seq was frozen (that layer, the ones below it and the base). */
int nbd_overlay_read_at(struct nbd_overlay *o, uint32_t seq, void *buf, size_t len, uint64_t off, vs_err *e);
/* A new base holds the disk as of frozen layer seq: drop layers <= seq and serve the rest on new_base
 * (same size). Crash-safe: the live layer's header names the new base before old layers are removed.
 * On success the overlay owns new_base and has closed the old base. */
int nbd_overlay_rebase(struct nbd_overlay *o, uint32_t seq, struct nbd_base *new_base, vs_err *e);

/* ---- server -------------------------------------------------------------- */
struct nbd_server;

struct nbd_server_opts {
    unsigned threads;         /* workers per connection; 0 = default (4) */
    const char *description;  /* NBD_INFO_DESCRIPTION, may be NULL */
    /* Optional: told (one line, from any worker thread) why reads of the disk fail: the first failure of an
     * episode (until a read succeeds again), then at most once a minute while it lasts. */
    void (*log)(void *opaque, const char *msg);
    void *log_opaque;
};

/* Serve o (borrowed; must outlive the server) to any number of clients. */
int nbd_server_new(struct nbd_overlay *o, const struct nbd_server_opts *opts, struct nbd_server **out, vs_err *e);
/* Listen on a Unix socket at path (mode 0600, an existing socket file is replaced) in a background thread. */
int nbd_server_listen_unix(struct nbd_server *s, const char *path, vs_err *e);
/* Run one session on already-connected fds (in may equal out) in the calling thread, until the client
 * disconnects or the server stops: stdin/stdout mode, socketpairs in tests, the fuzzer. Returns 0 after a
 * clean disconnect, -errno after a protocol violation or I/O error (message in e). */
int nbd_server_serve_fds(struct nbd_server *s, int in, int out, vs_err *e);
/* Number of sessions currently connected. */
unsigned nbd_server_sessions(struct nbd_server *s);
/* Stop accepting, end every session (requests in flight complete first), flush the overlay. Idempotent. */
int nbd_server_stop(struct nbd_server *s, vs_err *e);
/* Stop (if needed), remove the socket file, free. NULL is fine. */
void nbd_server_free(struct nbd_server *s);

/* ---- control socket (docs/CONTROL.md) -------------------------------------
 * A JSON-lines socket through which another process (vmsnap snap) freezes, inspects and rebases the overlay. */
struct nbd_control;
/* Opens the base named by a rebase request (e.g. an archive's disk). */
typedef int (*nbd_open_base_fn)(void *opaque, const char *path, unsigned disk, struct nbd_base **out, vs_err *e);
int nbd_control_start(struct nbd_overlay *o, const char *path, nbd_open_base_fn open_base, void *opaque,
                      struct nbd_control **out, vs_err *e);
/* Handle one request line (no newline) and return the malloc'd reply line; used by the socket and by tests. */
char *nbd_control_handle(struct nbd_control *c, const char *line);
void nbd_control_stop(struct nbd_control *c);

static inline void nbd_overlay_closep(struct nbd_overlay **p) { nbd_overlay_close(*p); }
static inline void nbd_server_freep(struct nbd_server **p) { nbd_server_free(*p); }
static inline void nbd_base_closep(struct nbd_base **p) { nbd_base_close(*p); }
#define NBD_OVERLAY_AUTOCLOSE __attribute__((cleanup(nbd_overlay_closep)))
#define NBD_SERVER_AUTOFREE __attribute__((cleanup(nbd_server_freep)))
#define NBD_BASE_AUTOCLOSE __attribute__((cleanup(nbd_base_closep)))

#endif
