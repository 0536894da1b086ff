#!/usr/bin/env python3
"""A pack that ends early leaves nothing: SIGTERM while it reads memory from a pipe gives exit 1, no file under the
final name and no temp file; an output directory that fills up (a 4 MiB tmpfs, ENOSPC mid-write) gives exit 1, one
clear "No space left" line and an empty directory."""
import os
import signal
import subprocess
import time

from archivetest import VMSNAP, check, main, run, sample


def test(d):
    s = sample(d)
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    o2 = os.path.join(d, "x.vmsnap")
    before = set(os.listdir(d))
    p = subprocess.Popen([VMSNAP, "pack", s.img, "--memory", fifo, "-o", o2], stderr=subprocess.PIPE)
    w = open(fifo, "wb")
    w.write(s.rnd.randbytes(1 << 20))
    w.flush()
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        w.write(b"x" * 65536)
        w.close()
    except BrokenPipeError:
        pass
    rc = p.wait(30)
    check(rc == 1 and not os.path.exists(o2) and set(os.listdir(d)) == before,
          f"interrupted pack exits 1 and leaves nothing ({p.stderr.read().decode().strip()})")

    # a really full disk: a 4 MiB tmpfs cannot hold the 32 MiB image's archive
    full = os.path.join(d, "full")
    os.mkdir(full)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", full], capture_output=True).returncode != 0:
        print("skip full-disk check: cannot mount a tmpfs here (needs root)")
        return
    try:
        out_full = os.path.join(full, "big.vmsnap")
        p = run("pack", s.img, "--memory", s.mem, "-o", out_full, "--compress", "none", ok=(1,))
        msg = p.stderr.strip()
        check(msg.startswith("vmsnap: ") and "No space left" in msg and msg.count("\n") == 0,
              "full disk: one clear line (" + msg + ")")
        check(os.listdir(full) == [], "full disk: no file under the final name, no temp file left")
    finally:
        subprocess.run(["umount", full], capture_output=True)


main(test)
