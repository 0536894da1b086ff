/* archive: writer life cycle — the upload sink (sink.c: a temp file renamed at finish, or an S3 upload), base
 * archive and parent hint, directory and header, finish. */
#include "archive/reader_priv.h"
#include "archive/writer_priv.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

void arc_writer_opts_init(struct arc_writer_opts *o)
{
    *o = (struct arc_writer_opts){ .codec = ARC_CODEC_LZ4, .block_size = ARC_DEFAULT_BLOCK_SIZE };
}

/* Path of `target` relative to directory `from` (both absolute, canonical). */
static char *relpath(const char *target, const char *from)
{
    size_t common = 0, i = 0;
    for (; target[i] && from[i] && target[i] == from[i]; i++)
        if (target[i] == '/')
            common = i;
    if (!from[i] && target[i] == '/')
        common = i;
    else if (!from[i] && !target[i])
        common = i;
    size_t ups = 0;
    for (const char *p = from + common; *p; p++)
        if (*p == '/' && p[1])
            ups++;
    if (strcmp(from, "/") == 0)
        ups = 0;
    char *out = vs_xmalloc(3 * ups + strlen(target) + 2);
    out[0] = 0;
    for (size_t k = 0; k < ups; k++)
        strcat(out, "../");
    strcat(out, target + common + (target[common] == '/'));
    return out;
}

static char *parent_hint(const char *archive_path, const char *parent_path)
{
    char rp[PATH_MAX], rd[PATH_MAX];
    if (os_is_remote(archive_path) || os_is_remote(parent_path)) {   /* in the same store: relative to the key */
        char *rel = os_relative(archive_path, parent_path);
        return rel ? rel : vs_xstrdup(os_is_remote(parent_path) ? parent_path : "");
    }
    VS_AUTOFREE char *copy = vs_xstrdup(archive_path);
    if (!realpath(parent_path, rp) || !realpath(dirname(copy), rd))
        return vs_xstrdup(parent_path);
    return relpath(rp, rd);
}

/* An archive written over an encrypted base is encrypted too, with the base's key unless told otherwise; a thin
 * archive is sealed with its parent's key (a chain uses one key), so a plain parent has none. */
static int choose_key(struct arc_writer *w, const char *path, const char *cipher, vs_err *e)
{
    struct arc *b = w->base;
    if (b && w->thin && w->enc && !b->enc)
        return vs_err_set(e, EINVAL, "%s: parent archive '%s' is not encrypted, so neither is a thin archive over it "
                          "(a thin archive uses its parent's key): no key %s here", path, b->src->name, w->key.id);
    if (b && w->thin && w->enc && strcmp(b->key.id, w->key.id))
        return vs_err_set(e, EINVAL, "%s: parent archive '%s' is encrypted with key %s, not with key %s: a thin "
                          "archive uses its parent's key", path, b->src->name, b->key.id, w->key.id);
    if (b && b->enc && !w->enc) {
        w->key = b->key;
        w->enc = true;
    }
    if (!w->enc)
        return 0;
    enum cr_cipher c = cr_cipher_default();
    int r = cipher ? cr_cipher_parse(cipher, &c, e) : 0;
    if (r < 0 || (r = cr_sealer_init(&w->sealer, &w->key, c, w->uuid, e)) < 0)
        return vs_err_prefix(e, "%s", path);
    w->block_ad_len = arc__seal_ad(w->block_ad, ARC_SEAL_BLOCK, w->uuid, 0, 0);
    return 0;
}

