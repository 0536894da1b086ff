/* cli: vmsnap mem — memory as pages by hand, the pieces snap and boot use (docs/LAZY-RESUME.md):
 *   split       migration stream -> page image (split RAM blocks) + device stream
 *   reassemble  page image + device stream -> a complete migration stream
 *   serve       page image -> FUSE files (one per block) until SIGINT/SIGTERM
 *   pack        page image + device stream -> a .vmsnap archive (RAM streams per block + device stream)
 *   load        feed a stream (or an archive's device stream) to a QEMU waiting with -incoming defer
 *               (vm_resume_load, as boot does: getfd + pipe + migrate-incoming fd:)
 * serve and load take a page image directory or such an archive. */
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "archive/archive.h"
#include "migstream/migstream.h"
#include "memstore/memstore.h"
#include "pagefs/pagefs.h"
#include "qmp/qmp.h"
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

/* ---- split ----------------------------------------------------------------------------------------------- */
struct split {
    const char *want;              /* comma-separated block names to split */
    const char *dir;               /* temp dir being written */
    struct mst_image *im;
    int dev_fd;
    int map[MS_MAX_BLOCKS];        /* stream block index -> image block index, -1 */
};

static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0)
            return true;
        p += l + (c != NULL);
    }
    return false;
}

static int sp_blocks(void *opaque, struct ms_block *b, unsigned n, vs_err *e)
{
    struct split *s = opaque;
    struct mst_image_block ib[MS_MAX_BLOCKS];
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        b[i].split = listed(s->want, b[i].name);
        s->map[i] = b[i].split ? (int)k : -1;
        if (b[i].split) {
            snprintf(ib[k].name, sizeof ib[k].name, "%s", b[i].name);
            ib[k++].size = b[i].size;
        }
    }
    for (const char *p = s->want; *p;) {   /* every block asked for must exist */
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        bool found = false;
        for (unsigned i = 0; i < n; i++)
            found |= strlen(b[i].name) == l && memcmp(b[i].name, p, l) == 0;
        if (!found)
            return vs_err_set(e, ENOENT, "RAM block '%.*s' is not in the stream (its first block is '%s')",
                              (int)l, p, n ? b[0].name : "");
        p += l + (c != NULL);
    }
    return mst_image_create(s->dir, ib, k, &s->im, e);
}

static int sp_page(void *opaque, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e)
{
    struct split *s = opaque;
    return mst_image_put(s->im, (unsigned)s->map[b->index], off, data, e);
}

static int sp_device(void *opaque, const void *buf, size_t len, vs_err *e)
{
    struct split *s = opaque;
    int r = vs_write_full(s->dev_fd, buf, len);
    return r < 0 ? vs_err_sys(e, -r, "writing the device stream in %s", s->dir) : 0;
}

static void remove_tree(const char *dir)
{
    static const char *const fixed[] = { "device.stream", "blocks.json", "blocks.json.tmp" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(fixed); i++) {
        VS_AUTOFREE char *p = vs_xasprintf("%s/%s", dir, fixed[i]);
        unlink(p);
    }
    for (unsigned i = 0; i < MS_MAX_BLOCKS; i++) {
        VS_AUTOFREE char *p1 = vs_xasprintf("%s/block%u.img", dir, i);
        VS_AUTOFREE char *p2 = vs_xasprintf("%s/block%u.sum", dir, i);
        if (unlink(p1) < 0 && unlink(p2) < 0)
            break;
        unlink(p2);
    }
    rmdir(dir);
}

