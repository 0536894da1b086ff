/* migstream: the splitting parser. A state machine over "take N bytes" steps: a step's bytes come straight from
 * the caller's buffer when they are there whole, else they are gathered in `hold` (at most one page record). */
#include <errno.h>
#include <string.h>
#include <jansson.h>

#include "migstream/migstream.h"
#include "migstream/wire.h"

enum st {
    S_HEADER, S_TOP,
    S_CFG_LEN, S_CFG_NAME,
    S_SUB_LEN, S_SUB_NAME, S_SUB_U32, S_SUB_UUID, S_CAP_COUNT, S_CAP_LEN, S_CAP_NAME,
    S_START_HDR, S_START_ID, S_MEMSIZE, S_BLK_LEN, S_BLK,
    S_PART_HDR, S_REC, S_REC_NAMELEN, S_REC_NAME, S_REC_BODY, S_FOOTER,
    S_CMD_HDR,
    S_TAIL, S_RAW, S_DONE, S_ERROR,
};

enum ctx { CTX_START, CTX_PART, CTX_END };
enum sub { SUB_PAGE_BITS, SUB_CAPS, SUB_UUID };

/* Bytes of the current unit (a top-level section header or a page record header) are kept, so that an unsupported
 * unit can still be passed on whole (keep_unknown_rest). Page bodies are not part of it. */
#define UNIT_MAX 512

struct ms_parser {
    struct ms_ops ops;
    size_t tail_max;
    bool keep_unknown_rest;
    enum st st;
    size_t need;
    uint8_t hold[MS_PAGE_SIZE + 64];
    size_t hold_len;

    bool seen_config, in_config, ram_started, committed;
    enum sub sub;
    uint32_t caps_left;
    uint32_t cur_sid;              /* section being parsed */
    enum ctx ctx;
    bool part_emitted;             /* the PART header went to the device stream */
    uint64_t ram_total, ram_sum;
    struct ms_block blocks[MS_MAX_BLOCKS];
    unsigned nblocks;
    struct ms_block *last_block;   /* the stream's CONTINUE target */
    const struct ms_block *last_emitted;   /* the device stream's */
    uint64_t rec_addr;
    unsigned rec_kind;             /* MS_RAM_ZERO or MS_RAM_PAGE */
    uint8_t name_len;

    uint8_t unit[UNIT_MAX];
    size_t unit_len;
    enum st unit_from;             /* S_TOP or S_REC */
    bool unit_ok;                  /* unit[] holds all of it */
    /* The last page record of a split block (replayed if the rest of the stream goes opaque). */
    const struct ms_block *replay_block;
    uint64_t replay_addr;
    unsigned replay_kind;
    const uint8_t *replay_src;     /* its body, still in the caller's buffer (copied at the end of ms_push) */
    uint8_t replay_body[MS_PAGE_SIZE];

    uint8_t *tail;
    size_t tail_len, tail_cap;
    struct ms_summary sum;
    vs_err err;
};

