"""Disk and RAM from the same instant, for a VM vmsnap did not start (fleecelib: q35, a -blockdev qcow2 on
virtio-blk-pci as /dev/vda). A guest writer rewrites raw records in place (O_DIRECT|O_DSYNC) every millisecond
across 4 MiB of the disk while `snap --qmp` captures RAM and disks: none of its writes fails (the copy-before-write
filter never fails a guest write), and after `vmsnap boot` of the archive the guest's record of what it wrote (in
RAM) agrees with every record on the resumed disk (rawcheck: a disk newer or older than RAM fails)."""
import os
import shutil
import time

from fleecelib import managed_vm
from vmsnaptest import Booted, check, log, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        vm, _, _ = managed_vm(d, "same")
        with vm:
            a = vm.agent()
            boot_id = a.boot_id
            a.cmd("fill 16 seed=5")
            a.cmd("rawloop /dev/vda 1048576 slots=1024 ms=1")
            time.sleep(0.3)
            gen0 = a.cmd("rawcheck").int("ram_gen")
            out = os.path.join(d, "same.vmsnap")
            res = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--json", json_out=True)
            log(f"snap: {res}")
            time.sleep(0.2)
            st = a.cmd("rawloop stop")
            log(f"writer: {st}")
            check(res["disks"] == ["vda", "sdb"], f"both writable disks captured: {res['disks']}")
            check(st.int("errors") == 0, f"no guest write failed during the capture: {st}")
            check(st.int("gen") > gen0 + 20, f"the guest kept writing through the capture: {gen0} before, {st}")
            vm.kill()
        g = vmtest.guest()
        r = Booted(out, d, "resumed", extra=["-kernel", g.kernel, "-initrd", g.initrd])
        try:
            check(r.agent.wait_ready(60) == boot_id, "resumed, not rebooted (same boot id)")
            r.agent.cmd("verify")
            c = r.agent.cmd("rawcheck")
            log(f"rawcheck after resume: {c}")
            check(c.int("disk_max") > 0, f"the snapshot caught the writer mid-flight: {c}")
        finally:
            r.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
