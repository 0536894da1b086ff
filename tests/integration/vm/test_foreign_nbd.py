"""`snap --qmp` of a QEMU vmsnap did not start, whose manager runs QEMU's NBD server already (nbd-server-start, one
export of its own): vmsnap finds where that server listens (QMP does not say), puts its exports there, reads the
disks through it and removes only its own exports: the server keeps running and serving the manager's export, on a
Unix socket and on TCP, and the archive holds the disks as of the instant. A server that requires TLS is refused
before anything touches the guest's disks, saying so, and left as it was."""
import os
import shutil
import socket
import subprocess
import time

from fleecelib import graph, managed_vm, record_seed
from vmsnaptest import check, log, tmpdir, vmtest
from vmtest import QMPError

THEIR_EXPORT = {"type": "nbd", "id": "their-export", "node-name": "their-node", "name": "theirs", "writable": False}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snap(vm, out, run_dir):
    t0 = time.monotonic()
    p = subprocess.run([vmtest.vmsnap_path(), "snap", "--qmp", vm.qmp_path, "-o", out, "--disks", "vda"],
                       env=dict(os.environ, XDG_RUNTIME_DIR=run_dir), capture_output=True, text=True, timeout=120)
    log(f"snap took {time.monotonic() - t0:.2f} s")
    return p


def server_runs(vm):
    """Only one NBD server per QEMU: starting another one says whether it still runs."""
    try:
        vm.qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {"path": "/nonexistent/x.sock"}}})
    except QMPError as e:
        return "already running" in str(e)
    vm.qmp.cmd("nbd-server-stop")
    return False


def check_theirs_intact(vm, before, exports, uri, what):
    """The VM runs on its own nodes; their server still runs with exactly their export, and serves it."""
    check(vm.qmp.status() == "running", f"{what}: VM running")
    after = graph(vm, bitmaps=False)
    check(after == before, f"{what}: block graph as before:\n  before {before}\n  after  {after}")
    now = vm.qmp.cmd("query-block-exports")
    check(now == exports, f"{what}: only their export left: {now}")
    check(vm.qmp.cmd("query-jobs") == [] and vm.qmp.cmd("query-fdsets") == [], f"{what}: no job nor fd set left")
    check(server_runs(vm), f"{what}: their NBD server still runs")
    p = subprocess.run(["qemu-img", "info", "--output=json", uri], capture_output=True, text=True)
    check(p.returncode == 0 and '"virtual-size": 1048576' in p.stdout, f"{what}: it serves their export: {p.stderr}")


def captured(d, out, seed, what):
    x = os.path.join(d, "vda.raw")
    vmtest.vmsnap("extract", out, "--disk", "0", "-o", x, "--quiet")
    check(record_seed(x, 0) == seed, f"{what}: the archive holds the record as of the instant: {record_seed(x, 0)}")
    os.unlink(x)
    os.unlink(out)


def test():
    d = tmpdir()
    run_dir = os.path.join(d, "run")
    os.mkdir(run_dir, 0o700)
    try:
        vm, _, _ = managed_vm(d, "theirs", mem="96M")
        with vm:
            a = vm.agent()
            a.cmd("rawwrite /dev/vda 0 4 seed=3")
            vm.qmp.cmd("blockdev-add", {"driver": "null-co", "node-name": "their-node", "size": 1 << 20,
                                        "read-zeroes": True})
            before = graph(vm)
            out = os.path.join(d, "s.vmsnap")

            # On a Unix socket.
            sock = os.path.join(d, "theirs.sock")
            vm.qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}}})
            vm.qmp.cmd("block-export-add", THEIR_EXPORT)
            exports = vm.qmp.cmd("query-block-exports")
            p = snap(vm, out, run_dir)
            log(f"unix: exit {p.returncode}: {p.stderr.strip()}")
            a.cmd("rawwrite /dev/vda 0 4 seed=4")
            check(p.returncode == 0, f"snap through their Unix-socket server: {p.stderr.strip()}")
            check_theirs_intact(vm, before, exports, f"nbd+unix:///theirs?socket={sock}", "unix")
            check(os.path.exists(sock), "their socket file is still there")
            captured(d, out, 3, "unix")
            vm.qmp.cmd("block-export-del", {"id": "their-export"})
            vm.qmp.cmd("nbd-server-stop")

            # On TCP.
            port = str(free_port())
            vm.qmp.cmd("nbd-server-start", {"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port}}})
            vm.qmp.cmd("block-export-add", THEIR_EXPORT)
            exports = vm.qmp.cmd("query-block-exports")
            p = snap(vm, out, run_dir)
            log(f"tcp: exit {p.returncode}: {p.stderr.strip()}")
            check(p.returncode == 0, f"snap through their TCP server: {p.stderr.strip()}")
            check_theirs_intact(vm, before, exports, f"nbd://127.0.0.1:{port}/theirs", "tcp")
            captured(d, out, 4, "tcp")
            vm.qmp.cmd("block-export-del", {"id": "their-export"})
            vm.qmp.cmd("nbd-server-stop")

            # With TLS (a pre-shared key vmsnap does not have): refused, saying so, with nothing left behind.
            psk = os.path.join(d, "psk")
            os.mkdir(psk, 0o700)
            with open(os.path.join(psk, "keys.psk"), "w") as f:
                f.write("manager:" + os.urandom(16).hex() + "\n")
            vm.qmp.cmd("object-add", {"qom-type": "tls-creds-psk", "id": "tls0", "endpoint": "server", "dir": psk})
            vm.qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}}, "tls-creds": "tls0"})
            p = snap(vm, out, run_dir)
            err = p.stderr.strip()
            log(f"tls: exit {p.returncode}: {err}")
            check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err, "tls: one error line, exit 1")
            for w in ("runs an NBD server already", sock, "requires TLS", "--memory-only"):
                check(w in err, f"tls: the message says {w!r}: {err}")
            check(not [n for n in os.listdir(d) if n.startswith("s.vmsnap")], "tls: no output nor temp file")
            check(os.listdir(os.path.join(run_dir, "vmsnap")) == [], "tls: private run dir removed")
            check(vm.qmp.cmd("query-block-exports") == [] and graph(vm) == before, "tls: nothing of vmsnap's left")
            check(server_runs(vm), "tls: their server still runs")
            a.cmd("rawverify /dev/vda 0 4 seed=4")
            vm.qmp.cmd("nbd-server-stop")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