static int unsupported(struct ms_parser *p, vs_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int malformed(struct ms_parser *p, vs_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

__attribute__((format(printf, 5, 0)))
static int fail(struct ms_parser *p, vs_err *e, int code, const char *what, const char *fmt, va_list ap)
{
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    p->st = S_ERROR;
    return vs_err_set(e, code, "migration stream at byte %" PRIu64 ": %s: %s", p->sum.bytes_in, what, msg);
}

static int unsupported(struct ms_parser *p, vs_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = fail(p, e, ENOTSUP, "unsupported", fmt, ap);
    va_end(ap);
    return r;
}

static int malformed(struct ms_parser *p, vs_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = fail(p, e, EBADMSG, "malformed", fmt, ap);
    va_end(ap);
    return r;
}

int ms_parser_new(const struct ms_ops *ops, const struct ms_opts *o, struct ms_parser **out, vs_err *e)
{
    (void)e;
    struct ms_parser *p = vs_xcalloc(1, sizeof *p);
    p->ops = *ops;
    p->tail_max = o && o->tail_max ? o->tail_max : MS_DEFAULT_TAIL_MAX;
    p->keep_unknown_rest = o && o->keep_unknown_rest;
    p->st = S_HEADER;
    p->need = 8;
    *out = p;
    return 0;
}

void ms_parser_free(struct ms_parser *p)
{
    if (!p)
        return;
    free(p->tail);
    free(p);
}

void ms_parser_freep(struct ms_parser **p)
{
    ms_parser_free(*p);
    *p = NULL;
}

bool ms_committed(const struct ms_parser *p) { return p->committed; }
const char *ms_opaque_rest(const struct ms_parser *p) { return p->st == S_RAW ? p->sum.opaque_why : NULL; }
uint32_t ms_ram_section_id(const struct ms_parser *p) { return p->sum.ram_section_id; }

const struct ms_block *ms_blocks(const struct ms_parser *p, unsigned *n)
{
    *n = p->ram_started ? p->nblocks : 0;
    return p->ram_started ? p->blocks : NULL;
}

static int emit(struct ms_parser *p, const void *buf, size_t len, vs_err *e)
{
    if (!len)
        return 0;
    p->sum.device_bytes += len;
    int r = p->ops.device ? p->ops.device(p->ops.opaque, buf, len, e) : 0;
    if (r < 0)
        p->st = S_ERROR;
    return r;
}

static void go(struct ms_parser *p, enum st st, size_t need)
{
    p->st = st;
    p->need = need;
}

/* The next p->need bytes, or NULL if more input is needed. */
static const uint8_t *take(struct ms_parser *p, const uint8_t **in, size_t *len)
{
    size_t n = p->need;
    if (p->hold_len == 0 && *len >= n) {
        const uint8_t *r = *in;
        *in += n;
        *len -= n;
        p->sum.bytes_in += n;
        return r;
    }
    size_t c = VS_MIN(n - p->hold_len, *len);
    memcpy(p->hold + p->hold_len, *in, c);
    p->hold_len += c;
    *in += c;
    *len -= c;
    p->sum.bytes_in += c;
    if (p->hold_len < n)
        return NULL;
    p->hold_len = 0;
    return p->hold;
}

/* Name of the first flag that makes a record unsupported. */
static const char *flag_name(unsigned kind)
{
    unsigned odd = kind & ~(MS_RAM_ZERO | MS_RAM_PAGE);
    unsigned f = odd ? odd & -odd : kind;
    switch (f) {
    case MS_RAM_FULL: return "FULL (obsolete)";
    case MS_RAM_MEM_SIZE: return "MEM_SIZE";
    case MS_RAM_XBZRLE: return "XBZRLE";
    case MS_RAM_HOOK: return "HOOK (RDMA)";
    case MS_RAM_COMPRESS: return "COMPRESS_PAGE";
    case MS_RAM_MULTIFD_FLUSH: return "MULTIFD_FLUSH";
    default: return "unknown";
    }
}

static int tail_append(struct ms_parser *p, const uint8_t *b, size_t n, vs_err *e)
{
    if (p->tail_len + n > p->tail_max)
        return unsupported(p, e, "device state longer than %zu bytes", p->tail_max);
    if (p->tail_len + n > p->tail_cap) {
        p->tail_cap = VS_MAX(p->tail_len + n, p->tail_cap * 2);
        p->tail_cap = VS_MIN(VS_MAX(p->tail_cap, (size_t)65536), p->tail_max);
        p->tail = vs_xrealloc(p->tail, p->tail_cap);
    }
    memcpy(p->tail + p->tail_len, b, n);
    p->tail_len += n;
    return emit(p, b, n, e);
}

/* Stream bytes in a message: printable ASCII kept, the rest as \xNN (messages stay one line). */
static const char *printable(const uint8_t *b, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, b[i] >= 0x20 && b[i] < 0x7f ? "%c" : "\\x%02x", b[i]);
    out[o] = 0;
    return out;
}

static bool is_printable(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] >= 0x7f)
            return false;
    return true;
}

static struct ms_block *find_block(struct ms_parser *p, const uint8_t *name, size_t len)
{
    for (unsigned i = 0; i < p->nblocks; i++)
        if (strlen(p->blocks[i].name) == len && memcmp(p->blocks[i].name, name, len) == 0)
            return &p->blocks[i];
    return NULL;
}

