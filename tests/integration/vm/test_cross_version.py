"""A host upgraded from QEMU 7.2 to 10: snapshots resume through their recorded, versioned machine type.

1. A cold boot on 7.2 records the machine type it ran, versioned (`pc-i440fx-7.2`, not the alias `pc`), in the
   archive's config (`info --json`).
2. That snapshot resumes on QEMU 10, lazily and with --eager: same boot id, heartbeat continuing from the snapshot,
   RAM pattern intact. QEMU 10's machine list is asked once: the second resume reuses the cached list.
3. When QEMU refuses the stream anyway (here: a device the snapshot lacks), vmsnap's error carries QEMU's words.
4. A snapshot taken on QEMU 10 (`pc-i440fx-10.0`) is refused by 7.2 before QEMU starts, in one line naming the
   recorded type and QEMU version, the local QEMU and its version, and the types of that family it has.

Needs QEMU 10 from `scripts/qemu10` (cached in ~/.cache/vmsnap/qemu-10) and a QEMU 7.x first in PATH."""
import glob
import os
import shutil
import subprocess
import tempfile
import time

from vmsnaptest import Booted, base_archive, check, check_failed_cleanly, guest_args, log, snap, tmpdir, vmtest

FILL = 32


def qemu_version(q):
    out = subprocess.run([q, "--version"], stdout=subprocess.PIPE, text=True, timeout=30).stdout
    return out.split("version ", 1)[1].split()[0]


def config(path):
    return vmtest.vmsnap("info", path, "--json", json_out=True)["config"]


def snap_on(vm, out):
    """Snapshot with the guest's pattern and the heartbeat counter at the snapshot instant."""
    t0 = time.monotonic()
    res = snap(vm.qmp_path, out)
    check(vm.status() == "running", f"running after the snapshot: {vm.status()}")
    vm.agent.wait_heartbeats(1)
    beat = vm.agent.hb_stats(since=t0).first
    log(f"snap {out}: {res['method']}, {res['archive-bytes']} bytes, heartbeat at the snapshot {beat[1]}")
    return beat[1]


def resume_on(q, path, d, name, boot_id, snap_hb, args=()):
    v = Booted(path, d, name, args=["--qemu", q, *args])
    a = v.agent
    check(v.info["resumed"], f"{name}: boot says it resumed")
    check(a.wait_ready(60) == boot_id, f"{name}: resumed, not rebooted (same boot id)")
    beat = a.wait_heartbeats(3)
    check(snap_hb <= beat[1] < snap_hb + 300, f"{name}: heartbeat continues from the snapshot ({beat[1]} vs {snap_hb})")
    a.cmd("verify seed=3")
    st = v.qmp("query-version")["qemu"]
    log(f"{name}: lazy={v.info['lazy']} on QEMU {st['major']}.{st['minor']}.{st['micro']}, heartbeat {beat[1]}, "
        f"start-to-running {v.info['start-to-running'] * 1000:.0f} ms")
    return v, st["major"]


def test():
    vmtest.skip_on_qemu((8,), "starts QEMU 7.2 and 10 itself: it runs once, in the pass on 7.2")
    q10 = os.path.join(vmtest.CACHE, "qemu-10", "bin", "qemu-system-x86_64")
    q72 = shutil.which("qemu-system-x86_64")
    if not os.access(q10, os.X_OK):
        vmtest.skip(f"QEMU 10 not found at {q10} (run scripts/qemu10)")
    if not q72 or not qemu_version(q72).startswith("7."):
        vmtest.skip("qemu-system-x86_64 in PATH is not QEMU 7.x")
    v72, v10 = qemu_version(q72), qemu_version(q10)
    log(f"QEMU {v72} at {q72}, QEMU {v10} at {q10}")
    d = tmpdir()
    # A cache of our own: the machine list of each QEMU is asked once and then read from it.
    cache = tempfile.mkdtemp(prefix="vmsnap-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    try:
        base = base_archive(d, disk_mib=16)

        # 1. cold boot on 7.2, snapshot: the versioned machine type is recorded
        vm = Booted(base, d, "a", extra=guest_args(), args=["--ram", "256M", "--qemu", q72])
        boot_id = vm.agent.wait_ready(120)
        vm.agent.cmd(f"fill {FILL} seed=3")
        s72 = os.path.join(d, "s72.vmsnap")
        hb72 = snap_on(vm, s72)
        vm.close()
        c = config(s72)
        log(f"s72 config: machine {c.get('machine')!r}, qemu-version {c.get('qemu-version')!r}")
        check(c.get("machine") == "pc-i440fx-" + ".".join(v72.split(".")[:2]),
              f"the concrete machine type of QEMU {v72} is recorded: {c.get('machine')!r}")
        check(c.get("qemu-version") == v72, f"the QEMU version is recorded: {c.get('qemu-version')!r}")

        # 2. resumed on QEMU 10, lazily then eagerly; its machine list asked once
        v, major = resume_on(q10, s72, d, "lazy", boot_id, hb72)
        check(major == 10, "the resumed VM runs on QEMU 10")
        check(v.info["lazy"], "resumed lazily")
        v.close()
        lists = glob.glob(os.path.join(cache, "vmsnap", "probes", "machines-*.json"))
        check(len(lists) == 1, f"one cached machine list (QEMU 10's): {lists}")
        first = os.stat(lists[0])
        check(first.st_mode & 0o777 == 0o600, f"cache file mode {first.st_mode & 0o777:o}")
        check(os.stat(os.path.dirname(lists[0])).st_mode & 0o777 == 0o700, "cache directory 0700")
        v, _ = resume_on(q10, s72, d, "eager", boot_id, hb72, args=["--eager"])
        check(not v.info["lazy"], "resumed eagerly")
        v.close()
        again = os.stat(lists[0])
        check((again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns),
              "the second resume used the cached machine list (no new probe)")

        # QEMU refusing the stream (a device the snapshot does not have): its own words are in vmsnap's error,
        # whether it exits (7.2) or stays up to be asked (10, exit-on-error off)
        for q in (q72, q10):
            qmp = os.path.join(d, "rng.qmp")
            p = vmtest.vmsnap("boot", s72, "--detach", "--qmp", qmp, "--qemu", q, "--", "-device", "virtio-rng-pci",
                              check=False)
            check_failed_cleanly(p, ["Unknown savevm section or instance '0000:00:02.0/virtio-blk'"],
                                 os.path.join(d, "nothing-written"))
            check(not os.path.exists(qmp), "QEMU is gone and its socket removed")

        # 3. a QEMU 10 snapshot is refused by 7.2 before anything starts
        vm = Booted(base, d, "b", extra=guest_args(), args=["--ram", "256M", "--qemu", q10])
        vm.agent.wait_ready(120)
        s10 = os.path.join(d, "s10.vmsnap")
        snap_on(vm, s10)
        vm.close()
        m10 = "pc-i440fx-" + ".".join(v10.split(".")[:2])
        check(config(s10).get("machine") == m10, f"QEMU 10 snapshot records {m10}")
        qmp = os.path.join(d, "refused.qmp")
        p = vmtest.vmsnap("boot", s10, "--detach", "--qmp", qmp, "--qemu", q72, check=False)
        m72 = "pc-i440fx-" + ".".join(v72.split(".")[:2])
        check_failed_cleanly(p, [m10, v10, v72, q72, m72], os.path.join(d, "nothing-written"))
        check(not os.path.exists(qmp), "no QEMU started (its QMP socket was never made)")
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


vmtest.main(test)
