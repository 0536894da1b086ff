/* vmsnap test agent: runs inside the test guest on a serial line and answers the host's commands.
 *
 * Protocol (one line each way, see README.md): the host sends "<id> <command> [args]\n"; the agent answers exactly
 * one "R <id> OK [key=value...]" or "R <id> ERR <message>". A heartbeat thread writes "H <counter> <guest-us>" every
 * few milliseconds; the counter lives only in guest RAM, so after a snapshot restore it continues from the snapshot.
 * Lines are written whole under one lock, so heartbeats never split a reply. Built static (gcc -static -pthread). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096
#define REC_SIZE 4096u
#define REC_MAGIC 0x4345524e53564d56ull /* "VMSNVREC" little-endian */
#define LOOP_SLOTS_DEFAULT 1024u
#define MNT_DIR "/mnt"

struct agent {
    int fd;                           /* the serial line */
    pthread_mutex_t out_lock;         /* whole lines only */
    char boot_id[64];

    pthread_mutex_t hb_lock;
    uint64_t hb_counter;
    unsigned hb_ms;                   /* 0 = paused */

    uint64_t *mem;                    /* the filled RAM region */
    size_t mem_bytes;
    uint64_t mem_seed;
    unsigned mem_mix[3];              /* weights of random, text-like and zero 64 KiB chunks (fill mix=R:T:Z) */

    /* rawloop: record gen g goes to slot g % slots at base + slot * 4 KiB, written in place with O_DIRECT|O_DSYNC. */
    pthread_mutex_t loop_lock;        /* held for each write and for a check */
    pthread_t loop_thread;
    bool loop_running, loop_stop;
    int loop_fd;
    uint64_t loop_base, loop_slots, loop_gen; /* loop_gen: last gen whose write completed */
    uint64_t loop_errors;                     /* writes that failed (retried with the same gen) */
    unsigned loop_ms;
};

/* ---- output ---------------------------------------------------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return; /* nobody can hear us; keep running */
        }
        p += r;
        n -= (size_t)r;
    }
}

__attribute__((format(printf, 2, 3)))
static void emit(struct agent *a, const char *fmt, ...)
{
    char buf[LINE_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    for (int i = 0; i < n; i++) /* one line, always */
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
    buf[n++] = '\n';
    pthread_mutex_lock(&a->out_lock);
    write_all(a->fd, buf, (size_t)n);
    pthread_mutex_unlock(&a->out_lock);
}

/* Reply and leave the handler. */
#define FAIL(...) do { emit(__VA_ARGS__); return; } while (0)

/* ---- small helpers --------------------------------------------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The pattern word at index i for a seed: position-dependent, so a shifted or stale page never passes. */
static inline uint64_t pat(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void read_line_file(const char *path, char *out, size_t size)
{
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n < 0)
        n = 0;
    out[n] = 0;
    out[strcspn(out, " \n")] = 0;
}

/* key=value argument lookup, e.g. opt_u64(args, "seed", 1). */
static uint64_t opt_u64(char **argv, int argc, const char *key, uint64_t dflt)
{
    size_t kl = strlen(key);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], key, kl) == 0 && argv[i][kl] == '=')
            return strtoull(argv[i] + kl + 1, NULL, 0);
    return dflt;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno == 0 && *end == 0;
}

/* ---- heartbeat ------------------------------------------------------------------------------------------------- */

