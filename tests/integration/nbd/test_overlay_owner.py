#!/usr/bin/env python3
"""An overlay belongs to the archive it was made on: after that server is killed (-9), serving another archive,
even one packed from the same image, with it is refused with exit 1 and a line saying whose it is."""
import os
import signal

from nbdtest import VMSNAP, MiB, Client, Server, check, main, make_image, pack, run


def test(wd):
    img, ovl = wd("disk.raw"), wd("disk.ovl")
    make_image(img, 32 * MiB, [(0, 8 * MiB)])
    arc = pack(img, wd("disk.vmsnap"))
    srv = Server(wd, arc, overlay=ovl)
    c = Client(srv.sock)
    c.write(20 * MiB + 100, b"\xee" * 3000, fua=True)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait()

    other = pack(img, wd("other.vmsnap"))
    p = run([VMSNAP, "serve", other, "--socket", wd("x.sock"), "--overlay", ovl], ok=False)
    check(p.returncode == 1 and "belongs to archive" in p.stderr, "foreign overlay accepted: " + p.stderr)


main(test)
