/* archive: opening an archive (header, directory, top-level tables, parent chain) and random-access reads.
 * Opening reads only the header, the directory and one small top-level table per stream; index pages are read
 * on demand, checked and cached; every block is checked against its checksum before a byte of it is returned. */
#include "archive/reader_priv.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#define ARC_MAX_CHAIN 64
#define ARC_DEFAULT_CACHE (8u << 20)

static int open_chain(struct arc_source *src, const struct arc_open_opts *o, int depth, struct arc **out, vs_err *e);

static int parse_header(struct arc *a, const uint8_t *h, vs_err *e)
{
    const char *n = a->src->name;
    if (memcmp(h + H_MAGIC, ARC_MAGIC, ARC_MAGIC_LEN))
        return vs_err_set(e, EINVAL, "%s: not a vmsnap archive (bad magic)", n);
    if (vs_get_le64(h + ARC_HEADER_CSUM_OFF) != arc_meta_hash(h, ARC_HEADER_CSUM_OFF))
        return vs_err_set(e, EIO, "%s: header checksum mismatch (header damaged)", n);
    struct arc_info *in = &a->info;
    in->version = vs_get_le32(h + H_VERSION);
    if (in->version != ARC_VERSION)
        return vs_err_set(e, ENOTSUP, "%s: unsupported format version %u (this vmsnap reads version %u)", n,
                          in->version, ARC_VERSION);
    if (vs_get_le32(h + H_HDRSIZE) != ARC_HEADER_SIZE)
        return vs_err_set(e, EIO, "%s: bad header size %u (expected %u)", n, vs_get_le32(h + H_HDRSIZE),
                          ARC_HEADER_SIZE);
    in->incompat = vs_get_le64(h + H_INCOMPAT);
    in->compat = vs_get_le64(h + H_COMPAT);
    if (in->incompat & ~ARC_INCOMPAT_KNOWN)
        return vs_err_set(e, ENOTSUP, "%s: archive requires unsupported features (incompatible bits 0x%" PRIx64 ")",
                          n, (uint64_t)(in->incompat & ~ARC_INCOMPAT_KNOWN));
    in->encrypted = in->incompat & ARC_INCOMPAT_ENCRYPTED;
    bool cipher = in->incompat & ARC_INCOMPAT_CIPHER;
    if (!arc_is_zero(h + H_RESERVED, ARC_HEADER_CSUM_OFF - H_RESERVED) ||
        (!in->encrypted && !arc_is_zero(h + H_KEYID, CR_ID_BYTES)) || (!cipher && h[H_CIPHER]))
        return vs_err_set(e, EIO, "%s: reserved header bytes are not zero", n);
    if (cipher && !in->encrypted)
        return vs_err_set(e, EIO, "%s: a cipher is named (incompatible bit 3) but the archive is not encrypted", n);
    /* without the bit: XChaCha20-Poly1305 (revision 11); with it, a cipher id other than that one */
    if (cipher && (h[H_CIPHER] == CR_CIPHER_XCHACHA20POLY1305 || h[H_CIPHER] > CR_CIPHER_MAX))
        return vs_err_set(e, ENOTSUP, "%s: unsupported cipher %u in header", n, h[H_CIPHER]);
    a->cipher = cipher ? (enum cr_cipher)h[H_CIPHER] : CR_CIPHER_XCHACHA20POLY1305;
    in->cipher = in->encrypted ? cr_cipher_name(a->cipher) : NULL;
    if (in->encrypted && arc_is_zero(h + H_KEYID, CR_ID_BYTES))
        return vs_err_set(e, EIO, "%s: encrypted, but the header names no key", n);
    if (in->encrypted)
        cr_id_from_bytes(h + H_KEYID, in->key_id);
    memcpy(in->uuid, h + H_UUID, 16);
    memcpy(in->parent_uuid, h + H_PUUID, 16);
    in->has_parent = in->incompat & ARC_INCOMPAT_PARENT;
    if (!in->has_parent != arc_is_zero(in->parent_uuid, 16))
        return vs_err_set(e, EIO, "%s: parent flag and parent UUID disagree", n);
    in->created = vs_get_le64(h + H_CREATED);
    in->file_size = vs_get_le64(h + H_FILESIZE);
    in->block_size = vs_get_le32(h + H_BLOCKSIZE);
    a->dir_off = vs_get_le64(h + H_DIROFF);
    uint32_t dir_len = vs_get_le32(h + H_DIRLEN);
    if (in->file_size != a->src->size)
        return vs_err_set(e, EIO, "%s: %s: header says %" PRIu64 " bytes, file has %" PRIu64, n,
                          a->src->size < in->file_size ? "truncated" : "trailing bytes after the archive",
                          in->file_size, a->src->size);
    if (!arc_block_size_ok(in->block_size))
        return vs_err_set(e, EIO, "%s: bad block size %u in header", n, in->block_size);
    if (a->dir_off < ARC_HEADER_SIZE || dir_len < ARC_DIR_FIXED + 8 || dir_len > ARC_MAX_DIR_LEN ||
        a->dir_off + dir_len != in->file_size || (in->encrypted && dir_len < ARC_DIR_FIXED + 8 + CR_SEAL_OVERHEAD))
        return vs_err_set(e, EIO, "%s: directory at %" PRIu64 " (+%u) does not end the file", n, a->dir_off, dir_len);
    return 0;
}

