"""`snap --mode stop` keeps the VM paused until the archive is durable, then lets it run; the snapshot
resumes where it was, after the kernel and initrd it was started with are gone (a thick archive holds them).
Also checks the --json documents of `snap` and `boot --detach` (CLI.md: one document, sizes
integer bytes, times seconds)."""
import os
import stat
import shutil
import time

from vmsnaptest import Booted, base_archive, check, log, snap, tmpdir, vmtest


def check_json_types(doc, ints, numbers, strings, what):
    for k in ints:
        check(isinstance(doc.get(k), int) and not isinstance(doc.get(k), bool), f"{what}: {k} is an integer: {doc}")
    for k in numbers:
        check(isinstance(doc.get(k), (int, float)) and not isinstance(doc.get(k), bool),
              f"{what}: {k} is a number of seconds: {doc}")
    for k in strings:
        check(isinstance(doc.get(k), str), f"{what}: {k} is a string: {doc}")


def test():
    d = tmpdir()
    try:
        base = base_archive(d)
        ovl = os.path.join(d, "keep.ovl")
        g = vmtest.guest()
        kernel = shutil.copy(g.kernel, os.path.join(d, "vmlinuz"))
        initrd = shutil.copy(g.initrd, os.path.join(d, "initrd"))
        extra = ["-kernel", kernel, "-initrd", initrd, "-append", g.append]
        vm = Booted(base, d, "s", extra=extra, args=["--ram", "128M", "--overlay", ovl])
        info = vm.info
        log(f"boot --detach --json: {info}")
        check_json_types(info, ["qemu-pid"], ["start-to-running"], ["qmp", "console", "overlay", "rundir"], "boot")
        check(info["qmp"] == vm.qmp_path and info["console"] == vm.console and info["overlay"] == ovl,
              f"boot says where QMP, console and overlay are: {info}")
        for sock in (info["qmp"], info["console"]):
            mode = stat.S_IMODE(os.stat(sock).st_mode)
            check(stat.S_ISSOCK(os.stat(sock).st_mode) and mode == 0o600, f"{sock} is a socket of mode 0600 ({mode:o})")
        check(info["resumed"] is False, "a disk-only archive boots cold")
        check(os.path.exists(ovl), "the --overlay file exists")
        a = vm.agent
        boot_id = a.wait_ready(120)
        a.cmd("fill 32 seed=31")
        a.cmd("rawwrite /dev/vda 0 8 seed=32")
        a.wait_heartbeats(20)

        out = os.path.join(d, "stop.vmsnap")
        t0 = time.monotonic()
        res = snap(vm.qmp_path, out, "--mode", "stop")
        t1 = time.monotonic()
        a.wait_heartbeats(20)
        hb = a.hb_stats(since=t0, until=time.monotonic())
        log(f"snap --mode stop: {res}")
        log(f"STOP-MODE PAUSE: max heartbeat gap {hb.max_gap * 1000:.1f} ms, "
            f"vmsnap pause {res['pause'] * 1000:.1f} ms, "
            f"until durable {res['writing']:.3f} s, total {res['total']:.3f} s (wall {t1 - t0:.3f} s)")
        check_json_types(res, ["memory-bytes", "archive-bytes"], ["pause", "qemu-downtime", "writing", "total"],
                         ["method", "output"], "snap")
        check(res["archive-bytes"] == os.path.getsize(out), "archive-bytes is the archive's size")
        check(res["output"] == out, "output names the archive")
        check(res["method"] == "stop", f"method stop, got {res['method']}")
        check(res["memory-bytes"] > 32 << 20, "the memory stream holds the filled RAM")
        # Paused until durable: the guest saw no heartbeat for (roughly) the whole write, and vmsnap agrees.
        check(hb.max_gap >= 0.5 * res["writing"], f"gap {hb.max_gap:.3f} s covers the write ({res['writing']:.3f} s)")
        check(res["pause"] >= 0.5 * res["writing"], f"reported pause {res['pause']:.3f} s covers the write")
        check(vm.status() == "running", "VM running after the snapshot")
        caps = {c["capability"]: c["state"] for c in vm.qmp("query-migrate-capabilities")}
        check(not any(caps.values()), f"no migration capability left on: {caps}")
        check(vm.qmp("query-migrate-parameters")["max-bandwidth"] == 134217728, "max-bandwidth put back")
        snap_hb = hb.first[1]
        a.cmd("rawwrite /dev/vda 0 8 seed=33")   # after the snapshot: must not be in it
        vm.close()
        for f in (kernel, initrd):
            os.rename(f, f + ".gone")   # the snapshot must not need them

        vmtest.vmsnap("verify", out)
        r = Booted(out, d, "r")
        check(r.info["resumed"] is True, "resumed")
        check(r.agent.wait_ready(60) == boot_id, "same boot id")
        beat = r.agent.wait_heartbeats(3)
        check(snap_hb <= beat[1] < snap_hb + 300, f"heartbeat continues from the snapshot ({beat[1]} vs {snap_hb})")
        r.agent.cmd("verify seed=31")
        r.agent.cmd("rawverify /dev/vda 0 8 seed=32")
        r.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
