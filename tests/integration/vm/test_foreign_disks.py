"""`snap --qmp` of a QEMU vmsnap did not start captures its writable disks with RAM, from one instant, while the
guest runs: the guest writes record A, snap, the guest writes B over it; the archive holds A (and the host-written
SCSI disk), the VM keeps running on its own nodes, its qcow2 passes qemu-img check, read-only disks are skipped,
the config records each disk for a resume, and a paused VM is left paused. Only a background snapshot can capture
the disks: --mode stop (and a paused VM before QEMU 9.0) is refused before the VM is touched."""
import json
import os
import shutil

from fleecelib import SCSI_FILL, check_untouched, graph, managed_vm, qemu_img_check, record_seed
from vmsnaptest import check, log, snap, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        vm, qcow2, raw = managed_vm(d, "managed")
        with vm:
            a = vm.agent()
            a.cmd("fill 16 seed=5")
            a.cmd("rawwrite /dev/vda 0 4 seed=11")          # record A
            a.cmd("rawwrite /dev/vda 8388608 4 seed=12")    # far away: outside the first cluster
            before = graph(vm)
            out = os.path.join(d, "s.vmsnap")
            res = snap(vm.qmp_path, out)
            log(f"snap: disks {res['disks']}, skipped {res['disks-skipped']}, pause {res['pause']}, "
                f"phases {res['phases']}")
            a.cmd("rawwrite /dev/vda 0 4 seed=21")          # record B over A, after the instant
            a.cmd("verify")
            check(res["disks"] == ["vda", "sdb"], f"both writable disks captured: {res['disks']}")
            check(res["disks-skipped"] == "ide0-cd0", f"the read-only cdrom skipped and named: {res['disks-skipped']}")
            check_untouched(vm, before, "after the snapshot")
            a.wait_heartbeats(5)

            x0, x1 = os.path.join(d, "vda.raw"), os.path.join(d, "sdb.raw")
            vmtest.vmsnap("extract", out, "--disk", "0", "-o", x0, "--quiet")
            vmtest.vmsnap("extract", out, "--disk", "1", "-o", x1, "--quiet")
            check(os.path.getsize(x0) == 32 << 20 and os.path.getsize(x1) == 8 << 20, "disk streams' sizes")
            check(record_seed(x0, 0) == 11, f"disk 0 holds record A (seed 11), not B: {record_seed(x0, 0)}")
            check(record_seed(x0, 8388608) == 12, "disk 0 holds the other record")
            with open(x1, "rb") as f, open(raw, "rb") as g:
                check(f.read() == g.read(), "disk 1 is the SCSI disk's content")
            with open(x1, "rb") as f:
                f.seek(1 << 20)
                check(f.read(len(SCSI_FILL)) == SCSI_FILL, "disk 1 holds what the host wrote")

            cfg_path = os.path.join(d, "cfg.json")
            vmtest.vmsnap("extract", out, "--config", "-o", cfg_path)
            with open(cfg_path) as f:
                disks = json.load(f)["disks"]
            log(f"config disks: {disks}")
            want = [{"name": "vda", "stream": "disk0", "size": 32 << 20, "format": "raw",
                     "interface": "virtio-blk-pci", "device": "vda", "node": "vda-fmt"},
                    {"name": "sdb", "stream": "disk1", "size": 8 << 20, "format": "raw", "interface": "scsi-hd",
                     "device": "sdb", "node": "sdb-fmt"}]
            check(disks == want, f"config records the disks: {disks}")

            # --disks chooses.
            out2 = os.path.join(d, "one.vmsnap")
            res = snap(vm.qmp_path, out2, "--disks", "sdb")
            check(res["disks"] == ["sdb"], f"--disks sdb: {res['disks']}")
            p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", os.path.join(d, "x.vmsnap"), "--disks", "vdz",
                              check=False)
            check(p.returncode == 1 and "'vdz'" in p.stderr and "ide0-cd0, vda, sdb" in p.stderr,
                  f"an unknown disk is refused naming the disks there are: {p.stderr.strip()}")
            check_untouched(vm, before, "after the refusal")

            # Only a background snapshot leaves QEMU's block layer alone (any other migration ends by inactivating
            # every node, refused while a filter is attached): --mode stop is refused before the VM is touched.
            stop_out = os.path.join(d, "stop.vmsnap")
            p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", stop_out, "--mode", "stop", check=False)
            check(p.returncode == 1 and "only with a background snapshot" in p.stderr and "--mode stop" in p.stderr
                  and not os.path.exists(stop_out), f"--mode stop refused: {p.stderr.strip()}")
            check_untouched(vm, before, "after --mode stop")

            # A paused VM stays paused: QEMU >= 9.0 takes its background snapshot (its disks as they are); an older
            # one would need a plain migration, refused as above.
            vm.qmp.cmd("stop")
            paused = os.path.join(d, "paused.vmsnap")
            if vmtest.qemu_version() >= (9,):
                res = snap(vm.qmp_path, paused)
                check(res["disks"] == ["vda", "sdb"] and res["state-after"] == "paused", f"paused: {res}")
                vmtest.vmsnap("extract", paused, "--disk", "0", "-o", x0, "--quiet")
                check(record_seed(x0, 0) == 21, "the paused VM's disk as it is: record B")
            else:
                p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", paused, check=False)
                check(p.returncode == 1 and "the VM is paused" in p.stderr and not os.path.exists(paused),
                      f"a paused VM on QEMU < 9.0 refused: {p.stderr.strip()}")
            check(vm.qmp.status() == "paused", "the VM is still paused")
            vm.qmp.cmd("cont")
            check_untouched(vm, before, "after the paused VM's snapshot")
            qemu_img_check(qcow2, "the running VM's qcow2")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
