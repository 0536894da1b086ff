#!/usr/bin/env python3
"""`mem load` of a stream QEMU cannot load: vmsnap fails with QEMU's own words and, on QEMU 9.1+ (which can stay
alive after a failed incoming migration when asked: exit-on-error false), the destination QEMU is still running
and answering QMP, as after a failed `boot` resume (both use the library's feeder). A real QEMU with -incoming
defer is fed a stream whose header is valid and whose first section type is not."""
import os
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest
from vmtest import check, log


def test():
    with tempfile.TemporaryDirectory() as d, vmtest.VM(mem="128M", extra=["-incoming", "defer"]) as vm:
        v = vm.qmp.cmd("query-version")["qemu"]
        stays = (v["major"], v["minor"]) >= (9, 1)
        stream = os.path.join(d, "bad.stream")
        with open(stream, "wb") as f:
            f.write(b"QEVM\x00\x00\x00\x03" + b"\xee" * 4096)   # magic + version 3, then no section type 0xee
        p = vmtest.vmsnap("mem", "load", "--qmp", vm.qmp_path, stream, check=False, timeout=120)
        log(f"QEMU {v['major']}.{v['minor']}: exit {p.returncode}: {p.stderr.strip()}")
        check(p.returncode == 1, f"mem load of a bad stream exited {p.returncode}")
        check(len(p.stderr.strip().splitlines()) == 1, f"not one error line: {p.stderr!r}")
        if not stays:
            return   # QEMU 7.2 exits on a failed load: its log says why
        check(vm.proc.poll() is None, "QEMU exited after the failed load (exit-on-error not turned off)")
        mig = vm.qmp.cmd("query-migrate")
        why = mig.get("error-desc", "")
        log(f"query-migrate: {mig}")
        check(mig.get("status") == "failed" and why, f"QEMU does not report the load failed: {mig}")
        check("QEMU failed to load the memory stream (migration failed)" in p.stderr and why in p.stderr,
              f"vmsnap's error does not carry QEMU's words {why!r}: {p.stderr.strip()}")


vmtest.main(test)
