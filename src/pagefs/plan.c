/* pagefs: a working set's ranges merged into large reads, in their recorded order. */
#include "pagefs/pagefs.h"

size_t pf_plan_merge(const struct pf_range *in, size_t n, uint64_t gap, uint64_t max, struct pf_range **out)
{
    struct pf_range *o = vs_xcalloc(n ? n : 1, sizeof *o);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct pf_range *x = &in[i];
        if (!x->len)
            continue;
        struct pf_range *c = k ? &o[k - 1] : NULL;
        uint64_t lo = c ? VS_MIN(c->off, x->off) : 0, hi = c ? VS_MAX(c->off + c->len, x->off + x->len) : 0;
        if (c && c->file == x->file && x->off <= c->off + c->len + gap && x->off + x->len + gap >= c->off &&
            hi - lo <= max) {
            c->off = lo;
            c->len = hi - lo;
        } else {
            o[k++] = *x;
        }
    }
    *out = o;
    return k;
}

size_t pf_record_keep(const struct pf_range *in, size_t n, uint64_t *const *keep, struct pf_range **out)
{
    size_t k = 0, cap = n ? n : 1;
    struct pf_range *o = vs_xcalloc(cap, sizeof *o);
    for (size_t i = 0; i < n; i++) {
        const uint64_t *map = keep[in[i].file];
        uint64_t p = in[i].off / PF_PAGE_SIZE, p1 = VS_DIV_ROUND_UP(in[i].off + in[i].len, PF_PAGE_SIZE);
        while (p < p1) {
            for (; p < p1 && !(map[p / 64] & (1ull << (p % 64))); p++)
                ;
            uint64_t q = p;
            for (; q < p1 && (map[q / 64] & (1ull << (q % 64))); q++)
                ;
            if (q == p)
                break;
            if (k == cap)
                o = vs_xrealloc(o, (cap *= 2) * sizeof *o);
            o[k++] = (struct pf_range){ in[i].file, p * PF_PAGE_SIZE, (q - p) * PF_PAGE_SIZE };
            p = q;
        }
    }
    *out = o;
    return k;
}
