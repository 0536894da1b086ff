#!/usr/bin/env python3
"""bench/ws/run at its smallest (256 MiB guest, one boot per mode) produces sane rows: every mode ran, every call of
the guest function verified its range (the bench exits 1 otherwise), the host saw each answer no sooner than the
guest's own time for it, and the working-set mode ran whenever this vmsnap has `vmsnap ws`, on a boot that used
its working set and prefetched it. No timing asserted."""
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
    if os.geteuid() != 0:
        vmtest.skip("bench/ws/run drops the host's page cache: needs root")
    out = tempfile.mkdtemp(prefix="vmsnap-bench-ws-")
    try:
        run = os.path.join(vmtest.SRCDIR, "bench", "ws", "run")
        p = subprocess.run([run, "--ram", "256M", "--fill", "96", "--at", "32", "--repeats", "1", "--record-s", "8",
                            "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=280)
        log(p.stderr[-3000:])
        check(p.returncode == 0, f"bench/ws/run exited {p.returncode}")
        with open(os.path.join(out, "ws.csv")) as f:
            rows = list(csv.DictReader(f))
        modes = [r["mode"] for r in rows]
        has_ws = "SKIPPED modes ws" not in p.stderr
        check(subprocess.run([vmtest.vmsnap_path(), "help", "ws"], capture_output=True).returncode != 0 or has_ws,
              "vmsnap has `ws` but the bench skipped its mode")
        check(modes == ["lazy", "lazy-bg"] + (["ws", "ws-late"] if has_ws else []) + ["eager"], f"one row per mode: {modes}")
        for r in rows:
            c1, c2, h1 = float(r["call1_ms"]), float(r["call2_ms"]), float(r["host1_ms"])
            check(c1 > 0 and c2 > 0 and float(r["boot_ms"]) > 0, f"{r['mode']}: times missing: {r}")
            check(h1 >= 0.9 * c1, f"{r['mode']}: the host got the answer in {h1} ms, before the guest's {c1} ms")
            if r["mode"] in ("ws", "ws-late"):
                check(float(r["ws_mib"]) > 0 and float(r["ws_prefetch_s"]) > 0,
                      f"the ws boot reports no working set or no prefetch of it: {r}")
                check(-60 < float(r["ws_ready_s"] or "nan") < 60, f"when it was in the page cache: {r}")
        with open(os.path.join(out, "ws.md")) as f:
            md = f.read()
        check("bench/ws/run --ram 256M" in md and "warm (2nd call, eager boot)" in md, "ws.md: command and warm row")
    finally:
        shutil.rmtree(out, ignore_errors=True)


vmtest.main(test)