int arc_writer_create(const char *path, const struct arc_writer_opts *o, struct arc_writer **out, vs_err *e)
{
    struct arc_writer_opts def;
    if (!o) {
        arc_writer_opts_init(&def);
        o = &def;
    }
    if (o->codec > ARC_CODEC_ZSTD || (o->codec == ARC_CODEC_ZSTD && (o->level < 0 || o->level > 19)))
        return vs_err_set(e, EINVAL, "unsupported compression settings");
    if (!arc_block_size_ok(o->block_size))
        return vs_err_set(e, EINVAL, "block size %u is not a power of two between %u and %u", o->block_size,
                          ARC_MIN_BLOCK_SIZE, ARC_MAX_BLOCK_SIZE);
    struct arc_writer *w = vs_xcalloc(1, sizeof *w);
    w->path = vs_xstrdup(path);
    w->codec = o->codec;
    w->level = o->level;
    w->bs = o->block_size;
    w->thin = o->thin;
    w->debug = o->debug;
    w->worker_nice = o->worker_nice;
    w->dd_max = o->dedup_max_entries ? o->dedup_max_entries : (1u << 20);
    w->message = o->message ? vs_xstrdup(o->message) : NULL;
    w->created = vs_wall_s();
    int r = vs_uuid_generate(w->uuid);
    if (r < 0) {
        vs_err_sys(e, -r, "generating a UUID");
        goto fail;
    }
    if (o->key) {
        w->key = *o->key;
        w->enc = true;
    }
    if (o->parent) {
        w->base = o->parent;
        const struct arc_source *bs = w->base->src;   /* a file's path, or an object's location */
        const char *where = bs->path ? bs->path : os_is_remote(bs->name) ? bs->name : NULL;
        w->hint = where ? parent_hint(path, where) : vs_xstrdup("");
    } else if (o->parent_path) {
        struct arc_open_opts po = { .key = o->parent_key ? o->parent_key : o->key, .wrap = o->parent_wrap,
                                    .wrap_opaque = o->parent_wrap_opaque };
        if ((r = arc_open(o->parent_path, &po, &w->base, e)) < 0) {
            vs_err_prefix(e, "parent");
            goto fail;
        }
        w->own_base = true;
        w->hint = parent_hint(path, o->parent_path);
    }
    if (w->base && w->thin) {
        w->bs = w->base->info.block_size;   /* references need the parent's geometry */
    }
    if (!w->base)
        w->thin = false;
    if ((r = choose_key(w, path, o->cipher, e)) < 0)
        goto fail;

    if ((r = arc_sink_open(path, &w->sink, e)) < 0)
        goto fail;
    uint8_t zero[ARC_HEADER_SIZE] = { 0 };
    w->fpos = 0;
    if ((r = w->sink->pwrite(w->sink, zero, sizeof zero, 0, e)) < 0)
        goto fail;
    w->fpos = ARC_HEADER_SIZE;
    w->cmpbuf = vs_xmalloc(arc_stored_bound(w->bs) + CR_SEAL_OVERHEAD);
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    arc__pool_start(w, (unsigned)VS_MIN(VS_MAX(threads, 1), 64));
    *out = w;
    return 0;
fail:
    arc_writer_abort(w);
    return r < 0 ? r : -EIO;
}

static void writer_free(struct arc_writer *w)
{
    arc__pool_stop(w);
    arc__dedup_free(w);
    arc_sink_abort(w->sink);
    if (w->own_base)
        arc_close(w->base);
    free(w->st.page);
    free(w->st.tops);
    arc__unord_free(w->st.u);
    free(w->recs);
    free(w->cmpbuf);
    cr_key_wipe(&w->key);
    cr_sealer_wipe(&w->sealer);
    free(w->hint);
    free(w->message);
    free(w->path);
    free(w);
}

void arc_writer_abort(struct arc_writer *w)
{
    if (!w)
        return;
    writer_free(w);
}

void arc_writer_abortp(struct arc_writer **w)
{
    arc_writer_abort(*w);
}

void arc_writer_holds_memory(struct arc_writer *w) { w->holds_memory = true; }

static int add_metadata(struct arc_writer *w, vs_err *e)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    json_t *j = json_pack("{s:s, s:s, s:I}", "tool", "vmsnap " VMSNAP_VERSION, "host", host, "created",
                          (json_int_t)w->created);
    if (w->message)
        json_object_set_new(j, "message", json_string(w->message));
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    int r = arc_writer_add(w, ARC_KIND_METADATA, "metadata", s, strlen(s), e);
    free(s);
    return r;
}

