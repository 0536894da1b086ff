/* nbd: every wire constant of the NBD protocol we speak (NetworkBlockDevice/nbd doc/proto.md), in one place,
 * with name_of_*() helpers for log lines. All integers on the wire are big-endian; we encode and decode them
 * with vs_put_be* / vs_get_be*, never by laying structs over buffers. Private to src/nbd/. */
#ifndef VMSNAP_NBD_PROTO_H
#define VMSNAP_NBD_PROTO_H

#include <stdint.h>

/* ---- handshake ---------------------------------------------------------- */
#define NBD_INIT_MAGIC   0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC   0x49484156454F5054ULL /* "IHAVEOPT" */
#define NBD_REP_MAGIC    0x0003e889045565a9ULL

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES      (1u << 1)
/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10

/* Option replies. Errors have bit 31 set. */
#define NBD_REP_ACK          1
#define NBD_REP_SERVER       2
#define NBD_REP_INFO         3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_ERR_BIT      (1u << 31)
#define NBD_REP_ERR_UNSUP    (NBD_REP_ERR_BIT | 1)
#define NBD_REP_ERR_POLICY   (NBD_REP_ERR_BIT | 2)
#define NBD_REP_ERR_INVALID  (NBD_REP_ERR_BIT | 3)
#define NBD_REP_ERR_PLATFORM (NBD_REP_ERR_BIT | 4)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_ERR_BIT | 5)
#define NBD_REP_ERR_UNKNOWN  (NBD_REP_ERR_BIT | 6)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_ERR_BIT | 7)
#define NBD_REP_ERR_TOO_BIG  (NBD_REP_ERR_BIT | 9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* ---- transmission ------------------------------------------------------- */
#define NBD_REQUEST_MAGIC    0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_REQUEST_SIZE     28 /* magic 4, flags 2, type 2, cookie 8, offset 8, length 4 */
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_STRUCTURED_REPLY_SIZE 20

/* Commands. */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

/* Command flags. */
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Structured reply flags and types. */
#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2)

/* Errors on the wire (not errno: mapped by nbd_errno_to_wire()). */
#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* base:allocation flags (NBD_STATE_*) are NBD_EXTENT_HOLE / NBD_EXTENT_ZERO in nbd.h. */
#define NBD_META_ALLOCATION "base:allocation"
#define NBD_META_ALLOCATION_ID 1

/* Our limits: strings longer than the spec's 4096 are refused; one request carries at most 32 MiB of payload
 * (the spec's portable maximum); option payloads are small. */
#define NBD_MAX_STRING  4096
#define NBD_MAX_PAYLOAD (32u << 20)
#define NBD_MAX_OPTION  (64u << 10)
#define NBD_PREF_BLOCK  4096u

const char *nbd_name_of_opt(uint32_t opt);
const char *nbd_name_of_rep(uint32_t rep);
const char *nbd_name_of_cmd(uint16_t cmd);
const char *nbd_name_of_error(uint32_t err);
/* Map a (positive or negative) errno to the NBD error code that best describes it. */
uint32_t nbd_errno_to_wire(int err);

#endif