static int load_tops(struct arc *a, unsigned si, vs_err *e)
{
    struct arc_stream *s = &a->streams[si];
    if (!s->top_count)
        return 0;
    uint64_t len = arc__sealed_len(a, (uint64_t)s->top_count * ARC_TOP_ENTRY);
    if (s->top_offset < ARC_HEADER_SIZE || s->top_offset > a->dir_off || len > a->dir_off - s->top_offset)
        return vs_err_set(e, EIO, "%s: stream '%s': top-level index outside the file", a->src->name, s->name);
    VS_AUTOFREE uint8_t *raw = vs_xmalloc(len);
    int r = a->src->pread(a->src, raw, len, s->top_offset, e);
    if (r < 0)
        return r;
    if (arc_meta_hash(raw, len) != s->top_csum)
        return vs_err_set(e, EIO, "%s: stream '%s': top-level index checksum mismatch at file offset %" PRIu64,
                          a->src->name, s->name, s->top_offset);
    if (a->enc) {
        VS_AUTOFREE char *what = vs_xasprintf("stream '%s' top-level index", s->name);
        if ((r = arc__unseal(a, ARC_SEAL_TOP, si, 0, raw, len, s->top_offset, what, e)) < 0)
            return r;
    }
    s->tops = arc__alloc(a, s->top_count * sizeof *s->tops);
    for (uint32_t i = 0; i < s->top_count; i++) {
        struct arc_top *t = &s->tops[i];
        arc_top_decode(raw + (size_t)i * ARC_TOP_ENTRY, t);
        uint64_t n = VS_MIN((uint64_t)s->page_entries, s->blocks - (uint64_t)i * s->page_entries);
        bool ok = t->type == ARC_PAGE_STORED
                      ? t->length == arc__sealed_len(a, n * ARC_PAGE_ENTRY) && t->offset >= ARC_HEADER_SIZE && t->offset <= a->dir_off &&
                            t->length <= a->dir_off - t->offset
                      : (t->type == ARC_PAGE_ZERO || (t->type == ARC_PAGE_PARENT && a->info.has_parent)) &&
                            !t->offset && !t->length && !t->csum;
        if (!ok)
            return vs_err_set(e, EIO, "%s: stream '%s': bad index page %u record", a->src->name, s->name, i);
    }
    return 0;
}

static int cmp_top_offset(const void *x, const void *y)
{
    const struct arc_stream *a = *(const struct arc_stream *const *)x, *b = *(const struct arc_stream *const *)y;
    return a->top_offset < b->top_offset ? -1 : a->top_offset > b->top_offset;
}

/* Top-level tables are loaded whole at open: disjoint tables inside the file keep that memory below the file's
 * size (records sharing one table would multiply it by the stream count). */
static int check_tops_disjoint(struct arc *a, vs_err *e)
{
    VS_AUTOFREE const struct arc_stream **v = vs_xmalloc((a->nstreams + 1) * sizeof *v);
    unsigned k = 0;
    for (unsigned i = 0; i < a->nstreams; i++)
        if (a->streams[i].top_count)
            v[k++] = &a->streams[i];
    qsort(v, k, sizeof *v, cmp_top_offset);
    for (unsigned i = 1; i < k; i++)
        if (v[i]->top_offset - v[i - 1]->top_offset < arc__sealed_len(a, (uint64_t)v[i - 1]->top_count * ARC_TOP_ENTRY))
            return vs_err_set(e, EIO, "%s: streams '%s' and '%s' have overlapping top-level indexes", a->src->name,
                              v[i - 1]->name, v[i]->name);
    return 0;
}

