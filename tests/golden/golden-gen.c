/* Writes the golden archives of tests/golden/ (see README.md there) and their manifest, golden.json.
 * Run once per format revision: files that exist are kept, only missing ones are written and added to the
 * manifest. Expected stream contents are hashed from the data given to the writer, not read back.
 * The reader's internals are used only to find the bytes to damage (index entries, top-level tables). */
#include "archive/reader_priv.h"
#include "memstore/memstore.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

struct gen {
    const char *dir, *tmpdir;
    struct cr_key key;        /* the test key of the encrypted archives (revision 11), GOLDEN_KEY */
    const char *cipher;       /* what they are sealed with: XChaCha20-Poly1305 (11), AES-256-GCM (15) */
    json_t *man;              /* the manifest: {"archives": [...], "damaged": [...]} */
    int added;
};

/* A stream as the generator meant it: name, kind and the bytes a reader must get. */
struct want { const char *name; enum arc_kind kind; const uint8_t *data; size_t len; };

static _Noreturn void die(const char *what, const vs_err *e)
{
    fprintf(stderr, "golden-gen: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

static char *in_dir(const char *dir, const char *name) { return vs_xasprintf("%s/%s", dir, name); }

static bool exists(const struct gen *g, const char *name)
{
    VS_AUTOFREE char *p = in_dir(g->dir, name);
    return access(p, F_OK) == 0;
}

static uint8_t *slurp(const char *path, size_t *len);
static void spill(const char *path, const uint8_t *b, size_t len);

/* Deterministic bytes: text, zeros, repeats and a little noise, so that blocks compress to a few bytes each. */
static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *b = vs_xcalloc(1, len);
    for (size_t i = 0; i < len; i += 4096) {
        uint32_t x = seed * 2654435761u + (uint32_t)i;
        switch ((x >> 7) % 4) {
        case 0: break;   /* zeros */
        case 1: for (size_t k = 0; k < VS_MIN((size_t)4096, len - i); k++) b[i + k] = "golden archive "[(k + seed) % 15]; break;
        case 2: for (size_t k = 0; k < VS_MIN((size_t)64, len - i); k++) { x = x * 1103515245u + 12345; b[i + k] = (uint8_t)(x >> 16); } break;
        default: memset(b + i, (int)(seed & 0xff), VS_MIN((size_t)4096, len - i)); break;
        }
    }
    return b;
}

static char *hash_hex(const uint8_t *p, size_t len)
{
    XXH128_hash_t h = XXH3_128bits(p, len);
    return vs_xasprintf("%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static void add(struct arc_writer *w, const struct want *s)
{
    vs_err e = { 0 };
    if (arc_writer_add(w, s->kind, s->name, s->data, s->len, &e) < 0)
        die(s->name, &e);
}

#define GOLDEN_KEY "r11-test.key"

static struct arc_writer *create_key(const char *path, enum arc_codec codec, const char *parent, bool thin,
                                     const char *msg, const struct cr_key *key, const char *cipher)
{
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = codec;
    o.block_size = 4096;
    o.threads = 1;
    o.parent_path = parent;
    o.thin = thin;
    o.message = msg;
    o.key = key;
    o.parent_key = key;
    o.cipher = cipher;
    struct arc_writer *w;
    vs_err e = { 0 };
    if (arc_writer_create(path, &o, &w, &e) < 0)
        die(path, &e);
    return w;
}

static struct arc_writer *create(const char *path, enum arc_codec codec, const char *parent, bool thin,
                                 const char *msg)
{
    return create_key(path, codec, parent, thin, msg, NULL, NULL);
}

static void finish(struct arc_writer *w)
{
    vs_err e = { 0 };
    if (arc_writer_finish(w, &e) < 0)
        die("finishing", &e);
}

/* A thick archive of the streams s[0, n), in order. */
static void write_plain(const char *path, enum arc_codec codec, const char *msg, const struct want *s, size_t n)
{
    struct arc_writer *w = create(path, codec, NULL, false, msg);
    for (size_t i = 0; i < n; i++)
        add(w, &s[i]);
    finish(w);
}

/* Record a good archive: what a reader must find in it. */
static void record(struct gen *g, const char *file, int rev, const char *what, const char *parent,
                   const struct want *s, size_t n)
{
    VS_AUTOFREE char *p = in_dir(g->dir, file), *pp = parent ? in_dir(g->dir, parent) : NULL;
    struct arc_open_opts oo = { .parent_path = pp };   /* the local parent, whatever the hint says */
    struct arc *a;
    vs_err e = { 0 };
    oo.key = &g->key;
    if (arc_open(p, &oo, &a, &e) < 0)
        die(p, &e);
    struct arc_info in;
    arc_get_info(a, &in);
    json_t *streams = json_array();
    for (size_t i = 0; i < n; i++) {
        VS_AUTOFREE char *h = hash_hex(s[i].data, s[i].len);
        json_array_append_new(streams, json_pack("{s:s,s:s,s:I,s:s}", "name", s[i].name, "kind",
                                                 arc_kind_name(s[i].kind), "size", (json_int_t)s[i].len, "xxh3-128", h));
    }
    json_array_append_new(json_object_get(g->man, "archives"),
                          json_pack("{s:s,s:i,s:s,s:s?,s:I,s:o}", "file", file, "revision", rev, "what", what,
                                    "parent", parent, "incompat", (json_int_t)in.incompat, "streams", streams));
    if (in.encrypted)
        json_object_set_new(json_array_get(json_object_get(g->man, "archives"),
                                           json_array_size(json_object_get(g->man, "archives")) - 1),
                            "key", json_string(GOLDEN_KEY));
    arc_close(a);
    g->added++;
    printf("golden-gen: %s (revision %d): %s\n", file, rev, what);
}

/* ---- good archives, one function per revision ---------------------------------------------------------- */

#define DISK0 (256u * 1024)
#define DISK1 (64u * 1024)
#define RAM (1u << 20)

/* A thick archive and its thin child, plain (revision 1) or sealed with key (revision 11). */
static void thick_thin(struct gen *g, const char *thick_file, const char *thin_file, int rev, const struct cr_key *key)
{
    VS_AUTOFREE uint8_t *d0 = pattern(DISK0, 1), *d1 = pattern(DISK1, 2), *mem = pattern(40000, 3);
    VS_AUTOFREE uint8_t *kern = pattern(9000, 4), *initrd = pattern(5000, 5);
    memcpy(d0 + 16 * 4096, d0 + 4 * 4096, 4096);   /* a duplicate block: dedup */
    const char *cfg = "{\"version\":1,\"machine\":\"pc\",\"ram\":1048576,\"cpus\":1,"
                      "\"kernel\":\"/golden/vmlinuz\",\"initrd\":\"/golden/initrd\",\"append\":\"console=ttyS0\","
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":262144},"
                      "{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}]}";
    struct want thick[] = {
        { "disk0", ARC_KIND_DISK, d0, DISK0 }, { "disk1", ARC_KIND_DISK, d1, DISK1 },
        { "memory", ARC_KIND_MEMORY, mem, 40000 }, { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
        { "kernel", ARC_KIND_FILE, kern, 9000 }, { "initrd", ARC_KIND_FILE, initrd, 5000 },
    };
    VS_AUTOFREE char *tp = in_dir(g->dir, thick_file);
    VS_AUTOFREE char *sealed = key ? vs_xasprintf(", sealed with " GOLDEN_KEY " (%s)", g->cipher) : vs_xstrdup("");
    if (!exists(g, thick_file)) {
        VS_AUTOFREE char *msg = vs_xasprintf("golden r%d thick", rev);
        struct arc_writer *w = create_key(tp, ARC_CODEC_LZ4, NULL, false, msg, key, g->cipher);
        for (size_t i = 0; i < VS_ARRAY_SIZE(thick); i++)
            add(w, &thick[i]);
        finish(w);
        VS_AUTOFREE char *what = vs_xasprintf("thick: two disks (lz4, zero and duplicate blocks), opaque memory, "
                                              "config, kernel and initrd as file streams%s", sealed);
        record(g, thick_file, rev, what, NULL, thick, VS_ARRAY_SIZE(thick));
    }
    if (!exists(g, thin_file)) {
        /* The child: a few disk0 blocks changed, disk1 unchanged (all parent references), files in the parent. */
        VS_AUTOFREE uint8_t *c0 = vs_xmalloc(DISK0);
        VS_AUTOFREE uint8_t *cmem = pattern(30000, 6);
        memcpy(c0, d0, DISK0);
        memset(c0 + 3 * 4096 + 100, 0xc5, 700);
        memset(c0 + 40 * 4096, 0, 4096);
        VS_AUTOFREE char *cp = in_dir(g->dir, thin_file);
        VS_AUTOFREE char *msg = vs_xasprintf("golden r%d thin", rev);
        struct arc_writer *w = create_key(cp, ARC_CODEC_ZSTD, tp, true, msg, key, g->cipher);
        vs_err e = { 0 };
        if (arc_writer_begin(w, ARC_KIND_DISK, "disk0", DISK0, &e) < 0 ||
            arc_writer_pwrite(w, c0 + 3 * 4096, 4096, 3 * 4096, &e) < 0 ||
            arc_writer_zero(w, 40 * 4096, 4096, &e) < 0 || arc_writer_end(w, &e) < 0 ||
            arc_writer_begin(w, ARC_KIND_DISK, "disk1", DISK1, &e) < 0 || arc_writer_end(w, &e) < 0)
            die("r1-thin disks", &e);
        struct want thin[] = {
            { "disk0", ARC_KIND_DISK, c0, DISK0 }, { "disk1", ARC_KIND_DISK, d1, DISK1 },
            { "memory", ARC_KIND_MEMORY, cmem, 30000 },
            { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
        };
        for (size_t i = 2; i < VS_ARRAY_SIZE(thin); i++)
            add(w, &thin[i]);
        finish(w);
        VS_AUTOFREE char *what = vs_xasprintf("thin child of %s (zstd): disk0 partly changed, disk1 all in the "
                                              "parent%s", thick_file, sealed);
        record(g, thin_file, rev, what, thick_file, thin, VS_ARRAY_SIZE(thin));
    }
}

static void rev1(struct gen *g) { thick_thin(g, "r1-thick.vmsnap", "r1-thin.vmsnap", 1, NULL); }


/* Memory as pages: ram/mem written out of order with rewrites, then memory-device (sealed with key, if any), and
 * the extra stream if there is one. */
static void paged(struct gen *g, const char *file, int rev, const struct cr_key *key, const char *what,
                  const struct want *extra)
{
    if (exists(g, file))
        return;
    VS_AUTOFREE uint8_t *ram = vs_xcalloc(1, RAM), *page = vs_xmalloc(4096), *dev = pattern(6000, 7);
    VS_AUTOFREE uint8_t *d0 = pattern(DISK1, 8);
    VS_AUTOFREE char *p = in_dir(g->dir, file);
    VS_AUTOFREE char *msg = vs_xasprintf("golden r%d paged", rev);
    struct arc_writer *w = create_key(p, ARC_CODEC_LZ4, NULL, false, msg, key, g->cipher);
    vs_err e = { 0 };
    if (arc_writer_begin_unordered(w, ARC_KIND_OTHER, "ram/mem", RAM, 0, &e) < 0)
        die("ram/mem", &e);
    static const unsigned order[] = { 200, 3, 17, 255, 0, 3, 64, 65, 66, 67, 128, 17 };
    for (size_t i = 0; i < VS_ARRAY_SIZE(order); i++) {
        memset(page, 0, 4096);
        snprintf((char *)page, 4096, "guest page %u, write %zu", order[i], i);
        memset(page + 2048, (int)(order[i] + i), 256);
        memcpy(ram + (size_t)order[i] * 4096, page, 4096);
        if (arc_writer_pwrite(w, page, 4096, (uint64_t)order[i] * 4096, &e) < 0)
            die("ram/mem page", &e);
    }
    if (arc_writer_end(w, &e) < 0)
        die("ram/mem", &e);
    const char *cfg = "{\"version\":1,\"machine\":\"pc\",\"ram\":1048576,\"memory-backend\":\"mem\","
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}]}";
    struct want s[] = {
        { "ram/mem", ARC_KIND_OTHER, ram, RAM }, { "memory-device", ARC_KIND_OTHER, dev, 6000 },
        { "disk0", ARC_KIND_DISK, d0, DISK1 }, { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
        extra ? *extra : (struct want){ 0 },
    };
    size_t n = VS_ARRAY_SIZE(s) - !extra;
    for (size_t i = 1; i < n; i++)
        add(w, &s[i]);
    finish(w);
    record(g, file, rev, what, NULL, s, n);
}

static void rev2(struct gen *g)
{
    paged(g, "r2-paged.vmsnap", 2, NULL, "memory as pages: ram/mem (unordered, pages rewritten) and memory-device",
          NULL);
}

/* Firmware files named in extra-args, stored as file streams (one writable: firmware variables). */
static void rev3(struct gen *g)
{
    if (exists(g, "r3-files.vmsnap"))
        return;
    VS_AUTOFREE uint8_t *bios = pattern(12288, 9), *vars = pattern(8192, 10), *d0 = pattern(DISK1, 11);
    const char *cfg = "{\"version\":1,\"machine\":\"q35\",\"ram\":1048576,"
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}],"
                      "\"extra-args\":[\"-bios\",\"/golden/bios.bin\",\"-drive\","
                      "\"if=pflash,format=raw,unit=1,file=/golden/vars.fd\"],"
                      "\"extra-files\":[{\"name\":\"bios\",\"path\":\"/golden/bios.bin\",\"writable\":false},"
                      "{\"name\":\"pflash1\",\"path\":\"/golden/vars.fd\",\"writable\":true}]}";
    struct want s[] = {
        { "disk0", ARC_KIND_DISK, d0, DISK1 }, { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
        { "bios", ARC_KIND_FILE, bios, 12288 }, { "pflash1", ARC_KIND_FILE, vars, 8192 },
    };
    VS_AUTOFREE char *p = in_dir(g->dir, "r3-files.vmsnap");
    write_plain(p, ARC_CODEC_ZSTD, "golden r3 extra files", s, VS_ARRAY_SIZE(s));
    record(g, "r3-files.vmsnap", 3, "config with extra-args and extra-files; bios and pflash1 file streams", NULL,
           s, VS_ARRAY_SIZE(s));
}

/* Rewrite the header's incompatible bits (and its checksum) of an archive in place. */
static void set_incompat(const char *path, uint64_t bits)
{
    FILE *f = fopen(path, "r+b");
    uint8_t h[ARC_HEADER_SIZE];
    if (!f || fread(h, 1, sizeof h, f) != sizeof h)
        die(path, NULL);
    vs_put_le64(h + H_INCOMPAT, bits);
    vs_put_le64(h + ARC_HEADER_CSUM_OFF, arc_meta_hash(h, ARC_HEADER_CSUM_OFF));
    if (fseek(f, 0, SEEK_SET) || fwrite(h, 1, sizeof h, f) != sizeof h || fclose(f))
        die(path, NULL);
}

/* The config key vmgenid: revision 4 wrote it without a feature bit, revision 5 with VMGENID. */
static void vmgenid(struct gen *g, int rev)
{
    VS_AUTOFREE char *file = vs_xasprintf("r%d-vmgenid.vmsnap", rev);
    if (exists(g, file))
        return;
    VS_AUTOFREE uint8_t *d0 = pattern(DISK1, 12), *mem = pattern(20000, 13);
    const char *cfg = "{\"version\":1,\"machine\":\"pc\",\"ram\":1048576,\"vmgenid\":true,"
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}]}";
    struct want s[] = {
        { "disk0", ARC_KIND_DISK, d0, DISK1 }, { "memory", ARC_KIND_MEMORY, mem, 20000 },
        { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
    };
    VS_AUTOFREE char *p = in_dir(g->dir, file);
    write_plain(p, ARC_CODEC_LZ4, "golden vmgenid", s, VS_ARRAY_SIZE(s));
    if (rev == 4)
        set_incompat(p, 0);   /* what a revision-4 writer wrote: the only byte difference */
    record(g, file, rev, rev == 4 ? "config key vmgenid without a feature bit (as revision 4 wrote it)"
                                  : "config key vmgenid with incompatible feature bit VMGENID", NULL, s,
           VS_ARRAY_SIZE(s));
}

