#!/usr/bin/env python3
"""bench/run --quick produces sane rows: every method that ran has a positive size, a measured pause and restore,
and its snapshot restored with the RAM content verified by the agent (vmsnap's both lazily and eagerly, the agent
checking its RAM twice after each restore). No timing is asserted."""
import csv
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402
from vmtest import check, log  # noqa: E402


def test():
    vmtest.require_tool("lz4")
    out = tempfile.mkdtemp(prefix="vmsnap-bench-quick-")
    try:
        run = os.path.join(vmtest.SRCDIR, "bench", "run")
        p = subprocess.run([run, "--quick", "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=280)
        log(p.stderr[-4000:])
        check(p.returncode == 0, f"bench/run --quick exited {p.returncode}")
        with open(os.path.join(out, "raw.csv")) as f:
            rows = list(csv.DictReader(f))
        methods = {r["method"] for r in rows}
        log(f"rows: {[(r['method'], r['pause_ms'], r['size_bytes'], r['restore_s'], r['verify']) for r in rows]}")
        check({"seed000", "savevm"} <= methods, f"baseline methods missing from raw.csv: {methods}")
        has_snap = subprocess.run([vmtest.vmsnap_path(), "help", "snap"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
        check(not has_snap or "vmsnap-live" in methods, f"vmsnap snap exists but vmsnap-live did not run: {methods}")
        for r in rows:
            what = f"{r['method']} {r['ram_mib']} MiB"
            check(r["verify"] == "ok", f"{what}: RAM verification after restore: {r['verify']}")
            check(r["resumed"] == "True", f"{what}: restore rebooted instead of resuming")
            check(int(r["size_bytes"]) > 0, f"{what}: snapshot size {r['size_bytes']}")
            check(float(r["fill_mib"]) > 0 and float(r["pause_ms"]) > 0 and float(r["idle_gap_ms"]) > 0,
                  f"{what}: no heartbeat measurement")
            check(float(r["return_s"]) > 0 and float(r["durable_s"]) >= float(r["return_s"]),
                  f"{what}: durable {r['durable_s']} before return {r['return_s']}")
            check(float(r["restore_s"]) > 0, f"{what}: restore time {r['restore_s']}")
        with open(os.path.join(out, "restore.csv")) as f:
            restores = list(csv.DictReader(f))
        log(f"restores: {[(r['restore'], r['restore_s'], r['check1_ms'], r['check2_ms'], r['verify']) for r in restores]}")
        hows = {r["restore"] for r in restores}
        check({"seed000-incoming", "savevm-loadvm"} <= hows, f"baseline restores missing from restore.csv: {hows}")
        check(not has_snap or {"vmsnap-lazy", "vmsnap-eager"} <= hows,
              f"vmsnap's snapshot was not restored both lazily and eagerly: {hows}")
        for r in restores:
            what = f"restore {r['restore']} of {r['snapshot']}"
            check(r["verify"] == "ok" and r["resumed"] == "True", f"{what}: {r['verify']}, resumed {r['resumed']}")
            check(float(r["restore_s"]) > 0 and float(r["check1_ms"]) >= 0 and float(r["check2_ms"]) >= 0,
                  f"{what}: restore time or RAM checks missing")
        with open(os.path.join(out, "summary.csv")) as f:
            summary = list(csv.DictReader(f))
        check(len(summary) == len(methods), "one summary row per method")
        with open(os.path.join(out, "tables.md")) as f:
            md = f.read()
        check("256 MiB guest" in md and "bench/run --quick" in md, "tables.md names the RAM size and command")
        if shutil.which("gnuplot"):
            with open(os.path.join(out, "chart.png"), "rb") as f:
                check(f.read(8) == b"\x89PNG\r\n\x1a\n", "chart.png is a PNG")
    finally:
        shutil.rmtree(out, ignore_errors=True)


vmtest.main(test)
