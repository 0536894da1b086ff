"""A thin snapshot of a lazily resumed VM, resumed lazily and eagerly, on the QEMU under test (VMSNAP_QEMU).

The resumed VM's RAM is a private mapping of a FUSE file, which background-snapshot cannot write-protect: `snap`
falls back to precopy. QEMU 10.0's precopy stream carries a SWITCHOVER_START command section (0x08), which once
failed exactly this snapshot ("unsupported: section type 0x08 (no archive written)"). It must now be understood:
memory stored as pages with no note (nothing kept opaque), thin against its parent, and the guest's RAM pattern,
written after the lazy resume, verifies after a lazy and after an eager resume, in the same booted kernel. A
`--mode stop` snapshot (a plain migrate of the stopped VM: the same command on 10.0) is checked the same way."""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402


def running(v):
    """snap leaves the VM it found running running, and boot resumes it running: checked, never assumed."""
    st = v.status()
    check(st == "running", f"VM {st}, not running")


def resume(path, d, name, boot_id, seed, mib, eager):
    v = Booted(path, d, name, args=["--eager"] if eager else [])
    check(v.info["resumed"] and v.info.get("lazy") is (not eager), f"{name}: resumed, lazy={not eager}: {v.info}")
    running(v)
    check(v.agent.wait_ready(60) == boot_id, f"{name}: same boot id (resumed, not rebooted)")
    r = v.agent.cmd(f"verify seed={seed}")
    check(int(r["mib"]) == mib, f"{name}: {mib} MiB pattern: {r}")
    log(f"{name}: start-to-running {v.info['start-to-running'] * 1000:.1f} ms, pattern verified in {r.int('ms')} ms")
    return v


def test():
    d = tmpdir()
    try:
        vm = Booted(base_archive(d, disk_mib=16), d, "v", extra=guest_args(), args=["--ram", "256M"])
        boot_id = vm.agent.wait_ready(120)
        vm.agent.cmd("fill 32 seed=1")
        a = os.path.join(d, "A.vmsnap")
        ra = snap(vm.qmp_path, a)
        running(vm)
        vm.close()
        v = resume(a, d, "lazy-A", boot_id, 1, 32, eager=False)
        v.agent.cmd("fill 16 seed=2")
        b = os.path.join(d, "B.vmsnap")
        rb = snap(v.qmp_path, b, "--thin")
        log(f"B (thin, of the lazily resumed VM): method {rb['method']} ({rb['fallback-reason']}), "
            f"paged {rb['memory-paged']}, note {rb['memory-note']!r}, {rb['archive-bytes']} bytes "
            f"(A: {ra['archive-bytes']}), pause {rb['pause'] * 1000:.1f} ms")
        check(rb["method"] != "background-snapshot", "background-snapshot cannot write-protect file-backed RAM")
        check(rb["memory-paged"] and not rb["memory-note"], f"B: memory stored as pages, all understood: {rb}")
        check(rb["archive-bytes"] < ra["archive-bytes"], "B is thin: smaller than A")
        running(v)
        v.agent.cmd("verify seed=2")
        c = os.path.join(d, "C.vmsnap")
        rc = snap(v.qmp_path, c, "--mode", "stop")
        log(f"C (--mode stop): method {rc['method']}, paged {rc['memory-paged']}, note {rc['memory-note']!r}")
        check(rc["method"] == "stop" and rc["memory-paged"] and not rc["memory-note"], f"C: {rc}")
        running(v)
        v.close()
        vmtest.vmsnap("verify", b)
        for eager in (False, True):
            v = resume(b, d, "eager-B" if eager else "lazy-B", boot_id, 2, 16, eager)
            v.close()
        resume(c, d, "lazy-C", boot_id, 2, 16, False).close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
