#!/usr/bin/env python3
"""Bad input to pack, verify and extract is refused and leaves no output: a FIFO or a directory as disk, a
directory or a raw image as archive (bad magic) give exit 1 with a clear line; missing or unknown options, an
unknown codec and a missing command argument are usage errors (exit 2)."""
import os

from archivetest import check, main, run, sample


def test(d):
    s = sample(d)
    out = os.path.join(d, "out.raw")
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    o2 = os.path.join(d, "x.vmsnap")
    p = run("pack", fifo, "-o", o2, ok=(1,))
    check("FIFO" in p.stderr and not os.path.exists(o2), "a FIFO as disk: " + p.stderr.strip())
    p = run("pack", s.files, "-o", o2, ok=(1,))
    check("directory" in p.stderr and not os.path.exists(o2), "a directory as disk: " + p.stderr.strip())
    p = run("verify", s.files, ok=(1,))
    check("directory" in p.stderr, "a directory as archive: " + p.stderr.strip())
    check(run("verify", s.img, ok=(1,)).stderr.count("magic") == 1, "a raw image is not an archive (bad magic)")
    for args in (["pack", s.img], ["pack", s.img, "-o", o2, "--bogus"], ["extract", s.arc, "-o", out],
                 ["pack", s.img, "-o", o2, "--compress", "zip"], ["info"]):
        check(run(*args, ok=(2,)).returncode == 2, "usage error exits 2: " + " ".join(args[:1] + args[2:]))
    check(not os.path.exists(o2), "no output after usage errors")


main(test)
