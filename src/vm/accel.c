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

static json_t *cache_key(const char *qemu_path)
{
    struct utsname u;
    json_t *k = vm_cache_binary_key(qemu_path);
    if (k && uname(&u) == 0 && json_object_set_new(k, "kernel", json_string(u.release)) == 0)
        return k;
    json_decref(k);
    return NULL;
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
    VS_AUTOFREE char *path = vm_which(qemu ? qemu : "qemu-system-x86_64");
    if (!path)
        return vs_err_set(e, ENOENT, "QEMU binary '%s' not found in PATH", qemu ? qemu : "qemu-system-x86_64");
    VS_AUTOFREE char *dir = vm_cache_dir(cache_dir);
    json_t *key = cache_key(path);
    VS_AUTOFREE char *name = vm_cache_name("accel", path);
    json_t *cached = vm_cache_get(dir, name, key);
    const char *v = json_string_value(cached);
    bool hit = v && (!strcmp(v, "kvm") || !strcmp(v, "tcg"));
    snprintf(out, 8, "%s", hit ? v : probe_kvm(path) ? "kvm" : "tcg");
    if (!hit) {
        json_t *val = json_string(out);
        vm_cache_put(dir, name, key, val);
        json_decref(val);
    }
    json_decref(cached);
    json_decref(key);
    return 0;
}
