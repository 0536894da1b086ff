"""`vmsnap commit BASE OVERLAY -o OUT [--thin] [--keep-overlay]` after a boot with --overlay whose guest
wrote records and a file: OUT boots cold and shows the writes (thick and thin); the overlay is kept with
--keep-overlay and on every failure (overlay locked for good, wrong base, output directory full), removed after a
successful commit without it; commit waits for an overlay still locked by a boot that is ending (CLI.md)."""
import fcntl
import os
import shutil
import subprocess
import time

from vmsnaptest import Booted, FullDir, base_archive, check, check_failed_cleanly, guest_args, log, tmpdir, vmtest

REC_OFF = 40 << 20   # raw records beyond the 32 MiB file system
BASE_OFF = 48 << 20  # data already in the base


def lock_overlay(path, timeout=60):
    """Take the overlay's lock as a boot holds it (flock LOCK_EX), waiting for the boot process to let go."""
    f = open(path, "rb")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            check(time.monotonic() < deadline, f"overlay {path} still locked {timeout}s after the VM ended")
            time.sleep(0.05)


def expect_fail(args, words, out, ovl):
    p = vmtest.vmsnap("commit", *args, check=False, timeout=60)
    check_failed_cleanly(p, words, out)
    check(os.path.exists(ovl), "overlay kept after a failed commit")


def boot_and_check(archive, d, name):
    vm = Booted(archive, d, name, extra=guest_args(), args=["--ram", "128M"])
    check(vm.info["resumed"] is False, "a disk-only archive boots cold")
    a = vm.agent
    a.wait_ready(120)
    a.cmd(f"rawverify /dev/vda {REC_OFF} 16 seed=51")
    a.cmd("mount /dev/vda")
    a.cmd("fsverify f1 2048 seed=52")
    with open(os.path.join(d, "disk.raw"), "rb") as f:
        f.seek(BASE_OFF)
        want = f.read(8 << 20)
    vmtest.vmsnap("extract", archive, "--disk", "0", "-o", os.path.join(d, name + ".raw"))
    with open(os.path.join(d, name + ".raw"), "rb") as f:
        f.seek(BASE_OFF)
        check(f.read(8 << 20) == want, f"{name}: the base's data is there")
    vm.close()


def test():
    d = tmpdir()
    try:
        # the base holds 8 MiB of data past the file system: a thick OUT copies it, a thin one refers to it
        raw = vmtest.make_disk(os.path.join(d, "disk.raw"), "64M")
        with open(raw, "r+b") as f:
            f.seek(BASE_OFF)
            f.write(os.urandom(8 << 20))
        base = os.path.join(d, "base.vmsnap")
        vmtest.vmsnap("pack", raw, "-o", base, "--quiet")
        ovl = os.path.join(d, "vm.ovl")
        vm = Booted(base, d, "w", extra=guest_args(), args=["--ram", "128M", "--overlay", ovl])
        a = vm.agent
        a.wait_ready(120)
        a.cmd(f"rawwrite /dev/vda {REC_OFF} 16 seed=51")
        a.cmd("mkfs /dev/vda 32768")
        a.cmd("mount /dev/vda")
        a.cmd("fswrite f1 2048 seed=52")
        a.cmd("umount")
        try:
            a.cmd("poweroff", timeout=30)
        except vmtest.TestFailure:
            pass  # the reply can be lost when the guest powers off fast
        deadline = time.monotonic() + 60
        while vm.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not vm.alive(), "QEMU exited after poweroff")
        vm.close()

        # A boot that is ending still holds the overlay: commit waits for it (here: we hold the lock for 1 s).
        out1 = os.path.join(d, "thick.vmsnap")
        lk = lock_overlay(ovl)
        proc = subprocess.Popen([vmtest.vmsnap_path(), "commit", base, ovl, "-o", out1, "--keep-overlay"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        check(proc.poll() is None, "commit waits while the overlay is locked")
        lk.close()
        so, se = proc.communicate(timeout=60)
        log(f"commit after the lock was released -> {proc.returncode}: {so.strip()} {se.strip()}")
        check(proc.returncode == 0, f"commit succeeded once the lock was released: {se!r}")
        check(os.path.exists(ovl), "--keep-overlay kept the overlay")
        vmtest.vmsnap("verify", out1)

        # Locked for good (a VM still running on it): a clear error after the short wait.
        lk = lock_overlay(ovl)
        try:
            expect_fail([base, ovl, "-o", os.path.join(d, "locked.vmsnap")], ["vm.ovl", "in use"],
                        os.path.join(d, "locked.vmsnap"), ovl)
        finally:
            lk.close()

        # The wrong base: another archive of the same size.
        other = os.path.join(d, "other")
        os.mkdir(other)
        other_base = base_archive(other)
        expect_fail([other_base, ovl, "-o", os.path.join(d, "wrong.vmsnap")], ["vm.ovl", "belongs to archive"],
                    os.path.join(d, "wrong.vmsnap"), ovl)

        # The output directory fills up (the overlay holds 2 MiB of incompressible data).
        with FullDir(d, "1m") as mnt:
            if mnt:
                out = os.path.join(mnt, "full.vmsnap")
                expect_fail([base, ovl, "-o", out, "--compress", "none"], ["No space"], out, ovl)
                check(not os.listdir(mnt), f"no temp file left in the full directory: {os.listdir(mnt)}")

        # Thin, without --keep-overlay: the overlay goes away.
        out2 = os.path.join(d, "thin.vmsnap")
        p = vmtest.vmsnap("commit", base, ovl, "-o", out2, "--thin")
        log(p.stdout.strip())
        check(not os.path.exists(ovl), "overlay removed after a successful commit")
        check(not [n for n in os.listdir(d) if n.startswith("vm.ovl")], "no overlay layer left")
        vmtest.vmsnap("verify", out2)
        log(f"sizes: thick {os.path.getsize(out1)}, thin {os.path.getsize(out2)}")
        check(os.path.getsize(out2) + (6 << 20) < os.path.getsize(out1), "thin leaves the base's data to the base")

        boot_and_check(out1, d, "b1")
        boot_and_check(out2, d, "b2")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
