/* blkcap: an NBD export copied into an archive disk stream with libnbd -- extents from block status (holes and
 * clean areas are not read), reads kept in flight, their data handed to the writer in offset order. */
#include "blkcap/blkcap.h"

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <string.h>

#define STATUS_WINDOW (1ull << 30)   /* bytes asked per block-status request (the protocol caps at 4 GiB) */
#define POLL_MS 200                  /* how often a wait looks at o->cancelled */

enum op_kind { OP_READ, OP_ZERO, OP_SKIP };

struct op {
    enum op_kind kind;
    uint64_t off, len;
    int64_t cookie;
    uint8_t *buf;              /* request_bytes, owned by the slot */
};

struct copy {
    struct nbd_handle *h;
    struct arc_writer *w;
    const struct bc_copy_opts *o;
    const char *sock, *exp, *ctx;
    struct bc_copy_stats st;
    struct op *ring;           /* FIFO of pending operations, in offset order */
    unsigned cap, head, n;
    uint32_t req;
    uint64_t done;
    /* extents of the current status window, as (length, kind) */
    struct { uint64_t len; enum op_kind kind; } *ext;
    size_t next, next_cap;
    uint64_t ext_off, ext_end;
    bool ext_bad;
};

static int nbd_fail(struct copy *c, vs_err *e, const char *what)
{
    int err = nbd_get_errno();
    return vs_err_set(e, err > 0 ? err : EIO, "NBD export '%s' on %s: %s: %s", c->exp, c->sock, what,
                      nbd_get_error() ? nbd_get_error() : "failed");
}

static bool cancelled(struct copy *c)
{
    return c->o->cancelled && c->o->cancelled(c->o->opaque);
}

/* Block status callback: keep the extents of our context, each checked and clamped to the export. */
static int on_extents(void *opaque, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr,
                      int *error)
{
    (void)error;
    struct copy *c = opaque;
    if (strcmp(metacontext, c->ctx) != 0)
        return 0;
    if (offset != c->ext_off || nr % 2 || c->next) {
        c->ext_bad = true;
        return 0;
    }
    uint64_t at = offset;
    for (size_t i = 0; i + 1 < nr && at < c->ext_end; i += 2) {
        if (entries[i] == 0) {
            c->ext_bad = true;
            return 0;
        }
        uint64_t len = VS_MIN((uint64_t)entries[i], c->ext_end - at);
        uint32_t fl = entries[i + 1];
        enum op_kind k = c->o->bitmap ? ((fl & 1) ? OP_READ : OP_SKIP)
                                      : ((fl & LIBNBD_STATE_ZERO) ? OP_ZERO : OP_READ);
        if (c->next == c->next_cap) {
            c->next_cap = c->next_cap ? 2 * c->next_cap : 64;
            c->ext = vs_xrealloc(c->ext, c->next_cap * sizeof *c->ext);
        }
        c->ext[c->next].len = len;
        c->ext[c->next++].kind = k;
        at += len;
    }
    return 0;
}

/* Extents from off, at least one byte of them. Without a usable context everything is data. */
static int status(struct copy *c, uint64_t off, vs_err *e)
{
    c->next = 0;
    c->ext_off = off;
    c->ext_end = off + VS_MIN(c->st.size - off, STATUS_WINDOW);
    c->ext_bad = false;
    if (!c->ctx) {
        c->ext = c->ext ? c->ext : vs_xmalloc(sizeof *c->ext);
        c->ext[0].len = c->ext_end - off;
        c->ext[0].kind = OP_READ;
        c->next = 1;
        return 0;
    }
    nbd_extent_callback cb = { .callback = on_extents, .user_data = c };
    if (nbd_block_status(c->h, c->ext_end - off, off, cb, 0) < 0)
        return nbd_fail(c, e, "block status");
    if (c->ext_bad || c->next == 0)
        return vs_err_set(e, EPROTO, "NBD export '%s' on %s: block status at %" PRIu64 " for %s: expected "
                          "non-empty extents from that offset on", c->exp, c->sock, off, c->ctx);
    return 0;
}

/* Retire the oldest operation: wait for its read, give its bytes to the writer. */
static int retire(struct copy *c, vs_err *e)
{
    struct op *op = &c->ring[c->head];
    int r = 0;
    if (op->kind == OP_READ) {
        for (;;) {
            int done = nbd_aio_command_completed(c->h, op->cookie);
            if (done < 0) {
                char what[96];
                snprintf(what, sizeof what, "read of %" PRIu64 " bytes at %" PRIu64, op->len, op->off);
                return nbd_fail(c, e, what);
            }
            if (done)
                break;
            if (cancelled(c))
                return vs_err_set(e, ECANCELED, "NBD export '%s' on %s: copy cancelled", c->exp, c->sock);
            if (nbd_poll(c->h, POLL_MS) < 0)
                return nbd_fail(c, e, "waiting for a read");
        }
        r = arc_writer_pwrite(c->w, op->buf, op->len, op->off, e);
        c->st.data_bytes += op->len;
    } else if (op->kind == OP_ZERO) {
        r = arc_writer_zero(c->w, op->off, op->len, e);
        c->st.zero_bytes += op->len;
    } else {
        c->st.skipped_bytes += op->len;
    }
    if (r < 0)
        return r;
    c->done = op->off + op->len;
    if (c->o->progress)
        c->o->progress(c->o->opaque, c->done, c->st.size);
    c->head = (c->head + 1) % c->cap;
    c->n--;
    return 0;
}

