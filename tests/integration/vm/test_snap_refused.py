"""A snapshot QEMU refuses to migrate (a qcow v1 drive blocks migration) fails cleanly: exit 1, one line carrying
QEMU's reason, no file under the output name, the VM running and the migration capabilities and max-bandwidth put
back."""
import os
import shutil
import subprocess

from vmsnaptest import Booted, base_archive, check_snap_failed, guest_args, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
        blocker = os.path.join(d, "blocker.qcow")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow", blocker, "1M"], check=True)
        vm = Booted(base, d, "f", extra=guest_args() + ["-drive", f"file={blocker},format=qcow,if=none,id=blk"],
                    args=["--ram", "128M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd("fill 32 seed=4")

        out = os.path.join(d, "refused.vmsnap")
        p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, check=False)
        check_snap_failed(p, ["migrat", "qcow"], out, vm)
        vm.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