/* A record of a block that stays in the device stream, with CONTINUE recomputed for the device stream. */
static int emit_kept(struct ms_parser *p, const struct ms_block *b, uint64_t addr, unsigned kind,
                     const uint8_t *body, size_t blen, vs_err *e)
{
    uint8_t h[8 + 1 + 255];
    size_t hl = 8;
    int r;
    if (p->ctx == CTX_PART && !p->part_emitted) {
        uint8_t sh[5] = { MS_SEC_PART };
        vs_put_be32(sh + 1, p->cur_sid);
        if ((r = emit(p, sh, sizeof sh, e)) < 0)
            return r;
        p->part_emitted = true;
    }
    bool cont = p->last_emitted == b;
    vs_put_be64(h, addr | kind | (cont ? MS_RAM_CONTINUE : 0));
    if (!cont) {
        size_t nl = strlen(b->name);
        h[8] = (uint8_t)nl;
        memcpy(h + 9, b->name, nl);
        hl += 1 + nl;
        p->last_emitted = b;
    }
    p->sum.kept_pages++;
    if ((r = emit(p, h, hl, e)) < 0)
        return r;
    return emit(p, body, blen, e);
}

static int deliver(struct ms_parser *p, const uint8_t *body, vs_err *e)
{
    struct ms_block *b = p->last_block;
    if (!b->split)
        return emit_kept(p, b, p->rec_addr, p->rec_kind, body, p->rec_kind == MS_RAM_ZERO ? 1 : MS_PAGE_SIZE, e);
    const uint8_t *data = body;
    uint8_t fill[MS_PAGE_SIZE];
    if (p->rec_kind == MS_RAM_ZERO) {
        data = NULL;
        if (body[0] != 0) {        /* a page filled with one byte: QEMU memsets it */
            memset(fill, body[0], sizeof fill);
            data = fill;
        } else {
            p->sum.zero_pages++;
        }
    }
    p->sum.pages++;
    p->committed = true;
    p->replay_block = b;
    p->replay_addr = p->rec_addr;
    p->replay_kind = p->rec_kind;
    p->replay_src = NULL;
    if (p->rec_kind == MS_RAM_ZERO)
        p->replay_body[0] = body[0];
    else if (body == p->hold)      /* hold is reused by the next step that spans two pushes */
        memcpy(p->replay_body, body, MS_PAGE_SIZE);
    else
        p->replay_src = body;
    int r = p->ops.page ? p->ops.page(p->ops.opaque, b, p->rec_addr, data, e) : 0;
    if (r < 0)
        p->st = S_ERROR;
    return r;
}

static int on_top(struct ms_parser *p, uint8_t t, vs_err *e)
{
    if (t == MS_SEC_SUBSECTION && p->in_config) {
        go(p, S_SUB_LEN, 1);
        return emit(p, &t, 1, e);
    }
    p->in_config = false;
    switch (t) {
    case MS_SEC_CONFIGURATION:
        if (p->seen_config || p->ram_started)
            return unsupported(p, e, "configuration section after the start of the stream");
        p->seen_config = p->in_config = true;
        go(p, S_CFG_LEN, 4);
        return emit(p, &t, 1, e);
    case MS_SEC_START:
        if (p->ram_started)
            return unsupported(p, e, "a second iterable section (only 'ram' is understood)");
        go(p, S_START_HDR, 5);
        return emit(p, &t, 1, e);
    case MS_SEC_PART:
    case MS_SEC_END:
        if (!p->ram_started)
            return malformed(p, e, "section type 0x%02x before any START section", t);
        p->ctx = t == MS_SEC_PART ? CTX_PART : CTX_END;
        p->part_emitted = false;
        go(p, S_PART_HDR, 4);
        return t == MS_SEC_END ? emit(p, &t, 1, e) : 0;
    case MS_SEC_COMMAND:
        go(p, S_CMD_HDR, 4);
        return 0;
    case MS_SEC_FULL:
    case MS_SEC_EOF:
        if (!p->ram_started)
            return unsupported(p, e, "no ram section before the device state");
        go(p, S_TAIL, 0);
        return tail_append(p, &t, 1, e);
    default:
        return unsupported(p, e, "section type 0x%02x", t);
    }
}

