/* cli: vmsnap pack — disk images (raw or qcow2) (+ memory stream, config) into a .vmsnap archive. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK (1u << 20)

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

struct pack { struct arc_writer *w; struct cli_progress prog; uint64_t done; uint8_t *buf; };

static int copy_range(struct pack *p, struct img *im, uint64_t from, uint64_t to, vs_err *e)
{
    while (from < to) {
        if (interrupted)
            return vs_err_set(e, EINTR, "interrupted");
        size_t n = (size_t)VS_MIN((uint64_t)CHUNK, to - from);
        int r = img_pread(im, p->buf, n, from, e);
        if (r == 0)
            r = arc_writer_pwrite(p->w, p->buf, n, from, e);
        if (r < 0)
            return r;
        from += n;
        p->done += n;
        cli_progress_update(&p->prog, p->done);
    }
    return 0;
}

/* Data is copied, holes (sparse raw files, qcow2 zero/unallocated clusters) declared zero: a 1 TiB sparse image
 * with a few blocks packs in no time. */
static int pack_disk(struct pack *p, struct img *im, int idx, vs_err *e)
{
    uint64_t size = img_size(im);
    char name[32];
    snprintf(name, sizeof name, "disk%d", idx);
    int r = arc_writer_begin(p->w, ARC_KIND_DISK, name, size, e);
    for (uint64_t pos = 0, run; r >= 0 && pos < size; pos += run) {
        unsigned flags;
        r = img_block_status(im, pos, size - pos, &run, &flags, e);
        if (r < 0)
            break;
        if (flags & IMG_STATUS_ZERO) {
            r = arc_writer_zero(p->w, pos, run, e);
            p->done += run;
        } else {
            r = copy_range(p, im, pos, pos + run, e);
        }
    }
    return r < 0 ? r : arc_writer_end(p->w, e);
}

static int pack_memory(struct pack *p, const char *path, vs_err *e)
{
    VS_AUTOCLOSE int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : dup(STDIN_FILENO);
    struct stat st;
    if (fd < 0)
        return vs_err_sys(e, errno, "cannot open memory stream '%s'", path);
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        return vs_err_set(e, EISDIR, "memory stream '%s' is a directory", path);
    int r = arc_writer_begin(p->w, ARC_KIND_MEMORY, "memory", ARC_SIZE_UNKNOWN, e);
    while (r >= 0) {
        if (interrupted)
            return vs_err_set(e, EINTR, "interrupted");
        ssize_t n = vs_read_full(fd, p->buf, CHUNK);
        if (n < 0)
            return vs_err_sys(e, (int)-n, "reading memory stream '%s'", path);
        if (n == 0)
            break;
        r = arc_writer_write(p->w, p->buf, (size_t)n, e);
        p->done += (uint64_t)n;
        cli_progress_update(&p->prog, p->done);
    }
    return r < 0 ? r : arc_writer_end(p->w, e);
}

static int pack_config(struct pack *p, const char *path, vs_err *e)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return vs_err_sys(e, errno, "cannot open config '%s'", path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20))
        return vs_err_set(e, EINVAL, "config '%s' is not a regular file of at most 16 MiB", path);
    VS_AUTOFREE char *buf = vs_xmalloc((size_t)st.st_size + 1);
    ssize_t n = vs_read_full(fd, buf, (size_t)st.st_size);
    if (n < 0)
        return vs_err_sys(e, (int)-n, "reading config '%s'", path);
    json_error_t je;
    json_t *j = json_loadb(buf, (size_t)n, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return vs_err_set(e, EINVAL, "config '%s' is not a JSON object (line %d: %s)", path, je.line,
                          j ? "not an object" : je.text);
    }
    json_decref(j);
    return arc_writer_add(p->w, ARC_KIND_CONFIG, "config", buf, (size_t)n, e);
}

