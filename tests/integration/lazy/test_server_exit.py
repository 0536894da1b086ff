"""A boot that arrives while the shared page server is exiting (128 MiB guest, 8 MiB pattern).

The server decides to exit holding the lock of its directory; VMSNAP_TEST_FAULT=pagesrv-exit-slow makes it hold the
lock for 2 s there, its socket still in place. A boot started in that window must not reach the exiting server: it
waits for the lock, then starts a server of its own, and its clone runs and verifies its pattern. The old server is
gone, only the new one is mounted, and when the clone ends nothing is left."""
import fcntl
import glob
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_clones_shared import mounts_under, running, wait_gone  # noqa: E402


def lock_held(path):
    """Whether another process holds the flock (a try that never waits)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test():
    d = tmpdir()
    vms = []
    try:
        src = Booted(base_archive(d), d, "src", extra=guest_args(), args=["--ram", "128M"])
        vms.append(src)
        src.agent.wait_ready(120)
        src.agent.cmd("fill 8 seed=9")
        out = os.path.join(d, "warm.vmsnap")
        snap(src.qmp_path, out)
        src.close()

        os.environ["VMSNAP_TEST_FAULT"] = "pagesrv-exit-slow"   # inherited by the server a's boot starts
        try:
            a = Booted(out, d, "a")
        finally:
            del os.environ["VMSNAP_TEST_FAULT"]
        vms.append(a)
        old = a.info["page-server-pid"]
        sdir = os.path.dirname(os.path.dirname(a.info["memory-file"]))
        lock, sock = os.path.join(sdir, "lock"), os.path.join(sdir, "srv.sock")
        a.agent.close()
        os.kill(a.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not lock_held(lock) and time.monotonic() < deadline:
            time.sleep(0.02)
        check(lock_held(lock) and os.path.exists(sock) and running(old),
              "the server holds its lock in its exit path, socket still in place")

        b = Booted(out, d, "b")
        vms.append(b)
        new = b.info["page-server-pid"]
        log(f"old server {old}, new server {new}")
        check(new and new != old, "the boot started a server of its own instead of reaching the exiting one")
        wait_gone(old, "the exiting server")
        b.agent.cmd("verify seed=9", timeout=120)
        mounts = mounts_under(sdir)
        check(len(mounts) == 1 and mounts[0] == os.path.dirname(b.info["memory-file"]),
              f"only the new server's mount: {mounts}")
        check(len(glob.glob(os.path.join(sdir, "mnt-*"))) == 1, "the old mount point is removed")
        b.close()
        wait_gone(new, "the new server, once its clone ended")
        check(not mounts_under(sdir), "nothing mounted")
    finally:
        for vm in vms:
            if running(vm.pid):
                os.kill(vm.pid, signal.SIGKILL)
            vm.agent.close()


vmtest.main(test)
