/* archive: verify — read and check every index page and block of every stream (and the parent chain),
 * reporting each problem with its stream, block and offsets instead of stopping at the first. */
#include "archive/reader_priv.h"

#include <errno.h>
#include <string.h>

struct vctx {
    struct arc *a;
    const struct arc_verify_opts *o;
    const char *prefix;     /* "" or "parent 'X': " */
    unsigned problems;
    uint64_t done, total;
};

static void report(struct vctx *v, int stream, uint64_t block, uint64_t file_off, const char *msg)
{
    v->problems++;
    if (!v->o || !v->o->problem)
        return;
    struct arc_stream *s = stream >= 0 ? &v->a->streams[stream] : NULL;
    VS_AUTOFREE char *m = vs_xasprintf("%s%s", v->prefix, msg);
    struct arc_problem p = {
        .stream = stream, .stream_name = s ? s->name : "", .block = block,
        .offset = s && block != UINT64_MAX ? block * s->block_size : 0, .file_offset = file_off, .msg = m,
    };
    v->o->problem(v->o->opaque, &p);
}

static void verify_stream(struct vctx *v, unsigned si, uint8_t *page, uint8_t *data)
{
    struct arc *a = v->a;
    struct arc_stream *s = &a->streams[si];
    uint64_t n_data = 0, n_zero = 0, n_parent = 0;
    vs_err e = { 0 };
    for (uint32_t p = 0; p < s->top_count; p++) {
        const struct arc_top *t = &s->tops[p];
        uint64_t first = (uint64_t)p * s->page_entries;
        uint64_t n = VS_MIN((uint64_t)s->page_entries, s->blocks - first);
        if (t->type != ARC_PAGE_STORED) {
            if (t->type == ARC_PAGE_ZERO)
                n_zero += n;
            else
                n_parent += n;
        } else {
            uint32_t len;
            if (arc__read_page(a, si, p, page, &len, &e) < 0) {
                report(v, (int)si, first, t->offset, e.msg);
                v->done += n * s->block_size;
                continue;
            }
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t b = first + i;
            struct arc_entry en = { .type = t->type == ARC_PAGE_ZERO ? ARC_BLOCK_ZERO : ARC_BLOCK_PARENT };
            if (t->type == ARC_PAGE_STORED) {
                arc_entry_decode(page + i * ARC_PAGE_ENTRY, &en);
                if (arc__check_entry(a, si, b, &en, &e) < 0) {
                    report(v, (int)si, b, t->offset + i * ARC_PAGE_ENTRY, e.msg);
                    continue;
                }
                n_data += en.type == ARC_BLOCK_DATA;
                n_zero += en.type == ARC_BLOCK_ZERO;
                n_parent += en.type == ARC_BLOCK_PARENT;
            }
            if (en.type == ARC_BLOCK_DATA && arc__load_block(a, si, b, &en, data, &e) < 0)
                report(v, (int)si, b, en.offset, e.msg);
            if (en.type == ARC_BLOCK_PARENT && a->parent) {
                uint64_t off = b * s->block_size, len = arc__block_len(s, b);
                if (s->parent_stream < 0 || off + len > a->parent->streams[s->parent_stream].size) {
                    VS_AUTOFREE char *m = vs_xasprintf("block %" PRIu64 " refers to the parent, which has no such "
                                                       "block", b);
                    report(v, (int)si, b, 0, m);
                }
            }
            v->done += arc__block_len(s, b);
            if (v->o && v->o->progress && !(b & 63))
                v->o->progress(v->o->opaque, v->done, v->total);
        }
        if (t->type != ARC_PAGE_STORED)
            continue;
    }
    if (n_zero != s->zero_blocks || n_parent != s->parent_blocks || n_data != s->data_blocks + s->dedup_blocks) {
        VS_AUTOFREE char *m = vs_xasprintf("block counts in the directory (%" PRIu64 " data, %" PRIu64 " zero, %"
                                           PRIu64 " parent) do not match the index", s->data_blocks + s->dedup_blocks,
                                           s->zero_blocks, s->parent_blocks);
        report(v, (int)si, UINT64_MAX, 0, m);
    }
}

static int verify_one(struct arc *a, const struct arc_verify_opts *o, const char *prefix, unsigned *problems)
{
    struct vctx v = { .a = a, .o = o, .prefix = prefix };
    for (unsigned i = 0; i < a->nstreams; i++)
        v.total += a->streams[i].size;
    uint8_t *page = vs_xmalloc((size_t)ARC_MAX_PAGE_ENTRIES * ARC_PAGE_ENTRY + CR_SEAL_OVERHEAD);
    uint8_t *data = vs_xmalloc(ARC_MAX_BLOCK_SIZE);
    for (unsigned i = 0; i < a->nstreams; i++)
        verify_stream(&v, i, page, data);
    free(page);
    free(data);
    if (a->info.incompat & ARC_INCOMPAT_VMGENID) {   /* the bit must agree with the config */
        vs_err e = { 0 };
        VS_AUTOFREE char *cfg = NULL;
        if (arc_read_config(a, &cfg, NULL, &e) < 0)
            report(&v, -1, UINT64_MAX, 0, e.msg);
    }
    if (o && o->progress)
        o->progress(o->opaque, v.done, v.total);
    *problems += v.problems;
    return 0;
}

int arc_verify(struct arc *a, const struct arc_verify_opts *o, vs_err *e)
{
    unsigned problems = 0;
    if (a->info.has_parent && !a->parent)
        return vs_err_set(e, ENOENT, "%s: the parent archive is not open", a->src->name);
    verify_one(a, o, "", &problems);
    if (!(o && o->no_parent_chain)) {
        for (struct arc *p = a->parent; p; p = p->parent) {
            VS_AUTOFREE char *prefix = vs_xasprintf("parent '%s': ", p->src->name);
            verify_one(p, o, prefix, &problems);
        }
    }
    return (int)problems;
}
