/* crypt: Ed25519 signatures of archives -- the signed message, the file digest, trusted keys, the check. */
#include "crypt/crypt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>

/* The signed message (docs/FORMAT.md, "Signatures"): a domain string with its NUL, then length-prefixed parts.
 * Version 2 adds the chunk table's geometry; its digest is then the table's. */
static const char domain[] = "vmsnap archive signature";
#define MSG1_BYTES (sizeof domain + 4 + 4 + CR_ARC_HEADER_BYTES + 8 + 4 + CR_DIGEST_BYTES)           /* 237 */
#define MSG2_BYTES (sizeof domain + 4 + 4 + CR_ARC_HEADER_BYTES + 8 + 4 + 8 + 4 + CR_DIGEST_BYTES)   /* 249 */
#define DIGEST_CHUNK (1u << 20)

static size_t message(const struct cr_sig *s, const uint8_t header[CR_ARC_HEADER_BYTES], uint8_t m[MSG2_BYTES])
{
    uint8_t *p = m;
    memcpy(p, domain, sizeof domain), p += sizeof domain;
    vs_put_le32(p, s->version), p += 4;
    vs_put_le32(p, CR_ARC_HEADER_BYTES), p += 4;
    memcpy(p, header, CR_ARC_HEADER_BYTES), p += CR_ARC_HEADER_BYTES;
    vs_put_le64(p, s->file_size), p += 8;
    if (s->version == 2) {
        vs_put_le32(p, s->chunk_size), p += 4;
        vs_put_le64(p, s->chunk_count), p += 8;
    }
    vs_put_le32(p, CR_DIGEST_BYTES), p += 4;
    memcpy(p, s->digest, CR_DIGEST_BYTES), p += CR_DIGEST_BYTES;
    return (size_t)(p - m);
}

int cr_digest(cr_pread_fn pread, void *opaque, uint64_t size, uint8_t out[CR_DIGEST_BYTES], vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(DIGEST_CHUNK);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, CR_DIGEST_BYTES);
    for (uint64_t off = 0; off < size;) {
        size_t n = (size_t)VS_MIN((uint64_t)DIGEST_CHUNK, size - off);
        if ((r = pread(opaque, buf, n, off, e)) < 0)
            return r;
        crypto_generichash_update(&st, buf, n);
        off += n;
    }
    crypto_generichash_final(&st, out, CR_DIGEST_BYTES);
    return 0;
}

static void sign_msg(const struct cr_signkey *k, const uint8_t header[CR_ARC_HEADER_BYTES], struct cr_sig *out)
{
    uint8_t m[MSG2_BYTES];
    size_t n = message(out, header, m);
    memcpy(out->pk, k->pk, sizeof out->pk);
    memcpy(out->uuid, header + 32, 16);   /* the header's uuid field */
    crypto_sign_ed25519_detached(out->sig, NULL, m, n, k->sk);
    memcpy(out->id, k->id, sizeof out->id);
}

void cr_sign(const struct cr_signkey *k, const uint8_t header[CR_ARC_HEADER_BYTES], uint64_t file_size,
             const uint8_t digest[CR_DIGEST_BYTES], struct cr_sig *out)
{
    *out = (struct cr_sig){ .version = 1, .file_size = file_size };
    memcpy(out->digest, digest, CR_DIGEST_BYTES);
    sign_msg(k, header, out);
}

void cr_sign_sums(const struct cr_signkey *k, const uint8_t header[CR_ARC_HEADER_BYTES], const struct cr_sums *t,
                  struct cr_sig *out)
{
    *out = (struct cr_sig){ .version = 2, .file_size = t->file_size, .chunk_size = t->chunk_size,
                            .chunk_count = t->count };
    size_t len;
    VS_AUTOFREE uint8_t *file = cr_sums_format(t, &len);
    crypto_generichash(out->digest, CR_DIGEST_BYTES, file, len, NULL, 0);
    sign_msg(k, header, out);
}

bool cr_sig_valid(const struct cr_sig *s, const uint8_t header[CR_ARC_HEADER_BYTES])
{
    uint8_t m[MSG2_BYTES];
    if (s->version != 1 && s->version != 2)
        return false;
    size_t n = message(s, header, m);
    return memcmp(s->uuid, header + 32, 16) == 0 && crypto_sign_ed25519_verify_detached(s->sig, m, n, s->pk) == 0;
}

/* ---- trusted keys ---- */

static int keyring_add(struct cr_keyring *kr, const char *path, vs_err *e)
{
    struct cr_pubkey k;
    int r = cr_pubkey_load(path, &k, e);
    if (r < 0)
        return r;
    if (cr_keyring_find(kr, k.pk)) {
        cr_pubkey_clear(&k);
        return 0;
    }
    kr->v = vs_xrealloc(kr->v, (kr->n + 1) * sizeof *kr->v);
    kr->v[kr->n++] = k;
    return 0;
}

static int pub_name(const struct dirent *d)
{
    size_t l = strlen(d->d_name);
    return d->d_name[0] != '.' && l > 4 && !strcmp(d->d_name + l - 4, ".pub");
}

