/* crypt: chunk tables (ARCHIVE.sums) -- BLAKE2b-256 of every fixed-size chunk of an archive file, what a version-2
 * signature binds so that each chunk can be checked when it is read. Tables travel with archives: untrusted,
 * strictly parsed. */
#include "crypt/crypt.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>

static const uint8_t magic[8] = { 'V', 'M', 'S', 'N', 'S', 'U', 'M', 'S' };
#define SUMS_VERSION 1u

bool cr_sums_chunk_size_ok(uint64_t c)
{
    return c >= CR_SUMS_MIN_CHUNK && c <= CR_SUMS_MAX_CHUNK && !(c & (c - 1));
}

uint64_t cr_sums_count(uint64_t file_size, uint32_t chunk_size)
{
    return file_size / chunk_size + (file_size % chunk_size != 0);
}

uint64_t cr_sums_file_bytes(uint64_t file_size, uint32_t chunk_size)
{
    return CR_SUMS_HEADER + cr_sums_count(file_size, chunk_size) * CR_SUMS_HASH;
}

static void chunk_hash(const void *data, size_t len, uint8_t out[CR_SUMS_HASH])
{
    crypto_generichash(out, CR_SUMS_HASH, data, len, NULL, 0);
}

int cr_sums_compute(cr_pread_fn pread, void *opaque, const uint8_t uuid[16], uint64_t size, uint32_t chunk_size,
                    struct cr_sums *out, vs_err *e)
{
    *out = (struct cr_sums){ .file_size = size, .chunk_size = chunk_size, .count = cr_sums_count(size, chunk_size) };
    memcpy(out->uuid, uuid, 16);
    int r = cr_init(e);
    if (r < 0)
        return r;
    if (!cr_sums_chunk_size_ok(chunk_size))
        return vs_err_set(e, EINVAL, "chunk size %" PRIu32 ": expected a power of two from %u KiB to %u MiB",
                          chunk_size, CR_SUMS_MIN_CHUNK >> 10, CR_SUMS_MAX_CHUNK >> 20);
    if (cr_sums_file_bytes(size, chunk_size) > CR_SUMS_MAX_BYTES)
        return vs_err_set(e, EFBIG, "a chunk table of %" PRIu64 " chunks is larger than %llu MiB: use larger chunks",
                          out->count, CR_SUMS_MAX_BYTES >> 20);
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(chunk_size);
    out->h = vs_xmalloc(out->count * CR_SUMS_HASH + 1);
    for (uint64_t k = 0; k < out->count; k++) {
        uint64_t off = k * chunk_size;
        size_t n = (size_t)VS_MIN((uint64_t)chunk_size, size - off);
        if ((r = pread(opaque, buf, n, off, e)) < 0) {
            cr_sums_clear(out);
            return r;
        }
        chunk_hash(buf, n, out->h + k * CR_SUMS_HASH);
    }
    return 0;
}

uint8_t *cr_sums_format(const struct cr_sums *s, size_t *len)
{
    *len = (size_t)cr_sums_file_bytes(s->file_size, s->chunk_size);
    uint8_t *b = vs_xmalloc(*len), *p = b;
    memcpy(p, magic, sizeof magic), p += sizeof magic;
    vs_put_le32(p, SUMS_VERSION), p += 4;
    vs_put_le32(p, (uint32_t)__builtin_ctz(s->chunk_size)), p += 4;
    vs_put_le64(p, s->file_size), p += 8;
    vs_put_le64(p, s->count), p += 8;
    memcpy(p, s->uuid, 16), p += 16;
    memcpy(p, s->h, s->count * CR_SUMS_HASH);
    return b;
}

int cr_sums_parse(const uint8_t *buf, size_t len, const char *name, struct cr_sums *out, vs_err *e)
{
    *out = (struct cr_sums){ 0 };
    if (len < CR_SUMS_HEADER || memcmp(buf, magic, sizeof magic))
        return vs_err_set(e, EINVAL, "chunk table %s: not a vmsnap chunk table (expected the magic VMSNSUMS)", name);
    uint32_t version = vs_get_le32(buf + 8), shift = vs_get_le32(buf + 12);
    if (version != SUMS_VERSION)
        return vs_err_set(e, ENOTSUP, "chunk table %s: version %" PRIu32 ", this vmsnap reads version %u", name,
                          version, SUMS_VERSION);
    if (shift >= 32 || !cr_sums_chunk_size_ok(1ull << shift))
        return vs_err_set(e, EINVAL, "chunk table %s: chunk size 2^%" PRIu32 " is outside %u KiB .. %u MiB", name,
                          shift, CR_SUMS_MIN_CHUNK >> 10, CR_SUMS_MAX_CHUNK >> 20);
    out->chunk_size = 1u << shift;
    out->file_size = vs_get_le64(buf + 16);
    out->count = vs_get_le64(buf + 24);
    memcpy(out->uuid, buf + 32, 16);
    if (out->file_size > UINT64_MAX / 2 || out->count != cr_sums_count(out->file_size, out->chunk_size))
        return vs_err_set(e, EINVAL, "chunk table %s: %" PRIu64 " chunks do not cover %" PRIu64 " bytes in chunks of "
                          "%" PRIu32, name, out->count, out->file_size, out->chunk_size);
    if ((uint64_t)len != cr_sums_file_bytes(out->file_size, out->chunk_size))
        return vs_err_set(e, EINVAL, "chunk table %s: %zu bytes, expected %" PRIu64 " (a %d-byte header and %d "
                          "bytes per chunk)", name, len, cr_sums_file_bytes(out->file_size, out->chunk_size),
                          CR_SUMS_HEADER, CR_SUMS_HASH);
    out->h = vs_xmalloc(out->count * CR_SUMS_HASH + 1);
    memcpy(out->h, buf + CR_SUMS_HEADER, out->count * CR_SUMS_HASH);
    return 0;
}

bool cr_sums_chunk_ok(const struct cr_sums *s, uint64_t k, const void *data, size_t len)
{
    uint8_t h[CR_SUMS_HASH];
    if (k >= s->count || len != VS_MIN((uint64_t)s->chunk_size, s->file_size - k * s->chunk_size))
        return false;
    chunk_hash(data, len, h);
    return sodium_memcmp(h, s->h + k * CR_SUMS_HASH, CR_SUMS_HASH) == 0;
}

int cr_sums_bind(const struct cr_sig *s, const uint8_t *buf, size_t len, const char *name, struct cr_sums *out,
                 vs_err *e)
{
    *out = (struct cr_sums){ 0 };
    uint8_t d[CR_DIGEST_BYTES];
    crypto_generichash(d, sizeof d, buf, len, NULL, 0);
    if (sodium_memcmp(d, s->digest, sizeof d))
        return vs_err_set(e, EBADMSG, "chunk table %s is not the one key %s signed (it changed after signing, or "
                          "belongs to other bytes)", name, s->id);
    int r = cr_sums_parse(buf, len, name, out, e);
    if (r == 0 && (memcmp(out->uuid, s->uuid, 16) || out->file_size != s->file_size ||
                   out->chunk_size != s->chunk_size || out->count != s->chunk_count)) {
        cr_sums_clear(out);   /* a signer's own inconsistency: the signature then vouches for nothing */
        return vs_err_set(e, EBADMSG, "chunk table %s does not describe the archive key %s signed", name, s->id);
    }
    return r;
}

void cr_sums_clear(struct cr_sums *s)
{
    free(s->h);
    *s = (struct cr_sums){ 0 };
}
