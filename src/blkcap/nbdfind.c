/* blkcap: where a QEMU's NBD server listens when someone else started it. QMP has no query for the server, so the
 * candidates are QEMU's listening sockets: the inodes of its open fds (/proc/PID/fd) found in its network
 * namespace's socket tables (/proc/PID/net/unix, tcp, tcp6), minus the VM's chardevs (query-chardev: a monitor or
 * serial port serves one client at a time, so a connection would wait behind the user's or take the console).
 * Each is asked for its export list within a deadline (libnbd's option mode: nothing is read), and the one that
 * lists the caller's export, whose name nobody else can know, is the server. */
#include "blkcap/blkcap.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PROBE_S 2.0           /* a candidate that has not listed its exports by then is not the server */
#define SOCK_LISTENING 0x10000  /* __SO_ACCEPTCON in /proc/net/unix's Flags */
#define TCP_LISTEN 0x0A

struct finder {
    pid_t pid;
    unsigned long *ino;       /* QEMU's sockets */
    size_t nino;
    char **cand;              /* addresses: "/path" or "tcp:HOST:PORT" */
    size_t ncand;
    json_t *chardevs;         /* query-chardev's reply */
    char *why;                /* what each candidate said, for the refusal */
};

static void finder_free(struct finder *f)
{
    free(f->ino);
    for (size_t i = 0; i < f->ncand; i++)
        free(f->cand[i]);
    free(f->cand);
    json_decref(f->chardevs);
    free(f->why);
}

static void note(struct finder *f, const char *addr, const char *why)
{
    char *s = f->why ? vs_xasprintf("%s; %s: %s", f->why, addr, why) : vs_xasprintf("%s: %s", addr, why);
    free(f->why);
    f->why = s;
}

static int socket_inodes(struct finder *f, vs_err *e)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)f->pid);
    DIR *dir = opendir(path);
    if (!dir)
        return vs_err_sys(e, errno, "reading %s (QEMU's open files, to find its NBD server)", path);
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        char link[PATH_MAX], target[64];
        snprintf(link, sizeof link, "%s/%s", path, de->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        unsigned long ino;
        if (n <= 0)
            continue;
        target[n] = 0;
        if (sscanf(target, "socket:[%lu]", &ino) != 1)
            continue;
        if (f->nino == cap)
            f->ino = vs_xrealloc(f->ino, (cap = cap ? 2 * cap : 32) * sizeof *f->ino);
        f->ino[f->nino++] = ino;
    }
    closedir(dir);
    return 0;
}

static bool qemus(const struct finder *f, unsigned long ino)
{
    for (size_t i = 0; i < f->nino; i++)
        if (f->ino[i] == ino)
            return true;
    return false;
}

/* A chardev's listening address, as query-chardev writes it: "[disconnected:]unix:PATH,server=on",
 * "[disconnected:]tcp:HOST:PORT,server=on". */
static bool is_chardev(const struct finder *f, const char *addr)
{
    size_t i;
    json_t *c;
    json_array_foreach(f->chardevs, i, c) {
        const char *fn = json_string_value(json_object_get(c, "filename")) ?: "";
        if (!strncmp(fn, "disconnected:", 13))
            fn += 13;
        if (addr[0] == '/' && !strncmp(fn, "unix:", 5)) {
            size_t n = strlen(addr);
            if (!strncmp(fn + 5, addr, n) && (fn[5 + n] == ',' || !fn[5 + n]))
                return true;
        } else if (addr[0] != '/' && !strncmp(fn, "tcp:", 4)) {
            size_t n = strcspn(fn, ",");
            const char *colon = memrchr(fn, ':', n), *port = strrchr(addr, ':') + 1;
            if (colon && strlen(port) == n - (size_t)(colon + 1 - fn) && !strncmp(colon + 1, port, strlen(port)))
                return true;   /* the same port: close enough to leave it alone */
        }
    }
    return false;
}

static void add_cand(struct finder *f, char *addr)
{
    if (is_chardev(f, addr)) {
        free(addr);
        return;
    }
    f->cand = vs_xrealloc(f->cand, (f->ncand + 1) * sizeof *f->cand);
    f->cand[f->ncand++] = addr;
}

