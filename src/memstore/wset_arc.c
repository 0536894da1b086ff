/* memstore: an archive's working set, checked against the archive's RAM streams (the record itself: wset.c). */
#include <errno.h>
#include <string.h>

#include "memstore/memstore.h"

int mst_ws_check_archive(struct arc *a, const struct mst_ws *ws, vs_err *e)
{
    VS_AUTOFREE struct mst_ram *rs = NULL;
    unsigned nram = 0;
    int r = mst_ram_streams(a, &rs, &nram, e);
    for (unsigned i = 0; r >= 0 && i < ws->nstreams; i++) {
        const struct mst_ws_stream *s = &ws->streams[i];
        unsigned k = 0;
        while (k < nram && strcmp(s->name + strlen(MST_RAM_PREFIX), rs[k].block))
            k++;
        if (k == nram || rs[k].size != s->size)
            r = vs_err_set(e, EINVAL, "it names RAM stream %s of %" PRIu64 " bytes, which the archive does not hold",
                           s->name, s->size);
    }
    return r < 0 ? r : 0;
}

int mst_ws_read(struct arc *a, struct mst_ws *out, vs_err *e)
{
    memset(out, 0, sizeof *out);
    int s = arc_find_stream(a, ARC_KIND_OTHER, MST_WS_STREAM);
    if (s == ARC_STREAM_NONE)
        return 0;
    VS_AUTOFREE char *buf = NULL;
    size_t len = 0;
    int r = arc_read_stream(a, (unsigned)s, MST_WS_MAX_BYTES, &buf, &len, e);
    if (r >= 0 && (r = mst_ws_parse(buf, len, out, e)) >= 0 && (r = mst_ws_check_archive(a, out, e)) < 0)
        mst_ws_free(out);
    return r < 0 ? vs_err_prefix(e, "stream %s", MST_WS_STREAM) : 1;
}