static const char *cmd_name(uint16_t c)
{
    static const char *const names[] = {
        "INVALID", "OPEN_RETURN_PATH", "PING", "POSTCOPY_ADVISE", "POSTCOPY_LISTEN", "POSTCOPY_RUN",
        "POSTCOPY_RAM_DISCARD", "PACKAGED", "ENABLE_COLO", "POSTCOPY_RESUME", "RECV_BITMAP", "SWITCHOVER_START",
    };
    return c < VS_ARRAY_SIZE(names) ? names[c] : "unknown";
}

/* A command section's header (be16 command, be16 length). Only commands that tell the destination something
 * without changing how the rest of the stream is read are passed on; the others (postcopy, COLO, a packaged
 * sub-stream, return-path requests that a pipe cannot answer) are unsupported. */
static int on_command(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    uint16_t cmd = vs_get_be16(b), len = vs_get_be16(b + 2);
    if (cmd != MS_CMD_SWITCHOVER_START)
        return unsupported(p, e, "command section %u (%s, %u bytes)", cmd, cmd_name(cmd), len);
    if (len != 0)
        return malformed(p, e, "command %s with %u bytes of data (expected none)", cmd_name(cmd), len);
    go(p, S_TOP, 1);
    uint8_t h[5] = { MS_SEC_COMMAND };
    memcpy(h + 1, b, 4);
    return emit(p, h, sizeof h, e);
}

static int on_sub_name(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    char name[256 * 4 + 8];
    memcpy(name, b, p->name_len);
    name[p->name_len] = 0;
    if (strcmp(name, "configuration/target-page-bits") == 0) {
        p->sub = SUB_PAGE_BITS;
        go(p, S_SUB_U32, 4);
    } else if (strcmp(name, "configuration/capabilities") == 0) {
        go(p, S_CAP_COUNT, 4);
    } else if (strcmp(name, "configuration/uuid") == 0) {
        go(p, S_SUB_UUID, 16);
    } else {
        return unsupported(p, e, "configuration subsection '%s'", printable(b, p->name_len, name, sizeof name));
    }
    return emit(p, b, p->name_len + 4u, e);
}

static int on_block(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    if (p->nblocks == MS_MAX_BLOCKS)
        return unsupported(p, e, "more than %u RAM blocks", MS_MAX_BLOCKS);
    struct ms_block *blk = &p->blocks[p->nblocks];
    if (p->name_len == 0 || !is_printable(b, p->name_len))
        return malformed(p, e, "RAM block name not printable");
    if (find_block(p, b, p->name_len))
        return malformed(p, e, "RAM block '%.*s' listed twice", p->name_len, (const char *)b);
    memcpy(blk->name, b, p->name_len);
    blk->name[p->name_len] = 0;
    blk->size = vs_get_be64(b + p->name_len);
    blk->index = p->nblocks++;
    blk->split = true;
    if (blk->size % MS_PAGE_SIZE || blk->size > p->ram_total - p->ram_sum)
        return unsupported(p, e, "RAM block '%s' size %" PRIu64 " does not fit the announced total %" PRIu64
                           " (postcopy or x-ignore-shared fields?)", blk->name, blk->size, p->ram_total);
    p->ram_sum += blk->size;
    int r = emit(p, b, p->name_len + 8u, e);
    if (r < 0)
        return r;
    if (p->ram_sum < p->ram_total) {
        go(p, S_BLK_LEN, 1);
        return 0;
    }
    p->ram_started = true;
    p->sum.nblocks = p->nblocks;
    p->sum.ram_total = p->ram_total;
    if (p->ops.blocks && (r = p->ops.blocks(p->ops.opaque, p->blocks, p->nblocks, e)) < 0) {
        p->st = S_ERROR;
        return r;
    }
    go(p, S_REC, 8);
    return 0;
}

static int check_range(struct ms_parser *p, vs_err *e);

