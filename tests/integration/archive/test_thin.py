#!/usr/bin/env python3
"""A thin archive (pack --parent) records its parent, is a small fraction of it, extracts byte-identical and
verifies with its chain; with the parent missing extract fails with one line saying so and verify exits 1; another
archive put under the parent's name is refused by its UUID."""
import json
import os
import shutil

from archivetest import check, main, run, sample


def test(d):
    s = sample(d)
    info = json.loads(run("info", s.arc, "--json").stdout)
    out = os.path.join(d, "out.raw")
    img2 = os.path.join(d, "disk2.raw")
    shutil.copy(s.img, img2)
    with open(img2, "r+b") as f:
        f.seek(5 << 20)
        f.write(b"changed" * 1000)
    child = os.path.join(d, "child.vmsnap")
    run("pack", img2, "-o", child, "--parent", s.arc)
    cinfo = json.loads(run("info", child, "--json").stdout)
    check(cinfo["parent"]["uuid"] == info["uuid"] and len(cinfo["parent_chain"]) == 1, "child records its parent")
    check(os.path.getsize(child) < os.path.getsize(s.arc) // 10,
          f"thin archive is small ({os.path.getsize(child)} vs {os.path.getsize(s.arc)} bytes)")
    run("extract", child, "--disk", "0", "-o", out)
    check(open(out, "rb").read() == open(img2, "rb").read(), "thin archive extracts byte-identical")
    check(run("verify", child).returncode == 0, "verify of the thin archive and its chain exits 0")
    os.rename(s.arc, s.arc + ".moved")
    p = run("extract", child, "--disk", "0", "-o", out + ".x", ok=(1,))
    check("not found" in p.stderr and len(p.stderr.splitlines()) == 1, "missing parent: " + p.stderr.strip())
    check(run("verify", child, ok=(1,)).returncode == 1, "verify with a missing parent exits 1")
    run("pack", s.img, "-o", s.arc)   # another archive under the parent's name
    p = run("verify", child, ok=(1,))
    check("UUID" in p.stderr, "mismatched parent: " + p.stderr.strip())


main(test)
