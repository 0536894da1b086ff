"""bench/run's output: raw CSV (one row per method, RAM size and repeat), restore CSV (one row per restore), summary
CSVs (median, min, max), a markdown fragment with the tables and ratios against vmsnap live / vmsnap's lazy boot, and
a gnuplot PNG of pause, restore time and the first RAM check after restore."""
import csv
import json
import os
import shutil
import statistics
import subprocess

RAW_FIELDS = ["run", "ram_mib", "repeat", "method", "fill_mib", "mix", "load1", "idle_gap_ms", "pause_ms", "pause_at_s",
              "tool_pause_ms", "qemu_downtime_ms", "return_s", "durable_s", "size_bytes", "stream_bytes",
              "hb_rate_idle", "hb_rate_during", "slowdown", "restore_s", "restore_hb_s", "verify", "verify_ms",
              "resumed", "note", "ph_stop_ms", "ph_freeze_ms", "ph_migrate_ms", "ph_resume_event_ms",
              "ph_qemu_setup_time_ms"]
# vmsnap snap --json's pause phases (ms from the start of the pause), bench/run copies them into raw rows
PHASES = ["ph_stop_ms", "ph_freeze_ms", "ph_migrate_ms", "ph_resume_event_ms", "ph_qemu_setup_time_ms"]
RESTORE_FIELDS = ["run", "ram_mib", "repeat", "restore", "snapshot", "load1", "restore_s", "s2r_s", "first_beat_s",
                  "check1_ms", "check1_host_ms", "check2_ms", "check2_host_ms", "verify", "resumed"]

# (field, header, format); summarized as median [min-max]
METRICS = [("pause_ms", "guest pause ms", "{:.1f}"), ("idle_gap_ms", "idle gap ms", "{:.1f}"),
           ("tool_pause_ms", "vmsnap-reported pause ms", "{:.1f}"),
           ("qemu_downtime_ms", "QEMU downtime ms", "{:.0f}"), ("return_s", "return s", "{:.2f}"),
           ("durable_s", "durable s", "{:.2f}"), ("size_mib", "size MiB", "{:.0f}"),
           ("slowdown", "hb rate during/idle", "{:.2f}")]
RATIOS = [("pause_ms", "pause"), ("durable_s", "durable"), ("size_mib", "size")]
RMETRICS = [("restore_s", "to running s", "{:.2f}"), ("first_beat_s", "first beat s", "{:.2f}"),
            ("check1_ms", "RAM check right after ms", "{:.0f}"), ("check2_ms", "RAM check again ms", "{:.0f}"),
            ("check1_host_ms", "1st check host ms", "{:.0f}"), ("running_checked_s", "to running + 1st check s",
                                                               "{:.2f}")]
RRATIOS = [("restore_s", "to running"), ("check1_ms", "1st check"), ("running_checked_s", "running + 1st check")]
PMETRICS = [("pause_ms", "guest pause ms", "{:.1f}"), ("pause_at_s", "longest gap began s", "{:.2f}"),
            ("ph_stop_ms", "`stop` returned ms", "{:.1f}"), ("ph_freeze_ms", "disks frozen ms", "{:.1f}"),
            ("ph_migrate_ms", "`migrate` returned ms", "{:.1f}"),
            ("ph_qemu_setup_time_ms", "QEMU setup-time ms", "{:.0f}"),
            ("ph_resume_event_ms", "RESUME event ms", "{:.1f}")]


def write_raw(rows, path, fields=RAW_FIELDS):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in fields})


