#!/usr/bin/env python3
"""nbdcopy both ways: another image copied into the export, then the export copied out to a file, gives that
image byte for byte (qemu-img compare agrees with the export)."""
import filecmp

from nbdtest import MiB, Server, check, main, make_image, need, packed_image, run


def test(wd):
    need("qemu-img", "nbdcopy")
    _, size, arc = packed_image(wd)
    srv = Server(wd, arc)

    src = wd("src.raw")
    make_image(src, size, [(0, 5 * MiB), (30 * MiB, MiB)], seed=2)
    run(["nbdcopy", src, srv.uri])
    out = wd("copy.raw")
    run(["nbdcopy", srv.uri, out])
    check(filecmp.cmp(src, out, shallow=False), "nbdcopy round trip differs")
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", srv.uri, src])


main(test)