static int on_record(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    uint64_t v = vs_get_be64(b);
    unsigned flags = (unsigned)(v & MS_RAM_FLAG_MASK);
    uint64_t addr = v & ~(uint64_t)MS_RAM_FLAG_MASK;
    if (flags == MS_RAM_EOS) {
        if (addr)
            return malformed(p, e, "end-of-section record with offset bits 0x%" PRIx64, addr);
        go(p, S_FOOTER, 5);
        if (p->ctx == CTX_PART && !p->part_emitted)
            return 0;
        return emit(p, b, 8, e);
    }
    unsigned kind = flags & ~MS_RAM_CONTINUE;
    if (p->ctx == CTX_START)
        return unsupported(p, e, "record flags 0x%x (%s) in the ram setup section", flags, flag_name(kind));
    if (kind != MS_RAM_ZERO && kind != MS_RAM_PAGE)
        return unsupported(p, e, "page record flags 0x%x (%s)", flags, flag_name(kind));
    p->rec_addr = addr;
    p->rec_kind = kind;
    if (flags & MS_RAM_CONTINUE) {
        if (!p->last_block)
            return malformed(p, e, "CONTINUE record with no previous RAM block");
        return check_range(p, e);
    } else {
        go(p, S_REC_NAMELEN, 1);
    }
    return 0;
}

static int check_range(struct ms_parser *p, vs_err *e)
{
    const struct ms_block *b = p->last_block;
    if (p->rec_addr >= b->size || b->size - p->rec_addr < MS_PAGE_SIZE)
        return malformed(p, e, "page at 0x%" PRIx64 " beyond RAM block '%s' (%" PRIu64 " bytes)", p->rec_addr,
                         b->name, b->size);
    go(p, S_REC_BODY, p->rec_kind == MS_RAM_ZERO ? 1 : MS_PAGE_SIZE);
    return 0;
}

static int on_footer(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    if (b[0] != MS_SEC_FOOTER)
        return unsupported(p, e, "no section footer after section %" PRIu32 " (byte 0x%02x; machine types "
                           "before 2.3 omit them)", p->cur_sid, b[0]);
    if (vs_get_be32(b + 1) != p->cur_sid)
        return malformed(p, e, "footer of section %" PRIu32 " closes section %" PRIu32, vs_get_be32(b + 1),
                         p->cur_sid);
    go(p, S_TOP, 1);
    if (p->ctx == CTX_PART && !p->part_emitted)
        return 0;
    int r = emit(p, b, 5, e);
    if (r < 0 || p->ctx != CTX_START)
        return r;
    p->ctx = CTX_PART;   /* setup done once */
    if (p->ops.ram_setup_done && (r = p->ops.ram_setup_done(p->ops.opaque, e)) < 0)
        p->st = S_ERROR;
    return r;
}

static void unit_add(struct ms_parser *p, const uint8_t *b)
{
    if (p->st == S_TOP || p->st == S_REC) {
        p->unit_len = 0;
        p->unit_from = p->st;
        p->unit_ok = true;
    }
    if (p->st == S_REC_BODY)
        return;
    if (p->unit_len + p->need > UNIT_MAX) {
        p->unit_ok = false;
        return;
    }
    memcpy(p->unit + p->unit_len, b, p->need);
    p->unit_len += p->need;
}

