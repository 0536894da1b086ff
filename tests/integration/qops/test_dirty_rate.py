"""vmsnap dirty-rate on a real QEMU: the estimate of a stop-mode and a live snapshot is compared with real ones
(QEMU's migrate to a pipe that is read and discarded) and the error reported; the bound asserted is generous (10x)."""
import threading
import time

from qopslib import Sink, check, log, start_migration, vmsnap, vmtest, wait_migration


class Dirtier:
    """Keeps the agent rewriting a RAM region, so the guest dirties memory at a steady rate."""

    def __init__(self, agent, mib):
        self.agent, self.mib, self.stop_ = agent, mib, threading.Event()
        self.fills = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        seed = 100
        while not self.stop_.is_set():
            seed += 1
            self.agent.cmd(f"fill {self.mib} seed={seed}", timeout=120)
            self.fills += 1

    def stop(self):
        self.stop_.set()
        self.t.join(120)


def ratio(est, real):
    return est / real if real > 0 else float("inf")


def measured_migration(vm, stop_first):
    """Migrate to a discarding pipe; return (wall seconds, QEMU's MigrationInfo). stop_first: stop-mode snapshot."""
    sink = Sink()
    t0 = time.monotonic()
    try:
        if stop_first:
            vm.qmp.cmd("stop")
        start_migration(vm.qmp, sink)
        m = wait_migration(vm.qmp)
        t = time.monotonic() - t0
    finally:
        sink.close()
        vm.qmp.cmd("cont")
    check(m["status"] == "completed", f"migration failed: {m}")
    return t, m, sink.bytes


def test():
    with vmtest.VM(mem="128M", name="dirty") as vm:
        agent = vm.agent()
        S = vm.qmp_path
        agent.cmd("fill 48 seed=1")
        idle = vmsnap("dirty-rate", "--qmp", S, "--json").json()
        log(f"idle: {idle}")
        check(idle["ram"] == 128 << 20 and idle["mode"] == "page-sampling", f"facts: {idle}")
        check(idle["throughput_source"] == "max-bandwidth", f"no migration yet, source: {idle['throughput_source']}")
        human = vmsnap("dirty-rate", "--qmp", S).out
        check("stop-mode snapshot" in human and "live snapshot (precopy)" in human, f"human: {human}")
        vmsnap("dirty-rate", "--qmp", S, "--seconds", "0", rc=2)

        d = Dirtier(agent, 16)
        try:
            busy = vmsnap("dirty-rate", "--qmp", S, "--json", "--seconds", "2").json()
            log(f"busy ({d.fills} fills so far): {busy}")
            check(busy["dirty_rate"] >= idle["dirty_rate"], "dirtying guest measured slower than idle")
            est = busy["estimate"]
            # Real stop-mode snapshot: paused for all of it.
            stop_t, stop_m, stop_bytes = measured_migration(vm, stop_first=True)
            r_stop = ratio(est["stop"]["pause"], stop_t)
            log(f"stop-mode: estimated pause {est['stop']['pause']:.3f}s, measured {stop_t:.3f}s "
                f"({stop_bytes} bytes), estimate/measured = {r_stop:.2f}")
            # Real live (precopy) snapshot while the guest keeps dirtying.
            live_t, live_m, live_bytes = measured_migration(vm, stop_first=False)
            r_live = ratio(est["live"]["total"], live_t)
            log(f"live: estimated {est['live']['total']:.3f}s (pause {est['live']['pause']:.3f}s), measured "
                f"{live_t:.3f}s ({live_bytes} bytes, QEMU downtime {live_m.get('downtime')} ms), "
                f"estimate/measured = {r_live:.2f}")
            # With a migration behind it the estimate uses its measured rate and zero-page share.
            again = vmsnap("dirty-rate", "--qmp", S, "--json").json()
            r_again = ratio(again["estimate"]["live"]["total"], live_t)
            log(f"after a migration: source {again['throughput_source']}, non-zero share "
                f"{again['nonzero_fraction']:.2f}, live estimate {again['estimate']['live']['total']:.3f}s, "
                f"estimate/measured = {r_again:.2f}")
            check(again["throughput_source"] == "last migration", f"source: {again['throughput_source']}")
        finally:
            d.stop()
        print(f"ESTIMATE-ERROR stop={r_stop:.2f} live={r_live:.2f} live_after_measure={r_again:.2f}", flush=True)
        for name, r in (("stop", r_stop), ("live", r_live), ("live after a migration", r_again)):
            check(0.1 <= r <= 10, f"{name} estimate off by more than 10x (estimate/measured {r:.2f})")
        check(vm.qmp.status() == "running", "VM not running at the end")


vmtest.main(test)
