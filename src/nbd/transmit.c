/* nbd: the transmission phase. Each worker thread takes the read lock, reads one request (and its payload),
 * releases it, executes the request against the overlay and sends the reply under the write lock; replies
 * may leave out of order (proto.md "Transmission"). */
#include "nbd/internal.h"
#include "nbd/proto.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_EXTENTS 1024

struct worker {
    struct session *s;
    uint8_t *buf;
    size_t cap;
};

static uint8_t *worker_buf(struct worker *w, size_t len)
{
    if (w->cap < len) {
        free(w->buf);
        w->buf = vs_xmalloc(len);
        w->cap = len;
    }
    return w->buf;
}

static int send_iov(struct session *s, struct iovec *iov, int n)
{
    pthread_mutex_lock(&s->wlock);
    int r = session_writev(s, iov, n);
    pthread_mutex_unlock(&s->wlock);
    if (r < 0)
        session_fail(s, r, "sending a reply: %s", strerror(-r));
    return r;
}

static int send_simple(struct session *s, uint64_t cookie, uint32_t err, const void *data, size_t len)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    vs_put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
    vs_put_be32(h + 4, err);
    vs_put_be64(h + 8, cookie);
    struct iovec iov[2] = { { h, sizeof(h) }, { (void *)data, len } };
    return send_iov(s, iov, len ? 2 : 1);
}

/* One structured chunk: header, an optional small prefix (offset, context id...), then data. */
static int send_chunk(struct session *s, uint64_t cookie, uint16_t flags, uint16_t type, const void *pre,
                      size_t prelen, const void *data, size_t len)
{
    uint8_t h[NBD_STRUCTURED_REPLY_SIZE];
    vs_put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
    vs_put_be16(h + 4, flags);
    vs_put_be16(h + 6, type);
    vs_put_be64(h + 8, cookie);
    vs_put_be32(h + 16, (uint32_t)(prelen + len));
    struct iovec iov[3] = { { h, sizeof(h) }, { (void *)pre, prelen }, { (void *)data, len } };
    return send_iov(s, iov, 3);
}

static int send_error(struct session *s, const struct nbd_request *rq, uint32_t err, const char *msg)
{
    if (!s->caps.structured)
        return send_simple(s, rq->cookie, err, NULL, 0);
    uint8_t pre[6];
    size_t ml = msg ? VS_MIN(strlen(msg), 1024) : 0;
    vs_put_be32(pre, err);
    vs_put_be16(pre + 4, (uint16_t)ml);
    return send_chunk(s, rq->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, pre, sizeof(pre), msg, ml);
}

static int send_ok(struct session *s, const struct nbd_request *rq)
{
    return send_simple(s, rq->cookie, 0, NULL, 0);
}