def write_restores(restores, path):
    write_raw(restores, path, RESTORE_FIELDS)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def summarize(rows, key="method", metrics=None):
    """{(ram_mib, key): {metric: (median, min, max, n)}, plus 'verify': 'k/n ok'}"""
    metrics = METRICS + [(p, p, "") for p in PHASES + ["pause_at_s"]] if metrics is None else metrics
    groups = {}
    for r in rows:
        groups.setdefault((int(r["ram_mib"]), r[key]), []).append(r)
    out = {}
    for k, rs in groups.items():
        s = {}
        for field, _, _ in metrics:
            if field == "size_mib":
                vals = [_num(r.get("size_bytes")) for r in rs]
                vals = [v / 2**20 for v in vals if v is not None]
            elif field == "running_checked_s":
                vals = [_num(r.get("restore_s")) + _num(r.get("check1_host_ms")) / 1000 for r in rs
                        if _num(r.get("restore_s")) is not None and _num(r.get("check1_host_ms")) is not None]
            else:
                vals = [v for v in (_num(r.get(field)) for r in rs) if v is not None]
            if vals:
                s[field] = (statistics.median(vals), min(vals), max(vals), len(vals))
        ok = sum(1 for r in rs if r.get("verify") == "ok")
        s["verify"] = f"{ok}/{len(rs)} ok"
        s["load1"] = statistics.median([_num(r["load1"]) for r in rs if _num(r.get("load1")) is not None] or [0])
        s["load1_range"] = (min([_num(r["load1"]) for r in rs if _num(r.get("load1")) is not None] or [0]),
                            max([_num(r["load1"]) for r in rs if _num(r.get("load1")) is not None] or [0]))
        out[k] = s
    return out


def write_summary(summary, path, order, metrics=None, key="method"):
    metrics = METRICS if metrics is None else metrics
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["ram_mib", key, "n"]
        for field, _, _ in metrics:
            head += [f"{field}_median", f"{field}_min", f"{field}_max"]
        w.writerow(head + ["verify", "load1_median"])
        for (ram, m), s in sorted(summary.items(), key=lambda kv: (kv[0][0], _rank(order, kv[0][1]))):
            n = max((v[3] for k, v in s.items() if isinstance(v, tuple) and len(v) == 4), default=0)
            row = [ram, m, n]
            for field, _, _ in metrics:
                row += [f"{x:.6g}" for x in s[field][:3]] if field in s else ["", "", ""]
            w.writerow(row + [s["verify"], f"{s['load1']:.2f}"])


def _rank(order, m):
    return order.index(m) if m in order else len(order)


def _cell(s, field, fmt):
    if field not in s:
        return "n/a"
    med, lo, hi, n = s[field]
    if n == 1 or lo == hi:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(lo)}–{fmt.format(hi)}]"


RORDER = ["vmsnap-lazy", "vmsnap-eager", "vmsnap-stop-lazy", "seed000-incoming", "savevm-loadvm"]
# one colour per method in every panel of the chart (a snapshot method and its restore share one)
COLORS = {"vmsnap-live": "#7b2cbf", "vmsnap-lazy": "#7b2cbf", "vmsnap-stop": "#c77dff", "vmsnap-stop-lazy": "#c77dff",
          "vmsnap-eager": "#e76f51", "seed000": "#2a9d8f", "seed000-incoming": "#2a9d8f", "savevm": "#e9c46a",
          "savevm-loadvm": "#e9c46a"}


def _table(summary, ram, keys, metrics, titles, first_col, tail=True):
    extra = " | RAM verified | load (1 min) |" if tail else " |"
    lines = ["| " + first_col + " | " + " | ".join(h for _, h, _ in metrics) + extra,
             "|---" * (len(metrics) + (3 if tail else 1)) + "|"]
    for m in keys:
        s = summary[(ram, m)]
        lo, hi = s["load1_range"]
        load = f"{s['load1']:.1f}" if hi - lo < 0.05 else f"{s['load1']:.1f} [{lo:.1f}–{hi:.1f}]"
        lines.append(f"| {titles.get(m, m)} | " + " | ".join(_cell(s, f, fmt) for f, _, fmt in metrics)
                     + (f" | {s['verify']} | {load} |" if tail else " |"))
    return lines