static int parse_dir(struct arc *a, const uint8_t *d, size_t len, vs_err *e)
{
    const char *n = a->src->name;
    if (vs_get_le64(d + len - 8) != arc_meta_hash(d, len - 8))
        return vs_err_set(e, EIO, "%s: directory checksum mismatch at file offset %" PRIu64, n, a->dir_off);
    len -= 8;
    uint32_t ns = vs_get_le32(d);
    uint16_t hint_len = vs_get_le16(d + 4);
    if (ns > ARC_MAX_STREAMS || vs_get_le16(d + 6))
        return vs_err_set(e, EIO, "%s: bad directory", n);
    size_t p = ARC_DIR_FIXED;
    if (hint_len > len - p)
        return vs_err_set(e, EIO, "%s: directory truncated", n);
    a->hint = vs_xmalloc(hint_len + 1u);
    memcpy(a->hint, d + p, hint_len);
    a->hint[hint_len] = 0;
    if (!vs_text_ok(a->hint, hint_len))
        return vs_err_set(e, EIO, "%s: parent hint is not UTF-8 text without control characters", n);
    a->info.parent_hint = a->hint;
    p += hint_len;
    a->streams = arc__alloc(a, (ns + 1) * sizeof *a->streams);
    memset(a->streams, 0, (ns + 1) * sizeof *a->streams);
    a->streams_cap = ns + 1;
    int disks = 0;
    for (uint32_t i = 0; i < ns; i++) {
        struct arc_stream *s = &a->streams[i];
        if (len - p < ARC_STREAM_REC)
            return vs_err_set(e, EIO, "%s: directory truncated", n);
        const uint8_t *r = d + p;
        s->kind = r[0];
        s->codec = r[1];
        unsigned nl = r[2];
        s->block_size = vs_get_le32(r + 4);
        s->page_entries = vs_get_le32(r + 8);
        s->top_count = vs_get_le32(r + 12);
        s->size = vs_get_le64(r + 16);
        s->stored = vs_get_le64(r + 24);
        s->data_blocks = vs_get_le64(r + 32);
        s->zero_blocks = vs_get_le64(r + 40);
        s->dedup_blocks = vs_get_le64(r + 48);
        s->parent_blocks = vs_get_le64(r + 56);
        s->top_offset = vs_get_le64(r + 64);
        s->top_csum = vs_get_le64(r + 72);
        p += ARC_STREAM_REC;
        if (r[3] || !arc_is_zero(r + 80, ARC_STREAM_REC - 80) || !nl || nl > len - p)
            return vs_err_set(e, EIO, "%s: bad stream record %u in directory", n, i);
        memcpy(s->name, d + p, nl);
        s->name[nl] = 0;
        p += nl;
        if (!vs_text_ok(s->name, nl))
            return vs_err_set(e, EIO, "%s: stream name in record %u is not UTF-8 text without control characters",
                              n, i);
        if (!arc_block_size_ok(s->block_size) || s->page_entries < ARC_MIN_PAGE_ENTRIES ||
            s->page_entries > ARC_MAX_PAGE_ENTRIES || (s->page_entries & (s->page_entries - 1)) ||
            s->size > (UINT64_MAX >> 2))
            return vs_err_set(e, EIO, "%s: stream '%s': bad geometry in directory", n, s->name);
        s->blocks = VS_DIV_ROUND_UP(s->size, s->block_size);
        if (s->top_count != VS_DIV_ROUND_UP(s->blocks, s->page_entries))
            return vs_err_set(e, EIO, "%s: stream '%s': index size does not match its size", n, s->name);
        if (s->parent_blocks && !a->info.has_parent)
            return vs_err_set(e, EIO, "%s: stream '%s' references a parent the archive does not have", n, s->name);
        s->disk_index = s->kind == ARC_KIND_DISK ? disks++ : -1;
        s->parent_stream = -1;
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(a->streams[j].name, s->name))
                return vs_err_set(e, EIO, "%s: duplicate stream name '%s'", n, s->name);
        a->nstreams = i + 1;
    }
    if (p != len)
        return vs_err_set(e, EIO, "%s: trailing bytes in directory", n);
    int r = check_tops_disjoint(a, e);
    for (uint32_t i = 0; r >= 0 && i < ns; i++)
        r = load_tops(a, i, e);
    if (r < 0)
        return r;
    a->info.nstreams = ns;
    return 0;
}

/* Parent path: the caller's, or the stored hint relative to the child's directory. */
static char *parent_path(struct arc *a, const struct arc_open_opts *o, vs_err *e)
{
    if (o && o->parent_path)
        return vs_xstrdup(o->parent_path);
    if (!a->hint[0]) {
        vs_err_set(e, ENOENT, "%s: archive has a parent but no path hint: name it explicitly", a->src->name);
        return NULL;
    }
    if (a->hint[0] == '/' || os_is_remote(a->hint))   /* an absolute path, or a parent in a store */
        return vs_xstrdup(a->hint);
    if (os_is_remote(a->src->name)) {   /* in the same store: the hint is relative to the key */
        char *p = os_resolve(a->src->name, a->hint);
        if (!p)
            vs_err_set(e, ENOENT, "%s: the parent hint '%s' leads outside the bucket", a->src->name, a->hint);
        return p;
    }
    if (!a->src->path) {
        vs_err_set(e, ENOENT, "%s: archive has a parent ('%s') that cannot be found from a non-file source",
                   a->src->name, a->hint);
        return NULL;
    }
    VS_AUTOFREE char *copy = vs_xstrdup(a->src->path);
    return vs_xasprintf("%s/%s", dirname(copy), a->hint);
}

