#!/usr/bin/env python3
"""The served disk is the image the archive was packed from, as independent NBD peers read it: qemu-img compare
and convert give the image's bytes, nbdinfo gives its size (a short last block included) and its extents (data,
then a hole)."""
import filecmp

from nbdtest import MiB, Server, check, extent_map, main, need, packed_image, run


def test(wd):
    need("qemu-img", "nbdinfo")
    img, size, arc = packed_image(wd)
    srv = Server(wd, arc)

    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", srv.uri, img])
    out = wd("convert.raw")
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, out])
    check(filecmp.cmp(img, out, shallow=False), "qemu-img convert output differs from the image")

    info = run(["nbdinfo", "--json", srv.uri]).stdout
    check('"export-size": %d' % size in info, "nbdinfo size wrong: " + info)
    rows = extent_map(srv.uri)
    check(rows[0][:3] == ["0", str(3 * MiB), "0"], "first extent should be 3 MiB data: %r" % rows[:2])
    check(rows[1][0] == str(3 * MiB) and rows[1][2] == "3", "a hole should follow: %r" % rows[:3])


main(test)
