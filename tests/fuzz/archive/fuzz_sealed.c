/* libFuzzer target: the decrypting reader (encrypted archives, docs/FORMAT.md "Encryption"), with the golden test
 * key (tests/golden/r11-test.key). Each input is opened, read and verified as it is, then again after a "reseal":
 * every sealed structure's slot (between its nonce and its tag) is taken as plaintext, the checksums inside are
 * repaired and the structure is sealed with the key, innermost first. So the seeds hold their structures opened
 * (`corpus-sealed/NAME.open.vmsnap`, made by running this file's seed mode over the golden archives) and mutations
 * reach the parsers behind the seal, while the as-is pass fuzzes everything around it (lengths, offsets,
 * overheads, key ids). Seeds: build with -DFUZZ_SEALED_SEEDS and run `fuzz-sealed-seeds IN.vmsnap OUT`. */
#include "archive/format.h"

#include <string.h>

static const char key_text[] = "vmsnap-key-1 U0ubc8RjbLqPKjPcpnIgaDvO1LzxqvqI+CcvvLG3yos=\n";

enum mode { RESEAL, OPEN };

/* Stored blocks already resealed (dedup: several entries share one): sealed once, their checksums reused. */
struct done { uint64_t off, scsum, csum; uint32_t len; };
struct ctx {
    const struct cr_sealer *k;
    enum mode m;
    uint8_t *d, *tmp;
    size_t size;
    struct done *done;
    size_t ndone, cap, budget;   /* budget: block entries left to look at (bounds the time per input) */
};

static bool in_file(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

/* Seal (RESEAL) the slot of the sealed object of len bytes at p, or open it in place (OPEN: false if it is not
 * authentic). Either way its plaintext is then at p + CR_SEAL_NONCE while in OPEN mode. */
static bool seal_obj(const struct cr_sealer *k, enum mode m, const uint8_t *ad, size_t adl, uint8_t *p, size_t len)
{
    if (m == OPEN)
        return cr_open_inplace(k, ad, adl, p, len) == 0;
    cr_seal(k, ad, adl, p + CR_SEAL_NONCE, len - CR_SEAL_OVERHEAD, p);
    return true;
}

static void do_page(struct ctx *c, uint8_t *page, size_t plen, uint64_t first, uint32_t bs, uint64_t ssize)
{
    const struct cr_sealer *k = c->k;
    enum mode m = c->m;
    uint8_t *d = c->d, *tmp = c->tmp, *uuid = d + H_UUID;
    size_t size = c->size;
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, ARC_SEAL_BLOCK, uuid, 0, 0);
    for (size_t i = 0; (i + 1) * ARC_PAGE_ENTRY <= plen; i++) {
        struct arc_entry en;
        arc_entry_decode(page + i * ARC_PAGE_ENTRY, &en);
        uint64_t boff = (first + i) * (uint64_t)bs;
        if (en.type != ARC_BLOCK_DATA || en.stored_len < CR_SEAL_OVERHEAD || !in_file(en.offset, en.stored_len, size) ||
            boff >= ssize || !c->budget--)
            continue;
        uint8_t *obj = d + en.offset;
        size_t blen = (size_t)VS_MIN((uint64_t)bs, ssize - boff), j = 0;
        while (j < c->ndone && (c->done[j].off != en.offset || c->done[j].len != en.stored_len))
            j++;
        if (j < c->ndone) {   /* shared: never opened twice (a failed open wipes the slot) nor sealed twice */
            en.scsum = c->done[j].scsum;
            en.csum = c->done[j].csum;
            if (m == RESEAL)
                arc_entry_encode(page + i * ARC_PAGE_ENTRY, &en);
            continue;
        }
        if (m == OPEN) {
            if (seal_obj(k, m, ad, adl, obj, en.stored_len) && c->ndone < c->cap)
                c->done[c->ndone++] = (struct done){ en.offset, en.scsum, en.csum, en.stored_len };
            continue;
        }
        if (arc_decompress(en.codec, NULL, obj + CR_SEAL_NONCE, en.stored_len - CR_SEAL_OVERHEAD, tmp, blen) == 0)
            en.csum = arc_hash64(tmp, blen);
        seal_obj(k, m, ad, adl, obj, en.stored_len);
        en.scsum = arc_hash64(obj, en.stored_len);
        arc_entry_encode(page + i * ARC_PAGE_ENTRY, &en);
        if (c->ndone < c->cap)
            c->done[c->ndone++] = (struct done){ en.offset, en.scsum, en.csum, en.stored_len };
    }
}