static void *hb_main(void *arg)
{
    struct agent *a = arg;
    struct sched_param sp = { .sched_priority = 10 };
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); /* beats stay on time while a command computes */
    for (;;) {
        pthread_mutex_lock(&a->hb_lock);
        unsigned ms = a->hb_ms;
        uint64_t c = ms ? ++a->hb_counter : a->hb_counter;
        pthread_mutex_unlock(&a->hb_lock);
        if (ms)
            emit(a, "H %" PRIu64 " %" PRIu64, c, mono_us());
        struct timespec ts = { .tv_sec = (ms ? ms : 50) / 1000, .tv_nsec = (long)((ms ? ms : 50) % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

/* MemAvailable in KiB, or 0 if unknown. */
static uint64_t mem_available_kib(void)
{
    char buf[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    const char *p = strstr(buf, "MemAvailable:");
    return p ? strtoull(p + 13, NULL, 10) : 0;
}

/* ---- RAM ------------------------------------------------------------------------------------------------------- */

static void mem_release(struct agent *a)
{
    if (a->mem)
        munmap(a->mem, a->mem_bytes);
    a->mem = NULL;
    a->mem_bytes = 0;
}

/* fill mix=R:T:Z: the region is cut in 64 KiB chunks, each random (pattern words), text-like (words from a small
 * dictionary: compresses about like logs or source) or zero, chosen by the seed and the chunk's index with weights
 * R, T, Z. The default 100:0:0 is all random (the original fill). Every chunk depends on seed and position. */
#define MIX_CHUNK (64u << 10)
enum { MIX_RANDOM, MIX_TEXT, MIX_ZERO };

static int mix_kind(const unsigned mix[3], uint64_t seed, size_t chunk)
{
    unsigned total = mix[0] + mix[1] + mix[2];
    unsigned r = (unsigned)(pat(seed ^ 0x6d69786d69786d69ull, chunk) % total);
    return r < mix[0] ? MIX_RANDOM : r < mix[0] + mix[1] ? MIX_TEXT : MIX_ZERO;
}

static void mix_text(uint64_t seed, size_t chunk, char *out)
{
    static const char *const words[32] = {
        "the", "snapshot", "of", "a", "virtual", "machine", "is", "written", "to", "disk", "and", "restored",
        "later", "when", "guest", "memory", "pages", "are", "copied", "with", "their", "device", "state", "in",
        "one", "stream", "error:", "INFO", "kernel", "0x7f3a", "request", "done",
    };
    size_t p = 0;
    for (uint64_t i = 0; p < MIX_CHUNK; i++) {
        uint64_t r = pat(seed, ((uint64_t)chunk << 16) + i);
        for (int j = 0; j < 8 && p < MIX_CHUNK; j++, r >>= 8) {
            const char *w = words[r & 31];
            while (*w && p < MIX_CHUNK)
                out[p++] = *w++;
            if (p < MIX_CHUNK)
                out[p++] = (r & 0xe0) == 0 ? '\n' : ' ';
        }
    }
}

static bool parse_mix(const char *s, unsigned mix[3])
{
    unsigned long v[3];
    char *end;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        v[i] = strtoul(s, &end, 10);
        if (errno || end == s || v[i] > 1000 || *end != (i < 2 ? ':' : 0))
            return false;
        s = end + 1;
    }
    if (v[0] + v[1] + v[2] == 0)
        return false;
    for (int i = 0; i < 3; i++)
        mix[i] = (unsigned)v[i];
    return true;
}

static const char *opt_str(char **argv, int argc, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], key, kl) == 0 && argv[i][kl] == '=')
            return argv[i] + kl + 1;
    return NULL;
}

