/* archive: one stream out to a file descriptor, zero runs left as holes. */
#include "archive/archive.h"

#include <errno.h>
#include <unistd.h>

#define CHUNK (1u << 20)

int arc_extract_fd(struct arc *a, unsigned stream, int fd, void (*progress)(void *opaque, uint64_t done),
                   void *opaque, vs_err *e)
{
    struct arc_stream_info si;
    if (arc_stream_get(a, stream, &si) < 0)
        return vs_err_set(e, EINVAL, "no stream %u", stream);
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(CHUNK);
    uint64_t off = 0;
    while (off < si.size) {
        uint64_t run;
        unsigned fl;
        int r = arc_block_status(a, stream, off, si.size - off, &run, &fl, e);
        if (r < 0)
            return r;
        if (fl != ARC_STATUS_DATA) {
            off += run;   /* a hole: nothing to write */
            continue;
        }
        for (uint64_t end = off + run; off < end;) {
            size_t n = (size_t)VS_MIN((uint64_t)CHUNK, end - off);
            if ((r = arc_pread(a, stream, buf, n, off, e)) < 0)
                return r;
            if ((r = vs_pwrite_full(fd, buf, n, (off_t)off)) < 0)
                return vs_err_sys(e, -r, "writing stream '%s'", si.name);
            off += n;
            if (progress)
                progress(opaque, off);
        }
    }
    if (ftruncate(fd, (off_t)si.size) < 0)
        return vs_err_sys(e, errno, "sizing the copy of stream '%s'", si.name);
    return 0;
}
