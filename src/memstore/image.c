/* memstore: the local page image. Per block: blockN.img (sparse, page at its guest offset) and blockN.sum (one
 * little-endian XXH64 per page; 0 = a zero page, a hole). blocks.json lists names and sizes; it is written last,
 * so a directory without it is an incomplete image. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>
#include <xxhash.h>

#include "memstore/memstore.h"

struct mst_image {
    char *dir;
    unsigned n;
    struct mst_image_block *b;
    int *img, *sum;                /* fds per block */
};

static uint64_t page_hash(const void *p)
{
    uint64_t h = XXH64(p, MST_PAGE_SIZE, 0);
    return h ? h : 1;              /* 0 means "zero page" */
}

void mst_image_close(struct mst_image *im)
{
    if (!im)
        return;
    for (unsigned i = 0; i < im->n; i++) {
        if (im->img[i] >= 0)
            close(im->img[i]);
        if (im->sum[i] >= 0)
            close(im->sum[i]);
    }
    free(im->img);
    free(im->sum);
    free(im->b);
    free(im->dir);
    free(im);
}

static struct mst_image *image_new(const char *dir, unsigned n)
{
    struct mst_image *im = vs_xcalloc(1, sizeof *im);
    im->dir = vs_xstrdup(dir);
    im->n = n;
    im->b = vs_xcalloc(n ? n : 1, sizeof *im->b);
    im->img = vs_xcalloc(n ? n : 1, sizeof(int));
    im->sum = vs_xcalloc(n ? n : 1, sizeof(int));
    for (unsigned i = 0; i < n; i++)
        im->img[i] = im->sum[i] = -1;
    return im;
}

static int open_files(struct mst_image *im, unsigned i, int flags, vs_err *e)
{
    VS_AUTOFREE char *p1 = vs_xasprintf("%s/block%u.img", im->dir, i);
    VS_AUTOFREE char *p2 = vs_xasprintf("%s/block%u.sum", im->dir, i);
    if ((im->img[i] = open(p1, flags | O_CLOEXEC, 0600)) < 0)
        return vs_err_sys(e, errno, "opening %s", p1);
    if ((im->sum[i] = open(p2, flags | O_CLOEXEC, 0600)) < 0)
        return vs_err_sys(e, errno, "opening %s", p2);
    if (flags & O_CREAT) {
        uint64_t pages = im->b[i].size / MST_PAGE_SIZE;
        if (ftruncate(im->img[i], (off_t)im->b[i].size) < 0 || ftruncate(im->sum[i], (off_t)(pages * 8)) < 0)
            return vs_err_sys(e, errno, "sizing the page image of block '%s' in %s", im->b[i].name, im->dir);
    }
    return 0;
}

int mst_image_create(const char *dir, const struct mst_image_block *b, unsigned n, struct mst_image **out,
                    vs_err *e)
{
    if (mkdir(dir, 0700) < 0)
        return vs_err_sys(e, errno, "creating page image directory %s", dir);
    struct mst_image *im = image_new(dir, n);
    for (unsigned i = 0; i < n; i++) {
        im->b[i] = b[i];
        int r;
        if (b[i].size % MST_PAGE_SIZE) {
            mst_image_close(im);
            return vs_err_set(e, EINVAL, "RAM block '%s': size %" PRIu64 " is not a multiple of 4 KiB",
                              b[i].name, b[i].size);
        }
        if ((r = open_files(im, i, O_RDWR | O_CREAT | O_EXCL, e)) < 0) {
            mst_image_close(im);
            return r;
        }
    }
    *out = im;
    return 0;
}

int mst_image_put(struct mst_image *im, unsigned i, uint64_t off, const void *data, vs_err *e)
{
    if (i >= im->n || off % MST_PAGE_SIZE || off >= im->b[i].size)
        return vs_err_set(e, EINVAL, "page image %s: page 0x%" PRIx64 " of block %u out of range", im->dir, off, i);
    uint8_t s[8];
    uint64_t h = 0;
    int r;
    if (data) {
        h = page_hash(data);
        if ((r = vs_pwrite_full(im->img[i], data, MST_PAGE_SIZE, (off_t)off)) < 0)
            return vs_err_sys(e, -r, "writing page image %s/block%u.img", im->dir, i);
    } else if (fallocate(im->img[i], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, MST_PAGE_SIZE) < 0) {
        return vs_err_sys(e, errno, "punching a hole in %s/block%u.img", im->dir, i);
    }
    vs_put_le64(s, h);
    if ((r = vs_pwrite_full(im->sum[i], s, 8, (off_t)(off / MST_PAGE_SIZE * 8))) < 0)
        return vs_err_sys(e, -r, "writing page image %s/block%u.sum", im->dir, i);
    return 0;
}