static int step(struct ms_parser *p, const uint8_t *b, vs_err *e)
{
    if (p->keep_unknown_rest)
        unit_add(p, b);
    switch (p->st) {
    case S_HEADER:
        if (vs_get_be32(b) != MS_FILE_MAGIC)
            return malformed(p, e, "not a QEMU migration stream (magic 0x%08" PRIx32 ")", vs_get_be32(b));
        if (vs_get_be32(b + 4) != MS_FILE_VERSION)
            return unsupported(p, e, "stream version %" PRIu32 " (expected 3)", vs_get_be32(b + 4));
        go(p, S_TOP, 1);
        return emit(p, b, 8, e);
    case S_TOP:
        return on_top(p, b[0], e);
    case S_CFG_LEN: {
        uint32_t n = vs_get_be32(b);
        if (n == 0 || n >= sizeof p->sum.machine)
            return unsupported(p, e, "machine type name of %" PRIu32 " bytes", n);
        go(p, S_CFG_NAME, n);
        return emit(p, b, 4, e);
    }
    case S_CFG_NAME:
        memcpy(p->sum.machine, b, p->need);
        p->sum.machine[p->need] = 0;
        if (!is_printable(b, p->need))
            return malformed(p, e, "machine type not printable");
        go(p, S_TOP, 1);
        return emit(p, b, strlen(p->sum.machine), e);
    case S_SUB_LEN:
        p->name_len = b[0];
        go(p, S_SUB_NAME, b[0] + 4u);
        return emit(p, b, 1, e);
    case S_SUB_NAME:
        return on_sub_name(p, b, e);
    case S_SUB_U32:
        if (vs_get_be32(b) != 12)
            return unsupported(p, e, "target page bits %" PRIu32 " (only 4 KiB pages)", vs_get_be32(b));
        go(p, S_TOP, 1);
        return emit(p, b, 4, e);
    case S_SUB_UUID:
        go(p, S_TOP, 1);
        return emit(p, b, 16, e);
    case S_CAP_COUNT:
        p->caps_left = vs_get_be32(b);
        go(p, p->caps_left ? S_CAP_LEN : S_TOP, 1);
        return emit(p, b, 4, e);
    case S_CAP_LEN:
        p->name_len = b[0];
        go(p, S_CAP_NAME, b[0]);
        if (b[0] == 0)
            return malformed(p, e, "empty capability name");
        return emit(p, b, 1, e);
    case S_CAP_NAME:
        /* x-ignore-shared adds fields to the block list and leaves shared RAM out of the stream. */
        if (p->name_len == 15 && memcmp(b, "x-ignore-shared", 15) == 0)
            return unsupported(p, e, "capability x-ignore-shared");
        go(p, --p->caps_left ? S_CAP_LEN : S_TOP, 1);
        return emit(p, b, p->name_len, e);
    case S_START_HDR:
        p->cur_sid = vs_get_be32(b);
        p->name_len = b[4];
        go(p, S_START_ID, b[4] + 8u);
        return emit(p, b, 5, e);
    case S_START_ID: {
        uint32_t ver = vs_get_be32(b + p->name_len + 4);
        char nm[256 * 4 + 8];
        if (p->name_len != 3 || memcmp(b, "ram", 3) != 0)
            return unsupported(p, e, "iterable section '%s' (only 'ram' is understood)",
                               printable(b, p->name_len, nm, sizeof nm));
        if (ver != MS_RAM_VERSION)
            return unsupported(p, e, "ram section version %" PRIu32, ver);
        p->ctx = CTX_START;
        p->sum.ram_section_id = p->cur_sid;
        go(p, S_MEMSIZE, 8);
        return emit(p, b, p->name_len + 8u, e);
    }
    case S_MEMSIZE: {
        uint64_t v = vs_get_be64(b);
        if ((v & MS_RAM_FLAG_MASK) != MS_RAM_MEM_SIZE)
            return unsupported(p, e, "ram setup starts with flags 0x%x", (unsigned)(v & MS_RAM_FLAG_MASK));
        p->ram_total = v & ~(uint64_t)MS_RAM_FLAG_MASK;
        if (p->ram_total == 0)
            return malformed(p, e, "no RAM");
        go(p, S_BLK_LEN, 1);
        return emit(p, b, 8, e);
    }
    case S_BLK_LEN:
        p->name_len = b[0];
        go(p, S_BLK, b[0] + 8u);
        return emit(p, b, 1, e);
    case S_BLK:
        return on_block(p, b, e);
    case S_PART_HDR:
        if (vs_get_be32(b) != p->sum.ram_section_id)
            return unsupported(p, e, "section %" PRIu32 " continues, only ram (%" PRIu32 ") is understood",
                               vs_get_be32(b), p->sum.ram_section_id);
        p->cur_sid = vs_get_be32(b);
        go(p, S_REC, 8);
        return p->ctx == CTX_END ? emit(p, b, 4, e) : 0;
    case S_REC:
        return on_record(p, b, e);
    case S_REC_NAMELEN:
        p->name_len = b[0];
        go(p, S_REC_NAME, b[0]);
        if (b[0] == 0)
            return malformed(p, e, "empty RAM block name in a page record");
        return 0;
    case S_REC_NAME: {
        struct ms_block *blk = find_block(p, b, p->name_len);
        char nm[256 * 4 + 8];
        if (!blk)
            return malformed(p, e, "page of unknown RAM block '%s'", printable(b, p->name_len, nm, sizeof nm));
        p->last_block = blk;
        return check_range(p, e);
    }
    case S_REC_BODY:
        go(p, S_REC, 8);
        return deliver(p, b, e);
    case S_FOOTER:
        return on_footer(p, b, e);
    case S_CMD_HDR:
        return on_command(p, b, e);
    default:
        VS_BUG("migstream: step in state %d", p->st);
    }
}

