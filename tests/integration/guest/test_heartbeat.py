#!/usr/bin/env python3
"""The heartbeat measures pauses: it advances at a plausible rate, and a 1 s host-side `stop` shows up as a gap of
about 1 s seen from the host while the guest's own clock and counter do not jump (the guest cannot see the pause).
Also: the agent survives a disconnect/reconnect of the serial socket."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest
from vmtest import check, log


def test():
    with vmtest.VM(mem="128M", name="hb") as vm:
        agent = vm.agent()
        log(f"READY after {vm.boot_time:.2f}s, boot {agent.boot_id}")

        t0 = time.monotonic()
        time.sleep(2)
        idle = agent.hb_stats(since=t0)
        log(f"idle: {idle}")
        check(idle.count >= 20, f"only {idle.count} heartbeats in 2 s")
        check(idle.last[1] > idle.first[1], "heartbeat counter does not increase")
        check(idle.max_counter_step == 1, f"counter skipped values: {idle}")
        check(20 <= idle.rate <= 400, f"heartbeat rate {idle.rate:.1f}/s not plausible for a 5 ms period")

        # A pause the host makes: the guest cannot see it.
        t1 = time.monotonic()
        vm.qmp.cmd("stop")
        vmtest.check_eq(vm.qmp.status(), "paused", "status after stop")
        time.sleep(1.0)
        vm.qmp.cmd("cont")
        agent.wait_heartbeats(20)
        paused = agent.hb_stats(since=t1)
        log(f"1 s stop: {paused}")
        check(paused.max_gap >= 0.8, f"a 1 s stop shows as a max gap of only {paused.max_gap:.3f}s")
        check(paused.counter_step_at_max == 1, f"counter jumped by {paused.counter_step_at_max} across the pause")
        check(paused.guest_gap_at_max < paused.max_gap / 2,
              f"guest clock advanced {paused.guest_gap_at_max:.3f}s across a {paused.max_gap:.3f}s host pause")

        # The heartbeat period is a command; 0 stops it.
        agent.cmd("hb 20")
        agent.wait_heartbeats(3)
        t2 = time.monotonic()
        time.sleep(1)
        slow = agent.hb_stats(since=t2)
        log(f"20 ms period: {slow}")
        check(slow.rate < idle.rate / 2, f"hb 20 did not slow the heartbeat ({slow.rate:.1f}/s vs {idle.rate:.1f}/s)")
        agent.cmd("hb 0")
        time.sleep(0.2)
        before = agent.last_heartbeat()
        time.sleep(0.5)
        check(agent.last_heartbeat() == before, "hb 0 did not stop the heartbeat")
        agent.cmd("hb 5")

        # Disconnect and reconnect: same boot, the counter continued, commands still answered.
        c_before = agent.wait_heartbeats(1)[1]
        agent.disconnect()
        time.sleep(0.5)
        agent.reconnect()
        c_after = agent.wait_heartbeats(3)[1]
        check(c_after > c_before + 10, f"counter {c_before} -> {c_after} across a 0.5 s disconnect")
        st = agent.cmd("status")
        vmtest.check_eq(st["boot"], agent.boot_id, "boot id after reconnect")
        r = agent.cmd("no-such-command", check=False)
        check(not r.ok and "unknown" in r.text, f"unknown command answered {r}")
        vmtest.check_eq(vm.shutdown(), 0, "QEMU exit status after poweroff")


vmtest.main(test)
