/* cli: trusted keys (--trusted-keys, VMSNAP_TRUSTED_KEYS) and the signature check of an archive chain, shared by
 * boot, serve and verify. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
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

char *cli_sig_path(const char *archive, vs_err *e)
{
    if (strstr(archive, "://")) {
        vs_err_set(e, EOPNOTSUPP, "archive %s: signatures are read only beside local files", archive);
        return NULL;
    }
    return vs_xasprintf("%s.sig", archive);
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
    VS_AUTOFREE char *sig = cli_sig_path(name, e);
    if (!sig)
        return -EOPNOTSUPP;
    struct cr_sigfile f;
    int r = cr_sigfile_load(sig, &f, e);
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