/* Something unsupported after the ram setup (keep_unknown_rest): from the refused unit on, the input goes to the
 * device stream as it came. QEMU's loader must reach it in the state the input left it in: inside the same ram
 * section, and with the same previous block for CONTINUE records. When the input's last page record was of a
 * split block, it is not in the device stream: it is replayed. It holds the value stored for its page, so
 * loading it again changes nothing. */
static int go_opaque(struct ms_parser *p, const vs_err *why, vs_err *e)
{
    bool in_section = p->unit_from == S_REC;
    uint8_t h[5 + 8 + 1 + 255 + 1];
    size_t hl = 0;
    int r;
    if (!in_section || (p->ctx == CTX_PART && !p->part_emitted)) {
        h[0] = MS_SEC_PART;
        vs_put_be32(h + 1, p->sum.ram_section_id);
        hl = 5;
    }
    /* A kept record of an unsplit block already set it in the device stream. */
    const struct ms_block *b = p->last_block && p->last_block->split ? p->replay_block : NULL;
    if (b) {
        size_t nl = strlen(b->name);
        vs_put_be64(h + hl, p->replay_addr | p->replay_kind);
        h[hl + 8] = (uint8_t)nl;
        memcpy(h + hl + 9, b->name, nl);
        hl += 9 + nl;
        if ((r = emit(p, h, hl, e)) < 0 ||
            (r = emit(p, p->replay_body, p->replay_kind == MS_RAM_ZERO ? 1 : MS_PAGE_SIZE, e)) < 0)
            return r;
        hl = 0;
        if (!in_section) {
            vs_put_be64(h, MS_RAM_EOS);
            h[8] = MS_SEC_FOOTER;
            vs_put_be32(h + 9, p->sum.ram_section_id);
            hl = 13;
        }
    } else if (!in_section) {
        hl = 0;                    /* nothing to replay: no section needed */
    }
    if ((r = emit(p, h, hl, e)) < 0 || (r = emit(p, p->unit, p->unit_len, e)) < 0)
        return r;
    p->sum.opaque_from = p->sum.bytes_in - p->unit_len;
    snprintf(p->sum.opaque_why, sizeof p->sum.opaque_why, "%s", why->msg);
    p->st = S_RAW;
    return 0;
}

static int push(struct ms_parser *p, const uint8_t *in, size_t len, vs_err *e)
{
    vs_err se = { 0 };
    while (len > 0) {
        if (p->st == S_TAIL || p->st == S_RAW) {
            p->sum.bytes_in += len;
            return p->st == S_TAIL ? tail_append(p, in, len, e) : emit(p, in, len, e);
        }
        const uint8_t *b = take(p, &in, &len);
        if (!b)
            return 0;
        int r = step(p, b, &se);
        if (r == -ENOTSUP && p->keep_unknown_rest && p->ram_started && p->ctx != CTX_START && p->unit_ok) {
            if (p->replay_src) {
                memcpy(p->replay_body, p->replay_src, MS_PAGE_SIZE);
                p->replay_src = NULL;
            }
            r = go_opaque(p, &se, e);
        } else if (r < 0 && e) {
            *e = se;
        }
        if (r < 0) {
            p->st = S_ERROR;
            return r;
        }
    }
    return 0;
}

int ms_push(struct ms_parser *p, const void *buf, size_t len, vs_err *e)
{
    if (p->st == S_ERROR)
        return vs_err_set(e, EINVAL, "migration stream parser used after an error");
    int r = push(p, buf, len, e);
    if (p->replay_src) {           /* the caller's buffer goes away */
        memcpy(p->replay_body, p->replay_src, MS_PAGE_SIZE);
        p->replay_src = NULL;
    }
    return r;
}

int ms_push_fd(struct ms_parser *p, int fd, vs_err *e)
{
    size_t cap = 256 * 1024;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(cap);
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vs_err_sys(e, errno, "reading the migration stream");
        if (n == 0)
            return 0;
        int r = ms_push(p, buf, (size_t)n, e);
        if (r < 0)
            return r;
    }
}

