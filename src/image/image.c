/* image: opening images (file, block device, memory), format detection, the raw format, and the checks that sit
 * in front of every format's read/status. */
#include "image/image_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>

static const char QCOW2_MAGIC[4] = { 'Q', 'F', 'I', (char)0xfb };

const char *img_format_name(enum img_format f)
{
    switch (f) {
    case IMG_FORMAT_RAW: return "raw";
    case IMG_FORMAT_QCOW2: return "qcow2";
    default: return "auto";
    }
}

int img_parse_format(const char *s, enum img_format *out)
{
    for (enum img_format f = IMG_FORMAT_AUTO; f <= IMG_FORMAT_QCOW2; f++)
        if (!strcmp(s, img_format_name(f))) {
            *out = f;
            return 0;
        }
    return -EINVAL;
}

int img_file_pread(struct img *im, void *buf, size_t len, uint64_t off, bool zero_tail, vs_err *e)
{
    size_t have = off >= im->file_size ? 0 : (size_t)VS_MIN((uint64_t)len, im->file_size - off);
    if (have < len && !zero_tail)
        return vs_err_set(e, EIO, "'%s': %zu bytes at offset %" PRIu64 " pass the end of the file (%" PRIu64
                          " bytes): truncated image", im->name, len, off, im->file_size);
    if (im->mem && have) {
        memcpy(buf, im->mem + off, have);
    } else if (have) {
        ssize_t n = vs_pread_full(im->fd, buf, have, (off_t)off);
        if (n < 0)
            return vs_err_sys(e, (int)-n, "reading '%s' at offset %" PRIu64, im->name, off);
        if ((size_t)n < have)
            return vs_err_set(e, EIO, "'%s' shrank while being read (ends at %" PRIu64 ")", im->name,
                              off + (uint64_t)n);
    }
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}

/* ---- raw ------------------------------------------------------------------------------------------------- */
static int raw_pread(struct img *im, void *buf, size_t len, uint64_t off, vs_err *e)
{
    return img_file_pread(im, buf, len, off, false, e);
}

/* Holes of a sparse file are zero; without SEEK_DATA (or on a device) everything is data. */
static int raw_status(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e)
{
    (void)e;
    uint64_t end = off + len;
    *flags = IMG_STATUS_DATA;
    *run = len;
    if (!im->seekable_holes)
        return 0;
    off_t d = lseek(im->fd, (off_t)off, SEEK_DATA);
    if (d < 0 && errno == ENXIO) {
        *flags = IMG_STATUS_ZERO;            /* only a hole up to the end of the file */
    } else if (d >= 0 && (uint64_t)d > off) {
        *flags = IMG_STATUS_ZERO;
        *run = VS_MIN((uint64_t)d, end) - off;
    } else if (d >= 0) {
        off_t h = lseek(im->fd, (off_t)off, SEEK_HOLE);
        if (h > (off_t)off)
            *run = VS_MIN((uint64_t)h, end) - off;
    }
    return 0;
}

static void raw_free(struct img *im) { (void)im; }

static const struct img_ops raw_ops = { raw_pread, raw_status, raw_free };

/* ---- handles --------------------------------------------------------------------------------------------- */
static bool named_qcow2(const char *name)
{
    size_t n = strlen(name);
    return n > 6 && !strcasecmp(name + n - 6, ".qcow2");
}

/* The format is the caller's or the name's (image.h): the bytes only confirm it. */
static int probe(struct img *im, enum img_format fmt, vs_err *e)
{
    uint8_t magic[4] = { 0 };
    if (im->file_size >= 4) {
        int r = img_file_pread(im, magic, 4, 0, false, e);
        if (r < 0)
            return r;
        im->qcow2_magic = !memcmp(magic, QCOW2_MAGIC, 4);
    }
    if (fmt == IMG_FORMAT_AUTO)
        fmt = named_qcow2(im->name) ? IMG_FORMAT_QCOW2 : IMG_FORMAT_RAW;
    if (fmt == IMG_FORMAT_QCOW2 && !im->qcow2_magic)
        return vs_err_set(e, EINVAL, "'%s' is not a qcow2 image (no 'QFI\\xfb' magic at offset 0)%s", im->name,
                          named_qcow2(im->name) ? "; its name says qcow2: --format raw reads its bytes" : "");
    if (fmt == IMG_FORMAT_QCOW2)
        return img_qcow2_open(im, e);
    im->format = IMG_FORMAT_RAW;
    im->ops = &raw_ops;
    im->size = im->file_size;
    return 0;
}

static struct img *img_new(const char *name, unsigned depth)
{
    struct img *im = vs_xcalloc(1, sizeof *im);
    im->name = vs_xstrdup(name);
    im->fd = -1;
    im->depth = depth;
    return im;
}

/* Open path, known to the user as name. A backing file (depth > 0) must be a regular file: never a device,
 * FIFO or socket, whose open or read could block or touch hardware. */
static int open_file(const char *path, const char *name, enum img_format fmt, unsigned depth, const char *root,
                     struct img **out, vs_err *e)
{
    struct img *im = img_new(name, depth);
    im->path = vs_xstrdup(path);
    im->backing_root = root ? vs_xstrdup(root) : NULL;
    int r = 0;
    struct stat st;
    if (depth && (stat(path, &st) < 0 || !S_ISREG(st.st_mode)))
        r = vs_err_set(e, EINVAL, "'%s' is not a regular file", name);
    else if ((im->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (depth ? O_NOFOLLOW : 0))) < 0)
        r = vs_err_sys(e, errno, "cannot open disk image '%s'", name);
    else if (fstat(im->fd, &st) < 0)
        r = vs_err_sys(e, errno, "cannot stat '%s'", name);
    else if (S_ISREG(st.st_mode))
        im->file_size = (uint64_t)st.st_size, im->seekable_holes = true;
    else if (depth || !S_ISBLK(st.st_mode) || ioctl(im->fd, BLKGETSIZE64, &im->file_size) < 0)
        r = vs_err_set(e, EINVAL, "'%s' is %s, expected a disk image file or block device", name,
                       S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "not a regular file");
    if (r == 0) {
        fcntl(im->fd, F_SETFL, fcntl(im->fd, F_GETFL) & ~O_NONBLOCK);
        r = probe(im, fmt, e);
    }
    if (r < 0) {
        img_close(im);
        return r;
    }
    *out = im;
    return 0;
}

