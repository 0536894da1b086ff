"""base -> snap A (thick) -> B (--thin) -> C (--thin); each boots to its own state; verify passes."""
import os
import shutil

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
        vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "128M"])
        a = vm.agent
        a.wait_ready(120)
        outs = []
        for i, name in enumerate("ABC"):
            a.cmd(f"fill 16 seed={100 + i}")
            a.cmd(f"rawwrite /dev/vda {i * 1048576} 16 seed={200 + i}")
            out = os.path.join(d, f"{name}.vmsnap")
            res = snap(vm.qmp_path, out, *(["--thin"] if i else []))
            log(f"{name}: {res['archive-bytes']} bytes, thin={res['thin']}")
            outs.append(out)
        vm.close()
        sizes = [os.path.getsize(o) for o in outs]
        log(f"sizes: {sizes}")
        for i, out in enumerate(outs):
            vmtest.vmsnap("verify", out)
            v = Booted(out, d, f"r{i}")
            v.agent.wait_ready(60)
            v.agent.cmd(f"verify seed={100 + i}")
            for j in range(3):
                r = v.agent.cmd(f"rawverify /dev/vda {j * 1048576} 16 seed={200 + j}", check=False)
                check(r.ok == (j <= i), f"snapshot {'ABC'[i]}: records {j} {'present' if j <= i else 'absent'}: {r}")
            v.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
