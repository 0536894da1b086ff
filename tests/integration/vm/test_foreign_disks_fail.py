"""A disk snapshot of a QEMU vmsnap did not start that fails leaves the VM running on its own nodes, with nothing of
vmsnap's inside it (node, export, job, fd set, NBD server, dirty bitmap) nor in its run directory, and no output file:
QEMU refusing the filter (after the first disk's went in), SIGTERM while the disks are being read, the fleecing
target's filesystem filling up or its writes outlasting cbw-timeout while the guest writes (the view breaks: the
guest's writes still succeed), and a writable medium attached to no device and a VM whose RAM QEMU cannot snapshot
in the background (both refused before anything is added). A QEMU that runs an NBD server already: test_foreign_nbd.py."""
import os
import shutil
import signal
import subprocess
import time

from fleecelib import check_untouched, graph, managed_vm
from vmsnaptest import FullDir, check, log, private_file_ram, tmpdir, vmtest


def snap_env(run_dir, faults=None):
    env = dict(os.environ, XDG_RUNTIME_DIR=run_dir)
    if faults:
        env["VMSNAP_TEST_FAULT"] = faults
    return env


def check_failed(p, out, run_dir, words, what):
    err = p.stderr.strip()
    log(f"{what}: exit {p.returncode}: {err}")
    check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err, f"{what}: one error line, exit 1")
    for w in words:
        check(w in err, f"{what}: the message says {w!r}: {err}")
    left = [n for n in os.listdir(os.path.dirname(out)) if n.startswith(os.path.basename(out))]
    check(left == [], f"{what}: no output nor temp file: {left}")
    base = os.path.join(run_dir, "vmsnap")
    check(not os.path.isdir(base) or os.listdir(base) == [], f"{what}: private run dir removed")


def snap_cmd(vm, out):
    return [vmtest.vmsnap_path(), "snap", "--qmp", vm.qmp_path, "-o", out]


def view_breaks(vm, a, out, run_dir, fault, words, before, what):
    """A snapshot of vda while the guest writes fails because the view broke; no guest write failed."""
    a.cmd("rawloop /dev/vda 1048576 slots=1024 ms=1")
    p = subprocess.run(snap_cmd(vm, out) + ["--disks", "vda"], env=snap_env(run_dir, fault), capture_output=True,
                       text=True, timeout=120)
    w = a.cmd("rawloop stop")
    check_failed(p, out, run_dir, ["the view broke", *words], what)
    check(w.int("gen") > 10 and w.int("errors") == 0, f"{what}: the guest wrote on, no write failed: {w}")
    a.cmd("rawverify /dev/vda 0 4 seed=3")
    check_untouched(vm, before, what, bitmaps=True)


