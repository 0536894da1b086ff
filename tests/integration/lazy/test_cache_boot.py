"""The local block cache shared by boots of one archive (256 MiB guest, 32 MiB pattern, VMSNAP_CACHE=on for a local
file, every source read counted through VMSNAP_TEST_SOURCE_LOG).

1. Two lazy boots of the same snapshot, one cache directory, each guest checking its whole pattern: the second
   boot reads a small fraction of what the first read from the archive, the rest are cache hits.
2. A third boot with --prefetch all and an empty cache: once prefetch.json says done, the guest checks its whole
   pattern and its disk without a single byte more read from the archive.
3. Two boots at once on an empty cache, both guests checking their pattern at the same time: both pass, and the
   cache holds only whole entries (no temp file left, every file as long as its name says)."""
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, boot_filled, check, log, snap, tmpdir, vmtest  # noqa: E402

FILL = 32
MiB = 1 << 20


def source_bytes(path):
    """Bytes read from the archive so far: the sum of the logged read lengths."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(int(line.split()[1]) for line in f if line.strip())


def cached_boot(arc, d, name, cache, srclog, args=()):
    os.environ.update(VMSNAP_CACHE="on", VMSNAP_CACHE_DIR=cache, VMSNAP_TEST_SOURCE_LOG=srclog)
    try:
        return Booted(arc, d, name, args=list(args))
    finally:
        for k in ("VMSNAP_CACHE", "VMSNAP_CACHE_DIR", "VMSNAP_TEST_SOURCE_LOG"):
            del os.environ[k]


def wait_prefetched(rundir, timeout=120):
    path = os.path.join(rundir, "prefetch.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        time.sleep(0.1)
    raise vmtest.TestFailure(f"no {path} after {timeout} s")


def harness_cache_unmoved():
    """VMSNAP_CACHE is vmsnap's block cache switch (set to "on" below): the harness's own cache (the guest, QEMU 10)
    is VMSNAP_TEST_CACHE and must stay where it is."""
    p = subprocess.run([sys.executable, "-c", "import vmtest; print(vmtest.CACHE)"], check=True, text=True,
                       stdout=subprocess.PIPE, env=dict(os.environ, VMSNAP_CACHE="on",
                                                        PYTHONPATH=os.path.dirname(vmtest.__file__)))
    check(p.stdout.strip() == vmtest.CACHE, f"VMSNAP_CACHE=on leaves the harness cache at {vmtest.CACHE}: "
          f"{p.stdout.strip()}")


def test():
    harness_cache_unmoved()
    d = tmpdir()
    try:
        vm = boot_filled(d, "src", FILL, 3)
        vm.agent.cmd("rawwrite /dev/vda 0 64 seed=4")
        arc = os.path.join(d, "A.vmsnap")
        snap(vm.qmp_path, arc)
        vm.close()
        size = os.path.getsize(arc)

        # 1. two boots, one cache
        cache = os.path.join(d, "cache")
        read = []
        for i in (1, 2):
            srclog = os.path.join(d, f"src{i}.log")
            v = cached_boot(arc, d, f"c{i}", cache, srclog, ["--prefetch=none"])
            v.agent.cmd("verify seed=3")
            v.agent.cmd("rawverify /dev/vda 0 64 seed=4")
            info = v.info.get("cache")
            v.close()
            read.append(source_bytes(srclog))
            log(f"boot {i}: {read[-1]} bytes read from the {size}-byte archive; until running: {info}")
            check(info is not None, f"boot {i} --json reports the cache: {v.info}")
        check(read[0] >= FILL * MiB // 2, f"the first boot fetched the pattern it checked ({read[0]} bytes)")
        check(read[1] * 20 < read[0], f"the second boot read under 5 % of what the first read: {read}")
        mode = stat.S_IMODE(os.stat(cache).st_mode)
        check(mode == 0o700, f"cache directory is 0700 ({mode:o})")
        entries = [os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs if not f.startswith(".")]
        check(entries and all(stat.S_IMODE(os.stat(e).st_mode) == 0o600 for e in entries), "entries are 0600")

        # 2. --prefetch all: afterwards the VM reads nothing from the archive
        srclog = os.path.join(d, "src3.log")
        v = cached_boot(arc, d, "all", os.path.join(d, "cache-all"), srclog, ["--prefetch=all"])
        done = wait_prefetched(v.info["rundir"])
        check(done.get("state") == "done", f"prefetch done: {done}")
        before = source_bytes(srclog)
        v.agent.cmd("verify seed=3")
        v.agent.cmd("rawverify /dev/vda 0 64 seed=4")
        after = source_bytes(srclog)
        log(f"--prefetch all: {done}; {before} bytes read before the checks, {after} after")
        check(before >= FILL * MiB // 2, "the prefetch fetched the pattern")
        check(after == before, f"no byte read from the archive after the prefetch ({after - before} were)")
        v.close()

        # 3. two boots at once, one empty cache
        shared = os.path.join(d, "cache-shared")
        vms = [cached_boot(arc, d, f"con{i}", shared, os.path.join(d, f"con{i}.log"), ["--prefetch=none"])
               for i in (1, 2)]
        errors = []

        def check_guest(v):
            try:
                v.agent.cmd("verify seed=3", timeout=120)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=check_guest, args=(v,)) for v in vms]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for v in vms:
            v.close()
        check(not errors, f"both guests verified their pattern at once: {errors}")
        names = [(r, f) for r, _, fs in os.walk(shared) for f in fs]
        check(not [f for _, f in names if f.startswith(".tmp-")], "no temp entry left")
        for r, f in names:
            if f[0] in "bp" and f[1] == "-":
                length = int(f.split("-")[2], 16)
                check(os.path.getsize(os.path.join(r, f)) == 64 + length, f"entry {f} is whole")
        log(f"two boots at once: {len(names)} files in the shared cache, all whole")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
