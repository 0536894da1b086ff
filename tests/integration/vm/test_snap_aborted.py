"""A snapshot that stops midway fails cleanly and the guest lives on: SIGTERM to vmsnap mid-snapshot ("interrupted")
and then, on the same VM, an output directory that fills up (a small tmpfs, "No space") each give exit 1, one line,
no file under the output name, the VM running with the migration capabilities and max-bandwidth put back, and the
guest's RAM pattern still verifying. One VM for both: a boot is the expensive part."""
import os
import shutil
import signal
import subprocess
import time

from vmsnaptest import Booted, FullDir, base_archive, check_snap_failed, guest_args, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        with FullDir(d, "20m") as full:
            base = base_archive(d)
            vm = Booted(base, d, "g", extra=guest_args(), args=["--ram", "128M"])
            vm.agent.wait_ready(120)
            vm.agent.cmd("fill 40 seed=5")
            out = os.path.join(d, "term.vmsnap")
            proc = subprocess.Popen([vmtest.vmsnap_path(), "snap", "--qmp", vm.qmp_path, "-o", out, "--compress",
                                     "zstd:19"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            so, se = proc.communicate(timeout=120)
            check_snap_failed(subprocess.CompletedProcess(proc.args, proc.returncode, so, se), ["interrupted"], out,
                              vm)
            # The guest must still be alive, not just "running": QEMU 7.2 wedges it if a background snapshot is
            # cancelled midway, so vmsnap lets it finish into a sink instead. Same VM for the next failure.
            vm.agent.cmd("verify seed=5", timeout=30)
            if full:
                out = os.path.join(full, "full.vmsnap")
                p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--compress", "none", check=False)
                check_snap_failed(p, ["No space"], out, vm)

            vm.agent.cmd("verify seed=5", timeout=30)
            vm.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
