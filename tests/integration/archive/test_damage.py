#!/usr/bin/env python3
"""A damaged archive is caught: one byte flipped in the header, a data block or the directory makes verify exit 1
with a "vmsnap: " line (for a data block naming the stream, block and offset) and extract leave no output; a
truncated copy is reported as truncated."""
import os
import shutil

from archivetest import check, main, run, sample


def flipped(src, dst, off):
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x10]))


def test(d):
    s = sample(d)
    out = os.path.join(d, "out.raw")
    size = os.path.getsize(s.arc)
    bad = os.path.join(d, "bad.vmsnap")
    for off, what in ((20, "header"), (size // 3, "data block"), (size - 12, "directory")):
        flipped(s.arc, bad, off)
        p = run("verify", bad, ok=(1,))
        check(p.stderr.startswith("vmsnap: "), f"verify flags a flipped {what} byte at {off}: "
              + p.stderr.splitlines()[0])
        if what == "data block":
            check("stream 'disk0' block" in p.stderr and "offset" in p.stderr,
                  "verify names the stream, block and offset")
        p = run("extract", bad, "--disk", "0", "-o", out + ".bad", ok=(1,))
        check(not os.path.exists(out + ".bad"), f"extract of damaged ({what}) archive leaves no output")
    shutil.copy(s.arc, bad)
    os.truncate(bad, size - 1000)
    check("truncated" in run("verify", bad, ok=(1,)).stderr, "verify says a truncated archive is truncated")


main(test)
