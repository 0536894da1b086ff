/* util: implementation of the helpers declared in util.h. */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>

__attribute__((format(printf, 4, 0)))
static int vs_err_vset(vs_err *e, int code, bool sys, const char *fmt, va_list ap)
{
    int neg = code > 0 ? -code : code;   /* a negative code is the caller's slip: never make an error path worse */
    if (neg == 0)
        neg = -EIO;
    if (e) {
        int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        if (sys && n >= 0 && (size_t)n < sizeof e->msg)
            snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(-neg));
        e->code = neg;
    }
    return neg;
}

int vs_err_set(vs_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vs_err_vset(e, code, false, fmt, ap);
    va_end(ap);
    return r;
}

int vs_err_sys(vs_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vs_err_vset(e, code, true, fmt, ap);
    va_end(ap);
    return r;
}

int vs_err_prefix(vs_err *e, const char *fmt, ...)
{
    if (!e)
        return -EIO;
    char buf[2 * sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof e->msg)
        n = sizeof e->msg - 1;
    memcpy(buf + n, ": ", 2);
    memcpy(buf + n + 2, e->msg, sizeof e->msg);
    buf[sizeof buf - 1] = 0;
    memcpy(e->msg, buf, sizeof e->msg - 1);
    e->msg[sizeof e->msg - 1] = 0;
    return e->code ? e->code : -EIO;
}

void vs_freep(void *p) { free(*(void **)p); }
void vs_closep(int *fd) { if (*fd >= 0) close(*fd); }
void vs_fclosep(FILE **f) { if (*f) fclose(*f); }

void vs_bug(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vmsnap: BUG at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static void *oom(size_t n)
{
    fprintf(stderr, "vmsnap: out of memory allocating %zu bytes\n", n);
    abort();
}

void *vs_xmalloc(size_t n) { void *p = malloc(n ? n : 1); return p ? p : oom(n); }
void *vs_xcalloc(size_t n, size_t m) { void *p = calloc(n ? n : 1, m ? m : 1); return p ? p : oom(n * m); }
void *vs_xrealloc(void *p, size_t n) { void *q = realloc(p, n ? n : 1); return q ? q : oom(n); }
char *vs_xstrdup(const char *s) { char *p = strdup(s); return p ? p : oom(strlen(s)); }

char *vs_xasprintf(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? oom(0) : s;
}

ssize_t vs_read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += n;
    }
    return done;
}

ssize_t vs_pread_full(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += n;
    }
    return done;
}

int vs_write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += n;
    }
    return 0;
}

int vs_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += n;
    }
    return 0;
}

int vs_mkstemp_mode(char *tmpl, mode_t mode)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = strlen(tmpl);
    if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX")) {
        errno = EINVAL;
        return -1;
    }
    for (int tries = 0; tries < 100; tries++) {
        uint8_t rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            return -1;
        for (size_t i = 0; i < 6; i++)
            tmpl[n - 6 + i] = chars[rnd[i] % (sizeof chars - 1)];
        int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Length of the printable UTF-8 character at p (shortest form, no surrogate, no control), or 0. */
static size_t text_char_len(const uint8_t *p, const uint8_t *end)
{
    uint32_t c = *p++;
    unsigned more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
    if (more == 4 || (size_t)(end - p) < more)
        return 0;
    c &= 0x7f >> more;
    for (unsigned i = 0; i < more; i++, p++) {
        if ((*p & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (*p & 0x3f);
    }
    static const uint32_t min[] = { 0, 0x80, 0x800, 0x10000 };
    if (c < min[more] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) || c < 0x20 || (c >= 0x7f && c < 0xa0))
        return 0;
    return more + 1;
}

bool vs_text_ok(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    for (size_t n; p < end; p += n)
        if (!(n = text_char_len(p, end)))
            return false;
    return true;
}

char *vs_text_escape(const char *s)
{
    const uint8_t *p = (const uint8_t *)s, *end = p + strlen(s);
    char *out = vs_xmalloc(4 * (size_t)(end - p) + 1), *o = out;
    while (p < end) {
        size_t n = text_char_len(p, end);
        if (n) {
            memcpy(o, p, n);
            o += n;
            p += n;
        } else {
            o += sprintf(o, "\\x%02x", *p++);
        }
    }
    *o = 0;
    return out;
}

int vs_dir_owned(const char *path, bool create, mode_t forbidden, vs_err *e)
{
    if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
        return vs_err_sys(e, errno, "creating directory %s", path);
    struct stat st;
    if (lstat(path, &st) < 0)
        return vs_err_sys(e, errno, "directory %s", path);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return vs_err_set(e, EPERM, "%s is not a directory owned by uid %u", path, (unsigned)geteuid());
    if (st.st_mode & forbidden)
        return vs_err_set(e, EPERM, "directory %s has mode %03o; expected none of %03o", path,
                          (unsigned)(st.st_mode & 0777), (unsigned)forbidden);
    return 0;
}

int vs_fsync_dir_of(const char *path, vs_err *e)
{
    VS_AUTOFREE char *copy = vs_xstrdup(path);
    const char *dir = dirname(copy);
    VS_AUTOCLOSE int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vs_err_sys(e, errno, "opening directory '%s'", dir);
    if (fsync(fd) < 0)
        return vs_err_sys(e, errno, "syncing directory '%s'", dir);
    return 0;
}

uint64_t vs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

double vs_now_s(void) { return vs_now_ns() / 1e9; }

#define IOPRIO_WHO_THREAD 1   /* IOPRIO_WHO_PROCESS with who 0: the calling thread */

int vs_thread_ioprio(void) { return (int)syscall(SYS_ioprio_get, IOPRIO_WHO_THREAD, 0); }

void vs_thread_set_ioprio(int ioprio) { syscall(SYS_ioprio_set, IOPRIO_WHO_THREAD, 0, ioprio); }

void vs_thread_idle(void)
{
    static const struct sched_param zero = { 0 };
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &zero);
    vs_thread_set_ioprio(VS_IOPRIO_IDLE);
}

bool vs_test_fault(const char *point)
{
#ifdef VS_TEST_FAULTS
    const char *v = getenv("VMSNAP_TEST_FAULT");
    size_t n = strlen(point);
    for (const char *p = v; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, point, n) && (p[n] == ',' || !p[n]))
            return true;
#else
    (void)point;
#endif
    return false;
}

