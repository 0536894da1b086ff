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
