/* qops: snapshot time/pause model from RAM size, dirty rate and stream throughput (pure arithmetic). */
#include "qops/qops.h"

#include <math.h>

void qops_estimate_compute(const struct qops_estimate_in *in, struct qops_estimate *out)
{
    double f = in->nonzero_fraction > 0 && in->nonzero_fraction <= 1 ? in->nonzero_fraction : 1.0;
    double T = in->throughput_bytes_per_s;
    double D = in->dirty_bytes_per_s > 0 ? in->dirty_bytes_per_s : 0;
    double R = (double)in->ram_bytes;
    double L = in->downtime_limit_s > 0 ? in->downtime_limit_s : 0.3;
    int max_rounds = in->max_rounds > 0 ? in->max_rounds : 30;

    *out = (struct qops_estimate){ 0 };
    if (!(T > 0)) {
        out->stop_total_s = out->stop_pause_s = out->live_total_s = out->live_pause_s = INFINITY;
        out->bg_total_s = INFINITY;
        return;
    }
    double first = R * f;
    out->stop_total_s = out->stop_pause_s = first / T;
    out->bg_total_s = first / T;
    out->bg_pause_s = 0;

    double t = first / T, total = t, sent = first;
    int rounds = 1;
    double pending = VS_MIN(R, D * t);
    while (pending / T > L && rounds < max_rounds) {
        t = pending / T;
        total += t;
        sent += pending;
        rounds++;
        pending = VS_MIN(R, D * t);
    }
    out->live_converges = pending / T <= L;
    out->live_pause_s = pending / T;
    out->live_total_s = total + pending / T;
    out->live_bytes = (uint64_t)(sent + pending);
    out->live_rounds = rounds + (pending > 0 ? 1 : 0);
}
