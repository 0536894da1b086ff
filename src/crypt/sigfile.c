/* crypt: .sig files -- one line per signature, strictly parsed (they travel with archives: untrusted), written to a
 * temp file and renamed. */
#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>

/* Version 1 and 2 lines: "TAG KEYID BASE64", the record's fields below in order. */
#define TAG_BYTES 18   /* "vmsnap-signature-N" */
#define REC1_BYTES (CR_SIGN_PUBLIC_BYTES + 16 + 8 + CR_DIGEST_BYTES + CR_SIG_BYTES)           /* 184 */
#define REC2_BYTES (CR_SIGN_PUBLIC_BYTES + 16 + 8 + 4 + 8 + CR_DIGEST_BYTES + CR_SIG_BYTES)   /* 196 */
#define B64(n) ((((n) + 2) / 3) * 4)                                                           /* 248, 264 */
#define LINE_BYTES(rec) (TAG_BYTES + 1 + CR_ID_LEN + 1 + B64(rec))                              /* 284, 300 */
#define SIGFILE_MAX_BYTES (CR_SIGFILE_MAX * (LINE_BYTES(REC2_BYTES) + 1))
_Static_assert(SIGFILE_MAX_BYTES == CR_SIGFILE_MAX_BYTES, "crypt.h's cap on a .sig file");

static const char *const tags[3] = { NULL, "vmsnap-signature-1", "vmsnap-signature-2" };

static size_t rec_bytes(unsigned version) { return version == 2 ? REC2_BYTES : REC1_BYTES; }

static void rec_put(const struct cr_sig *s, uint8_t r[REC2_BYTES])
{
    uint8_t *p = r;
    memcpy(p, s->pk, CR_SIGN_PUBLIC_BYTES), p += CR_SIGN_PUBLIC_BYTES;
    memcpy(p, s->uuid, 16), p += 16;
    vs_put_le64(p, s->file_size), p += 8;
    if (s->version == 2) {
        vs_put_le32(p, s->chunk_size), p += 4;
        vs_put_le64(p, s->chunk_count), p += 8;
    }
    memcpy(p, s->digest, CR_DIGEST_BYTES), p += CR_DIGEST_BYTES;
    memcpy(p, s->sig, CR_SIG_BYTES);
}

static void rec_get(unsigned version, const uint8_t r[REC2_BYTES], struct cr_sig *s)
{
    const uint8_t *p = r;
    *s = (struct cr_sig){ .version = version };
    memcpy(s->pk, p, CR_SIGN_PUBLIC_BYTES), p += CR_SIGN_PUBLIC_BYTES;
    memcpy(s->uuid, p, 16), p += 16;
    s->file_size = vs_get_le64(p), p += 8;
    if (version == 2) {
        s->chunk_size = vs_get_le32(p), p += 4;
        s->chunk_count = vs_get_le64(p), p += 8;
    }
    memcpy(s->digest, p, CR_DIGEST_BYTES), p += CR_DIGEST_BYTES;
    memcpy(s->sig, p, CR_SIG_BYTES);
    cr_pubkey_id(s->pk, s->id);
}

