/* cli: vmsnap info — what an archive holds. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"
#include "memstore/memstore.h"

#include <getopt.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

static json_t *stream_json(const struct arc_stream_info *si, unsigned i)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:I, s:I, s:f, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "index", (json_int_t)i,
                          "name", si->name, "kind", arc_kind_name(si->kind), "size", (json_int_t)si->size, "stored",
                          (json_int_t)si->stored, "ratio", si->stored ? (double)si->size / (double)si->stored : 0.0,
                          "compression", arc_codec_name(si->codec), "block_size", (json_int_t)si->block_size,
                          "blocks", (json_int_t)si->blocks, "data_blocks", (json_int_t)si->data_blocks, "zero_blocks",
                          (json_int_t)si->zero_blocks, "dedup_blocks", (json_int_t)si->dedup_blocks, "parent_blocks",
                          (json_int_t)si->parent_blocks);
    if (si->disk_index >= 0)
        json_object_set_new(j, "disk_index", json_integer(si->disk_index));
    return j;
}

/* A small JSON stream (config, metadata) as a JSON value, or null. */
static json_t *small_json(struct arc *a, enum arc_kind kind)
{
    int s = arc_find_stream(a, kind, NULL);
    VS_AUTOFREE char *buf = NULL;
    size_t len;
    if (s < 0 || arc_read_stream(a, (unsigned)s, 16 << 20, &buf, &len, NULL) < 0)
        return json_null();
    json_t *j = json_loadb(buf, len, 0, NULL);
    return j ? j : json_null();
}

/* The archive's working set: totals and its ranges in order, or what is wrong with it; NULL when it has none. */
static json_t *ws_json(struct arc *a)
{
    struct mst_ws ws MST_WS_AUTOFREE = { 0 };
    vs_err e = { 0 };
    int r = mst_ws_read(a, &ws, &e);
    if (r == 0)
        return NULL;
    if (r < 0)
        return json_pack("{s:o}", "error", cli_json_text(e.msg));
    json_t *streams = json_array(), *entries = json_array();
    for (unsigned i = 0; i < ws.nstreams; i++)
        json_array_append_new(streams, cli_json_text(ws.streams[i].name));
    for (size_t i = 0; i < ws.n; i++)
        json_array_append_new(entries, json_pack("[I,I,I]", (json_int_t)ws.entries[i].stream,
                                                 (json_int_t)ws.entries[i].off,
                                                 (json_int_t)ws.entries[i].pages * MST_PAGE_SIZE));
    return json_pack("{s:I,s:I,s:I,s:o,s:o}", "ranges", (json_int_t)ws.n, "pages", (json_int_t)ws.pages, "bytes",
                     (json_int_t)(ws.pages * MST_PAGE_SIZE), "streams", streams, "entries", entries);
}

static json_t *info_json(struct arc *a, const char *path, const char *parent_err)
{
    struct arc_info in;
    arc_get_info(a, &in);
    char u[37];
    vs_uuid_format(in.uuid, u);
    json_t *streams = json_array();
    uint64_t lsum = 0, ssum = 0;
    for (unsigned i = 0; i < in.nstreams; i++) {
        struct arc_stream_info si;
        arc_stream_get(a, i, &si);
        json_array_append_new(streams, stream_json(&si, i));
        lsum += si.size;
        ssum += si.stored;
    }
    json_t *chain = json_array();
    for (struct arc *p = arc_parent(a); p; p = arc_parent(p)) {
        struct arc_info pi;
        arc_get_info(p, &pi);
        char pu[37];
        vs_uuid_format(pi.uuid, pu);
        json_array_append_new(chain, json_pack("{s:s, s:I}", "uuid", pu, "created", (json_int_t)pi.created));
    }
    json_t *config = small_json(a, ARC_KIND_CONFIG);
    json_t *qv = json_object_get(config, "qemu_version");
    json_t *j = json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:O, s:o}", "path", cli_json_text(path),
                          "uuid", u, "format_version", (json_int_t)in.version, "created", (json_int_t)in.created,
                          "file_size", (json_int_t)in.file_size, "block_size", (json_int_t)in.block_size,
                          "logical_size", (json_int_t)lsum, "stored_size", (json_int_t)ssum, "incompat_features",
                          (json_int_t)in.incompat, "streams", streams, "parent_chain", chain, "config", config,
                          "qemu_version", qv ? qv : json_null(), "metadata", small_json(a, ARC_KIND_METADATA));
    json_object_set_new(j, "encrypted", json_boolean(in.encrypted));
    json_object_set_new(j, "key_id", in.encrypted ? json_string(in.key_id) : json_null());
    json_object_set_new(j, "cipher", in.encrypted ? json_string(in.cipher) : json_null());
    json_object_set_new(j, "sealed", json_boolean(in.locked));   /* no key: the header only */
    if (in.has_parent) {
        char pu[37];
        vs_uuid_format(in.parent_uuid, pu);
        json_object_set_new(j, "parent", json_pack("{s:s, s:o}", "uuid", pu, "hint",
                                                   in.parent_hint ? cli_json_text(in.parent_hint) : json_null()));
    } else {
        json_object_set_new(j, "parent", json_null());
    }
    if (parent_err)
        json_object_set_new(j, "parent_error", cli_json_text(parent_err));
    json_t *ws = ws_json(a);
    if (ws)
        json_object_set_new(j, "working_set", ws);
    return j;
}

