/* archive: byte-range sources — a local file (pread) and a borrowed memory buffer. */
#include "archive/archive.h"
#include "objstore/objstore.h"

#include <inttypes.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

struct file_src {
    struct arc_source s;
    int fd;
    struct timespec mtime;         /* at open: a later difference (or of size) means a write in place */
    atomic_bool changed;           /* latched: a file that changed once is never trusted again */
};

static int file_check(struct arc_source *s, vs_err *e)
{
    struct file_src *f = (struct file_src *)s;
    struct stat st;
    if (!atomic_load(&f->changed)) {
        if (fstat(f->fd, &st) < 0)
            return vs_err_sys(e, errno, "%s: cannot check whether it changed", s->name);
        if ((uint64_t)st.st_size == s->size && st.st_mtim.tv_sec == f->mtime.tv_sec
            && st.st_mtim.tv_nsec == f->mtime.tv_nsec)
            return 0;
        atomic_store(&f->changed, true);
    }
    return vs_err_set(e, ESTALE, "archive %s was modified in place after it was opened (it must not change while "
                      "it is read): refusing to read from it", s->name);
}

static int file_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct file_src *f = (struct file_src *)s;
    if (off > s->size || len > s->size - off)
        return vs_err_set(e, EIO, "%s: truncated: wanted %zu bytes at offset %" PRIu64 " of %" PRIu64, s->name, len,
                          off, s->size);
    ssize_t n = vs_pread_full(f->fd, buf, len, (off_t)off);
    if (n < 0)
        return vs_err_sys(e, (int)-n, "%s: reading %zu bytes at offset %" PRIu64, s->name, len, off);
    if ((size_t)n < len)
        return vs_err_set(e, EIO, "%s: truncated: wanted %zu bytes at offset %" PRIu64 ", file ends at %" PRIu64,
                          s->name, len, off, off + (uint64_t)n);
    return 0;
}

static void file_close(struct arc_source *s)
{
    struct file_src *f = (struct file_src *)s;
    close(f->fd);
    free(s->name);
    free(s->path);
    free(s->version);
    free(f);
}

int arc_source_open_file(const char *path, struct arc_source **out, vs_err *e)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return vs_err_sys(e, errno, "cannot open archive '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vs_err_sys(e, errno, "cannot stat '%s'", path);
    if (S_ISDIR(st.st_mode))
        return vs_err_set(e, EISDIR, "'%s' is a directory, expected a .vmsnap archive file", path);
    if (!S_ISREG(st.st_mode))
        return vs_err_set(e, EINVAL, "'%s' is not a regular file, expected a .vmsnap archive file", path);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct file_src *f = vs_xcalloc(1, sizeof *f);
    f->fd = VS_STEAL_FD(fd);
    f->s.pread = file_pread;
    f->s.close = file_close;
    f->s.check = file_check;
    f->mtime = st.st_mtim;
    f->s.size = (uint64_t)st.st_size;
    f->s.name = vs_xstrdup(path);
    f->s.path = vs_xstrdup(path);
    f->s.version = vs_xasprintf("file %ju:%ju mtime %lld.%09ld", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
                                (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    *out = &f->s;
    return 0;
}

struct mem_src { struct arc_source s; const uint8_t *buf; };

static int mem_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct mem_src *m = (struct mem_src *)s;
    if (off > s->size || len > s->size - off)
        return vs_err_set(e, EIO, "%s: truncated: wanted %zu bytes at offset %" PRIu64 " of %" PRIu64, s->name, len,
                          off, s->size);
    memcpy(buf, m->buf + off, len);
    return 0;
}

static void mem_close(struct arc_source *s)
{
    free(s->name);
    free(s);
}

struct arc_source *arc_source_open_mem(const void *buf, size_t len, const char *name)
{
    struct mem_src *m = vs_xcalloc(1, sizeof *m);
    m->buf = buf;
    m->s.pread = mem_pread;
    m->s.close = mem_close;
    m->s.size = len;
    m->s.name = vs_xstrdup(name ? name : "(memory)");
    return &m->s;
}

void arc_source_close(struct arc_source *s)
{
    if (s)
        s->close(s);
}

/* ---- objects on a store ---------------------------------------------------------------------------------- */

struct url_src { struct arc_source s; struct os_object *o; };

static int url_pread(struct arc_source *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    return os_object_pread(((struct url_src *)s)->o, buf, len, off, e);
}

static int url_check(struct arc_source *s, vs_err *e) { return os_object_check(((struct url_src *)s)->o, e); }

static void url_close(struct arc_source *s)
{
    os_object_close(((struct url_src *)s)->o);
    free(s->name);
    free(s->version);
    free(s);
}

int arc_source_open_url(const char *url, struct arc_source **out, vs_err *e)
{
    struct os_object *o;
    int r = os_object_open(url, &o, e);
    if (r < 0)
        return r;
    struct url_src *u = vs_xcalloc(1, sizeof *u);
    u->o = o;
    u->s.pread = url_pread;
    u->s.check = url_check;
    u->s.close = url_close;
    u->s.size = os_object_size(o);
    u->s.name = vs_xstrdup(url);
    u->s.remote = true;   /* read through the block cache by default */
    /* a server without ETags: only the size tells versions apart (every GET then is unconditional) */
    u->s.version = vs_xasprintf("object etag %s size %" PRIu64, os_object_etag(o)[0] ? os_object_etag(o) : "-",
                                u->s.size);
    *out = &u->s;
    return 0;
}

int arc_source_open(const char *loc, struct arc_source **out, vs_err *e)
{
    return os_is_remote(loc) ? arc_source_open_url(loc, out, e) : arc_source_open_file(loc, out, e);
}