/* Revision 6: the config's machine is the versioned type QEMU ran, with the QEMU version that ran it. */
static void machine(struct gen *g)
{
    const char *file = "r6-machine.vmsnap";
    if (exists(g, file))
        return;
    VS_AUTOFREE uint8_t *d0 = pattern(DISK1, 14), *mem = pattern(20000, 15);
    const char *cfg = "{\"version\":1,\"qemu-version\":\"7.2.22\",\"machine\":\"pc-i440fx-7.2\",\"ram\":1048576,"
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}]}";
    struct want s[] = {
        { "disk0", ARC_KIND_DISK, d0, DISK1 }, { "memory", ARC_KIND_MEMORY, mem, 20000 },
        { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
    };
    VS_AUTOFREE char *p = in_dir(g->dir, file);
    write_plain(p, ARC_CODEC_LZ4, "golden machine", s, VS_ARRAY_SIZE(s));
    record(g, file, 6, "config machine: the versioned type QEMU ran (pc-i440fx-7.2) and qemu-version", NULL, s,
           VS_ARRAY_SIZE(s));
}

/* Revision 9: a foreign VM's config lists its captured disks: a -blockdev node (libvirt's JSON form) and a -drive,
 * each with the disk stream holding it. The manifest's "config-disks" is what a reader must find there. */
