/* pagefs: the FUSE mount (libfuse3 high-level API, one thread of its own, multi-threaded loop). */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "pagefs/pagefs.h"

#ifdef VMSNAP_HAVE_FUSE3
#define FUSE_USE_VERSION 31
#include <fuse.h>

struct pf_mount {
    struct pf_file *files;
    unsigned n;
    struct fuse *fuse;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;          /* guards stats */
    struct pf_stats stats;
};

bool pf_available(void) { return true; }

static struct pf_mount *ctx(void) { return fuse_get_context()->private_data; }

static int lookup(struct pf_mount *m, const char *path)
{
    if (path[0] != '/')
        return -1;
    for (unsigned i = 0; i < m->n; i++)
        if (strcmp(path + 1, m->files[i].name) == 0)
            return (int)i;
    return -1;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->kernel_cache = 1;         /* content never changes: keep pages across opens */
    cfg->entry_timeout = cfg->attr_timeout = 3600;
    return ctx();
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    struct pf_mount *m = ctx();
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0500;
        st->st_nlink = 2;
        return 0;
    }
    int i = lookup(m, path);
    if (i < 0)
        return -ENOENT;
    st->st_mode = S_IFREG | 0600;  /* "writable" so QEMU's O_RDWR open passes; writes are refused */
    st->st_nlink = 1;
    st->st_size = (off_t)m->files[i].size;
    st->st_blocks = (blkcnt_t)(m->files[i].size / 512);
    st->st_uid = getuid();
    st->st_gid = getgid();
    return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags)
{
    (void)off; (void)fi; (void)flags;
    struct pf_mount *m = ctx();
    if (strcmp(path, "/") != 0)
        return -ENOTDIR;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    for (unsigned i = 0; i < m->n; i++)
        fill(buf, m->files[i].name, NULL, 0, 0);
    return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
    int i = lookup(ctx(), path);
    if (i < 0)
        return -ENOENT;
    if (fi->flags & O_TRUNC)
        return -EROFS;
    fi->fh = (uint64_t)i;
    fi->keep_cache = 1;
    return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    struct pf_mount *m = ctx();
    struct pf_file *f = &m->files[fi->fh];
    if (off < 0 || (uint64_t)off >= f->size)
        return 0;
    size = (size_t)VS_MIN((uint64_t)size, f->size - (uint64_t)off);
    vs_err e = { 0 };
    int r = f->read(f->opaque, buf, size, (uint64_t)off, &e);
    pthread_mutex_lock(&m->lock);
    m->stats.reads++;
    if (r < 0) {
        if (m->stats.errors++ == 0)
            snprintf(m->stats.first_error, sizeof m->stats.first_error, "%s", e.msg);
    } else {
        m->stats.bytes += size;
    }
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? -EIO : (int)size;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path; (void)buf; (void)size; (void)off; (void)fi;
    return -EROFS;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    (void)fi;
    int i = lookup(ctx(), path);
    if (i < 0)
        return -ENOENT;
    return (uint64_t)size == ctx()->files[i].size ? 0 : -EROFS;
}

static const struct fuse_operations ops = {
    .init = op_init, .getattr = op_getattr, .readdir = op_readdir, .open = op_open, .read = op_read,
    .write = op_write, .truncate = op_truncate,
};

static void *loop_thread(void *arg)
{
    struct pf_mount *m = arg;
    fuse_loop_mt(m->fuse, 0);
    return NULL;
}

void pf_unmount(struct pf_mount *m)
{
    if (!m)
        return;
    if (m->fuse) {
        fuse_exit(m->fuse);
        if (m->thread_started) {
            fuse_unmount(m->fuse);   /* the loop's reads of /dev/fuse end: the thread returns */
            pthread_join(m->thread, NULL);
        }
        fuse_destroy(m->fuse);
    }
    for (unsigned i = 0; i < m->n; i++)
        free((char *)m->files[i].name);
    free(m->files);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e)
{
    struct pf_mount *m = vs_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->files = vs_xcalloc(n ? n : 1, sizeof *m->files);
    m->n = n;
    for (unsigned i = 0; i < n; i++) {
        m->files[i] = files[i];
        m->files[i].name = vs_xstrdup(files[i].name);
    }
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    if (fuse_opt_add_arg(&args, "vmsnap") || fuse_opt_add_arg(&args, "-o")
        || fuse_opt_add_arg(&args, "fsname=vmsnap-pages,subtype=vmsnap")) {
        fuse_opt_free_args(&args);
        pf_unmount(m);
        return vs_err_set(e, -ENOMEM, "FUSE arguments");
    }
    m->fuse = fuse_new(&args, &ops, sizeof ops, m);
    fuse_opt_free_args(&args);
    if (!m->fuse) {
        pf_unmount(m);
        return vs_err_set(e, -EIO, "FUSE: cannot create a file system for %s", dir);
    }
    if (fuse_mount(m->fuse, dir) != 0) {
        fuse_destroy(m->fuse);
        m->fuse = NULL;
        pf_unmount(m);
        return vs_err_set(e, -EIO, "FUSE: cannot mount on %s (is /dev/fuse usable, fusermount3 installed?)", dir);
    }
    int r = pthread_create(&m->thread, NULL, loop_thread, m);
    if (r) {
        fuse_unmount(m->fuse);
        pf_unmount(m);
        return vs_err_sys(e, r, "starting the FUSE thread");
    }
    m->thread_started = true;
    *out = m;
    return 0;
}

void pf_get_stats(struct pf_mount *m, struct pf_stats *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    pthread_mutex_unlock(&m->lock);
}

#else /* !VMSNAP_HAVE_FUSE3 */

struct pf_mount { int unused; };
bool pf_available(void) { return false; }
int pf_mount(const char *dir, const struct pf_file *files, unsigned n, struct pf_mount **out, vs_err *e)
{
    (void)files; (void)n; (void)out;
    return vs_err_set(e, -ENOTSUP, "cannot serve RAM lazily on %s: vmsnap was built without libfuse3", dir);
}
void pf_unmount(struct pf_mount *m) { (void)m; }
void pf_get_stats(struct pf_mount *m, struct pf_stats *out) { (void)m; memset(out, 0, sizeof *out); }

#endif
