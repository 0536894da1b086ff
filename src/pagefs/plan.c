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
