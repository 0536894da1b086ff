"""Memory as pages end to end, with `vmsnap snap` and `vmsnap boot` on the test guest (256 MiB).

1. snap A (thick), B (--thin, a few seconds later, guest idle), C (--thin, after the guest rewrote 16 MiB): each
   stores memory as pages (ram/mem + memory-device); B is a small fraction of A.
2. each boots lazily (FUSE): same boot id, heartbeat and uptime continue, its own RAM pattern verifies; A also
   boots --eager (reassembled stream) and verifies; restore-to-running and the pattern check times are logged.
3. a byte of a stored pattern page flipped in a copy of A: `verify` names ram/mem, and the lazily booted guest never
   reports the pattern good (QEMU dies on the failed page read)."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

FILL = 64


def pat(seed, i):
    """The agent's pattern word i (tests/guest/agent.c)."""
    m = (1 << 64) - 1
    z = (seed * 0x9e3779b97f4a7c15 + i + 1) & m
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & m
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & m
    return z ^ (z >> 31)


def find_word_pair(path, seed, i):
    """Offset in path of pattern words i, i+1 (stored uncompressed: random data does not compress)."""
    word = pat(seed, i).to_bytes(8, "little") + pat(seed, i + 1).to_bytes(8, "little")
    with open(path, "rb") as f:
        data = f.read()
    k = data.find(word)
    return k if k >= 0 else None


def resume_and_check(path, d, name, boot_id, seed, mib, args=()):
    t0 = time.monotonic()
    v = Booted(path, d, name, args=list(args))
    wall = time.monotonic() - t0
    a = v.agent
    check(v.info["resumed"], f"{name}: boot says it resumed")
    check(a.wait_ready(60) == boot_id, f"{name}: resumed, not rebooted (same boot id)")
    st = a.cmd("status")
    beat = a.wait_heartbeats(3)
    first = a.cmd(f"verify seed={seed}")
    second = a.cmd(f"verify seed={seed}")
    check(int(first["mib"]) == mib, f"{name}: pattern of {mib} MiB: {first}")
    log(f"{name}: lazy={v.info.get('lazy')} start-to-running {v.info['start-to-running'] * 1000:.1f} ms "
        f"(boot --detach wall {wall * 1000:.0f} ms); uptime {st['uptime']}, heartbeat {beat[1]}; "
        f"pattern check {first.int('ms')} ms first, {second.int('ms')} ms second")
    return v


def test():
    d = tmpdir()
    try:
        base = base_archive(d, disk_mib=16)
        vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "256M"])
        a = vm.agent
        boot_id = a.wait_ready(120)
        a.cmd(f"fill {FILL} seed=1")
        outs = {n: os.path.join(d, f"{n}.vmsnap") for n in "ABC"}
        ra = snap(vm.qmp_path, outs["A"])
        time.sleep(3)
        rb = snap(vm.qmp_path, outs["B"], "--thin")
        a.cmd("fill 16 seed=2")
        rc = snap(vm.qmp_path, outs["C"], "--thin")
        vm.close()
        for n, r in zip("ABC", (ra, rb, rc)):
            log(f"{n}: {r['archive-bytes']} bytes, method {r['method']}, paged {r['memory-paged']}, "
                f"pause {r['pause'] * 1000:.1f} ms, total {r['total']:.2f} s")
            check(r["memory-paged"], f"{n}: memory stored as pages ({r['memory-note']})")
        sa, sb, sc = (os.path.getsize(outs[n]) for n in "ABC")
        log(f"THIN: B/A = {sb / sa * 100:.2f}% ({sb} / {sa} bytes), C/A = {sc / sa * 100:.2f}%")
        check(sb <= 0.10 * sa, f"idle thin snapshot B is {sb} bytes, more than 10% of A's {sa}")
        check(sc > sb, "C (16 MiB rewritten) stores more than B")
        info = vmtest.vmsnap("info", outs["A"], "--json", json_out=True)
        names = [s["name"] for s in info["streams"]]
        check("ram/mem" in names and "memory-device" in names, f"A's streams: {names}")

        for n, seed, mib in (("A", 1, FILL), ("B", 1, FILL), ("C", 2, 16)):
            vmtest.vmsnap("verify", outs[n])
            v = resume_and_check(outs[n], d, f"lazy-{n}", boot_id, seed, mib)
            check(v.info.get("lazy") is True, f"{n}: resumed lazily: {v.info}")
            if n == "A":
                # RAM privately mapped from a FUSE file: background-snapshot is refused, precopy (with resent
                # pages, stored out of order) must take over; the result is thin against A and restores exactly.
                v.agent.cmd("fill 8 seed=3")
                outs["D"] = os.path.join(d, "D.vmsnap")
                rd = snap(v.qmp_path, outs["D"], "--thin")
                log(f"D (of a lazily resumed VM): {rd['archive-bytes']} bytes, method {rd['method']} "
                    f"({rd['fallback-reason']}), paged {rd['memory-paged']}, pause {rd['pause'] * 1000:.1f} ms")
                check(rd["method"] != "background-snapshot", "background-snapshot cannot work on file-backed RAM")
                check(rd["memory-paged"], f"D: memory stored as pages ({rd['memory-note']})")
                check(v.status() == "running", "the lazily resumed VM runs on after its snapshot")
                v.agent.cmd("verify seed=3")
            v.close()
        v = resume_and_check(outs["D"], d, "lazy-D", boot_id, 3, 8)
        v.close()
        v = resume_and_check(outs["A"], d, "eager-A", boot_id, 1, FILL, args=["--eager"])
        check(v.info.get("lazy") is False, f"--eager: {v.info}")
        v.close()

        # damage: a stored pattern page of A (a thick copy, so nothing else depends on it)
        bad = os.path.join(d, "bad.vmsnap")
        shutil.copy(outs["A"], bad)
        off = find_word_pair(bad, 1, (FILL << 20) // 8 // 2)
        check(off is not None, "pattern page found stored in the archive")
        with open(bad, "r+b") as f:
            f.seek(off + 100)
            b = f.read(1)
            f.seek(off + 100)
            f.write(bytes([b[0] ^ 0xFF]))
        p = vmtest.vmsnap("verify", bad, check=False)
        out = p.stdout + p.stderr
        log(f"verify of the damaged copy: rc {p.returncode}: {out.strip()[:300]}")
        check(p.returncode == 1 and "ram/mem" in out, "verify fails naming the RAM stream")
        v = Booted(bad, d, "bad")
        r = None
        try:
            r = v.agent.cmd("verify seed=1", timeout=60, check=False)
        except vmtest.TestFailure as e:
            log(f"damaged: verify: {e}")
        check(r is None or not r.ok, f"the guest verified its pattern from a damaged page: {r}")
        deadline = time.monotonic() + 30
        while v.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        check(not v.alive(), "QEMU stopped after the failed page read")
        v.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
