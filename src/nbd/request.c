/* nbd: decode and validate a transmission request before anything touches the overlay. */
#include "nbd/internal.h"
#include "nbd/proto.h"

#include <errno.h>

int nbd_request_decode(const uint8_t *hdr, struct nbd_request *rq)
{
    if (vs_get_be32(hdr) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    rq->flags = vs_get_be16(hdr + 4);
    rq->type = vs_get_be16(hdr + 6);
    rq->cookie = vs_get_be64(hdr + 8);
    rq->offset = vs_get_be64(hdr + 16);
    rq->length = vs_get_be32(hdr + 24);
    return 0;
}

/* Command flags each command accepts (FUA is accepted on every command when advertised). */
static uint16_t allowed_flags(const struct nbd_caps *c, uint16_t type)
{
    uint16_t f = (c->eflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;
    switch (type) {
    case NBD_CMD_READ: return f | ((c->eflags & NBD_FLAG_SEND_DF) ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return f | NBD_CMD_FLAG_NO_HOLE | ((c->eflags & NBD_FLAG_SEND_FAST_ZERO) ? NBD_CMD_FLAG_FAST_ZERO : 0);
    case NBD_CMD_BLOCK_STATUS: return f | NBD_CMD_FLAG_REQ_ONE;
    default: return f;
    }
}

uint32_t nbd_request_check(const struct nbd_caps *c, const struct nbd_request *rq, bool *fatal, const char **why)
{
    *fatal = false;
    *why = NULL;
    bool write = rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_WRITE_ZEROES || rq->type == NBD_CMD_TRIM;
    if (rq->type == NBD_CMD_WRITE && rq->length > NBD_MAX_PAYLOAD) {
        *fatal = true; /* we will not read a payload that large to skip it */
        *why = "write payload larger than 32 MiB";
        return NBD_EINVAL;
    }
    switch (rq->type) {
    case NBD_CMD_READ: case NBD_CMD_WRITE: case NBD_CMD_FLUSH: case NBD_CMD_TRIM: case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES: case NBD_CMD_BLOCK_STATUS: case NBD_CMD_DISC:
        break;
    default:
        *why = "unknown command";
        return NBD_EINVAL;
    }
    if (rq->flags & ~allowed_flags(c, rq->type)) {
        *why = "command flag not valid for this command";
        return NBD_EINVAL;
    }
    if (rq->type == NBD_CMD_FLUSH || rq->type == NBD_CMD_DISC) {
        if (rq->offset || rq->length) {
            *why = "offset and length must be zero";
            return NBD_EINVAL;
        }
        return 0;
    }
    if (rq->type == NBD_CMD_READ && rq->length > NBD_MAX_PAYLOAD) {
        *why = "read larger than 32 MiB";
        return NBD_EOVERFLOW;
    }
    if (rq->offset > c->size || rq->length > c->size - rq->offset) {
        *why = "request beyond the end of the disk";
        return (rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC : NBD_EINVAL;
    }
    if (write && (c->eflags & NBD_FLAG_READ_ONLY)) {
        *why = "the export is read-only";
        return NBD_EPERM;
    }
    if (rq->type == NBD_CMD_BLOCK_STATUS) {
        if (!c->structured || !c->meta_allocation) {
            *why = "block status needs structured replies and base:allocation";
            return NBD_EINVAL;
        }
        if (rq->length == 0) {
            *why = "empty block status query";
            return NBD_EINVAL;
        }
    }
    return 0;
}
