"""The snapshot methods bench/run compares. Each one snapshots a running test guest and later restores it.

A method has a `family`: the kind of source VM it needs. 'qemu' is a plain QEMU started by the harness with a qcow2
disk (methods 3 and 4 need nothing else; savevm needs the qcow2); 'vmsnap' is a VM started by `vmsnap boot` from a
packed empty disk (vmsnap snapshots disks and memory of such a VM at one instant). Every VM of one row holds the same
RAM size and the same memory content (the agent's mixed fill, same seed).

snapshot(src, work) -> dict with: return_s (command start to return), durable_s (start to the snapshot fsynced on
disk), qemu_downtime_ms (None when QEMU reports none), tool_pause_ms (what the tool itself says, if it does),
size_bytes (on disk), stream_bytes (raw migration stream, if known), after (a function to call after the
heartbeats were read: e.g. resume), note.
restores: the ways a method's snapshot is restored, [(name, title)], the first one its default; restore(snap, work,
ram_mib, how) -> a Restored: the VM, its agent, start_to_running_s (restore start until QEMU says running).
"""
import json
import os
import subprocess
import time

import vmsnaptest  # tests/integration/vm: Booted, guest_args
import vmtest
from vmtest import TestFailure


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _allocated(path):
    return os.stat(path).st_blocks * 512


def _wait_migration(qmp, poll=0.01, timeout=3600):
    """Poll query-migrate until it is no longer active; return its last answer (raises on failure)."""
    deadline = time.monotonic() + timeout
    while True:
        r = qmp.cmd("query-migrate")
        st = r.get("status")
        if st == "completed":
            return r
        if st in ("failed", "cancelled"):
            raise TestFailure(f"migration {st}: {r.get('error-desc', '')}")
        if time.monotonic() > deadline:
            raise TestFailure(f"migration still {st} after {timeout}s")
        time.sleep(poll)


