/* archive: copies between local files and object stores — the stored bytes as they are, or (encrypt) written anew
 * and sealed — verified on arrival. */
#include "archive/format.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <libgen.h>
#include <string.h>

#define CHUNK (8u << 20)

/* Where the hint of an archive at loc leads: in the same store, or next to a local file. */
static char *resolve_hint(const char *loc, const char *hint)
{
    if (os_is_remote(hint))   /* a local archive whose parent is in a store */
        return vs_xstrdup(hint);
    if (hint[0] == '/')
        return os_is_remote(loc) ? NULL : vs_xstrdup(hint);
    if (os_is_remote(loc))
        return os_resolve(loc, hint);
    VS_AUTOFREE char *copy = vs_xstrdup(loc);
    return vs_xasprintf("%s/%s", dirname(copy), hint);
}

static bool holds_memory(struct arc *a)
{
    for (unsigned i = 0; i < arc_stream_count(a); i++) {
        struct arc_stream_info si;
        if (arc_stream_get(a, i, &si) == 0 && (si.kind == ARC_KIND_MEMORY || !strncmp(si.name, "ram/", 4) ||
                                               !strcmp(si.name, "memory-device")))
            return true;
    }
    return false;
}

static int remove_copy(const char *dst)
{
    vs_err ignored;
    return os_is_remote(dst) ? os_delete(dst, &ignored) : unlink(dst);
}

/* An archive already at dst with that UUID (a parent copied before). */
static bool already_there(const char *dst, const uint8_t uuid[16])
{
    struct arc_open_opts oo = { .no_parent = true, .header_only = true };   /* the UUID is in the clear */
    struct arc *a = NULL;
    vs_err ignored;
    bool same = arc_open(dst, &oo, &a, &ignored) == 0 && !memcmp(arc_uuid(a), uuid, 16);
    arc_close(a);
    return same;
}

static int copy_bytes(const char *src, const char *dst, bool private_mode, const struct arc_copy_opts *o,
                      uint64_t *bytes, vs_err *e)
{
    struct arc_source *s = NULL, *raw = NULL;
    struct arc_sink *k = NULL;
    volatile int *cancel = o ? o->cancel : NULL;
    int r = arc_source_open(src, &raw, e);
    if (r >= 0 && o && o->wrap && (r = o->wrap(o->wrap_opaque, &raw, e)) < 0)
        arc_source_close(VS_STEAL(raw));
    s = raw;
    if (r >= 0)
        r = arc_sink_open(dst, &k, e);
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(CHUNK);
    for (uint64_t off = 0; r >= 0 && off < s->size; off += CHUNK) {
        size_t n = (size_t)VS_MIN((uint64_t)CHUNK, s->size - off);
        if (cancel && *cancel)
            r = vs_err_set(e, EINTR, "%s: copy interrupted", dst);
        else if ((r = s->pread(s, buf, n, off, e)) >= 0)
            r = k->pwrite(k, buf, n, off, e);
    }
    if (r >= 0) {
        *bytes = s->size;
        struct arc_sink *fk = VS_STEAL(k);   /* finish frees it whatever the outcome */
        r = fk->finish(fk, private_mode, e);
    }
    arc_sink_abort(k);
    arc_source_close(s);
    return r;
}

/* What an encrypting copy wrote, removed again if a later step fails. */
struct made { char **v; size_t n; };

static void copied(const struct arc_copy_opts *o, const struct arc_copied *c)
{
    if (o && o->copied)
        o->copied(o->opaque, c);
}

static int copy_one(const char *src, const char *dst, const struct arc_copy_opts *o, int depth, struct made *m,
                    vs_err *e);

static bool exists(const char *loc)
{
    struct arc_source *s = NULL;
    vs_err ignored;
    bool there = arc_source_open(loc, &s, &ignored) == 0;
    arc_source_close(s);
    return there;
}

/* A is open with its chain and the source key. Its parent (ps) is encrypted first to pd, then A is written anew
 * at dst as its thin child, or as a thick archive, and compared with its source. */
static int copy_sealed(const char *src, const char *dst, const struct arc_copy_opts *o, struct arc *a,
                       const char *ps, const char *pd, int depth, struct made *m, vs_err *e)
{
    struct arc_info ai;
    arc_get_info(a, &ai);
    if (pd && exists(pd))
        return vs_err_set(e, EEXIST, "%s: its parent's copy '%s' exists: cp --encrypt writes every parent anew and "
                          "never over an archive (another may depend on it); remove it or copy elsewhere", src, pd);
    int r = pd ? copy_one(ps, pd, o, depth + 1, m, e) : 0;
    if (r < 0)
        return r;
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    struct arc_stream_info si;
    if (arc_stream_count(a) && arc_stream_get(a, 0, &si) == 0)
        wo.codec = si.codec;   /* the codec its writer was asked for (per archive; the level is not recorded) */
    wo.block_size = ai.block_size;
    wo.parent_path = pd;
    wo.thin = pd != NULL;
    wo.key = wo.parent_key = o->encrypt;
    wo.cipher = o->cipher;
    if ((r = arc__rewrite(a, dst, &wo, holds_memory(a), o->cancel, e)) < 0)
        return r;
    m->v = vs_xrealloc(m->v, (m->n + 1) * sizeof *m->v);
    m->v[m->n++] = vs_xstrdup(dst);
    struct arc_open_opts vo = { .key = o->encrypt };
    ARC_AUTOCLOSE struct arc *b = NULL;
    if ((r = arc_open(dst, &vo, &b, e)) < 0 || (r = arc__same_content(a, b, e)) < 0)
        return vs_err_prefix(e, "%s: the copy of %s does not read back as its source", dst, src);
    struct arc_info bi;
    arc_get_info(b, &bi);
    copied(o, &(struct arc_copied){ .src = src, .dst = dst, .bytes = bi.file_size, .key_id = bi.key_id,
                                   .from_key_id = ai.encrypted ? ai.key_id : NULL });
    return 0;
}

