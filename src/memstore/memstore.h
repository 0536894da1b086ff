/* memstore: guest memory stored as pages. Prefix: mst_.
 *
 * - In an archive: one stream per split RAM block ("ram/<idstr>", page i at byte i*4096, zero pages as zero
 *   blocks) and the device stream ("memory-device": the migration stream without those pages). Capture writes
 *   them from a live migration stream; reassembly turns them back into the full stream QEMU loads; page lookups
 *   let a page server (pagefs) read a RAM stream at any offset.
 * - In a local page image: a checksummed sparse copy of RAM blocks (a directory with blocks.json, one sparse file
 *   and one checksum file per block), written by the migration stream splitter. For tests and a local store;
 *   docs/LAZY-RESUME.md says how the archive takes its place.
 * Sits on migstream (the stream splitter/reassembler) and archive; knows nothing of FUSE or QEMU. */
#ifndef VMSNAP_MEMSTORE_H
#define VMSNAP_MEMSTORE_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include "archive/archive.h"
#include "migstream/migstream.h"
#include "util/util.h"

#define MST_PAGE_SIZE 4096u

/* ---- page image --------------------------------------------------------------------------------------- */
struct mst_image;
struct mst_image_block { char name[256]; uint64_t size; };

/* Create dir/ (must not exist) for these blocks. */
int mst_image_create(const char *dir, const struct mst_image_block *b, unsigned n, struct mst_image **out,
                     vs_err *e);
/* Write page off of block i (data NULL: zero page, a hole). */
int mst_image_put(struct mst_image *im, unsigned i, uint64_t off, const void *data, vs_err *e);
/* fsync the files, write blocks.json (temp name + rename): the image is complete. */
int mst_image_commit(struct mst_image *im, vs_err *e);
int mst_image_open(const char *dir, struct mst_image **out, vs_err *e);
void mst_image_close(struct mst_image *im);
unsigned mst_image_blocks(const struct mst_image *im, const struct mst_image_block **b);
/* Read [off, off+len) of block i checking every page's checksum: a damaged page is -EIO naming it. */
int mst_image_read(struct mst_image *im, unsigned i, void *buf, size_t len, uint64_t off, vs_err *e);
/* Whether page off of block i was never written or written as zero. */
bool mst_image_is_zero(struct mst_image *im, unsigned i, uint64_t off);

/* ---- RAM in an archive ---------------------------------------------------------------------------------- */
#define MST_RAM_PREFIX "ram/"           /* stream "ram/<idstr>": one RAM block, page-addressed */
#define MST_DEVICE "memory-device"      /* the migration stream without the split blocks' pages */
/* One RAM stream of a (held open) archive. */
struct mst_ram {
    struct arc *a;
    unsigned stream;
    const char *block;             /* the RAM block's idstr: the name without MST_RAM_PREFIX (while a is open) */
    uint64_t size;                 /* whole pages */
};
/* The archive's RAM streams (none is fine); a stream that is not whole pages is an error naming it. */
int mst_ram_streams(struct arc *a, struct mst_ram **out, unsigned *n, vs_err *e);
/* Fill buf with [off, off+len) of the RAM stream, every block checked; refused once the archive file changed
 * under the open fd (a VM reads its RAM from it for its whole life). Thread-safe. */
int mst_ram_read(const struct mst_ram *r, void *buf, size_t len, uint64_t off, vs_err *e);
/* *len (in: the most wanted) bytes from off are all zero (*zero) or all data. */
int mst_ram_data_run(const struct mst_ram *r, uint64_t off, uint64_t *len, bool *zero, vs_err *e);
/* Eager restore from such an archive: write the complete migration stream (the device stream with the RAM
 * streams' non-zero pages put back, ms_reassemble) to out_fd, e.g. the pipe QEMU loads from. Every page read
 * is checked against its block's checksum. */
int mst_reassemble(struct arc *a, int out_fd, struct ms_summary *sum, vs_err *e);
/* Whether the archive holds memory as pages (a MST_DEVICE stream). */
bool mst_is_paged(struct arc *a);
/* Write each block of the image as a RAM stream (zero pages as zero blocks). The caller adds MST_DEVICE. */
int mst_image_to_archive(struct mst_image *im, struct arc_writer *w, vs_err *e);

/* ---- working set (docs/FORMAT.md, "Working set") ----------------------------------------------------------
 * The RAM ranges a resumed guest asked the page server for first, in order of first touch: stream
 * MST_WS_STREAM (kind other) of a thin archive over the booted one. Parsed strictly (archives are untrusted). */