static void cmd_fill(struct agent *a, const char *id, int argc, char **argv)
{
    uint64_t mib;
    unsigned mix[3] = { 100, 0, 0 };
    const char *m = opt_str(argv + 1, argc - 1, "mix");
    if (argc < 1 || !parse_u64(argv[0], &mib) || mib == 0 || mib > (1u << 20) || (m && !parse_mix(m, mix)))
        FAIL(a, "R %s ERR usage: fill MIB [seed=N] [mix=RANDOM:TEXT:ZERO]", id);
    uint64_t seed = opt_u64(argv + 1, argc - 1, "seed", 1);
    mem_release(a);
    uint64_t avail = mem_available_kib();
    if (avail && mib * 1024 + 16 * 1024 > avail) /* leave room, or the OOM killer takes the agent */
        FAIL(a, "R %s ERR not enough memory: fill %" PRIu64 " MiB, MemAvailable %" PRIu64 " MiB", id, mib,
             avail / 1024);
    size_t bytes = (size_t)mib << 20;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        FAIL(a, "R %s ERR mmap %" PRIu64 " MiB: %s", id, mib, strerror(errno));
    uint64_t t0 = mono_us(), n[3] = { 0, 0, 0 };
    uint64_t *w = p;
    for (size_t c = 0; c < bytes / MIX_CHUNK; c++) {
        int k = mix_kind(mix, seed, c);
        size_t i0 = c * (MIX_CHUNK / 8);
        n[k]++;
        if (k == MIX_TEXT)
            mix_text(seed, c, (char *)(w + i0));
        else if (k == MIX_ZERO)
            memset(w + i0, 0, MIX_CHUNK); /* touched, so the guest really holds it */
        else
            for (size_t i = i0; i < i0 + MIX_CHUNK / 8; i++)
                w[i] = pat(seed, i);
    }
    a->mem = w;
    a->mem_bytes = bytes;
    a->mem_seed = seed;
    memcpy(a->mem_mix, mix, sizeof mix);
    emit(a, "R %s OK mib=%" PRIu64 " seed=%" PRIu64 " ms=%" PRIu64 " mix=%u:%u:%u random_kib=%" PRIu64
         " text_kib=%" PRIu64 " zero_kib=%" PRIu64, id, mib, seed, (mono_us() - t0) / 1000, mix[0], mix[1], mix[2],
         n[0] * (MIX_CHUNK >> 10), n[1] * (MIX_CHUNK >> 10), n[2] * (MIX_CHUNK >> 10));
}

/* verify [seed=N] [from=MIB] [mib=MIB]: check the fill, or the MIB MiB of it from MiB offset FROM (a "function"
 * that reads part of RAM: benchmarks time it with the guest's clock, us=). */
static void cmd_verify(struct agent *a, const char *id, int argc, char **argv)
{
    static char text[MIX_CHUNK];
    if (!a->mem)
        FAIL(a, "R %s ERR nothing filled", id);
    uint64_t seed = opt_u64(argv, argc, "seed", a->mem_seed);
    uint64_t fill_mib = a->mem_bytes >> 20, from = opt_u64(argv, argc, "from", 0);
    uint64_t mib = opt_u64(argv, argc, "mib", from < fill_mib ? fill_mib - from : 0);
    if (from >= fill_mib || mib == 0 || mib > fill_mib - from)
        FAIL(a, "R %s ERR range from=%" PRIu64 " mib=%" PRIu64 " is not inside the %" PRIu64 " MiB fill", id, from,
             mib, fill_mib);
    size_t c0 = (size_t)(from << 20) / MIX_CHUNK, c1 = (size_t)((from + mib) << 20) / MIX_CHUNK;
    uint64_t t0 = mono_us();
    for (size_t c = c0; c < c1; c++) {
        int k = mix_kind(a->mem_mix, seed, c);
        size_t i0 = c * (MIX_CHUNK / 8);
        if (k == MIX_TEXT)
            mix_text(seed, c, text);
        for (size_t i = i0; i < i0 + MIX_CHUNK / 8; i++) {
            uint64_t want = k == MIX_RANDOM ? pat(seed, i) : 0;
            if (k == MIX_TEXT)
                memcpy(&want, text + (i - i0) * 8, 8);
            if (a->mem[i] != want)
                FAIL(a, "R %s ERR mismatch offset=%zu seed=%" PRIu64 " got=0x%016" PRIx64 " want=0x%016" PRIx64,
                            id, i * 8, seed, a->mem[i], want);
        }
    }
    uint64_t us = mono_us() - t0;
    emit(a, "R %s OK mib=%" PRIu64 " seed=%" PRIu64 " ms=%" PRIu64 " us=%" PRIu64 " from=%" PRIu64, id, mib, seed,
         us / 1000, us, from);
}

/* ---- raw records on a block device ----------------------------------------------------------------------------- */