static int copy_one(const char *src, const char *dst, const struct arc_copy_opts *o, int depth, struct made *m,
                    vs_err *e)
{
    if (depth > 16)
        return vs_err_set(e, ELOOP, "%s: parent chain longer than 16 archives", src);
    const struct cr_key *key = o ? o->key : NULL;
    /* written anew, a thin archive is read through its parent, which is written anew first */
    struct arc_open_opts oo = { .no_parent = !(o && o->encrypt && o->with_parents), .key = key,
                                .wrap = o ? o->wrap : NULL, .wrap_opaque = o ? o->wrap_opaque : NULL };
    ARC_AUTOCLOSE struct arc *a = NULL;
    int r = arc_open(src, &oo, &a, e);
    if (r < 0)
        return r;
    struct arc_info ai;
    arc_get_info(a, &ai);
    if (o && o->encrypt && ai.has_parent && !o->with_parents)
        return vs_err_set(e, EINVAL, "%s: a thin archive: cp --encrypt writes its chain anew, parents first (a thin "
                          "archive is sealed with its parent's key): add --with-parents", src);
    bool with_parent = o && o->with_parents && ai.has_parent;
    if (with_parent) {
        VS_AUTOFREE char *ps = ai.parent_hint[0] ? resolve_hint(src, ai.parent_hint) : NULL;
        VS_AUTOFREE char *pd = ai.parent_hint[0] ? resolve_hint(dst, ai.parent_hint) : NULL;
        if (!ps || !pd)
            return vs_err_set(e, ENOENT, "%s: its parent hint '%s' does not lead to a place beside '%s': copy the "
                              "parent by hand", src, ai.parent_hint, dst);
        if (o->encrypt)
            return copy_sealed(src, dst, o, a, ps, pd, depth, m, e);
        if (!already_there(pd, ai.parent_uuid)) {
            if ((r = copy_one(ps, pd, o, depth + 1, m, e)) < 0)
                return r;
        } else {
            copied(o, &(struct arc_copied){ .src = ps, .dst = pd, .skipped = true });
        }
    }
    if (o && o->encrypt)
        return copy_sealed(src, dst, o, a, NULL, NULL, depth, m, e);
    uint64_t bytes = 0;
    if ((r = copy_bytes(src, dst, holds_memory(a), o, &bytes, e)) < 0)
        return r;
    /* verified on arrival: read back from dst, through its own source; a thin copy without its chain is checked
     * against the source's parents (the blocks it references are theirs) */
    struct arc_open_opts vo = { .key = key }, so = { .key = key };
    ARC_AUTOCLOSE struct arc *full = NULL, *b = NULL;
    if (ai.has_parent && !with_parent) {
        if ((r = arc_open(src, &so, &full, e)) < 0)
            return vs_err_prefix(e, "%s: checking the copy against the source's parent", dst);
        vo.parent = arc_parent(full);
    }
    r = arc_open(dst, &vo, &b, e);
    if (r >= 0 && memcmp(arc_uuid(b), ai.uuid, 16))
        r = vs_err_set(e, EIO, "%s: the copy reads back as another archive", dst);
    if (r >= 0) {
        struct arc_verify_opts ver = { .no_parent_chain = true };
        int n = arc_verify(b, &ver, e);
        if (n > 0)
            r = vs_err_set(e, EIO, "%s: the copy has %d problem%s (run vmsnap verify on it): removed", dst, n,
                           n == 1 ? "" : "s");
        else
            r = n;
    }
    if (r < 0) {
        remove_copy(dst);
        return r;
    }
    copied(o, &(struct arc_copied){ .src = src, .dst = dst, .bytes = bytes });
    return 0;
}

int arc_copy(const char *src, const char *dst, const struct arc_copy_opts *o, vs_err *e)
{
    struct made m = { 0 };
    int r = copy_one(src, dst, o, 0, &m, e);
    for (size_t i = m.n; i-- > 0;) {   /* children before their parents */
        if (r < 0)
            remove_copy(m.v[i]);
        free(m.v[i]);
    }
    free(m.v);
    return r;
}
