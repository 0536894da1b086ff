"""bench/run's output: raw CSV (one row per method, RAM size and repeat), summary CSV (median, min, max), a markdown
fragment with the tables and ratios against vmsnap live, and a gnuplot PNG of pause and restore time."""
import csv
import json
import os
import shutil
import statistics
import subprocess

RAW_FIELDS = ["run", "ram_mib", "repeat", "method", "fill_mib", "mix", "load1", "idle_gap_ms", "pause_ms", "pause_at_s",
              "tool_pause_ms", "qemu_downtime_ms", "return_s", "durable_s", "size_bytes", "stream_bytes",
              "hb_rate_idle", "hb_rate_during", "slowdown", "restore_s", "restore_hb_s", "verify", "verify_ms",
              "resumed", "note"]

# (field, header, format); summarized as median [min-max]
METRICS = [("pause_ms", "guest pause ms", "{:.1f}"), ("idle_gap_ms", "idle gap ms", "{:.1f}"),
           ("tool_pause_ms", "vmsnap-reported pause ms", "{:.1f}"),
           ("qemu_downtime_ms", "QEMU downtime ms", "{:.0f}"), ("return_s", "return s", "{:.2f}"),
           ("durable_s", "durable s", "{:.2f}"), ("size_mib", "size MiB", "{:.0f}"),
           ("restore_s", "restore s", "{:.2f}"), ("restore_hb_s", "first beat s", "{:.2f}"),
           ("verify_ms", "RAM check after restore ms", "{:.0f}"),
           ("slowdown", "hb rate during/idle", "{:.2f}")]
RATIOS = [("pause_ms", "pause"), ("durable_s", "durable"), ("size_mib", "size"), ("restore_s", "restore")]


def write_raw(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RAW_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in RAW_FIELDS})


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


