"""A rebase that fails after a snap is reported, and costs nothing else: the boot host is made to fail moving its
overlay onto the new archive (VMSNAP_TEST_FAULT=rebase), the snap result and its warning say so and why, the overlay
keeps its frozen layer, and a later --thin snap on top still restores exactly."""
import os
import shutil

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
        ovl = os.path.join(d, "ovl")
        os.environ["VMSNAP_TEST_FAULT"] = "rebase"   # inherited by the boot host
        try:
            vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "128M", "--overlay", ovl])
        finally:
            del os.environ["VMSNAP_TEST_FAULT"]
        a = vm.agent
        a.wait_ready(120)
        a.cmd("rawwrite /dev/vda 0 16 seed=200")
        out_a = os.path.join(d, "A.vmsnap")
        p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out_a)
        log(f"snap A: {p.stderr.strip()}")
        check(p.stderr.startswith("vmsnap: warning: snapshot written, but disk 0") and "injected fault" in p.stderr
              and out_a in p.stderr and "keeps its layers" in p.stderr, f"the warning names disk, archive, why: "
              f"{p.stderr!r}")
        layers = sorted(n for n in os.listdir(d) if n.startswith("ovl."))
        check(layers, f"the overlay kept its frozen layer: {os.listdir(d)}")
        a.cmd("rawwrite /dev/vda 1048576 16 seed=201")
        out_b = os.path.join(d, "B.vmsnap")
        res = snap(vm.qmp_path, out_b, "--thin")
        err = res.get("rebase-error", "")
        check("disk 0" in err and "injected fault" in err and out_b in err, f"--json result says why: {res}")
        a.cmd("rawverify /dev/vda 0 16 seed=200")   # the running VM reads what it wrote
        a.cmd("rawverify /dev/vda 1048576 16 seed=201")
        vm.close()
        check(os.path.getsize(out_b) < os.path.getsize(out_a), "B is thin (only what changed after A)")
        vmtest.vmsnap("verify", out_b)
        v = Booted(out_b, d, "r")
        v.agent.wait_ready(60)
        v.agent.cmd("rawverify /dev/vda 0 16 seed=200")
        v.agent.cmd("rawverify /dev/vda 1048576 16 seed=201")
        v.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
