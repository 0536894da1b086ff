/* cli: "vmsnap commit" — merge an overlay (and optionally a memory stream) into a new archive over BASE. */
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <time.h>

/* An overlay still locked by a boot that is ending: retry for a few seconds. */
static int open_overlay(const char *base, const struct cr_key *key, struct cli_trust *trust, const char *path,
                        struct nbd_overlay **o, vs_err *e)
{
    for (int i = 0;; i++) {
        struct nbd_base *b = NULL;
        int r = nbd_base_open_archive_checked(base, 0, key, cli_trust_wrap, cli_trust_check, trust, &b, e);
        if (r < 0)
            return r;
        r = nbd_overlay_open(path, b, NBD_OVL_READONLY, o, e);
        if (r < 0)
            nbd_base_close(b);   /* on failure the caller keeps the base */
        if (r == 0 || (r != -EWOULDBLOCK && r != -EAGAIN) || i >= 100)
            return r;
        nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
}

/* Streams of BASE's chain the new archive needs besides the disk: config and, thick, the start files. */
static int copy_small(struct arc *base, struct arc_writer *w, bool thin, vs_err *e)
{
    unsigned n = arc_stream_count(base);
    for (unsigned i = 0; i < n; i++) {
        struct arc_stream_info si;
        if (arc_stream_get(base, i, &si) < 0)
            continue;
        if (si.kind != ARC_KIND_CONFIG && !(si.kind == ARC_KIND_FILE && !thin))
            continue;
        VS_AUTOFREE char *buf = NULL;
        size_t len = 0;
        int r = arc_read_stream(base, i, 256u << 20, &buf, &len, e);
        if (r < 0 || (r = arc_writer_add(w, si.kind, si.name, buf, len, e)) < 0)
            return r;
    }
    return 0;
}

int cmd_commit(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "memory", required_argument, NULL, 'M' },
        { "thin", no_argument, NULL, 't' },         { "keep-overlay", no_argument, NULL, 'k' },
        { "compress", required_argument, NULL, 'z' }, { "key", required_argument, NULL, 'K' },
        { "encrypt", required_argument, NULL, 'E' },  { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { "cipher", required_argument, NULL, 'X' },   { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *memory = NULL, *codec = NULL, *keyfile = NULL, *encrypt = NULL, *trusted_keys = NULL,
               *cipher = NULL;
    bool thin = false, keep = false;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:M:tkz:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'M': memory = optarg; break;
        case 't': thin = true; break;
        case 'k': keep = true; break;
        case 'z': codec = optarg; break;
        case 'K': keyfile = optarg; break;
        case 'E': encrypt = optarg; break;
        case 'X':
            if (cli_cipher_opt("commit", optarg))
                return CLI_USAGE;
            cipher = optarg;
            break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        default: return cli_usage("commit", "bad option");
        }
    }
    if (argc - optind != 2 || !out)
        return cli_usage("commit", "expected BASE.vmsnap OVERLAY -o OUT.vmsnap");
    const char *base_path = argv[optind], *ovl_path = argv[optind + 1];
    vs_err e = { 0 };
    struct cr_key key CR_KEY_AUTOWIPE = { 0 }, ekey CR_KEY_AUTOWIPE = { 0 };
    const struct cr_key *kp, *ekp;
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &kp, &e) < 0 || cli_key(encrypt, NULL, &ekey, &ekp, &e) < 0 ||
        cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *base = NULL;
    struct arc_open_opts bo = { .key = kp };
    if (cli_open_trusted(base_path, &bo, &trust, &base, &e) < 0)
        return cli_fail_err(&e);
    if (access(ovl_path, R_OK) < 0)
        return cli_fail("overlay %s: %s", ovl_path, strerror(errno));
    NBD_OVERLAY_AUTOCLOSE struct nbd_overlay *o = NULL;
    if (open_overlay(base_path, kp, &trust, ovl_path, &o, &e) < 0)
        return cli_fail_err(&e);
    VS_AUTOCLOSE int memfd = -1;
    if (memory && (memfd = open(memory, O_RDONLY | O_CLOEXEC)) < 0)
        return cli_fail("memory stream %s: %s", memory, strerror(errno));
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    if (codec && arc_parse_codec(codec, &wo.codec, &wo.level, &e) < 0)
        return cli_usage("commit", "--compress: %s", e.msg);
    wo.parent = base;
    wo.thin = thin;
    wo.key = ekp;
    wo.cipher = cipher;
    ARC_WRITER_AUTOABORT struct arc_writer *w = NULL;
    if (arc_writer_create(out, &wo, &w, &e) < 0)
        return cli_fail_err(&e);
    int r = 0;
    if (memfd >= 0) {
        r = arc_writer_begin(w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, &e);
        if (r == 0)
            r = arc_writer_stream_from_fd(w, memfd, NULL, &e);
        if (r == 0)
            r = arc_writer_end(w, &e);
    }
    for (int d = 0; r == 0; d++) {
        int s = arc_find_disk(base, d);
        if (s == ARC_STREAM_NONE)
            break;
        struct arc_stream_info si;
        arc_stream_get(base, (unsigned)s, &si);
        if (d == 0) {
            r = vm_disk_write_changes(o, 0, VM_SEQ_LIVE, w, si.name, si.size, &e);
        } else {
            r = arc_writer_begin(w, ARC_KIND_DISK, si.name, si.size, &e);   /* unchanged: all from the base */
            if (r == 0)
                r = arc_writer_end(w, &e);
        }
    }
    if (r == 0)
        r = copy_small(base, w, thin, &e);
    if (r < 0)
        return cli_fail_err(&e);
    struct nbd_layer_info *layers = NULL;
    size_t nl = 0;
    if (!keep)
        nbd_overlay_layers(o, &layers, &nl, NULL);
    r = arc_writer_finish(VS_STEAL(w), &e);
    if (r < 0) {
        free(layers);
        return cli_fail_err(&e);
    }
    /* Removed while our shared lock still keeps writers out (one that opened it after a close would lose what
     * it writes), the live layer first: an interrupted removal leaves stray frozen layers, never a live layer
     * whose frozen layers are gone. */
    for (size_t i = nl; i-- > 0;)
        unlink(layers[i].path);
    nbd_overlay_close(VS_STEAL(o));
    free(layers);
    printf("committed %s%s into %s (%s)\n", ovl_path, memory ? " and its memory" : "", out, thin ? "thin" : "thick");
    return CLI_OK;
}
