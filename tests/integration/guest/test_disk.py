#!/usr/bin/env python3
"""Data on a virtio disk survives a reboot of the same image: a file on ext2 (written, fsynced) and raw O_DIRECT
records verify in a second boot, which the host tells apart from the first by its boot id; wrong seeds fail."""
import os, sys, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest
from vmtest import check, check_eq, log

RAW_OFF = 48 << 20   # raw records live past the end of the 32 MiB filesystem


def test():
    d = tempfile.mkdtemp(prefix="vmsnap-disk-")
    try:
        run(d)
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def run(d):
    disk = vmtest.make_disk(os.path.join(d, "disk.raw"), "64M")
    with vmtest.VM(mem="128M", disks=[disk], name="disk1") as vm:
        a = vm.agent()
        boot1 = a.boot_id
        a.cmd("mkfs /dev/vda 32768")
        a.cmd("mount /dev/vda")
        w = a.cmd("fswrite data.bin 2048 seed=11")
        log(f"fswrite: {w}")
        a.cmd("rawwrite /dev/vda %d 16 seed=22" % RAW_OFF)
        a.cmd("rawverify /dev/vda %d 16 seed=22" % RAW_OFF)
        check_eq(vm.shutdown(), 0, "QEMU exit status after poweroff")

    with vmtest.VM(mem="128M", disks=[disk], name="disk2") as vm:
        a = vm.agent()
        check(a.boot_id != boot1, "second boot reports the same boot id")
        a.cmd("mount /dev/vda")
        r = a.cmd("fsverify data.bin 2048 seed=11")
        check_eq(r["hash"], w["hash"], "file hash after reboot")
        bad = a.cmd("fsverify data.bin 2048 seed=12", check=False)
        check(not bad.ok and "mismatch" in bad.text, f"fsverify with a wrong seed answered {bad}")
        a.cmd("rawverify /dev/vda %d 16 seed=22" % RAW_OFF)
        bad = a.cmd("rawverify /dev/vda %d 17 seed=22" % RAW_OFF, check=False)
        check(not bad.ok and bad.int("record") == 16, f"record 16 was never written, rawverify answered {bad}")
        # rawloop/rawcheck: a writer rewriting records in place, checked against what RAM says it wrote.
        a.cmd("rawloop /dev/vda %d slots=64 ms=5" % (RAW_OFF + (1 << 20)))
        a.wait_heartbeats(100)
        r = a.cmd("rawcheck")
        check(r.int("ram_gen") > 0 and r.int("disk_max") == r.int("ram_gen"), f"rawcheck: {r}")
        a.cmd("rawloop stop")
        # The check can fail: roll the records back behind the guest's back (the disk now older than RAM).
        loop_off = RAW_OFF + (2 << 20)
        a.cmd("rawloop /dev/vda %d slots=1024 ms=5" % loop_off)
        a.wait_heartbeats(100)
        vm.qmp.cmd("stop")
        with open(disk, "r+b") as f:
            f.seek(loop_off)
            f.write(bytes(1024 * 4096))
            f.flush()
            os.fsync(f.fileno())
        vm.qmp.cmd("cont")
        r = a.cmd("rawcheck", check=False)
        log(f"rawcheck after the host rolled the disk back: {r}")
        check(not r.ok and "inconsistent" in r.text, f"rawcheck missed a disk older than RAM: {r}")
        a.cmd("rawloop stop")
        # Corrupt one record behind the agent's back: rawverify must notice.
        a.cmd("rawwrite /dev/vda %d 1 seed=99" % (RAW_OFF + 4096 * 3))
        bad = a.cmd("rawverify /dev/vda %d 16 seed=22" % RAW_OFF, check=False)
        check(not bad.ok and bad.int("record") == 3, f"overwritten record 3 not detected: {bad}")


vmtest.main(test)
