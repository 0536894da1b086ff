/* cli: trusted keys (--trusted-keys, VMSNAP_TRUSTED_KEYS) and the signature check of an archive chain, shared by
 * boot, serve and verify. */
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

static void object_close(struct os_object **o) { os_object_close(*o); }

int cli_sig_load(const char *archive, struct cr_sigfile *out, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sig_path(archive);
    *out = (struct cr_sigfile){ 0 };
    if (!os_is_remote(loc))
        return cr_sigfile_load(loc, out, e);
    __attribute__((cleanup(object_close))) struct os_object *o = NULL;
    int r = os_object_open(loc, &o, e);
    /* An anonymous read of a missing key gets 403 from S3-like stores (no right to list): the archive beside it
     * was readable, so that is no .sig. */
    if (r == -ENOENT || (r == -EACCES && os_scheme_of(loc) == OS_HTTP))
        return vs_err_set(e, ENOENT, "signature file %s: no such object", loc);
    if (r < 0)
        return r;
    uint64_t size = os_object_size(o);
    if (size > CR_SIGFILE_MAX_BYTES)   /* the same cap as a local file's, checked before reading */
        return vs_err_set(e, EINVAL, "signature file %s: %" PRIu64 " bytes, more than %d signatures take", loc,
                          size, CR_SIGFILE_MAX);
    VS_AUTOFREE char *buf = vs_xmalloc(size + 1);
    if (size && (r = os_object_pread(o, buf, (size_t)size, 0, e)) < 0)
        return r;
    return cr_sigfile_parse(buf, (size_t)size, loc, out, e);
}

int cli_sig_store(const char *archive, const struct cr_sigfile *f, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sig_path(archive);
    if (os_scheme_of(loc) == OS_HTTP)
        return vs_err_set(e, EROFS, "signature file %s: http(s) locations are read-only", loc);
    char *text = cr_sigfile_format(f);
    if (!os_is_remote(loc)) {
        int r = cr_sigfile_write(loc, text, e);
        free(text);
        return r;
    }
    /* One part, a single PUT: the object appears only whole. */
    struct os_upload *u = NULL;
    int r = os_upload_begin(loc, &u, e);
    if (r < 0) {
        free(text);
        return r;
    }
    if ((r = os_upload_part(u, 1, text, strlen(text), e)) < 0) {
        os_upload_abort(u);
        return r;
    }
    return os_upload_finish(u, e);
}

int cli_source_pread(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct arc_source *s = opaque;
    return s->pread(s, buf, len, off, e);
}

/* One archive of the chain: its .sig file holds a signature by a trusted key over its bytes as opened. */
static int check_one(struct cli_trust *t, struct arc *a, vs_err *e)
{
    struct arc_source *src = arc_get_source(a);
    const char *name = src->path ? src->path : src->name;
    VS_AUTOFREE char *sig = cli_sig_path(name);
    struct cr_sigfile f;
    int r = cli_sig_load(name, &f, e);
    if (r == -ENOENT && !t->kr) {
        if (t->signed_by)
            t->signed_by(t->opaque, name, NULL, NULL);
        return 0;
    }
    if (r == -ENOENT)
        return vs_err_set(e, EPERM, "archive %s is not signed (no %s): trusted keys are required (%s)", name, sig,
                          t->kr->from);
    if (r == -EINVAL && !t->kr && t->note) {
        t->note(t->opaque, e->msg);
        return 0;
    }
    if (r < 0)
        return vs_err_prefix(e, "archive %s", name);
    struct cr_archive_ref ref = { .name = name, .uuid = arc_uuid(a), .size = src->size, .pread = cli_source_pread,
                                  .opaque = src };
    const struct cr_sig *by = NULL;
    if ((r = cr_check_archive(&ref, &f, t->kr, &by, e)) == 0 && t->signed_by)
        t->signed_by(t->opaque, name, by->id, t->kr ? cr_keyring_find(t->kr, by->pk)->path : NULL);
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
