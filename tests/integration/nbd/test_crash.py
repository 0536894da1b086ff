#!/usr/bin/env python3
"""kill -9 of the server after FLUSH / FUA writes: restarted on the same overlay, every flushed byte is there.
Several clients write at once on separate connections."""
import os
import random
import signal
import threading

from nbdtest import Client, Server, check, main, make_image, pack

MiB = 1 << 20


def test(wd):
    img, ovl = wd("disk.raw"), wd("disk.ovl")
    size = 32 * MiB
    make_image(img, size, [(0, 8 * MiB)])
    arc = pack(img, wd("disk.vmsnap"))
    srv = Server(wd, arc, overlay=ovl)
    expect = {}
    lock = threading.Lock()
    errors = []

    def writer(n):
        try:
            c = Client(srv.sock, structured=(n % 2 == 0))
            rnd = random.Random(n)
            for i in range(60):
                off = rnd.randrange(0, size - 70000) // 512 * 512 + rnd.choice([0, 1, 511])
                data = rnd.randbytes(rnd.choice([512, 4096, 5000, 65536]))
                # Each writer owns its own 1 MiB stripe so expectations do not overlap.
                off = n * 4 * MiB + off % (3 * MiB)
                c.write(off, data, fua=(i % 7 == 0))
                with lock:
                    expect[(n, i)] = (off, data)
            c.flush()
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors, "writers failed: %r" % errors)
    # One more write answered with FUA and never flushed otherwise.
    c = Client(srv.sock)
    c.write(20 * MiB + 100, b"\xee" * 3000, fua=True)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait()

    srv2 = Server(wd, arc, overlay=ovl, sock="nbd2.sock")
    c = Client(srv2.sock)
    # Later writes of one writer may overlap its earlier ones: replay in order to get the final content.
    final = bytearray(c.read(0, 16 * MiB))
    want = bytearray(open(img, "rb").read(16 * MiB))
    for key in sorted(expect):
        off, data = expect[key]
        want[off:off + len(data)] = data
    check(len(final) == len(want), "short read: %d" % len(final))
    if final != want:
        first = next(i for i in range(len(want)) if final[i] != want[i])
        check(False, "flushed data lost after kill -9 (first difference at byte %d)" % first)
    check(c.read(20 * MiB + 100, 3000) == b"\xee" * 3000, "FUA write lost after kill -9")
    c.close()
    check(srv2.stop() == 0, "restarted server did not exit cleanly")


main(test)
