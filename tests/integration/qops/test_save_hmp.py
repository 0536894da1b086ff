"""internal save on a QEMU without the snapshot jobs (fake QMP server, no QEMU) falls back to HMP savevm: its text
error is reported (exit 1, naming "HMP 'savevm t1'") and the VM resumed; what HMP cannot do is refused: --devices
(needs the snapshot-save job) and a tag with a space."""
import os

from fakeqemu import FakeQemu, check, main, run


def test(d):
    hmp = FakeQemu(os.path.join(d, "hmp.sock"), ["human-monitor-command"])
    p = run("internal", "save", "--qmp", hmp.path, "t1")
    check(p.returncode == 1 and "HMP 'savevm t1'" in p.stderr and "Input/output error" in p.stderr,
          f"HMP error not reported: {p.stderr!r}")
    check(hmp.running and [n for n, _ in hmp.log][-2:] == ["cont", "query-status"],
          "VM not resumed after failed HMP savevm")
    p = run("internal", "save", "--qmp", hmp.path, "t1", "--devices", "disk0")
    check(p.returncode == 1 and "need QEMU's snapshot-save job" in p.stderr, f"--devices on HMP: {p.stderr!r}")
    p = run("internal", "save", "--qmp", hmp.path, "a b")
    check(p.returncode == 1 and "HMP" in p.stderr, f"tag HMP cannot take: {p.stderr!r}")


main(test)
