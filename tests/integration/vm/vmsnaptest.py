"""Helpers shared by the vm tests: pack a base archive, boot/resume it with `vmsnap boot --detach`, stop it."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402
from vmtest import check, log  # noqa: E402,F401


class Booted:
    """A VM started by `vmsnap boot --detach`; close() makes sure its QEMU (and so its boot process) is gone."""

    def __init__(self, archive, d, name, extra=(), args=()):
        self.qmp_path = os.path.join(d, f"{name}.qmp")
        self.console = os.path.join(d, f"{name}.con")
        cmd = ["boot", archive, "--detach", "--json", "--qmp", self.qmp_path, "--console", self.console,
               *args]
        if extra:
            cmd += ["--", *extra]
        self.info = vmtest.vmsnap(*cmd, json_out=True, timeout=180)
        self.pid = self.info["qemu-pid"]
        _live.append(self)
        self.agent = vmtest.Agent(self.console).connect()

    def alive(self):
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def qmp(self, cmd, args=None):
        a = [cmd] + ([json.dumps(args)] if args else [])
        return vmtest.vmsnap("qmp", self.qmp_path, *a, json_out=True)

    def status(self):
        return self.qmp("query-status")["status"]

    def close(self):
        self.agent.close()
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self in _live:
            _live.remove(self)


_live = []


def _cleanup():
    for b in list(_live):
        b.close()


vmtest.atexit.register(_cleanup)


def guest_args():
    g = vmtest.guest()
    return ["-kernel", g.kernel, "-initrd", g.initrd, "-append", g.append]


def base_archive(d, disk_mib=64):
    """A packed, empty raw disk: what a user boots the test guest on."""
    raw = vmtest.make_disk(os.path.join(d, "disk.raw"), f"{disk_mib}M")
    out = os.path.join(d, "base.vmsnap")
    vmtest.vmsnap("pack", raw, "-o", out, "--quiet")
    return out


def private_file_ram(d, mib):
    """QEMU args making RAM a private mapping of a regular file: userfaultfd cannot write-protect it, so QEMU refuses
    background-snapshot and `snap` falls back to precopy."""
    ramfile = os.path.join(d, "ram.img")
    with open(ramfile, "wb") as f:
        f.truncate(mib << 20)
    return ["-object", f"memory-backend-file,id=mem,size={mib}M,mem-path={ramfile},share=off",
            "-machine", "memory-backend=mem"]


def boot_filled(d, name, fill_mib, seed, ram="256M"):
    """The test guest booted by `vmsnap boot` on a fresh base archive, fill_mib MiB of its RAM filled, beating."""
    vm = Booted(base_archive(d), d, name, extra=guest_args(), args=["--ram", ram])
    vm.agent.wait_ready(120)
    vm.agent.cmd(f"fill {fill_mib} seed={seed}")
    vm.agent.wait_heartbeats(10)
    return vm


def snap(qmp_path, out, *args, check_ok=True):
    p = vmtest.vmsnap("snap", "--qmp", qmp_path, "-o", out, "--json", *args, check=check_ok)
    return json.loads(p.stdout) if check_ok else p


def check_failed_cleanly(p, words, out):
    """CLI.md: exit 1, one 'vmsnap: ' line naming what failed, nothing under the output name."""
    err = p.stderr.strip()
    log(f"-> {p.returncode}: {err}")
    check(p.returncode == 1, f"exit status 1, got {p.returncode}")
    check(err.startswith("vmsnap: ") and "\n" not in err, f"one 'vmsnap: ' line: {err!r}")
    for w in words:
        check(w in err, f"message names {w!r}: {err!r}")
    check(not os.path.exists(out), f"nothing under {out}")
    return err


def tmpdir():
    return tempfile.mkdtemp(prefix="vmsnap-vmtest-")


def check_snap_failed(p, words, out, vm=None):
    """A failed snap: as check_failed_cleanly, no temp file beside the output either, and the VM (if given) running
    with the migration capabilities and max-bandwidth put back as they were."""
    check_failed_cleanly(p, words, out)
    check(not any(n.startswith(os.path.basename(out)) for n in os.listdir(os.path.dirname(out))),
          "no temp file left beside the output")
    if vm:
        check(vm.status() == "running", "VM running")
        caps = {c["capability"]: c["state"] for c in vm.qmp("query-migrate-capabilities")}
        check(not caps.get("background-snapshot") and not caps.get("pause-before-switchover"), f"caps put back {caps}")
        check(vm.qmp("query-migrate-parameters")["max-bandwidth"] == 134217728, "max-bandwidth put back")


class FullDir:
    """`with FullDir(d, "20m") as path`: a small tmpfs mounted at d/full for "output directory full" cases, unmounted
    on exit; path is None (the case is skipped, and logged) where this user may not mount one."""

    def __init__(self, d, size):
        self.path = os.path.join(d, "full")
        os.mkdir(self.path)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.path]).returncode != 0:
            log("SKIPPED the disk-full case: cannot mount a tmpfs here")
            self.path = None

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        if self.path:
            subprocess.run(["umount", self.path])


# ---- run state after a snapshot ----------------------------------------------------------------------------------

def qemu_resumes_background():
    """QEMU 7.2 resumes the VM of a background snapshot itself; QEMU >= 9.0 puts it back into the run state it had at
    `migrate` (paused: vmsnap stops it first), and vmsnap resumes it."""
    return vmtest.qemu_version() < (9,)


def timed_snap(qmp_path, out, *args):
    t0 = time.monotonic()
    res = snap(qmp_path, out, *args)
    return res, t0, time.monotonic()


def check_resumed(res, agent, status, t0, t1, want_by, live, what):
    """Right after the snapshot the VM runs (query-status via status()) and the guest's heartbeat goes on; the
    report says who resumed it and how the pause was measured. live: the pause is a small part of the snapshot."""
    log(f"{what}: method {res['method']}, pause {res['pause']}, resumed-by {res['resumed-by']}, "
        f"measured by {res['pause-measured-by']}, state {res['state-before']} -> {res['state-after']}, "
        f"total {res['total']:.3f} s (wall {t1 - t0:.3f} s)")
    check(status() == "running", f"{what}: query-status says running right after snap")
    check(res["state-before"] == "running" and res["state-after"] == "running",
          f"{what}: states before/after: {res['state-before']} -> {res['state-after']}")
    check(res["resumed-by"] == want_by, f"{what}: resumed by {want_by}, report says {res['resumed-by']}")
    check(res["pause-measured-by"] in ("qemu-events", "vmsnap-clock"), f"{what}: {res['pause-measured-by']}")
    p = res["pause"]
    check(isinstance(p, (int, float)) and 0 <= p <= res["total"], f"{what}: pause {p} within [0, total]")
    agent.wait_heartbeats(5, timeout=30)
    hb = agent.hb_stats(since=t0)
    check(hb.count > 5, f"{what}: heartbeats after the snapshot ({hb})")
    if live:
        # Generous bound: the guest ran while its memory was copied.
        check(hb.max_gap < 0.5 * (t1 - t0), f"{what}: longest heartbeat gap {hb.max_gap:.3f} s is well below the "
              f"snapshot's {t1 - t0:.3f} s")


def qemu_keeps_paused():
    """QEMU >= 9.0 puts a background snapshot's VM back into its state at `migrate`: a paused VM is captured that way
    and stays exactly 'paused'. Older QEMU needs a plain migration, after which it says 'postmigrate' (still paused,
    but QEMU refuses another migration until the VM has run)."""
    return vmtest.qemu_version() >= (9,)


def check_left_paused(res, status, agent, what):
    """A VM paused before the snapshot is not running after it, and the report says so (no pause of vmsnap's)."""
    log(f"{what}: method {res['method']}, resumed-by {res['resumed-by']}, pause {res['pause']}, "
        f"state {res['state-before']} -> {res['state-after']}")
    check(res["resumed-by"] == "left-paused-as-found" and res["pause"] is None, f"{what}: left paused: {res}")
    check(res["state-before"] == "paused", f"{what}: state before: {res['state-before']}")
    want = "paused" if qemu_keeps_paused() else "postmigrate"
    st = status()
    check(st == want and res["state-after"] == st, f"{what}: '{want}' after the snapshot, QEMU says '{st}'")
    seen = agent.hb_stats().count
    time.sleep(0.5)
    check(agent.hb_stats().count == seen, f"{what}: no heartbeat from a paused guest")
