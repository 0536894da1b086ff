#!/usr/bin/env python3
"""RAM patterns: what the agent writes verifies (whole or a MiB range of it), a wrong seed fails with the first bad
offset, and a fill too large for the guest is refused instead of getting the agent OOM-killed."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest
from vmtest import check, check_eq, log


def test():
    with vmtest.VM(mem="256M", name="mem") as vm:
        agent = vm.agent()
        r = agent.cmd("fill 64 seed=5")
        log(f"fill: {r}")
        check_eq(r.int("mib"), 64, "filled MiB")
        r = agent.cmd("verify")
        log(f"verify: {r}")
        check_eq(r.int("seed"), 5, "verified seed")
        bad = agent.cmd("verify seed=6", check=False)
        log(f"verify with a wrong seed: {bad}")
        check(not bad.ok, "verification with the wrong seed passed")
        check_eq(bad.int("offset"), 0, "first bad offset")
        # part of the fill (the working-set bench's "function"): only that range is read, timed in us
        r = agent.cmd("verify from=16 mib=8")
        check_eq((r.int("from"), r.int("mib"), r.int("seed")), (16, 8, 5), "range verified")
        check(r.int("us") >= 0 and r.int("us") // 1000 == r.int("ms"), f"us and ms agree: {r}")
        bad = agent.cmd("verify seed=6 from=32 mib=4", check=False)
        check(not bad.ok and bad.int("offset") == 32 << 20, f"a range check starts at its range: {bad}")
        for rng in ("from=60 mib=8", "from=64", "mib=0"):
            out = agent.cmd(f"verify {rng}", check=False)
            check(not out.ok and "not inside" in out.text, f"verify {rng} of a 64 MiB fill answered {out}")
        st = agent.cmd("status")
        check_eq((st.int("fill_mib"), st.int("fill_seed")), (64, 5), "status after fill")
        too_big = agent.cmd("fill 1024", check=False)
        check(not too_big.ok and "memory" in too_big.text, f"fill 1024 in 256M answered {too_big}")
        check_eq(agent.cmd("status")["boot"], agent.boot_id, "boot id (agent must not have restarted)")
        agent.cmd("fill 16 seed=9")
        agent.cmd("verify seed=9")
        # the benchmark's mix: random, text-like and zero chunks, all checked
        r = agent.cmd("fill 32 seed=4 mix=40:40:20")
        check_eq(r.int("random_kib") + r.int("text_kib") + r.int("zero_kib"), 32 << 10, "mix covers the fill")
        check(min(r.int("random_kib"), r.int("text_kib"), r.int("zero_kib")) > 0, f"every kind present: {r}")
        agent.cmd("verify")
        check(not agent.cmd("verify seed=5", check=False).ok, "mixed fill verified with the wrong seed")
        check_eq(agent.cmd("status")["fill_mix"], "40:40:20", "status fill_mix")
        check(not agent.cmd("fill 8 mix=1:2", check=False).ok, "bad mix accepted")


vmtest.main(test)
