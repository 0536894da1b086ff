"""Clones of one snapshot share one page server (256 MiB guest, 128 MiB pattern).

1. Two clones resumed lazily side by side name the same page server and the same RAM file; both patterns verify.
2. A clone's writes stay its own: clone a fills its RAM with another seed, clone b still verifies the first one.
3. They share the pages they read: the PSS of both QEMUs, both boot hosts and the server is well below twice that
   of one clone alone (a ratio: unshared page files would give about 2).
4. Their VM generation IDs differ, and so do the MACs of the NIC the source recorded (QEMU's own view: qom-get):
   locally administered, unicast, not the source's; a clone with --keep-mac keeps the source's.
5. SIGKILL of clone a's boot host: its QEMU goes, clone b runs on and still reads its pattern, the server stays.
6. When clone b ends, the server exits: nothing of it runs, nothing is mounted, its directory is gone."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

FILL = 128
SRC_MAC = "52:54:00:aa:bb:01"


def running(pid):
    """Alive and not a zombie (an orphan's zombie may linger where pid 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, what, timeout=15):
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(not running(pid), f"{what} (pid {pid}) is gone")


def pss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    return total


def mac_of(vm):
    return vm.qmp("qom-get", {"path": "/machine/peripheral/net0", "property": "mac"})


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def test():
    d = tmpdir()
    vms = []
    try:
        nic = ["-device", f"virtio-net-pci,id=net0,mac={SRC_MAC}"]
        src = Booted(base_archive(d), d, "src", extra=guest_args() + nic, args=["--ram", "256M"])
        vms.append(src)
        src.agent.wait_ready(120)
        src.agent.cmd(f"fill {FILL} seed=11")
        out = os.path.join(d, "warm.vmsnap")
        snap(src.qmp_path, out)
        src.close()

        a = Booted(out, d, "a")
        vms.append(a)
        check(a.info["lazy"] and a.info.get("page-server-pid"), f"clone a resumed lazily: {a.info}")
        a.agent.cmd("verify seed=11", timeout=120)
        server = a.info["page-server-pid"]
        one = pss_kib([a.pid, a.info["boot-pid"], server])

        b = Booted(out, d, "b")
        vms.append(b)
        check(b.info["page-server-pid"] == server, f"clone b uses clone a's page server {server}: {b.info}")
        check(b.info["memory-file"] == a.info["memory-file"], f"one RAM file: {b.info['memory-file']}")
        mnt = os.path.dirname(a.info["memory-file"])
        check(os.path.realpath(os.path.join(a.info["rundir"], "pages")) == mnt, "RUNDIR/pages names the mount")
        check(oct(os.stat(os.path.dirname(mnt)).st_mode & 0o777) == "0o700", "the server's directory is 0700")
        check(oct(os.stat(os.path.join(os.path.dirname(mnt), "srv.sock")).st_mode & 0o777) == "0o600",
              "the server's socket is 0600")
        b.agent.cmd("verify seed=11", timeout=120)
        both = pss_kib([a.pid, a.info["boot-pid"], b.pid, b.info["boot-pid"], server])
        log(f"PSS: one clone {one} KiB, two clones {both} KiB: {both / one:.2f}x")
        check(both < 1.6 * one, f"two clones take less than 1.6x one clone's memory ({both} vs {one} KiB)")

        a.agent.cmd(f"fill {FILL} seed=77", timeout=120)
        a.agent.cmd("verify seed=77", timeout=120)
        b.agent.cmd("verify seed=11", timeout=120)
        log("clone a's new pattern stays its own: clone b still holds seed 11")

        ga, gb = (vm.qmp("query-vm-generation-id")["guid"] for vm in (a, b))
        check(ga != gb, f"generation IDs differ: {ga} {gb}")
        macs = [mac_of(vm) for vm in (a, b)]
        log(f"MACs: source {SRC_MAC}, clones {macs}")
        check(macs[0] != macs[1] and SRC_MAC not in macs, "each clone's NIC has a MAC of its own")
        for vm, m in zip((a, b), macs):
            check(vm.info["macs"] == [m] and int(m[:2], 16) & 3 == 2,
                  f"boot --json reports the MAC QEMU has, locally administered and unicast: {vm.info['macs']} {m}")
        k = Booted(out, d, "k", args=["--keep-mac"])
        vms.append(k)
        check(mac_of(k) == SRC_MAC and k.info["macs"] == [], f"--keep-mac keeps {SRC_MAC}: {mac_of(k)}")
        k.close()

        os.kill(a.info["boot-pid"], signal.SIGKILL)
        wait_gone(a.pid, "clone a's QEMU (its boot host was killed)")
        time.sleep(0.5)
        check(running(server), "the page server outlives a killed boot host")
        check(b.status() == "running", "clone b runs on")
        b.agent.cmd("verify seed=11", timeout=120)
        b.agent.wait_heartbeats(5, timeout=30)

        b.close()
        wait_gone(b.info["boot-pid"], "clone b's boot host")
        wait_gone(server, "the page server, once the last clone ended")
        check(not mounts_under(os.path.dirname(mnt)), f"nothing mounted under {os.path.dirname(mnt)}")
        check(not os.path.exists(os.path.dirname(mnt)), "the server's directory is removed")
    finally:
        for vm in vms:
            if running(vm.pid):
                os.kill(vm.pid, signal.SIGKILL)
            vm.agent.close()


if __name__ == "__main__":
    vmtest.main(test)
