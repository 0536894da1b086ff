"""An archive is data, not a script: `boot` of a crafted archive never runs the binary its config names, refuses
before anything starts each recorded QEMU option vmsnap would not write (one line: every option, its reason, and
--trust-archive), never uses a recorded host path the archive does not store, and with --trust-archive passes the
options to QEMU and says on stderr what it let through."""
import json
import os
import shutil
import signal
import stat

from vmsnaptest import check, check_failed_cleanly, guest_args, log, tmpdir, vmtest


def crafted(d, name, cfg):
    """A 16 MiB disk packed with cfg as its config."""
    path = os.path.join(d, f"{name}.json")
    with open(path, "w") as f:
        json.dump(dict({"version": 1, "disks": [{"format": "raw", "interface": "virtio"}]}, **cfg), f)
    disk = vmtest.make_disk(os.path.join(d, f"{name}.raw"), "16M")
    out = os.path.join(d, f"{name}.vmsnap")
    vmtest.vmsnap("pack", disk, "--config", path, "-o", out, "--quiet")
    return out


def boot(d, archive, name, *args, extra=(), check_ok=True):
    qmp, con = os.path.join(d, f"{name}.qmp"), os.path.join(d, f"{name}.con")
    cmd = ["boot", archive, "--detach", "--json", "--qmp", qmp, "--console", con, "--ram", "128M", *args]
    if extra:
        cmd += ["--", *extra]
    return vmtest.vmsnap(*cmd, check=check_ok, timeout=180), qmp, con


def stop(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test():
    d = tmpdir()
    pids = []
    try:
        marker = os.path.join(d, "ran")
        script = os.path.join(d, "qemu.sh")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}\nexec qemu-system-x86_64 \"$@\"\n")
        os.chmod(script, 0o755)
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write("not for the guest\n")

        # 1. The config names a script as QEMU and a kernel it does not store; the user gives the kernel.
        arc = crafted(d, "script", {"qemu": script, "kernel": secret, "initrd": secret})
        p, qmp, con = boot(d, arc, "s", extra=guest_args())
        info = json.loads(p.stdout)
        pids.append(info["qemu-pid"])
        a = vmtest.Agent(con).connect()
        a.wait_ready(120)
        exe = os.readlink(f"/proc/{info['qemu-pid']}/exe")
        with open(f"/proc/{info['qemu-pid']}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        check(not os.path.exists(marker), "the script the archive names as QEMU never ran")
        check("qemu-system" in os.path.basename(exe), f"QEMU is the local binary: {exe}")
        check(secret.encode() not in argv, "the recorded kernel/initrd paths are not on QEMU's command line")
        a.close()
        stop(info["qemu-pid"])

        # 2. What a security review put in a config: refused, each with its reason, before anything starts.
        bashrc = os.path.join(d, "bashrc")
        ifup = os.path.join(d, "ifup.sh")
        with open(ifup, "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}\n")
        os.chmod(ifup, 0o755)
        evil = {"machine": "pc,accel=kvm", "initrd": secret,
                "disks": [{"format": "raw", "interface": "none,snapshot=on"}],
                "extra-args": ["-chardev", f"file,id=x,path={bashrc}", "-plugin", os.path.join(d, "evil.so"),
                               "-sandbox", "off", "-netdev", f"tap,id=n0,script={ifup}", "-add-fd", "fd=3,set=1",
                               "-initrd", secret]}
        arc = crafted(d, "evil", evil)
        p, qmp, con = boot(d, arc, "e", extra=guest_args()[:2], check_ok=False)
        err = check_failed_cleanly(p, ["--trust-archive", "-plugin", "host shared library", "-sandbox", "seccomp",
                                       "backend 'file'", "type 'tap'", "-add-fd", "file descriptors",
                                       "-initrd", "does not store", "machine pc,accel=kvm",
                                       "interface none,snapshot=on"], os.path.join(d, "none"))
        log(f"refused: {err}")
        check(not os.path.exists(qmp) and not os.path.exists(con), "no QEMU was started (no sockets)")
        check(not os.path.exists(bashrc) and not os.path.exists(marker), "nothing the archive named was touched")

        # 3. An option off the list: refused, then passed with --trust-archive, which says so once on stderr.
        dev = "virtio-balloon-pci,id=b0,free-page-reporting=on"
        arc = crafted(d, "odd", {"extra-args": ["-device", dev]})
        p, _, _ = boot(d, arc, "o1", extra=guest_args(), check_ok=False)
        check_failed_cleanly(p, ["device property 'free-page-reporting'", "--trust-archive"], os.path.join(d, "x"))
        p, qmp, con = boot(d, arc, "o2", "--trust-archive", extra=guest_args())
        info = json.loads(p.stdout)
        pids.append(info["qemu-pid"])
        log(f"stderr: {p.stderr.strip()}")
        check(p.stderr.count("--trust-archive: passing to QEMU unchecked") == 1 and dev in p.stderr,
              f"says once what it lets through: {p.stderr!r}")
        with open(f"/proc/{info['qemu-pid']}/cmdline", "rb") as f:
            check(dev.encode() in f.read().split(b"\0"), "QEMU got the recorded option verbatim")
        a = vmtest.Agent(con).connect()
        a.wait_ready(120)
        a.close()
    finally:
        for pid in pids:
            stop(pid)
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
