/* cli: trusted keys (--trusted-keys, VMSNAP_TRUSTED_KEYS) and the signature check of an archive chain, shared by
 * every command that reads archives. With trusted keys an archive signed with a chunk table (version 2) is read
 * through it: opening reads the header, .sig and .sums, and every chunk is checked when it is read. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

int cli_trust_load(const char *flag, struct cli_trust *t, vs_err *e)
{
    const char *from = flag ? flag : getenv("VMSNAP_TRUSTED_KEYS");
    t->kr = NULL;
    if (flag && !*flag)   /* `--trusted-keys "$UNSET"` must not turn the check off */
        return vs_err_set(e, EINVAL, "--trusted-keys: expected a key file or a directory of keys, got an empty name");
    if (!from || !*from)
        return 0;
    struct cr_keyring *kr = vs_xcalloc(1, sizeof *kr);
    int r = cr_keyring_load(from, kr, e);
    if (r < 0) {
        free(kr);
        return r;
    }
    t->kr = kr;
    return 0;
}

void cli_trust_clear(struct cli_trust *t)
{
    if (t->kr)
        cr_keyring_clear(t->kr);
    free(t->kr);
    t->kr = NULL;
}

char *cli_sig_path(const char *archive)
{
    return vs_xasprintf("%s.sig", archive);
}

char *cli_sums_path(const char *archive)
{
    return vs_xasprintf("%s.sums", archive);
}

static void object_close(struct os_object **o) { os_object_close(*o); }

int cli_side_load(const char *loc, const char *what, size_t cap, char **buf, size_t *len, vs_err *e)
{
    *buf = NULL;
    if (!os_is_remote(loc)) {
        char *b = vs_xmalloc(cap + 1);
        int r = cr_read_small(loc, what, false, b, cap + 1, len, e);
        if (r == 0 && *len > cap)
            r = vs_err_set(e, EINVAL, "%s %s: longer than %zu bytes", what, loc, cap);
        if (r < 0)
            free(b);
        else
            *buf = b;
        return r;
    }
    __attribute__((cleanup(object_close))) struct os_object *o = NULL;
    int r = os_object_open(loc, &o, e);
    /* An anonymous read of a missing key gets 403 from S3-like stores (no right to list): the archive beside it
     * was readable, so that is no such file. */
    if (r == -ENOENT || (r == -EACCES && os_scheme_of(loc) == OS_HTTP))
        return vs_err_set(e, ENOENT, "%s %s: no such object", what, loc);
    if (r < 0)
        return r;
    uint64_t size = os_object_size(o);
    if (size > cap)   /* the same cap as a local file's, checked before reading */
        return vs_err_set(e, EINVAL, "%s %s: %" PRIu64 " bytes, longer than %zu", what, loc, size, cap);
    char *b = vs_xmalloc(size + 1);
    if (size && (r = os_object_pread(o, b, (size_t)size, 0, e)) < 0) {
        free(b);
        return r;
    }
    *buf = b;
    *len = (size_t)size;
    return 0;
}

int cli_sig_load(const char *archive, struct cr_sigfile *out, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sig_path(archive), *buf = NULL;
    size_t len = 0;
    *out = (struct cr_sigfile){ 0 };
    int r = cli_side_load(loc, "signature file", CR_SIGFILE_MAX_BYTES, &buf, &len, e);
    return r < 0 ? r : cr_sigfile_parse(buf, len, loc, out, e);
}

int cli_sums_load(const char *archive, const struct cr_sig *by, struct cr_sums *out, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sums_path(archive), *buf = NULL;
    size_t len = 0, want = (size_t)cr_sums_file_bytes(by->file_size, by->chunk_size);
    *out = (struct cr_sums){ 0 };
    if (want > CR_SUMS_MAX_BYTES)
        return vs_err_set(e, EFBIG, "archive %s: key %s signed a chunk table of %zu bytes, more than the %llu MiB "
                          "read", archive, by->id, want, CR_SUMS_MAX_BYTES >> 20);
    int r = cli_side_load(loc, "chunk table", want, &buf, &len, e);
    if (r == -ENOENT)
        return vs_err_set(e, ENOENT, "archive %s: key %s signed its chunk table, but %s is missing", archive, by->id,
                          loc);
    if (r == 0 && len != want)
        r = vs_err_set(e, EINVAL, "chunk table %s: %zu bytes, expected %zu for the chunks key %s signed", loc, len,
                       want, by->id);
    return r < 0 ? r : cr_sums_bind(by, (const uint8_t *)buf, len, loc, out, e);
}