static bool is_hex_id(const char *s)
{
    for (int i = 0; i < CR_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int parse_line(const char *l, size_t len, struct cr_sig *s, const char *name, unsigned no, vs_err *e)
{
    unsigned v = len >= TAG_BYTES && !memcmp(l, tags[2], TAG_BYTES) ? 2 : 1;
    const size_t rb = rec_bytes(v), b64 = B64(rb);
    if (len != LINE_BYTES(rb) || memcmp(l, tags[v], TAG_BYTES) || l[TAG_BYTES] != ' ' ||
        l[TAG_BYTES + 1 + CR_ID_LEN] != ' ' || !is_hex_id(l + TAG_BYTES + 1))
        return vs_err_set(e, EINVAL, "signature file %s line %u: expected \"%s KEYID BASE64\" (%zu characters) or "
                          "\"%s KEYID BASE64\" (%zu)", name, no, tags[1], (size_t)LINE_BYTES(REC1_BYTES), tags[2],
                          (size_t)LINE_BYTES(REC2_BYTES));
    uint8_t r[REC2_BYTES];
    size_t got = 0;
    const char *b = l + TAG_BYTES + 2 + CR_ID_LEN, *end = NULL;
    if (sodium_base642bin(r, sizeof r, b, b64, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b + b64 || got != rb)
        return vs_err_set(e, EINVAL, "signature file %s line %u: the signature is not %zu bytes of base64", name, no,
                          rb);
    rec_get(v, r, s);
    if (memcmp(s->id, l + TAG_BYTES + 1, CR_ID_LEN))
        return vs_err_set(e, EINVAL, "signature file %s line %u: key id %.*s does not name the key it holds (%s)",
                          name, no, CR_ID_LEN, l + TAG_BYTES + 1, s->id);
    if (v == 2 && (!cr_sums_chunk_size_ok(s->chunk_size) || s->file_size > UINT64_MAX / 2 ||
                   s->chunk_count != cr_sums_count(s->file_size, s->chunk_size)))
        return vs_err_set(e, EINVAL, "signature file %s line %u: chunk size %u and count %" PRIu64 " do not fit a "
                          "chunk table of %" PRIu64 " bytes", name, no, s->chunk_size, s->chunk_count, s->file_size);
    return 0;
}

int cr_sigfile_parse(const char *text, size_t len, const char *name, struct cr_sigfile *out, vs_err *e)
{
    *out = (struct cr_sigfile){ 0 };
    if (len > SIGFILE_MAX_BYTES)
        return vs_err_set(e, EINVAL, "signature file %s: %zu bytes, more than %d signatures take", name, len,
                          CR_SIGFILE_MAX);
    if (len == 0)
        return vs_err_set(e, EINVAL, "signature file %s is empty", name);
    out->v = vs_xcalloc(CR_SIGFILE_MAX, sizeof *out->v);
    for (size_t at = 0; at < len; out->n++) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t ll = nl ? (size_t)(nl - text) - at : len - at;   /* the last line may lack its newline */
        if (out->n == CR_SIGFILE_MAX) {
            cr_sigfile_clear(out);
            return vs_err_set(e, EINVAL, "signature file %s: more than %d signatures", name, CR_SIGFILE_MAX);
        }
        int r = parse_line(text + at, ll, &out->v[out->n], name, (unsigned)out->n + 1, e);
        if (r < 0) {
            cr_sigfile_clear(out);
            return r;
        }
        at += ll + 1;
    }
    return 0;
}

char *cr_sigfile_format(const struct cr_sigfile *f)
{
    char *t = vs_xmalloc(f->n * (LINE_BYTES(REC2_BYTES) + 1) + 1), *p = t;
    for (size_t i = 0; i < f->n; i++) {
        const struct cr_sig *s = &f->v[i];
        uint8_t r[REC2_BYTES];
        size_t rb = rec_bytes(s->version);
        rec_put(s, r);
        p += sprintf(p, "%s %s ", tags[s->version == 2 ? 2 : 1], s->id);
        sodium_bin2base64(p, B64(rb) + 1, r, rb, sodium_base64_VARIANT_ORIGINAL);
        p += B64(rb);
        *p++ = '\n';
    }
    *p = 0;
    return t;
}

int cr_sigfile_load(const char *path, struct cr_sigfile *out, vs_err *e)
{
    *out = (struct cr_sigfile){ 0 };
    VS_AUTOFREE char *buf = vs_xmalloc(SIGFILE_MAX_BYTES + 1);
    size_t n = 0;
    int r = cr_read_small(path, "signature file", false, buf, SIGFILE_MAX_BYTES + 1, &n, e);
    if (r < 0)
        return r;
    return cr_sigfile_parse(buf, n, path, out, e);
}

int cr_sigfile_put(struct cr_sigfile *f, const struct cr_sig *s, const char *name, vs_err *e)
{
    if (!f->v)
        f->v = vs_xcalloc(CR_SIGFILE_MAX, sizeof *f->v);
    size_t i = 0;
    while (i < f->n && !(memcmp(f->v[i].pk, s->pk, sizeof s->pk) == 0 && memcmp(f->v[i].uuid, s->uuid, 16) == 0))
        i++;
    if (i == CR_SIGFILE_MAX)
        return vs_err_set(e, EFBIG, "signature file %s already holds %d signatures", name, CR_SIGFILE_MAX);
    f->v[i] = *s;
    if (i == f->n)
        f->n++;
    return 0;
}

int cr_sigfile_add(const char *path, const struct cr_sig *s, size_t *count, vs_err *e)
{
    struct cr_sigfile f = { 0 };
    int r = cr_sigfile_load(path, &f, e);
    if ((r < 0 && r != -ENOENT) || (r = cr_sigfile_put(&f, s, path, e)) < 0) {
        cr_sigfile_clear(&f);
        return r;
    }
    *count = f.n;
    VS_AUTOFREE char *text = cr_sigfile_format(&f);
    cr_sigfile_clear(&f);
    return cr_file_replace(path, "signature file", text, strlen(text), e);
}

int cr_file_replace(const char *path, const char *what, const void *buf, size_t len, vs_err *e)
{
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.XXXXXX", path);
    VS_AUTOCLOSE int fd = vs_mkstemp_mode(tmp, 0666);
    if (fd < 0)
        return vs_err_sys(e, errno, "%s %s: creating a temporary file beside it", what, path);
    int r;
    if ((r = vs_write_full(fd, buf, len)) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
        r = vs_err_sys(e, r < 0 ? -r : errno, "%s %s: writing %s", what, path, tmp);
        unlink(tmp);
        return r;
    }
    return vs_fsync_dir_of(path, e);
}

void cr_sigfile_clear(struct cr_sigfile *f)
{
    free(f->v);
    *f = (struct cr_sigfile){ 0 };
}