/* Every string of the document (names, hint, paths, the archive's config and message) made safe for a
 * terminal: an archive must not be able to send escape sequences to it. */
static void escape_strings(json_t *j)
{
    const char *k;
    size_t i;
    json_t *v;
    if (json_is_string(j)) {
        VS_AUTOFREE char *x = vs_text_escape(json_string_value(j));
        json_string_set(j, x);
    } else if (json_is_object(j)) {
        json_object_foreach(j, k, v)
            escape_strings(v);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            escape_strings(v);
    }
}

static void print_human(json_t *j)
{
    escape_strings(j);
    char a[32], b[32];
    time_t t = (time_t)json_integer_value(json_object_get(j, "created"));
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    printf("archive:  %s\nuuid:     %s\ncreated:  %s\nformat:   version %lld, block size %lld\n",
           json_string_value(json_object_get(j, "path")), json_string_value(json_object_get(j, "uuid")), when,
           json_integer_value(json_object_get(j, "format_version")),
           json_integer_value(json_object_get(j, "block_size")));
    if (json_is_true(json_object_get(j, "encrypted")))
        printf("encrypted: with key %s, %s%s\n", json_string_value(json_object_get(j, "key_id")),
               json_string_value(json_object_get(j, "cipher")),
               json_is_true(json_object_get(j, "sealed")) ? " (pass --key to see its streams, config and parent)" : "");
    printf("size:     %s in file, %s logical\n", vs_fmt_size(json_integer_value(json_object_get(j, "file_size")), a, 32),
           vs_fmt_size(json_integer_value(json_object_get(j, "logical_size")), b, 32));
    json_t *par = json_object_get(j, "parent");
    if (json_is_object(par)) {
        printf("parent:   %s (%s)\n", json_string_value(json_object_get(par, "uuid")),
               json_string_value(json_object_get(par, "hint")) ?: "sealed");
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(j, "parent_chain"), i, p)
            printf("  chain %zu: %s\n", i + 1, json_string_value(json_object_get(p, "uuid")));
        if (json_object_get(j, "parent_error"))
            printf("  MISSING: %s\n", json_string_value(json_object_get(j, "parent_error")));
    }
    size_t k;
    json_t *sg;
    json_array_foreach(json_object_get(j, "signed-by"), k, sg)
        printf("signed:   %s by key %s (trusted: %s)\n", json_string_value(json_object_get(sg, "archive")),
               json_string_value(json_object_get(sg, "key-id")), json_string_value(json_object_get(sg, "key-file")));
    json_t *qv = json_object_get(j, "qemu_version");
    if (json_is_string(qv))
        printf("qemu:     %s\n", json_string_value(qv));
    printf("streams:\n  %-3s %-10s %-9s %12s %12s %7s %-5s %10s %8s %8s %8s\n", "#", "name", "kind", "size", "stored",
           "ratio", "codec", "blocks", "zero", "dedup", "parent");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "streams"), i, s) {
        printf("  %-3zu %-10s %-9s %12s %12s %6.2fx %-5s %10lld %8lld %8lld %8lld\n", i,
               json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(s, "kind")),
               vs_fmt_size(json_integer_value(json_object_get(s, "size")), a, 32),
               vs_fmt_size(json_integer_value(json_object_get(s, "stored")), b, 32),
               json_real_value(json_object_get(s, "ratio")), json_string_value(json_object_get(s, "compression")),
               json_integer_value(json_object_get(s, "blocks")), json_integer_value(json_object_get(s, "zero_blocks")),
               json_integer_value(json_object_get(s, "dedup_blocks")),
               json_integer_value(json_object_get(s, "parent_blocks")));
    }
    json_t *cfg = json_object_get(j, "config");
    if (json_is_object(cfg)) {
        char *d = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("config:\n%s\n", d);
        free(d);
    }
    json_t *ws = json_object_get(j, "working_set");
    if (json_object_get(ws, "error"))
        printf("working set: unusable: %s\n", json_string_value(json_object_get(ws, "error")));
    else if (ws)
        printf("working set: %lld pages (%s) in %lld ranges, prefetched first when booted\n",
               json_integer_value(json_object_get(ws, "pages")),
               vs_fmt_size(json_integer_value(json_object_get(ws, "bytes")), a, 32),
               json_integer_value(json_object_get(ws, "ranges")));
    json_t *md = json_object_get(j, "metadata");
    if (json_is_string(json_object_get(md, "message")))
        printf("message:  %s\n", json_string_value(json_object_get(md, "message")));
}