static int do_read(struct worker *w, const struct nbd_request *rq)
{
    struct session *s = w->s;
    uint8_t *buf = worker_buf(w, rq->length);
    vs_err e = { 0 };
    int r = nbd_overlay_read(s->o, buf, rq->length, rq->offset, &e);
    read_log_outcome(s->srv, r, &e);
    if (r < 0)
        return send_error(s, rq, nbd_errno_to_wire(r), e.msg);
    if (!s->caps.structured)
        return send_simple(s, rq->cookie, 0, buf, rq->length);
    if (rq->length == 0)
        return send_chunk(s, rq->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
    uint8_t pre[8];
    vs_put_be64(pre, rq->offset);
    return send_chunk(s, rq->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, pre, sizeof(pre), buf,
                      rq->length);
}

static int do_block_status(struct worker *w, const struct nbd_request *rq)
{
    struct session *s = w->s;
    uint32_t max = (rq->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
    uint8_t *p = worker_buf(w, 8 * (size_t)MAX_EXTENTS);
    uint32_t n = 0;
    uint64_t off = rq->offset, end = rq->offset + rq->length;
    uint32_t last_flags = 0;
    while (off < end) {
        uint64_t run;
        uint32_t flags;
        vs_err e = { 0 };
        int r = nbd_overlay_extent(s->o, off, end - off, &run, &flags, &e);
        read_log_outcome(s->srv, r, &e);
        if (r < 0)
            return send_error(s, rq, nbd_errno_to_wire(r), e.msg);
        if (n && flags == last_flags) { /* merge with the previous descriptor */
            uint32_t prev = vs_get_be32(p + 8 * (n - 1));
            vs_put_be32(p + 8 * (n - 1), (uint32_t)(prev + run));
        } else {
            if (n == max)
                break;
            vs_put_be32(p + 8 * n, (uint32_t)run);
            vs_put_be32(p + 8 * n + 4, flags);
            n++;
            last_flags = flags;
        }
        off += run;
    }
    uint8_t pre[4];
    vs_put_be32(pre, NBD_META_ALLOCATION_ID);
    return send_chunk(s, rq->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, pre, sizeof(pre), p,
                      8 * (size_t)n);
}

static int execute(struct worker *w, const struct nbd_request *rq, const uint8_t *payload)
{
    struct session *s = w->s;
    unsigned io = (rq->flags & NBD_CMD_FLAG_FUA) ? NBD_IO_FUA : 0;
    vs_err e = { 0 };
    int r = 0;
    switch (rq->type) {
    case NBD_CMD_READ:
        return do_read(w, rq);
    case NBD_CMD_BLOCK_STATUS:
        return do_block_status(w, rq);
    case NBD_CMD_WRITE:
        r = nbd_overlay_write(s->o, payload, rq->length, rq->offset, io, &e);
        break;
    case NBD_CMD_FLUSH:
        r = nbd_overlay_flush(s->o, &e);
        break;
    case NBD_CMD_TRIM:
        r = nbd_overlay_trim(s->o, rq->length, rq->offset, io, &e);
        break;
    case NBD_CMD_WRITE_ZEROES:
        /* Fast only where whole blocks are marked zero; partial blocks need a read-modify-write. */
        if ((rq->flags & NBD_CMD_FLAG_FAST_ZERO) &&
            (rq->offset % NBD_BLOCK_SIZE ||
             ((rq->offset + rq->length) % NBD_BLOCK_SIZE && rq->offset + rq->length != s->caps.size)))
            return send_error(s, rq, NBD_ENOTSUP, "fast zero needs 4 KiB alignment");
        r = nbd_overlay_zero(s->o, rq->length, rq->offset,
                             io | ((rq->flags & NBD_CMD_FLAG_NO_HOLE) ? NBD_IO_NO_HOLE : 0), &e);
        break;
    case NBD_CMD_CACHE:
        break; /* a hint; reads are served from the page cache and the archive's own cache */
    }
    if (r < 0)
        return send_error(s, rq, nbd_errno_to_wire(r), e.msg);
    return send_ok(s, rq);
}

/* Read one request and its payload under the read lock. 1 = got one, 0 = the session is over. */
static int next_request(struct worker *w, struct nbd_request *rq, uint8_t **payload, uint32_t *err,
                        const char **why)
{
    struct session *s = w->s;
    uint8_t h[NBD_REQUEST_SIZE];
    *payload = NULL;
    pthread_mutex_lock(&s->rlock);
    int ret = 0;
    if (atomic_load(&s->dead))
        goto out;
    int r = session_read(s, h, sizeof(h));
    if (r < 0) {
        if (r != -EPIPE)
            session_fail(s, r, "reading a request: %s", strerror(-r));
        atomic_store(&s->dead, true); /* EOF: the client left (or the server is stopping) */
        goto out;
    }
    if (nbd_request_decode(h, rq) < 0) {
        session_fail(s, EPROTO, "bad request magic 0x%08x", vs_get_be32(h));
        goto out;
    }
    bool fatal;
    *err = nbd_request_check(&s->caps, rq, &fatal, why);
    if (fatal) {
        session_fail(s, EPROTO, "%s: %s (%u bytes)", nbd_name_of_cmd(rq->type), *why, rq->length);
        goto out;
    }
    if (rq->type == NBD_CMD_DISC) {
        atomic_store(&s->dead, true);
        goto out;
    }
    if (nbd_request_has_payload(rq) && rq->length) {
        /* Read the payload even for a rejected write, so the stream stays in sync. */
        *payload = worker_buf(w, rq->length);
        if ((r = session_read(s, *payload, rq->length)) < 0) {
            session_fail(s, r, "client left inside a %u-byte write", rq->length);
            goto out;
        }
    }
    ret = 1;
out:
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct session *s = w->s;
    struct nbd_request rq;
    uint8_t *payload;
    uint32_t err;
    const char *why;
    while (next_request(w, &rq, &payload, &err, &why) == 1) {
        if (server_stopping(s->srv))
            err = NBD_ESHUTDOWN, why = "server is shutting down";
        int r = err ? send_error(s, &rq, err, why) : execute(w, &rq, payload);
        if (r < 0)
            break;
    }
    return NULL;
}

int session_transmit(struct session *s, unsigned threads)
{
    if (threads == 0)
        threads = 1;
    struct worker *ws = vs_xcalloc(threads, sizeof(*ws));
    pthread_t *th = vs_xcalloc(threads, sizeof(*th));
    unsigned started = 1;
    for (unsigned i = 0; i < threads; i++)
        ws[i].s = s;
    for (unsigned i = 1; i < threads; i++)
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) == 0)
            started = i + 1;
        else
            break;
    worker_main(&ws[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < threads; i++)
        free(ws[i].buf);
    free(ws);
    free(th);
    return s->err.code;
}
