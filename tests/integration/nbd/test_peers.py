#!/usr/bin/env python3
"""vmsnap serve ARCHIVE against independent NBD peers, compared with the raw image the archive was packed from: qemu-img compare/convert, qemu-io patterns read back, nbdinfo
(size, block status), nbdcopy both ways; temporary overlay removed at exit; socket mode 0600; read-only."""
import filecmp
import os
import stat
import subprocess

from nbdtest import VMSNAP, Server, check, main, make_image, need, pack, run

MiB = 1 << 20


def test(wd):
    need("qemu-img", "qemu-io", "nbdinfo", "nbdcopy")
    img = wd("disk.raw")
    size = 64 * MiB + 4096 * 3 + 512  # not a multiple of 4 KiB: the last block is short
    make_image(img, size, [(0, 3 * MiB), (10 * MiB + 1234, 2 * MiB), (size - 20000, 20000)])
    tmpdir = wd("tmp")
    os.mkdir(tmpdir)
    arc = pack(img, wd("disk.vmsnap"))
    srv = Server(wd, arc, env=dict(os.environ, TMPDIR=tmpdir))
    check(stat.S_IMODE(os.stat(srv.sock).st_mode) == 0o600, "socket mode is not 0600")
    check(len(os.listdir(tmpdir)) == 1, "no temporary overlay was created")

    # The served disk is the image.
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", srv.uri, img])
    out = wd("convert.raw")
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, out])
    check(filecmp.cmp(img, out, shallow=False), "qemu-img convert output differs from the image")

    # nbdinfo: size and holes.
    info = run(["nbdinfo", "--json", srv.uri]).stdout
    check('"export-size": %d' % size in info, "nbdinfo size wrong: " + info)
    m = run(["nbdinfo", "--map", srv.uri]).stdout.split("\n")
    rows = [r.split() for r in m if r.strip()]
    check(rows[0][:3] == ["0", str(3 * MiB), "0"], "first extent should be 3 MiB data: %r" % rows[:2])
    check(rows[1][0] == str(3 * MiB) and rows[1][2] == "3", "a hole should follow: %r" % rows[:3])

    # qemu-io patterns, unaligned on purpose, then read back through a fresh connection.
    cmds = ["write -P 0x5a 1000 70000", "write -P 0x6b 5242880 65536", "discard 1048576 1048576",
            "write -z 9437184 12345", "write -z 100 200", "write -P 0x7c %d 512" % (size - 512), "flush"]
    run(["qemu-io", "-f", "raw"] + sum((["-c", c] for c in cmds), []) + [srv.uri])
    reads = ["read -P 0x5a 1000 70000", "read -P 0x6b 5242880 65536", "read -P 0 1048576 1048576",
             "read -P 0 9437184 12345", "read -P 0 100 200", "read -P 0x7c %d 512" % (size - 512)]
    p = run(["qemu-io", "-f", "raw"] + sum((["-c", c] for c in reads), []) + [srv.uri])
    check("Pattern verification failed" not in p.stdout + p.stderr, "pattern mismatch: " + p.stdout + p.stderr)
    # Bytes around the writes are still the image's (read-modify-write lost nothing).
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
    m = [r.split() for r in run(["nbdinfo", "--map", srv.uri]).stdout.split("\n") if r.strip()]
    check(["1048576", "1048576", "3"] in [r[:3] for r in m], "trimmed range not reported as a hole: %r" % m)

    # nbdcopy: image into the export, export out to a file.
    src = wd("src.raw")
    make_image(src, size, [(0, 5 * MiB), (30 * MiB, MiB)], seed=2)
    run(["nbdcopy", src, srv.uri])
    out2 = wd("copy.raw")
    run(["nbdcopy", srv.uri, out2])
    check(filecmp.cmp(src, out2, shallow=False), "nbdcopy round trip differs")
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", srv.uri, src])

    check(srv.stop() == 0, "serve did not exit 0 on SIGTERM: " + srv.stderr)
    check(not os.path.exists(srv.sock), "socket left behind")
    check(os.listdir(tmpdir) == [], "temporary overlay left behind: %r" % os.listdir(tmpdir))

    # Read-only: reads work, writes are refused with EPERM, the base is untouched.
    ro = Server(wd, arc, read_only=True, sock="ro.sock")
    p = run(["qemu-io", "-f", "raw", "-c", "write -P 1 0 4096", ro.uri], ok=False)
    check(p.returncode != 0 or "Operation not permitted" in p.stdout + p.stderr or "read-only" in p.stdout + p.stderr,
          "write on a read-only export did not fail: " + p.stdout + p.stderr)
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", ro.uri, img])
    check(ro.stop() == 0, "read-only serve did not exit 0")

    # Bad input: a missing disk index, a file that is no archive.
    p = run([VMSNAP, "serve", arc, "--socket", wd("x.sock"), "--disk", "1"], ok=False)
    check(p.returncode == 1 and "no disk 1" in p.stderr, "--disk 1 of a one-disk archive: " + p.stderr)
    p = run([VMSNAP, "serve", img, "--socket", wd("x.sock")], ok=False)
    check(p.returncode == 1 and p.stderr.startswith("vmsnap: ") and p.stderr.count("\n") == 1,
          "a raw image given as archive: " + p.stderr)
    p = run([VMSNAP, "serve", arc], ok=False)
    check(p.returncode == 2, "missing --socket is not a usage error")


main(test)
