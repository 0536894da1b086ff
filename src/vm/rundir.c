/* vm: per-user run directory, the state file of a VM started by `vmsnap boot`, and finding a VM from its QMP
 * socket (state files first; else the QEMU process behind the socket, through SO_PEERCRED and /proc). */
#include "vm/vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* A directory we own with mode 0700, created if absent. */
static int private_dir(const char *path, vs_err *e)
{
    int r = vs_dir_owned(path, true, 0, e);
    if (r < 0) {
        vs_err_prefix(e, "run directory");
        return r;
    }
    struct stat st;
    if (lstat(path, &st) < 0)
        return vs_err_sys(e, errno, "run directory %s", path);
    if ((st.st_mode & 0077) && chmod(path, 0700) < 0)
        return vs_err_sys(e, errno, "making run directory %s private", path);
    return 0;
}

int vm_rundir_base(char **out, vs_err *e)
{
    const char *x = getenv("XDG_RUNTIME_DIR");
    char *base;
    struct stat st;
    VS_AUTOFREE char *user_run = vs_xasprintf("/run/user/%u", (unsigned)geteuid());
    if (x && x[0] == '/' && stat(x, &st) == 0 && S_ISDIR(st.st_mode))
        base = vs_xasprintf("%s/vmsnap", x);
    else if (stat(user_run, &st) == 0 && S_ISDIR(st.st_mode) && access(user_run, W_OK) == 0)
        base = vs_xasprintf("%s/vmsnap", user_run);
    else
        base = vs_xasprintf("/tmp/vmsnap-%u", (unsigned)geteuid());
    int r = private_dir(base, e);
    if (r < 0) {
        free(base);
        return r;
    }
    *out = base;
    return 0;
}

int vm_rundir_create(char **out, vs_err *e)
{
    VS_AUTOFREE char *base = NULL;
    int r = vm_rundir_base(&base, e);
    if (r < 0)
        return r;
    VS_AUTOFREE char *tmpl = vs_xasprintf("%s/vm-XXXXXX", base);
    if (!mkdtemp(tmpl))
        return vs_err_sys(e, errno, "creating a run directory under %s", base);
    *out = VS_STEAL(tmpl);
    return 0;
}

/* ---- state file ----------------------------------------------------------------------------------------- */

void vm_state_free(struct vm_state *s)
{
    free(s->dir);
    free(s->private_qmp);
    free(s->user_qmp);
    free(s->console);
    free(s->control);
    free(s->overlay);
    free(s->archive);
    free(s->parent);
    vm_config_free(&s->config);
    memset(s, 0, sizeof *s);
}

static void put(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

int vm_state_save(const struct vm_state *s, vs_err *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "boot-pid", json_integer(s->boot_pid));
    json_object_set_new(o, "qemu-pid", json_integer(s->qemu_pid));
    put(o, "private-qmp", s->private_qmp);
    put(o, "qmp", s->user_qmp);
    put(o, "console", s->console);
    put(o, "control", s->control);
    put(o, "overlay", s->overlay);
    put(o, "archive", s->archive);
    put(o, "parent", s->parent);
    json_object_set_new(o, "parent-gen", json_integer((json_int_t)s->parent_gen));
    VS_AUTOFREE char *cfg = vm_config_to_json(&s->config);
    json_object_set_new(o, "config", json_loads(cfg, 0, NULL));
    VS_AUTOFREE char *text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return vm_rundir_write(s->dir, "state.json", text, e);
}

int vm_rundir_write(const char *dir, const char *name, const char *text, vs_err *e)
{
    return vm_rundir_write_bytes(dir, name, text, strlen(text), false, e);
}

int vm_rundir_write_bytes(const char *dir, const char *name, const void *buf, size_t len, bool durable, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("%s/%s", dir, name);
    VS_AUTOFREE char *tmp = vs_xasprintf("%s/.%s.tmp", dir, name);
    VS_AUTOCLOSE int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vs_err_sys(e, errno, "writing %s", tmp);
    int r = vs_write_full(fd, buf, len);
    if (r == 0 && durable && fsync(fd) < 0)
        r = -errno;
    if (r < 0 || rename(tmp, path) < 0) {
        int err = r < 0 ? -r : errno;
        unlink(tmp);
        return vs_err_sys(e, err, "writing %s", path);
    }
    return durable ? vs_fsync_dir_of(path, e) : 0;
}

static char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? vs_xstrdup(v) : NULL;
}