static void foreign_disks(struct gen *g)
{
    const char *file = "r9-foreign-disks.vmsnap";
    if (exists(g, file))
        return;
    VS_AUTOFREE uint8_t *d0 = pattern(DISK1, 16), *d1 = pattern(DISK1 / 2, 17), *mem = pattern(20000, 18);
    const char *cfg =
        "{\"version\":1,\"qemu-version\":\"7.2.22\",\"machine\":\"pc-i440fx-7.2\",\"ram\":134217728,\"cpus\":1,"
        "\"foreign\":true,\"cwd\":\"/\",\"memory-backend\":\"pc.ram\",\"cmdline\":[\"/usr/bin/qemu-system-x86_64\","
        "\"-machine\",\"pc-i440fx-7.2,usb=off,memory-backend=pc.ram\",\"-m\",\"128\",\"-nodefaults\","
        "\"-object\",\"{\\\"qom-type\\\":\\\"memory-backend-ram\\\",\\\"id\\\":\\\"pc.ram\\\","
        "\\\"size\\\":134217728}\","
        "\"-blockdev\",\"{\\\"driver\\\":\\\"file\\\",\\\"filename\\\":\\\"/var/lib/libvirt/images/vda.qcow2\\\","
        "\\\"node-name\\\":\\\"libvirt-1-storage\\\"}\","
        "\"-blockdev\",\"{\\\"node-name\\\":\\\"libvirt-1-format\\\",\\\"driver\\\":\\\"qcow2\\\","
        "\\\"file\\\":\\\"libvirt-1-storage\\\"}\","
        "\"-device\",\"{\\\"driver\\\":\\\"virtio-blk-pci\\\",\\\"drive\\\":\\\"libvirt-1-format\\\","
        "\\\"id\\\":\\\"virtio-disk0\\\"}\","
        "\"-drive\",\"file=/srv/data.img,format=raw,if=ide,index=1,id=data0\"],"
        "\"disks\":[{\"name\":\"vda\",\"stream\":\"disk-vda\",\"size\":65536,\"format\":\"raw\","
        "\"interface\":\"virtio-blk-pci\",\"device\":\"virtio-disk0\",\"node\":\"libvirt-1-format\"},"
        "{\"name\":\"data0\",\"stream\":\"disk-data0\",\"size\":32768,\"format\":\"raw\",\"interface\":\"ide-hd\","
        "\"device\":\"/machine/unattached/device[7]\",\"node\":\"#block123\",\"drive\":\"data0\"}]}";
    struct want s[] = {
        { "disk-vda", ARC_KIND_DISK, d0, DISK1 }, { "disk-data0", ARC_KIND_DISK, d1, DISK1 / 2 },
        { "memory", ARC_KIND_MEMORY, mem, 20000 }, { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
    };
    VS_AUTOFREE char *p = in_dir(g->dir, file);
    write_plain(p, ARC_CODEC_ZSTD, "golden foreign disks", s, VS_ARRAY_SIZE(s));
    record(g, file, 9, "foreign config with captured disks: a libvirt -blockdev node (JSON) and a -drive", NULL, s,
           VS_ARRAY_SIZE(s));
    json_t *arcs = json_object_get(g->man, "archives");
    json_object_set_new(json_array_get(arcs, json_array_size(arcs) - 1), "config-disks",
                        json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s,s:s}]", "name", "vda", "stream", "disk-vda", "node",
                                  "libvirt-1-format", "name", "data0", "stream", "disk-data0", "node", "#block123",
                                  "drive", "data0"));
}