/* A record: magic, seed, byte offset, then pattern words keyed on (seed, offset). */
static void rec_make(uint64_t *w, uint64_t seed, uint64_t off)
{
    w[0] = REC_MAGIC;
    w[1] = seed;
    w[2] = off;
    for (size_t j = 3; j < REC_SIZE / 8; j++)
        w[j] = pat(seed, off / 8 + j);
}

static bool rec_check(const uint64_t *w, uint64_t seed, uint64_t off)
{
    if (w[0] != REC_MAGIC || w[1] != seed || w[2] != off)
        return false;
    for (size_t j = 3; j < REC_SIZE / 8; j++)
        if (w[j] != pat(seed, off / 8 + j))
            return false;
    return true;
}

static int pio(bool wr, int fd, void *buf, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = wr ? pwrite(fd, buf, n, (off_t)off) : pread(fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        buf = (char *)buf + r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int raw_args(struct agent *a, const char *id, int argc, char **argv, const char *what, uint64_t *off,
                    uint64_t *count)
{
    if (argc < 3 || !parse_u64(argv[1], off) || !parse_u64(argv[2], count) || *off % REC_SIZE || *count == 0 ||
        *count > (1u << 20)) {
        emit(a, "R %s ERR usage: %s DEV OFFSET COUNT [seed=N] (OFFSET a multiple of 4096)", id, what);
        return -1;
    }
    return 0;
}

static void cmd_raw(struct agent *a, const char *id, int argc, char **argv, bool wr)
{
    uint64_t off, count;
    if (raw_args(a, id, argc, argv, wr ? "rawwrite" : "rawverify", &off, &count) < 0)
        return;
    uint64_t seed = opt_u64(argv + 3, argc - 3, "seed", 1);
    int fd = open(argv[0], (wr ? O_RDWR | O_DSYNC : O_RDONLY) | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        FAIL(a, "R %s ERR open %s: %s", id, argv[0], strerror(errno));
    void *buf;
    if (posix_memalign(&buf, REC_SIZE, REC_SIZE)) {
        close(fd);
        FAIL(a, "R %s ERR out of memory", id);
    }
    uint64_t t0 = mono_us();
    int err = 0;
    for (uint64_t i = 0; i < count && !err; i++) {
        uint64_t o = off + i * REC_SIZE;
        if (wr) {
            rec_make(buf, seed, o);
            err = pio(true, fd, buf, REC_SIZE, o);
        } else if ((err = pio(false, fd, buf, REC_SIZE, o)) == 0 && !rec_check(buf, seed, o)) {
            emit(a, "R %s ERR mismatch record=%" PRIu64 " offset=%" PRIu64 " seed=%" PRIu64, id, i, o, seed);
            err = 1;
        }
        if (err < 0)
            emit(a, "R %s ERR %s %s at %" PRIu64 ": %s", id, wr ? "write" : "read", argv[0], o, strerror(-err));
    }
    free(buf);
    close(fd);
    if (!err)
        emit(a, "R %s OK records=%" PRIu64 " ms=%" PRIu64, id, count, (mono_us() - t0) / 1000);
}

/* rawloop: a writer that keeps rewriting records in place, so a snapshot catches it mid-flight. Record gen g
 * (seed = g) lives in slot g % slots. After a restore, `rawcheck` compares every slot with what RAM says was written:
 * a disk newer or older than RAM shows up as slots holding the wrong generation. */
static void *loop_main(void *arg)
{
    struct agent *a = arg;
    void *buf;
    if (posix_memalign(&buf, REC_SIZE, REC_SIZE))
        return NULL;
    for (;;) {
        pthread_mutex_lock(&a->loop_lock);
        if (a->loop_stop) {
            pthread_mutex_unlock(&a->loop_lock);
            break;
        }
        uint64_t g = a->loop_gen + 1, o = a->loop_base + (g % a->loop_slots) * REC_SIZE;
        rec_make(buf, g, o);
        if (pio(true, a->loop_fd, buf, REC_SIZE, o) == 0)
            a->loop_gen = g;
        else
            a->loop_errors++;
        pthread_mutex_unlock(&a->loop_lock);
        struct timespec ts = { .tv_sec = a->loop_ms / 1000, .tv_nsec = (long)(a->loop_ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    free(buf);
    return NULL;
}

static void loop_stop(struct agent *a)
{
    if (!a->loop_running)
        return;
    pthread_mutex_lock(&a->loop_lock);
    a->loop_stop = true;
    pthread_mutex_unlock(&a->loop_lock);
    pthread_join(a->loop_thread, NULL);
    close(a->loop_fd);
    a->loop_running = false;
}

static void cmd_rawloop(struct agent *a, const char *id, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "stop") == 0) {
        loop_stop(a);
        FAIL(a, "R %s OK gen=%" PRIu64 " errors=%" PRIu64, id, a->loop_gen, a->loop_errors);
    }
    uint64_t off;
    if (argc < 2 || !parse_u64(argv[1], &off) || off % REC_SIZE)
        FAIL(a, "R %s ERR usage: rawloop DEV OFFSET [slots=N] [ms=N] | rawloop stop", id);
    loop_stop(a);
    int fd = open(argv[0], O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
    if (fd < 0)
        FAIL(a, "R %s ERR open %s: %s", id, argv[0], strerror(errno));
    a->loop_fd = fd;
    a->loop_base = off;
    a->loop_slots = opt_u64(argv + 2, argc - 2, "slots", LOOP_SLOTS_DEFAULT);
    a->loop_ms = (unsigned)opt_u64(argv + 2, argc - 2, "ms", 10);
    if (a->loop_slots == 0)
        a->loop_slots = 1;
    a->loop_gen = a->loop_errors = 0;
    a->loop_stop = false;
    void *zero;
    size_t zbytes = (size_t)a->loop_slots * REC_SIZE;
    if (a->loop_slots > (1u << 16) || posix_memalign(&zero, REC_SIZE, zbytes)) {
        close(fd);
        FAIL(a, "R %s ERR slots too many", id);
    }
    memset(zero, 0, zbytes);
    int zerr = pio(true, fd, zero, zbytes, off);
    free(zero);
    if (zerr < 0) {
        close(fd);
        FAIL(a, "R %s ERR clearing slots on %s: %s", id, argv[0], strerror(-zerr));
    }
    if (pthread_create(&a->loop_thread, NULL, loop_main, a)) {
        close(fd);
        FAIL(a, "R %s ERR cannot start thread", id);
    }
    a->loop_running = true;
    emit(a, "R %s OK slots=%" PRIu64 " ms=%u", id, a->loop_slots, a->loop_ms);
}

static void cmd_rawcheck(struct agent *a, const char *id)
{
    if (!a->loop_running)
        FAIL(a, "R %s ERR no rawloop running", id);
    void *buf;
    if (posix_memalign(&buf, REC_SIZE, REC_SIZE))
        FAIL(a, "R %s ERR out of memory", id);
    pthread_mutex_lock(&a->loop_lock); /* no write in flight while we read */
    uint64_t gen = a->loop_gen, bad = 0, first_bad = UINT64_MAX, disk_max = 0;
    int err = 0;
    for (uint64_t s = 0; s < a->loop_slots && !err; s++) {
        uint64_t o = a->loop_base + s * REC_SIZE;
        if ((err = pio(false, a->loop_fd, buf, REC_SIZE, o)) < 0)
            break;
        const uint64_t *w = buf;
        uint64_t got = (w[0] == REC_MAGIC && w[2] == o && rec_check(w, w[1], o)) ? w[1] : 0;
        /* expected: the newest gen <= gen that maps to this slot, 0 if none was written yet */
        uint64_t want = gen >= s ? gen - ((gen - s) % a->loop_slots) : 0;
        if (got > disk_max)
            disk_max = got;
        if (got != want) {
            bad++;
            if (first_bad == UINT64_MAX)
                first_bad = s;
        }
    }
    pthread_mutex_unlock(&a->loop_lock);
    free(buf);
    if (err)
        FAIL(a, "R %s ERR read %s: %s", id, "rawloop device", strerror(-err));
    if (bad)
        FAIL(a, "R %s ERR inconsistent ram_gen=%" PRIu64 " disk_max=%" PRIu64 " bad_slots=%" PRIu64
                    " first_bad=%" PRIu64, id, gen, disk_max, bad, first_bad);
    emit(a, "R %s OK ram_gen=%" PRIu64 " disk_max=%" PRIu64, id, gen, disk_max);
}

/* ---- files on a filesystem ------------------------------------------------------------------------------------- */

static int run_argv(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void cmd_mkfs(struct agent *a, const char *id, int argc, char **argv)
{
    uint64_t kib;
    if (argc < 1 || (argc > 1 && !parse_u64(argv[1], &kib)))
        FAIL(a, "R %s ERR usage: mkfs DEV [KIB]", id);
    /* 1 KiB blocks, so the optional size is in KiB; without it the whole device */
    char *args[] = { "/bin/busybox", "mke2fs", "-q", "-F", "-b", "1024", argv[0], argc > 1 ? argv[1] : NULL, NULL };
    int rc = run_argv(args);
    if (rc)
        FAIL(a, "R %s ERR mke2fs %s exited %d", id, argv[0], rc);
    emit(a, "R %s OK", id);
}

static void cmd_mount(struct agent *a, const char *id, int argc, char **argv)
{
    if (argc < 1)
        FAIL(a, "R %s ERR usage: mount DEV", id);
    mkdir(MNT_DIR, 0755);
    if (mount(argv[0], MNT_DIR, "ext2", 0, NULL) < 0)
        FAIL(a, "R %s ERR mount %s on %s: %s", id, argv[0], MNT_DIR, strerror(errno));
    emit(a, "R %s OK dir=%s", id, MNT_DIR);
}

static void cmd_umount(struct agent *a, const char *id)
{
    if (umount(MNT_DIR) < 0)
        FAIL(a, "R %s ERR umount %s: %s", id, MNT_DIR, strerror(errno));
    emit(a, "R %s OK", id);
}

/* Files live under /mnt; the name must be a plain file name. Content: pattern words keyed on (seed, offset). */
static int file_path(struct agent *a, const char *id, const char *name, char *out, size_t size)
{
    if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        emit(a, "R %s ERR bad file name (a plain name under %s)", id, MNT_DIR);
        return -1;
    }
    snprintf(out, size, "%s/%s", MNT_DIR, name);
    return 0;
}

static uint64_t hash_words(uint64_t h, const uint64_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ w[i]) * 0x100000001b3ull;
    return h;
}

static void cmd_file(struct agent *a, const char *id, int argc, char **argv, bool wr)
{
    uint64_t kib;
    char path[256];
    if (argc < 2 || !parse_u64(argv[1], &kib) || kib == 0 || kib > (1u << 22))
        FAIL(a, "R %s ERR usage: %s NAME KIB [seed=N]", id, wr ? "fswrite" : "fsverify");
    if (file_path(a, id, argv[0], path, sizeof path) < 0)
        return;
    uint64_t seed = opt_u64(argv + 2, argc - 2, "seed", 1);
    int fd = wr ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL(a, "R %s ERR open %s: %s", id, path, strerror(errno));
    uint64_t buf[1024 / 8 * 64]; /* 64 KiB */
    uint64_t t0 = mono_us(), h = 0xcbf29ce484222325ull, total = kib * 1024;
    const char *fail = NULL;
    for (uint64_t off = 0; off < total && !fail;) {
        size_t n = total - off < sizeof buf ? (size_t)(total - off) : sizeof buf;
        if (wr) {
            for (size_t j = 0; j < n / 8; j++)
                buf[j] = pat(seed, off / 8 + j);
            if (pio(true, fd, buf, n, off) < 0)
                fail = "write";
        } else {
            if (pio(false, fd, buf, n, off) < 0) {
                fail = "read (short file?)";
                break;
            }
            for (size_t j = 0; j < n / 8; j++)
                if (buf[j] != pat(seed, off / 8 + j)) {
                    close(fd);
                    FAIL(a, "R %s ERR mismatch offset=%" PRIu64 " seed=%" PRIu64, id, off + j * 8, seed);
                }
        }
        h = hash_words(h, buf, n / 8);
        off += n;
    }
    if (!fail && wr && fsync(fd) < 0)
        fail = "fsync";
    if (!fail && !wr) {
        char extra;
        if (pread(fd, &extra, 1, (off_t)total) == 1)
            fail = "size check (file longer than expected)";
    }
    close(fd);
    if (!fail && wr) { /* make the new directory entry durable too */
        int dfd = open(MNT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
            fail = "fsync directory";
        if (dfd >= 0)
            close(dfd);
    }
    if (fail)
        FAIL(a, "R %s ERR %s %s: %s", id, fail, path, strerror(errno));
    emit(a, "R %s OK kib=%" PRIu64 " hash=%016" PRIx64 " ms=%" PRIu64, id, kib, h, (mono_us() - t0) / 1000);
}

/* ---- status and control ---------------------------------------------------------------------------------------- */

static void cmd_status(struct agent *a, const char *id)
{
    char up[64];
    read_line_file("/proc/uptime", up, sizeof up);
    pthread_mutex_lock(&a->hb_lock);
    uint64_t c = a->hb_counter;
    unsigned ms = a->hb_ms;
    pthread_mutex_unlock(&a->hb_lock);
    emit(a, "R %s OK boot=%s uptime=%s hb=%" PRIu64 " hb_ms=%u fill_mib=%zu fill_seed=%" PRIu64
         " fill_mix=%u:%u:%u guest_us=%" PRIu64 " mem_avail_kib=%" PRIu64, id, a->boot_id, up, c, ms,
         a->mem_bytes >> 20, a->mem_seed, a->mem_mix[0], a->mem_mix[1], a->mem_mix[2], mono_us(),
         mem_available_kib());
}

static void cmd_hb(struct agent *a, const char *id, int argc, char **argv)
{
    uint64_t ms;
    if (argc < 1 || !parse_u64(argv[0], &ms) || ms > 60000)
        FAIL(a, "R %s ERR usage: hb MS (0 stops)", id);
    pthread_mutex_lock(&a->hb_lock);
    a->hb_ms = (unsigned)ms;
    pthread_mutex_unlock(&a->hb_lock);
    emit(a, "R %s OK hb_ms=%" PRIu64, id, ms);
}

static void cmd_poweroff(struct agent *a, const char *id, bool reboot_instead)
{
    loop_stop(a);
    sync();
    emit(a, "R %s OK", id);
    tcdrain(a->fd);
    umount(MNT_DIR);
    reboot(reboot_instead ? RB_AUTOBOOT : RB_POWER_OFF);
    emit(a, "E reboot: %s", strerror(errno));
}

static void cmd_dropcaches(struct agent *a, const char *id)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "3\n", 2) != 2) {
        if (fd >= 0)
            close(fd);
        FAIL(a, "R %s ERR drop_caches: %s", id, strerror(errno));
    }
    close(fd);
    emit(a, "R %s OK", id);
}

static void handle_line(struct agent *a, char *line)
{
    char *argv[32];
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t", &save); t && argc < 32; t = strtok_r(NULL, " \t", &save))
        argv[argc++] = t;
    if (argc == 0)
        return;
    const char *id = argv[0];
    uint64_t idnum;
    if (!parse_u64(id, &idnum) || strlen(id) > 20)
        FAIL(a, "E bad request (want: ID COMMAND [ARGS])");
    if (argc < 2)
        FAIL(a, "R %s ERR missing command", id);
    const char *c = argv[1];
    int n = argc - 2;
    char **v = argv + 2;
    if (!strcmp(c, "ping"))
        emit(a, "R %s OK pong", id);
    else if (!strcmp(c, "status"))
        cmd_status(a, id);
    else if (!strcmp(c, "hb"))
        cmd_hb(a, id, n, v);
    else if (!strcmp(c, "fill"))
        cmd_fill(a, id, n, v);
    else if (!strcmp(c, "verify"))
        cmd_verify(a, id, n, v);
    else if (!strcmp(c, "free")) {
        mem_release(a);
        emit(a, "R %s OK", id);
    } else if (!strcmp(c, "rawwrite"))
        cmd_raw(a, id, n, v, true);
    else if (!strcmp(c, "rawverify"))
        cmd_raw(a, id, n, v, false);
    else if (!strcmp(c, "rawloop"))
        cmd_rawloop(a, id, n, v);
    else if (!strcmp(c, "rawcheck"))
        cmd_rawcheck(a, id);
    else if (!strcmp(c, "mkfs"))
        cmd_mkfs(a, id, n, v);
    else if (!strcmp(c, "mount"))
        cmd_mount(a, id, n, v);
    else if (!strcmp(c, "umount"))
        cmd_umount(a, id);
    else if (!strcmp(c, "fswrite"))
        cmd_file(a, id, n, v, true);
    else if (!strcmp(c, "fsverify"))
        cmd_file(a, id, n, v, false);
    else if (!strcmp(c, "sync")) {
        sync();
        emit(a, "R %s OK", id);
    } else if (!strcmp(c, "dropcaches"))
        cmd_dropcaches(a, id);
    else if (!strcmp(c, "poweroff"))
        cmd_poweroff(a, id, false);
    else if (!strcmp(c, "reboot"))
        cmd_poweroff(a, id, true);
    else
        emit(a, "R %s ERR unknown command '%.64s'", id, c);
}

static int open_tty(const char *dev)
{
    int fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cflag |= CLOCAL | CREAD;
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        tcsetattr(fd, TCSANOW, &t);
    }
    tcflush(fd, TCIFLUSH);
    return fd;
}

int main(int argc, char **argv)
{
    static struct agent a = {
        .out_lock = PTHREAD_MUTEX_INITIALIZER, .hb_lock = PTHREAD_MUTEX_INITIALIZER,
        .loop_lock = PTHREAD_MUTEX_INITIALIZER, .hb_ms = 5, .mem_seed = 1, .mem_mix = { 100, 0, 0 },
        .loop_fd = -1,
    };
    const char *dev = argc > 1 ? argv[1] : "/dev/ttyS0";
    a.fd = open_tty(dev);
    if (a.fd < 0) {
        fprintf(stderr, "agent: open %s: %s\n", dev, strerror(errno));
        return 1;
    }
    read_line_file("/proc/sys/kernel/random/boot_id", a.boot_id, sizeof a.boot_id);
    if (!a.boot_id[0])
        snprintf(a.boot_id, sizeof a.boot_id, "unknown");
    emit(&a, "READY %s", a.boot_id);
    pthread_t hb;
    if (pthread_create(&hb, NULL, hb_main, &a)) {
        emit(&a, "E cannot start the heartbeat thread");
        return 1;
    }
    char buf[LINE_MAX_LEN];
    size_t len = 0;
    bool overlong = false;
    for (;;) {
        ssize_t r = read(a.fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            sleep(1); /* hang-up or error: keep the heartbeat alive and retry */
            continue;
        }
        len += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] != '\n' && buf[i] != '\r')
                continue;
            buf[i] = 0;
            if (!overlong)
                handle_line(&a, buf + start);
            overlong = false;
            start = i + 1;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        if (len == sizeof buf) { /* a line longer than we accept: drop it up to its newline */
            overlong = true;
            len = 0;
            emit(&a, "E line too long");
        }
    }
}
