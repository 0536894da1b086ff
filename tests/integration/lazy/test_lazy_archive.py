"""What a lazily resumed VM does with its archive while it runs (256 MiB guest, 64 MiB pattern).

1. prefetch: with --prefetch=background the RAM file's page cache fills with the stored data while the guest does
   nothing; with --prefetch=none it holds only what the guest touched (fincore on the FUSE file).
2. stability (foreground boots, stderr captured):
   - the archive renamed (another file put under its name) while the VM runs: the pattern still verifies;
   - a byte appended to the archive: the next page read is refused, the guest never reports its pattern good,
     QEMU stops, boot exits 1 saying the archive was modified in place;
   - a pattern byte flipped in place with the mtime put back (the cheap check cannot see it): the block checksum
     refuses the page, QEMU stops, boot says so."""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_lazy_boot import find_word_pair  # noqa: E402

FILL = 64
MiB = 1 << 20


def resident(rundir):
    """Bytes of the RAM file (FUSE) in the host's page cache."""
    files = glob.glob(os.path.join(rundir, "pages", "*"))
    check(len(files) == 1, f"one RAM file in {rundir}/pages: {files}")
    out = subprocess.run(["fincore", "-b", "-n", "-o", "RES", files[0]], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


class Foreground:
    """`vmsnap boot` in the foreground (--json): its stderr is where errors while the VM runs go."""

    def __init__(self, archive, d, name, args=()):
        self.qmp_path, con = os.path.join(d, f"{name}.qmp"), os.path.join(d, f"{name}.con")
        cmd = [vmtest.vmsnap_path(), "boot", archive, "--json", "--qmp", self.qmp_path, "--console", con, *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        check(line, f"boot printed no info: {self.p.stderr.read() if self.p.poll() is not None else ''}")
        self.info = json.loads(line)
        check(self.info["lazy"], f"{name}: resumed lazily: {self.info}")
        self.agent = vmtest.Agent(con).connect()

    def finish(self, timeout=60):
        """Wait for boot to exit (QEMU gone); returns (rc, stderr)."""
        try:
            _, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        self.agent.close()
        return self.p.returncode, err

    def stop(self):
        self.p.terminate()
        return self.finish()


def verify_refused(fg, what):
    r = None
    try:
        r = fg.agent.cmd("verify seed=1", timeout=60, check=False)
    except vmtest.TestFailure as e:
        log(f"{what}: verify: {e}")
    check(r is None or not r.ok, f"{what}: the guest verified its pattern: {r}")
    rc, err = fg.finish()
    log(f"{what}: boot exited {rc}: {err.strip()[:600]}")
    check(rc == 1, f"{what}: boot exits 1 when the VM is stopped (rc {rc})")
    return err


def test():
    d = tmpdir()
    try:
        base = base_archive(d, disk_mib=16)
        vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "256M"])
        vm.agent.wait_ready(120)
        vm.agent.cmd(f"fill {FILL} seed=1")
        arc = os.path.join(d, "A.vmsnap")
        snap(vm.qmp_path, arc)
        vm.close()

        # 1. prefetch
        v = Booted(arc, d, "none", args=["--prefetch=none"])
        time.sleep(2)
        res_none = resident(v.info["rundir"])
        v.close()
        v = Booted(arc, d, "bg", args=["--prefetch=background"])
        deadline, res_bg = time.monotonic() + 30, 0
        while time.monotonic() < deadline and res_bg < res_none + (FILL - 8) * MiB:
            time.sleep(0.2)
            res_bg = resident(v.info["rundir"])
        log(f"RAM file in the page cache: {res_none / MiB:.0f} MiB without prefetch (2 s), {res_bg / MiB:.0f} MiB "
            f"with it (guest idle)")
        check(res_bg >= res_none + (FILL - 8) * MiB, "the prefetch brought the untouched pattern into the page cache")
        v.agent.cmd("verify seed=1")
        v.close()

        # 2a. renamed (and replaced) while running: harmless
        fg = Foreground(arc, d, "ren", ["--prefetch=none"])
        moved = arc + ".moved"
        os.rename(arc, moved)
        with open(arc, "wb") as f:
            f.write(b"something else")
        fg.agent.cmd("verify seed=1")
        rc, err = fg.stop()
        check(rc == 0, f"boot ends cleanly after SIGTERM: rc {rc}: {err}")
        os.replace(moved, arc)

        # 2b. a byte appended: refused
        work = os.path.join(d, "B.vmsnap")
        shutil.copy(arc, work)
        fg = Foreground(work, d, "app", ["--prefetch=none"])
        with open(work, "ab") as f:
            f.write(b"\0")
        err = verify_refused(fg, "appended")
        check("modified in place" in err and work in err, "boot names the archive that changed")
        check("guest memory could not be read" in err, "logged while the VM ran")

        # 2c. a stored pattern byte flipped in place, mtime restored: the block checksum refuses it
        shutil.copy(arc, work)
        off = find_word_pair(work, 1, (FILL * MiB) // 8 // 2)
        check(off is not None, "pattern page found stored in the archive")
        # Flipped before the boot: done while the VM runs, a page read landing between the write and the utime
        # sees the changed mtime (the cheap check, racing); the point here is what the checksum alone catches.
        st = os.stat(work)
        with open(work, "r+b") as f:
            f.seek(off + 100)
            b = f.read(1)
            f.seek(off + 100)
            f.write(bytes([b[0] ^ 0xFF]))
        os.utime(work, ns=(st.st_atime_ns, st.st_mtime_ns))
        fg = Foreground(work, d, "flip", ["--prefetch=none"])
        err = verify_refused(fg, "flipped")
        check("checksum" in err and "modified in place" not in err, "the block checksum caught it")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
