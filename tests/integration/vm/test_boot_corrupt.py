"""An archive damaged in its memory stream (64 bytes flipped a third of the way in) is refused by `boot --eager`:
exit 1, one "vmsnap: " line naming the archive, and no VM left behind (no QMP socket)."""
import os
import shutil

from vmsnaptest import Booted, base_archive, check, guest_args, log, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
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
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