int cli_side_store(const char *loc, const char *what, const void *buf, size_t len, vs_err *e)
{
    if (os_scheme_of(loc) == OS_HTTP)
        return vs_err_set(e, EROFS, "%s %s: http(s) locations are read-only", what, loc);
    if (!os_is_remote(loc))
        return cr_file_replace(loc, what, buf, len, e);
    /* One part, a single PUT: the object appears only whole. */
    struct os_upload *u = NULL;
    int r = os_upload_begin(loc, &u, e);
    if (r < 0)
        return r;
    void *part = vs_xmalloc(len + 1);   /* the upload takes its buffer over; buf stays the caller's */
    memcpy(part, buf, len);
    if ((r = os_upload_part(u, 1, part, len, e)) < 0) {
        os_upload_abort(u);
        return r;
    }
    return os_upload_finish(u, e);
}

int cli_sig_store(const char *archive, const struct cr_sigfile *f, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sig_path(archive), *text = cr_sigfile_format(f);
    return cli_side_store(loc, "signature file", text, strlen(text), e);
}

int cli_source_pread(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct arc_source *s = opaque;
    return s->pread(s, buf, len, off, e);
}

static const char *source_name(const struct arc_source *s) { return s->path ? s->path : s->name; }

/* The .sig of an archive that must be checked: 1 with *f loaded, 0 when there is nothing to check (no .sig, or
 * another tool's, without trusted keys: noted unless quiet), else an error naming the archive. */
static int sig_of(struct cli_trust *t, const char *name, bool quiet, struct cr_sigfile *f, vs_err *e)
{
    int r = cli_sig_load(name, f, e);
    if (r == -ENOENT && !t->kr)
        return 0;
    if (r == -ENOENT) {
        VS_AUTOFREE char *sig = cli_sig_path(name);
        return vs_err_set(e, EPERM, "archive %s is not signed (no %s): trusted keys are required (%s)", name, sig,
                          t->kr->from);
    }
    if (r == -EINVAL && !t->kr && t->note) {
        if (!quiet)
            t->note(t->opaque, e->msg);
        return 0;
    }
    return r < 0 ? vs_err_prefix(e, "archive %s", name) : 1;
}

int cli_trust_wrap(void *opaque, struct arc_source **src, vs_err *e)
{
    struct cli_trust *t = opaque;
    struct arc_source *s = *src;
    uint8_t h[CR_ARC_HEADER_BYTES];
    if (!t || (!t->kr && !t->any) || s->size < sizeof h)   /* too short: the reader says so */
        return 0;
    const char *name = source_name(s);
    struct cr_sigfile f = { 0 }, f2 = { 0 };
    int r = sig_of(t, name, true, &f, e);   /* cli_trust_check notes what is to be noted, once */
    if (r <= 0)
        return r;
    /* Version 2 only: a version-1 signature reads the whole file, which cli_trust_check does once it is open. */
    f2.v = vs_xcalloc(f.n + 1, sizeof *f2.v);
    for (size_t i = 0; i < f.n; i++)
        if (f.v[i].version == 2)
            f2.v[f2.n++] = f.v[i];
    size_t v1 = f.n - f2.n;
    cr_sigfile_clear(&f);
    struct cr_archive_ref ref = { .name = name, .uuid = h + 32, .size = s->size, .pread = cli_source_pread,
                                  .opaque = s };
    const struct cr_sig *by = NULL;
    struct cr_sums sums = { 0 };
    r = 0;
    if (f2.n && (r = s->pread(s, h, sizeof h, 0, e)) >= 0)
        r = cr_check_archive(&ref, &f2, t->kr, &by, e);
    if (r < 0 && v1)   /* a version-1 signature may hold: cli_trust_check decides */
        r = 0, by = NULL;
    if (r == 0 && by && (r = cli_sums_load(name, by, &sums, e)) == 0)
        *src = arc_source_verified(s, &sums, by->id);
    cr_sigfile_clear(&f2);
    return r;
}