int vm_state_load(const char *dir, struct vm_state *s, vs_err *e)
{
    memset(s, 0, sizeof *s);
    VS_AUTOFREE char *path = vs_xasprintf("%s/state.json", dir);
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return vs_err_set(e, errno == ENOENT ? ENOENT : EINVAL, "reading %s: %s", path, je.text);
    if (!json_is_object(o)) {
        json_decref(o);
        return vs_err_set(e, EINVAL, "%s: expected a JSON object", path);
    }
    s->dir = vs_xstrdup(dir);
    s->boot_pid = (pid_t)json_integer_value(json_object_get(o, "boot-pid"));
    s->qemu_pid = (pid_t)json_integer_value(json_object_get(o, "qemu-pid"));
    s->private_qmp = jstr(o, "private-qmp");
    s->user_qmp = jstr(o, "qmp");
    s->console = jstr(o, "console");
    s->control = jstr(o, "control");
    s->overlay = jstr(o, "overlay");
    s->archive = jstr(o, "archive");
    s->parent = jstr(o, "parent");
    s->parent_gen = (uint64_t)json_integer_value(json_object_get(o, "parent-gen"));
    json_t *cfg = json_object_get(o, "config");
    int r = 0;
    if (cfg) {
        VS_AUTOFREE char *text = json_dumps(cfg, 0);
        r = vm_config_from_json(text, strlen(text), &s->config, e);
        if (r < 0)
            vs_err_prefix(e, "%s", path);
    }
    json_decref(o);
    if (r == 0 && !s->private_qmp)
        r = vs_err_set(e, EINVAL, "%s: no \"private-qmp\"", path);
    if (r < 0)
        vm_state_free(s);
    return r;
}

static bool same_file(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return !strcmp(a, b);
}

int vm_state_find(const char *qmp_path, struct vm_state *s, vs_err *e)
{
    VS_AUTOFREE char *base = NULL;
    int r = vm_rundir_base(&base, e);
    if (r < 0)
        return r;
    DIR *d = opendir(base);
    if (!d)
        return vs_err_sys(e, errno, "reading run directory %s", base);
    r = vs_err_set(e, ENOENT, "%s is not the QMP socket of a VM started by vmsnap boot", qmp_path);
    for (struct dirent *de; (de = readdir(d));) {
        if (strncmp(de->d_name, "vm-", 3))
            continue;
        VS_AUTOFREE char *dir = vs_xasprintf("%s/%s", base, de->d_name);
        struct vm_state st;
        if (vm_state_load(dir, &st, NULL) < 0)
            continue;
        bool alive = st.qemu_pid > 0 && kill(st.qemu_pid, 0) == 0;
        if (alive && (same_file(qmp_path, st.user_qmp) || same_file(qmp_path, st.private_qmp))) {
            *s = st;
            r = 0;
            break;
        }
        vm_state_free(&st);
    }
    closedir(d);
    return r;
}

/* ---- the process behind a socket ---------------------------------------------------------------------- */

int vm_peer_pid(int fd, pid_t *pid, vs_err *e)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return vs_err_sys(e, errno, "SO_PEERCRED");
    if (cr.pid <= 0)
        return vs_err_set(e, ESRCH, "the QMP socket's peer has no process id");
    *pid = cr.pid;
    return 0;
}

int vm_proc_cmdline(pid_t pid, char ***argv, size_t *argc, char **cwd, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("/proc/%d/cmdline", (int)pid);
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_err_sys(e, errno, "reading %s", path);
    size_t cap = 4096, len = 0;
    VS_AUTOFREE char *buf = vs_xmalloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap >= (1u << 24))
                return vs_err_set(e, E2BIG, "%s: command line longer than 16 MiB", path);
            cap *= 2;
            buf = vs_xrealloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vs_err_sys(e, errno, "reading %s", path);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len == 0 || buf[len - 1] != 0)
        return vs_err_set(e, EINVAL, "%s: empty or unterminated command line", path);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == 0;
    char **v = vs_xcalloc(n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
        v[k++] = vs_xstrdup(buf + i);
    VS_AUTOFREE char *cwdlink = vs_xasprintf("/proc/%d/cwd", (int)pid);
    char cwdbuf[PATH_MAX];
    ssize_t cl = readlink(cwdlink, cwdbuf, sizeof cwdbuf - 1);
    if (cl < 0) {
        for (size_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return vs_err_sys(e, errno, "reading %s", cwdlink);
    }
    cwdbuf[cl] = 0;
    *argv = v;
    *argc = k;
    *cwd = vs_xstrdup(cwdbuf);
    return 0;
}