static int write_dir_and_header(struct arc_writer *w, vs_err *e)
{
    size_t hl = strlen(w->hint ? w->hint : "");
    if (hl > UINT16_MAX || !vs_text_ok(w->hint ? w->hint : "", hl))
        hl = 0;   /* a path readers would refuse as a hint: none, the parent is then named when opening */
    size_t len = ARC_DIR_FIXED + hl + 8;
    for (size_t i = 0; i < w->nrecs; i++)
        len += ARC_STREAM_REC + strlen(w->recs[i].name);
    VS_AUTOFREE uint8_t *d = vs_xcalloc(1, len);
    vs_put_le32(d, (uint32_t)w->nrecs);
    vs_put_le16(d + 4, (uint16_t)hl);
    size_t p = ARC_DIR_FIXED;
    memcpy(d + p, w->hint ? w->hint : "", hl);
    p += hl;
    for (size_t i = 0; i < w->nrecs; i++) {
        const struct wrec *rc = &w->recs[i];
        uint8_t *r = d + p;
        size_t nl = strlen(rc->name);
        r[0] = rc->kind;
        r[1] = rc->codec;
        r[2] = (uint8_t)nl;
        vs_put_le32(r + 4, rc->block_size);
        vs_put_le32(r + 8, rc->page_entries);
        vs_put_le32(r + 12, rc->top_count);
        vs_put_le64(r + 16, rc->size);
        vs_put_le64(r + 24, rc->stored);
        vs_put_le64(r + 32, rc->data_blocks);
        vs_put_le64(r + 40, rc->zero_blocks);
        vs_put_le64(r + 48, rc->dedup_blocks);
        vs_put_le64(r + 56, rc->parent_blocks);
        vs_put_le64(r + 64, rc->top_offset);
        vs_put_le64(r + 72, rc->top_csum);
        memcpy(r + ARC_STREAM_REC, rc->name, nl);
        p += ARC_STREAM_REC + nl;
    }
    vs_put_le64(d + p, arc_meta_hash(d, p));
    uint64_t dir_off = w->fpos;
    size_t stored = len + (w->enc ? CR_SEAL_OVERHEAD : 0);

    /* revision 11's cipher goes without the bit: its archives read as before, in readers of revision 11 too */
    uint8_t cipher = w->enc && w->sealer.cipher != CR_CIPHER_XCHACHA20POLY1305 ? (uint8_t)w->sealer.cipher : 0;
    uint8_t h[ARC_HEADER_SIZE] = { 0 };
    memcpy(h + H_MAGIC, ARC_MAGIC, ARC_MAGIC_LEN);
    vs_put_le32(h + H_VERSION, ARC_VERSION);
    vs_put_le32(h + H_HDRSIZE, ARC_HEADER_SIZE);
    vs_put_le64(h + H_INCOMPAT, w->incompat | (w->thin ? ARC_INCOMPAT_PARENT : 0) |
                                    (w->enc ? ARC_INCOMPAT_ENCRYPTED : 0) | (cipher ? ARC_INCOMPAT_CIPHER : 0));
    vs_put_le64(h + H_COMPAT, 0);
    memcpy(h + H_UUID, w->uuid, 16);
    if (w->thin)
        memcpy(h + H_PUUID, w->base->info.uuid, 16);
    vs_put_le64(h + H_CREATED, w->created);
    vs_put_le64(h + H_FILESIZE, dir_off + stored);
    vs_put_le64(h + H_DIROFF, dir_off);
    vs_put_le32(h + H_DIRLEN, (uint32_t)stored);
    vs_put_le32(h + H_BLOCKSIZE, w->bs);
    if (w->enc)
        cr_id_to_bytes(w->key.id, h + H_KEYID);
    h[H_CIPHER] = cipher;
    vs_put_le64(h + ARC_HEADER_CSUM_OFF, arc_meta_hash(h, ARC_HEADER_CSUM_OFF));

    VS_AUTOFREE uint8_t *sealed = NULL;
    if (w->enc) {   /* the header is the directory's associated data: the key authenticates every field */
        uint8_t ad[ARC_SEAL_AD_MAX];
        size_t adl = arc__seal_ad(ad, ARC_SEAL_DIR, h, 0, 0);
        sealed = vs_xmalloc(stored);
        cr_seal(&w->sealer, ad, adl, d, len, sealed);
    }
    int r = w->sink->pwrite(w->sink, sealed ? sealed : d, stored, dir_off, e);
    if (r < 0)
        return r;
    w->fpos += stored;
    return w->sink->pwrite(w->sink, h, sizeof h, 0, e);
}

int arc_writer_finish(struct arc_writer *w, vs_err *e)
{
    int r = w->err;
    if (r < 0 && e)
        *e = w->err_msg;
    if (r >= 0 && w->in_stream)
        r = arc_writer_end(w, e);
    if (r >= 0 && !w->has_metadata)
        r = add_metadata(w, e);
    if (r >= 0 && !w->thin)
        free(w->hint), w->hint = NULL;
    if (r >= 0)
        r = write_dir_and_header(w, e);
    if (r >= 0) {
        struct arc_sink *sk = VS_STEAL(w->sink);   /* finish frees it whatever the outcome */
        r = sk->finish(sk, w->holds_memory, e);
    }
    arc_writer_abort(w);
    return r < 0 ? r : 0;
}