static int attach_parent(struct arc *a, const struct arc_open_opts *o, int depth, vs_err *e)
{
    char u1[37], u2[37];
    if (o && o->parent) {
        a->parent = o->parent;
    } else {
        if (depth >= ARC_MAX_CHAIN)
            return vs_err_set(e, ELOOP, "%s: parent chain longer than %d archives", a->src->name, ARC_MAX_CHAIN);
        VS_AUTOFREE char *pp = parent_path(a, o, e);
        if (!pp)
            return e ? e->code : -ENOENT;
        struct arc_source *ps;
        int r = arc_source_open(pp, &ps, e);
        if (r == -ENOENT) {
            vs_uuid_format(a->info.parent_uuid, u1);
            return vs_err_set(e, ENOENT, "%s: parent archive '%s' (UUID %s) not found", a->src->name, pp, u1);
        }
        /* header_only: a parent the child's key does not open is reported below as a chain of mixed keys */
        struct arc_open_opts po = { .cache_bytes = o ? o->cache_bytes : 0, .cache = o ? o->cache : NULL,
                                    .key = o ? o->key : NULL, .header_only = true, .wrap = o ? o->wrap : NULL,
                                    .wrap_opaque = o ? o->wrap_opaque : NULL };
        if (r >= 0)
            r = open_chain(ps, &po, depth + 1, &a->parent, e);
        if (r < 0)
            return vs_err_prefix(e, "%s: parent archive '%s'", a->src->name, pp);
        a->own_parent = true;
    }
    if (memcmp(a->parent->info.uuid, a->info.parent_uuid, 16)) {
        vs_uuid_format(a->parent->info.uuid, u1);
        vs_uuid_format(a->info.parent_uuid, u2);
        return vs_err_set(e, EINVAL, "%s: parent archive '%s' has UUID %s, expected %s", a->src->name,
                          a->parent->src->name, u1, u2);
    }
    const struct arc_info *pi = &a->parent->info;
    if (pi->encrypted != a->info.encrypted || strcmp(pi->key_id, a->info.key_id)) {
        VS_AUTOFREE char *mine = a->info.encrypted ? vs_xasprintf("with key %s", a->info.key_id) : vs_xstrdup("not");
        VS_AUTOFREE char *theirs = pi->encrypted ? vs_xasprintf("with key %s", pi->key_id) : vs_xstrdup("not");
        return vs_err_set(e, EINVAL, "%s: parent archive '%s' is encrypted %s, this archive %s: a chain uses one key",
                          a->src->name, a->parent->src->name, theirs, mine);
    }
    for (unsigned i = 0; i < a->nstreams; i++) {
        struct arc_stream *s = &a->streams[i];
        int ps = arc_find_stream(a->parent, ARC_KIND_OTHER, s->name);
        if (ps >= 0 && a->parent->streams[ps].block_size == s->block_size)
            s->parent_stream = ps;
        else if (s->parent_blocks)
            return vs_err_set(e, EIO, "%s: stream '%s' needs a stream of that name and block size %u in parent '%s'",
                              a->src->name, s->name, s->block_size, a->parent->src->name);
    }
    return 0;
}

/* An encrypted archive needs its key: the one given, if its id is the archive's, else the archive opens with its
 * header only (locked) when the caller asked for that, or not at all. */
static int take_key(struct arc *a, const struct arc_open_opts *o, bool *locked, vs_err *e)
{
    int r = cr_init(e);
    if (r < 0)
        return r;
    const struct cr_key *k = o ? o->key : NULL;
    if (k && !strcmp(k->id, a->info.key_id)) {
        if ((r = cr_sealer_init(&a->sealer, k, a->cipher, a->info.uuid, e)) < 0)
            return vs_err_prefix(e, "archive %s", a->src->name);
        a->key = *k;
        a->enc = true;
        return 0;
    }
    if (o && o->header_only) {
        *locked = true;
        return 0;
    }
    if (!k)
        return vs_err_set(e, ENOKEY, "archive %s is encrypted with key %s; pass --key", a->src->name, a->info.key_id);
    return vs_err_set(e, EKEYREJECTED, "archive %s is encrypted with key %s; pass --key (the key given is %s)",
                      a->src->name, a->info.key_id, k->id);
}

/* The directory is sealed with the header as associated data: every header field is authenticated with it. */
static int open_dir(struct arc *a, const uint8_t *h, uint8_t *d, size_t len, vs_err *e)
{
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, ARC_SEAL_DIR, h, 0, 0);
    if (cr_open_inplace(&a->sealer, ad, adl, d, len) < 0)
        return vs_err_set(e, EIO, "%s: directory at file offset %" PRIu64 " does not authenticate (tampered with, or "
                          "not written with this header)", a->src->name, a->dir_off);
    memmove(d, d + CR_SEAL_NONCE, len - CR_SEAL_OVERHEAD);
    return 0;
}