def summarize(rows):
    """{(ram_mib, method): {metric: (median, min, max, n)}, plus 'verify': 'k/n ok'}"""
    groups = {}
    for r in rows:
        groups.setdefault((int(r["ram_mib"]), r["method"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        s = {}
        for field, _, _ in METRICS:
            if field == "size_mib":
                vals = [_num(r.get("size_bytes")) for r in rs]
                vals = [v / 2**20 for v in vals if v is not None]
            else:
                vals = [v for v in (_num(r.get(field)) for r in rs) if v is not None]
            if vals:
                s[field] = (statistics.median(vals), min(vals), max(vals), len(vals))
        ok = sum(1 for r in rs if r.get("verify") == "ok")
        s["verify"] = f"{ok}/{len(rs)} ok"
        s["load1"] = statistics.median([_num(r["load1"]) for r in rs if _num(r.get("load1")) is not None] or [0])
        out[key] = s
    return out


def write_summary(summary, path, order):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["ram_mib", "method", "n"]
        for field, _, _ in METRICS:
            head += [f"{field}_median", f"{field}_min", f"{field}_max"]
        w.writerow(head + ["verify", "load1_median"])
        for (ram, m), s in sorted(summary.items(), key=lambda kv: (kv[0][0], _rank(order, kv[0][1]))):
            n = max((v[3] for k, v in s.items() if isinstance(v, tuple)), default=0)
            row = [ram, m, n]
            for field, _, _ in METRICS:
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


def markdown(summary, order, titles, baseline="vmsnap-live"):
    lines = []
    rams = sorted({k[0] for k in summary})
    for ram in rams:
        methods = sorted((m for (r, m) in summary if r == ram), key=lambda m: _rank(order, m))
        lines.append(f"### {ram} MiB guest\n")
        lines.append("Median [min–max] over the repeats.\n")
        lines.append("| method | " + " | ".join(h for _, h, _ in METRICS) + " | RAM verified | load (1 min) |")
        lines.append("|---" * (len(METRICS) + 3) + "|")
        for m in methods:
            s = summary[(ram, m)]
            lines.append(f"| {titles.get(m, m)} | " + " | ".join(_cell(s, f, fmt) for f, _, fmt in METRICS)
                         + f" | {s['verify']} | {s['load1']:.1f} |")
        base = summary.get((ram, baseline))
        if base:
            lines.append("")
            lines.append(f"Ratios of medians against {titles.get(baseline, baseline)} (× larger = worse):\n")
            lines.append("| method | " + " | ".join(h for _, h in RATIOS) + " |")
            lines.append("|---" * (len(RATIOS) + 1) + "|")
            for m in methods:
                if m == baseline:
                    continue
                s = summary[(ram, m)]
                cells = []
                for f, _ in RATIOS:
                    if f in s and f in base and base[f][0] > 0:
                        cells.append(f"{s[f][0] / base[f][0]:.1f}×")
                    else:
                        cells.append("n/a")
                lines.append(f"| {titles.get(m, m)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def chart(summary, order, titles, png, workdir):
    """Pause (log scale) and restore time per RAM size per method, medians with min-max bars."""
    if not shutil.which("gnuplot"):
        return False
    rams = sorted({k[0] for k in summary})
    methods = [m for m in order if any((r, m) in summary for r in rams)]
    dat = {}
    for field in ("pause_ms", "restore_s"):
        path = os.path.join(workdir, f"chart-{field}.dat")
        with open(path, "w") as f:
            for ram in rams:
                cols = [f"{ram}MiB"]
                for m in methods:
                    v = summary.get((ram, m), {}).get(field)
                    cols += [f"{x:.6g}" for x in v[:3]] if v else ["NaN", "NaN", "NaN"]
                f.write(" ".join(cols) + "\n")
        dat[field] = path

    def plots(path):
        return ", ".join(f"'{path}' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}:xtic(1) title '{titles.get(m, m)}'"
                         for i, m in enumerate(methods))

    idle = [v["idle_gap_ms"][0] for v in summary.values() if "idle_gap_ms" in v]
    idle_ms = statistics.median(idle) if idle else 0
    script = f"""
set terminal pngcairo size 1200,520 font ',10'
set output '{png}'
set multiplot layout 1,2
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set key below
set grid ytics
set title 'Guest-visible pause: longest 5 ms heartbeat gap (dashed: idle)'
set ylabel 'ms (log scale)'
set logscale y
set yrange [1:*]
set arrow 1 from graph 0, first {idle_ms:.3f} to graph 1, first {idle_ms:.3f} nohead dt 2 lc rgb 'gray40'
set label 1 sprintf('idle %.0f ms', {idle_ms:.3f}) at graph 0.01, first {idle_ms * 1.3:.3f} tc rgb 'gray40' front
plot {plots(dat['pause_ms'])}
unset logscale y
unset arrow 1
unset label 1
set yrange [0:*]
set title 'Restore: start to guest running'
set ylabel 's'
plot {plots(dat['restore_s'])}
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
    with open(os.path.join(d, "run.json")) as f:
        return rows, json.load(f)


def write_all(out, rows, meta, order, titles, log):
    """raw.csv, run.json, summary.csv, tables.md and chart.png in out; returns the tables (markdown)."""
    summary = summarize(rows)
    write_raw(rows, os.path.join(out, "raw.csv"))
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(meta, f, indent=1)
    write_summary(summary, os.path.join(out, "summary.csv"), order)
    md = markdown(summary, order, titles)
    with open(os.path.join(out, "tables.md"), "w") as f:
        f.write(f"Command: `{meta['command']}` (run {meta['run']}, source {meta.get('source', 'unknown')})\n\n"
                f"Machine: {meta['machine']}\n\n"
                f"Memory: the agent fills {meta['fill']}% of guest RAM with 64 KiB chunks mixed {meta['mix']} "
                f"(random:text-like:zero); the rest of RAM is whatever the guest kernel left there.\n\n")
        if meta.get("skipped"):
            f.write("Not run: " + "; ".join(meta["skipped"]) + "\n\n")
        f.write(md)
    try:
        chart(summary, order, titles, os.path.join(out, "chart.png"), out)
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
