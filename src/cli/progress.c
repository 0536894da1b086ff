/* cli: one-line progress on stderr (bytes, rate, ETA), redrawn at most 5 times a second. */
#include "cli/cli.h"

void cli_progress_init(struct cli_progress *p, bool enabled, const char *what, uint64_t total)
{
    *p = (struct cli_progress){ .on = enabled, .what = what, .total = total, .start = vs_now_s() };
}

void cli_progress_update(struct cli_progress *p, uint64_t done)
{
    if (!p->on)
        return;
    double now = vs_now_s();
    if (now - p->last < 0.2 && done < p->total)
        return;
    p->last = now;
    double el = now - p->start, rate = el > 0 ? done / el : 0;
    char a[32], b[32], r[32];
    vs_fmt_size(done, a, sizeof a);
    vs_fmt_size((uint64_t)rate, r, sizeof r);
    if (p->total && p->total != UINT64_MAX) {
        vs_fmt_size(p->total, b, sizeof b);
        double eta = rate > 0 ? (double)(p->total - VS_MIN(done, p->total)) / rate : 0;
        fprintf(stderr, "\r%s: %s / %s, %s/s, ETA %.0fs   ", p->what, a, b, r, eta);
    } else {
        fprintf(stderr, "\r%s: %s, %s/s   ", p->what, a, r);
    }
}

void cli_progress_done(struct cli_progress *p)
{
    if (p->on && p->last > 0)
        fputc('\n', stderr);
    p->on = false;
}