static int mem_split(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "split", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *want = "mem";
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "o:s:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': want = optarg; break;
        case 'j': json = true; break;
        default: return cli_usage("mem", "bad option to 'mem split'");
        }
    }
    if (optind != argc - 1 || !out || !*want)
        return cli_usage("mem", "usage: mem split STREAM|- -o DIR [--split BLOCK[,BLOCK...]] [--json]");
    const char *in = argv[optind];
    VS_AUTOCLOSE int fd = strcmp(in, "-") == 0 ? dup(0) : open(in, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("cannot open migration stream %s: %s", in, strerror(errno));
    if (access(out, F_OK) == 0)
        return cli_fail("%s already exists", out);
    VS_AUTOFREE char *tmp = vs_xasprintf("%s.partial-%d", out, (int)getpid());
    struct split s = { .want = want, .dir = tmp, .dev_fd = -1 };
    struct ms_ops ops = { .blocks = sp_blocks, .page = sp_page, .device = sp_device, .opaque = &s };
    vs_err e = { 0 };
    struct ms_summary sum;
    MS_PARSER_AUTOFREE struct ms_parser *p = NULL;
    int r = ms_parser_new(&ops, NULL, &p, &e);
    /* The device stream is written beside the image (whose directory exists only once the block list was
     * read) and moved into it at the end. */
    VS_AUTOFREE char *devtmp = vs_xasprintf("%s.device-%d", out, (int)getpid());
    if (r == 0 && (s.dev_fd = open(devtmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        r = vs_err_sys(&e, errno, "creating %s", devtmp);
    if (r == 0)
        r = ms_push_fd(p, fd, &e);
    if (r == 0)
        r = ms_finish(p, &sum, &e);
    if (r == 0 && !s.im)
        r = vs_err_set(&e, EBADMSG, "migration stream %s has no RAM block list", in);
    if (r == 0 && fsync(s.dev_fd) < 0)
        r = vs_err_sys(&e, errno, "fsync of %s", devtmp);
    VS_AUTOFREE char *devfin = vs_xasprintf("%s/device.stream", tmp);
    if (r == 0 && rename(devtmp, devfin) < 0)
        r = vs_err_sys(&e, errno, "moving the device stream into %s", tmp);
    if (r == 0)
        r = mst_image_commit(s.im, &e);
    if (r == 0 && rename(tmp, out) < 0)
        r = vs_err_sys(&e, errno, "renaming %s to %s", tmp, out);
    if (r == 0)
        r = vs_fsync_dir_of(out, &e);
    if (s.dev_fd >= 0)
        close(s.dev_fd);
    mst_image_close(s.im);
    if (r < 0) {
        unlink(devtmp);
        remove_tree(tmp);
        if (r == -ENOTSUP)
            return cli_fail("%s (store the stream opaque instead)", e.msg);
        return cli_fail_err(&e);
    }
    if (json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:s, s:i}", "stream_bytes",
                              (json_int_t)sum.bytes_in, "device_bytes", (json_int_t)sum.device_bytes, "pages",
                              (json_int_t)sum.pages, "zero_pages", (json_int_t)sum.zero_pages, "kept_pages",
                              (json_int_t)sum.kept_pages, "ram_total", (json_int_t)sum.ram_total, "blocks",
                              (int)sum.nblocks, "machine", sum.machine, "devices", (int)sum.devices);
        char *txt = json_dumps(j, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("%s: %" PRIu64 " pages split out (%" PRIu64 " zero), %" PRIu64 " kept, device stream %" PRIu64
               " bytes, machine %s\n", out, sum.pages, sum.zero_pages, sum.kept_pages, sum.device_bytes,
               sum.machine);
    }
    return CLI_OK;
}

/* ---- reassemble -------------------------------------------------------------------------------------------- */
struct ra { struct mst_image *im; };

static int ra_find(struct mst_image *im, const char *name)
{
    const struct mst_image_block *b;
    unsigned n = mst_image_blocks(im, &b);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool ra_want(void *opaque, const struct ms_block *b)
{
    struct ra *r = opaque;
    return ra_find(r->im, b->name) >= 0;
}

static int ra_fill(void *opaque, const struct ms_block *b, uint64_t off, uint8_t *buf, bool *zero, vs_err *e)
{
    struct ra *r = opaque;
    int i = ra_find(r->im, b->name);
    if (mst_image_is_zero(r->im, (unsigned)i, off)) {
        *zero = true;
        return 0;
    }
    *zero = false;
    return mst_image_read(r->im, (unsigned)i, buf, MS_PAGE_SIZE, off, e);
}

static int mem_reassemble(int argc, char **argv)
{
    if (argc != 4 || strcmp(argv[2], "-o") != 0)
        return cli_usage("mem", "usage: mem reassemble DIR -o STREAM");
    const char *dir = argv[1], *out = argv[3];
    vs_err e = { 0 };
    struct ra ra = { 0 };
    int r = mst_image_open(dir, &ra.im, &e);
    if (r < 0)
        return cli_fail_err(&e);
    VS_AUTOFREE char *dev = vs_xasprintf("%s/device.stream", dir);
    VS_AUTOCLOSE int dfd = open(dev, O_RDONLY | O_CLOEXEC);
    VS_AUTOCLOSE int ofd = strcmp(out, "-") == 0 ? dup(1) : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dfd < 0 || ofd < 0) {
        mst_image_close(ra.im);
        return cli_fail("cannot open %s: %s", dfd < 0 ? dev : out, strerror(errno));
    }
    struct ms_page_reader rd = { .fill = ra_fill, .want = ra_want, .opaque = &ra };
    r = ms_reassemble(dfd, ofd, &rd, NULL, &e);
    mst_image_close(ra.im);
    return r < 0 ? cli_fail_err(&e) : CLI_OK;
}

/* ---- pack ------------------------------------------------------------------------------------------------- */
static int mem_pack(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "compress", required_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    const char *out = NULL;
    vs_err e = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'c' && arc_parse_codec(optarg, &wo.codec, &wo.level, &e) < 0)
            return cli_usage("mem", "%s", e.msg);
        else if (c != 'c')
            return cli_usage("mem", "bad option to 'mem pack'");
    }
    if (optind != argc - 1 || !out)
        return cli_usage("mem", "usage: mem pack DIR -o OUT.vmsnap [--compress CODEC]");
    const char *dir = argv[optind];
    struct mst_image *im = NULL;
    if (mst_image_open(dir, &im, &e) < 0)
        return cli_fail_err(&e);
    VS_AUTOFREE char *dev = vs_xasprintf("%s/device.stream", dir);
    VS_AUTOCLOSE int dfd = open(dev, O_RDONLY | O_CLOEXEC);
    if (dfd < 0) {
        mst_image_close(im);
        return cli_fail("cannot open %s: %s", dev, strerror(errno));
    }
    struct arc_writer *w = NULL;
    int r = arc_writer_create(out, &wo, &w, &e);
    if (r == 0)
        r = mst_image_to_archive(im, w, &e);
    if (r == 0 && (r = arc_writer_begin(w, ARC_KIND_OTHER, MST_DEVICE, ARC_SIZE_UNKNOWN, &e)) == 0
        && (r = arc_writer_stream_from_fd(w, dfd, NULL, &e)) == 0)
        r = arc_writer_end(w, &e);
    mst_image_close(im);
    if (r < 0) {
        arc_writer_abort(w);
        return cli_fail_err(&e);
    }
    return arc_writer_finish(w, &e) < 0 ? cli_fail_err(&e) : CLI_OK;
}

