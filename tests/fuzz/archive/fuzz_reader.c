/* libFuzzer target: open an archive from memory, read every stream, query allocation, verify. */
#include "archive/archive.h"

#include <string.h>

static void ignore(void *opaque, const struct arc_problem *p)
{
    (void)opaque;
    (void)p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arc *a;
    vs_err e;
    if (arc_open_source(arc_source_open_mem(data, size, "fuzz"), NULL, &a, &e) < 0)
        return 0;
    uint8_t *buf = malloc(1 << 20);
    for (unsigned i = 0; i < arc_stream_count(a); i++) {
        struct arc_stream_info si;
        arc_stream_get(a, i, &si);
        uint64_t len = VS_MIN(si.size, (uint64_t)(1 << 20));
        arc_pread(a, i, buf, len, 0, &e);
        if (si.size > 4096)
            arc_pread(a, i, buf, 4096, si.size - 4096, &e);
        if (si.size) {
            uint64_t run;
            unsigned fl;
            arc_block_status(a, i, 0, si.size, &run, &fl, &e);
        }
    }
    struct arc_verify_opts vo = { .problem = ignore };
    arc_verify(a, &vo, &e);
    free(buf);
    arc_close(a);
    return 0;
}