int arc__unseal(struct arc *a, enum arc_seal_kind kind, uint32_t stream, uint64_t n, uint8_t *buf, size_t len,
                uint64_t file_off, const char *what, vs_err *e)
{
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, kind, a->info.uuid, stream, n);
    if (cr_open_inplace(&a->sealer, ad, adl, buf, len) < 0)
        return vs_err_set(e, EIO, "%s: %s: authentication failed at file offset %" PRIu64 " (tampered with, or "
                          "sealed for another place or archive)", a->src->name, what, file_off);
    memmove(buf, buf + CR_SEAL_NONCE, len - CR_SEAL_OVERHEAD);
    return 0;
}

static int open_chain(struct arc_source *src, const struct arc_open_opts *o, int depth, struct arc **out, vs_err *e)
{
    struct arc *a = vs_xcalloc(1, sizeof *a);
    atomic_init(&a->mem, sizeof *a);
    a->src = src;
    pthread_mutex_init(&a->lock, NULL);
    a->hint = NULL;
    uint8_t h[ARC_HEADER_SIZE];
    /* below the block cache: the cache keeps bytes the wrapper passed */
    int r = o && o->wrap ? o->wrap(o->wrap_opaque, &a->src, e) : 0;
    if (r >= 0)
        r = arc__bc_wrap(a, o, e);
    src = a->src;
    if (r >= 0 && src->size < ARC_HEADER_SIZE)
        r = vs_err_set(e, EIO, "%s: truncated: %" PRIu64 " bytes, shorter than the %u-byte header", src->name,
                       src->size, ARC_HEADER_SIZE);
    else if (r >= 0)
        r = src->pread(src, h, sizeof h, 0, e);
    if (r >= 0)
        r = parse_header(a, h, e);
    if (r >= 0)
        r = arc__bc_attach(a, e);
    bool locked = false;
    if (r >= 0 && a->info.encrypted)
        r = take_key(a, o, &locked, e);
    a->info.locked = locked;
    if (r >= 0 && !locked) {
        size_t dl = a->info.file_size - a->dir_off;
        VS_AUTOFREE uint8_t *d = vs_xmalloc(dl);
        r = src->pread(src, d, dl, a->dir_off, e);
        if (r >= 0 && a->enc)
            r = open_dir(a, h, d, dl, e);
        if (r >= 0)
            r = parse_dir(a, d, dl - (a->enc ? CR_SEAL_OVERHEAD : 0), e);
    }
    if (r >= 0 && !locked && a->info.has_parent && !(o && o->no_parent))
        r = attach_parent(a, o, depth, e);
    if (r < 0) {
        arc_close(a);
        return r;
    }
    arc__cache_init(a, o && o->cache_bytes ? o->cache_bytes : ARC_DEFAULT_CACHE);
    *out = a;
    return 0;
}

int arc_open_source(struct arc_source *src, const struct arc_open_opts *o, struct arc **out, vs_err *e)
{
    return open_chain(src, o, 0, out, e);
}

int arc_open(const char *path, const struct arc_open_opts *o, struct arc **out, vs_err *e)
{
    struct arc_source *s;
    int r = arc_source_open(path, &s, e);
    return r < 0 ? r : arc_open_source(s, o, out, e);
}

