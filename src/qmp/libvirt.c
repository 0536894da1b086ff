/* qmp: the libvirt transport. libvirt owns a domain's only QMP monitor, so commands travel through its API
 * (virDomainQemuMonitorCommandWithFiles, which also carries fds for getfd) and events come back through
 * virConnectDomainQemuMonitorEventRegister. Events need libvirt's event loop: it runs only inside a wait
 * (qmp__read_message), in the caller's thread, like the socket transport reads only inside a wait; events that
 * arrive in between stay in libvirt's queue. The reply of a call is the call's result, so no "id" is sent. */
#include "qmp/qmp-priv.h"

#include <errno.h>
#include <string.h>

#ifdef VMSNAP_HAVE_LIBVIRT
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

struct qmp_libvirt {
    virConnectPtr conn;
    virDomainPtr dom;
    int callback_id;        /* -1: no event callback registered */
    json_t *pending;        /* events delivered by libvirt, not yet read (array, oldest first) */
};

const char *qmp_libvirt_error(void)
{
    const char *m = virGetLastErrorMessage();
    return m && m[0] ? m : "unknown libvirt error";
}

/* libvirt prints every error to stderr unless told otherwise; vmsnap reports them itself, once. */
static void lv_quiet(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

static void on_event(virConnectPtr conn, virDomainPtr dom, const char *event, long long seconds, unsigned int micros,
                     const char *details, void *opaque)
{
    (void)conn;
    (void)dom;
    struct qmp *q = opaque;
    json_t *data = details ? json_loads(details, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(data)) {
        json_decref(data);
        data = json_object();
    }
    json_t *ev = json_pack("{s:s, s:o, s:{s:I, s:I}}", "event", event ? event : "?", "data", data, "timestamp",
                           "seconds", (json_int_t)seconds, "microseconds", (json_int_t)micros);
    if (!ev)
        return;
    if (q->debug) {
        VS_AUTOFREE char *s = json_dumps(ev, JSON_COMPACT);
        qmp__log(q, '<', s ? s : "?", s ? strlen(s) : 1);
    }
    json_array_append_new(q->lv->pending, ev);
}

static void on_timeout(int timer, void *opaque)
{
    (void)timer;
    (void)opaque;
}

/* One turn of libvirt's event loop, woken after at most ms milliseconds. */
static void run_loop_once(int ms)
{
    int t = virEventAddTimeout(ms, on_timeout, NULL, NULL);
    virEventRunDefaultImpl();
    if (t >= 0)
        virEventRemoveTimeout(t);
}

int qmp__lv_read_event(struct qmp *q, double deadline, const char *what, json_t **msg, vs_err *e)
{
    (void)what;
    (void)e;
    /* A message seen by libvirt reaches our callback a few turns later (socket, then libvirt's queue timer),
     * so a wait that is already over still turns the loop a few times. */
    for (int idle = 0; json_array_size(q->lv->pending) == 0;) {
        double left = deadline - vs_now_s();
        if (left <= 0 && idle++ >= 4)
            return 0;
        run_loop_once(left <= 0 ? 0 : (int)(left * 1000) + 1);
    }
    *msg = json_incref(json_array_get(q->lv->pending, 0));
    json_array_remove(q->lv->pending, 0);
    return 1;
}

int qmp__lv_exchange(struct qmp *q, const char *cmd, const char *text, int fd, json_t **reply, vs_err *e)
{
    qmp__log(q, '>', text, strlen(text));
    unsigned int nout = 0;
    int *outfds = NULL;
    char *result = NULL;
    int r = virDomainQemuMonitorCommandWithFiles(q->lv->dom, text, fd >= 0 ? 1 : 0, fd >= 0 ? &fd : NULL, &nout,
                                                 &outfds, &result, 0);
    for (unsigned int i = 0; i < nout; i++)
        close(outfds[i]);
    free(outfds);
    if (r < 0)
        return vs_err_set(e, EIO, "%s: QMP '%s' through libvirt failed: %s", q->name, cmd, qmp_libvirt_error());
    qmp__log(q, '<', result ? result : "", result ? strlen(result) : 0);
    json_error_t je;
    json_t *m = result ? json_loads(result, JSON_REJECT_DUPLICATES, &je) : NULL;
    free(result);
    if (!json_is_object(m)) {
        json_decref(m);
        return vs_err_set(e, EPROTO, "%s: libvirt's reply to '%s' is not a JSON object", q->name, cmd);
    }
    *reply = m;
    return 0;
}

/* The domain's QEMU process on this host: the thread group of a vCPU thread QEMU names, checked against the
 * "-name guest=NAME" libvirt gives every domain. -1 if it is not here (a remote URI) or cannot be read. */
static pid_t domain_pid(struct qmp *q, const char *dom_name)
{
    json_t *ret = NULL;
    if (qmp_execute(q, "query-cpus-fast", NULL, &ret, NULL) < 0)
        return -1;
    json_int_t tid = json_integer_value(json_object_get(json_array_get(ret, 0), "thread-id"));
    json_decref(ret);
    if (tid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%lld/status", (long long)tid);
    VS_AUTOFCLOSE FILE *f = fopen(path, "re");
    long pid = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Tgid: %ld", &pid) == 1)
            break;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    VS_AUTOFCLOSE FILE *c = fopen(path, "re");
    if (!c)
        return -1;
    VS_AUTOFREE char *want = vs_xasprintf("guest=%s", dom_name);
    bool after_name = false, found = false;
    char *arg = NULL;
    size_t cap = 0;
    while (!found && getdelim(&arg, &cap, '\0', c) > 0) {
        found = after_name && (!strcmp(arg, want) || (!strncmp(arg, want, strlen(want)) && arg[strlen(want)] == ','));
        after_name = !strcmp(arg, "-name");
    }
    free(arg);
    return found ? (pid_t)pid : -1;
}

/* QEMU's version, as a socket greeting would give it, from query-version. */
static int fake_greeting(struct qmp *q, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-version", NULL, &ret, e);
    if (r < 0)
        return r;
    json_t *v = json_object_get(ret, "qemu");
    for (int i = 0; i < 3; i++) {
        json_t *x = json_object_get(v, (const char *[]){ "major", "minor", "micro" }[i]);
        if (!json_is_integer(x)) {
            json_decref(ret);
            return vs_err_set(e, EPROTO, "%s: query-version reply lacks qemu.major/minor/micro", q->name);
        }
        q->version[i] = (int)json_integer_value(x);
    }
    q->greeting = json_pack("{s:o, s:[]}", "version", ret, "capabilities");
    return 0;
}

int qmp_connect_libvirt(const char *uri, const char *domain, const struct qmp_opts *opts, struct qmp **out,
                        vs_err *e)
{
    VS_AUTOFREE char *name = vs_xasprintf("libvirt domain '%s'", domain);
    /* Events are delivered only if an event loop is registered before the connection opens. Registering the
     * default one again is harmless (it only sets libvirt's function pointers). */
    virSetErrorFunc(NULL, lv_quiet);
    if (virEventRegisterDefaultImpl() < 0)
        return vs_err_set(e, EIO, "%s: cannot set up libvirt's event loop: %s", name, qmp_libvirt_error());
    struct qmp *q = qmp__alloc(-1, name, opts);
    q->lv = vs_xcalloc(1, sizeof *q->lv);
    q->lv->callback_id = -1;
    q->lv->pending = json_array();
    int r;
    if (!(q->lv->conn = virConnectOpen(uri))) {
        r = vs_err_set(e, ECONNREFUSED, "libvirt %s: cannot connect: %s", uri ? uri : "(default URI)",
                       qmp_libvirt_error());
        goto fail;
    }
    if (!(q->lv->dom = virDomainLookupByName(q->lv->conn, domain)) &&
        !(q->lv->dom = virDomainLookupByUUIDString(q->lv->conn, domain))) {
        r = vs_err_set(e, ENOENT, "%s: no such domain: %s", name, qmp_libvirt_error());
        goto fail;
    }
    if (virDomainIsActive(q->lv->dom) != 1) {
        r = vs_err_set(e, ESRCH, "%s is not running", name);
        goto fail;
    }
    q->lv->callback_id = virConnectDomainQemuMonitorEventRegister(q->lv->conn, q->lv->dom, NULL, on_event, q, NULL, 0);
    if (q->lv->callback_id < 0) {
        r = vs_err_set(e, EIO, "%s: cannot register for QMP events: %s", name, qmp_libvirt_error());
        goto fail;
    }
    if ((r = fake_greeting(q, e)) < 0)
        goto fail;
    q->peer_pid = domain_pid(q, virDomainGetName(q->lv->dom));
    *out = q;
    return 0;
fail:
    qmp_close(q);
    return r;
}

void *qmp_libvirt_domain(const struct qmp *q)
{
    return q && q->lv ? q->lv->dom : NULL;
}

void qmp__lv_close(struct qmp *q)
{
    struct qmp_libvirt *lv = q->lv;
    if (lv->callback_id >= 0)
        virConnectDomainQemuMonitorEventDeregister(lv->conn, lv->callback_id);
    if (lv->dom)
        virDomainFree(lv->dom);
    if (lv->conn)
        virConnectClose(lv->conn);
    json_decref(lv->pending);
    free(lv);
    q->lv = NULL;
}

#else /* !VMSNAP_HAVE_LIBVIRT */

int qmp_connect_libvirt(const char *uri, const char *domain, const struct qmp_opts *opts, struct qmp **out,
                        vs_err *e)
{
    (void)uri;
    (void)opts;
    (void)out;
    return vs_err_set(e, ENOTSUP, "libvirt domain '%s': this vmsnap was built without libvirt (meson -Dlibvirt)",
                      domain);
}

int qmp__lv_read_event(struct qmp *q, double deadline, const char *what, json_t **msg, vs_err *e)
{
    (void)q, (void)deadline, (void)what, (void)msg;
    return vs_err_set(e, ENOTSUP, "built without libvirt");
}

int qmp__lv_exchange(struct qmp *q, const char *cmd, const char *text, int fd, json_t **reply, vs_err *e)
{
    (void)q, (void)text, (void)fd, (void)reply;
    return vs_err_set(e, ENOTSUP, "QMP '%s': built without libvirt", cmd);
}

void *qmp_libvirt_domain(const struct qmp *q)
{
    (void)q;
    return NULL;
}

const char *qmp_libvirt_error(void)
{
    return "built without libvirt";
}

void qmp__lv_close(struct qmp *q)
{
    (void)q;
}

#endif
