"""A QEMU vmsnap did not start: snap captures its -drive disk too (recorded by its drive name); --memory-only captures
RAM, device state and its command line (secrets redacted), and `vmsnap boot --trust-archive` resumes it (its own
disk file as it is now; without the flag, boot refuses the recorded host paths), its RAM served lazily from the
archive."""
import os
import shutil

from vmsnaptest import Booted, check, log, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        disk = vmtest.make_disk(os.path.join(d, "own.raw"), "16M")
        with vmtest.VM(mem="128M", disks=[disk], name="foreign",
                       extra=["-object", "secret,id=sec0,data=hunter2"]) as vm:
            a = vm.agent()
            boot_id = a.boot_id
            a.cmd("fill 16 seed=9")
            a.cmd(f"rawwrite /dev/vda 0 4 seed=3")
            out = os.path.join(d, "mem.vmsnap")
            full = os.path.join(d, "full.vmsnap")
            res = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", full, "--json", json_out=True)
            check(res["disks"] == ["virtio0"] and res["disks-skipped"] is None, f"its one disk captured: {res}")
            x = os.path.join(d, "disk0.raw")
            vmtest.vmsnap("extract", full, "--disk", "0", "-o", x, "--quiet")
            with open(x, "rb") as f, open(disk, "rb") as g:
                check(f.read() == g.read(), "the disk stream is the disk's content")
            res = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--memory-only", "--json", json_out=True)
            log(f"memory-only: {res}")
            cfg_path = os.path.join(d, "cfg.json")
            vmtest.vmsnap("extract", out, "--config", "-o", cfg_path)
            with open(cfg_path) as f:
                cfg = f.read()
            check(res["redacted"] == 1 and "hunter2" not in cfg and "data=REDACTED" in cfg,
                  "the secret object's data is not stored in clear")
            check(vm.qmp.status() == "running", "foreign VM still running")
            vm.kill()
        # Its disk and kernel are host paths the archive records: boot says so before anything starts, and
        # --trust-archive uses them (docs/SECURITY.md).
        p = vmtest.vmsnap("boot", out, "--detach", "--qmp", os.path.join(d, "x.qmp"), check=False)
        check(p.returncode == 1 and "a host disk of the recorded VM" in p.stderr and "--trust-archive" in p.stderr
              and "-kernel" in p.stderr and "vmsnap boot -- OPTIONS" in p.stderr,
              f"refused naming the recorded host paths and what to do instead: {p.stderr!r}")
        r = Booted(out, d, "resumed", args=["--trust-archive"])
        check(r.agent.wait_ready(60) == boot_id, "resumed the foreign VM (same boot id)")
        # Its RAM (QEMU's own "pc.ram" of plain -m) is mapped from the archive's page file, as for a vmsnap VM.
        check(r.info["lazy"] and not r.info.get("memory-note"), f"resumed lazily: {r.info}")
        r.agent.cmd("verify")
        r.agent.cmd("rawverify /dev/vda 0 4 seed=3")
        r.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