def _ratios(summary, ram, keys, ratios, titles, baseline):
    base = summary.get((ram, baseline))
    if not base:
        return []
    lines = ["", f"Ratios of medians against {titles.get(baseline, baseline)} (× larger = worse):\n",
             "| method | " + " | ".join(h for _, h in ratios) + " |", "|---" * (len(ratios) + 1) + "|"]
    for m in keys:
        if m == baseline:
            continue
        s = summary[(ram, m)]
        cells = [f"{s[f][0] / base[f][0]:.1f}×" if f in s and f in base and base[f][0] > 0 else "n/a"
                 for f, _ in ratios]
        lines.append(f"| {titles.get(m, m)} | " + " | ".join(cells) + " |")
    return lines


def markdown(summary, order, titles, rsummary=None, baseline="vmsnap-live", rbaseline="vmsnap-lazy"):
    lines = []
    rsummary = rsummary or {}
    rams = sorted({k[0] for k in summary} | {k[0] for k in rsummary})
    for ram in rams:
        methods = sorted((m for (r, m) in summary if r == ram), key=lambda m: _rank(order, m))
        lines.append(f"### {ram} MiB guest\n")
        lines.append("Snapshot. Median [min–max] over the repeats.\n")
        lines += _table(summary, ram, methods, METRICS, titles, "method")
        lines += _ratios(summary, ram, methods, RATIOS, titles, baseline)
        rkeys = sorted((m for (r, m) in rsummary if r == ram), key=lambda m: _rank(RORDER, m))
        if rkeys:
            lines.append("")
            lines.append("Restore, then the agent's check of its whole RAM fill right after (guest ms; lazy: pages "
                         "still in the archive) and again (everything resident). Median [min–max].\n")
            lines += _table(rsummary, ram, rkeys, RMETRICS, titles, "restore")
            lines += _ratios(rsummary, ram, rkeys, RRATIOS, titles, rbaseline)
        pk = [m for m in methods if m.startswith("vmsnap") and any(p in summary[(ram, m)] for p in PHASES)]
        if pk:
            lines.append("")
            lines.append("Where vmsnap's pause goes (`snap --json` phases, ms from vmsnap's `stop`; median "
                         "[min–max]):\n")
            lines += _table(summary, ram, pk, PMETRICS, titles, "method", tail=False)
        lines.append("")
    return "\n".join(lines)


def _dat(path, summary, rams, keys, field):
    with open(path, "w") as f:
        for ram in rams:
            cols = [f"{ram}MiB"]
            for m in keys:
                v = summary.get((ram, m), {}).get(field)
                cols += [f"{x:.6g}" for x in v[:3]] if v else ["NaN", "NaN", "NaN"]
            f.write(" ".join(cols) + "\n")


def chart(summary, order, titles, png, workdir, rsummary=None):
    """Pause (log scale) per snapshot method, restore time and restore + first RAM check per restore method, per
    RAM size: medians with min-max bars."""
    if not shutil.which("gnuplot"):
        return False
    rsummary = rsummary or {}
    rams = sorted({k[0] for k in summary} | {k[0] for k in rsummary})
    methods = [m for m in order if any((r, m) in summary for r in rams)]
    rkeys = [m for m in RORDER if any((r, m) in rsummary for r in rams)]
    dat = {"pause_ms": os.path.join(workdir, "chart-pause_ms.dat")}
    _dat(dat["pause_ms"], summary, rams, methods, "pause_ms")
    for field in ("restore_s", "running_checked_s"):
        dat[field] = os.path.join(workdir, f"chart-{field}.dat")
        _dat(dat[field], rsummary, rams, rkeys, field)

    def plots(path, keys):
        return ", ".join(f"'{path}' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}:xtic(1) title '{titles.get(m, m)}'"
                         .replace("`", "") + (f" lc rgb '{COLORS[m]}'" if m in COLORS else "")
                         for i, m in enumerate(keys))

    idle = [v["idle_gap_ms"][0] for v in summary.values() if "idle_gap_ms" in v]
    idle_ms = statistics.median(idle) if idle else 0
    panels = 3 if rkeys else 1
    restore_plots = f"""
unset logscale y
unset arrow 1
unset label 1
set yrange [0:*]
set title 'Restore: start to guest running'
set ylabel 's'
plot {plots(dat['restore_s'], rkeys)}
set title 'Restore + the guest checking all its RAM once'
set ylabel 's'
plot {plots(dat['running_checked_s'], rkeys)}
""" if rkeys else ""
    script = f"""
set terminal pngcairo size {600 * panels},560 font ',10'
set output '{png}'
set multiplot layout 1,{panels}
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set key below maxrows 3
set grid ytics
set title 'Guest-visible pause: longest 5 ms heartbeat gap (dashed: idle)'
set ylabel 'ms (log scale)'
set logscale y
set yrange [1:*]
set arrow 1 from graph 0, first {idle_ms:.3f} to graph 1, first {idle_ms:.3f} nohead dt 2 lc rgb 'gray40'
set label 1 sprintf('idle %.0f ms', {idle_ms:.3f}) at graph 0.01, first {idle_ms * 1.3:.3f} tc rgb 'gray40' front
plot {plots(dat['pause_ms'], methods)}
{restore_plots}
unset multiplot
"""
    gp = os.path.join(workdir, "chart.gp")
    with open(gp, "w") as f:
        f.write(script)
    p = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"gnuplot failed: {p.stderr.strip()}")
    return True


