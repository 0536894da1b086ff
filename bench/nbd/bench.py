#!/usr/bin/env python3
"""NBD throughput: vmsnap serve against qemu-nbd serving the same raw image, same client (qemu-img bench over
nbd+unix), same run. Prints a table of MiB/s and the ratio vmsnap / qemu-nbd.

usage: bench/nbd/bench.py [--vmsnap PATH] [--size MiB] [--raw]
  vmsnap serves a .vmsnap archive packed (lz4, default options) from the image qemu-nbd serves; --raw makes it
  serve the raw image instead. The image is half random, half repetitive (compressible) data. "Cold" means the
  server has not read that data before; the files themselves were just written, so the host page cache holds
  them for both servers alike.

Cases (each server fresh unless noted):
  seq read cold   sequential 1 MiB reads of data nobody wrote (vmsnap: decompressed from the archive)
  seq read warm   the same again on the same server
  rand read 4k cold  4 KiB reads in a scattered order (stride 4 KiB * 1021 modulo the disk), fresh server
  rand read 4k warm  the same again
  seq write first sequential 1 MiB writes into space never written (vmsnap: fresh overlay; qemu-nbd: a fresh
                  sparse image, since overwriting its cached image would skip the allocation both pay)
  seq write again the same again (vmsnap: overlay hits)
  rand write 4k   4 KiB writes, scattered (overlay hits after the sequential writes)
  overlay read    4 KiB scattered reads of blocks the overlay holds (vmsnap) / of the file (qemu-nbd)
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def wait_sock(path, proc):
    for _ in range(1000):
        if proc.poll() is not None:
            sys.exit("server exited: %d" % proc.returncode)
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit("server socket never appeared: " + path)


def bench(uri, size, bs, count, write=False, step=None, depth=8):
    args = ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-d", str(depth), "-s", str(bs), "-n"]
    if write:
        args += ["-w", "--pattern=0x5a"]
    if step:
        args += ["-S", str(step)]
    t0 = time.monotonic()
    p = subprocess.run(args + [uri], capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode:
        sys.exit("qemu-img bench failed: " + p.stderr)
    m = re.search(r"Run completed in ([0-9.]+) seconds", p.stdout)
    secs = float(m.group(1)) if m else dt
    return bs * count / MiB / secs


class Srv:
    def __init__(self, kind, vmsnap, img, wd, archive=None):
        self.sock = os.path.join(wd, kind + ".sock")
        if kind == "qemu-nbd":
            args = ["qemu-nbd", "-f", "raw", "-k", self.sock, "--cache=writeback", "-e", "16", "--persistent", img]
        else:
            base = archive or img
            args = [vmsnap, "serve", base, "--socket", self.sock, "--overlay", os.path.join(wd, "ovl")]
            if not archive:
                args.append("--raw")
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_sock(self.sock, self.p)
        self.uri = "nbd+unix:///?socket=" + self.sock

    def stop(self):
        self.p.terminate()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmsnap", default=os.environ.get("VMSNAP", "build/vmsnap"))
    ap.add_argument("--size", type=int, default=512, help="disk size in MiB")
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args()
    size = a.size * MiB
    wd = tempfile.mkdtemp(prefix="vmsnap-bench-nbd.")
    try:
        img = os.path.join(wd, "disk.raw")
        with open(img, "wb") as f:
            text = (b"vmsnap benchmark block of fairly repetitive text %08d\n" * 10000)[:MiB // 2]
            for i in range(a.size):
                f.write(os.urandom(MiB // 2) + text)
        archive = None
        if not a.raw:
            archive = os.path.join(wd, "disk.vmsnap")
            subprocess.run([a.vmsnap, "pack", img, "-o", archive, "--quiet"], check=True)
        seq_n, rnd_n = a.size, 40000
        stride = 4096 * 1021
        rows = []
        for kind in ("qemu-nbd", "vmsnap"):
            if kind == "vmsnap" and os.path.exists(os.path.join(wd, "ovl")):
                os.unlink(os.path.join(wd, "ovl"))
            work = os.path.join(wd, "work.raw")
            shutil.copyfile(img, work)
            subprocess.run(["sync"])
            # Reads: one server for cold then warm (cold = first touch through the server; the source file
            # itself was just written and may be in the host page cache for both servers alike).
            s = Srv(kind, a.vmsnap, work, wd, archive if kind == "vmsnap" else None)
            r = {"seq read cold": bench(s.uri, size, MiB, seq_n),
                 "seq read warm": bench(s.uri, size, MiB, seq_n)}
            s.stop()
            s = Srv(kind, a.vmsnap, work, wd, archive if kind == "vmsnap" else None)
            r["rand read 4k cold"] = bench(s.uri, size, 4096, rnd_n, step=stride)
            r["rand read 4k warm"] = bench(s.uri, size, 4096, rnd_n, step=stride)
            r["seq write first"] = bench(s.uri, size, MiB, seq_n, write=True)
            r["seq write again"] = bench(s.uri, size, MiB, seq_n, write=True)
            r["rand write 4k"] = bench(s.uri, size, 4096, rnd_n, write=True, step=stride)
            r["overlay read 4k"] = bench(s.uri, size, 4096, rnd_n, step=stride)
            r["overlay seq read"] = bench(s.uri, size, MiB, seq_n)
            s.stop()
            if kind == "qemu-nbd":
                # First writes into space nobody wrote: qemu-nbd on a fresh sparse image allocates like the overlay.
                sparse = os.path.join(wd, "sparse.raw")
                with open(sparse, "wb") as f:
                    f.truncate(size)
                s = Srv(kind, a.vmsnap, sparse, wd, None)
                r["seq write first"] = bench(s.uri, size, MiB, seq_n, write=True)
                s.stop()
                os.unlink(sparse)
            rows.append(r)
        print("%-18s %15s %15s %8s" % ("case", "qemu-nbd", "vmsnap", "ratio"))
        for k in rows[0]:
            q, v = rows[0][k], rows[1][k]
            print("%-18s %9.0f MiB/s %9.0f MiB/s %7.2fx" % (k, q, v, v / q))
        print("(%d MiB disk, vmsnap serving %s, qemu-img bench -d 8 over nbd+unix, %d seq / %d random ops)" %
              (a.size, "the raw image" if a.raw else "an lz4 archive", seq_n, rnd_n))
    finally:
        shutil.rmtree(wd, ignore_errors=True)


main()