static int push(struct copy *c, enum op_kind kind, uint64_t off, uint64_t len, vs_err *e)
{
    int r;
    if (c->n == c->cap && (r = retire(c, e)) < 0)
        return r;
    struct op *op = &c->ring[(c->head + c->n) % c->cap];
    op->kind = kind;
    op->off = off;
    op->len = len;
    if (kind == OP_READ) {
        if (!op->buf)
            op->buf = vs_xmalloc(c->req);
        op->cookie = nbd_aio_pread(c->h, op->buf, len, off, NBD_NULL_COMPLETION, 0);
        if (op->cookie < 0)
            return nbd_fail(c, e, "sending a read");
    }
    c->n++;
    return 0;
}

static int connect_export(struct copy *c, vs_err *e)
{
    if (!(c->h = nbd_create()))
        return vs_err_set(e, ENOMEM, "libnbd: %s", nbd_get_error());
    if (nbd_set_export_name(c->h, c->exp) < 0 || (c->ctx && nbd_add_meta_context(c->h, c->ctx) < 0))
        return nbd_fail(c, e, "setting up the connection");
    if (bc__nbd_connect(c->h, c->sock, false) < 0)
        return nbd_fail(c, e, "cannot connect");
    int64_t size = nbd_get_size(c->h);
    if (size < 0)
        return nbd_fail(c, e, "size");
    c->st.size = (uint64_t)size;
    int can = c->ctx ? nbd_can_meta_context(c->h, c->ctx) : 0;
    if (c->o->bitmap && can != 1)
        return vs_err_set(e, ENOENT, "NBD export '%s' on %s does not export dirty bitmap '%s' (meta context %s)",
                          c->exp, c->sock, c->o->bitmap, c->ctx);
    if (can != 1)
        c->ctx = NULL;   /* a server without base:allocation: every byte is read */
    int64_t max = nbd_get_block_size(c->h, LIBNBD_SIZE_MAXIMUM);
    if (max > 0 && (uint64_t)max < c->req)
        c->req = (uint32_t)max;
    return 0;
}

int bc_nbd_copy(const char *socket_path, const char *export_name, struct arc_writer *w, const char *stream,
                const struct bc_copy_opts *o, struct bc_copy_stats *st, vs_err *e)
{
    static const struct bc_copy_opts defaults = { 0 };
    o = o ? o : &defaults;
    VS_AUTOFREE char *ctx = o->bitmap ? vs_xasprintf("qemu:dirty-bitmap:%s", o->bitmap) : NULL;
    struct copy c = { .w = w, .o = o, .sock = socket_path, .exp = export_name,
                      .ctx = ctx ? ctx : LIBNBD_CONTEXT_BASE_ALLOCATION,
                      .req = o->request_bytes ? o->request_bytes : 1u << 20 };
    c.cap = o->in_flight ? o->in_flight : 8;
    c.ring = vs_xcalloc(c.cap, sizeof *c.ring);
    int r = connect_export(&c, e);
    if (r == 0)
        r = arc_writer_begin(w, ARC_KIND_DISK, stream, c.st.size, e);
    for (uint64_t off = 0; r == 0 && off < c.st.size;) {
        if ((r = status(&c, off, e)) < 0)
            break;
        for (size_t i = 0; r == 0 && i < c.next; i++) {
            uint64_t len = c.ext[i].len;
            if (c.ext[i].kind != OP_READ) {
                r = push(&c, c.ext[i].kind, off, len, e);
                off += len;
                continue;
            }
            for (uint64_t k = 0; r == 0 && k < len; k += c.req) {
                r = push(&c, OP_READ, off + k, VS_MIN((uint64_t)c.req, len - k), e);
            }
            off += len;
        }
    }
    while (r == 0 && c.n)
        r = retire(&c, e);
    if (r == 0)
        r = arc_writer_end(w, e);
    if (st)
        *st = c.st;
    if (c.h && r == 0)
        nbd_shutdown(c.h, 0);   /* a clean NBD_CMD_DISC, so the server does not log a broken connection */
    if (c.h)
        nbd_close(c.h);   /* also drops reads still in flight after an error */
    for (unsigned i = 0; i < c.cap; i++)
        free(c.ring[i].buf);
    free(c.ring);
    free(c.ext);
    return r;
}
