"""Run state is checked, never assumed (snapshots through a plain migration). After `snap --mode stop` and the
precopy fallback (background-snapshot refused) the guest runs again: query-status says running, heartbeats keep
coming, and --json says vmsnap resumed it and how the pause was measured."""
import os
import shutil

from vmsnaptest import boot_filled, check, check_resumed, private_file_ram, timed_snap, tmpdir, vmtest


def stop_mode_case(d):
    vm = boot_filled(d, "rs", 64, 74)
    try:
        res, t0, t1 = timed_snap(vm.qmp_path, os.path.join(d, "stop.vmsnap"), "--mode", "stop")
        check(res["method"] == "stop", f"--mode stop: {res['method']}")
        check_resumed(res, vm.agent, vm.status, t0, t1, "vmsnap", False, "--mode stop")
        vm.agent.cmd("verify seed=74")
    finally:
        vm.close()


def precopy_case(d):
    with vmtest.VM(mem="128M", extra=private_file_ram(d, 128), name="rs-precopy") as vm:
        a = vm.agent()
        a.cmd("fill 40 seed=72")
        a.wait_heartbeats(10)
        res, t0, t1 = timed_snap(vm.qmp_path, os.path.join(d, "pre.vmsnap"), "--memory-only")
        check(res["method"] == "precopy", f"precopy fallback: {res['method']}")
        # Under TCG before QEMU 9.0 the guest is stopped for precopy's copy (it would lose writes): not live there.
        ver = vm.qmp.cmd("query-version")["qemu"]
        live = (ver["major"], ver["minor"]) >= (9, 0) or vm.qmp.cmd("query-kvm")["enabled"]
        check_resumed(res, a, vm.qmp.status, t0, t1, "vmsnap", live, "precopy")


def test():
    d = tmpdir()
    try:
        stop_mode_case(d)
        precopy_case(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
