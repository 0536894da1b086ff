/* Test helper: write an archive from a command line, for archives vmsnap's own commands never write (a file stream
 * the size of a disk, a config naming it). Usage: arc-forge OUT KIND:NAME:SIZE|KIND:NAME=TEXT ...
 * KIND is disk, memory, config, file or other; SIZE bytes of zeros (no space), or TEXT as the stream. */
#include "archive/archive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = { "other", "disk", "memory", "config", "metadata", "file" };

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: arc-forge OUT KIND:NAME:SIZE|KIND:NAME=TEXT ...\n");
        return 2;
    }
    vs_err e = { 0 };
    struct arc_writer *w;
    if (arc_writer_create(argv[1], NULL, &w, &e) < 0)
        goto fail;
    for (int i = 2; i < argc; i++) {
        char *spec = argv[i], *name = strchr(spec, ':');
        if (!name)
            goto usage;
        *name++ = 0;
        int kind = -1;
        for (int k = 0; k < (int)(sizeof kinds / sizeof *kinds); k++)
            if (!strcmp(spec, kinds[k]))
                kind = k;
        char *text = strchr(name, '='), *size = strchr(name, ':');
        if (kind < 0 || (!text && !size))
            goto usage;
        int r;
        if (text && (!size || text < size)) {
            *text++ = 0;
            r = arc_writer_add(w, kind, name, text, strlen(text), &e);
        } else {
            *size++ = 0;
            r = arc_writer_begin(w, kind, name, strtoull(size, NULL, 0), &e);
            if (r == 0)
                r = arc_writer_end(w, &e);
        }
        if (r < 0)
            goto fail;
    }
    if (arc_writer_finish(w, &e) < 0)
        goto fail;
    return 0;
usage:
    fprintf(stderr, "arc-forge: bad stream spec\n");
    arc_writer_abort(w);
    return 2;
fail:
    fprintf(stderr, "arc-forge: %s\n", e.msg);
    return 1;
}
