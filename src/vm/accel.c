/* vm: choosing the accelerator. A /dev/kvm that opens is not proof KVM can run a guest (here a paravirtual KVM
 * aborts QEMU with "failed to set MSR 0x10a" at vCPU setup), so "auto" probes once with a real QEMU and caches
 * the verdict, keyed by what could change it. */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

/* Resolve a binary name through PATH (execvp's rule) to stat it for the cache key. */
static char *which(const char *name)
{
    if (strchr(name, '/'))
        return vs_xstrdup(name);
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    VS_AUTOFREE char *copy = vs_xstrdup(path);
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *p = vs_xasprintf("%s/%s", d, name);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

/* 1: KVM runs a vCPU; 0: it does not. QEMU is started stopped (-S) with one vCPU of the richest model; the MSR
 * failure aborts it during vCPU setup, before the monitor is even read. */
static int probe_kvm(const char *qemu)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        return 0;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(in[0], 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp(qemu, qemu, "-accel", "kvm", "-cpu", "max", "-machine", "pc", "-nodefaults", "-no-user-config",
               "-display", "none", "-m", "16", "-S", "-qmp", "stdio", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    static const char cmds[] = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";
    signal(SIGPIPE, SIG_IGN);
    (void)!write(in[1], cmds, sizeof cmds - 1);
    close(in[1]);
    int status = 0;
    for (int i = 0; i < 500; i++) {   /* 5 s */
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (w < 0)
            return 0;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 0;
}

static char *default_cache_dir(void)
{
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && x[0] == '/')
        return vs_xasprintf("%s/vmsnap", x);
    const char *h = getenv("HOME");
    return vs_xasprintf("%s/.cache/vmsnap", h && h[0] ? h : "/tmp");
}

static json_t *cache_key(const char *qemu_path)
{
    struct stat st;
    struct utsname u;
    if (stat(qemu_path, &st) < 0 || uname(&u) < 0)
        return NULL;
    return json_pack("{s:s,s:I,s:I,s:s}", "qemu", qemu_path, "mtime", (json_int_t)st.st_mtime, "size",
                     (json_int_t)st.st_size, "kernel", u.release);
}

int vm_accel_resolve(const char *want, const char *qemu, const char *cache_dir, char out[8], vs_err *e)
{
    if (!want || !strcmp(want, "auto")) {
        /* fall through to the probe below */
    } else if (!strcmp(want, "kvm") || !strcmp(want, "tcg")) {
        snprintf(out, 8, "%s", want);
        return 0;
    } else {
        return vs_err_set(e, EINVAL, "unknown accelerator '%s' (expected auto, kvm or tcg)", want);
    }
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(out, 8, "tcg");
        return 0;
    }
    close(fd);
    VS_AUTOFREE char *path = which(qemu ? qemu : "qemu-system-x86_64");
    if (!path)
        return vs_err_set(e, ENOENT, "QEMU binary '%s' not found in PATH", qemu ? qemu : "qemu-system-x86_64");
    VS_AUTOFREE char *dir = cache_dir ? vs_xstrdup(cache_dir) : default_cache_dir();
    VS_AUTOFREE char *file = vs_xasprintf("%s/accel.json", dir);
    json_t *key = cache_key(path);
    if (key) {
        json_t *cached = json_load_file(file, 0, NULL);
        json_t *ck = cached ? json_object_get(cached, "key") : NULL;
        const char *v = cached ? json_string_value(json_object_get(cached, "accel")) : NULL;
        if (ck && v && json_equal(ck, key) && (!strcmp(v, "kvm") || !strcmp(v, "tcg"))) {
            snprintf(out, 8, "%s", v);
            json_decref(cached);
            json_decref(key);
            return 0;
        }
        json_decref(cached);
    }
    snprintf(out, 8, "%s", probe_kvm(path) ? "kvm" : "tcg");
    if (key) {
        /* Best effort: a cache we cannot write only costs the probe next time. */
        VS_AUTOFREE char *parent = vs_xstrdup(dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = 0;
            mkdir(parent, 0700);
        }
        mkdir(dir, 0700);
        VS_AUTOFREE char *tmp = vs_xasprintf("%s.%d.tmp", file, (int)getpid());
        json_t *doc = json_pack("{s:o,s:s}", "key", key, "accel", out);
        if (doc && json_dump_file(doc, tmp, 0) == 0 && rename(tmp, file) == 0)
            ;
        else
            unlink(tmp);
        json_decref(doc);
    }
    return 0;
}