/* Revision 10: a local thin archive whose parent is in an object store: its hint is the parent's location.
 * The parent is r1-thick.vmsnap, opened as if it were at R10_PARENT (the writer takes the hint from the parent's
 * source), so a reader can open the child with r1-thick.vmsnap named as its parent, without a store. */
#define R10_PARENT "s3://vmsnap-golden/vms/r1-thick.vmsnap"

static void store_parent(struct gen *g)
{
    const char *file = "r10-store-parent.vmsnap";
    if (exists(g, file))
        return;
    VS_AUTOFREE char *tp = in_dir(g->dir, "r1-thick.vmsnap"), *p = in_dir(g->dir, file);
    struct arc_source *src;
    struct arc *parent;
    vs_err e = { 0 };
    if (arc_source_open_file(tp, &src, &e) < 0)
        die(tp, &e);
    free(src->name), src->name = vs_xstrdup(R10_PARENT);
    free(src->path), src->path = NULL;
    if (arc_open_source(src, NULL, &parent, &e) < 0)
        die(tp, &e);
    /* r1-thick's streams, as rev1 wrote them, with one disk0 block changed */
    VS_AUTOFREE uint8_t *d0 = pattern(DISK0, 1), *d1 = pattern(DISK1, 2), *mem = pattern(10000, 16);
    memcpy(d0 + 16 * 4096, d0 + 4 * 4096, 4096);
    memset(d0 + 7 * 4096, 0x3c, 4096);
    const char *cfg = "{\"version\":1,\"machine\":\"pc\",\"ram\":1048576,"
                      "\"disks\":[{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":262144},"
                      "{\"format\":\"raw\",\"interface\":\"virtio\",\"size\":65536}]}";
    struct arc_writer_opts o;
    arc_writer_opts_init(&o);
    o.codec = ARC_CODEC_LZ4;
    o.threads = 1;
    o.parent = parent;
    o.thin = true;
    o.message = "golden r10 store parent";
    struct arc_writer *w;
    if (arc_writer_create(p, &o, &w, &e) < 0 || arc_writer_begin(w, ARC_KIND_DISK, "disk0", DISK0, &e) < 0 ||
        arc_writer_pwrite(w, d0 + 7 * 4096, 4096, 7 * 4096, &e) < 0 || arc_writer_end(w, &e) < 0 ||
        arc_writer_begin(w, ARC_KIND_DISK, "disk1", DISK1, &e) < 0 || arc_writer_end(w, &e) < 0)
        die(file, &e);
    struct want st[] = {
        { "disk0", ARC_KIND_DISK, d0, DISK0 }, { "disk1", ARC_KIND_DISK, d1, DISK1 },
        { "memory", ARC_KIND_MEMORY, mem, 10000 }, { "config", ARC_KIND_CONFIG, (const uint8_t *)cfg, strlen(cfg) },
    };
    for (size_t i = 2; i < VS_ARRAY_SIZE(st); i++)
        add(w, &st[i]);
    finish(w);
    arc_close(parent);
    struct arc *a;
    struct arc_open_opts ro = { .no_parent = true };
    if (arc_open(p, &ro, &a, &e) < 0)
        die(p, &e);
    struct arc_info in;
    arc_get_info(a, &in);
    if (strcmp(in.parent_hint, R10_PARENT))
        die("r10: the hint is not the parent's store location", NULL);
    arc_close(a);
    record(g, file, 10, "local thin child of r1-thick, whose hint is the parent's store location " R10_PARENT
           " (opened with r1-thick.vmsnap as its parent)", "r1-thick.vmsnap", st, VS_ARRAY_SIZE(st));
    json_object_set_new(json_array_get(json_object_get(g->man, "archives"),
                                       json_array_size(json_object_get(g->man, "archives")) - 1),
                        "parent-hint", json_string(R10_PARENT));
}

