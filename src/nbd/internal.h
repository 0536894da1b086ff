/* nbd: private declarations shared by the files of src/nbd/, grouped by the file that defines them. */
#ifndef VMSNAP_NBD_INTERNAL_H
#define VMSNAP_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "nbd/nbd.h"

/* ---- layer.c: one layer file (docs/OVERLAY.md) ---------------------------
 * The in-memory map is a table of 4 KiB chunks (2 bits per block, 16384 blocks each) allocated on first write,
 * so RAM follows what was written, not the disk size. The on-disk map has the same layout. */
#define LAYER_MAGIC "VMSNOVL1"
#define LAYER_VERSION 1u
#define LAYER_HDR_SIZE 4096u
#define LAYER_CHUNK_BYTES 4096u
#define LAYER_CHUNK_BLOCKS (LAYER_CHUNK_BYTES * 4u)
#define LAYER_CHUNK_WORDS (LAYER_CHUNK_BYTES / 8u)
#define LAYER_MAX_STACK 4096u /* layers base_seq..seq of one stack: each is an open file */

struct layer_hdr {
    uint64_t disk_size;
    uint32_t seq;       /* this layer's number */
    uint32_t base_seq;  /* lowest layer of the stack (authoritative in the live layer) */
    uint8_t base_uuid[16];
    uint8_t stack_id[16];
};

struct layer {
    struct layer_hdr h;
    int fd;
    char *path;
    uint64_t nblocks, nchunks, map_off, data_off;
    _Atomic(uint64_t *) *chunks;
    atomic_uchar *dirty;
};

/* Make the file open on fd (owned from here, closed on failure) layer path: header h, an empty map, fsynced. */
int layer_create(const char *path, int fd, const struct layer_hdr *h, struct layer **out, vs_err *e);
/* Open path, or adopt fd when it is >= 0 (owned from here), check its header and load its map (only the
 * allocated parts of the file are read). */
int layer_open(const char *path, int fd, bool rdonly, struct layer **out, vs_err *e);
void layer_free(struct layer *l);
static inline unsigned layer_get(const struct layer *l, uint64_t b)
{
    uint64_t *c = atomic_load_explicit(&l->chunks[b / LAYER_CHUNK_BLOCKS], memory_order_acquire);
    if (!c)
        return 0;
    uint64_t w = atomic_load_explicit((_Atomic uint64_t *)&c[(b % LAYER_CHUNK_BLOCKS) / 32], memory_order_acquire);
    return (unsigned)(w >> (b % 32 * 2)) & 3;
}
/* Set blocks [b, b + n) to st; returns the OR of their old states' bits (1 << state). */
unsigned layer_set(struct layer *l, uint64_t b, uint64_t n, unsigned st);
/* Make data and map durable: fdatasync data, then write changed map chunks, then fdatasync again. */
int layer_sync(struct layer *l, vs_err *e);
/* Rewrite the header (new base) and fdatasync. */
int layer_write_hdr(struct layer *l, const struct layer_hdr *h, vs_err *e);
/* Count blocks per state (index = state). */
void layer_count(const struct layer *l, uint64_t counts[4]);

/* ---- request.c: decoding and validating one transmission request (pure; fuzzed) ---- */
struct nbd_request {
    uint16_t flags, type;
    uint64_t cookie, offset;
    uint32_t length;
};
/* What the session negotiated, as far as validation cares. */
struct nbd_caps {
    uint64_t size;
    uint16_t eflags;      /* transmission flags sent to the client */
    bool structured;      /* NBD_OPT_STRUCTURED_REPLY */
    bool meta_allocation; /* base:allocation selected */
};
/* Decode a 28-byte header; -EPROTO on a bad magic. */
int nbd_request_decode(const uint8_t *hdr, struct nbd_request *rq);
/* 0 if rq may be executed, else the NBD error to answer with. *fatal is set when the stream cannot be kept
 * in sync (a write payload too large to skip): the connection must be dropped. */
uint32_t nbd_request_check(const struct nbd_caps *c, const struct nbd_request *rq, bool *fatal, const char **why);
/* Does rq carry a payload after its header? */
static inline bool nbd_request_has_payload(const struct nbd_request *rq) { return rq->type == 1 /* WRITE */; }

/* ---- handshake.c / transmit.c: one NBD session ------------------------------- */
struct session {
    struct nbd_server *srv;
    struct nbd_overlay *o;
    int in, out;
    bool out_is_socket; /* try sendmsg(MSG_NOSIGNAL) first */
    struct nbd_caps caps;
    bool no_zeroes;
    pthread_mutex_t rlock, wlock; /* reading requests / writing replies; never both held */
    atomic_bool dead;
    pthread_mutex_t errlock;
    vs_err err; /* first fatal error of the session */
};
/* Option haggling: 1 = enter transmission, 0 = the client left cleanly, < 0 = error (in s->err). */
int session_handshake(struct session *s);
/* Transmission phase with `threads` workers; returns when the client is gone. */
int session_transmit(struct session *s, unsigned threads);
void session_fail(struct session *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Read exactly len bytes; -EPIPE at EOF. */
int session_read(struct session *s, void *buf, size_t len);
int session_write(struct session *s, const void *buf, size_t len);
struct iovec;
int session_writev(struct session *s, struct iovec *iov, int n);

/* ---- server.c ------------------------------------------------------------------ */
bool server_stopping(struct nbd_server *srv);
const struct nbd_server_opts *server_opts(struct nbd_server *srv);

/* ---- readlog.c ----------------------------------------------------------------- */
/* Failure episodes of a server's reads, for nbd_server_opts.log. */
struct read_log {
    pthread_mutex_t lock;
    atomic_bool failing;       /* an episode runs: set by a failed read, cleared by the next good one */
    uint64_t failed;           /* reads failed in this episode */
    double logged_at;          /* monotonic seconds of its last line */
};
void read_log_init(struct read_log *l);
void read_log_destroy(struct read_log *l);
/* After a read (or block status) of the disk: r < 0 is a failure (why in e). */
void read_log_outcome(struct nbd_server *srv, int r, const vs_err *e);
struct read_log *server_read_log(struct nbd_server *srv);

#endif
