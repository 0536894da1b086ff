"""A dump that fails midway (fake QMP server, no QEMU: DUMP_COMPLETED with an error) is reported with QEMU's error,
exit 1, leaves no file in the output directory and the VM resumed."""
import os

from fakeqemu import FakeQemu, check, main, run


def test(d):
    dump = FakeQemu(os.path.join(d, "dump.sock"), [])
    out = os.path.join(d, "out", "mem.elf")
    os.mkdir(os.path.dirname(out))
    p = run("dump", "--qmp", dump.path, "-o", out)
    check(p.returncode == 1 and "dump: write failed" in p.stderr, f"dump failure not reported: {p.stderr!r}")
    check(os.listdir(os.path.dirname(out)) == [], f"failed dump left files: {os.listdir(os.path.dirname(out))}")
    check(dump.running, "VM not resumed after a failed dump")


main(test)
