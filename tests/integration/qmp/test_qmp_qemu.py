#!/usr/bin/env python3
"""QMP client and `vmsnap qmp` against a real QEMU (no guest kernel: the firmware runs).

Usage: test_qmp_qemu.py QMP_QEMU_PROGRAM   (env VMSNAP = the vmsnap binary)
QEMU is always killed: try/finally, SIGTERM turned into an exception, and PDEATHSIG as a last resort."""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VMSNAP = os.environ.get("VMSNAP", "vmsnap")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def vmsnap(*args):
    return subprocess.run([VMSNAP, *args], capture_output=True, text=True, timeout=60)


def cli_checks(sock, tmp):
    r = vmsnap("qmp", sock, "query-status")
    check(r.returncode == 0, f"vmsnap qmp query-status exits 0 ({r.returncode}, {r.stderr.strip()})")
    try:
        check("status" in json.loads(r.stdout), "query-status prints JSON with 'status'")
    except ValueError:
        check(False, f"query-status prints JSON: {r.stdout!r}")

    r = vmsnap("qmp", sock, "human-monitor-command", '{"command-line": "info version"}', "--timeout", "20")
    out = json.loads(r.stdout) if r.returncode == 0 else None
    check(isinstance(out, str) and out[:1].isdigit(), f"arguments are passed ({r.stdout.strip()!r})")

    r = vmsnap("qmp", sock, "no-such-command")
    check(r.returncode == 1, f"unknown command exits 1 ({r.returncode})")
    check(r.stderr.startswith("vmsnap: qmp 'no-such-command': CommandNotFound: "), f"stderr names the class: {r.stderr!r}")
    check(r.stdout == "", "nothing on stdout on failure")

    for bad in ("{bad", "[1]", "42"):
        r = vmsnap("qmp", sock, "query-status", bad)
        check(r.returncode == 2, f"bad JSON arguments {bad!r} exit 2 ({r.returncode}, {r.stderr.strip()})")
    r = vmsnap("qmp", sock)
    check(r.returncode == 2, f"missing COMMAND exits 2 ({r.returncode})")
    r = vmsnap("qmp", sock, "query-status", "--timeout", "0")
    check(r.returncode == 2, f"--timeout 0 exits 2 ({r.returncode})")

    missing = os.path.join(tmp, "missing.sock")
    r = vmsnap("qmp", missing, "query-status")
    check(r.returncode == 1, f"missing socket exits 1 ({r.returncode})")
    check(missing in r.stderr and r.stderr.startswith("vmsnap: ") and r.stderr.count("\n") == 1,
          f"one line naming the socket: {r.stderr!r}")

    # The VM keeps running after all that.
    r = vmsnap("qmp", sock, "query-status")
    check(r.returncode == 0 and json.loads(r.stdout)["running"] is True, "VM still running")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    qemu_bin = shutil.which("qemu-system-x86_64")
    if not qemu_bin:
        print("SKIP: qemu-system-x86_64 not installed")
        return 77
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="vmsnap-qmp-it-") as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        qemu = subprocess.Popen(
            [qemu_bin, "-accel", "tcg", "-machine", "pc", "-m", "64", "-display", "none", "-nodefaults",
             "-no-user-config", "-qmp", f"unix:{sock},server=on,wait=off"],
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(sock):
                if qemu.poll() is not None or time.monotonic() > deadline:
                    print("FAIL QEMU did not create its QMP socket", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            r = subprocess.run([sys.argv[1], sock, str(qemu.pid)], timeout=120)
            check(r.returncode == 0, "library checks (qmp_qemu) pass")
            cli_checks(sock, tmp)
        finally:
            qemu.kill()
            qemu.wait()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