uint64_t vs_wall_s(void) { return (uint64_t)time(NULL); }

int vs_parse_size(const char *s, uint64_t *out)
{
    /* A digit first: strtoull would also take leading blanks and a sign, and " -1" would wrap to 2^64-1. */
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "ib")))
        end += strlen(end);
    if (!shift && (!strcmp(end, "B") || !strcmp(end, "b")))
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

const char *vs_fmt_size(uint64_t n, char *buf, size_t len)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = n;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < VS_ARRAY_SIZE(unit)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

int vs_uuid_generate(uint8_t out[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(out + got, 16 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += n;
    }
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    return 0;
}

void vs_uuid_format(const uint8_t u[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u[i] >> 4];
        *p++ = hex[u[i] & 15];
    }
    *p = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int vs_uuid_parse(const char *s, uint8_t out[16])
{
    int n = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '-' && (n == 8 || n == 12 || n == 16 || n == 20))
            continue;
        int v = hexval(*p);
        if (v < 0 || n >= 32)
            return -EINVAL;
        if (n % 2 == 0)
            out[n / 2] = v << 4;
        else
            out[n / 2] |= v;
        n++;
    }
    return n == 32 ? 0 : -EINVAL;
}

int vs_recv_line(int fd, int watch_fd, char *buf, size_t cap, size_t *have, size_t *used, double timeout_s,
                 vs_err *e)
{
    double deadline = vs_now_s() + timeout_s;
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        if (nl) {
            *nl = 0;
            *used = (size_t)(nl - buf) + 1;
            return (int)(nl - buf);
        }
        if (*have >= cap)
            return vs_err_set(e, EMSGSIZE, "line longer than %zu bytes", cap);
        double left = deadline - vs_now_s();
        if (left <= 0)
            return vs_err_set(e, ETIMEDOUT, "no complete line within %g s", timeout_s);
        struct pollfd p[2] = { { fd, POLLIN, 0 }, { watch_fd, POLLIN, 0 } };
        int pr = poll(p, 2, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR)
            return vs_err_sys(e, errno, "waiting for a line");
        if (pr > 0 && p[1].revents)
            return vs_err_set(e, EINTR, "interrupted");
        if (pr <= 0 || !p[0].revents)
            continue;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vs_err_sys(e, errno, "receiving a line");
        if (n == 0) {
            if (!*have)
                return vs_err_set(e, ECONNRESET, "connection closed");
            buf[*have] = 0;
            *used = *have;
            return (int)*have;
        }
        *have += (size_t)n;
    }
}

int vs_connect_unix(const char *path, int *out, vs_err *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return vs_err_set(e, ENAMETOOLONG, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vs_err_sys(e, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int err = errno;
        close(fd);
        return vs_err_sys(e, err, "connecting to %s", path);
    }
    *out = fd;
    return 0;
}

int vs_listen_unix(const char *path, int *out, vs_err *e)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (!path || !*path)
        return vs_err_set(e, EINVAL, "no socket path given");
    if (strlen(path) >= sizeof(a.sun_path))
        return vs_err_set(e, ENAMETOOLONG, "socket path %s is longer than %zu bytes", path, sizeof(a.sun_path) - 1);
    strcpy(a.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return vs_err_set(e, EEXIST, "%s exists and is not a socket", path);
        unlink(path);
    }
    VS_AUTOCLOSE int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vs_err_sys(e, errno, "creating socket %s", path);
    mode_t old = umask(0177); /* the socket is born 0600: no window where others can connect */
    int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (r < 0)
        return vs_err_sys(e, errno, "binding socket %s", path);
    if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
        r = vs_err_sys(e, errno, "listening on socket %s", path);
        unlink(path);
        return r;
    }
    *out = VS_STEAL_FD(fd);
    return 0;
}