int img_open(const char *path, const struct img_opts *opts, struct img **out, vs_err *e)
{
    VS_AUTOFREE char *root = NULL;
    if (opts->backing_dir && !(root = realpath(opts->backing_dir, NULL)))
        return vs_err_sys(e, errno, "backing file directory '%s'", opts->backing_dir);
    return open_file(path, path, opts->format, 0, root, out, e);
}

bool img_raw_with_qcow2_magic(const struct img *im) { return im->format == IMG_FORMAT_RAW && im->qcow2_magic; }

int img_open_mem(const void *buf, size_t len, const char *name, enum img_format fmt, struct img **out, vs_err *e)
{
    struct img *im = img_new(name, 0);
    im->mem = buf;
    im->file_size = len;
    int r = probe(im, fmt, e);
    if (r < 0) {
        img_close(im);
        return r;
    }
    *out = im;
    return 0;
}

static bool inside(const char *path, const char *root)
{
    size_t n = strlen(root);
    return !strcmp(root, "/") || (!strncmp(path, root, n) && path[n] == '/');
}

int img_open_backing(struct img *parent, const char *name, enum img_format fmt, struct img **out, vs_err *e)
{
    if (!parent->path)
        return vs_err_set(e, ENOTSUP, "'%s' has a backing file '%s': not supported for in-memory images",
                          parent->name, name);
    if (!parent->backing_root)
        return vs_err_set(e, EPERM, "'%s' has backing file '%s': backing files are followed only when asked "
                          "(pack --follow-backing)", parent->name, name);
    if (parent->depth + 1 >= IMG_MAX_CHAIN)
        return vs_err_set(e, ELOOP, "'%s': backing chain deeper than %d images (a loop?)", parent->name,
                          IMG_MAX_CHAIN);
    static const char *const protocols[] = { "json:", "file:", "nbd:", "nbd+", "http:", "https:", "ftp:", "ftps:",
                                             "ssh:", "iscsi:", "gluster:", "gluster+", "rbd:", "sheepdog:", "vvfat:" };
    bool proto = !*name;
    for (size_t i = 0; i < VS_ARRAY_SIZE(protocols); i++)
        proto |= !strncmp(name, protocols[i], strlen(protocols[i]));
    if (proto)
        return vs_err_set(e, ENOTSUP, "'%s' has backing file '%s', which is not a plain file name; flatten it "
                          "first: qemu-img convert -O qcow2 '%s' FLAT.qcow2", parent->name, name, parent->name);
    VS_AUTOFREE char *dup = vs_xstrdup(parent->path);
    VS_AUTOFREE char *path = name[0] == '/' ? vs_xstrdup(name) : vs_xasprintf("%s/%s", dirname(dup), name);
    VS_AUTOFREE char *real = realpath(path, NULL);
    int r;
    if (!real)
        r = vs_err_sys(e, errno, "'%s'", path);
    else if (!inside(real, parent->backing_root))
        r = vs_err_set(e, EPERM, "'%s' is %s, outside %s, the directory backing files may come from "
                       "(--follow-backing=DIR)", name, real, parent->backing_root);
    else
        r = open_file(real, path, fmt, parent->depth + 1, parent->backing_root, out, e);
    if (r < 0)
        vs_err_prefix(e, "backing file of '%s'", parent->name);
    return r;
}

void img_close(struct img *im)
{
    if (!im)
        return;
    if (im->ops)
        im->ops->free(im);
    img_close(im->backing);
    if (im->fd >= 0)
        close(im->fd);
    free(im->name);
    free(im->path);
    free(im->backing_root);
    free(im);
}

void img_closep(struct img **im) { img_close(*im); }

enum img_format img_format(const struct img *im) { return im->format; }
uint64_t img_size(const struct img *im) { return im->size; }
const char *img_name(const struct img *im) { return im->name; }

unsigned img_backing_depth(const struct img *im)
{
    unsigned n = 0;
    for (const struct img *b = im->backing; b; b = b->backing)
        n++;
    return n;
}

static int check_range(const struct img *im, uint64_t off, uint64_t len, vs_err *e)
{
    if (off > im->size || len > im->size - off)
        return vs_err_set(e, EINVAL, "'%s': range %" PRIu64 "+%" PRIu64 " passes the end of the disk (%" PRIu64
                          " bytes)", im->name, off, len, im->size);
    return 0;
}

int img_pread(struct img *im, void *buf, size_t len, uint64_t off, vs_err *e)
{
    int r = check_range(im, off, len, e);
    return r < 0 || !len ? r : im->ops->pread(im, buf, len, off, e);
}

int img_block_status(struct img *im, uint64_t off, uint64_t len, uint64_t *run, unsigned *flags, vs_err *e)
{
    int r = check_range(im, off, len, e);
    if (r == 0 && !len)
        r = vs_err_set(e, EINVAL, "'%s': empty range for block status", im->name);
    return r < 0 ? r : im->ops->status(im, off, len, run, flags, e);
}