/* One stream's top-level table at toff (tc entries), its pages and blocks. */
static void do_stream(struct ctx *c, uint32_t si, uint8_t *rec)
{
    const struct cr_sealer *k = c->k;
    enum mode m = c->m;
    uint8_t *d = c->d, *uuid = d + H_UUID;
    size_t size = c->size;
    uint32_t bs = vs_get_le32(rec + 4), pe = vs_get_le32(rec + 8), tc = vs_get_le32(rec + 12);
    uint64_t ssize = vs_get_le64(rec + 16), toff = vs_get_le64(rec + 64), tlen = (uint64_t)tc * ARC_TOP_ENTRY;
    if (!tc || !in_file(toff, tlen + CR_SEAL_OVERHEAD, size) || !bs || bs > (1u << 20) || !pe)
        return;
    uint8_t ad[ARC_SEAL_AD_MAX];
    size_t adl = arc__seal_ad(ad, ARC_SEAL_TOP, uuid, si, 0);
    if (m == OPEN && !seal_obj(k, m, ad, adl, d + toff, tlen + CR_SEAL_OVERHEAD))
        return;
    uint8_t *top = d + toff + CR_SEAL_NONCE;
    for (uint32_t j = 0; j < tc; j++) {
        struct arc_top t;
        arc_top_decode(top + (size_t)j * ARC_TOP_ENTRY, &t);
        if (t.type != ARC_PAGE_STORED || t.length < CR_SEAL_OVERHEAD || !in_file(t.offset, t.length, size))
            continue;
        uint8_t pad[ARC_SEAL_AD_MAX];
        size_t padl = arc__seal_ad(pad, ARC_SEAL_PAGE, uuid, si, j);
        uint8_t *page = d + t.offset;
        if (m == OPEN && !seal_obj(k, m, pad, padl, page, t.length))
            continue;
        do_page(c, page + CR_SEAL_NONCE, t.length - CR_SEAL_OVERHEAD, (uint64_t)j * pe, bs, ssize);
        if (m == RESEAL) {
            seal_obj(k, m, pad, padl, page, t.length);
            t.csum = arc_meta_hash(page, t.length);
            arc_top_encode(top + (size_t)j * ARC_TOP_ENTRY, &t);
        }
    }
    if (m == RESEAL) {
        seal_obj(k, m, ad, adl, d + toff, tlen + CR_SEAL_OVERHEAD);
        vs_put_le64(rec + 72, arc_meta_hash(d + toff, tlen + CR_SEAL_OVERHEAD));
    }
}