static const char *key_file(const struct cli_trust *t, const char *id)
{
    for (size_t i = 0; t->kr && i < t->kr->n; i++)
        if (!strcmp(t->kr->v[i].id, id))
            return t->kr->v[i].path;
    return NULL;
}

/* A version-2 signature checked on an archive not read through its chunk table: the whole file against it. */
static int check_sums_eagerly(const char *name, struct arc_source *src, const struct cr_sig *by, vs_err *e)
{
    struct cr_sums want = { 0 }, have = { 0 };
    int r = cli_sums_load(name, by, &want, e);
    if (r == 0 && (r = cr_sums_compute(cli_source_pread, src, by->uuid, src->size, by->chunk_size, &have, e)) == 0)
        for (uint64_t k = 0; k < have.count && r == 0; k++)
            if (memcmp(have.h + k * CR_SUMS_HASH, want.h + k * CR_SUMS_HASH, CR_SUMS_HASH))
                r = vs_err_set(e, EBADMSG, "archive %s: chunk %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64 ") does not "
                               "match the chunk table key %s signed: it changed after signing", name, k,
                               k * by->chunk_size, VS_MIN((k + 1) * by->chunk_size, src->size), by->id);
    cr_sums_clear(&want);
    cr_sums_clear(&have);
    return r;
}

/* One archive of the chain: read through a signed chunk table since it was opened (cli_trust_wrap), or its .sig
 * file holds a signature by a trusted key over its bytes as they are now. */
static int check_one(struct cli_trust *t, struct arc *a, vs_err *e)
{
    struct arc_source *src = arc_get_source(a);
    const char *name = source_name(src);
    if (src->signer) {
        if (t->signed_by)
            t->signed_by(t->opaque, name, src->signer, key_file(t, src->signer));
        return 0;
    }
    struct cr_sigfile f;
    int r = sig_of(t, name, false, &f, e);
    if (r == 0 && t->signed_by && !t->kr)
        t->signed_by(t->opaque, name, NULL, NULL);
    if (r <= 0)
        return r;
    struct cr_archive_ref ref = { .name = name, .uuid = arc_uuid(a), .size = src->size, .pread = cli_source_pread,
                                  .opaque = src };
    const struct cr_sig *by = NULL;
    if ((r = cr_check_archive(&ref, &f, t->kr, &by, e)) == 0 && by->version == 2)
        r = check_sums_eagerly(name, src, by, e);
    if (r == 0 && t->signed_by)
        t->signed_by(t->opaque, name, by->id, key_file(t, by->id));
    cr_sigfile_clear(&f);
    return r;
}

int cli_trust_check(void *opaque, struct arc *a, vs_err *e)
{
    struct cli_trust *t = opaque;
    if (!t || (!t->kr && !t->any))
        return 0;
    int r;
    for (struct arc *p = a; p; p = arc_parent(p))
        if ((r = check_one(t, p, e)) < 0)
            return p == a ? r : vs_err_prefix(e, "parent of %s", arc_get_source(a)->name);
    /* What was checked is what the reader holds: nothing was rewritten in place since it was opened. */
    return arc_check_unchanged(a, e);
}

int cli_open_trusted(const char *path, struct arc_open_opts *o, struct cli_trust *t, struct arc **out, vs_err *e)
{
    o->wrap = cli_trust_wrap;
    o->wrap_opaque = t;
    int r = arc_open(path, o, out, e);
    if (r == 0 && (r = cli_trust_check(t, *out, e)) < 0) {
        arc_close(*out);
        *out = NULL;
    }
    return r;
}
