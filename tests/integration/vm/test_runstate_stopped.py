"""Run state is checked, never assumed (snapshots through a plain migration). After `snap --mode stop` and the
precopy fallback (background-snapshot refused) the guest runs again: query-status says running, heartbeats keep
coming, --json says vmsnap resumed it and how the pause was measured. A VM paused before `snap` (started by
`vmsnap boot` or not) stays paused, and the report says so instead of giving a pause."""
import os
import shutil

from vmsnaptest import (boot_filled, check, check_left_paused, check_resumed, private_file_ram, snap, timed_snap,
                        tmpdir, vmtest)


def booted_case(d):
    vm = boot_filled(d, "rs", 64, 74)
    try:
        a = vm.agent
        res, t0, t1 = timed_snap(vm.qmp_path, os.path.join(d, "stop.vmsnap"), "--mode", "stop")
        check(res["method"] == "stop", f"--mode stop: {res['method']}")
        check_resumed(res, a, vm.status, t0, t1, "vmsnap", False, "--mode stop")

        vm.qmp("stop")
        res = snap(vm.qmp_path, os.path.join(d, "paused.vmsnap"))
        check_left_paused(res, vm.status, a, "paused VM")
        # Still paused (QEMU says postmigrate after a migration): a second snapshot works and leaves it so too.
        res = snap(vm.qmp_path, os.path.join(d, "paused2.vmsnap"), "--thin")
        check_left_paused(res, vm.status, a, "paused VM, second snapshot")
        vm.qmp("cont")
        a.wait_heartbeats(5, timeout=30)
        a.cmd("verify seed=74")
    finally:
        vm.close()


def foreign_paused_case(d):
    with vmtest.VM(mem="128M", name="rs-foreign") as vm:
        a = vm.agent()
        a.wait_heartbeats(5)
        vm.qmp.cmd("stop")
        res = snap(vm.qmp_path, os.path.join(d, "foreign-paused.vmsnap"), "--memory-only")
        check_left_paused(res, vm.qmp.status, a, "--memory-only of a paused VM")


def precopy_case(d):
    with vmtest.VM(mem="128M", extra=private_file_ram(d, 128), name="rs-precopy") as vm:
        a = vm.agent()
        a.cmd("fill 40 seed=72")
        a.wait_heartbeats(10)
        res, t0, t1 = timed_snap(vm.qmp_path, os.path.join(d, "pre.vmsnap"), "--memory-only")
        check(res["method"] == "precopy", f"precopy fallback: {res['method']}")
        check_resumed(res, a, vm.qmp.status, t0, t1, "vmsnap", True, "precopy")


def test():
    vmtest.skip_on_qemu((8,), vmtest.NEEDS_COMMAND_SECTIONS)
    d = tmpdir()
    try:
        booted_case(d)
        foreign_paused_case(d)
        precopy_case(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