/* Every sealed structure of d, innermost first (RESEAL) or outermost first (OPEN). */
static void walk(const struct cr_key *key, enum mode m, uint8_t *d, size_t size)
{
    if (size < ARC_HEADER_SIZE)
        return;
    /* the header's cipher (revision 15), any byte taken as a cipher id this reader knows, else XChaCha */
    struct cr_sealer sealer, *k = &sealer;
    enum cr_cipher ci = vs_get_le64(d + H_INCOMPAT) & ARC_INCOMPAT_CIPHER && d[H_CIPHER] <= CR_CIPHER_MAX
                            ? (enum cr_cipher)d[H_CIPHER] : CR_CIPHER_XCHACHA20POLY1305;
    if (cr_sealer_init(k, key, ci, d + H_UUID, NULL) < 0)
        return;
    if (m == RESEAL)
        vs_put_le64(d + H_FILESIZE, size);
    uint64_t doff = vs_get_le64(d + H_DIROFF);
    uint32_t dlen = vs_get_le32(d + H_DIRLEN);
    if (doff >= ARC_HEADER_SIZE && dlen >= ARC_DIR_FIXED + 8 + CR_SEAL_OVERHEAD && in_file(doff, dlen, size)) {
        uint8_t ad[ARC_SEAL_AD_MAX];
        size_t adl = arc__seal_ad(ad, ARC_SEAL_DIR, d, 0, 0);
        if (m == OPEN && !seal_obj(k, m, ad, adl, d + doff, dlen))
            return;
        uint8_t *dir = d + doff + CR_SEAL_NONCE;
        struct ctx c = { .k = k, .m = m, .d = d, .size = size, .tmp = malloc(1 << 20), .cap = 4096, .budget = 16384 };
        c.done = malloc(c.cap * sizeof *c.done);
        size_t len = dlen - CR_SEAL_OVERHEAD - 8, p = ARC_DIR_FIXED + vs_get_le16(dir + 4);
        uint32_t ns = vs_get_le32(dir);
        for (uint32_t i = 0; i < ns && p <= len && len - p >= ARC_STREAM_REC; i++) {
            do_stream(&c, i, dir + p);
            p += ARC_STREAM_REC + dir[p + 2];
        }
        free(c.tmp);
        free(c.done);
        if (m == RESEAL) {
            vs_put_le64(dir + len, arc_meta_hash(dir, len));
            seal_obj(k, m, ad, adl, d + doff, dlen);
        }
    }
    if (m == RESEAL)
        vs_put_le64(d + ARC_HEADER_CSUM_OFF, arc_meta_hash(d, ARC_HEADER_CSUM_OFF));
}

/* The test key, named by whatever id the input's header carries: the reader then always tries to open the seals. */
static void key_for(const uint8_t *d, size_t size, struct cr_key *k)
{
    memset(k, 0, sizeof *k);
    cr_keyfile_parse(key_text, sizeof key_text - 1, CR_KIND_KEY, k->k, sizeof k->k, "fuzz", NULL);
    uint8_t id[CR_ID_BYTES] = { 1 };
    if (size >= ARC_HEADER_SIZE)
        memcpy(id, d + H_KEYID, CR_ID_BYTES);
    cr_id_from_bytes(id, k->id);
}

static void ignore(void *opaque, const struct arc_problem *p)
{
    (void)opaque;
    (void)p;
}

static void one(const uint8_t *data, size_t size, const struct cr_key *k, uint8_t *buf)
{
    struct arc *a;
    vs_err e;
    struct arc_open_opts oo = { .key = k, .no_parent = true };   /* no file or URL a fuzzed hint names */
    if (arc_open_source(arc_source_open_mem(data, size, "fuzz"), &oo, &a, &e) < 0)
        return;
    for (unsigned i = 0; i < arc_stream_count(a); i++) {
        struct arc_stream_info si;
        arc_stream_get(a, i, &si);
        arc_pread(a, i, buf, VS_MIN(si.size, (uint64_t)(1 << 20)), 0, &e);
        uint64_t run;
        unsigned fl;
        if (si.size)
            arc_block_status(a, i, 0, si.size, &run, &fl, &e);
    }
    struct arc_verify_opts vo = { .problem = ignore };
    arc_verify(a, &vo, &e);
    arc_close(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cr_init(NULL);
    struct cr_key k;
    key_for(data, size, &k);
    uint8_t *buf = malloc(1 << 20), *copy = malloc(size ? size : 1);
    one(data, size, &k, buf);
    memcpy(copy, data, size);
    walk(&k, RESEAL, copy, size);
    one(copy, size, &k, buf);
    free(copy);
    free(buf);
    return 0;
}

#ifdef FUZZ_SEALED_SEEDS
/* Seed mode: an encrypted archive (sealed with the test key) with every structure opened in place. */
int main(int argc, char **argv)
{
    FILE *f = argc == 3 ? fopen(argv[1], "rb") : NULL;
    static uint8_t in[1 << 20];
    size_t len = f ? fread(in, 1, sizeof in, f) : 0;
    if (!f || len == sizeof in)
        return 2;
    fclose(f);
    struct cr_key k;
    cr_init(NULL);
    key_for(in, len, &k);
    walk(&k, OPEN, in, len);
    f = fopen(argv[2], "wb");
    return f && fwrite(in, 1, len, f) == len && !fclose(f) ? 0 : 1;
}
#endif
