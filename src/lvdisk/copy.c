/* lvdisk: the captured disks read from libvirt's NBD exports into the archive. */
#include "lvdisk/lvdisk-priv.h"

#include <string.h>
#include <time.h>

/* Tests: hold with the backup job running until cancelled (a signal mid-capture, on cue), at most a minute. */
static void test_hold(bool (*cancelled)(void *), void *opaque)
{
    for (int i = 0; i < 6000 && vs_test_fault("lvdisk-hold") && !(cancelled && cancelled(opaque)); i++)
        nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
}

int lvd_copy(struct lvd_backup *b, struct arc_writer *w, const struct bc_copy_opts *how, vs_err *e)
{
    struct bc_copy_opts o = how ? *how : (struct bc_copy_opts){ 0 };
    test_hold(o.cancelled, o.opaque);
    for (size_t i = 0; i < b->n; i++) {
        struct lvd_disk *k = &b->disks[i];
        if (!k->capture)
            continue;
        char bitmap[LVD_NAME_MAX + 8];
        snprintf(bitmap, sizeof bitmap, "backup-%s", k->name);   /* the exportbitmap lvd_backup_xml asks for */
        o.bitmap = k->incremental ? bitmap : NULL;
        int r = bc_nbd_copy(b->socket, k->name, w, k->stream, &o, &k->stats, e);
        if (r < 0)
            return vs_err_prefix(e, "disk %s", k->name);
    }
    return 0;
}