void arc_close(struct arc *a)
{
    if (!a)
        return;
    arc__bc_free(a);   /* its workers read through the rest */
    for (unsigned i = 0; i < ARC_PAGE_SLOTS; i++)
        arc__free(a, a->pages[i].buf, a->pages[i].len);
    arc__cache_free(a);
    for (unsigned i = 0; i < a->nstreams; i++)
        arc__free(a, a->streams[i].tops, a->streams[i].top_count * sizeof(struct arc_top));
    arc__free(a, a->streams, a->streams_cap * sizeof *a->streams);
    free(a->hint);
    cr_key_wipe(&a->key);
    cr_sealer_wipe(&a->sealer);
    if (a->own_parent)
        arc_close(a->parent);
    arc_source_close(a->src);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void arc_closep(struct arc **a) { arc_close(*a); }
void arc_get_info(const struct arc *a, struct arc_info *out) { *out = a->info; }
const uint8_t *arc_uuid(const struct arc *a) { return a->info.uuid; }
struct arc *arc_parent(const struct arc *a) { return a->parent; }
struct arc_source *arc_get_source(const struct arc *a) { return a->src; }

int arc_check_unchanged(struct arc *a, vs_err *e)
{
    for (; a; a = a->parent) {
        int r = a->src->check ? a->src->check(a->src, e) : 0;
        if (r < 0)
            return r;
    }
    return 0;
}
size_t arc_mem_usage(const struct arc *a) { return atomic_load(&((struct arc *)a)->mem); }
unsigned arc_stream_count(const struct arc *a) { return a->nstreams; }
uint32_t arc__block_size(const struct arc *a, unsigned stream) { return a->streams[stream].block_size; }

int arc_stream_get(const struct arc *a, unsigned i, struct arc_stream_info *out)
{
    if (i >= a->nstreams)
        return -EINVAL;
    const struct arc_stream *s = &a->streams[i];
    *out = (struct arc_stream_info){
        .kind = s->kind, .disk_index = s->disk_index, .name = s->name, .size = s->size, .stored = s->stored,
        .block_size = s->block_size, .blocks = s->blocks, .data_blocks = s->data_blocks,
        .zero_blocks = s->zero_blocks, .dedup_blocks = s->dedup_blocks, .parent_blocks = s->parent_blocks,
        .codec = s->codec,
    };
    return 0;
}

int arc_find_stream(const struct arc *a, enum arc_kind kind, const char *name)
{
    for (unsigned i = 0; i < a->nstreams; i++)
        if ((name ? !strcmp(a->streams[i].name, name) : a->streams[i].kind == kind))
            return (int)i;
    return ARC_STREAM_NONE;
}

int arc_find_disk(const struct arc *a, int n)
{
    for (unsigned i = 0; i < a->nstreams; i++)
        if (a->streams[i].disk_index == n && n >= 0)
            return (int)i;
    return ARC_STREAM_NONE;
}

/* ---- index ---------------------------------------------------------------------------------------------- */

int arc__read_page(struct arc *a, unsigned stream, uint64_t page, uint8_t *buf, uint32_t *len, vs_err *e)
{
    struct arc_stream *s = &a->streams[stream];
    const struct arc_top *t = &s->tops[page];
    int r = arc__fetch(a, ARC_BC_PAGE, t->offset, t->length, t->csum, buf, e);
    if (r < 0)
        return vs_err_prefix(e, "stream '%s' index page %" PRIu64, s->name, page);
    if (arc_meta_hash(buf, t->length) != t->csum)
        return vs_err_set(e, EIO, "%s: stream '%s': index page %" PRIu64 " (blocks %" PRIu64 "..) checksum mismatch "
                          "at file offset %" PRIu64, a->src->name, s->name, page, page * s->page_entries, t->offset);
    if (a->enc) {
        VS_AUTOFREE char *what = vs_xasprintf("stream '%s' index page %" PRIu64, s->name, page);
        if ((r = arc__unseal(a, ARC_SEAL_PAGE, stream, page, buf, t->length, t->offset, what, e)) < 0)
            return r;
    }
    *len = (uint32_t)(t->length - (a->enc ? CR_SEAL_OVERHEAD : 0));
    return 0;
}

int arc__check_entry(struct arc *a, unsigned stream, uint64_t block, const struct arc_entry *en, vs_err *e)
{
    struct arc_stream *s = &a->streams[stream];
    const char *why = NULL;
    switch (en->type) {
    case ARC_BLOCK_ZERO:
    case ARC_BLOCK_PARENT:
        if (en->offset || en->stored_len || en->codec || en->reserved || en->csum || en->scsum)
            why = "non-zero fields in a zero/parent entry";
        else if (en->type == ARC_BLOCK_PARENT && !a->info.has_parent)
            why = "parent reference in an archive without parent";
        break;
    case ARC_BLOCK_DATA:
        if (en->reserved || en->codec > ARC_CODEC_ZSTD)
            why = "unknown codec or reserved bits set";
        else if (en->stored_len <= (a->enc ? CR_SEAL_OVERHEAD : 0) ||
                 en->stored_len > arc__sealed_len(a, arc_stored_bound(s->block_size)) ||
                 en->offset < ARC_HEADER_SIZE || en->offset > a->dir_off || en->stored_len > a->dir_off - en->offset)
            why = "stored extent outside the data area";
        break;
    default:
        why = "unknown entry type";
    }
    if (why)
        return vs_err_set(e, EIO, "%s: stream '%s' block %" PRIu64 " (offset %" PRIu64 "): bad index entry: %s",
                          a->src->name, s->name, block, block * s->block_size, why);
    return 0;
}

int arc__entry_checked(struct arc *a, unsigned stream, uint64_t block, struct arc_entry *en, vs_err *e)
{
    struct arc_stream *s = &a->streams[stream];
    uint64_t page = block / s->page_entries;
    size_t idx = block % s->page_entries;
    const struct arc_top *t = &s->tops[page];
    if (t->type != ARC_PAGE_STORED) {
        *en = (struct arc_entry){ .type = t->type == ARC_PAGE_ZERO ? ARC_BLOCK_ZERO : ARC_BLOCK_PARENT };
        return 0;
    }
    bool hit = false;
    pthread_mutex_lock(&a->lock);
    for (unsigned i = 0; i < ARC_PAGE_SLOTS; i++) {
        struct arc_page_slot *p = &a->pages[i];
        if (p->buf && p->stream == (int)stream && p->page == page) {
            arc_entry_decode(p->buf + idx * ARC_PAGE_ENTRY, en);
            p->tick = ++a->tick;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&a->lock);
    if (!hit) {
        uint8_t *buf = arc__alloc(a, t->length);
        uint32_t len;
        int r = arc__read_page(a, stream, page, buf, &len, e);
        if (r < 0) {
            arc__free(a, buf, t->length);
            return r;
        }
        arc_entry_decode(buf + idx * ARC_PAGE_ENTRY, en);
        pthread_mutex_lock(&a->lock);
        struct arc_page_slot *v = &a->pages[0];
        for (unsigned i = 0; i < ARC_PAGE_SLOTS; i++)
            if (a->pages[i].tick < v->tick)
                v = &a->pages[i];
        uint8_t *old = v->buf;
        uint32_t old_len = v->len;
        (void)len;   /* the slot records what was allocated (sealed pages open in place, shorter) */
        *v = (struct arc_page_slot){ .stream = (int)stream, .page = page, .buf = buf, .len = t->length,
                                     .tick = ++a->tick };
        pthread_mutex_unlock(&a->lock);
        arc__free(a, old, old_len);
    }
    return arc__check_entry(a, stream, block, en, e);
}

int arc__entry(struct arc *a, unsigned stream, uint64_t block, struct arc_entry *en, vs_err *e)
{
    if (stream >= a->nstreams || block >= a->streams[stream].blocks)
        return vs_err_set(e, EINVAL, "block %" PRIu64 " out of range", block);
    return arc__entry_checked(a, stream, block, en, e);
}

/* ---- data ----------------------------------------------------------------------------------------------- */

int arc__load_block(struct arc *a, unsigned stream, uint64_t block, const struct arc_entry *en, void *dst, vs_err *e)
{
    struct arc_stream *s = &a->streams[stream];
    size_t blen = arc__block_len(s, block);
    /* Stored as is (incompressible RAM, random data): read it in place, one hash serves both checksums. */
    bool in_place = !a->enc && en->codec == ARC_CODEC_NONE && en->stored_len == blen;
    VS_AUTOFREE uint8_t *raw = in_place ? NULL : vs_xmalloc(en->stored_len);
    arc__bc_readahead(a, stream, block);
    int r = arc__fetch(a, ARC_BC_BLOCK, en->offset, en->stored_len, en->scsum, in_place ? dst : raw, e);
    if (r < 0)
        return vs_err_prefix(e, "stream '%s' block %" PRIu64 " (offset %" PRIu64 ")", s->name, block,
                             block * s->block_size);
    const char *why = NULL;
    uint8_t ad[ARC_SEAL_AD_MAX];
    uint64_t h = arc_hash64(in_place ? dst : raw, en->stored_len);
    if (h != en->scsum) {
        why = "stored data checksum mismatch";
    } else if (in_place) {
        if (h != en->csum)
            why = "data checksum mismatch";
    } else if (a->enc && cr_open_inplace(&a->sealer, ad, arc__seal_ad(ad, ARC_SEAL_BLOCK, a->info.uuid, 0, 0), raw,
                                         en->stored_len) < 0) {
        why = "authentication failed (tampered with, or sealed for another archive)";
    } else {
        const uint8_t *z = a->enc ? raw + CR_SEAL_NONCE : raw;
        void *d = en->codec == ARC_CODEC_ZSTD ? arc__dctx_get(a) : NULL;
        r = arc_decompress(en->codec, d, z, en->stored_len - (a->enc ? CR_SEAL_OVERHEAD : 0), dst, blen);
        arc__dctx_put(a, d);
        if (r < 0)
            why = "cannot decompress";
        else if (arc_hash64(dst, blen) != en->csum)
            why = "data checksum mismatch";
    }
    if (why)
        return vs_err_set(e, EIO, "%s: stream '%s' block %" PRIu64 " (offset %" PRIu64 "): %s at file offset %" PRIu64,
                          a->src->name, s->name, block, block * s->block_size, why, en->offset);
    return 0;
}

static int parent_range_ok(struct arc *a, struct arc_stream *s, uint64_t block, uint64_t off, size_t n, vs_err *e)
{
    if (!a->parent)
        return vs_err_set(e, ENOENT, "%s: stream '%s' block %" PRIu64 " is in the parent archive, which is not open",
                          a->src->name, s->name, block);
    if (s->parent_stream < 0 || off + n > a->parent->streams[s->parent_stream].size)
        return vs_err_set(e, EIO, "%s: stream '%s' block %" PRIu64 " (offset %" PRIu64 "): parent '%s' has no such "
                          "block", a->src->name, s->name, block, block * s->block_size, a->parent->src->name);
    return 0;
}

int arc_pread(struct arc *a, unsigned stream, void *buf, size_t len, uint64_t off, vs_err *e)
{
    if (stream >= a->nstreams)
        return vs_err_set(e, EINVAL, "%s: no stream %u", a->src->name, stream);
    struct arc_stream *s = &a->streams[stream];
    if (off > s->size || len > s->size - off)
        return vs_err_set(e, EINVAL, "%s: stream '%s': read of %zu bytes at %" PRIu64 " past its end (%" PRIu64 ")",
                          a->src->name, s->name, len, off, s->size);
    uint8_t *out = buf;
    uint8_t *tmp = NULL;
    int r = 0;
    while (len) {
        uint64_t block = off / s->block_size;
        size_t skip = off % s->block_size, blen = arc__block_len(s, block);
        size_t n = VS_MIN(len, blen - skip);
        struct arc_entry en;
        r = arc__entry_checked(a, stream, block, &en, e);
        if (r < 0)
            break;
        if (en.type == ARC_BLOCK_ZERO) {
            memset(out, 0, n);
        } else if (en.type == ARC_BLOCK_PARENT) {
            r = parent_range_ok(a, s, block, off, n, e);
            if (r >= 0)
                r = arc_pread(a->parent, (unsigned)s->parent_stream, out, n, off, e);
        } else if (n == blen) {
            r = arc__load_block(a, stream, block, &en, out, e);
        } else if (!arc__cache_get(a, &en, out, skip, n)) {
            if (!tmp)
                tmp = vs_xmalloc(s->block_size);
            r = arc__load_block(a, stream, block, &en, tmp, e);
            if (r >= 0) {
                arc__cache_put(a, &en, tmp, (uint32_t)blen);
                memcpy(out, tmp + skip, n);
            }
        }
        if (r < 0)
            break;
        out += n;
        off += n;
        len -= n;
    }
    free(tmp);
    return r < 0 ? r : 0;
}

int arc_block_status(struct arc *a, unsigned stream, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags,
                     vs_err *e)
{
    if (stream >= a->nstreams)
        return vs_err_set(e, EINVAL, "%s: no stream %u", a->src->name, stream);
    struct arc_stream *s = &a->streams[stream];
    if (!len || off >= s->size || len > s->size - off)
        return vs_err_set(e, EINVAL, "%s: stream '%s': status range %" PRIu64 "+%" PRIu64 " outside the stream",
                          a->src->name, s->name, off, len);
    uint64_t done = 0;
    unsigned first = 0;
    while (done < len) {
        uint64_t pos = off + done, block = pos / s->block_size;
        uint64_t page = block / s->page_entries;
        const struct arc_top *t = &s->tops[page];
        uint64_t end, st;   /* status st holds from pos up to end */
        if (t->type == ARC_PAGE_ZERO) {
            st = ARC_STATUS_ZERO;
            end = (page + 1) * s->page_entries * s->block_size;
        } else {
            struct arc_entry en;
            int r = arc__entry_checked(a, stream, block, &en, e);
            if (r < 0)
                return r;
            end = (block + 1) * s->block_size;
            if (en.type == ARC_BLOCK_PARENT) {
                r = parent_range_ok(a, s, block, pos, VS_MIN(end, s->size) - pos, e);
                uint64_t prun;
                unsigned pf;
                if (r >= 0)
                    r = arc_block_status(a->parent, (unsigned)s->parent_stream, pos, VS_MIN(end, s->size) - pos,
                                         &prun, &pf, e);
                if (r < 0)
                    return r;
                st = pf;
                end = pos + prun;
            } else {
                st = en.type == ARC_BLOCK_ZERO ? ARC_STATUS_ZERO : ARC_STATUS_DATA;
            }
        }
        if (!first)
            first = (unsigned)st;
        else if (st != first)
            break;
        done = VS_MIN(end, off + len) - off;
    }
    *run = done;
    *flags = first;
    return 0;
}

int arc_read_stream(struct arc *a, unsigned stream, size_t max, char **out, size_t *len, vs_err *e)
{
    if (stream >= a->nstreams)
        return vs_err_set(e, EINVAL, "%s: no stream %u", a->src->name, stream);
    uint64_t size = a->streams[stream].size;
    if (size > max)
        return vs_err_set(e, EFBIG, "%s: stream '%s' is %" PRIu64 " bytes, more than the %zu expected", a->src->name,
                          a->streams[stream].name, size, max);
    char *buf = vs_xmalloc(size + 1);
    int r = arc_pread(a, stream, buf, size, 0, e);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[size] = 0;
    *out = buf;
    if (len)
        *len = size;
    return 0;
}
