/* archive: upload sinks — where a writer's bytes go. A local file (temp name beside the target, fsync, rename,
 * fsync of the directory) and the dispatcher by location (s3:// in sink_s3.c). */
#include "archive/archive.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

struct file_sink {
    struct arc_sink s;
    char *tmp;
    int fd;
};

static int file_pwrite(struct arc_sink *s, const void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct file_sink *f = (struct file_sink *)s;
    int r = vs_pwrite_full(f->fd, buf, len, (off_t)off);
    return r < 0 ? vs_err_sys(e, -r, "writing archive '%s'", s->name) : 0;
}

static int file_pread(struct arc_sink *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct file_sink *f = (struct file_sink *)s;
    ssize_t n = vs_pread_full(f->fd, buf, len, (off_t)off);
    if (n != (ssize_t)len)
        return vs_err_sys(e, n < 0 ? (int)-n : EIO, "%s: reading back %zu bytes at %llu", s->name, len,
                          (unsigned long long)off);
    return 0;
}

static void file_free(struct file_sink *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp)
        unlink(f->tmp);
    free(f->tmp);
    free(f->s.name);
    free(f->s.path);
    free(f);
}

static void file_abort(struct arc_sink *s) { file_free((struct file_sink *)s); }

/* The process umask, read without changing it (umask(2) would race with other threads creating files). */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    unsigned m = 077;   /* unknown: the narrowest */
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1)
            break;
    if (f)
        fclose(f);
    return (mode_t)m & 0777;
}

/* Guest memory holds secrets (keys, passwords): such an archive stays 0600 whatever the umask, like a dump; any
 * other archive is a new file like any other. The temp file was 0600 from its creation, so no reader could open
 * it while it was wider. */
static int file_finish(struct arc_sink *s, bool private_mode, vs_err *e)
{
    struct file_sink *f = (struct file_sink *)s;
    mode_t mode = private_mode ? 0600 : 0666 & ~current_umask();
    int r = 0;
    if (mode != 0600 && fchmod(f->fd, mode) < 0)
        r = vs_err_sys(e, errno, "setting the mode of archive '%s'", s->name);
    if (r >= 0 && fsync(f->fd) < 0)
        r = vs_err_sys(e, errno, "syncing archive '%s'", s->name);
    if (r >= 0 && close(f->fd) < 0)
        r = vs_err_sys(e, errno, "closing archive '%s'", s->name);
    if (r >= 0)
        f->fd = -1;
    if (r >= 0 && rename(f->tmp, s->path) < 0)
        r = vs_err_sys(e, errno, "renaming the archive to '%s'", s->name);
    if (r >= 0) {
        free(f->tmp);
        f->tmp = NULL;
        r = vs_fsync_dir_of(s->path, e);
    }
    file_free(f);
    return r;
}

int arc_sink_open_file(const char *path, struct arc_sink **out, vs_err *e)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return vs_err_set(e, EISDIR, "output '%s' is a directory", path);
    /* a hidden temp file in the target's directory, so the final rename is atomic */
    VS_AUTOFREE char *copy = vs_xstrdup(path), *copy2 = vs_xstrdup(path);
    struct file_sink *f = vs_xcalloc(1, sizeof *f);
    f->tmp = vs_xasprintf("%s/.%s.XXXXXX", dirname(copy), basename(copy2));
    f->fd = vs_mkstemp_mode(f->tmp, 0600);   /* private until finish knows whether it holds guest memory */
    if (f->fd < 0) {
        int r = vs_err_sys(e, errno, "cannot create a temporary file beside '%s'", path);
        free(f->tmp);
        free(f);
        return r;
    }
    f->s.pwrite = file_pwrite;
    f->s.pread = file_pread;
    f->s.finish = file_finish;
    f->s.abort = file_abort;
    f->s.name = vs_xstrdup(path);
    f->s.path = vs_xstrdup(path);
    *out = &f->s;
    return 0;
}

int arc_sink_open(const char *loc, struct arc_sink **out, vs_err *e)
{
    switch (os_scheme_of(loc)) {
    case OS_S3:
        return arc_sink_open_s3(loc, out, e);
    case OS_HTTP:
        return vs_err_set(e, EROFS, "'%s': http(s) URLs are read-only: write to a local path or s3://BUCKET/KEY", loc);
    default:
        return arc_sink_open_file(loc, out, e);
    }
}

void arc_sink_abort(struct arc_sink *s)
{
    if (s)
        s->abort(s);
}