def _wait_running(qmp, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        st = qmp.status()
        if st == "running":
            return
        if time.monotonic() > deadline:
            raise TestFailure(f"VM still {st} after {timeout}s")
        time.sleep(0.005)


# ---- sources ----------------------------------------------------------------------------------------------------

class QemuSource:
    """Plain QEMU (vmtest.VM) with a qcow2 disk named node 'disk0'."""
    family = "qemu"

    def __init__(self, ram_mib, work):
        self.ram_mib, self.work = ram_mib, work
        self.disk = os.path.join(work, "disk.qcow2")
        vmtest.make_disk(self.disk, "64M", fmt="qcow2")
        self.vm = vmtest.VM(mem=f"{ram_mib}M", disks=[self.spec(self.disk)], name="bench-src")
        self.agent = self.vm.agent()

    @staticmethod
    def spec(disk):
        return {"file": disk, "format": "qcow2", "opts": ["node-name=disk0"]}

    def status(self):
        return self.vm.qmp.status()

    def close(self):
        self.vm.close()


class VmsnapSource:
    """A VM started by `vmsnap boot BASE --detach` (its disk served by vmsnap over NBD with an overlay)."""
    family = "vmsnap"

    def __init__(self, ram_mib, work, base):
        self.ram_mib, self.work = ram_mib, work
        self.booted = boot(base, work, f"src-{ram_mib}-{time.monotonic_ns()}", args=["--ram", f"{ram_mib}M"],
                           extra=vmsnaptest.guest_args())
        self.agent = self.booted.agent
        self.agent.wait_ready(180)

    def status(self):
        return self.booted.status()

    def close(self):
        self.booted.close()


def boot(archive, work, name, args=(), extra=()):
    """`vmsnap boot ARCHIVE --detach` (vmsnaptest.Booted); returns it with t_start/t_return around the command."""
    t0 = time.monotonic()
    b = vmsnaptest.Booted(archive, work, name, extra=extra, args=args)
    b.t_start, b.t_return = t0, time.monotonic()
    return b


class Restored:
    def __init__(self, agent, start_to_running_s, close, status, t_start, info=None):
        self.agent, self.start_to_running_s, self.close, self.status = agent, start_to_running_s, close, status
        self.t_start, self.info = t_start, info or {}


# ---- methods ----------------------------------------------------------------------------------------------------

class Method:
    name = family = title = ""
    restore_how = ""
    restores = []

    def available(self):
        return True, ""


class Seed000(Method):
    """seeds/000: stop, migrate to `exec:cat > TMP` at QEMU's default bandwidth, poll query-migrate, `lz4 -1 TMP`,
    cont. The method does not fsync; we fsync the .lz4 after it returns and count that in durable_s. Restore: QEMU
    with `-incoming defer`, then migrate-incoming `exec:lz4 -dc FILE.lz4` (decompression streamed into QEMU), cont."""
    name, family, title = "seed000", "qemu", "seed-000 stop+exec:cat+lz4"
    restore_how = "QEMU -incoming defer; migrate-incoming exec:lz4 -dc FILE; cont"
    restores = [("seed000-incoming", "seed-000 `-incoming` (lz4 -dc)")]

    def available(self):
        import shutil
        return (shutil.which("lz4") is not None, "lz4 not installed")

    def snapshot(self, src, work):
        q = src.vm.qmp
        tmp = os.path.join(work, "seed000.mig")
        out = tmp + ".lz4"
        t0 = time.monotonic()
        q.cmd("stop")
        q.cmd("migrate", uri=f"exec:cat > {tmp}")  # on purpose: this is the baseline's own command
        r = _wait_migration(q)
        subprocess.run(["lz4", "-1", "-q", "-f", tmp, out], check=True)
        stream = os.path.getsize(tmp)
        os.unlink(tmp)
        q.cmd("cont")
        t_ret = time.monotonic()
        _fsync_path(out)
        t_dur = time.monotonic()
        return {"return_s": t_ret - t0, "durable_s": t_dur - t0, "qemu_downtime_ms": r.get("downtime"),
                "tool_pause_ms": None, "size_bytes": _allocated(out), "stream_bytes": stream, "file": out,
                "disk": src.disk, "note": "fsync after return (the method has none)"}

    def restore(self, snap, work, ram_mib, how=None):
        t0 = time.monotonic()
        vm = vmtest.VM(mem=f"{ram_mib}M", disks=[QemuSource.spec(snap["disk"])], extra=["-incoming", "defer"],
                       name="bench-r-seed")
        try:
            q = vm.qmp
            q.cmd("migrate-incoming", uri=f"exec:lz4 -dc {snap['file']}")
            _wait_migration(q)
            if q.status() != "running":
                q.cmd("cont")
            _wait_running(q)
        except BaseException:
            vm.close()
            raise
        return Restored(vm._agent, time.monotonic() - t0, vm.close, q.status, t0)


class SaveVM(Method):
    """QEMU's internal snapshot: the snapshot-save job (VM state and disk snapshot into the qcow2), then restore with
    `-loadvm TAG` on a fresh QEMU. QEMU stops the guest for the whole save. durable_s adds an fsync of the qcow2."""
    name, family, title = "savevm", "qemu", "QEMU savevm (snapshot-save)"
    restore_how = "QEMU -loadvm TAG on the qcow2"
    restores = [("savevm-loadvm", "QEMU `-loadvm`")]

    def snapshot(self, src, work):
        q = src.vm.qmp
        before = _allocated(src.disk)
        tag = f"bench{int(time.monotonic() * 1000)}"
        t0 = time.monotonic()
        q.cmd("snapshot-save", **{"job-id": "bsave", "tag": tag, "vmstate": "disk0", "devices": ["disk0"]})
        while True:
            jobs = [j for j in q.cmd("query-jobs") if j["id"] == "bsave"]
            if jobs and jobs[0]["status"] == "concluded":
                break
            time.sleep(0.01)
        t_ret = time.monotonic()
        q.cmd("job-dismiss", id="bsave")
        if jobs[0].get("error"):
            raise TestFailure(f"snapshot-save: {jobs[0]['error']}")
        _fsync_path(src.disk)
        t_dur = time.monotonic()
        return {"return_s": t_ret - t0, "durable_s": t_dur - t0, "qemu_downtime_ms": None, "tool_pause_ms": None,
                "size_bytes": _allocated(src.disk) - before, "stream_bytes": None, "tag": tag, "disk": src.disk,
                "note": "size: qcow2 growth"}

    def restore(self, snap, work, ram_mib, how=None):
        t0 = time.monotonic()
        vm = vmtest.VM(mem=f"{ram_mib}M", disks=[QemuSource.spec(snap["disk"])], extra=["-loadvm", snap["tag"]],
                       name="bench-r-savevm")
        try:
            _wait_running(vm.qmp)
        except BaseException:
            vm.close()
            raise
        return Restored(vm._agent, time.monotonic() - t0, vm.close, vm.qmp.status, t0)


class VmsnapSnap(Method):
    """`vmsnap snap --mode MODE` of a VM started by `vmsnap boot`; restore with `vmsnap boot ARCHIVE --detach`,
    which returns once the VM runs: by default lazily (RAM pages served from the archive over FUSE on first touch,
    background prefetch), with --eager by streaming all of RAM into QEMU first. vmsnap writes a temp file, fsyncs,
    renames and fsyncs the directory before it returns, so durable_s == return_s. The live snapshot is restored both
    ways; the stop snapshot (same kind of archive) only the default way."""
    family = "vmsnap"
    restore_how = "vmsnap boot ARCHIVE --detach [--eager]"
    BOOT_ARGS = {"vmsnap-lazy": [], "vmsnap-eager": ["--eager"]}

    def __init__(self, mode):
        self.mode = mode
        self.name = "vmsnap-" + mode
        self.title = f"vmsnap snap --mode {mode}"
        self.restores = [("vmsnap-lazy", "vmsnap boot (lazy, default)"), ("vmsnap-eager", "vmsnap boot --eager")]
        if mode != "live":
            self.restores = [(f"vmsnap-{mode}-lazy", f"vmsnap boot (lazy) of --mode {mode}")]

    def available(self):
        exe = os.environ.get("VMSNAP")
        if not exe or not os.access(exe, os.X_OK):
            return False, "vmsnap binary not built"
        for c in ("snap", "boot", "pack"):
            if subprocess.run([exe, "help", c], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
                return False, f"'vmsnap {c}' does not exist in this build yet"
        return True, ""

    def snapshot(self, src, work):
        out = os.path.join(work, f"{self.name}.vmsnap")
        t0 = time.monotonic()
        p = vmtest.vmsnap("snap", "--qmp", src.booted.qmp_path, "-o", out, "--json", "--quiet", "--mode", self.mode,
                          timeout=3600)
        t_ret = time.monotonic()
        res = json.loads(p.stdout)
        dt = res.get("qemu-downtime")
        ph = res.get("phases") or {}
        phases = {f"ph_{k.replace('-', '_')}_ms": ph[k] * 1000 for k in ("stop", "freeze", "migrate", "resume-event",
                                                                           "qemu-setup-time")
                  if isinstance(ph.get(k), (int, float))}
        return {**phases, "return_s": t_ret - t0, "durable_s": t_ret - t0,
                "qemu_downtime_ms": dt * 1000 if isinstance(dt, (int, float)) and dt >= 0 else None,
                "tool_pause_ms": res.get("pause", 0) * 1000, "size_bytes": _allocated(out),
                "stream_bytes": res.get("memory-bytes"), "file": out,
                "note": res.get("method", "") + (f" ({res['fallback-reason']})" if res.get("fallback-reason") else "")}

    def restore(self, snap, work, ram_mib, how=None):
        args = self.BOOT_ARGS.get(how, [])
        b = boot(snap["file"], work, f"r-{self.mode}-{time.monotonic_ns()}", args=args)
        lazy = bool(b.info.get("lazy"))
        if lazy != ("--eager" not in args):
            b.close()
            raise TestFailure(f"vmsnap boot {' '.join(args)} resumed {'lazily' if lazy else 'eagerly'}: {b.info}")
        return Restored(b.agent, b.t_return - b.t_start, b.close, b.status, b.t_start, b.info)


ALL = {m.name: m for m in (VmsnapSnap("live"), VmsnapSnap("stop"), Seed000(), SaveVM())}
ORDER = ["vmsnap-live", "vmsnap-stop", "seed000", "savevm"]
QUICK = ["vmsnap-live", "seed000", "savevm"]