int cr_keyring_load(const char *path, struct cr_keyring *out, vs_err *e)
{
    *out = (struct cr_keyring){ .from = vs_xstrdup(path) };
    struct stat st;
    int r = 0;
    if (stat(path, &st) < 0) {
        r = vs_err_sys(e, errno, "trusted keys %s", path);
    } else if (!S_ISDIR(st.st_mode)) {
        r = keyring_add(out, path, e);
    } else {
        struct dirent **ents = NULL;
        int n = scandir(path, &ents, pub_name, alphasort);
        if (n < 0)
            r = vs_err_sys(e, errno, "trusted keys %s", path);
        for (int i = 0; i < n; i++) {
            if (r == 0) {
                VS_AUTOFREE char *p = vs_xasprintf("%s/%s", path, ents[i]->d_name);
                r = keyring_add(out, p, e);
            }
            free(ents[i]);
        }
        free(ents);
        if (r == 0 && out->n == 0)
            r = vs_err_set(e, ENOENT, "trusted keys %s: the directory holds no public key file (*.pub)", path);
    }
    if (r < 0)
        cr_keyring_clear(out);
    return r;
}

const struct cr_pubkey *cr_keyring_find(const struct cr_keyring *kr, const uint8_t pk[CR_SIGN_PUBLIC_BYTES])
{
    for (size_t i = 0; kr && i < kr->n; i++)
        if (!memcmp(kr->v[i].pk, pk, CR_SIGN_PUBLIC_BYTES))
            return &kr->v[i];
    return NULL;
}

void cr_keyring_clear(struct cr_keyring *kr)
{
    for (size_t i = 0; i < kr->n; i++)
        cr_pubkey_clear(&kr->v[i]);
    free(kr->v);
    free(kr->from);
    *kr = (struct cr_keyring){ 0 };
}

/* ---- the check ---- */

/* "a, b, c" of the signers' ids (trusted ones only when only), or "none". */
static char *ids(const struct cr_sigfile *f, const struct cr_keyring *kr)
{
    char *s = vs_xstrdup("");
    const size_t n = f ? f->n : kr->n;
    for (size_t i = 0; i < n; i++) {
        char *t = vs_xasprintf("%s%s%s", s, *s ? ", " : "", f ? f->v[i].id : kr->v[i].id);
        free(s);
        s = t;
    }
    if (!*s) {
        free(s);
        s = vs_xstrdup("none");
    }
    return s;
}

int cr_check_archive(const struct cr_archive_ref *a, const struct cr_sigfile *f, const struct cr_keyring *kr,
                     const struct cr_sig **by, vs_err *e)
{
    uint8_t header[CR_ARC_HEADER_BYTES] = { 0 }, digest[CR_DIGEST_BYTES];
    *by = NULL;
    int r = cr_init(e);
    if (r < 0 || (a->size >= sizeof header && (r = a->pread(a->opaque, header, sizeof header, 0, e)) < 0))
        return r;
    /* Cheap checks first; the digest reads the whole file, once, and only for a signature that holds. */
    const struct cr_sig *cand = NULL, *named = NULL;   /* named: the signature a refusal names */
    int why = 0;   /* the best reason for a refusal: 1 other archive, 2 other size, 3 bad signature */
    for (size_t i = 0; i < 2 * f->n && !cand; i++) {   /* version 2 first: it needs no read of the file */
        const struct cr_sig *s = &f->v[i % f->n];
        if ((s->version == 2) != (i < f->n) || (kr && !cr_keyring_find(kr, s->pk)))
            continue;
        int w = memcmp(s->uuid, a->uuid, 16) ? 1 : s->file_size != a->size ? 2 : !cr_sig_valid(s, header) ? 3 : 0;
        if (!w)
            cand = s;
        else if (w > why)
            why = w, named = s;
    }
    if (!cand) {
        const struct cr_sig *s = named;
        if (!s) {
            VS_AUTOFREE char *have = ids(f, NULL), *want = kr ? ids(NULL, kr) : NULL;
            return vs_err_set(e, EPERM, "archive %s is not signed by a trusted key: it has signatures by %s; the "
                              "trusted keys (%s) are %s", a->name, have, kr ? kr->from : "-", want ? want : "-");
        }
        if (why == 1) {
            char u[37];
            vs_uuid_format(s->uuid, u);
            return vs_err_set(e, EBADMSG, "archive %s: the signature by key %s is for another archive (UUID %s)",
                              a->name, s->id, u);
        }
        if (why == 2)
            return vs_err_set(e, EBADMSG, "archive %s is %" PRIu64 " bytes but key %s signed %" PRIu64 " bytes: "
                              "it changed after signing", a->name, a->size, s->id, s->file_size);
        return vs_err_set(e, EBADMSG, "archive %s: the signature by key %s does not match its header (the header "
                          "changed after signing, or the signature is damaged)", a->name, s->id);
    }
    if (cand->version == 2) {
        *by = cand;
        return 0;
    }
    if ((r = cr_digest(a->pread, a->opaque, a->size, digest, e)) < 0)
        return vs_err_prefix(e, "checking the signature of %s", a->name);
    if (sodium_memcmp(digest, cand->digest, sizeof digest))
        return vs_err_set(e, EBADMSG, "archive %s: its content differs from what key %s signed (it changed after "
                          "signing)", a->name, cand->id);
    *by = cand;
    return 0;
}
