/* memstore: the working set — the RAM ranges a resumed guest asked for first, in order (docs/FORMAT.md, "Working
 * set"). Encoded and parsed here; every field of a parsed record is checked, since archives are untrusted. */
#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "memstore/memstore.h"

#define WS_MAGIC "vmsnapws"
#define WS_VERSION 1u
#define WS_HEADER 32u
#define WS_ENTRY 16u
#define WS_MAX_SIZE (1ull << 62)

void mst_ws_free(struct mst_ws *ws)
{
    if (!ws)
        return;
    free(ws->streams);
    free(ws->entries);
    memset(ws, 0, sizeof *ws);
}

/* A stream name of a record: a RAM stream's, as text. */
static bool name_ok(const char *s, size_t len)
{
    size_t pre = strlen(MST_RAM_PREFIX);
    return len > pre && !memchr(s, 0, len) && !memcmp(s, MST_RAM_PREFIX, pre) && vs_text_ok(s, len);
}

/* Everything but the encoding: bounds, alignment, counts; totals into ws. */
static int check(struct mst_ws *ws, vs_err *e)
{
    if (!ws->nstreams || ws->nstreams > MST_WS_MAX_STREAMS)
        return vs_err_set(e, EINVAL, "working set names %u RAM streams (expected 1 to %u)", ws->nstreams,
                          MST_WS_MAX_STREAMS);
    if (ws->n > MST_WS_MAX_ENTRIES)
        return vs_err_set(e, EFBIG, "working set holds %zu ranges (at most %u)", ws->n, MST_WS_MAX_ENTRIES);
    for (unsigned i = 0; i < ws->nstreams; i++) {
        const struct mst_ws_stream *s = &ws->streams[i];
        if (!name_ok(s->name, strlen(s->name)) || s->size % MST_PAGE_SIZE || !s->size || s->size >= WS_MAX_SIZE)
            return vs_err_set(e, EINVAL, "working set: stream %u is not a RAM stream of whole pages", i);
        for (unsigned k = 0; k < i; k++)
            if (!strcmp(ws->streams[k].name, s->name))
                return vs_err_set(e, EINVAL, "working set names stream %s twice", s->name);
    }
    ws->pages = 0;
    for (size_t i = 0; i < ws->n; i++) {
        const struct mst_ws_entry *x = &ws->entries[i];
        if (x->stream >= ws->nstreams || !x->pages || x->off % MST_PAGE_SIZE)
            return vs_err_set(e, EINVAL, "working set range %zu: bad stream, length or alignment", i);
        uint64_t size = ws->streams[x->stream].size;
        if (x->off >= size || (uint64_t)x->pages > (size - x->off) / MST_PAGE_SIZE)
            return vs_err_set(e, ERANGE, "working set range %zu (offset %" PRIu64 ", %" PRIu32 " pages) lies "
                              "outside stream %s (%" PRIu64 " bytes)", i, x->off, x->pages,
                              ws->streams[x->stream].name, size);
        ws->pages += x->pages;
    }
    return 0;
}

int mst_ws_encode(struct mst_ws *ws, uint8_t **out, size_t *len, vs_err *e)
{
    int r = check(ws, e);
    if (r < 0)
        return r;
    size_t n = WS_HEADER + ws->n * WS_ENTRY + 8;
    for (unsigned i = 0; i < ws->nstreams; i++)
        n += 9 + strlen(ws->streams[i].name);
    uint8_t *b = vs_xcalloc(1, n), *p = b + WS_HEADER;
    memcpy(b, WS_MAGIC, 8);
    vs_put_le32(b + 8, WS_VERSION);
    vs_put_le32(b + 12, WS_HEADER);
    vs_put_le32(b + 16, ws->nstreams);
    vs_put_le32(b + 20, (uint32_t)ws->n);
    for (unsigned i = 0; i < ws->nstreams; i++) {
        size_t l = strlen(ws->streams[i].name);
        vs_put_le64(p, ws->streams[i].size);
        p[8] = (uint8_t)l;
        memcpy(p + 9, ws->streams[i].name, l);
        p += 9 + l;
    }
    for (size_t i = 0; i < ws->n; i++, p += WS_ENTRY) {
        vs_put_le32(p, ws->entries[i].stream);
        vs_put_le32(p + 4, ws->entries[i].pages);
        vs_put_le64(p + 8, ws->entries[i].off);
    }
    vs_put_le64(p, XXH64(b, n - 8, 0));
    *out = b;
    *len = n;
    return 0;
}

int mst_ws_parse(const void *buf, size_t len, struct mst_ws *out, vs_err *e)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof *out);
    if (len < WS_HEADER + 8 || memcmp(b, WS_MAGIC, 8))
        return vs_err_set(e, EINVAL, "not a working set (bad magic or shorter than its header)");
    if (XXH64(b, len - 8, 0) != vs_get_le64(b + len - 8))
        return vs_err_set(e, EBADMSG, "working set fails its checksum");
    if (vs_get_le32(b + 8) != WS_VERSION || vs_get_le32(b + 12) != WS_HEADER || vs_get_le64(b + 24))
        return vs_err_set(e, ENOTSUP, "working set of version %" PRIu32 " (header %" PRIu32 " bytes): this vmsnap "
                          "reads version %u", vs_get_le32(b + 8), vs_get_le32(b + 12), WS_VERSION);
    uint32_t ns = vs_get_le32(b + 16), n = vs_get_le32(b + 20);
    if (!ns || ns > MST_WS_MAX_STREAMS || n > MST_WS_MAX_ENTRIES)
        return vs_err_set(e, EINVAL, "working set claims %" PRIu32 " streams and %" PRIu32 " ranges (at most %u and "
                          "%u)", ns, n, MST_WS_MAX_STREAMS, MST_WS_MAX_ENTRIES);
    out->nstreams = ns;
    out->streams = vs_xcalloc(ns, sizeof *out->streams);
    size_t at = WS_HEADER, end = len - 8;
    for (uint32_t i = 0; i < ns; i++) {
        if (end - at < 9 || end - at - 9 < b[at + 8] || !b[at + 8] || memchr(b + at + 9, 0, b[at + 8])) {
            mst_ws_free(out);
            return vs_err_set(e, EINVAL, "working set: stream record %" PRIu32 " is truncated or unnamed", i);
        }
        out->streams[i].size = vs_get_le64(b + at);
        memcpy(out->streams[i].name, b + at + 9, b[at + 8]);
        at += 9 + (size_t)b[at + 8];
    }
    if ((end - at) != (size_t)n * WS_ENTRY) {
        mst_ws_free(out);
        return vs_err_set(e, EINVAL, "working set: %zu bytes of ranges, expected %" PRIu32 " of %u bytes", end - at,
                          n, WS_ENTRY);
    }
    out->n = n;
    out->entries = vs_xcalloc(n ? n : 1, sizeof *out->entries);
    for (uint32_t i = 0; i < n; i++, at += WS_ENTRY)
        out->entries[i] = (struct mst_ws_entry){ .stream = vs_get_le32(b + at), .pages = vs_get_le32(b + at + 4),
                                                 .off = vs_get_le64(b + at + 8) };
    int r = check(out, e);
    if (r < 0)
        mst_ws_free(out);
    return r;
}
