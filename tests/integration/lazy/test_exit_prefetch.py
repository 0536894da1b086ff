"""The page server exits while its prefetcher stores into pages a queued read holds locked (128 MiB guest).

On a loaded host a FUSE worker may pick a read up late: the kernel holds the read's pages locked meanwhile, no
demand read is counted, and the prefetcher's notify_store into those pages waits for the reply. A server that
ended its loop then and exited left that read unanswered forever: the storing thread stuck in the kernel (D
state), the process never gone, the QEMU closing the file stuck with it. VMSNAP_TEST_FAULT=pagefs-read-late makes
the first demand read once the test arms it wait 10 s before it is served, and the prefetcher store into its
first page then; the server gets SIGTERM while that store waits and must be gone (every thread: a zombie whose
thread hangs in the kernel is not), its mount too, and the QEMU (killed, unless its page read failed first) must
end, its boot host too. Should it hang, the test aborts the FUSE connection (fusectl) so that nothing is left."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_clones_shared import mounts_under  # noqa: E402


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def exited(pid):
    """Gone, or a zombie none of whose threads is left (an orphan's zombie may linger where pid 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def wait_exited(pid, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(exited(pid), f"{what} (pid {pid}) has exited, every thread of it")


def in_d_state(pid):
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "D":
                    return True
        except OSError:
            pass
    return False


def fuse_conn(mnt):
    """The FUSE connection number of a mount (its device minor), from mountinfo: a stat could hang on it."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            x = line.split()
            if x[4] == mnt:
                return int(x[2].split(":")[1])
    return None


def abort_conn(conn):
    """Frees whatever waits on a hung connection (root only; fusectl mounted if it is not)."""
    base = "/sys/fs/fuse/connections"
    if not os.path.exists(os.path.join(base, str(conn))):
        subprocess.run(["mount", "-t", "fusectl", "none", base], check=False)
    try:
        with open(os.path.join(base, str(conn), "abort"), "w") as f:
            f.write("1")
        log(f"aborted FUSE connection {conn}")
    except OSError as e:
        log(f"could not abort FUSE connection {conn}: {e}")


def test():
    d = tmpdir()
    vms = []
    conn = server = None
    try:
        src = Booted(base_archive(d), d, "src", extra=guest_args(), args=["--ram", "128M"])
        vms.append(src)
        src.agent.wait_ready(120)
        src.agent.cmd("fill 48 seed=5")
        out = os.path.join(d, "warm.vmsnap")
        snap(src.qmp_path, out)
        src.close()

        arm = os.path.join(d, "arm")
        os.environ["VMSNAP_TEST_FAULT"] = "pagefs-read-late"   # inherited by the server the boot starts
        os.environ["VMSNAP_TEST_LATE_ARM"] = arm               # the late read: the first once this file exists
        try:
            a = Booted(out, d, "a")
        finally:
            del os.environ["VMSNAP_TEST_FAULT"], os.environ["VMSNAP_TEST_LATE_ARM"]
        vms.append(a)
        server = a.info["page-server-pid"]
        mnt = os.path.dirname(a.info["memory-file"])
        sdir = os.path.dirname(mnt)
        conn = fuse_conn(mnt)
        host = parent_of(a.pid)
        open(arm, "w").close()
        try:   # the guest reads its pattern: one of the reads is served late (10 s)
            a.agent.cmd("verify seed=5", timeout=1)
        except Exception as e:  # noqa: BLE001 (still verifying: fine)
            log(f"verify still running: {e}")
        deadline = time.monotonic() + 8
        while not in_d_state(server) and time.monotonic() < deadline:
            time.sleep(0.01)
        check(in_d_state(server), "a thread of the page server waits in the kernel (its store into the locked page)")
        log(f"SIGTERM to the page server {server}")
        os.kill(server, signal.SIGTERM)
        wait_exited(server, "the page server, with a read queued and the prefetch storing")
        check(not mounts_under(sdir), f"nothing mounted: {mounts_under(sdir)}")
        a.agent.close()
        try:   # it may have died already: its page read failed with the server gone (SIGBUS)
            os.kill(a.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_exited(a.pid, "the clone's QEMU")
        wait_exited(host, "its boot host")
    finally:
        if server and conn is not None and not exited(server):
            abort_conn(conn)
        for vm in vms:
            if not exited(vm.pid):
                try:
                    os.kill(vm.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            vm.agent.close()


vmtest.main(test)
