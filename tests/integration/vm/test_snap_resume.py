"""Live snapshot of a VM booted from a packed disk, then resume after QEMU is killed.

RAM pattern verifies, the heartbeat counter continues from the snapshot (no reboot: same boot id, uptime goes on),
the disk is from the snapshot instant (raw records written in place by a loop during the snapshot agree with RAM;
a file written before is there, one written after is not). During the live snapshot the longest heartbeat gap seen
from the host stays far below the time the snapshot takes."""
import os
import shutil
import time

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
        vm = Booted(base, d, "a", extra=guest_args(), args=["--ram", "256M"])
        a = vm.agent
        boot_id = a.wait_ready(120)
        a.cmd("fill 96 seed=11")
        a.cmd("mkfs /dev/vda 32768")
        a.cmd("mount /dev/vda")
        a.cmd("fswrite first 256 seed=1")
        a.cmd("rawloop /dev/vda 41943040 slots=256 ms=5")
        time.sleep(0.3)

        out = os.path.join(d, "s1.vmsnap")
        t0 = time.monotonic()
        res = snap(vm.qmp_path, out)
        t1 = time.monotonic()
        a.wait_heartbeats(20)
        hb = a.hb_stats(since=t0, until=t1)
        log(f"snap: {res}")
        log(f"heartbeats during the snapshot: {hb}")
        log(f"PAUSE: max heartbeat gap {hb.max_gap * 1000:.1f} ms, vmsnap-reported pause {res['pause'] * 1000:.1f} ms, "
            f"QEMU downtime {res['qemu-downtime'] * 1000:.1f} ms, snapshot total {res['total']:.3f} s "
            f"(wall {t1 - t0:.3f} s), method {res['method']}")
        check(res["method"] == "background-snapshot", f"expected background-snapshot as root, got {res['method']}")
        check(hb.count > 10, "heartbeats kept coming during the snapshot")
        # generous: the pause must be a small fraction of the snapshot's duration
        check(hb.max_gap < (t1 - t0) / 2, f"pause {hb.max_gap:.3f} s not far below the snapshot's {t1 - t0:.3f} s")
        check(os.path.exists(out), "archive exists under its final name")
        check(vm.status() == "running", "VM running after the snapshot")
        snap_hb = hb.first[1]   # the counter when vmsnap stopped the VM: the snapshot instant
        end_hb = hb.last[1]

        a.cmd("rawloop stop")
        a.cmd("fswrite second 256 seed=2")
        a.cmd("sync")
        vmtest.vmsnap("verify", out)
        vm.close()  # kill QEMU: no clean shutdown

        vm2 = Booted(out, d, "b")
        a2 = vm2.agent
        check(a2.wait_ready(60) == boot_id, "resumed, not rebooted (same boot id)")
        check(vm2.info["resumed"], "boot says it resumed")
        beat = a2.wait_heartbeats(3)
        log(f"heartbeat after resume: {beat[1]} (at the snapshot instant: {snap_hb}, when it ended: {end_hb})")
        check(snap_hb <= beat[1] < snap_hb + 300, f"heartbeat counter continues from the snapshot ({beat[1]} vs {snap_hb})")
        st = a2.cmd("status")
        check(float(st["uptime"]) >= 2.0, f"uptime continues ({st['uptime']})")
        a2.cmd("verify")
        a2.cmd("rawcheck")
        a2.cmd("fsverify first 256 seed=1")
        r = a2.cmd("fsverify second 256 seed=2", check=False)
        check(not r.ok, "the file written after the snapshot is absent")
        vm2.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
