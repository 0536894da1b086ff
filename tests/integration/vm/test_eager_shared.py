"""An eager resume of an archive damaged in a stored block that two RAM entries share (dedup) fails at once, plain
and encrypted: exit 1, one "vmsnap: " line naming the RAM stream and the block, and no VM left behind.

The damage is early in RAM, so the reassembled stream breaks off before its first write: QEMU is left an empty pipe
whose writer is gone, and neither QEMU 7.2 nor 10 ever begins such a load. boot used to wait for it until its own
600 s timeout.

The shared block is found without parsing the index (sealed in an encrypted archive): a scratch copy gets one byte
flipped every 4 KiB of its first half, and `verify` names each damaged entry with its stored bytes' file offset; an
offset named by two entries of ram/mem is a shared block. The damaged copy then has one byte flipped in it only."""
import os
import re
import shutil
import signal
import subprocess
import time

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest

PROBLEM = re.compile(r"stream '([^']+)' block (\d+) \(offset \d+\): .* at file offset (\d+)")


def flip(path, offsets):
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            x = f.read(1)
            f.seek(off)
            f.write(bytes([x[0] ^ 0x01]))


def problems(path, key):
    """verify's problems as (stream, block, file offset)."""
    p = vmtest.vmsnap("verify", path, *key, check=False)
    return [(m[1], int(m[2]), int(m[3])) for m in PROBLEM.finditer(p.stdout + p.stderr)]


def sharers(found):
    """{file offset: [blocks of ram/mem]} for stored bytes that two ram/mem entries or more refer to."""
    by_off = {}
    for stream, block, off in found:
        if stream == "ram/mem":
            by_off.setdefault(off, []).append(block)
    return {o: sorted(b) for o, b in by_off.items() if len(b) > 1}


def shared_block(arc, d, key):
    """The file offset of the ram/mem block shared by two entries that comes first in RAM, and its blocks."""
    scratch = os.path.join(d, "scratch.vmsnap")
    shutil.copy(arc, scratch)
    size = os.path.getsize(scratch)
    flip(scratch, range(4096, size // 2, 4096))
    shared = sharers(problems(scratch, key))
    os.unlink(scratch)
    check(shared, f"{arc}: some stored RAM block is shared by two entries")
    off = min(shared, key=lambda o: shared[o][0])
    return off, shared[off]


def kill_leftovers(marker):
    """After a boot that had to be killed: every process whose command line names this test's QMP path."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def eager_boot(bad, d, key):
    qmp = os.path.join(d, "bad.qmp")
    cmd = [vmtest.vmsnap_path(), "boot", bad, "--detach", "--eager", "--qmp", qmp, *key]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        kill_leftovers(qmp)
        raise vmtest.TestFailure(f"eager boot of {bad} still waiting after 90 s")
    log(f"eager boot: rc {p.returncode} in {time.monotonic() - t0:.2f} s: {p.stderr.strip()[:300]}")
    check(not os.path.exists(qmp), "no VM left behind (its QMP socket is gone)")
    return p


def check_case(name, arc, d, key):
    off, blocks = shared_block(arc, d, key)
    log(f"{name}: stored bytes at file offset {off} are ram/mem blocks {blocks}")
    bad = os.path.join(d, f"bad-{name}.vmsnap")
    shutil.copy(arc, bad)
    flip(bad, [off + 16])
    found = problems(bad, key)
    check(sorted(b for s, b, o in found if s == "ram/mem" and o == off) == blocks and len(found) == len(blocks),
          f"{name}: verify names exactly the entries sharing the damaged bytes: {found}")
    p = eager_boot(bad, d, key)
    err = p.stderr.strip()
    check(p.returncode == 1, f"{name}: exit status 1, got {p.returncode}")
    check(err.startswith("vmsnap: ") and "\n" not in err, f"{name}: one 'vmsnap: ' line: {err!r}")
    check("stream 'ram/mem' block " in err and f"file offset {off}" in err,
          f"{name}: the message names the RAM stream and the damaged block: {err!r}")
    os.unlink(bad)


def test():
    d = tmpdir()
    try:
        k = os.path.join(d, "k.key")
        vmtest.vmsnap("keygen", "-o", k)
        vm = Booted(base_archive(d, 16), d, "v", extra=guest_args(), args=["--ram", "128M"])
        vm.agent.wait_ready(120)
        plain, sealed = os.path.join(d, "plain.vmsnap"), os.path.join(d, "sealed.vmsnap")
        for arc, args in ((plain, ()), (sealed, ("--encrypt", k))):
            r = snap(vm.qmp_path, arc, *args)
            check(r["memory-paged"], f"{arc}: memory stored as pages")
        vm.close()
        check_case("plain", plain, d, [])
        check_case("encrypted", sealed, d, ["--key", k])
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
