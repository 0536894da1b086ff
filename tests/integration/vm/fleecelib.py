"""Helpers of the tests of `snap --qmp` on a QEMU vmsnap did not start, with its disks (copy-before-write fleecing):
a VM started the way a management tool starts one, and what must hold for it after any snapshot, good or failed."""
import os
import struct
import subprocess

from vmsnaptest import check, log, vmtest

REC_MAGIC = 0x4345524e53564d56  # tests/guest/agent.c: a raw record starts with magic, seed, offset
SCSI_FILL = b"vmsnap-scsi-disk\n" * 241  # host-written content of the second disk (the guest has no SCSI driver)


def managed_vm(d, name, qcow2_mib=32, raw_mib=8, mem="128M", extra=()):
    """q35, a -blockdev qcow2 on virtio-blk-pci (the guest's /dev/vda), a -blockdev raw disk on virtio-scsi, a -drive
    IDE cdrom, read-only; then extra. Returns (vm, qcow2 path, raw path)."""
    qcow2 = vmtest.make_disk(os.path.join(d, f"{name}-a.qcow2"), f"{qcow2_mib}M", fmt="qcow2")
    raw = vmtest.make_disk(os.path.join(d, f"{name}-b.raw"), f"{raw_mib}M")
    with open(raw, "r+b") as f:
        f.seek(1 << 20)
        f.write(SCSI_FILL)
    iso = vmtest.make_disk(os.path.join(d, f"{name}-cd.iso"), "1M")
    args = ["-machine", "q35",
             "-blockdev", f"driver=file,filename={qcow2},node-name=vda-file",
             "-blockdev", "driver=qcow2,file=vda-file,node-name=vda-fmt",
             "-device", "virtio-blk-pci,drive=vda-fmt,id=vda",
             "-blockdev", f"driver=file,filename={raw},node-name=sdb-file",
             "-blockdev", "driver=raw,file=sdb-file,node-name=sdb-fmt",
             "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=sdb-fmt,id=sdb,bus=scsi0.0",
             "-drive", f"file={iso},if=ide,media=cdrom,readonly=on,format=raw", *extra]
    return vmtest.VM(mem=mem, extra=args, name=name), qcow2, raw


def graph(vm, bitmaps=False):
    """The VM's block graph as QMP shows it: every node (name, driver, file, read-only, and its dirty bitmaps if
    asked), and each device's node."""
    nodes = sorted((n["node-name"], n["drv"], n.get("file"), n["ro"])
                   + ((tuple(sorted(b.get("name", "") for b in n.get("dirty-bitmaps", []))),) if bitmaps else ())
                   for n in vm.qmp.cmd("query-named-block-nodes", {"flat": True}))
    devs = sorted((b["device"], b.get("qdev"), (b.get("inserted") or {}).get("node-name"))
                  for b in vm.qmp.cmd("query-block"))
    return nodes, devs


def check_untouched(vm, before, what, bitmaps=False):
    """The VM runs, on its own nodes, with nothing of vmsnap's left: no node, export, job, fd set or NBD server (nor
    dirty bitmap, if asked)."""
    check(vm.qmp.status() == "running", f"{what}: VM running")
    after = graph(vm, bitmaps)
    check(after == before, f"{what}: block graph as before:\n  before {before}\n  after  {after}")
    check(vm.qmp.cmd("query-block-exports") == [], f"{what}: no NBD export left")
    check(vm.qmp.cmd("query-jobs") == [], f"{what}: no job left")
    check(vm.qmp.cmd("query-fdsets") == [], f"{what}: no fd set left")
    # Only one NBD server per QEMU: it is free again if vmsnap stopped its own.
    sock = os.path.join(vm.dir, "probe-nbd.sock")
    vm.qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}}})
    vm.qmp.cmd("nbd-server-stop")


def record_seed(path, off=0):
    """The seed of the guest's raw record at byte off of a disk image, or None."""
    with open(path, "rb") as f:
        f.seek(off)
        magic, seed, roff = struct.unpack("<QQQ", f.read(24))
    return seed if magic == REC_MAGIC and roff == off else None


def qemu_img_check(path, what):
    p = subprocess.run(["qemu-img", "check", "-U", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log(f"qemu-img check {path}: {p.returncode} {p.stdout.strip()}")
    check(p.returncode == 0, f"{what}: qemu-img check passes: {p.stdout.strip()}")