int mst_image_commit(struct mst_image *im, vs_err *e)
{
    for (unsigned i = 0; i < im->n; i++)
        if (fsync(im->img[i]) < 0 || fsync(im->sum[i]) < 0)
            return vs_err_sys(e, errno, "fsync of page image %s", im->dir);
    json_t *arr = json_array();
    for (unsigned i = 0; i < im->n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "name", im->b[i].name, "size", (json_int_t)im->b[i].size));
    json_t *j = json_pack("{s:i, s:o}", "version", 1, "blocks", arr);
    VS_AUTOFREE char *tmp = vs_xasprintf("%s/blocks.json.tmp", im->dir);
    VS_AUTOFREE char *fin = vs_xasprintf("%s/blocks.json", im->dir);
    int r = json_dump_file(j, tmp, JSON_INDENT(1));
    json_decref(j);
    if (r < 0)
        return vs_err_set(e, EIO, "writing %s", tmp);
    VS_AUTOCLOSE int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0 || rename(tmp, fin) < 0)
        return vs_err_sys(e, errno, "completing %s", fin);
    return vs_fsync_dir_of(fin, e);
}

int mst_image_open(const char *dir, struct mst_image **out, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("%s/blocks.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        return vs_err_set(e, EINVAL, "%s: %s (not a complete page image)", path, je.text);
    json_t *arr = json_object_get(j, "blocks");
    if (!json_is_array(arr) || json_array_size(arr) > 256) {
        json_decref(j);
        return vs_err_set(e, EINVAL, "%s: no \"blocks\" list", path);
    }
    struct mst_image *im = image_new(dir, (unsigned)json_array_size(arr));
    int r = 0;
    for (unsigned i = 0; i < im->n && r == 0; i++) {
        json_t *b = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(b, "name"));
        json_int_t size = json_integer_value(json_object_get(b, "size"));
        if (!name || strlen(name) > 255 || size <= 0 || size % MST_PAGE_SIZE) {
            r = vs_err_set(e, EINVAL, "%s: block %u has a bad name or size", path, i);
            break;
        }
        snprintf(im->b[i].name, sizeof im->b[i].name, "%s", name);
        im->b[i].size = (uint64_t)size;
        if ((r = open_files(im, i, O_RDONLY, e)) < 0)
            break;
        struct stat st1, st2;
        if (fstat(im->img[i], &st1) < 0 || fstat(im->sum[i], &st2) < 0 || (uint64_t)st1.st_size != im->b[i].size
            || (uint64_t)st2.st_size != im->b[i].size / MST_PAGE_SIZE * 8)
            r = vs_err_set(e, EINVAL, "%s: files of block %u ('%s') do not have the sizes it says", dir, i, name);
    }
    json_decref(j);
    if (r < 0) {
        mst_image_close(im);
        return r;
    }
    *out = im;
    return 0;
}

unsigned mst_image_blocks(const struct mst_image *im, const struct mst_image_block **b)
{
    *b = im->b;
    return im->n;
}

static int page_sum(struct mst_image *im, unsigned i, uint64_t off, uint64_t *h, vs_err *e)
{
    uint8_t s[8];
    ssize_t r = vs_pread_full(im->sum[i], s, 8, (off_t)(off / MST_PAGE_SIZE * 8));
    if (r != 8)
        return vs_err_sys(e, r < 0 ? (int)-r : EIO, "reading %s/block%u.sum", im->dir, i);
    *h = vs_get_le64(s);
    return 0;
}

bool mst_image_is_zero(struct mst_image *im, unsigned i, uint64_t off)
{
    uint64_t h;
    return i < im->n && page_sum(im, i, off, &h, NULL) == 0 && h == 0;
}

int mst_image_read(struct mst_image *im, unsigned i, void *buf, size_t len, uint64_t off, vs_err *e)
{
    if (i >= im->n || off > im->b[i].size || len > im->b[i].size - off)
        return vs_err_set(e, EINVAL, "page image %s: read beyond block %u", im->dir, i);
    ssize_t n = vs_pread_full(im->img[i], buf, len, (off_t)off);
    if (n < 0 || (size_t)n != len)
        return vs_err_sys(e, n < 0 ? (int)-n : EIO, "reading %s/block%u.img", im->dir, i);
    static const uint8_t zero[MST_PAGE_SIZE];
    uint8_t *p = buf;
    for (uint64_t pg = off / MST_PAGE_SIZE * MST_PAGE_SIZE; pg < off + len; pg += MST_PAGE_SIZE) {
        uint64_t h;
        int r = page_sum(im, i, pg, &h, e);
        if (r < 0)
            return r;
        /* Whole pages are checked; a read covering part of a page checks the page through a bounce buffer. */
        uint8_t tmp[MST_PAGE_SIZE];
        const uint8_t *page;
        if (pg >= off && pg + MST_PAGE_SIZE <= off + len) {
            page = p + (pg - off);
        } else {
            if (vs_pread_full(im->img[i], tmp, MST_PAGE_SIZE, (off_t)pg) != MST_PAGE_SIZE)
                return vs_err_sys(e, EIO, "reading %s/block%u.img", im->dir, i);
            page = tmp;
        }
        bool ok = h == 0 ? memcmp(page, zero, MST_PAGE_SIZE) == 0 : page_hash(page) == h;
        if (!ok)
            return vs_err_set(e, EIO, "page 0x%" PRIx64 " of RAM block '%s' fails its checksum (%s)", pg,
                              im->b[i].name, im->dir);
    }
    return 0;
}