/* Where the device sections end: EOF, then (unless the machine suppresses it) the JSON description. Returns the
 * offset of the EOF byte in the tail, or -1. *desc gets the parsed description (NULL if none). */
static long find_trailer(const struct ms_parser *p, json_t **desc)
{
    const uint8_t *t = p->tail;
    size_t n = p->tail_len;
    *desc = NULL;
    for (size_t i = 0; i + 6 <= n; i++) {
        if (t[i] != MS_SEC_EOF || t[i + 1] != MS_SEC_VMDESC || vs_get_be32(t + i + 2) != n - i - 6)
            continue;
        json_t *j = json_loadb((const char *)t + i + 6, n - i - 6, 0, NULL);
        if (j && json_is_array(json_object_get(j, "devices"))) {
            *desc = j;
            return (long)i;
        }
        json_decref(j);
    }
    if (n && t[n - 1] == MS_SEC_EOF && (n == 1 || (n >= 6 && t[n - 6] == MS_SEC_FOOTER)))
        return (long)(n - 1);
    return -1;
}

/* Each device named in the description has a FULL section header, in order, each after the previous one's
 * footer: the tail is what the description says (a truncated or shifted tail fails). */
static int check_devices(struct ms_parser *p, json_t *desc, size_t end, vs_err *e)
{
    json_t *devs = json_object_get(desc, "devices");
    size_t pos = 0, i;
    json_t *d;
    json_array_foreach(devs, i, d) {
        const char *name = json_string_value(json_object_get(d, "name"));
        json_t *inst = json_object_get(d, "instance_id");
        size_t nl = name ? strlen(name) : 0;
        if (!name || nl == 0 || nl > 255 || !json_is_integer(inst))
            return malformed(p, e, "JSON description: device %zu has no name or instance_id", i);
        uint8_t pat[1 + 255 + 4];
        pat[0] = (uint8_t)nl;
        memcpy(pat + 1, name, nl);
        vs_put_be32(pat + 1 + nl, (uint32_t)json_integer_value(inst));
        size_t plen = nl + 5;
        const uint8_t *hit = NULL;
        for (size_t at = pos; at + 5 + plen <= end; ) {
            const uint8_t *h = memmem(p->tail + at + 5, end - at - 5, pat, plen);
            if (!h)
                break;
            size_t hs = (size_t)(h - p->tail) - 5;   /* start of the candidate section header */
            if (p->tail[hs] == MS_SEC_FULL && (hs == 0 ? i == 0 : hs >= 5 && p->tail[hs - 5] == MS_SEC_FOOTER)
                && (i > 0 || hs == 0)) {
                hit = p->tail + hs;
                break;
            }
            at = hs + 1;
        }
        char nm[256 * 4 + 8];
        if (!hit)
            return malformed(p, e, "device section '%s' instance %" JSON_INTEGER_FORMAT
                             " of the JSON description not found in order",
                             printable((const uint8_t *)name, nl, nm, sizeof nm), json_integer_value(inst));
        pos = (size_t)(hit - p->tail) + 1;
    }
    if (i == 0 && end != 0)
        return malformed(p, e, "device state present but the JSON description lists no device");
    if (i > 0 && (end < 5 || p->tail[end - 5] != MS_SEC_FOOTER))
        return malformed(p, e, "the last device section has no footer before EOF");
    p->sum.devices = (unsigned)i;
    return 0;
}

int ms_finish(struct ms_parser *p, struct ms_summary *sum, vs_err *e)
{
    if (p->st == S_ERROR)
        return vs_err_set(e, EINVAL, "migration stream parser used after an error");
    if (p->st == S_RAW) {          /* the opaque rest is QEMU's to check when it loads it */
        p->st = S_DONE;
        if (sum)
            *sum = p->sum;
        return 0;
    }
    if (p->st != S_TAIL)
        return malformed(p, e, "stream ends before the device state (truncated)");
    json_t *desc = NULL;
    long eof = find_trailer(p, &desc);
    if (eof < 0)
        return malformed(p, e, "no EOF marker and JSON description at the end (truncated?)");
    int r = desc ? check_devices(p, desc, (size_t)eof, e) : 0;
    json_decref(desc);
    if (r < 0)
        return r;
    p->st = S_DONE;
    if (sum)
        *sum = p->sum;
    return 0;
}
