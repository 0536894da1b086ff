/* libFuzzer target: arbitrary bytes as a QEMU migration stream, split twice (all at once, and in chunks whose
 * sizes come from the input) with every block split out, both strictly and keeping an unknown rest opaque (as
 * snap does). Checked: memory safety, termination, that chunking changes nothing (same result code, page records,
 * device stream digest, where the rest went opaque), and that an opaque rest is the input's tail, unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migstream/migstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
    uint64_t pages, dev_bytes, h, opaque_from;
    uint8_t last[64];              /* the device stream's last bytes */
    size_t last_len;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int a_page(void *o, const struct ms_block *b, uint64_t off, const uint8_t *d, vs_err *e)
{
    (void)e;
    struct acc *a = o;
    if (off % MS_PAGE_SIZE || off + MS_PAGE_SIZE > b->size)
        abort();                   /* the parser must never deliver a page outside its block */
    a->pages++;
    a->h = mix(a->h, &off, sizeof off);
    if (d)
        a->h = mix(a->h, d, 64);
    return 0;
}

static int a_dev(void *o, const void *buf, size_t len, vs_err *e)
{
    (void)e;
    struct acc *a = o;
    a->dev_bytes += len;
    a->h = mix(a->h, buf, len);
    size_t keep = VS_MIN(len, sizeof a->last);
    size_t old = VS_MIN(a->last_len, sizeof a->last - keep);
    memmove(a->last, a->last + a->last_len - old, old);
    memcpy(a->last + old, (const uint8_t *)buf + len - keep, keep);
    a->last_len = old + keep;
    return 0;
}

static int run(const uint8_t *data, size_t size, size_t chunk, bool keep_rest, struct acc *a)
{
    struct ms_ops ops = { .page = a_page, .device = a_dev, .opaque = a };
    struct ms_opts o = { .tail_max = 1 << 20, .keep_unknown_rest = keep_rest };
    vs_err e = { 0 };
    struct ms_parser *p = NULL;
    if (ms_parser_new(&ops, &o, &p, &e) < 0)
        abort();
    int r = 0;
    for (size_t off = 0; off < size && r == 0;) {
        size_t n = VS_MIN(chunk, size - off);
        r = ms_push(p, data + off, n, &e);
        off += n;
    }
    struct ms_summary s;
    if (r == 0 && (r = ms_finish(p, &s, &e)) == 0)
        a->opaque_from = s.opaque_from;
    if (r == 0 && s.opaque_from) {  /* the rest is passed on as it came: the device stream ends with it */
        size_t n = VS_MIN(a->last_len, size - s.opaque_from);
        if (!keep_rest || s.opaque_from > size || memcmp(a->last + a->last_len - n, data + size - n, n))
            abort();
    }
    if (r < 0 && (e.msg[0] == 0 || strchr(e.msg, '\n')))
        abort();                   /* every failure has a one-line message */
    ms_parser_free(p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk = size ? (size_t)data[size - 1] % 17 + 1 : 1;
    for (int keep = 0; keep < 2; keep++) {
        struct acc a1 = { 0 }, a2 = { 0 };
        int r1 = run(data, size, size ? size : 1, keep, &a1);
        int r2 = run(data, size, chunk, keep, &a2);
        if (r1 != r2 || a1.pages != a2.pages || (r1 == 0 && (a1.dev_bytes != a2.dev_bytes || a1.h != a2.h ||
                                                              a1.opaque_from != a2.opaque_from)))
            abort();
    }
    return 0;
}
