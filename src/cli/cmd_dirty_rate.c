/* cli: "vmsnap dirty-rate" — measure the guest's dirty rate and estimate snapshot time and pause. */
#include "cli/qops-cli.h"

#include <errno.h>
#include <getopt.h>
#include <time.h>

static int measure(const char *path, int seconds, struct qops_vm_facts *facts, struct qops_dirty_rate *dr, vs_err *e)
{
    {
        struct qmp *q QMP_AUTOCLOSE = NULL;
        int r = qops_cli_connect(path, &q, e);
        if (r < 0 || (r = qops_vm_facts_query(q, facts, e)) < 0 || (r = qops_dirty_rate_start(q, seconds, e)) < 0)
            return r;
    }
    /* QEMU measures on its own: leave the user's socket free meanwhile. */
    nanosleep(&(struct timespec){ .tv_sec = seconds, .tv_nsec = 100 * 1000 * 1000 }, NULL);
    struct qmp *q QMP_AUTOCLOSE = NULL;
    int r = qops_cli_connect(path, &q, e);
    if (r < 0)
        return r;
    double end = vs_now_s() + 30;
    while ((r = qops_dirty_rate_result(q, dr, e)) == -EAGAIN) {
        if (vs_now_s() > end)
            return vs_err_set(e, ETIMEDOUT, "dirty-rate measurement on %s did not finish", path);
        nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000 * 1000 }, NULL);
    }
    return r;
}

int cmd_dirty_rate(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "qmp", required_argument, NULL, 'q' },        { "seconds", required_argument, NULL, 's' },
        { "throughput", required_argument, NULL, 't' }, { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    const char *qmp_path = NULL;
    int seconds = 1;
    uint64_t throughput = 0;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'q': qmp_path = optarg; break;
        case 'j': json = true; break;
        case 's':
        {
            long n = strtol(optarg, &end, 10);   /* range-checked before the cut to int */
            if (*end || end == optarg || n < 1 || n > 60)
                return cli_usage("dirty-rate", "--seconds needs a whole number from 1 to 60, not '%s'", optarg);
            seconds = (int)n;
            break;
        }
        case 't':
            if (vs_parse_size(optarg, &throughput) < 0 || !throughput)
                return cli_usage("dirty-rate", "--throughput needs bytes per second like 200M, not '%s'", optarg);
            break;
        default: return cli_usage("dirty-rate", "bad option");
        }
    }
    if (optind != argc)
        return cli_usage("dirty-rate", "unexpected argument '%s'", argv[optind]);
    if (!qmp_path)
        return cli_usage("dirty-rate", "dirty-rate needs --qmp PATH");

    vs_err e = { 0 };
    struct qops_vm_facts facts;
    struct qops_dirty_rate dr;
    if (measure(qmp_path, seconds, &facts, &dr, &e) < 0)
        return cli_fail_err(&e);

    const char *source = "--throughput";
    double T = (double)throughput;
    if (!throughput && facts.last_bytes_per_s > 0)
        T = facts.last_bytes_per_s, source = "last migration";
    else if (!throughput && facts.max_bandwidth)
        T = (double)facts.max_bandwidth, source = "max-bandwidth";
    if (!(T > 0))
        return cli_fail("cannot tell the migration throughput of the VM on %s: pass --throughput", qmp_path);
    struct qops_estimate_in in = {
        .ram_bytes = facts.ram_bytes, .nonzero_fraction = facts.last_nonzero_fraction,
        .dirty_bytes_per_s = dr.mib_per_s * 1048576.0, .throughput_bytes_per_s = T,
        .downtime_limit_s = facts.downtime_limit_s,
    };
    struct qops_estimate est;
    qops_estimate_compute(&in, &est);

    if (json) {
        return qops_cli_print_json(json_pack(
            "{s:f, s:f, s:I, s:s, s:I, s:I, s:f, s:s, s:f, s:f, s:{s:{s:f, s:f}, s:{s:f, s:f, s:b, s:i, s:I},"
            " s:{s:b, s:f, s:f}}}",
            "dirty_rate", in.dirty_bytes_per_s, "dirty_rate_mib_s", dr.mib_per_s, "calc_time",
            (json_int_t)dr.calc_time_s, "mode", dr.mode, "sample_pages", (json_int_t)dr.sample_pages, "ram",
            (json_int_t)facts.ram_bytes, "throughput", T, "throughput_source", source, "nonzero_fraction",
            facts.last_nonzero_fraction > 0 ? facts.last_nonzero_fraction : 1.0, "downtime_limit",
            facts.downtime_limit_s, "estimate",
            "stop", "total", est.stop_total_s, "pause", est.stop_pause_s,
            "live", "total", est.live_total_s, "pause", est.live_pause_s, "converges", est.live_converges,
            "rounds", est.live_rounds, "bytes", (json_int_t)est.live_bytes,
            "background", "available", facts.has_background_snapshot, "total", est.bg_total_s, "pause",
            est.bg_pause_s));
    }
    char r[32], t[32];
    printf("dirty rate: %.0f MiB/s (%s over %lld s, %llu sample pages per GiB)\n", dr.mib_per_s, dr.mode,
           (long long)dr.calc_time_s, (unsigned long long)dr.sample_pages);
    printf("RAM %s, throughput %s/s (%s), downtime-limit %.3f s\n", vs_fmt_size(facts.ram_bytes, r, sizeof r),
           vs_fmt_size((uint64_t)T, t, sizeof t), source, facts.downtime_limit_s);
    printf("stop-mode snapshot: ~%.3f s, VM paused all of it\n", est.stop_total_s);
    printf("live snapshot (precopy): ~%.3f s, pause ~%.3f s, %d rounds%s\n", est.live_total_s, est.live_pause_s,
           est.live_rounds, est.live_converges ? "" : " (does not converge: the rest is sent stopped)");
    if (facts.has_background_snapshot)
        printf("live snapshot (background-snapshot): ~%.3f s, pause: device state only\n", est.bg_total_s);
    return CLI_OK;
}
