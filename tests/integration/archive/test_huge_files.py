#!/usr/bin/env python3
"""A tiny archive may claim huge kernel, initrd or firmware files (all-zero streams cost nothing in it): boot wrote
them out in full. Now a file over 1 GiB is refused before anything is written or started, naming the file and the
limit, and a file under it is written sparse (zeros as holes). The over-limit boot runs under RLIMIT_FSIZE so that
the old behaviour fails on the limit instead of filling the disk. Real QEMU for the one that boots (a zero kernel
that does nothing)."""
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile

BUILD = os.environ.get("VMSNAP_BUILDDIR", "build")
VMSNAP = os.environ.get("VMSNAP") or os.path.join(BUILD, "vmsnap")
FORGE = os.path.join(BUILD, "tests", "integration", "archive", "arc-forge")
CONFIG = 'config:config={"version":1,"kernel":"/nonexistent/vmlinuz","append":"console=ttyS0"}'
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def limit_fsize():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))


with tempfile.TemporaryDirectory() as d:
    big = os.path.join(d, "big.vmsnap")
    subprocess.run([FORGE, big, "disk:disk0:1048576", CONFIG, "file:kernel:4294967296"], check=True)
    check(os.path.getsize(big) < 65536, f"a 4 GiB kernel in a {os.path.getsize(big)}-byte archive")
    p = subprocess.run([VMSNAP, "boot", big, "--detach", "--qmp", os.path.join(d, "big.qmp")], capture_output=True,
                       text=True, timeout=60, preexec_fn=limit_fsize)
    print(p.stderr.strip())
    check(p.returncode == 1, f"boot of a 4 GiB kernel fails (exit {p.returncode})")
    check("file 'kernel' of the archive is 4294967296 bytes, more than the 1024 MiB" in p.stderr,
          "the error names the file, its size and the limit")

    small = os.path.join(d, "small.vmsnap")
    subprocess.run([FORGE, small, "disk:disk0:1048576", CONFIG, "file:kernel:268435456"], check=True)
    qmp = os.path.join(d, "small.qmp")
    p = subprocess.run([VMSNAP, "boot", small, "--detach", "--json", "--qmp", qmp, "--accel", "tcg"],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"boot of a 256 MiB zero kernel starts QEMU: {p.stderr.strip()}")
    if p.returncode == 0:
        info = json.loads(p.stdout)
        st = os.stat(os.path.join(info["rundir"], "kernel"))
        check(st.st_size == 256 << 20, f"kernel copy is 256 MiB ({st.st_size})")
        check(st.st_blocks * 512 < (1 << 20), f"kernel copy is sparse ({st.st_blocks * 512} bytes allocated)")
        subprocess.run([VMSNAP, "qmp", qmp, "quit"], capture_output=True, timeout=30)
        try:
            os.kill(info["qemu-pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass

if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("PASS")