/* Revision 11: encrypted archives, thick, thin and paged, with the test key committed beside them. */
static void rev11(struct gen *g)
{
    g->cipher = "xchacha20-poly1305";
    thick_thin(g, "r11-encrypted.vmsnap", "r11-encrypted-thin.vmsnap", 11, &g->key);
    paged(g, "r11-encrypted-paged.vmsnap", 11, &g->key, "memory as pages (ram/mem unordered, pages rewritten) and "
          "memory-device, sealed with " GOLDEN_KEY, NULL);
}

/* Revision 13: a paged archive with a working set (pages 200, 3, 64-67 of ram/mem, in that order). */
static void rev13(struct gen *g)
{
    struct mst_ws_stream st = { "ram/mem", RAM };
    struct mst_ws_entry en[] = { { 0, 1, 200 * 4096 }, { 0, 1, 3 * 4096 }, { 0, 4, 64 * 4096 } };
    struct mst_ws ws = { .nstreams = 1, .streams = &st, .n = VS_ARRAY_SIZE(en), .entries = en };
    VS_AUTOFREE uint8_t *rec = NULL;
    size_t len = 0;
    vs_err e = { 0 };
    if (mst_ws_encode(&ws, &rec, &len, &e) < 0)
        die("working set", &e);
    struct want extra = { MST_WS_STREAM, ARC_KIND_OTHER, rec, len };
    paged(g, "r13-working-set.vmsnap", 13, NULL, "r2-paged's streams and a working set: pages 200, 3, 64-67 of "
          "ram/mem", &extra);
}

