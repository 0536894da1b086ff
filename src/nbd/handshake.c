/* nbd: fixed newstyle handshake and option haggling (proto.md "Newstyle negotiation", "Option types"). */
#include "nbd/internal.h"
#include "nbd/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

void session_fail(struct session *s, int code, const char *fmt, ...)
{
    pthread_mutex_lock(&s->errlock);
    if (!s->err.code) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->err.msg, sizeof(s->err.msg), fmt, ap);
        va_end(ap);
        s->err.code = -abs(code);
    }
    pthread_mutex_unlock(&s->errlock);
    atomic_store(&s->dead, true);
}

int session_read(struct session *s, void *buf, size_t len)
{
    ssize_t n = vs_read_full(s->in, buf, len);
    if (n < 0)
        return (int)n;
    return (size_t)n == len ? 0 : -EPIPE;
}

int session_writev(struct session *s, struct iovec *iov, int n)
{
    while (n > 0) {
        /* MSG_NOSIGNAL: a client that went away must not kill the process with SIGPIPE. */
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t k = s->out_is_socket ? sendmsg(s->out, &m, MSG_NOSIGNAL) : writev(s->out, iov, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == ENOTSOCK && s->out_is_socket) {
            s->out_is_socket = false;
            continue;
        }
        if (k <= 0)
            return k < 0 ? -errno : -EIO;
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

int session_write(struct session *s, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    return session_writev(s, &iov, 1);
}

static uint16_t export_flags(struct session *s)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                 NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN;
    if (s->caps.structured)
        f |= NBD_FLAG_SEND_DF;
    if (nbd_overlay_read_only(s->o))
        f |= NBD_FLAG_READ_ONLY;
    return f;
}

static int reply(struct session *s, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20];
    vs_put_be64(h, NBD_REP_MAGIC);
    vs_put_be32(h + 8, opt);
    vs_put_be32(h + 12, type);
    vs_put_be32(h + 16, len);
    int r = session_write(s, h, sizeof(h));
    if (r == 0 && len)
        r = session_write(s, data, len);
    return r;
}

static int reply_err(struct session *s, uint32_t opt, uint32_t type, const char *msg)
{
    return reply(s, opt, type, msg, (uint32_t)strlen(msg));
}

static int reply_info_export(struct session *s, uint32_t opt)
{
    uint8_t p[12];
    vs_put_be16(p, NBD_INFO_EXPORT);
    vs_put_be64(p + 2, s->caps.size);
    vs_put_be16(p + 10, s->caps.eflags = export_flags(s));
    return reply(s, opt, NBD_REP_INFO, p, sizeof(p));
}

/* NBD_OPT_INFO / NBD_OPT_GO: name, then a list of info requests. Any name is our one export. */
static int opt_info(struct session *s, uint32_t opt, const uint8_t *d, uint32_t len, bool *go)
{
    if (len < 6)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "option data too short");
    uint32_t nlen = vs_get_be32(d);
    if (nlen > len - 6 || nlen > NBD_MAX_STRING)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "export name length out of range");
    uint16_t nreq = vs_get_be16(d + 4 + nlen);
    if (len != 6 + nlen + 2u * nreq)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "option length does not match its info requests");
    int r = reply_info_export(s, opt);
    for (uint16_t i = 0; r == 0 && i < nreq; i++) {
        uint16_t t = vs_get_be16(d + 6 + nlen + 2 * i);
        const char *desc = server_opts(s->srv)->description;
        if (t == NBD_INFO_DESCRIPTION && desc) {
            uint8_t p[2 + 256];
            size_t dl = VS_MIN(strlen(desc), 256);
            vs_put_be16(p, NBD_INFO_DESCRIPTION);
            memcpy(p + 2, desc, dl);
            r = reply(s, opt, NBD_REP_INFO, p, (uint32_t)(2 + dl));
        }
    }
    if (r == 0) { /* block sizes: sent whether asked or not; any alignment works, 4 KiB is best */
        uint8_t p[14];
        vs_put_be16(p, NBD_INFO_BLOCK_SIZE);
        vs_put_be32(p + 2, 1);
        vs_put_be32(p + 6, NBD_PREF_BLOCK);
        vs_put_be32(p + 10, NBD_MAX_PAYLOAD);
        r = reply(s, opt, NBD_REP_INFO, p, sizeof(p));
    }
    if (r == 0)
        r = reply(s, opt, NBD_REP_ACK, NULL, 0);
    if (r == 0 && opt == NBD_OPT_GO)
        *go = true;
    return r;
}

