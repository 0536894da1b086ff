#!/usr/bin/env python3
"""serve refuses bad input with one clear line: a disk index the archive lacks (exit 1, "no disk 1"), a raw image
given as archive (exit 1, one "vmsnap: " line); a missing --socket is a usage error (exit 2)."""
from nbdtest import VMSNAP, check, main, packed_image, run


def test(wd):
    img, _, arc = packed_image(wd)
    p = run([VMSNAP, "serve", arc, "--socket", wd("x.sock"), "--disk", "1"], ok=False)
    check(p.returncode == 1 and "no disk 1" in p.stderr, "--disk 1 of a one-disk archive: " + p.stderr)
    p = run([VMSNAP, "serve", img, "--socket", wd("x.sock")], ok=False)
    check(p.returncode == 1 and p.stderr.startswith("vmsnap: ") and p.stderr.count("\n") == 1,
          "a raw image given as archive: " + p.stderr)
    p = run([VMSNAP, "serve", arc], ok=False)
    check(p.returncode == 2, "missing --socket is not a usage error")


main(test)
