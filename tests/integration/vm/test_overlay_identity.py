#!/usr/bin/env python3
"""One identity per archive disk for overlays, in `serve` and `boot` alike: an overlay made by `serve --disk 1` is
taken by `boot` for that disk (PATH.disk1) with its writes intact, and refused on another disk of the archive."""
import os
import signal
import subprocess
import time

from vmsnaptest import Booted, check, guest_args, log, tmpdir, vmtest

MiB = 1 << 20


def serve(archive, disk, overlay, sock):
    p = subprocess.Popen([vmtest.vmsnap_path(), "serve", archive, "--disk", str(disk), "--overlay", overlay,
                          "--socket", sock], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if p.poll() is not None:
            return p, p.stderr.read()
        check(time.monotonic() < deadline, f"serve never created {sock}")
        time.sleep(0.02)
    return p, None


def stop(p):
    p.send_signal(signal.SIGTERM)
    check(p.wait(30) == 0, f"serve exits 0 on SIGTERM: {p.returncode}")


def qemu_io(sock, cmd):
    out = subprocess.run(["qemu-io", "-f", "raw", "-c", cmd, f"nbd+unix:///?socket={sock}"], capture_output=True,
                         text=True, timeout=60)
    check(out.returncode == 0 and "verification failed" not in out.stdout, f"qemu-io {cmd!r}: {out.stdout}{out.stderr}")


def test():
    vmtest.require_tool("qemu-io")
    d = tmpdir()
    d0 = vmtest.make_disk(os.path.join(d, "d0.raw"), "16M")
    d1 = vmtest.make_disk(os.path.join(d, "d1.raw"), "8M")
    arc = os.path.join(d, "two.vmsnap")
    vmtest.vmsnap("pack", d0, d1, "-o", arc, "--quiet")
    ovl = os.path.join(d, "ovl")
    sock = os.path.join(d, "nbd.sock")

    # serve writes disk 1 through the overlay boot will look for.
    p, err = serve(arc, 1, ovl + ".disk1", sock)
    check(err is None, f"serve --disk 1 starts: {err}")
    qemu_io(sock, "write -P 0x5c 4096 65536")
    stop(p)

    # boot takes it for disk 1 (ovl for disk 0 is created).
    vm = Booted(arc, d, "vm", extra=guest_args(), args=["--overlay", ovl, "--ram", "128M"])
    try:
        vm.agent.wait_ready(120)
        check(vm.status() == "running", "the VM runs on the overlay serve made")
    finally:
        vm.close()
    # The boot process releases the overlays, then removes its run directory, after its QEMU is gone.
    deadline = time.monotonic() + 30
    while os.path.exists(vm.info["rundir"]):
        check(time.monotonic() < deadline, f"boot's run directory {vm.info['rundir']} outlived its VM by 30 s")
        time.sleep(0.05)

    # The writes survived boot, and the overlay still belongs to disk 1 only.
    check(not os.path.exists(sock), "serve removes its socket at exit")
    p, err = serve(arc, 1, ovl + ".disk1", sock)
    check(err is None, f"serve --disk 1 reopens it after boot: {err}")
    qemu_io(sock, "read -P 0x5c 4096 65536")
    stop(p)
    check(not os.path.exists(sock), "serve removes its socket at exit")
    p, err = serve(arc, 0, ovl + ".disk1", sock)
    log(f"disk 1's overlay on disk 0: {err.strip() if err else 'accepted'}")
    check(p.returncode == 1 and err and "belongs to" in err, "disk 1's overlay is refused on disk 0")


if __name__ == "__main__":
    vmtest.main(test)
