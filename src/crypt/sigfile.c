/* crypt: .sig files -- one line per signature, strictly parsed (they travel with archives: untrusted), written to a
 * temp file and renamed. */
#include "crypt/crypt_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>

#define SIG_TAG "vmsnap-signature-1"
#define REC_BYTES (CR_SIGN_PUBLIC_BYTES + 16 + 8 + CR_DIGEST_BYTES + CR_SIG_BYTES)   /* 184 */
#define REC_B64 (((REC_BYTES + 2) / 3) * 4)                                             /* 248 */
#define LINE_BYTES (sizeof SIG_TAG - 1 + 1 + CR_ID_LEN + 1 + REC_B64)                  /* without '\n' */
#define SIGFILE_MAX_BYTES (CR_SIGFILE_MAX * (LINE_BYTES + 1))
_Static_assert(SIGFILE_MAX_BYTES == CR_SIGFILE_MAX_BYTES, "crypt.h's cap on a .sig file");

static void rec_put(const struct cr_sig *s, uint8_t r[REC_BYTES])
{
    uint8_t *p = r;
    memcpy(p, s->pk, CR_SIGN_PUBLIC_BYTES), p += CR_SIGN_PUBLIC_BYTES;
    memcpy(p, s->uuid, 16), p += 16;
    vs_put_le64(p, s->file_size), p += 8;
    memcpy(p, s->digest, CR_DIGEST_BYTES), p += CR_DIGEST_BYTES;
    memcpy(p, s->sig, CR_SIG_BYTES);
}

static void rec_get(const uint8_t r[REC_BYTES], struct cr_sig *s)
{
    const uint8_t *p = r;
    memcpy(s->pk, p, CR_SIGN_PUBLIC_BYTES), p += CR_SIGN_PUBLIC_BYTES;
    memcpy(s->uuid, p, 16), p += 16;
    s->file_size = vs_get_le64(p), p += 8;
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
    const size_t tl = sizeof SIG_TAG - 1;
    if (len != LINE_BYTES || memcmp(l, SIG_TAG, tl) || l[tl] != ' ' || l[tl + 1 + CR_ID_LEN] != ' ' ||
        !is_hex_id(l + tl + 1))
        return vs_err_set(e, EINVAL, "signature file %s line %u: expected \"%s KEYID BASE64\" (%zu characters)",
                          name, no, SIG_TAG, LINE_BYTES);
    uint8_t r[REC_BYTES];
    size_t got = 0;
    const char *b64 = l + tl + 2 + CR_ID_LEN, *end = NULL;
    if (sodium_base642bin(r, sizeof r, b64, REC_B64, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + REC_B64 || got != REC_BYTES)
        return vs_err_set(e, EINVAL, "signature file %s line %u: the signature is not %d bytes of base64", name, no,
                          REC_BYTES);
    rec_get(r, s);
    if (memcmp(s->id, l + tl + 1, CR_ID_LEN))
        return vs_err_set(e, EINVAL, "signature file %s line %u: key id %.*s does not name the key it holds (%s)",
                          name, no, CR_ID_LEN, l + tl + 1, s->id);
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
    char *t = vs_xmalloc(f->n * (LINE_BYTES + 1) + 1), *p = t;
    for (size_t i = 0; i < f->n; i++) {
        uint8_t r[REC_BYTES];
        rec_put(&f->v[i], r);
        p += sprintf(p, "%s %s ", SIG_TAG, f->v[i].id);
        sodium_bin2base64(p, REC_B64 + 1, r, sizeof r, sodium_base64_VARIANT_ORIGINAL);
        p += REC_B64;
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
    int r = cr__read_small(path, "signature file", false, buf, SIGFILE_MAX_BYTES + 1, &n, e);
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
    return cr_sigfile_write(path, text, e);
}

int cr_sigfile_write(const char *path, const char *text, vs_err *e)
{
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.XXXXXX", path);
    VS_AUTOCLOSE int fd = vs_mkstemp_mode(tmp, 0666);
    if (fd < 0)
        return vs_err_sys(e, errno, "signature file %s: creating a temporary file beside it", path);
    int r;
    if ((r = vs_write_full(fd, text, strlen(text))) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
        r = vs_err_sys(e, r < 0 ? -r : errno, "signature file %s: writing %s", path, tmp);
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