/* Num RefCount Protocol Flags Type St Inode Path: QEMU's listening stream sockets with a path. An abstract one
 * ('@') is left out: QEMU's NBD server is not started on one by the tools that start it elsewhere. */
static void unix_cands(struct finder *f)
{
    char path[64], line[PATH_MAX + 128];
    snprintf(path, sizeof path, "/proc/%d/net/unix", (int)f->pid);
    VS_AUTOFCLOSE FILE *in = fopen(path, "re");
    while (in && fgets(line, sizeof line, in)) {
        unsigned flags, type, st;
        unsigned long ino;
        int at = 0;
        if (sscanf(line, "%*s %*s %*s %x %x %x %lu %n", &flags, &type, &st, &ino, &at) != 4 || !at)
            continue;
        line[strcspn(line, "\n")] = 0;
        if ((flags & SOCK_LISTENING) && type == 1 && line[at] == '/' && qemus(f, ino))
            add_cand(f, vs_xstrdup(line + at));
    }
}

/* sl local_address rem_address st ... inode: QEMU's listening TCP sockets. The kernel prints each 32-bit word of
 * the address in host order; a wildcard address is reached on loopback. */
static void tcp_cands(struct finder *f, bool v6)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/net/%s", (int)f->pid, v6 ? "tcp6" : "tcp");
    VS_AUTOFCLOSE FILE *in = fopen(path, "re");
    while (in && fgets(line, sizeof line, in)) {
        char local[40];
        unsigned port, st;
        unsigned long ino;
        if (sscanf(line, "%*s %39[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", local, &port, &st, &ino) != 4 ||
            st != TCP_LISTEN || strlen(local) != (v6 ? 32u : 8u) || !qemus(f, ino))
            continue;
        uint32_t w[4] = { 0 };
        for (int i = 0; i < (v6 ? 4 : 1); i++) {
            char word[9];
            memcpy(word, local + 8 * i, 8);
            word[8] = 0;
            w[i] = (uint32_t)strtoul(word, NULL, 16);
        }
        char host[INET6_ADDRSTRLEN];
        if (!v6 && w[0] == 0)
            w[0] = htonl(INADDR_LOOPBACK);
        if (v6 && !(w[0] | w[1] | w[2] | w[3]))
            w[3] = htonl(1);
        inet_ntop(v6 ? AF_INET6 : AF_INET, w, host, sizeof host);
        add_cand(f, vs_xasprintf(v6 ? "tcp:[%s]:%u" : "tcp:%s:%u", host, port));
    }
}

int bc__nbd_connect(struct nbd_handle *h, const char *addr, bool aio)
{
    if (strncmp(addr, "tcp:", 4))
        return aio ? nbd_aio_connect_unix(h, addr) : nbd_connect_unix(h, addr);
    VS_AUTOFREE char *host = vs_xstrdup(addr + 4);
    char *colon = strrchr(host, ':');
    const char *port = "10809";   /* NBD's own port, when none is given */
    if (colon && !strchr(colon, ']')) {
        *colon = 0;
        port = colon + 1;
    }
    char *h0 = host;
    size_t n = strlen(h0);
    if (h0[0] == '[' && n > 1 && h0[n - 1] == ']') {
        h0++;
        h0[n - 2] = 0;
    }
    return aio ? nbd_aio_connect_tcp(h, h0, port) : nbd_connect_tcp(h, h0, port);
}

enum probe_res { P_FOUND, P_OTHER, P_NO_LIST, P_NOT_NBD, P_TLS };

struct listing {
    const char *want;
    bool found, done;
    int err;
};

static int on_name(void *opaque, const char *name, const char *desc)
{
    (void)desc;
    struct listing *l = opaque;
    if (!strcmp(name, l->want))
        l->found = true;
    return 0;
}

static int on_done(void *opaque, int *error)
{
    struct listing *l = opaque;
    l->done = true;
    l->err = *error;
    return 1;
}

static bool wait_handle(struct nbd_handle *h, double deadline)
{
    while (nbd_aio_is_connecting(h)) {
        double left = deadline - vs_now_s();
        if (left <= 0 || nbd_poll(h, (int)(left * 1000) + 1) < 0)
            return false;
    }
    return true;
}

