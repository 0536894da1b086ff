/* util: small shared helpers — errors, scope cleanup, I/O loops, time, sizes, UUIDs.
 * Prefix: vs_. No global mutable state lives here. */
#ifndef VMSNAP_UTIL_H
#define VMSNAP_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- errors ----------------------------------------------------------
 * Functions return 0 / a count on success and a negative errno on failure;
 * the human message goes to a caller-supplied vs_err (may be NULL).
 * The code given to vs_err_set/vs_err_sys is a POSITIVE errno value: an E* constant or errno, and -r for a
 * negative result r of another call. They return its negation. (tests/unit/util/check_err_sign.py checks.) */
typedef struct vs_err {
    int code;        /* negative errno, 0 if no error */
    char msg[512];   /* one line, no trailing newline, names what failed */
} vs_err;

/* Set *e (if non-NULL) and return -code (code 0: -EIO). */
int vs_err_set(vs_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, appending ": strerror(code)". */
int vs_err_sys(vs_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an existing message with more context ("reading X: <old msg>"). */
int vs_err_prefix(vs_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- scope cleanup ---------------------------------------------------- */
void vs_freep(void *p);
void vs_closep(int *fd);
void vs_fclosep(FILE **f);
#define VS_AUTOFREE __attribute__((cleanup(vs_freep)))
#define VS_AUTOCLOSE __attribute__((cleanup(vs_closep)))
#define VS_AUTOFCLOSE __attribute__((cleanup(vs_fclosep)))
/* Hand ownership out of a cleanup-scoped variable. */
#define VS_STEAL(p) ({ __typeof__(p) _t = (p); (p) = 0; _t; })
#define VS_STEAL_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })

#define VS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VS_DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))

/* Abort on a broken invariant (a bug, never bad input). */
#define VS_BUG(...) vs_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void vs_bug(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocation that aborts on OOM (programs here cannot recover from it sensibly). */
void *vs_xmalloc(size_t n);
void *vs_xcalloc(size_t n, size_t m);
void *vs_xrealloc(void *p, size_t n);
char *vs_xstrdup(const char *s);
char *vs_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- I/O: loops over short reads/writes and EINTR --------------------- */
/* Returns bytes read (< len only at EOF) or -errno. */
ssize_t vs_read_full(int fd, void *buf, size_t len);
ssize_t vs_pread_full(int fd, void *buf, size_t len, off_t off);
/* Returns 0 or -errno. */
int vs_write_full(int fd, const void *buf, size_t len);
int vs_pwrite_full(int fd, const void *buf, size_t len, off_t off);
/* fsync the directory containing path (after a rename). */
int vs_fsync_dir_of(const char *path, vs_err *e);
/* A directory only this user controls: made 0700 when missing (create), then it must be a real directory (not a
 * symlink) owned by the effective uid with none of the mode bits in `forbidden` (e.g. 077, or 022 where others may
 * read it). 0, or a negative errno with a message naming the path and what was wrong. */
int vs_dir_owned(const char *path, bool create, mode_t forbidden, vs_err *e);
/* mkostemp(tmpl, O_CLOEXEC) with a creation mode that the umask filters (mkostemp always makes 0600): the
 * trailing "XXXXXX" of tmpl is replaced. Returns the fd, or -1 with errno set. */
int vs_mkstemp_mode(char *tmpl, mode_t mode);
/* Whether s[0..len) is valid UTF-8 (shortest forms, no surrogates) without control characters (C0, DEL, C1): text
 * that is safe to print on a terminal and to put in JSON. */
bool vs_text_ok(const char *s, size_t len);
/* s with every byte that is not part of such text as \xNN: safe to print and to put in JSON; escaping twice
 * changes nothing. malloc'd. */
char *vs_text_escape(const char *s);

/* ---- sockets ----------------------------------------------------------- */
/* A listening Unix socket at path, born 0600 (no window where others can connect); a stale socket there is
 * replaced, any other file refused. *out gets the fd. */
int vs_listen_unix(const char *path, int *out, vs_err *e);
/* A stream connection to the Unix socket at path (close-on-exec); *out gets the fd. */
int vs_connect_unix(const char *path, int *out, vs_err *e);
/* vmsnap's control sockets (docs/CONTROL.md) take lines of at most this many bytes, each complete within this long. */
#define VS_CTL_MAX_LINE (64u << 10)
#define VS_CTL_TIMEOUT_S 30
/* The next line of a line protocol (vmsnap's control sockets): buf holds *have bytes already received, room for
 * cap + 1. Reads until a newline (or EOF after some bytes: a last line without one) and returns the line's length
 * n, with buf[n] = 0; the caller then drops *used bytes from the front. Fails with -ETIMEDOUT when no complete line
 * came within timeout_s, -EMSGSIZE for a line of cap bytes or more, -EINTR when watch_fd (may be -1) becomes
 * readable first, -ECONNRESET when the peer closed before a line. */
int vs_recv_line(int fd, int watch_fd, char *buf, size_t cap, size_t *have, size_t *used, double timeout_s,
                 vs_err *e);

/* ---- thread priority --------------------------------------------------- */
#define VS_IOPRIO_IDLE (3 << 13)       /* I/O class idle, as ioprio_set(2) takes it */
int vs_thread_ioprio(void);           /* the calling thread's I/O priority (ioprio_get), or < 0 */
void vs_thread_set_ioprio(int ioprio); /* the calling thread's; best effort */
/* Lowest CPU and I/O priority for the calling thread (SCHED_IDLE, I/O class idle): it runs only when nothing else
 * wants a core or the disk. Best effort. */
void vs_thread_idle(void);

/* ---- time -------------------------------------------------------------- */
uint64_t vs_now_ns(void);      /* CLOCK_MONOTONIC */
double vs_now_s(void);         /* CLOCK_MONOTONIC, seconds */

/* Fault injection for tests: true when env VMSNAP_TEST_FAULT (a comma-separated list) names `point`. Always false
 * in a buildtype=release build. */
bool vs_test_fault(const char *point);
uint64_t vs_wall_s(void);      /* CLOCK_REALTIME seconds */

/* ---- sizes ------------------------------------------------------------- */
/* "4096", "64K", "64KiB", "1M", "2G", "1T" (binary multiples). */
int vs_parse_size(const char *s, uint64_t *out);
/* Human form "1.5 GiB" into buf. */
const char *vs_fmt_size(uint64_t n, char *buf, size_t len);

/* ---- UUIDs (random, RFC 4122 v4) --------------------------------------- */
int vs_uuid_generate(uint8_t out[16]);
void vs_uuid_format(const uint8_t u[16], char out[37]);
int vs_uuid_parse(const char *s, uint8_t out[16]);

/* ---- little-endian helpers (formats never overlay structs on buffers) -- */
static inline void vs_put_le16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void vs_put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static inline void vs_put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (8 * i); }
static inline uint16_t vs_get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t vs_get_le32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t vs_get_le64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline void vs_put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void vs_put_be32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (24 - 8 * i); }
static inline void vs_put_be64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (56 - 8 * i); }
static inline uint16_t vs_get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t vs_get_be32(const uint8_t *p) { uint32_t v = 0; for (int i = 0; i < 4; i++) v = v << 8 | p[i]; return v; }
static inline uint64_t vs_get_be64(const uint8_t *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }

#endif
