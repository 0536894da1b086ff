/* pagefs: an archive's RAM streams (memstore) as page files, one per RAM block. */
#include <string.h>

#include "memstore/memstore.h"
#include "pagefs/pagefs.h"

static int ram_read(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    return mst_ram_read(opaque, buf, len, off, e);
}

static int ram_data_run(void *opaque, uint64_t off, uint64_t *len, bool *zero, vs_err *e)
{
    return mst_ram_data_run(opaque, off, len, zero, e);
}

int pf_archive_files(struct arc *a, struct pf_file **files, unsigned *n, vs_err *e)
{
    struct mst_ram *rs = NULL;
    unsigned k = 0;
    int r = mst_ram_streams(a, &rs, &k, e);
    if (r < 0)
        return r;
    struct pf_file *out = vs_xcalloc(k ? k : 1, sizeof *out);
    for (unsigned i = 0; i < k; i++) {
        struct mst_ram *one = vs_xmalloc(sizeof *one);
        *one = rs[i];
        char *name = vs_xstrdup(rs[i].block);
        for (char *c = name; *c; c++)   /* block names may hold '/': flatten for a file name */
            if (*c == '/')
                *c = '_';
        out[i] = (struct pf_file){ .name = name, .size = rs[i].size, .read = ram_read, .data_run = ram_data_run,
                                   .opaque = one };
    }
    free(rs);
    *files = out;
    *n = k;
    return 0;
}

void pf_archive_files_free(struct pf_file *files, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free((char *)files[i].name);
        free(files[i].opaque);
    }
    free(files);
}
