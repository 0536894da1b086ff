/* bench: random 4 KiB read latency through the archive reader, cold (fresh handle, file pages dropped from the
 * page cache) and warm (same handle, block cache populated). Usage: readlat ARCHIVE [N] */
#include "archive/archive.h"

#include <fcntl.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    vs_err e;
    struct arc *a;
    int fd = open(argv[1], O_RDONLY);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    double t0 = vs_now_s();
    if (arc_open(argv[1], NULL, &a, &e) < 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double open_s = vs_now_s() - t0;
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)arc_find_disk(a, 0), &si);
    uint64_t blocks = si.size / 4096;
    static uint8_t buf[4096];
    unsigned x = 12345;
    uint64_t *offs = vs_xmalloc(sizeof *offs * (size_t)n);
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345;
        offs[i] = ((uint64_t)x * 2654435761u % blocks) * 4096;
    }
    double c0 = vs_now_s();
    for (int i = 0; i < n; i++)
        if (arc_pread(a, 0, buf, 4096, offs[i], &e) < 0)
            return 1;
    double cold = (vs_now_s() - c0) / n;
    double w0 = vs_now_s();
    for (int i = 0; i < n; i++)   /* same offsets again: the working set of these reads is now cached */
        if (arc_pread(a, 0, buf, 4096, offs[i], &e) < 0)
            return 1;
    double warm = (vs_now_s() - w0) / n;
    printf("open %.3f ms, cold %.1f us/read, warm %.1f us/read (%d random 4 KiB reads, mem %zu bytes)\n",
           open_s * 1e3, cold * 1e6, warm * 1e6, n, arc_mem_usage(a));
    arc_close(a);
    free(offs);
    return 0;
}
