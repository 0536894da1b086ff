#!/usr/bin/env python3
"""serve --read-only: reads give the image, a write is refused (EPERM / read-only), the export stays the image
and serve exits 0 on SIGTERM."""
from nbdtest import Server, check, main, need, packed_image, qemu_io, run


def test(wd):
    need("qemu-img", "qemu-io")
    img, _, arc = packed_image(wd)
    ro = Server(wd, arc, read_only=True, sock="ro.sock")
    p = qemu_io(ro.uri, ["write -P 1 0 4096"], ok=False)
    check(p.returncode != 0 or "Operation not permitted" in p.stdout + p.stderr or "read-only" in p.stdout + p.stderr,
          "write on a read-only export did not fail: " + p.stdout + p.stderr)
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", ro.uri, img])
    check(ro.stop() == 0, "read-only serve did not exit 0")


main(test)
