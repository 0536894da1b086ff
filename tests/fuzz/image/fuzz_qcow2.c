/* libFuzzer target: the qcow2 reader over an in-memory image — open, walk the allocation map, read the data it
 * reports (bounded), and read across the start and the end of the disk. */
#include "image/image.h"

#include <stdint.h>
#include <string.h>

#define READ_BUDGET (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[65536];
    struct img *im;
    vs_err e = { 0 };
    if (img_open_mem(data, size, "fuzz.qcow2", IMG_FORMAT_AUTO, &im, &e) < 0)
        return 0;
    uint64_t sz = img_size(im), pos = 0, budget = READ_BUDGET;
    for (int steps = 0; pos < sz && steps < 4096; steps++) {
        uint64_t run;
        unsigned flags;
        if (img_block_status(im, pos, sz - pos, &run, &flags, &e) < 0 || !run || run > sz - pos)
            break;
        if (flags & IMG_STATUS_DATA && budget) {
            size_t n = (size_t)(run < sizeof buf ? run : sizeof buf);
            budget = budget > n ? budget - n : 0;
            if (img_pread(im, buf, n, pos, &e) < 0)
                break;
        }
        pos += run;
    }
    size_t n = sz < sizeof buf ? (size_t)sz : sizeof buf;
    if (n) {
        img_pread(im, buf, n, 0, &e);
        img_pread(im, buf, n, sz - n, &e);
    }
    img_close(im);
    return 0;
}
