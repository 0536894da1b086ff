/* vm: machine types. QEMU loads a migration stream only into the machine type it was saved from
 * ("pc-i440fx-7.2"), and the aliases "pc" and "q35" name a different type in every QEMU release. So a boot records
 * the versioned type QEMU ran, a resume pins it, and a resume the local QEMU cannot load is refused before QEMU
 * starts. Which types a QEMU binary offers costs a QEMU start: the list is cached per binary (cache.c). */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

bool vm_machine_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    return n > 0 && n < VM_MACHINE_NAME_MAX && s[0] != '-' && strspn(s, ok) == n;
}

/* "pc" -> "pc-i440fx-", "q35" -> "pc-q35-": the versioned family an alias of x86 QEMU stands for. */
static const char *alias_family(const char *alias)
{
    if (!strcmp(alias, "pc"))
        return "pc-i440fx-";
    if (!strcmp(alias, "q35"))
        return "pc-q35-";
    return NULL;
}

char *vm_machine_infer(const char *machine, const char *qemu_version, char *const *extra, size_t n_extra)
{
    if (machine && !alias_family(machine))
        return vs_xstrdup(machine);   /* a versioned (or unversioned, like microvm) type */
    VS_AUTOFREE char *from_extra = vm_args_machine_type(extra, n_extra);
    const char *t = from_extra ? from_extra : machine ? machine : "pc";   /* "pc": x86 QEMU's default */
    const char *family = alias_family(t);
    if (!family)
        return vs_xstrdup(t);
    unsigned maj, min;
    if (!qemu_version || sscanf(qemu_version, "%u.%u", &maj, &min) != 2)
        return NULL;
    return vs_xasprintf("%s%u.%u", family, maj, min);
}

void vm_machines_free(struct vm_machines *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->names[i]);
    free(m->names);
    free(m->version);
    memset(m, 0, sizeof *m);
}

void vm_machines_freep(struct vm_machines *m)
{
    vm_machines_free(m);
}

bool vm_machines_has(const struct vm_machines *m, const char *type)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], type))
            return true;
    return false;
}

/* {"version": "7.2.22", "machines": [names]} -> m; false if it is not that shape. */
static bool from_json(const json_t *v, struct vm_machines *m)
{
    const char *ver = json_string_value(json_object_get(v, "version"));
    json_t *names = json_object_get(v, "machines");
    if (!ver || !json_is_array(names) || json_array_size(names) == 0 || json_array_size(names) > 4096)
        return false;
    m->version = vs_xstrdup(ver);
    m->names = vs_xcalloc(json_array_size(names), sizeof *m->names);
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        if (!vm_machine_name_ok(json_string_value(n))) {
            vm_machines_free(m);
            return false;
        }
        m->names[m->n++] = vs_xstrdup(json_string_value(n));
    }
    return true;
}

