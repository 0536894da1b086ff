"""The boot host's control socket cannot be held by a slow client: one that trickles a request line without
ever ending it gets an error line and is dropped when the protocol's 30 s budget for a request line runs out, the
VM is still served afterwards, and while such a client is connected a SIGTERM still stops the host at once (the
host reads the request in its only loop, watching its signals too). No guest kernel needed: QEMU sits in its
firmware."""
import json
import os
import shutil
import signal
import socket
import time

from vmsnaptest import base_archive, check, log, tmpdir, vmtest


def boot(d, name):
    return vmtest.vmsnap("boot", os.path.join(d, "base.vmsnap"), "--detach", "--json", "--ram", "64", "--qmp",
                         os.path.join(d, f"{name}.qmp"), "--console", os.path.join(d, f"{name}.sock"), json_out=True,
                         timeout=180)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test():
    d = tmpdir()
    pids = []
    try:
        base_archive(d, disk_mib=16)
        info = boot(d, "a")
        pids.append(info["qemu-pid"])
        s = socket.socket(socket.AF_UNIX)
        s.connect(info["control"])
        s.settimeout(1.5)
        got, sent, t0 = b"", 0, time.monotonic()
        while sent < 45 and not got.endswith(b"\n"):   # one blank a second, never a newline
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
        reply = json.loads(got) if got.endswith(b"\n") else {}
        check(reply.get("ok") is False and "30 s" in reply.get("error", ""), f"the slow client got an error: {got!r}")
        check(sent < 45, "and was dropped before 45 bytes (30 s budget)")
        s.close()
        # The host is still serving: an ordinary (bad) request is answered at once, in CONTROL.md's reply shape.
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(30)
        c.connect(info["control"])
        c.sendall(b'{"cmd": "nothing"}\n')
        reply = json.loads(c.makefile("rb").readline())
        check(reply.get("ok") is False and "nothing" in reply.get("error", ""), f"next client answered: {reply}")
        c.close()

        # A trickling client does not hold up the host's signals: SIGTERM stops QEMU and the host within a
        # fraction of the 30 s budget.
        info = boot(d, "b")
        pids.append(info["qemu-pid"])
        with open(os.path.join(info["rundir"], "state.json")) as f:
            host = json.load(f)["boot-pid"]
        s = socket.socket(socket.AF_UNIX)
        s.connect(info["control"])
        s.sendall(b'{"cmd": ')
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(host, signal.SIGTERM)
        while (alive(host) or alive(info["qemu-pid"])) and time.monotonic() - t0 < 25:
            time.sleep(0.1)
        took = time.monotonic() - t0
        log(f"SIGTERM with a client mid-request: host gone after {took:.1f} s")
        check(not alive(host) and not alive(info["qemu-pid"]), "host and QEMU stopped well within the 30 s budget")
        got = s.recv(4096)
        check(b"signal" in got or got == b"", f"the client was told, or just dropped: {got!r}")
        s.close()
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