/* NBD_OPT_{LIST,SET}_META_CONTEXT: we offer exactly base:allocation. */
static int opt_meta(struct session *s, uint32_t opt, const uint8_t *d, uint32_t len)
{
    bool set = opt == NBD_OPT_SET_META_CONTEXT;
    if (set)
        s->caps.meta_allocation = false; /* replaced even when this request fails */
    if (!s->caps.structured)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "negotiate structured replies first");
    if (len < 8)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "option data too short");
    uint32_t nlen = vs_get_be32(d);
    if (nlen > NBD_MAX_STRING || nlen > len - 8)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "export name length out of range");
    uint32_t nq = vs_get_be32(d + 4 + nlen), pos = 8 + nlen;
    bool match = !set && nq == 0;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4)
            return reply_err(s, opt, NBD_REP_ERR_INVALID, "query list runs past the option data");
        uint32_t ql = vs_get_be32(d + pos);
        pos += 4;
        if (ql > len - pos || ql > NBD_MAX_STRING)
            return reply_err(s, opt, NBD_REP_ERR_INVALID, "query length out of range");
        const char *q = (const char *)d + pos;
        if ((ql == strlen(NBD_META_ALLOCATION) && !memcmp(q, NBD_META_ALLOCATION, ql)) ||
            (!set && ql == 5 && !memcmp(q, "base:", 5)))
            match = true;
        pos += ql;
    }
    if (pos != len)
        return reply_err(s, opt, NBD_REP_ERR_INVALID, "trailing bytes after the query list");
    int r = 0;
    if (match) {
        uint8_t p[4 + sizeof(NBD_META_ALLOCATION) - 1];
        vs_put_be32(p, set ? NBD_META_ALLOCATION_ID : 0);
        memcpy(p + 4, NBD_META_ALLOCATION, sizeof(p) - 4);
        r = reply(s, opt, NBD_REP_META_CONTEXT, p, sizeof(p));
        if (set)
            s->caps.meta_allocation = true;
    }
    return r ? r : reply(s, opt, NBD_REP_ACK, NULL, 0);
}

static int read_hello(struct session *s)
{
    uint8_t h[18];
    vs_put_be64(h, NBD_INIT_MAGIC);
    vs_put_be64(h + 8, NBD_OPTS_MAGIC);
    vs_put_be16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    uint8_t cf[4];
    int r = session_write(s, h, sizeof(h));
    if (r == 0)
        r = session_read(s, cf, sizeof(cf));
    if (r < 0) {
        session_fail(s, r, "client left during the greeting");
        return r;
    }
    uint32_t flags = vs_get_be32(cf);
    if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        session_fail(s, EPROTO, "client sent unknown handshake flags 0x%x", flags);
        return -EPROTO;
    }
    s->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return 0;
}

int session_handshake(struct session *s)
{
    s->caps.size = nbd_overlay_size(s->o);
    s->caps.eflags = export_flags(s);
    int r = read_hello(s);
    if (r < 0)
        return r;
    for (;;) {
        uint8_t h[16];
        if ((r = session_read(s, h, sizeof(h))) < 0) {
            if (r == -EPIPE)
                return 0; /* gone before choosing an export: a hard disconnect, not our problem */
            session_fail(s, r, "reading an option: %s", strerror(-r));
            return r;
        }
        if (vs_get_be64(h) != NBD_OPTS_MAGIC) {
            session_fail(s, EPROTO, "bad option magic 0x%016llx", (unsigned long long)vs_get_be64(h));
            return -EPROTO;
        }
        uint32_t opt = vs_get_be32(h + 8), len = vs_get_be32(h + 12);
        if (len > NBD_MAX_OPTION) {
            session_fail(s, EPROTO, "%s with %u bytes of data (limit %u)", nbd_name_of_opt(opt), len,
                         NBD_MAX_OPTION);
            return -EPROTO;
        }
        VS_AUTOFREE uint8_t *d = vs_xmalloc(len + 1);
        if ((r = session_read(s, d, len)) < 0) {
            session_fail(s, r, "client left inside %s", nbd_name_of_opt(opt));
            return r;
        }
        bool go = false;
        if (server_stopping(s->srv) && opt != NBD_OPT_ABORT && opt != NBD_OPT_EXPORT_NAME) {
            r = reply_err(s, opt, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
            goto next;
        }
        switch (opt) {
        case NBD_OPT_EXPORT_NAME: {
            if (len > NBD_MAX_STRING || server_stopping(s->srv)) {
                session_fail(s, EPROTO, "refusing NBD_OPT_EXPORT_NAME");
                return -EPROTO; /* this option has no error reply: hard disconnect */
            }
            uint8_t p[8 + 2 + 124] = { 0 };
            vs_put_be64(p, s->caps.size);
            vs_put_be16(p + 8, s->caps.eflags = export_flags(s));
            if ((r = session_write(s, p, s->no_zeroes ? 10 : sizeof(p))) < 0)
                goto next;
            return 1;
        }
        case NBD_OPT_ABORT:
            reply(s, opt, NBD_REP_ACK, NULL, 0);
            return 0;
        case NBD_OPT_LIST:
            if (len) {
                r = reply_err(s, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
            } else {
                uint8_t p[4] = { 0 }; /* one export, named "" */
                r = reply(s, opt, NBD_REP_SERVER, p, sizeof(p));
                if (r == 0)
                    r = reply(s, opt, NBD_REP_ACK, NULL, 0);
            }
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            r = opt_info(s, opt, d, len, &go);
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (len) {
                r = reply_err(s, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
            } else if (s->caps.structured) {
                r = reply_err(s, opt, NBD_REP_ERR_INVALID, "structured replies already negotiated");
            } else {
                s->caps.structured = true;
                r = reply(s, opt, NBD_REP_ACK, NULL, 0);
            }
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            r = opt_meta(s, opt, d, len);
            break;
        case NBD_OPT_STARTTLS:
            r = reply_err(s, opt, NBD_REP_ERR_POLICY, "TLS is not offered on this local socket");
            break;
        default:
            r = reply_err(s, opt, NBD_REP_ERR_UNSUP, "unknown option");
            break;
        }
    next:
        if (r < 0) {
            session_fail(s, r, "writing the reply to %s: %s", nbd_name_of_opt(opt), strerror(-r));
            return r;
        }
        if (go)
            return 1;
    }
}
