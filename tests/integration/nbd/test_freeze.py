#!/usr/bin/env python3
"""Freeze under load: a client writes continuously while the overlay is frozen through the control socket.
The frozen layer holds exactly a prefix of the write sequence that includes every write answered before the
freeze was asked for and none sent after it returned; the live disk holds every write. Then rebase onto an
image of the frozen disk and check nothing changed for the client."""
import os
import struct
import threading
import time

from nbdtest import Client, Server, check, main, make_image, pack, run

MiB = 1 << 20
NBLK = 256  # blocks the writer cycles over


def record(seq):
    return struct.pack(">Q", seq) * 512  # one 4 KiB block naming its write


def test(wd):
    img, ovl = wd("disk.raw"), wd("disk.ovl")
    make_image(img, 16 * MiB, [(0, 16 * MiB)])
    arc = pack(img, wd("disk.vmsnap"))
    srv = Server(wd, arc, overlay=ovl, control=True)
    log = []  # (seq, block, t_sent, t_acked)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            c = Client(srv.sock)
            seq = 0
            while not stop.is_set():
                seq += 1
                blk = (seq * 37) % NBLK
                t0 = time.monotonic()
                # Unaligned half the time: the freeze must not split a read-modify-write.
                if seq % 2:
                    c.write(blk * 4096, record(seq))
                else:
                    c.write(blk * 4096 + 8, record(seq)[8:])
                log.append((seq, blk, t0, time.monotonic()))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    t_req = time.monotonic()
    r = srv.ctl({"cmd": "freeze"})
    t_done = time.monotonic()
    time.sleep(1.0)
    stop.set()
    t.join()
    check(not errors, "writer failed: %r" % errors)
    check(r.get("ok") and r["layer"] == 1, "freeze failed: %r" % r)
    status = srv.ctl({"cmd": "status"})
    check([l["frozen"] for l in status["layers"]] == [True, False], "unexpected layers: %r" % status)
    acked_before = max(s for s, _, _, ta in log if ta < t_req)
    sent_after = min(s for s, _, ts, _ in log if ts > t_done)
    check(sent_after > acked_before, "no writes on both sides of the freeze")

    # The frozen layer is readable on its own as a read-only overlay (the lowest layer of the stack).
    fro = Server(wd, arc, overlay=ovl + ".1", read_only=True, sock="frozen.sock")
    fc = Client(fro.sock)
    frozen = fc.read(0, NBLK * 4096)
    fc.close()
    blocks = [frozen[b * 4096:(b + 1) * 4096] for b in range(NBLK)]
    base = open(img, "rb").read(NBLK * 4096)

    def expect_after(k):
        want = [base[b * 4096:(b + 1) * 4096] for b in range(NBLK)]
        for s, b, _, _ in log:
            if s > k:
                break
            want[b] = record(s) if s % 2 else base[b * 4096:b * 4096 + 8] + record(s)[8:]
        return want

    k = max(struct.unpack(">Q", b[8:16])[0] if b != base[i * 4096:(i + 1) * 4096] else 0
            for i, b in enumerate(blocks))
    check(acked_before <= k < sent_after, "frozen layer ends at write %d, expected in [%d, %d)" %
          (k, acked_before, sent_after))
    check(blocks == expect_after(k), "frozen layer is not the disk as of write %d" % k)
    check(fro.stop() == 0, "frozen-view server did not exit cleanly")

    c = Client(srv.sock)
    live = c.read(0, NBLK * 4096)
    check([live[b * 4096:(b + 1) * 4096] for b in range(NBLK)] == expect_after(log[-1][0]),
          "the live disk lost writes")

    # Rebase: a new archive of the frozen disk replaces base + layer 1; the client sees no change.
    img2 = wd("frozen.raw")
    fro2 = Server(wd, arc, overlay=ovl + ".1", read_only=True, sock="frozen2.sock")
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", fro2.uri, img2])
    fro2.stop()
    arc2 = pack(img2, wd("frozen.vmsnap"))
    r = srv.ctl({"cmd": "rebase", "layer": 1, "archive": arc2})
    check(r.get("ok"), "rebase failed: %r" % r)
    check(not os.path.exists(ovl + ".1"), "folded layer file left behind")
    check(c.read(0, NBLK * 4096) == live, "rebase changed what the client reads")
    c.close()
    check(srv.stop() == 0, "server did not exit cleanly")
    # The overlay now belongs to the new archive; the old one is refused.
    p = run([srv.proc.args[0], "serve", arc, "--socket", wd("x.sock"), "--overlay", ovl], ok=False)
    check(p.returncode == 1 and "belongs to archive" in p.stderr, "old archive accepted after rebase")
    srv3 = Server(wd, arc2, overlay=ovl, sock="again.sock")
    c = Client(srv3.sock)
    check(c.read(0, NBLK * 4096) == live, "reopened on the new base, the disk differs")
    c.close()
    srv3.stop()


main(test)