/* Revision 15: the same, sealed with AES-256-GCM under per-archive subkeys of the same test key. */
static void rev15(struct gen *g)
{
    g->cipher = "aes-256-gcm";
    thick_thin(g, "r15-aes-gcm.vmsnap", "r15-aes-gcm-thin.vmsnap", 15, &g->key);
    paged(g, "r15-aes-gcm-paged.vmsnap", 15, &g->key, "memory as pages (ram/mem unordered, pages rewritten) and "
          "memory-device, sealed with " GOLDEN_KEY " (aes-256-gcm)", NULL);
}

/* The test key: made once, then read like any key file (from a private copy: git keeps no file modes). */
static void load_key(struct gen *g)
{
    vs_err e = { 0 };
    VS_AUTOFREE char *p = in_dir(g->dir, GOLDEN_KEY), *copy = in_dir(g->tmpdir, GOLDEN_KEY);
    if (cr_init(&e) < 0)
        die("libsodium", &e);
    if (!exists(g, GOLDEN_KEY)) {
        if (cr_key_generate(p, &g->key, &e) < 0)
            die(p, &e);
        return;
    }
    size_t len;
    VS_AUTOFREE uint8_t *b = slurp(p, &len);
    spill(copy, b, len);
    chmod(copy, 0600);
    if (cr_key_load(copy, &g->key, &e) < 0)
        die(p, &e);
    unlink(copy);
}

/* ---- damaged archives: a copy of a good one with one thing broken -------------------------------------- */

struct damage {
    const char *file, *from, *what;
    const char *step;         /* where a reader notices: "open", "read" (arc_pread of stream), "config" */
    const char *stream;       /* for "read" */
    const char *err;          /* errno name */
    const char *msg;          /* a part of the message */
};

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0)
        die(path, NULL);
    uint8_t *b = vs_xmalloc((size_t)st.st_size + 4096);
    if (fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        die(path, NULL);
    fclose(f);
    *len = (size_t)st.st_size;
    return b;
}

static void spill(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, len, f) != len || fclose(f))
        die(path, NULL);
}

static void rehash_header(uint8_t *h) { vs_put_le64(h + ARC_HEADER_CSUM_OFF, arc_meta_hash(h, ARC_HEADER_CSUM_OFF)); }

/* File offsets of a stream's first stored block, its first index page and its top-level table. */
static void offsets(const char *path, const struct cr_key *key, const char *stream, uint64_t *block, uint64_t *page,
                    uint64_t *top)
{
    struct arc *a;
    vs_err e = { 0 };
    struct arc_open_opts oo = { .key = key };
    if (arc_open(path, &oo, &a, &e) < 0)
        die(path, &e);
    int s = arc_find_stream(a, ARC_KIND_OTHER, stream);
    struct arc_entry en = { 0 };
    for (uint64_t b = 0; s >= 0 && b < a->streams[s].blocks && en.type != ARC_BLOCK_DATA; b++)
        if (arc__entry(a, (unsigned)s, b, &en, &e) < 0)
            die(stream, &e);
    if (s < 0 || en.type != ARC_BLOCK_DATA)
        die("no stored block to damage", NULL);
    *block = en.offset + en.stored_len / 2;
    *page = a->streams[s].tops[0].offset + 8;
    *top = a->streams[s].top_offset + 4;
    arc_close(a);
}

/* A thin child of a throwaway parent written in the temp dir under parent_name, copied alone to file. */
static void orphan(struct gen *g, const char *file, const char *parent_name)
{
    VS_AUTOFREE char *pp = in_dir(g->tmpdir, parent_name), *cp = in_dir(g->tmpdir, "child.vmsnap");
    VS_AUTOFREE uint8_t *d = pattern(DISK1, 14);
    struct want s = { "disk0", ARC_KIND_DISK, d, DISK1 };
    struct arc_writer *w = create(pp, ARC_CODEC_LZ4, NULL, false, "throwaway parent");
    add(w, &s);
    finish(w);
    w = create(cp, ARC_CODEC_LZ4, pp, true, "golden orphan");
    d[5] ^= 1;
    add(w, &s);
    finish(w);
    size_t len;
    VS_AUTOFREE uint8_t *b = slurp(cp, &len);
    VS_AUTOFREE char *out = in_dir(g->dir, file);
    spill(out, b, len);
    unlink(pp);
    unlink(cp);
}