/* With trusted keys: who signed each archive of the chain, [{archive, key-id, key-file}]. */
static void on_signed(void *opaque, const char *archive, const char *key_id, const char *key_file)
{
    json_array_append_new(opaque, json_pack("{s:o,s:s,s:o}", "archive", cli_json_text(archive), "key-id", key_id,
                                            "key-file", cli_json_text(key_file)));
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "key", required_argument, NULL, 'K' },
                                          { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
                                          { NULL, 0, NULL, 0 } };
    bool as_json = false;
    const char *keyfile = NULL, *trusted_keys = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'K')
            keyfile = optarg;
        else if (c == CLI_OPT_TRUSTED_KEYS)
            trusted_keys = optarg;
        else if (c == 'j')
            as_json = true;
        else
            return cli_usage("info", "bad arguments");
    }
    if (optind != argc - 1)
        return cli_usage("info", "expected one ARCHIVE");
    const char *path = argv[optind];
    vs_err e = { 0 }, pe = { 0 };
    /* Without its key an encrypted archive shows its header: that it is encrypted, and with which key. */
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct arc_open_opts ao = { .header_only = true };
    CLI_JSON_AUTODECREF json_t *signers = json_array();
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { .signed_by = on_signed, .opaque = signers };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &ao.key, &e) < 0 || cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *a = NULL;
    if (trust.kr) {   /* what is shown is what the signers vouch for: a chain that fails the check shows nothing */
        if (cli_open_trusted(path, &ao, &trust, &a, &e) < 0)
            return cli_fail_err(&e);
    }
    int r = a ? 0 : arc_open(path, &ao, &a, &pe);
    bool parent_broken = false;
    if (r < 0) {   /* show what can be shown of an archive whose parent is missing, then fail */
        struct arc_open_opts o = { .no_parent = true, .key = ao.key, .header_only = true };
        if (arc_open(path, &o, &a, &e) < 0)
            return cli_fail("%s", pe.msg);
        struct arc_info in;
        arc_get_info(a, &in);
        if (!in.has_parent)
            return cli_fail("%s", pe.msg);
        parent_broken = true;
    }
    json_t *j = info_json(a, path, parent_broken ? pe.msg : NULL);
    if (trust.kr)
        json_object_set(j, "signed-by", signers);
    if (as_json) {
        char *d = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        puts(d);
        free(d);
    } else {
        print_human(j);
    }
    json_decref(j);
    return parent_broken ? cli_fail("%s", pe.msg) : CLI_OK;
}
