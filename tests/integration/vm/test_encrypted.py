"""Encrypted archives end to end on the test guest (128 MiB, 16 MiB of RAM pattern).

1. `pack --encrypt K1` of the base disk; `boot` without a key, or with K2, fails at once with one line naming the
   archive and K1's id; `boot --key K1` runs the guest.
2. `snap` A (thick) and B (--thin) are sealed with K1 without being told, B with the cipher `--cipher` names
   (a thin child picks its own); `info` without a key says so; no pattern word is stored in the clear; `snap --thin --encrypt K2` is refused (a thin archive uses its parent's key) and the
   VM runs on.
3. A and B resume lazily (B with VMSNAP_KEY_FILE), same boot id, RAM pattern intact.
4. A byte flipped inside A's sealed RAM: `verify --key` names ram/mem, an eager resume fails (nothing unauthenticated
   reaches the guest)."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmsnaptest import Booted, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

FILL = 16


def pat(seed, i):
    """The agent's pattern word i (tests/guest/agent.c)."""
    m = (1 << 64) - 1
    z = (seed * 0x9e3779b97f4a7c15 + i + 1) & m
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & m
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & m
    return z ^ (z >> 31)


def one_line_failure(p, words):
    err = p.stderr.strip()
    log(f"-> {p.returncode}: {err}")
    check(p.returncode == 1, f"exit status 1, got {p.returncode}")
    check(err.startswith("vmsnap: ") and "\n" not in err, f"one 'vmsnap: ' line: {err!r}")
    for w in words:
        check(w in err, f"message names {w!r}: {err!r}")


def key_id(path):
    out = vmtest.vmsnap("keygen", "-o", path).stdout
    return out.split()[-1]


def resume(path, d, name, boot_id, args=()):
    v = Booted(path, d, name, args=list(args))
    check(v.info["resumed"], f"{name}: boot says it resumed")
    check(v.agent.wait_ready(60) == boot_id, f"{name}: resumed, not rebooted (same boot id)")
    r = v.agent.cmd(f"verify seed=1")
    check(int(r["mib"]) == FILL, f"{name}: RAM pattern of {FILL} MiB intact: {r}")
    log(f"{name}: lazy={v.info.get('lazy')} start-to-running {v.info['start-to-running'] * 1000:.1f} ms")
    return v


def test():
    d = tmpdir()
    try:
        k1, k2 = os.path.join(d, "k1.key"), os.path.join(d, "k2.key")
        id1, id2 = key_id(k1), key_id(k2)
        raw = vmtest.make_disk(os.path.join(d, "disk.raw"), "16M")
        base = os.path.join(d, "base.vmsnap")
        vmtest.vmsnap("pack", raw, "-o", base, "--quiet", "--encrypt", k1)

        os.environ.pop("VMSNAP_KEY_FILE", None)
        t0 = time.monotonic()
        p = vmtest.vmsnap("boot", base, "--detach", "--", *guest_args(), check=False)
        one_line_failure(p, [f"archive {base} is encrypted with key {id1}; pass --key"])
        p = vmtest.vmsnap("boot", base, "--detach", "--key", k2, "--", *guest_args(), check=False)
        one_line_failure(p, [f"is encrypted with key {id1}", id2])
        log(f"both refusals took {time.monotonic() - t0:.2f} s")

        vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "128M", "--key", k1])
        boot_id = vm.agent.wait_ready(120)
        vm.agent.cmd(f"fill {FILL} seed=1")
        a, b, c = (os.path.join(d, f"{n}.vmsnap") for n in "ABC")
        ra = snap(vm.qmp_path, a)
        rb = snap(vm.qmp_path, b, "--thin", "--cipher", "xchacha20-poly1305")
        for n, r in (("A", ra), ("B", rb)):
            log(f"{n}: {r['archive-bytes']} bytes, method {r['method']}, pause {r['pause'] * 1000:.1f} ms")
            check(r["memory-paged"], f"{n}: memory stored as pages")
        p = snap(vm.qmp_path, c, "--thin", "--encrypt", k2, check_ok=False)
        one_line_failure(p, ["a thin archive uses its parent's key", id1, id2])
        check(not os.path.exists(c), "no archive C")
        check(vm.status() == "running", "the VM runs on after the refused snapshot")
        vm.close()

        for path in (a, b):
            info = vmtest.vmsnap("info", path, "--json", json_out=True)
            check(info["encrypted"] and info["key_id"] == id1 and info["sealed"], f"info without a key: {info}")
            check(info["streams"] == [], "no stream names without the key")
        info = vmtest.vmsnap("info", b, "--json", json_out=True)
        check(info["cipher"] == "xchacha20-poly1305", f"B sealed with the cipher --cipher named: {info['cipher']}")
        info = vmtest.vmsnap("info", a, "--json", "--key", k1, json_out=True)
        check("ram/mem" in [s["name"] for s in info["streams"]], "with the key: the streams")
        with open(a, "rb") as f:
            data = f.read()
        words = [pat(1, i).to_bytes(8, "little") + pat(1, i + 1).to_bytes(8, "little")
                 for i in range(0, (FILL << 20) // 8, (FILL << 20) // 64)]
        check(not any(w in data for w in words), "no pattern word in the clear in the archive")
        vmtest.vmsnap("verify", a, "--key", k1)

        v = resume(a, d, "lazy-A", boot_id, ["--key", k1])
        check(v.info.get("lazy") is True, f"A resumed lazily: {v.info}")
        v.close()
        os.environ["VMSNAP_KEY_FILE"] = k1
        try:
            v = resume(b, d, "lazy-B", boot_id)
            v.close()
        finally:
            del os.environ["VMSNAP_KEY_FILE"]

        bad = os.path.join(d, "bad.vmsnap")
        shutil.copy(a, bad)
        with open(bad, "r+b") as f:   # RAM pages are the first blocks stored: a quarter in is sealed RAM
            off = len(data) // 4
            f.seek(off)
            x = f.read(1)
            f.seek(off)
            f.write(bytes([x[0] ^ 0x01]))
        p = vmtest.vmsnap("verify", bad, "--key", k1, check=False)
        out = (p.stdout + p.stderr).strip()
        log(f"verify of the damaged copy: rc {p.returncode}: {out[:300]}")
        check(p.returncode == 1 and "ram/mem" in out, "verify names the RAM stream")
        p = vmtest.vmsnap("boot", bad, "--detach", "--eager", "--key", k1, "--qmp", os.path.join(d, "bad.qmp"),
                          check=False, timeout=180)
        log(f"eager boot of the damaged copy: rc {p.returncode}: {p.stderr.strip()[:300]}")
        check(p.returncode == 1 and "ram/mem" in p.stderr, "the eager resume fails naming the RAM stream")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
