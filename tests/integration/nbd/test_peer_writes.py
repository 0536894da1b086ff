#!/usr/bin/env python3
"""Writes from an independent peer read back exactly: qemu-io writes patterns, zeroes and a discard at unaligned
offsets (the last one into the short last block) and flushes; a fresh connection reads every pattern back, the
bytes next to a partial write are still the image's (read-modify-write lost nothing), zeroes read as zeroes and
the discarded range is reported as a hole."""
from nbdtest import Server, check, extent_map, main, need, packed_image, qemu_io, run


def test(wd):
    need("qemu-img", "qemu-io", "nbdinfo")
    img, size, arc = packed_image(wd)
    srv = Server(wd, arc)

    qemu_io(srv.uri, ["write -P 0x5a 1000 70000", "write -P 0x6b 5242880 65536", "discard 1048576 1048576",
                      "write -z 9437184 12345", "write -z 100 200", "write -P 0x7c %d 512" % (size - 512), "flush"])
    p = qemu_io(srv.uri, ["read -P 0x5a 1000 70000", "read -P 0x6b 5242880 65536", "read -P 0 1048576 1048576",
                          "read -P 0 9437184 12345", "read -P 0 100 200", "read -P 0x7c %d 512" % (size - 512)])
    check("Pattern verification failed" not in p.stdout + p.stderr, "pattern mismatch: " + p.stdout + p.stderr)

    with open(img, "rb") as f:
        f.seek(0)
        head = f.read(100)
        f.seek(71000)
        after = f.read(4096)
    dump = wd("after.raw")
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, dump])
    with open(dump, "rb") as f:
        d = f.read(80 * 1024)
    check(d[:100] == head and d[71000:71000 + 4096] == after, "bytes next to a partial write changed")
    check(d[100:300] == bytes(200), "write-zeroes 100+200 did not read back as zeroes")
    m = extent_map(srv.uri)
    check(["1048576", "1048576", "3"] in [r[:3] for r in m], "trimmed range not reported as a hole: %r" % m)


main(test)