/* The i-th stream record of the directory at dir, and the directory's checksum redone after editing it. */
static uint8_t *stream_record(uint8_t *b, uint64_t dir, unsigned i)
{
    uint8_t *r = b + dir + ARC_DIR_FIXED + vs_get_le16(b + dir + 4);
    while (i--)
        r += ARC_STREAM_REC + r[2];
    return r;
}

static void rehash_dir(uint8_t *b, uint64_t dir)
{
    size_t n = vs_get_le32(b + H_DIRLEN) - 8;
    vs_put_le64(b + dir + n, arc_meta_hash(b + dir, n));
}

static void damaged(struct gen *g, const struct damage *d)
{
    if (exists(g, d->file))
        return;
    VS_AUTOFREE char *src = in_dir(g->dir, d->from), *out = in_dir(g->dir, d->file);
    size_t len = 0;
    VS_AUTOFREE uint8_t *b = d->from[0] ? slurp(src, &len) : NULL;
    uint64_t blk = 0, page = 0, top = 0, dir = b ? vs_get_le64(b + H_DIROFF) : 0;
    if (b)
        offsets(src, &g->key, "disk0", &blk, &page, &top);
    const char *k = d->file;
    if (strstr(k, "bad-magic"))
        b[1] = 'X';
    else if (strstr(k, "encrypted-header"))
        vs_put_le64(b + H_CREATED, vs_get_le64(b + H_CREATED) + 1), rehash_header(b);
    else if (strstr(k, "encrypted-keyid"))
        b[H_KEYID] ^= 1, rehash_header(b);
    else if (strstr(k, "header-checksum"))
        b[H_CREATED] ^= 1;
    else if (strstr(k, "version-2"))
        vs_put_le32(b + H_VERSION, 2), rehash_header(b);
    else if (strstr(k, "unknown-incompat"))
        b[H_INCOMPAT] |= strstr(k, "incompat-4") ? 16 : strstr(k, "incompat-3") ? 8 : 4, rehash_header(b);
    else if (strstr(k, "cipher-unknown"))
        b[H_CIPHER] = 2, rehash_header(b);
    else if (strstr(k, "cipher-cleared"))
        b[H_CIPHER] = 0, b[H_INCOMPAT] &= (uint8_t)~ARC_INCOMPAT_CIPHER, rehash_header(b);
    else if (strstr(k, "reserved-header"))
        b[H_RESERVED + 3] = 1, rehash_header(b);
    else if (strstr(k, "truncated"))
        len -= 100;
    else if (strstr(k, "trailing"))
        memset(b + len, 0, 512), len += 512;
    else if (strstr(k, "directory"))
        b[dir + 2] ^= 0x40;
    else if (strstr(k, "top-table"))
        b[top] ^= 0x01;
    else if (strstr(k, "index-page"))
        b[page] ^= 0x01;
    else if (strstr(k, "block-data"))
        b[blk] ^= 0x20;
    else if (strstr(k, "shared-top"))
        memcpy(stream_record(b, dir, 1) + 64, stream_record(b, dir, 0) + 64, 16), rehash_dir(b, dir);
    else if (strstr(k, "name-escape"))
        stream_record(b, dir, 0)[ARC_STREAM_REC] = 0x1b, rehash_dir(b, dir);
    else if (strstr(k, "vmgenid-bit"))
        b[H_INCOMPAT] |= 2, rehash_header(b);
    else if (strstr(k, "missing-parent"))
        orphan(g, d->file, "gone.vmsnap");
    else if (strstr(k, "wrong-parent"))
        orphan(g, d->file, "r1-thick.vmsnap");
    else
        die(d->file, NULL);
    if (b)
        spill(out, b, len);
    json_array_append_new(json_object_get(g->man, "damaged"),
                          json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s,s:s}", "file", d->file, "from", d->from, "what",
                                    d->what, "step", d->step, "stream", d->stream, "error", d->err, "message", d->msg));
    g->added++;
    printf("golden-gen: %s: %s\n", d->file, d->what);
}

