"""A thick archive holds the firmware a VM was started with when it is not part of the QEMU installation
(-bios FILE, a pflash code image, a pflash variables file), and `boot` uses it from there: the snapshot resumes after
the originals are gone. The variables file QEMU gets is this boot's own writable copy in the run directory; the
archive is never written. A --thin snapshot stores the variables again (they are VM state) but not the read-only
code, which its parent holds."""
import hashlib
import os
import shutil
import stat

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest

SEABIOS = "/usr/share/seabios/bios-256k.bin"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_streams(archive):
    info = vmtest.vmsnap("info", archive, "--json", json_out=True)
    return {s["name"]: s["size"] for s in info["streams"] if s["kind"] == "file"}, info["config"]


def qemu_opened(pid, path):
    """Access mode QEMU holds path open with: 'r', 'w', 'rw', or None."""
    modes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        except (FileNotFoundError, StopIteration):
            continue
        modes.add({0: "r", 1: "w", 2: "rw"}[flags & 3])
    return "rw" if "rw" in modes else (modes.pop() if modes else None)


def resume_checks(r, boot_id, vars_content):
    check(r.info["resumed"] is True, "resumed")
    check(r.agent.wait_ready(60) == boot_id, "same boot id: resumed, not rebooted")
    r.agent.cmd("verify seed=41")
    r.agent.cmd("rawverify /dev/vda 0 8 seed=42")
    rundir = r.info["rundir"]
    code_copy, vars_copy = os.path.join(rundir, "fw-pflash0"), os.path.join(rundir, "fw-pflash1")
    st = os.stat(vars_copy)
    check(stat.S_IMODE(st.st_mode) == 0o600, f"the variables copy is private: {oct(st.st_mode)}")
    check(qemu_opened(r.pid, vars_copy) == "rw", "QEMU has the run directory's variables copy open read-write")
    check(qemu_opened(r.pid, code_copy) == "r", "QEMU has the run directory's code copy open read-only")
    with open(vars_copy, "rb") as f:
        check(f.read() == vars_content, "the variables copy holds the variables as of the snapshot")


def test_pflash(d, base):
    code = shutil.copy(SEABIOS, os.path.join(d, "code.bin"))
    vars_path = os.path.join(d, "vars,1.fd")   # a comma: QEMU's option syntax must escape it
    vars_content = os.urandom(128 << 10)
    with open(vars_path, "wb") as f:
        f.write(vars_content)
    extra = guest_args() + ["-drive", f"if=pflash,format=raw,unit=0,file={code},readonly=on",
                            "-drive", f"if=pflash,format=raw,unit=1,file={vars_path.replace(',', ',,')}"]
    vm = Booted(base, d, "p", extra=extra, args=["--ram", "128M"])
    boot_id = vm.agent.wait_ready(120)
    vm.agent.cmd("fill 16 seed=41")
    vm.agent.cmd("rawwrite /dev/vda 0 8 seed=42")
    out = os.path.join(d, "fw.vmsnap")
    res = snap(vm.qmp_path, out)
    log(f"snap: method {res['method']}, pause {res['pause'] * 1000:.1f} ms")
    files, config = file_streams(out)
    check(files.get("pflash0") == 256 << 10 and files.get("pflash1") == 128 << 10,
          f"the archive holds the code and the variables: {files}")
    xf = {x["name"]: x for x in config.get("extra-files", [])}
    check(xf.get("pflash1", {}).get("writable") is True and xf["pflash1"]["path"] == vars_path,
          f"config records the variables file: {xf}")
    check(xf.get("pflash0", {}).get("writable") is False, f"config records the read-only code: {xf}")
    vm.close()
    for f in (code, vars_path):
        os.rename(f, f + ".gone")   # the snapshot must not need them

    before = sha256(out)
    vmtest.vmsnap("verify", out)
    r = Booted(out, d, "r")
    resume_checks(r, boot_id, vars_content)
    thin = os.path.join(d, "fw-thin.vmsnap")
    snap(r.qmp_path, thin, "--thin")
    r.close()
    check(sha256(out) == before, "booting and running from the archive left it unchanged")
    vmtest.vmsnap("verify", out)
    files, _ = file_streams(thin)
    check("pflash1" in files and "pflash0" not in files,
          f"a thin snapshot stores the variables again, the code is in its parent: {files}")

    t = Booted(thin, d, "t")
    resume_checks(t, boot_id, vars_content)
    t.close()
    vmtest.vmsnap("verify", thin)
    check(sha256(out) == before, "the parent is unchanged after the thin child ran")


def test_bios(d, base):
    bios = shutil.copy(SEABIOS, os.path.join(d, "my-bios.bin"))
    vm = Booted(base, d, "b", extra=guest_args() + ["-bios", bios], args=["--ram", "128M"])
    boot_id = vm.agent.wait_ready(120)
    out = os.path.join(d, "bios.vmsnap")
    snap(vm.qmp_path, out, "--mode", "stop")
    vm.close()
    files, _ = file_streams(out)
    check(files.get("bios") == os.path.getsize(bios), f"the archive holds the -bios file: {files}")
    os.rename(bios, bios + ".gone")
    r = Booted(out, d, "rb")
    check(r.agent.wait_ready(60) == boot_id, "resumed with the stored -bios")
    check(qemu_opened(r.pid, bios) is None, "QEMU does not use the original -bios path")
    r.close()


def test():
    if not os.path.exists(SEABIOS):
        vmtest.skip(f"{SEABIOS} not installed")
    d = tmpdir()
    try:
        base = base_archive(d, disk_mib=16)
        test_pflash(d, base)
        test_bios(d, base)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
