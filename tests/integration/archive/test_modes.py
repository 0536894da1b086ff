#!/usr/bin/env python3
"""Files vmsnap writes that hold guest data follow the user's umask (they were forced to 0644, so a user with
umask 077 got world-readable archives of guest disks and RAM): pack and extract under umask 077 give 0600,
under 022 give 0644. No QEMU."""
import os
import stat
import subprocess
import sys
import tempfile

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def run(umask, *args):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: os.umask(umask))
    if p.returncode != 0:
        raise SystemExit(f"vmsnap {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")


def expect_mode(path, want):
    got = stat.S_IMODE(os.stat(path).st_mode)
    ok = got == want
    print(("ok   " if ok else "FAIL ") + f"{os.path.basename(path)}: mode {got:o}, want {want:o}")
    if not ok:
        failures.append(path)


with tempfile.TemporaryDirectory() as d:
    img = os.path.join(d, "disk.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(65536))
    for umask, want in ((0o077, 0o600), (0o022, 0o644), (0o027, 0o640)):
        arc = os.path.join(d, f"a{umask:o}.vmsnap")
        out = os.path.join(d, f"x{umask:o}.raw")
        run(umask, "pack", img, "-o", arc, "--quiet")
        expect_mode(arc, want)
        run(umask, "extract", arc, "--disk", "0", "-o", out, "--quiet")
        expect_mode(out, want)
        if open(out, "rb").read() != open(img, "rb").read():
            failures.append("extract differs")

if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("PASS")
