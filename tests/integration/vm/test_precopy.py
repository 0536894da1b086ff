"""When background-snapshot is refused (RAM a private mapping of a regular file: userfaultfd cannot
write-protect it), `snap` falls back to precopy with pause-before-switchover: it succeeds, says which method and why
(--json), the guest keeps running, capabilities and parameters are put back, and the snapshot resumes intact.
Under TCG before QEMU 9.0 precopy loses guest writes, so there the guest is stopped for the copy (still precopy's
machinery: disks frozen at pre-switchover, the guest resumed once the memory is captured)."""
import os
import shutil
import time

from vmsnaptest import Booted, check, log, private_file_ram, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        with vmtest.VM(mem="128M", extra=private_file_ram(d, 128), name="precopy") as vm:
            a = vm.agent()
            boot_id = a.boot_id
            a.cmd("fill 40 seed=41")
            a.wait_heartbeats(20)
            ver = vm.qmp.cmd("query-version")["qemu"]
            # QEMU < 9.0 under TCG loses guest stores during precopy (its dirty tracking misses writes through
            # cached TLB entries): vmsnap stops the guest for the copy there, and says so
            stop_for_copy = (ver["major"], ver["minor"]) < (9, 0) and not vm.qmp.cmd("query-kvm")["enabled"]
            out = os.path.join(d, "pre.vmsnap")
            t0 = time.monotonic()
            res = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--memory-only", "--json", json_out=True)
            t1 = time.monotonic()
            a.wait_heartbeats(20)
            hb = a.hb_stats(since=t0, until=t1)
            log(f"snap: {res}")
            log(f"PRECOPY PAUSE: max heartbeat gap {hb.max_gap * 1000:.1f} ms, "
                f"vmsnap pause {res['pause'] * 1000:.1f} ms, QEMU downtime {res['qemu-downtime'] * 1000:.1f} ms, "
                f"total {res['total']:.3f} s (wall {t1 - t0:.3f} s)")
            check(res["method"] == "precopy", f"fell back to precopy, got {res['method']}")
            check("compatible" in res["fallback-reason"] or "memory" in res["fallback-reason"],
                  f"the reason QEMU gave: {res['fallback-reason']!r}")
            check(res["stopped-to-converge"] is False, "an idle guest converges without stop-and-copy")
            if stop_for_copy:
                check("TCG" in res["fallback-reason"] and "stopped for the copy" in res["fallback-reason"],
                      f"says why the guest was stopped: {res['fallback-reason']!r}")
                check(hb.max_gap > 0.5 * res["pause"], f"the guest was stopped ({hb.max_gap:.3f} s without a beat)")
            else:
                check(hb.count > 10, "heartbeats kept coming during the snapshot")
                # generous: precopy's pause is its last round, well under the whole snapshot
                check(hb.max_gap < 0.75 * (t1 - t0), f"pause {hb.max_gap:.3f} s below the snapshot's {t1 - t0:.3f} s")
            check(vm.qmp.status() == "running", "guest running after the snapshot")
            caps = {c["capability"]: c["state"] for c in vm.qmp.cmd("query-migrate-capabilities")}
            check(not any(caps.values()), f"no migration capability left on: {caps}")
            params = vm.qmp.cmd("query-migrate-parameters")
            check(params["max-bandwidth"] == 134217728 and params["downtime-limit"] == 300,
                  f"max-bandwidth and downtime-limit put back: {params}")
            snap_hb = hb.first[1]
            a.cmd("verify seed=41")
            vm.kill()
        vmtest.vmsnap("verify", out)
        r = Booted(out, d, "r", args=["--trust-archive"])   # the VM's own RAM file and kernel: host paths
        check(r.agent.wait_ready(60) == boot_id, "resumed (same boot id)")
        beat = r.agent.wait_heartbeats(3)
        check(snap_hb <= beat[1] < snap_hb + 2000, f"heartbeat continues from the snapshot ({beat[1]} vs {snap_hb})")
        r.agent.cmd("verify seed=41")
        r.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