static void reap(pid_t pid)
{
    int st;
    for (int i = 0; i < 500; i++) {   /* 5 s */
        if (waitpid(pid, &st, WNOHANG) != 0)
            return;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

/* Ask the binary itself: QEMU without a machine ("-machine none"), its monitor on stdin/stdout (one end of a
 * socket pair), query-machines, quit. */
static int probe(const char *qemu, json_t **out, vs_err *e)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return vs_err_sys(e, errno, "socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return vs_err_sys(e, errno, "fork");
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a probe never outlives vmsnap */
        int dn = open("/dev/null", O_WRONLY);
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        dup2(dn, 2);
        execlp(qemu, qemu, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none", "-S", "-qmp",
               "stdio", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    VS_AUTOFREE char *name = vs_xasprintf("%s -machine none", qemu);
    struct qmp *q = NULL;
    int r = qmp_connect_fd(sv[0], name, &(struct qmp_opts){ .timeout_s = 10 }, &q, e);
    json_t *list = NULL;
    if (r == 0)
        r = qmp_execute(q, "query-machines", NULL, &list, e);
    if (r == 0) {
        int maj, min, mic;
        qmp_version(q, &maj, &min, &mic);
        json_t *names = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(list, i, m)
            if (json_is_string(json_object_get(m, "name")))
                json_array_append(names, json_object_get(m, "name"));
        char ver[48];
        snprintf(ver, sizeof ver, "%d.%d.%d", maj, min, mic);
        *out = json_pack("{s:s,s:o}", "version", ver, "machines", names);
        qmp_execute_timeout(q, "quit", NULL, 2, NULL, NULL);
    }
    json_decref(list);
    qmp_close(q);
    reap(pid);
    if (r < 0)
        return vs_err_prefix(e, "asking %s for its machine types", qemu);
    return 0;
}

int vm_machines_get(const char *qemu, const char *cache_dir, struct vm_machines *out, vs_err *e)
{
    memset(out, 0, sizeof *out);
    VS_AUTOFREE char *path = vm_which(qemu);
    if (!path)
        return vs_err_set(e, ENOENT, "QEMU binary '%s' not found in PATH", qemu);
    VS_AUTOFREE char *dir = vm_cache_dir(cache_dir);
    VS_AUTOFREE char *name = vm_cache_name("machines", path);
    json_t *key = vm_cache_binary_key(path);
    json_t *v = vm_cache_get(dir, name, key);
    bool hit = v && from_json(v, out);
    json_decref(v);
    int r = 0;
    if (!hit) {
        v = NULL;
        if ((r = probe(path, &v, e)) == 0 && !from_json(v, out))
            r = vs_err_set(e, EPROTO, "%s listed no machine types", qemu);
        if (r == 0)
            vm_cache_put(dir, name, key, v);
        json_decref(v);
    }
    json_decref(key);
    return r;
}

/* "pc-i440fx-7.2" -> length of "pc-i440fx-" (the name without its trailing version), 0 if unversioned. */
static size_t family_len(const char *t)
{
    size_t n = strlen(t), k = n;
    while (k > 0 && (t[k - 1] == '.' || (t[k - 1] >= '0' && t[k - 1] <= '9')))
        k--;
    return k < n && k > 0 && t[k - 1] == '-' ? k : 0;
}

/* Version order of two names of one family: "pc-i440fx-2.10" after "pc-i440fx-2.9". */
static int version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        char *ea, *eb;
        unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
        if (x != y)
            return x < y ? -1 : 1;
        a = *ea ? ea + 1 : ea;
        b = *eb ? eb + 1 : eb;
    }
    return 0;
}

int vm_machine_check(const struct vm_machines *m, const char *qemu, const char *type, const char *rec_version,
                     vs_err *e)
{
    if (vm_machines_has(m, type))
        return 0;
    size_t fl = family_len(type), count = 0;
    const char *oldest = NULL, *newest = NULL;
    for (size_t i = 0; fl && i < m->n; i++) {
        const char *n = m->names[i];
        if (family_len(n) != fl || strncmp(n, type, fl))
            continue;
        count++;
        if (!oldest || version_cmp(n + fl, oldest + fl) < 0)
            oldest = n;
        if (!newest || version_cmp(n + fl, newest + fl) > 0)
            newest = n;
    }
    char has[200];
    if (count)
        snprintf(has, sizeof has, "its %.*s types are %s to %s (%zu)", (int)(fl - 1), type, oldest, newest, count);
    else
        snprintf(has, sizeof has, "it has no machine type of that family");
    return vs_err_set(e, ENOTSUP, "the VM's machine type '%s' (saved by QEMU %s) is not available in %s (QEMU %s): "
                      "%s; resume it with a QEMU that has '%s' (--qemu PATH or VMSNAP_QEMU)", type,
                      rec_version ? rec_version : "of unknown version", qemu, m->version, has, type);
}

int vm_machine_current(struct qmp *q, char **out, vs_err *e)
{
    json_t *args = json_pack("{s:s,s:s}", "path", "/machine", "property", "type"), *ret = NULL;
    int r = qmp_execute(q, "qom-get", args, &ret, e);
    json_decref(args);
    const char *t = json_string_value(ret);
    static const char suffix[] = "-machine";   /* QOM type "pc-i440fx-7.2-machine" */
    size_t n = t ? strlen(t) : 0;
    if (r == 0 && (n <= strlen(suffix) || strcmp(t + n - strlen(suffix), suffix)))
        r = vs_err_set(e, EPROTO, "QEMU's /machine has type '%s', expected '<machine type>-machine'", t ? t : "?");
    if (r == 0) {
        *out = strndup(t, n - strlen(suffix));
        if (!vm_machine_name_ok(*out)) {
            free(*out);
            *out = NULL;
            r = vs_err_set(e, EPROTO, "QEMU's machine type '%s' is not a machine type name", t);
        }
    }
    json_decref(ret);
    return r;
}
