"""The boot host's control socket cannot be held by a slow client: one that trickles a request line without
ever ending it gets an error line and is dropped within the host's 5 s budget (the host serves it from its only
loop, which also handles signals and QEMU's exit), and the VM is still served afterwards. No guest kernel
needed: QEMU sits in its firmware."""
import json
import os
import shutil
import signal
import socket
import time

from vmsnaptest import base_archive, check, log, tmpdir, vmtest


def test():
    d = tmpdir()
    pid = None
    try:
        base = base_archive(d, disk_mib=16)
        info = vmtest.vmsnap("boot", base, "--detach", "--json", "--ram", "64", "--qmp", os.path.join(d, "q.qmp"),
                             "--console", os.path.join(d, "c.sock"), json_out=True, timeout=180)
        pid = info["qemu-pid"]
        s = socket.socket(socket.AF_UNIX)
        s.connect(info["control"])
        s.settimeout(1.5)
        got, sent, t0 = b"", 0, time.monotonic()
        while sent < 30 and not got.endswith(b"\n"):   # one blank a second, never a newline
            try:
                s.sendall(b" ")
                sent += 1
                got += s.recv(4096)
                if not got:
                    break   # dropped without a reply
            except socket.timeout:
                pass
            except OSError:
                break
        log(f"after {sent} bytes in {time.monotonic() - t0:.1f} s: {got!r}")
        check(got.endswith(b"\n") and "error" in json.loads(got), f"the slow client got an error line: {got!r}")
        check(sent < 30, "and was dropped well before 30 bytes (5 s budget)")
        s.close()
        # The host is still serving: an ordinary (bad) request is answered at once.
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(30)
        c.connect(info["control"])
        c.sendall(b'{"execute": "nothing"}\n')
        reply = json.loads(c.makefile("rb").readline())
        check("error" in reply, f"next client answered: {reply}")
        c.close()
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