def test():
    d = tmpdir()
    run_dir = os.path.join(d, "run")
    os.mkdir(run_dir, 0o700)
    try:
        vm, _, _ = managed_vm(d, "fail")
        with vm:
            a = vm.agent()
            a.cmd("rawwrite /dev/vda 0 4 seed=3")
            before, nodes_only = graph(vm, bitmaps=True), graph(vm)
            out = os.path.join(d, "s.vmsnap")

            # QEMU refuses to move the last disk onto its filter, inside the pause: its words, all undone.
            p = subprocess.run(snap_cmd(vm, out), env=snap_env(run_dir, "fleece-insert"), capture_output=True,
                               text=True, timeout=120)
            check_failed(p, out, run_dir, ["disk 'sdb'", "vmsnap-no-such-node"], "QEMU refusing the filter")
            check_untouched(vm, before, "QEMU refusing the filter", bitmaps=True)

            # SIGTERM while everything is in place (exports up, the copy held by the fault point).
            proc = subprocess.Popen(snap_cmd(vm, out), env=snap_env(run_dir, "fleece-hold"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 60
                while len(vm.qmp.cmd("query-block-exports")) < 2:
                    check(time.monotonic() < deadline and proc.poll() is None, "the exports come up")
                    time.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                so, se = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            check_failed(subprocess.CompletedProcess(proc.args, proc.returncode, so, se), out, run_dir,
                         ["interrupted by signal 15"], "SIGTERM mid-capture")
            check_untouched(vm, before, "SIGTERM mid-capture", bitmaps=True)

            # The same guest writes with room for the copies: the snapshot succeeds (what makes the next case fail
            # is the full filesystem).
            a.cmd("rawloop /dev/vda 1048576 slots=1024 ms=1")
            p = subprocess.run(snap_cmd(vm, out) + ["--disks", "vda"], env=snap_env(run_dir), capture_output=True,
                               text=True, timeout=120)
            w = a.cmd("rawloop stop")
            check(p.returncode == 0 and w.int("gen") > 10, f"with room, a snapshot under guest writes works: {p.stderr}")
            check(w.int("errors") == 0, f"no guest write failed during the capture: {w}")
            os.unlink(out)
            check_untouched(vm, nodes_only, "guest writing during the capture")
            before = graph(vm, bitmaps=True)   # with the bitmap this snapshot left for the next one

            # The fleecing target's filesystem fills up while the guest writes (room for the qcow2's metadata and a
            # cluster or two of copies); then a target slower than the filter's timeout (a test's null-co target with
            # a 3 s latency, cbw-timeout 1 s: a guest write waits for its copy at most that long). Either way the
            # view breaks, the guest's writes do not fail, the snapshot fails and says why.
            with FullDir(d, "384k") as full:
                if full:
                    view_breaks(vm, a, out, full, None, ["filesystem is full"], before, "fleecing target full")
            view_breaks(vm, a, out, run_dir, "fleece-slow-target", ["within 1 s"], before, "fleecing target too slow")

            # What a vmsnap that was killed mid-capture leaves (its filter in front of a device): refused, named.
            vm.qmp.cmd("blockdev-add", {"driver": "null-co", "node-name": "leftover-target", "size": 32 << 20})
            vm.qmp.cmd("blockdev-add", {"driver": "copy-before-write", "node-name": "vmsnap-dead0000-0-cbw",
                                        "file": "vda-fmt", "target": "leftover-target"})
            vm.qmp.cmd("qom-set", {"path": "/machine/peripheral/vda/virtio-backend", "property": "drive",
                                   "value": "vmsnap-dead0000-0-cbw"})
            left = graph(vm, bitmaps=True)
            p = subprocess.run(snap_cmd(vm, out), env=snap_env(run_dir), capture_output=True, text=True, timeout=120)
            check_failed(p, out, run_dir, ["vmsnap-dead0000-0-cbw", "did not end"], "leftover")
            check_untouched(vm, left, "leftover", bitmaps=True)
            vm.qmp.cmd("qom-set", {"path": "/machine/peripheral/vda/virtio-backend", "property": "drive",
                                   "value": "vda-fmt"})
            vm.qmp.cmd("blockdev-del", {"node-name": "vmsnap-dead0000-0-cbw"})
            vm.qmp.cmd("blockdev-del", {"node-name": "leftover-target"})

            # A writable medium attached to no device: refused naming it, before anything is added.
            orphan = vmtest.make_disk(os.path.join(d, "orphan.raw"), "1M")
            vm.qmp.cmd("human-monitor-command",
                       {"command-line": f"drive_add 0 if=none,file={orphan},format=raw,id=orphan"})
            before = graph(vm, bitmaps=True)
            p = subprocess.run(snap_cmd(vm, out), env=snap_env(run_dir), capture_output=True, text=True, timeout=120)
            check_failed(p, out, run_dir, ["disk 'orphan'", "attached to no guest device", "--disks"], "orphan")
            check_untouched(vm, before, "orphan", bitmaps=True)
            p = subprocess.run(snap_cmd(vm, out) + ["--disks", "vda"], env=snap_env(run_dir), capture_output=True,
                               text=True, timeout=120)
            check(p.returncode == 0 and os.path.exists(out), f"--disks leaves the orphan out: {p.stderr.strip()}")
            os.unlink(out)

        # QEMU refuses a background snapshot (RAM a private file mapping, as after a lazy resume): the precopy
        # fallback would end by inactivating the disks, so the disk snapshot is refused, with QEMU's reason.
        vm, _, _ = managed_vm(d, "precopy", extra=private_file_ram(d, 128))
        with vm:
            vm.agent()
            before = graph(vm, bitmaps=True)
            p = subprocess.run(snap_cmd(vm, out), env=snap_env(run_dir), capture_output=True, text=True, timeout=120)
            check_failed(p, out, run_dir, ["only with a background snapshot", "would be a precopy",
                                           "not compatible with guest memory", "--memory-only"], "precopy")
            check_untouched(vm, before, "precopy", bitmaps=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
