#!/usr/bin/env python3
"""info prints what an archive and its file name say without letting them reach the terminal raw: a file name that
is not UTF-8 made `info --json` crash (json_pack refused the document), and a message with an escape sequence was
printed as is. Both now come out escaped (\\xNN in text, valid JSON). No QEMU."""
import json
import os
import subprocess
import sys
import tempfile

VMSNAP = os.environb.get(b"VMSNAP", b"build/vmsnap")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def vmsnap(*args):
    return subprocess.run([VMSNAP, *args], capture_output=True, timeout=60)


with tempfile.TemporaryDirectory() as d:
    d = os.fsencode(d)
    img = os.path.join(d, b"disk.raw")
    with open(img, "wb") as f:
        f.truncate(65536)
    arc = os.path.join(d, b"bad\xff\x1b[31mname.vmsnap")
    p = vmsnap(b"pack", img, b"-o", arc, b"--quiet", b"--message", b"hi\x1b[2Jthere\x07")
    check(p.returncode == 0, f"pack with an odd name and message: {p.stderr!r}")

    p = vmsnap(b"info", b"--json", arc)
    check(p.returncode == 0, f"info --json of a non-UTF-8 file name exits 0 (got {p.returncode}, {p.stderr[-200:]!r})")
    try:
        doc = json.loads(p.stdout)
        check(doc.get("path", "").endswith("bad\\xff\\x1b[31mname.vmsnap"), f"path escaped: {doc.get('path')!r}")
        check(doc["metadata"]["message"] == "hi\x1b[2Jthere\x07", "message intact in JSON (JSON escapes it)")
    except ValueError:
        check(False, f"info --json prints JSON: {p.stdout[:200]!r}")
    check(b"\x1b" not in p.stdout and b"\x07" not in p.stdout, "no raw control bytes in JSON output")

    p = vmsnap(b"info", arc)
    check(p.returncode == 0, "info exits 0")
    check(b"\x1b" not in p.stdout and b"\x07" not in p.stdout and b"\xff" not in p.stdout,
          f"no raw control or invalid bytes in human output: {p.stdout[:300]!r}")
    check(b"hi\\x1b[2Jthere\\x07" in p.stdout, "message shown escaped")

if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("PASS")
