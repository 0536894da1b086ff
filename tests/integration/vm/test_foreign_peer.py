"""snap --memory-only of a QMP socket served by something that is not a QEMU vmsnap started (a fake QMP server,
no QEMU): failures are one clear line and never a crash; no archive is left behind."""
import os
import shutil
import subprocess
import sys

from vmsnaptest import check, log, tmpdir, vmtest

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_qmp.py")


def serve(path, user=None, python=sys.executable):
    p = subprocess.Popen([python, FAKE, path], stdout=subprocess.PIPE, text=True, user=user)
    check(p.stdout.readline().strip() == "ready", "fake QMP server started")
    return p


def sanitized(exe):
    with open(exe, "rb") as f:
        return b"__asan_init" in f.read()


def one_line_failure(p, what):
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1, f"{what}: exit 1, not {p.returncode} (a negative code is a signal): {p.stderr!r}")
    check(len(lines) == 1 and lines[0].startswith("vmsnap: "), f"{what}: one 'vmsnap:' line: {p.stderr!r}")
    return lines[0]


def test():
    d = tmpdir()
    servers = []
    try:
        sock = os.path.join(d, "fake.qmp")
        servers.append(serve(sock))
        # The output directory does not exist: the archive writer fails before anything is written.
        out = os.path.join(d, "missing", "mem.vmsnap")
        # Under valgrind when there is one: this error path once free()d an uninitialised pointer, which glibc
        # survived silently.
        cmd = [vmtest.vmsnap_path(), "snap", "--qmp", sock, "-o", out, "--memory-only"]
        if shutil.which("valgrind") and not sanitized(cmd[0]):
            cmd = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=no"] + cmd
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        msg = one_line_failure(p, "output in a missing directory")
        check("missing" in msg, f"the message names the output: {msg!r}")
        log(f"missing dir: {msg}")
        # A socket another user serves: its command line (argv[0] included) would be replayed by boot.
        if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
            log("not root (or no /usr/bin/python3): no server as another user; peer-uid check not exercised")
            return
        os.chmod(d, 0o711)
        shared = os.path.join(d, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        sock2 = os.path.join(shared, "other.qmp")
        servers.append(serve(sock2, user=65534, python="/usr/bin/python3"))
        out = os.path.join(d, "other.vmsnap")
        p = vmtest.vmsnap("snap", "--qmp", sock2, "-o", out, "--memory-only", check=False)
        msg = one_line_failure(p, "a socket served by uid 65534")
        check("uid 65534" in msg and sock2 in msg, f"the message names the socket and its owner: {msg!r}")
        check(sorted(os.listdir(d)) == ["fake.qmp", "shared"], f"nothing written: {os.listdir(d)}")
        log(f"other uid: {msg}")
    finally:
        for s in servers:
            s.kill()
            s.wait()
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