/* Ask the server at addr (tls: offering TLS) for its exports; *why says what went wrong. */
static enum probe_res probe(const char *addr, const char *want, bool tls, char **why)
{
    struct nbd_handle *h = nbd_create();
    if (!h) {
        *why = vs_xasprintf("libnbd: %s", nbd_get_error());
        return P_NOT_NBD;
    }
    double deadline = vs_now_s() + PROBE_S;
    struct listing l = { .want = want };
    enum probe_res r;
    if (nbd_set_opt_mode(h, true) < 0 || (tls && nbd_set_tls(h, LIBNBD_TLS_ALLOW) < 0) ||
        bc__nbd_connect(h, addr, true) < 0 || !wait_handle(h, deadline) || !nbd_aio_is_negotiating(h)) {
        const char *m = nbd_get_error();
        *why = m && nbd_aio_is_connecting(h) == 0 ? vs_xstrdup(m)
                                                  : vs_xasprintf("no NBD handshake within %.0f s", PROBE_S);
        r = P_NOT_NBD;
    } else if (nbd_aio_opt_list(h, (nbd_list_callback){ .callback = on_name, .user_data = &l },
                                (nbd_completion_callback){ .callback = on_done, .user_data = &l }) < 0 ||
               !wait_handle(h, deadline) || !l.done || l.err) {
        *why = vs_xasprintf("an NBD server that did not list its exports (%s)",
                            l.err ? strerror(l.err) : nbd_get_error() ?: "no answer in time");
        r = P_NO_LIST;
    } else {
        *why = l.found ? NULL : vs_xstrdup("an NBD server without vmsnap's export (another QEMU's?)");
        r = l.found ? P_FOUND : P_OTHER;
        if (tls && nbd_get_tls_negotiated(h) == 1)
            r = P_TLS;   /* the copy, which does not speak TLS, could not read through it */
    }
    if (nbd_aio_is_negotiating(h))
        nbd_aio_opt_abort(h);
    nbd_close(h);
    return r;
}

/* One candidate: found, or a note saying why not. A server that will not list its exports without TLS is told
 * apart by offering TLS: it then takes the handshake (which fails: vmsnap has no credentials) where a server
 * without TLS goes on in plain text. */
static bool try_cand(struct finder *f, const char *addr, const char *want)
{
    VS_AUTOFREE char *why = NULL, *why_tls = NULL;
    enum probe_res r = probe(addr, want, false, &why);
    if (r == P_FOUND)
        return true;
    if (r == P_NO_LIST) {
        enum probe_res t = probe(addr, want, true, &why_tls);
        if (t == P_FOUND)
            return true;   /* TLS was not negotiated: the copy reads in plain text too */
        if (t == P_NOT_NBD || t == P_TLS) {
            VS_AUTOFREE char *m = vs_xasprintf("an NBD server that requires TLS, which vmsnap does not speak (with "
                                               "TLS offered: %s)", t == P_TLS ? "TLS negotiated" : why_tls);
            note(f, addr, m);
            return false;
        }
    }
    note(f, addr, why);
    return false;
}

int bc_nbd_find(struct qmp *q, const char *export_name, char **addr, vs_err *e)
{
    struct finder f = { .pid = qmp_peer_pid(q) };
    if (f.pid <= 0)
        return vs_err_set(e, ENOTSUP, "QMP socket %s tells no QEMU process (no peer pid): vmsnap cannot find where "
                          "its NBD server listens", qmp_name(q));
    int r = socket_inodes(&f, e);
    if (r == 0)
        r = qmp_execute(q, "query-chardev", NULL, &f.chardevs, e);
    if (r < 0) {
        finder_free(&f);
        return r;
    }
    unix_cands(&f);
    tcp_cands(&f, false);
    tcp_cands(&f, true);
    for (size_t i = 0; i < f.ncand; i++)
        if (try_cand(&f, f.cand[i], export_name)) {
            *addr = VS_STEAL(f.cand[i]);
            finder_free(&f);
            return 0;
        }
    r = vs_err_set(e, EHOSTUNREACH, "QEMU process %d: %s", (int)f.pid,
                   f.why ? f.why : "no listening socket besides its chardevs");
    finder_free(&f);
    return r;
}
