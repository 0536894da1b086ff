"""Run state is checked, never assumed. After a live `snap` (background snapshot) of a VM started by `vmsnap boot`
and `snap --memory-only` of one it did not start, the guest runs again at once: query-status says running,
heartbeats keep coming, the pause is a small part of the snapshot, and --json says who resumed it (QEMU 7.2 itself;
vmsnap on QEMU >= 9.0, which puts the VM back into the paused state vmsnap stopped it in) and how the pause was
measured. A snapshot that fails after its memory phase leaves the running VM running. A VM paused before `snap`
stays paused (exactly 'paused' on QEMU >= 9.0; 'postmigrate' before, where QEMU then refuses the next snapshot in
its own words until the VM has run)."""
import os
import shutil
import subprocess
import time

from vmsnaptest import (boot_filled, check, check_failed_cleanly, check_left_paused, check_resumed, log,
                        qemu_keeps_paused, qemu_resumes_background, snap, timed_snap, tmpdir, vmtest)


def failure_case(d, vm, live):
    """The output filesystem fills up while the start files (the 14 MB kernel) are written, once QEMU is done with
    the VM's memory. The VM must run again all the same."""
    full = os.path.join(d, "full")
    os.mkdir(full)
    size = os.path.getsize(live) - (6 << 20)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", full]).returncode != 0:
        log("SKIPPED the failure case: cannot mount a tmpfs here")
        return
    try:
        out = os.path.join(full, "full.vmsnap")
        t0 = time.monotonic()
        p = snap(vm.qmp_path, out, check_ok=False)
        check_failed_cleanly(p, ["No space"], out)
        check(vm.status() == "running", f"running after the failed snapshot: {vm.status()}")
        vm.agent.wait_heartbeats(5, timeout=30)
        check(vm.agent.hb_stats(since=t0).count > 5, "heartbeats after the failed snapshot")
    finally:
        subprocess.run(["umount", full])


def paused_case(d, vm):
    vm.qmp("stop")
    res = snap(vm.qmp_path, os.path.join(d, "paused.vmsnap"))
    check_left_paused(res, vm.status, vm.agent, "paused VM")
    out = os.path.join(d, "paused2.vmsnap")
    if qemu_keeps_paused():
        res = snap(vm.qmp_path, out, "--thin")
        check_left_paused(res, vm.status, vm.agent, "paused VM, second snapshot")
    else:
        p = snap(vm.qmp_path, out, "--thin", check_ok=False)
        check_failed_cleanly(p, ["previous migration"], out)   # QEMU's own words
        check(vm.status() == "postmigrate", f"still paused after the refusal: {vm.status()}")
    vm.qmp("cont")
    vm.agent.wait_heartbeats(5, timeout=30)


def booted_case(d):
    vm = boot_filled(d, "rs", 64, 71)
    try:
        a = vm.agent
        live = os.path.join(d, "live.vmsnap")
        res, t0, t1 = timed_snap(vm.qmp_path, live)
        check(res["method"] == "background-snapshot", f"live snap uses background-snapshot: {res['method']}")
        check_resumed(res, a, vm.status, t0, t1, "qemu" if qemu_resumes_background() else "vmsnap", True, "live")
        failure_case(d, vm, live)
        paused_case(d, vm)
        a.cmd("verify seed=71")
    finally:
        vm.close()


def foreign_case(d):
    with vmtest.VM(mem="256M", name="rs-foreign") as vm:
        a = vm.agent()
        a.cmd("fill 64 seed=73")
        a.wait_heartbeats(10)
        res, t0, t1 = timed_snap(vm.qmp_path, os.path.join(d, "foreign.vmsnap"), "--memory-only")
        check(res["method"] == "background-snapshot", f"--memory-only: {res['method']}")
        check_resumed(res, a, vm.qmp.status, t0, t1, "qemu" if qemu_resumes_background() else "vmsnap", True,
                      "--memory-only")
        vm.qmp.cmd("stop")
        res = snap(vm.qmp_path, os.path.join(d, "foreign-paused.vmsnap"), "--memory-only")
        check_left_paused(res, vm.qmp.status, a, "--memory-only of a paused VM")
        vm.qmp.cmd("cont")
        a.cmd("verify seed=73")


def test():
    d = tmpdir()
    try:
        booted_case(d)
        foreign_case(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
