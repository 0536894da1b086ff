"""A signed snapshot (version 2: chunk table) resumed lazily with --trusted-keys (256 MiB guest, 64 MiB pattern,
every chunk the verifying source reads counted through VMSNAP_TEST_VERIFIED_LOG).

1. The VM runs once a small fraction of the archive was read (under half; the header, .sig and .sums, device state
   and the pages touched at resume), boot --json names the signer, and the guest's whole pattern verifies, read
   through checked chunks.
2. One pattern byte of the RAM stream flipped after signing (mtime put back: the cheap check cannot see it): the VM
   starts, but the page read of that chunk is refused naming the chunk and its bytes, before the block checksum
   sees anything; the guest never reports its pattern good, QEMU stops and boot exits 1."""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cache_boot import source_bytes as read_bytes  # noqa: E402  (the same "offset length" log lines)
from test_lazy_archive import Foreground, verify_refused  # noqa: E402
from test_lazy_boot import find_word_pair  # noqa: E402

FILL = 64
MiB = 1 << 20


def test():
    d = tmpdir()
    try:
        vm = Booted(base_archive(d, disk_mib=16), d, "v", extra=guest_args(), args=["--ram", "256M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd(f"fill {FILL} seed=1")
        arc = os.path.join(d, "A.vmsnap")
        snap(vm.qmp_path, arc)
        vm.close()
        key = os.path.join(d, "team.key")
        kid = vmtest.vmsnap("keygen", "--sign", "-o", key).stdout.split()[3]
        vmtest.vmsnap("sign", arc, "--key", key)
        with open(arc + ".sig") as f:
            check(f.read().startswith("vmsnap-signature-2 "), "sign writes a version-2 signature")
        size = os.path.getsize(arc)
        check(os.path.getsize(arc + ".sums") == 48 + 32 * -(-size // (256 << 10)), "one 32-byte sum per 256 KiB")
        trusted = ["--trusted-keys", key + ".pub", "--prefetch=none"]

        # 1. lazy, checked
        rlog = os.path.join(d, "read.log")
        os.environ["VMSNAP_TEST_VERIFIED_LOG"] = rlog
        try:
            fg = Foreground(arc, d, "ok", trusted)
        finally:
            del os.environ["VMSNAP_TEST_VERIFIED_LOG"]
        until_running = read_bytes(rlog)
        log(f"running after {until_running} bytes read through the chunk table of the {size}-byte archive "
            f"({100 * until_running / size:.1f} %); start-to-running {fg.info['start-to-running'] * 1000:.0f} ms")
        signers = [(x["archive"], x["key-id"]) for x in fg.info.get("signed-by", [])]
        check(signers == [(arc, kid)], f"boot --json names the signer: {signers}")
        check(until_running * 2 < size, f"under half the archive read before the VM runs ({until_running} of {size})")
        fg.agent.cmd(f"verify seed=1", timeout=120)
        after = read_bytes(rlog)
        check(after - until_running >= FILL * MiB // 2, f"the pattern was read through the table ({after} bytes)")
        rc, err = fg.stop()
        check(rc == 0, f"boot ends cleanly after SIGTERM: rc {rc}: {err}")

        # 2. a RAM byte changed after signing
        bad = os.path.join(d, "B.vmsnap")
        for ext in ("", ".sig", ".sums"):
            shutil.copy(arc + ext, bad + ext)
        off = find_word_pair(bad, 1, (FILL * MiB) // 8 // 2) + 100
        st = os.stat(bad)
        with open(bad, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0xFF]))
        os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
        k = off // (256 << 10)
        fg = Foreground(bad, d, "bad", trusted)
        err = verify_refused(fg, "flipped after signing")
        want = f"chunk {k} (bytes {k << 18}..{(k + 1) << 18})"
        check(want in err and bad in err and "checksum" not in err, f"the chunk table caught it, naming {want}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