int cmd_pack(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "memory", required_argument, NULL, 'M' },
        { "config", required_argument, NULL, 'C' }, { "compress", required_argument, NULL, 'c' },
        { "block-size", required_argument, NULL, 'b' }, { "threads", required_argument, NULL, 'T' },
        { "parent", required_argument, NULL, 'P' }, { "message", required_argument, NULL, 'm' },
        { "quiet", no_argument, NULL, 'q' }, { "format", required_argument, NULL, 'f' },
        { "follow-backing", optional_argument, NULL, 'B' }, { "encrypt", required_argument, NULL, 'E' },
        { "key", required_argument, NULL, 'K' },            { "cipher", required_argument, NULL, 'X' },
        { NULL, 0, NULL, 0 },
    };
    const char *encrypt = NULL, *keyfile = NULL;
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    const char *out = NULL, *memory = NULL, *config = NULL, *backing_dir = NULL;
    bool quiet = false, follow = false;
    enum img_format fmt = IMG_FORMAT_AUTO;
    vs_err e = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "o:qm:", opts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'o': out = optarg; break;
        case 'M': memory = optarg; break;
        case 'C': config = optarg; break;
        case 'P': wo.parent_path = optarg; wo.thin = true; break;
        case 'm': wo.message = optarg; break;
        case 'q': quiet = true; break;
        case 'B': follow = true; backing_dir = optarg; break;
        case 'E': encrypt = optarg; break;
        case 'K': keyfile = optarg; break;
        case 'X':
            if (cli_cipher_opt("pack", optarg))
                return CLI_USAGE;
            wo.cipher = optarg;
            break;
        case 'f':
            if (img_parse_format(optarg, &fmt) < 0)
                return cli_usage("pack", "bad --format '%s' (raw, qcow2 or auto)", optarg);
            break;
        case 'c':
            if (arc_parse_codec(optarg, &wo.codec, &wo.level, &e) < 0)
                return cli_usage("pack", "%s", e.msg);
            break;
        case 'b':
            if (vs_parse_size(optarg, &v) < 0 || v > UINT32_MAX || !(v >= ARC_MIN_BLOCK_SIZE && v <= ARC_MAX_BLOCK_SIZE)
                || (v & (v - 1)))
                return cli_usage("pack", "bad --block-size '%s' (a power of two from 4K to 4M)", optarg);
            wo.block_size = (uint32_t)v;
            break;
        case 'T':
            if (vs_parse_size(optarg, &v) < 0 || v < 1 || v > 64)
                return cli_usage("pack", "bad --threads '%s' (1..64)", optarg);
            wo.threads = (int)v;
            break;
        default:
            return cli_usage("pack", "bad arguments");
        }
    }
    if (!out)
        return cli_usage("pack", "missing -o OUT.vmsnap");
    if (wo.cipher && !encrypt && !wo.parent_path)
        return cli_usage("pack", "--cipher goes with --encrypt KEYFILE (or an encrypted --parent)");
    if (optind >= argc && !memory)
        return cli_usage("pack", "nothing to pack: give at least one disk image or --memory");
    struct cr_key key CR_KEY_AUTOWIPE = { 0 }, pkey CR_KEY_AUTOWIPE = { 0 };
    if (cli_key(encrypt, NULL, &key, &wo.key, &e) < 0 ||
        (wo.parent_path && cli_key(keyfile, CLI_KEY_ENV, &pkey, &wo.parent_key, &e) < 0))
        return cli_fail_err(&e);

    /* Every disk is opened (and its format checked) before anything is written. */
    int ndisks = argc - optind, r = 0;
    struct img **disks = vs_xcalloc((size_t)ndisks + 1, sizeof *disks);
    uint64_t total = 0;
    for (int i = 0; r >= 0 && i < ndisks; i++) {
        VS_AUTOFREE char *dir = vs_xstrdup(argv[optind + i]);
        struct img_opts io = { .format = fmt, .backing_dir = !follow ? NULL : backing_dir ? backing_dir : dirname(dir) };
        r = img_open(argv[optind + i], &io, &disks[i], &e);
        if (r < 0)
            break;
        total += img_size(disks[i]);
        if (img_raw_with_qcow2_magic(disks[i]) && !quiet && fmt == IMG_FORMAT_AUTO)
            fprintf(stderr, "vmsnap: note: '%s' starts with a qcow2 header but is not named .qcow2: packed as raw "
                    "bytes (--format qcow2 reads it as qcow2)\n", argv[optind + i]);
    }
    if (r < 0) {
        for (int i = 0; i < ndisks; i++)
            img_close(disks[i]);
        free(disks);
        return cli_fail("%s", e.msg);
    }
    struct pack p = { .buf = vs_xmalloc(CHUNK) };
    struct stat mst;
    if (memory && stat(memory, &mst) == 0 && S_ISREG(mst.st_mode))
        total += (uint64_t)mst.st_size;
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    r = arc_writer_create(out, &wo, &p.w, &e);
    cli_progress_init(&p.prog, cli_progress_enabled(quiet), "pack", total);
    for (int i = 0; r >= 0 && i < ndisks; i++)
        r = pack_disk(&p, disks[i], i, &e);
    if (r >= 0 && memory)
        r = pack_memory(&p, memory, &e);
    if (r >= 0 && config)
        r = pack_config(&p, config, &e);
    if (r >= 0) {
        r = arc_writer_finish(p.w, &e);
        p.w = NULL;
    }
    arc_writer_abort(p.w);
    cli_progress_done(&p.prog);
    free(p.buf);
    for (int i = 0; i < ndisks; i++)
        img_close(disks[i]);
    free(disks);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (r < 0)
        return cli_fail("%s", e.msg);
    return CLI_OK;
}
