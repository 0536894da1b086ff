/* archive: codecs, checksums and the encoding of index records. */
#include "archive/format.h"

#include <errno.h>
#include <lz4.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

const char *arc_kind_name(enum arc_kind k)
{
    switch (k) {
    case ARC_KIND_DISK: return "disk";
    case ARC_KIND_MEMORY: return "memory";
    case ARC_KIND_CONFIG: return "config";
    case ARC_KIND_METADATA: return "metadata";
    case ARC_KIND_FILE: return "file";
    default: return "other";
    }
}

const char *arc_codec_name(enum arc_codec c)
{
    switch (c) {
    case ARC_CODEC_NONE: return "none";
    case ARC_CODEC_LZ4: return "lz4";
    case ARC_CODEC_ZSTD: return "zstd";
    default: return "unknown";
    }
}

int arc_parse_codec(const char *s, enum arc_codec *codec, int *level, vs_err *e)
{
    *level = 0;
    if (!strcmp(s, "lz4")) {
        *codec = ARC_CODEC_LZ4;
        return 0;
    }
    if (!strcmp(s, "none")) {
        *codec = ARC_CODEC_NONE;
        return 0;
    }
    if (!strncmp(s, "zstd", 4) && (s[4] == 0 || s[4] == ':')) {
        *codec = ARC_CODEC_ZSTD;
        if (s[4] == ':') {
            char *end;
            long l = strtol(s + 5, &end, 10);
            if (!s[5] || *end || l < 1 || l > 19)
                return vs_err_set(e, EINVAL, "bad zstd level in '%s' (expected 1..19)", s);
            *level = (int)l;
        }
        return 0;
    }
    return vs_err_set(e, EINVAL, "unknown compression '%s' (expected lz4, zstd[:LEVEL] or none)", s);
}

void arc_entry_encode(uint8_t *p, const struct arc_entry *en)
{
    vs_put_le64(p, en->offset);
    vs_put_le32(p + 8, en->stored_len);
    p[12] = en->type;
    p[13] = en->codec;
    vs_put_le16(p + 14, en->reserved);
    vs_put_le64(p + 16, en->csum);
    vs_put_le64(p + 24, en->scsum);
}

void arc_entry_decode(const uint8_t *p, struct arc_entry *en)
{
    en->offset = vs_get_le64(p);
    en->stored_len = vs_get_le32(p + 8);
    en->type = p[12];
    en->codec = p[13];
    en->reserved = vs_get_le16(p + 14);
    en->csum = vs_get_le64(p + 16);
    en->scsum = vs_get_le64(p + 24);
}

void arc_top_encode(uint8_t *p, const struct arc_top *t)
{
    vs_put_le64(p, t->offset);
    vs_put_le32(p + 8, t->length);
    vs_put_le32(p + 12, t->type);
    vs_put_le64(p + 16, t->csum);
}

void arc_top_decode(const uint8_t *p, struct arc_top *t)
{
    t->offset = vs_get_le64(p);
    t->length = vs_get_le32(p + 8);
    t->type = vs_get_le32(p + 12);
    t->csum = vs_get_le64(p + 16);
}

size_t arc_stored_bound(uint32_t block_size)
{
    size_t a = (size_t)LZ4_compressBound((int)block_size), b = ZSTD_compressBound(block_size);
    return VS_MAX(VS_MAX(a, b), (size_t)block_size);
}

bool arc_block_size_ok(uint64_t bs)
{
    return bs >= ARC_MIN_BLOCK_SIZE && bs <= ARC_MAX_BLOCK_SIZE && !(bs & (bs - 1));
}

size_t arc_compress(enum arc_codec codec, int level, void *zctx, const void *src, size_t len, void *dst, size_t cap,
                    uint8_t *codec_used)
{
    size_t n = 0;
    if (codec == ARC_CODEC_LZ4) {
        int r = LZ4_compress_default(src, dst, (int)len, (int)cap);
        n = r > 0 ? (size_t)r : 0;
    } else if (codec == ARC_CODEC_ZSTD) {
        size_t r = zctx ? ZSTD_compressCCtx(zctx, dst, cap, src, len, level ? level : 3)
                        : ZSTD_compress(dst, cap, src, len, level ? level : 3);
        n = ZSTD_isError(r) ? 0 : r;
    }
    if (n == 0 || n >= len) {   /* incompressible: store as is */
        memcpy(dst, src, len);
        *codec_used = ARC_CODEC_NONE;
        return len;
    }
    *codec_used = (uint8_t)codec;
    return n;
}

int arc_decompress(uint8_t codec, void *zdctx, const void *src, size_t len, void *dst, size_t out_len)
{
    switch (codec) {
    case ARC_CODEC_NONE:
        if (len != out_len)
            return -EIO;
        memcpy(dst, src, len);
        return 0;
    case ARC_CODEC_LZ4: {
        if (len > INT32_MAX || out_len > INT32_MAX)
            return -EIO;
        int r = LZ4_decompress_safe(src, dst, (int)len, (int)out_len);
        return r == (int)out_len ? 0 : -EIO;
    }
    case ARC_CODEC_ZSTD: {
        size_t r = zdctx ? ZSTD_decompressDCtx(zdctx, dst, out_len, src, len) : ZSTD_decompress(dst, out_len, src, len);
        return !ZSTD_isError(r) && r == out_len ? 0 : -EIO;
    }
    default:
        return -ENOTSUP;
    }
}

uint64_t arc_hash64(const void *p, size_t len) { return XXH3_64bits(p, len); }
uint64_t arc_meta_hash(const void *p, size_t len) { return XXH64(p, len, 0); }

bool arc_is_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    /* Check the head byte by byte, then compare the buffer with itself shifted (fast memcmp). */
    size_t head = VS_MIN(len, (size_t)16);
    for (size_t i = 0; i < head; i++)
        if (b[i])
            return false;
    return len <= 16 || !memcmp(b, b + 16, len - 16);
}
