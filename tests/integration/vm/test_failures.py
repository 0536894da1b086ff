"""Each failure gives a clear one-line message, exit 1, the VM running, no file under the output
name, and the migration capabilities/parameters put back: migrate refused by QEMU (a qcow v1 drive blocks
migration), output directory full (small tmpfs), SIGTERM to vmsnap mid-snapshot, missing QMP socket, corrupt
archive at boot."""
import os
import shutil
import signal
import subprocess
import time

from vmsnaptest import Booted, base_archive, check, check_failed_cleanly, guest_args, log, tmpdir, vmtest


def expect_failure(p, words, out, vm=None):
    check_failed_cleanly(p, words, out)
    check(not any(n.startswith(os.path.basename(out)) for n in os.listdir(os.path.dirname(out))),
          "no temp file left beside the output")
    if vm:
        check(vm.status() == "running", "VM running")
        caps = {c["capability"]: c["state"] for c in vm.qmp("query-migrate-capabilities")}
        check(not caps.get("background-snapshot") and not caps.get("pause-before-switchover"), f"caps put back {caps}")
        check(vm.qmp("query-migrate-parameters")["max-bandwidth"] == 134217728, "max-bandwidth put back")


def test():
    d = tmpdir()
    mnt = os.path.join(d, "full")
    os.mkdir(mnt)
    mounted = False
    try:
        p = vmtest.vmsnap("snap", "--qmp", os.path.join(d, "nope.qmp"), "-o", os.path.join(d, "x.vmsnap"), check=False)
        expect_failure(p, ["nope.qmp", "No such file"], os.path.join(d, "x.vmsnap"))

        base = base_archive(d)
        blocker = os.path.join(d, "blocker.qcow")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow", blocker, "1M"], check=True)
        vm = Booted(base, d, "f", extra=guest_args() + ["-drive", f"file={blocker},format=qcow,if=none,id=blk"],
                    args=["--ram", "128M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd("fill 32 seed=4")

        out = os.path.join(d, "refused.vmsnap")
        p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, check=False)
        expect_failure(p, ["migrat", "qcow"], out, vm)
        vm.close()

        vm = Booted(base, d, "g", extra=guest_args(), args=["--ram", "128M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd("fill 40 seed=5")
        out = os.path.join(d, "term.vmsnap")
        proc = subprocess.Popen([vmtest.vmsnap_path(), "snap", "--qmp", vm.qmp_path, "-o", out, "--compress",
                                 "zstd:19"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        so, se = proc.communicate(timeout=120)
        expect_failure(subprocess.CompletedProcess(proc.args, proc.returncode, so, se), ["interrupted"], out, vm)
        # The guest must still be alive, not just "running": QEMU 7.2 wedges it if a background snapshot is
        # cancelled midway, so vmsnap lets it finish into a sink instead. Same VM for the next failure.
        vm.agent.cmd("verify seed=5", timeout=30)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt]).returncode == 0:
            mounted = True
            out = os.path.join(mnt, "full.vmsnap")
            p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--compress", "none", check=False)
            expect_failure(p, ["No space"], out, vm)
        else:
            log("SKIPPED the disk-full case: cannot mount a tmpfs here")

        vm.agent.cmd("verify seed=5", timeout=30)
        vm.close()

        # a damaged archive at boot: flip bytes in the memory stream's middle
        good = os.path.join(d, "good.vmsnap")
        vm = Booted(base, d, "h", extra=guest_args(), args=["--ram", "128M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd("fill 32 seed=6")
        vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", good, "--json")
        vm.close()
        bad = os.path.join(d, "bad.vmsnap")
        shutil.copy(good, bad)
        with open(bad, "r+b") as f:
            f.seek(os.path.getsize(bad) // 3)
            f.write(b"\xff" * 64)
        # --eager reads every page before the VM runs, so boot itself refuses; a lazy boot reads pages on touch
        # and stops QEMU at the damaged one instead (tests/integration/lazy).
        p = vmtest.vmsnap("boot", bad, "--detach", "--eager", "--qmp", os.path.join(d, "bad.qmp"), check=False,
                          timeout=120)
        log(f"corrupt boot -> {p.returncode}: {p.stderr.strip()}")
        check(p.returncode == 1 and p.stderr.startswith("vmsnap: ") and "bad.vmsnap" in p.stderr,
              f"clear refusal of the damaged archive: {p.stderr!r}")
        check(not os.path.exists(os.path.join(d, "bad.qmp")), "no VM left behind")
    finally:
        if mounted:
            subprocess.run(["umount", mnt])
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
