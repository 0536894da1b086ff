"""vmsnap status on a real QEMU: at rest, during a migration (to a pipe read and discarded), and --watch --json
following it to the end; one JSON document each time, sizes in bytes, times in seconds."""
import subprocess
import time

from qopslib import Sink, VMSNAP, check, log, start_migration, vmsnap, vmtest, wait_migration


def test():
    with vmtest.VM(mem="128M", name="status") as vm:
        agent = vm.agent()
        S = vm.qmp_path
        agent.cmd("fill 32 seed=3")
        doc = vmsnap("status", "--qmp", S, "--json").json()
        check(doc["status"] == "running" and doc["running"] is True, f"at rest: {doc}")
        check(doc["migration"] == {"status": "none", "active": False}, f"no migration yet: {doc}")
        check(vmsnap("status", "--qmp", S).out == "VM: running\nmigration: none\n", "human status at rest")
        vmsnap("status", rc=2)
        e = vmsnap("status", "--qmp", S + ".nope", rc=1).err
        check(S + ".nope" in e, f"bad socket message: {e}")

        # A slow migration, so that it is still running while we look.
        params = vm.qmp.cmd("query-migrate-parameters")
        vm.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 20})
        sink = Sink()
        try:
            start_migration(vm.qmp, sink)
            time.sleep(0.5)
            doc = vmsnap("status", "--qmp", S, "--json").json()
            m = doc["migration"]
            check(m["status"] == "active" and m["active"] is True, f"during migration: {doc}")
            check(m["transferred"] > 0 and m["total"] >= 128 << 20 and m["remaining"] > 0, f"sizes: {m}")
            check(m["total_time"] > 0 and "throughput_mbps" in m and "expected_downtime" in m, f"times: {m}")
            human = vmsnap("status", "--qmp", S).out
            check("migration: active" in human and "transferred" in human, f"human status: {human}")

            watch = subprocess.Popen([VMSNAP, "status", "--qmp", S, "--watch", "--interval", "0.3", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.2)
            vm.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
            out, err = watch.communicate(timeout=120)
            check(watch.returncode == 0, f"status --watch exit {watch.returncode}: {err}")
            import json
            doc = json.loads(out)
            samples = doc["samples"]
            log(f"--watch took {len(samples)} samples: {[s['migration'] for s in samples]}")
            check(len(samples) >= 2 and samples[0]["migration"] == "active", f"samples: {samples}")
            check(doc["migration"]["status"] == "completed" and samples[-1]["migration"] == "completed",
                  f"watch ended before the migration: {doc['migration']}")
            check(doc["migration"]["downtime"] >= 0, f"downtime: {doc['migration']}")
            wait_migration(vm.qmp)
        finally:
            sink.close()
            vm.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": params["max-bandwidth"]})
        log(f"migration stream: {sink.bytes} bytes")
        doc = vmsnap("status", "--qmp", S, "--json").json()
        check(doc["status"] == "postmigrate" and doc["migration"]["status"] == "completed", f"after: {doc}")
        vm.qmp.cmd("cont")
        doc = vmsnap("status", "--qmp", S, "--json").json()
        check(doc["status"] == "running", f"after cont: {doc}")
        agent.cmd("verify seed=3")


vmtest.main(test)
