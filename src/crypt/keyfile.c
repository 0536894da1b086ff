/* crypt: key files -- generation (exclusive, 0600), strict parsing, key ids. */
#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAX 512   /* the longest valid file is ~110 bytes */

static const char *const kind_tag[] = {
    [CR_KIND_KEY] = "vmsnap-key-1",
    [CR_KIND_SIGN_SECRET] = "vmsnap-sign-secret-1",
    [CR_KIND_SIGN_PUBLIC] = "vmsnap-sign-public-1",
};

int cr_init(vs_err *e)
{
    if (sodium_init() < 0)
        return vs_err_set(e, EIO, "libsodium failed to initialise");
    return 0;
}

/* The id of public material of a kind (an archive key, or a signing pair's public key). */
static void key_id(enum cr_kind kind, const uint8_t *m, size_t len, char out[CR_ID_LEN + 1])
{
    static const char dom[] = "vmsnap key id 1";
    const char *tag = kind == CR_KIND_KEY ? kind_tag[CR_KIND_KEY] : kind_tag[CR_KIND_SIGN_PUBLIC];
    uint8_t h[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)dom, sizeof dom);
    crypto_generichash_update(&st, (const uint8_t *)tag, strlen(tag) + 1);
    crypto_generichash_update(&st, m, len);
    crypto_generichash_final(&st, h, sizeof h);
    sodium_bin2hex(out, CR_ID_LEN + 1, h, CR_ID_LEN / 2);
}