static const struct damage damages[] = {
    { "d-bad-magic.vmsnap", "r1-thick.vmsnap", "second magic byte changed", "open", NULL, "EINVAL", "bad magic" },
    { "d-header-checksum.vmsnap", "r1-thick.vmsnap", "a bit of the creation time flipped", "open", NULL, "EIO",
      "header checksum mismatch" },
    { "d-version-2.vmsnap", "r1-thick.vmsnap", "version 2 (checksum repaired)", "open", NULL, "ENOTSUP",
      "unsupported format version 2" },
    { "d-unknown-incompat.vmsnap", "r1-thick.vmsnap", "incompatible bit 2 set (checksum repaired): unknown up to "
      "revision 10, ENCRYPTED from revision 11, here without a key id", "open", NULL, "EIO",
      "encrypted, but the header names no key" },
    { "d-unknown-incompat-3.vmsnap", "r1-thick.vmsnap", "incompatible bit 3 set (checksum repaired): unknown up to "
      "revision 14, CIPHER from revision 15, here in a plain archive", "open", NULL, "EIO",
      "a cipher is named (incompatible bit 3) but the archive is not encrypted" },
    { "d-unknown-incompat-4.vmsnap", "r1-thick.vmsnap", "incompatible bit 4 set (checksum repaired)", "open", NULL,
      "ENOTSUP", "requires unsupported features (incompatible bits 0x10)" },
    { "d-cipher-unknown.vmsnap", "r15-aes-gcm.vmsnap", "cipher byte 2, unknown (checksum repaired)", "open", NULL,
      "ENOTSUP", "unsupported cipher 2 in header" },
    { "d-cipher-cleared.vmsnap", "r15-aes-gcm.vmsnap", "CIPHER bit and cipher byte cleared (checksum repaired): "
      "taken as XChaCha20-Poly1305, the directory does not open", "open", NULL, "EIO", "does not authenticate" },
    { "d-reserved-header.vmsnap", "r1-thick.vmsnap", "a reserved header byte set (checksum repaired)", "open", NULL,
      "EIO", "reserved header bytes are not zero" },
    { "d-truncated.vmsnap", "r1-thick.vmsnap", "last 100 bytes cut", "open", NULL, "EIO", "truncated" },
    { "d-trailing.vmsnap", "r1-thick.vmsnap", "512 zero bytes appended", "open", NULL, "EIO",
      "trailing bytes after the archive" },
    { "d-directory.vmsnap", "r1-thick.vmsnap", "a bit of the directory flipped", "open", NULL, "EIO",
      "directory checksum mismatch" },
    { "d-top-table.vmsnap", "r1-thick.vmsnap", "a bit of disk0's top-level table flipped", "open", NULL, "EIO",
      "top-level index checksum mismatch" },
    { "d-index-page.vmsnap", "r1-thick.vmsnap", "a bit of disk0's index page flipped", "read", "disk0", "EIO",
      "checksum mismatch" },
    { "d-block-data.vmsnap", "r1-thick.vmsnap", "a bit in disk0's first stored block flipped", "read", "disk0",
      "EIO", "stored data checksum mismatch" },
    { "d-vmgenid-bit.vmsnap", "r1-thick.vmsnap", "VMGENID set, config without vmgenid (checksum repaired)",
      "config", NULL, "EIO", "feature bit 'vmgenid' is set but the config" },
    { "d-shared-top.vmsnap", "r1-thick.vmsnap", "disk1's record points at disk0's top-level table (checksums "
      "repaired)", "open", NULL, "EIO", "overlapping top-level indexes" },
    { "d-name-escape.vmsnap", "r1-thick.vmsnap", "first stream name starts with ESC (checksum repaired)", "open",
      NULL, "EIO", "is not UTF-8 text without control characters" },
    { "d-missing-parent.vmsnap", "", "thin child whose parent 'gone.vmsnap' does not exist", "open", NULL,
      "ENOENT", "not found" },
    { "d-wrong-parent.vmsnap", "", "thin child whose hint names r1-thick.vmsnap, another archive", "open", NULL,
      "EINVAL", "has UUID" },
    { "d-encrypted-header.vmsnap", "r11-encrypted.vmsnap", "creation time changed, header checksum repaired: the "
      "sealed directory binds the header", "open", NULL, "EIO", "does not authenticate" },
    { "d-encrypted-keyid.vmsnap", "r11-encrypted.vmsnap", "a bit of the key id flipped (checksum repaired): another "
      "key is asked for", "open", NULL, "EKEYREJECTED", "is encrypted with key" },
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: golden-gen DIR   (writes the golden archives DIR lacks, and DIR/golden.json)\n");
        return 2;
    }
    char tmpl[] = "/tmp/vmsnap-golden-XXXXXX";
    struct gen g = { .dir = argv[1], .tmpdir = mkdtemp(tmpl) };
    VS_AUTOFREE char *mp = in_dir(g.dir, "golden.json");
    json_error_t je;
    g.man = access(mp, F_OK) == 0 ? json_load_file(mp, 0, &je) : json_pack("{s:[],s:[]}", "archives", "damaged");
    if (!g.tmpdir || !g.man)
        die(mp, NULL);
    load_key(&g);
    rev1(&g);
    rev2(&g);
    rev3(&g);
    vmgenid(&g, 4);
    vmgenid(&g, 5);
    machine(&g);
    foreign_disks(&g);
    store_parent(&g);
    rev11(&g);
    rev13(&g);
    rev15(&g);
    for (size_t i = 0; i < VS_ARRAY_SIZE(damages); i++)
        damaged(&g, &damages[i]);
    rmdir(g.tmpdir);
    if (g.added && json_dump_file(g.man, mp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) < 0)
        die(mp, NULL);
    json_decref(g.man);
    printf("golden-gen: %d new file(s) in %s\n", g.added, g.dir);
    return 0;
}
