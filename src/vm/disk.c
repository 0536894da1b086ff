/* vm: writing an overlay's frozen changes into a new archive. */
#include "vm/vm.h"

#include <errno.h>
#include <string.h>

/* ---- changed blocks ------------------------------------------------------------------------------------- */

struct changes {
    uint64_t *bits;
    uint64_t nblocks;
};

static int mark_run(void *opaque, uint64_t block, uint64_t count, enum nbd_block_state st)
{
    struct changes *c = opaque;
    if (st == NBD_BLK_ABSENT)
        return 0;
    for (uint64_t b = block; b < block + count && b < c->nblocks; b++)
        c->bits[b / 64] |= UINT64_C(1) << (b % 64);
    return 0;
}

static bool changed(const struct changes *c, uint64_t b)
{
    return c->bits[b / 64] >> (b % 64) & 1;
}

int vm_disk_write_changes(struct nbd_overlay *o, uint32_t after_seq, uint32_t upto_seq, struct arc_writer *w,
                          const char *name, uint64_t size, vs_err *e)
{
    struct nbd_layer_info *layers = NULL;
    size_t n = 0;
    int r = nbd_overlay_layers(o, &layers, &n, e);
    if (r < 0)
        return r;
    struct changes c = { .nblocks = VS_DIV_ROUND_UP(size, NBD_BLOCK_SIZE) };
    c.bits = vs_xcalloc(c.nblocks / 64 + 1, sizeof *c.bits);
    for (size_t i = 0; i < n && r == 0; i++)
        if ((layers[i].frozen || upto_seq == VM_SEQ_LIVE) && layers[i].seq > after_seq && layers[i].seq <= upto_seq)
            r = nbd_overlay_layer_runs(o, layers[i].seq, mark_run, &c, e);
    free(layers);
    if (r == 0)
        r = arc_writer_begin(w, ARC_KIND_DISK, name, size, e);
    size_t cap = 1u << 20;
    uint8_t *buf = vs_xmalloc(cap);
    for (uint64_t b = 0; r == 0 && b < c.nblocks;) {
        if (!changed(&c, b)) {
            b++;
            continue;
        }
        uint64_t end = b;
        while (end < c.nblocks && changed(&c, end) && (end - b + 1) * NBD_BLOCK_SIZE <= cap)
            end++;
        uint64_t off = b * NBD_BLOCK_SIZE;
        size_t len = (size_t)VS_MIN((end - b) * NBD_BLOCK_SIZE, size - off);
        r = upto_seq == VM_SEQ_LIVE ? nbd_overlay_read(o, buf, len, off, e)
                                    : nbd_overlay_read_at(o, upto_seq, buf, len, off, e);
        if (r == 0)
            r = arc_writer_pwrite(w, buf, len, off, e);
        b = end;
    }
    free(buf);
    free(c.bits);
    if (r == 0)
        r = arc_writer_end(w, e);
    if (r < 0)
        vs_err_prefix(e, "writing disk '%s'", name);
    return r;
}