def load(d):
    with open(os.path.join(d, "raw.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    restores = []
    if os.path.exists(os.path.join(d, "restore.csv")):
        with open(os.path.join(d, "restore.csv"), newline="") as f:
            restores = list(csv.DictReader(f))
    with open(os.path.join(d, "run.json")) as f:
        return rows, restores, json.load(f)


def write_all(out, rows, restores, meta, order, titles, log):
    """raw.csv, restore.csv, run.json, summary.csv, restore-summary.csv, tables.md and chart.png in out; returns
    the tables (markdown)."""
    summary = summarize(rows)
    rsummary = summarize(restores, key="restore", metrics=RMETRICS)
    write_raw(rows, os.path.join(out, "raw.csv"))
    if restores:
        write_restores(restores, os.path.join(out, "restore.csv"))
        write_summary(rsummary, os.path.join(out, "restore-summary.csv"), RORDER, RMETRICS, key="restore")
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(meta, f, indent=1)
    write_summary(summary, os.path.join(out, "summary.csv"), order)
    md = markdown(summary, order, titles, rsummary)
    with open(os.path.join(out, "tables.md"), "w") as f:
        f.write(f"Command: `{meta['command']}` (run {meta['run']}, source {meta.get('source', 'unknown')})\n\n"
                f"Machine: {meta['machine']}\n\n"
                f"Memory: the agent fills {meta['fill']}% of guest RAM with 64 KiB chunks mixed {meta['mix']} "
                f"(random:text-like:zero); the rest of RAM is whatever the guest kernel left there.\n\n")
        if meta.get("skipped"):
            f.write("Not run: " + "; ".join(meta["skipped"]) + "\n\n")
        f.write(md)
    try:
        chart(summary, order, titles, os.path.join(out, "chart.png"), out, rsummary)
    except RuntimeError as e:
        log(str(e))
    return md


DOC_BEGIN = "<!-- bench/run --doc: tables.md of the run below this line -->\n"
DOC_END = "<!-- end of tables -->\n"


def splice_doc(doc, tables):
    """Put tables (markdown) between the two markers of doc, replacing what was there."""
    with open(doc) as f:
        s = f.read()
    a, b = s.find(DOC_BEGIN), s.find(DOC_END)
    if a < 0 or b < a:
        raise ValueError(f"{doc}: markers {DOC_BEGIN.strip()} ... {DOC_END.strip()} not found")
    s = s[:a + len(DOC_BEGIN)] + tables.rstrip("\n") + "\n" + s[b:]
    with open(doc + ".tmp", "w") as f:
        f.write(s)
    os.replace(doc + ".tmp", doc)
