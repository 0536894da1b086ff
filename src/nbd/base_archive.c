/* nbd: an archive's disk as the base of an overlay. The archive reader (src/archive) is not on main yet. */
#include "nbd/internal.h"

#include <errno.h>

int nbd_base_open_archive(const char *path, unsigned disk, struct nbd_base **out, vs_err *e)
{
    (void)disk;
    (void)out;
    return vs_err_set(e, ENOTSUP, "%s: this build cannot read .vmsnap archives yet (serve a raw image with --raw)",
                      path);
}