#define MST_WS_STREAM "working-set"
#define MST_WS_MAX_ENTRIES (1u << 20)  /* ranges: the recorder stops there */
#define MST_WS_MAX_STREAMS 64u
#define MST_WS_MAX_BYTES (32u + MST_WS_MAX_STREAMS * 264u + MST_WS_MAX_ENTRIES * 16u + 8u)
struct mst_ws_stream { char name[256]; uint64_t size; };   /* a RAM stream ("ram/mem") and its size */
struct mst_ws_entry { uint32_t stream, pages; uint64_t off; };   /* off: bytes, page-aligned */
struct mst_ws {
    unsigned nstreams;
    struct mst_ws_stream *streams;
    size_t n;
    struct mst_ws_entry *entries;
    uint64_t pages;                /* sum of the entries' pages (set by parse and encode) */
};
/* Check ws (streams, bounds, alignment, counts) and encode it into a malloc'd buffer. */
int mst_ws_encode(struct mst_ws *ws, uint8_t **out, size_t *len, vs_err *e);
/* Parse and check a record: every range within its stream's recorded size. */
int mst_ws_parse(const void *buf, size_t len, struct mst_ws *out, vs_err *e);
/* The archive's own working set, parsed and checked against its RAM streams (names and sizes): 1 and *out, 0
 * when it has none, or an error naming the stream. */
int mst_ws_read(struct arc *a, struct mst_ws *out, vs_err *e);
/* Each stream ws names is a RAM stream of a, of the size recorded: 0 or an error naming it. */
int mst_ws_check_archive(struct arc *a, const struct mst_ws *ws, vs_err *e);
void mst_ws_free(struct mst_ws *ws);   /* NULL is fine */
#define MST_WS_AUTOFREE __attribute__((cleanup(mst_ws_free)))

/* ---- capture: a migration stream into an archive, page-addressed ------------------------------------------ */
struct mst_capture_opts {
    const char *split;             /* RAM block to store as pages; NULL: "mem", else "pc.ram", else the largest */
    size_t hold_bytes;             /* bound on partial RAM blocks held (arc_writer_begin_unordered); 0 = 64 MiB */
    const char *tmpdir;            /* where the device stream is spilled (unlinked file); NULL = /var/tmp */
};
struct mst_capture_result {
    bool paged;                    /* false: stored as the opaque "memory" stream (see note) */
    char note[512];                /* why the stream was stored opaque; when paged, what part of it the device
                                    * stream keeps as QEMU sent it ("" if none) */
    char block[256];               /* the RAM block stored as pages */
    uint64_t ram_size;
    uint64_t stream_bytes;         /* bytes read from fd */
    struct ms_summary sum;         /* the splitter's summary (paged) */
};
/* Read a migration stream from fd until EOF into w (no stream open): the RAM block as stream
 * MST_RAM_PREFIX<idstr> (unordered: pages as QEMU sends them, zero pages elided, thin against the base's
 * stream of that name) and then MST_DEVICE. If the splitter refuses the stream before it committed (no page
 * stored yet), everything is stored as the opaque kind-memory stream "memory" instead: returns 0 with
 * res->paged false and res->note saying why (the caller warns). Something not understood after that keeps the
 * rest of the stream in MST_DEVICE as it came (res->paged true, res->note says so; it restores the same). A
 * malformed stream or an error fails (the caller aborts the archive: a snapshot is never half paged). Memory:
 * hold_bytes + the RAM index (32 bytes per 64 KiB) + up to 64 MiB of raw bytes before the commit (in practice a
 * few KB) + the splitter's tail. */
int mst_capture_fd(struct arc_writer *w, int fd, const struct mst_capture_opts *o, struct mst_capture_result *res,
                   vs_err *e);
/* The same, pushed: new, push the bytes as they come, finish at EOF (fills res), free. After a failed push the
 * capture refuses everything (the caller drains its input and aborts the archive). */
struct mst_capture;
int mst_capture_new(struct arc_writer *w, const struct mst_capture_opts *o, struct mst_capture **out, vs_err *e);
int mst_capture_push(struct mst_capture *c, const void *buf, size_t len, vs_err *e);
int mst_capture_finish(struct mst_capture *c, struct mst_capture_result *res, vs_err *e);
void mst_capture_free(struct mst_capture *c);   /* NULL is fine */

#endif