/* ---- serve ------------------------------------------------------------------------------------------------- */
struct sv_file { struct mst_image *im; unsigned i; };

static int sv_read(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct sv_file *f = opaque;
    return mst_image_read(f->im, f->i, buf, len, off, e);
}

static volatile sig_atomic_t stop_signal;
static void on_stop(int sig) { stop_signal = sig; }

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int mem_serve(int argc, char **argv)
{
    if (argc != 3)
        return cli_usage("mem", "usage: mem serve DIR|ARCHIVE MOUNTPOINT");
    const char *dir = argv[1], *mnt = argv[2];
    vs_err e = { 0 };
    struct mst_image *im = NULL;
    ARC_AUTOCLOSE struct arc *a = NULL;
    struct pf_file *afiles = NULL;
    unsigned n = 0;
    const struct mst_image_block *b = NULL;
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct arc_open_opts ao = { 0 };
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };   /* $VMSNAP_TRUSTED_KEYS */
    if (!is_dir(dir)) {
        if (cli_key(NULL, CLI_KEY_ENV, &key, &ao.key, &e) < 0 || cli_trust_load(NULL, &trust, &e) < 0 ||
            cli_open_trusted(dir, &ao, &trust, &a, &e) < 0 ||
            pf_archive_files(a, &afiles, &n, &e) < 0)
            return cli_fail_err(&e);
        if (n == 0) {
            pf_archive_files_free(afiles, n);
            return cli_fail("%s holds no RAM streams (\"%s...\")", dir, MST_RAM_PREFIX);
        }
    } else if (mst_image_open(dir, &im, &e) < 0) {
        return cli_fail_err(&e);
    } else {
        n = mst_image_blocks(im, &b);
    }
    struct pf_file files[MS_MAX_BLOCKS];
    struct sv_file sf[MS_MAX_BLOCKS];
    char names[MS_MAX_BLOCKS][256];
    for (unsigned i = 0; i < n && a; i++)
        files[i] = afiles[i];
    for (unsigned i = 0; i < n && !a; i++) {
        snprintf(names[i], sizeof names[i], "%s", b[i].name);
        for (char *c = names[i]; *c; c++)   /* block names may hold '/': flatten for a file name */
            if (*c == '/')
                *c = '_';
        sf[i] = (struct sv_file){ im, i };
        files[i] = (struct pf_file){ .name = names[i], .size = b[i].size, .read = sv_read, .opaque = &sf[i] };
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_sigmask(SIG_BLOCK, &set, &old);   /* the FUSE threads inherit the mask: signals come here */
    struct pf_mount *m = NULL;
    int r = pf_mount(mnt, files, n, &m, &e);
    if (r < 0) {
        mst_image_close(im);
        pf_archive_files_free(afiles, a ? n : 0);
        return cli_fail_err(&e);
    }
    printf("ready %s\n", mnt);
    fflush(stdout);
    while (!stop_signal)
        sigsuspend(&old);
    struct pf_stats st;
    pf_get_stats(m, &st);
    pf_unmount(m);
    mst_image_close(im);
    pf_archive_files_free(afiles, a ? n : 0);
    json_t *j = json_pack("{s:I, s:I, s:I, s:s}", "reads", (json_int_t)st.reads, "bytes", (json_int_t)st.bytes,
                          "errors", (json_int_t)st.errors, "first_error", st.first_error);
    char *txt = json_dumps(j, JSON_COMPACT);
    printf("%s\n", txt);
    free(txt);
    json_decref(j);
    if (st.errors)
        fprintf(stderr, "vmsnap: %" PRIu64 " page reads failed; first: %s\n", st.errors, st.first_error);
    return CLI_OK;
}