int cr_keyfile_parse(const char *text, size_t len, enum cr_kind kind, uint8_t *out, size_t out_len, const char *name,
                     vs_err *e)
{
    const char *tag = kind_tag[kind];
    size_t tl = strlen(tag);
    if (len > KEYFILE_MAX)
        return vs_err_set(e, EINVAL, "key file %s: longer than any key file (%zu bytes)", name, len);
    if (len && text[len - 1] == '\n')
        len--;
    if (len < tl + 1 || memcmp(text, tag, tl) != 0 || text[tl] != ' ') {
        for (size_t k = 0; k < VS_ARRAY_SIZE(kind_tag); k++) {
            size_t l = strlen(kind_tag[k]);
            if (len > l && memcmp(text, kind_tag[k], l) == 0 && text[l] == ' ')
                return vs_err_set(e, EINVAL, "key file %s holds a %s, expected a %s", name, kind_tag[k], tag);
        }
        return vs_err_set(e, EINVAL, "key file %s: expected one line \"%s <base64>\"", name, tag);
    }
    const char *b64 = text + tl + 1, *end = NULL;
    size_t b64_len = len - tl - 1, got = 0;
    if (memchr(b64, '\n', b64_len) || memchr(b64, 0, b64_len) ||
        sodium_base642bin(out, out_len, b64, b64_len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + b64_len || got != out_len) {
        sodium_memzero(out, out_len);
        return vs_err_set(e, EINVAL, "key file %s: the %s is not %zu bytes of base64", name, tag, out_len);
    }
    return 0;
}

int cr_read_small(const char *path, const char *what, bool secret, char *buf, size_t cap, size_t *len, vs_err *e)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return vs_err_sys(e, errno, "%s %s", what, path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vs_err_sys(e, errno, "%s %s", what, path);
    if (!S_ISREG(st.st_mode))
        return vs_err_set(e, EINVAL, "%s %s: not a regular file", what, path);
    if (secret && (st.st_mode & 077))
        return vs_err_set(e, EPERM, "%s %s: mode %04o lets others read a secret key; chmod 600 it", what, path,
                          (unsigned)(st.st_mode & 07777));
    ssize_t n = vs_read_full(fd, buf, cap);
    if (n < 0)
        return vs_err_sys(e, (int)-n, "%s %s", what, path);
    *len = (size_t)n;
    return 0;
}

/* Read a small key file; a secret one must not be readable by group or others. */
static int read_keyfile(const char *path, bool secret, char *buf, size_t cap, size_t *len, vs_err *e)
{
    int r = cr_read_small(path, "key file", secret, buf, cap, len, e);
    if (r == 0 && *len == cap)
        return vs_err_set(e, EINVAL, "key file %s: longer than any key file", path);
    return r;
}

static int load(const char *path, enum cr_kind kind, uint8_t *out, size_t out_len, vs_err *e)
{
    char buf[KEYFILE_MAX + 1];
    size_t len = 0;
    int r = read_keyfile(path, kind != CR_KIND_SIGN_PUBLIC, buf, sizeof buf, &len, e);
    if (r == 0)
        r = cr_keyfile_parse(buf, len, kind, out, out_len, path, e);
    sodium_memzero(buf, sizeof buf);
    return r;
}

/* Write "<tag> <base64>\n" to a new file (exclusive), durable before it is reported made. */
static int write_keyfile(const char *path, enum cr_kind kind, const uint8_t *m, size_t len, mode_t mode, vs_err *e)
{
    char line[KEYFILE_MAX];
    size_t tl = strlen(kind_tag[kind]);
    memcpy(line, kind_tag[kind], tl);
    line[tl] = ' ';
    sodium_bin2base64(line + tl + 1, sizeof line - tl - 2, m, len, sodium_base64_VARIANT_ORIGINAL);
    size_t n = strlen(line);
    line[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    int r = 0;
    if (fd < 0) {
        r = errno == EEXIST ? vs_err_set(e, EEXIST, "key file %s exists: refusing to overwrite a key", path)
                            : vs_err_sys(e, errno, "key file %s", path);
    } else if (fchmod(fd, mode) < 0 || vs_write_full(fd, line, n) < 0 || fsync(fd) < 0) {
        r = vs_err_sys(e, errno, "key file %s", path);
    }
    sodium_memzero(line, sizeof line);
    if (fd >= 0) {
        close(fd);
        if (r < 0)
            unlink(path);
        else
            r = vs_fsync_dir_of(path, e);
    }
    return r;
}

int cr_key_generate(const char *path, struct cr_key *out, vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    crypto_aead_xchacha20poly1305_ietf_keygen(out->k);
    key_id(CR_KIND_KEY, out->k, sizeof out->k, out->id);
    return write_keyfile(path, CR_KIND_KEY, out->k, sizeof out->k, 0600, e);
}

int cr_signkey_generate(const char *path, struct cr_signkey *out, vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    crypto_sign_ed25519_keypair(out->pk, out->sk);
    key_id(CR_KIND_SIGN_PUBLIC, out->pk, sizeof out->pk, out->id);
    VS_AUTOFREE char *pub = vs_xasprintf("%s.pub", path);
    if (access(pub, F_OK) == 0)   /* checked first so that a refusal leaves no secret without its public half */
        return vs_err_set(e, EEXIST, "key file %s exists: refusing to overwrite a key", pub);
    if ((r = write_keyfile(path, CR_KIND_SIGN_SECRET, out->sk, sizeof out->sk, 0600, e)) < 0)
        return r;
    if ((r = write_keyfile(pub, CR_KIND_SIGN_PUBLIC, out->pk, sizeof out->pk, 0644, e)) < 0)
        unlink(path);
    return r;
}

int cr_key_load(const char *path, struct cr_key *out, vs_err *e)
{
    int r = cr_init(e);
    if (r == 0 && (r = load(path, CR_KIND_KEY, out->k, sizeof out->k, e)) == 0)
        key_id(CR_KIND_KEY, out->k, sizeof out->k, out->id);
    return r;
}

int cr_signkey_load(const char *path, struct cr_signkey *out, vs_err *e)
{
    int r = cr_init(e);
    if (r < 0 || (r = load(path, CR_KIND_SIGN_SECRET, out->sk, sizeof out->sk, e)) < 0)
        return r;
    /* The secret carries its public half; derive it again so a damaged file cannot pair a wrong one. */
    uint8_t seed[crypto_sign_ed25519_SEEDBYTES], sk[CR_SIGN_SECRET_BYTES];
    crypto_sign_ed25519_sk_to_seed(seed, out->sk);
    crypto_sign_ed25519_seed_keypair(out->pk, sk, seed);
    bool same = sodium_memcmp(sk, out->sk, sizeof sk) == 0;
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    if (!same) {
        cr_signkey_wipe(out);
        return vs_err_set(e, EINVAL, "key file %s: the secret key's public half does not match its seed", path);
    }
    key_id(CR_KIND_SIGN_PUBLIC, out->pk, sizeof out->pk, out->id);
    return 0;
}

int cr_pubkey_load(const char *path, struct cr_pubkey *out, vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    *out = (struct cr_pubkey){ 0 };
    vs_err e2 = { 0 };
    if ((r = load(path, CR_KIND_SIGN_PUBLIC, out->pk, sizeof out->pk, &e2)) < 0) {
        CR_SIGNKEY_AUTOWIPE struct cr_signkey sk = { 0 };
        if (cr_signkey_load(path, &sk, NULL) < 0) {
            if (e)
                *e = e2;
            return r;
        }
        memcpy(out->pk, sk.pk, sizeof out->pk);
    }
    key_id(CR_KIND_SIGN_PUBLIC, out->pk, sizeof out->pk, out->id);
    out->path = vs_xstrdup(path);
    return 0;
}

void cr_pubkey_id(const uint8_t pk[CR_SIGN_PUBLIC_BYTES], char out[CR_ID_LEN + 1])
{
    key_id(CR_KIND_SIGN_PUBLIC, pk, CR_SIGN_PUBLIC_BYTES, out);
}

void cr_pubkey_clear(struct cr_pubkey *k)
{
    free(k->path);
    *k = (struct cr_pubkey){ 0 };
}

void cr_key_wipe(struct cr_key *k)
{
    sodium_memzero(k, sizeof *k);
}

void cr_signkey_wipe(struct cr_signkey *k)
{
    sodium_memzero(k, sizeof *k);
}
