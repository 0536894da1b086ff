#!/usr/bin/env python3
"""The files `vmsnap serve ARCHIVE` makes: its socket is mode 0600; without --overlay its writes go to a temporary
overlay in $TMPDIR; on SIGTERM it exits 0 and removes both the socket and that overlay."""
import os
import stat

from nbdtest import Server, check, main, need, packed_image, qemu_io


def test(wd):
    need("qemu-io")
    _, _, arc = packed_image(wd)
    tmpdir = wd("tmp")
    os.mkdir(tmpdir)
    srv = Server(wd, arc, env=dict(os.environ, TMPDIR=tmpdir))
    check(stat.S_IMODE(os.stat(srv.sock).st_mode) == 0o600, "socket mode is not 0600")
    check(len(os.listdir(tmpdir)) == 1, "no temporary overlay was created")
    # The overlay holds data when it goes, not just an empty file.
    qemu_io(srv.uri, ["write -P 0x5a 1000 70000", "flush"])

    check(srv.stop() == 0, "serve did not exit 0 on SIGTERM: " + srv.stderr)
    check(not os.path.exists(srv.sock), "socket left behind")
    check(os.listdir(tmpdir) == [], "temporary overlay left behind: %r" % os.listdir(tmpdir))


main(test)