/* ---- load -------------------------------------------------------------------------------------------------- */
static int mem_load(int argc, char **argv)
{
    static const struct option opts[] = {
        { "qmp", required_argument, NULL, 'Q' }, { "json", no_argument, NULL, 'j' },
        { "key", required_argument, NULL, 'K' }, { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = NULL, *keyfile = NULL, *trusted_keys = NULL;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'Q')
            sock = optarg;
        else if (c == 'j')
            json = true;
        else if (c == 'K')
            keyfile = optarg;
        else if (c == CLI_OPT_TRUSTED_KEYS)
            trusted_keys = optarg;
        else
            return cli_usage("mem", "bad option to 'mem load'");
    }
    if (optind != argc - 1 || !sock)
        return cli_usage("mem", "usage: mem load --qmp SOCKET STREAM [--json]");
    const char *in = argv[optind];
    vs_err e = { 0 };
    double t0 = vs_now_s();
    /* An archive feeds its device stream through arc_pread (checked blocks); anything else is a stream file. */
    ARC_AUTOCLOSE struct arc *a = NULL;
    struct vm_load_src src = { .fd = -1 };
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct arc_open_opts ao = { 0 };
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &ao.key, &e) < 0 || cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    int ar = cli_open_trusted(in, &ao, &trust, &a, &e);
    /* an archive whose key is missing, or, with trusted keys, anything unsigned: a stream file carries no signature */
    if (ar == -ENOKEY || ar == -EKEYREJECTED || (ar < 0 && trust.kr))
        return cli_fail_err(&e);
    if (ar == 0) {
        int dev = arc_find_stream(a, ARC_KIND_OTHER, MST_DEVICE);
        if (dev == ARC_STREAM_NONE)
            return cli_fail("%s has no \"%s\" stream (not a paged memory snapshot)", in, MST_DEVICE);
        src = (struct vm_load_src){ .a = a, .stream = (unsigned)dev, .fd = -1 };
    }
    VS_AUTOCLOSE int sfd = a ? -1 : open(in, O_RDONLY | O_CLOEXEC);
    if (!a && sfd < 0)
        return cli_fail("cannot open %s: %s", in, strerror(errno));
    if (!a) {
        src.fd = sfd;
        e = (vs_err){ 0 };   /* why it is no archive: not an error for a stream file */
    }
    QMP_AUTOCLOSE struct qmp *q = NULL;
    if (qmp_connect(sock, NULL, &q, &e) < 0)
        return cli_fail_err(&e);
    struct vm_load_info li;
    if (vm_resume_load(q, &src, 600, &li, &e) < 0) {
        vs_err_prefix(&e, "loading %s into QEMU on %s", in, sock);
        return cli_fail_err(&e);
    }
    double t1 = vs_now_s();
    if (json)
        printf("{\"stream_bytes\": %" PRIu64 ", \"fed_s\": %.6f, \"running_s\": %.6f, \"was\": \"%s\"}\n",
               li.stream_bytes, li.fed_s, t1 - t0, li.was);
    else
        printf("loaded %" PRIu64 " bytes, running after %.1f ms\n", li.stream_bytes, (t1 - t0) * 1000);
    return CLI_OK;
}

int cmd_mem(int argc, char **argv)
{
    static const struct { const char *name; int (*fn)(int, char **); } sub[] = {
        { "split", mem_split }, { "reassemble", mem_reassemble }, { "serve", mem_serve }, { "load", mem_load },
        { "pack", mem_pack },
    };
    if (argc < 2)
        return cli_usage("mem", "missing subcommand (split, reassemble, pack, serve, load)");
    for (size_t i = 0; i < VS_ARRAY_SIZE(sub); i++)
        if (strcmp(argv[1], sub[i].name) == 0)
            return sub[i].fn(argc - 1, argv + 1);
    return cli_usage("mem", "unknown subcommand '%s'", argv[1]);
}
