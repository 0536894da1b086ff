#!/usr/bin/env python3
"""Numbers on the command line are range-checked before any narrowing: an out-of-range value is a usage error
(exit 2, one line), never silently another value (extract --disk 4294967296 was disk 0, boot --ram 2^44 MiB was
0 bytes) and a documented form is accepted (boot --ram 256 means 256 MiB). No QEMU: the commands stop at the
missing archive or socket once their options are read."""
import os
import subprocess
import sys
import tempfile

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def run(*args):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("vmsnap: "):
        failures.append(f"{args}: not one 'vmsnap:' line: {p.stderr!r}")
    return p


def expect(rc, *args, why=""):
    p = run(*args)
    ok = p.returncode == rc
    print(("ok   " if ok else "FAIL ") + f"{' '.join(args)} -> {p.returncode} (want {rc}) {why}: {p.stderr.strip()}")
    if not ok:
        failures.append(" ".join(args))


with tempfile.TemporaryDirectory() as d:
    missing = os.path.join(d, "missing.vmsnap")
    out = os.path.join(d, "out.raw")
    # boot --ram: a plain number is MiB (accepted, then the missing archive fails: 1); a number whose MiB do not
    # fit in 64 bits is refused (2), as is anything under 1 MiB.
    for v in ("256", "1", "1M", "17592186044415"):
        expect(1, "boot", missing, "--ram", v, why="accepted")
    for v in ("17592186044416", "18446744073709551615", "0", "512K", "1048575b"):
        expect(2, "boot", missing, "--ram", v, why="refused")
    # extract --disk: a value an int cannot hold is refused, not cut to disk 0.
    for v in ("4294967296", "2147483648", "-1", "99999999999999999999"):
        expect(2, "extract", missing, "--disk", v, "-o", out, why="refused")
    expect(1, "extract", missing, "--disk", "2147483647", "-o", out, why="accepted")
    # dirty-rate --seconds: 4294967297 is not 1.
    for v in ("4294967297", "0", "61"):
        expect(2, "dirty-rate", "--qmp", os.path.join(d, "nosock"), "--seconds", v, why="refused")
    expect(1, "dirty-rate", "--qmp", os.path.join(d, "nosock"), "--seconds", "60", why="accepted")
    if os.path.exists(out):
        failures.append("extract wrote an output")

if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
print("PASS")
