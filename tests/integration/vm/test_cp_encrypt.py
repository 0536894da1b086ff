"""A plain snapshot chain made encrypted with `vmsnap cp --encrypt` and resumed from the copy (the test guest,
128 MiB, 16 MiB of RAM pattern).

1. The guest booted from a plain base, snapshotted live: A (thick), then B (--thin, parent A).
2. `cp B --with-parents --encrypt K1` into another directory: A, then B, written anew and sealed with K1; no
   pattern word in the clear; the originals untouched.
3. The copy of B without a key, or with K2: one line naming the archive and K1's id, nothing started.
4. The copy of B resumed lazily with --key K1: the same boot id, the RAM pattern intact."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402
from test_encrypted import FILL, key_id, one_line_failure, pat, resume  # noqa: E402


def test():
    d = tmpdir()
    try:
        k1, k2 = os.path.join(d, "k1.key"), os.path.join(d, "k2.key")
        id1, id2 = key_id(k1), key_id(k2)
        vm = Booted(base_archive(d, 16), d, "v", extra=guest_args(), args=["--ram", "128M"])
        boot_id = vm.agent.wait_ready(120)
        vm.agent.cmd(f"fill {FILL} seed=1")
        a, b = os.path.join(d, "A.vmsnap"), os.path.join(d, "B.vmsnap")
        snap(vm.qmp_path, a)
        snap(vm.qmp_path, b, "--thin")
        vm.close()

        enc = os.path.join(d, "enc")
        os.mkdir(enc)
        ea, eb = os.path.join(enc, "A.vmsnap"), os.path.join(enc, "B.vmsnap")
        out = vmtest.vmsnap("cp", b, eb, "--with-parents", "--encrypt", k1, "--json", json_out=True, timeout=300)
        check([(x["dst"], x["key_id"]) for x in out["copied"]] == [(ea, id1), (eb, id1)],
              f"cp --encrypt --with-parents: A, then B, sealed with K1: {out}")
        for path in (ea, eb):
            info = vmtest.vmsnap("info", path, "--json", json_out=True)
            check(info["encrypted"] and info["key_id"] == id1 and info["sealed"], f"{path}: encrypted: {info}")
            check(os.stat(path).st_mode & 0o777 == 0o600, f"{path}: 0600 (it holds guest RAM)")
        with open(ea, "rb") as f:
            data = f.read()
        words = [pat(1, i).to_bytes(8, "little") + pat(1, i + 1).to_bytes(8, "little")
                 for i in range(0, (FILL << 20) // 8, (FILL << 20) // 64)]
        with open(a, "rb") as f:
            check(sum(w in f.read() for w in words) > 0, "the plain snapshot holds pattern words (the check can fail)")
        check(not any(w in data for w in words), "no pattern word in the clear in the copy")
        info = vmtest.vmsnap("info", b, "--json", json_out=True)
        check(not info["encrypted"], "the source is still plain")

        os.environ.pop("VMSNAP_KEY_FILE", None)
        p = vmtest.vmsnap("boot", eb, "--detach", "--qmp", os.path.join(d, "x.qmp"), check=False)
        one_line_failure(p, [f"archive {eb} is encrypted with key {id1}; pass --key"])
        p = vmtest.vmsnap("boot", eb, "--detach", "--key", k2, "--qmp", os.path.join(d, "x.qmp"), check=False)
        one_line_failure(p, [f"is encrypted with key {id1}", id2])

        v = resume(eb, d, "lazy-B", boot_id, ["--key", k1])
        check(v.info.get("lazy") is True, f"the copy of B resumed lazily: {v.info}")
        log(f"copy of B: start-to-running {v.info['start-to-running'] * 1000:.1f} ms")
        v.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
