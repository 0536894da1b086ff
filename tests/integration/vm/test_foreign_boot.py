"""`vmsnap boot` of a snapshot of a VM vmsnap did not start, with its captured disks: the VM is started the way a
management tool starts one (q35, a -blockdev qcow2 on virtio-blk-pci, a raw -blockdev on virtio-scsi, a read-only
IDE cdrom -drive). The guest writes record A, the snapshot is taken, the guest writes B. Booting the archive
without --trust-archive (the test guest's kernel and initrd given after "--") resumes the guest with A and not B,
its RAM pattern intact, each captured disk served by vmsnap under the device it had, and the cdrom emptied; a
thin snapshot of the resumed VM resumes with what the guest wrote since.

The archive comes from `snap --qmp` when this vmsnap captures a foreign VM's disks; else it is put together by
hand exactly as that capture records it (RAM and disks from one stopped instant, config "disks" entries), so the
resume side is tested either way."""
import json
import os
import shutil
import subprocess

from vmsnaptest import Booted, check, log, tmpdir, vmtest

SCSI_A = b"vmsnap-scsi-disk-A\n" * 200   # the raw disk's content at the instant (the guest has no SCSI driver)
SCSI_B = b"vmsnap-scsi-disk-B\n" * 200   # written after it


def managed_vm(d):
    qcow2 = vmtest.make_disk(os.path.join(d, "a.qcow2"), "32M", fmt="qcow2")
    raw = vmtest.make_disk(os.path.join(d, "b.raw"), "8M")
    with open(raw, "r+b") as f:
        f.seek(1 << 20)
        f.write(SCSI_A)
    iso = vmtest.make_disk(os.path.join(d, "cd.iso"), "1M")
    extra = ["-machine", "q35",
             "-blockdev", f"driver=file,filename={qcow2},node-name=vda-file",
             "-blockdev", "driver=qcow2,file=vda-file,node-name=vda-fmt",
             "-device", "virtio-blk-pci,drive=vda-fmt,id=vda,serial=VDA1",
             "-blockdev", f"driver=file,filename={raw},node-name=sdb-file",
             "-blockdev", "driver=raw,file=sdb-file,node-name=sdb-fmt",
             "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=sdb-fmt,id=sdb,bus=scsi0.0",
             "-drive", f"file={iso},if=ide,media=cdrom,readonly=on,format=raw"]
    return vmtest.VM(mem="128M", extra=extra, name="managed"), qcow2, raw


def capture(vm, d, out, qcow2, raw):
    """The archive of vm as of now; True if `snap --qmp` made it."""
    p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--json", check=False)
    if p.returncode == 0:
        log(f"captured by snap --qmp: {p.stdout.strip()}")
        return True
    check("--memory-only" in p.stderr, f"snap refused only for want of disk capture: {p.stderr!r}")
    log("this vmsnap does not capture a foreign VM's disks: the archive is put together by hand")
    q = vm.qmp
    q.cmd("stop")
    stream = os.path.join(d, "mem.stream")
    q.cmd("migrate", {"uri": f"exec:cat > {stream}"})
    vmtest._wait_for(lambda: q.cmd("query-migrate").get("status") in ("completed", "failed"), 120, "migration")
    check(q.cmd("query-migrate")["status"] == "completed", "migration to a file completed")
    ver = q.cmd("query-version")["qemu"]
    machine = q.cmd("qom-get", {"path": "/machine", "property": "type"}).removesuffix("-machine")
    disks = [{"name": "vda", "stream": "disk0", "format": "raw", "interface": "virtio-blk-pci", "device": "vda",
              "node": "vda-fmt"},
             {"name": "sdb", "stream": "disk1", "format": "raw", "interface": "scsi-hd", "device": "sdb",
              "node": "sdb-fmt"}]
    cfg = {"version": 1, "foreign": True, "cmdline": vm.command(), "cwd": vm.dir, "ram": 128 << 20,
           "qemu-version": f"{ver['major']}.{ver['minor']}.{ver['micro']}", "machine": machine, "disks": disks}
    cfg_path = os.path.join(d, "cfg.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    vmtest.vmsnap("pack", qcow2, raw, "--memory", stream, "--config", cfg_path, "-o", out, "--quiet")
    os.unlink(stream)
    q.cmd("cont")
    return False


def refused_configs(d):
    """A config whose captured disks do not match the archive or the recorded command line: one clear line naming
    the archive and the disk, before any VM starts."""
    raw = vmtest.make_disk(os.path.join(d, "tiny.raw"), "1M")
    cl = ["qemu-system-x86_64", "-blockdev", f"driver=file,filename={raw},node-name=f",
          "-blockdev", "driver=raw,file=f,node-name=top", "-device", "virtio-blk-pci,drive=top,id=vda"]
    for disk, words in (({"stream": "nope", "node": "top"}, ["disk stream 'nope'", "does not have"]),
                        ({"stream": "disk0", "node": "other"}, ["no -blockdev with node-name 'other'"]),
                        ({"stream": "disk0", "node": "top,file=/etc/shadow"}, ['"node" must be a QEMU node name'])):
        cfg_path = os.path.join(d, "bad.json")
        with open(cfg_path, "w") as f:
            json.dump({"version": 1, "foreign": True, "cmdline": cl, "disks": [dict(disk, name="vda")]}, f)
        bad = os.path.join(d, "bad.vmsnap")
        vmtest.vmsnap("pack", raw, "--config", cfg_path, "-o", bad, "--quiet")
        p = vmtest.vmsnap("boot", bad, "--detach", "--qmp", os.path.join(d, "bad.qmp"), check=False)
        err = p.stderr.strip()
        check(p.returncode == 1 and err.startswith(f"vmsnap: archive {bad}: config") and "\n" not in err
              and all(w in err for w in words), f"refused in one line naming {words}: {err!r}")
        os.unlink(bad)


def test():
    d = tmpdir()
    try:
        refused_configs(d)
        vm, qcow2, raw = managed_vm(d)
        with vm:
            a = vm.agent()
            boot_id = a.boot_id
            a.cmd("fill 16 seed=7")
            a.cmd("rawwrite /dev/vda 0 4 seed=1")           # A
            out = os.path.join(d, "snap.vmsnap")
            by_snap = capture(vm, d, out, qcow2, raw)
            a.cmd("rawwrite /dev/vda 0 4 seed=2")           # B
            with open(raw, "r+b") as f:
                f.seek(1 << 20)
                f.write(SCSI_B)
            vm.kill()
        g = vmtest.guest()
        r = Booted(out, d, "resumed", extra=["-kernel", g.kernel, "-initrd", g.initrd])
        try:
            log(f"boot: {r.info}")
            check(r.info["resumed"], "resumed from the snapshot")
            check("'ide0-cd0' emptied (no medium)" in (r.info.get("disks-note") or ""),
                  f"the cdrom, not captured, is emptied and the note says so: {r.info.get('disks-note')!r}")
            check(r.agent.wait_ready(60) == boot_id, "the same guest (boot id)")
            r.agent.cmd("verify")
            r.agent.cmd("rawverify /dev/vda 0 4 seed=1")
            bad = r.agent.cmd("rawverify /dev/vda 0 4 seed=2", check=False)
            check(not bad.ok, "record B, written after the snapshot, is not on the resumed disk")
            nodes = {n["node-name"]: n for n in r.qmp("query-named-block-nodes", {"flat": True})}
            check(nodes["vda-fmt"]["drv"] == "raw" and nodes["sdb-fmt"]["drv"] == "raw"
                  and "vda-file" not in nodes and "sdb-file" not in nodes,
                  f"the devices' nodes are vmsnap's, under their names: {sorted(nodes)}")
            check(all(qcow2 not in json.dumps(n) and raw not in json.dumps(n) for n in nodes.values()),
                  "no node opens the VM's own images")
            devs = {b.get("qdev"): (b.get("inserted") or {}).get("node-name") for b in r.qmp("query-block")}
            check(devs.get("/machine/peripheral/vda/virtio-backend") == "vda-fmt" and devs.get("sdb") == "sdb-fmt",
                  f"devices on their nodes: {devs}")
            # The guest has no SCSI driver: read what the scsi-hd device's node is served from, the boot's export.
            sock = os.path.join(r.info["rundir"], "nbd1.sock")
            check(sock in nodes["sdb-fmt"]["file"], f"sdb-fmt is served from {sock}: {nodes['sdb-fmt']['file']}")
            copy = os.path.join(d, "sdb.copy")
            subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", f"nbd+unix:///?socket={sock}", copy],
                           check=True)
            with open(copy, "rb") as f:
                f.seek(1 << 20)
                check(f.read(len(SCSI_A)) == SCSI_A, "the SCSI disk as of the snapshot (A, not B)")
            blk = {b.get("qdev"): b for b in r.qmp("query-block")}
            cd = [b for b in blk.values() if b["device"] == "ide0-cd0"]
            check(len(cd) == 1 and "inserted" not in cd[0], f"the cdrom is there without medium: {cd}")
            check(r.status() == "running", "running")
            log(f"archive made by {'snap --qmp' if by_snap else 'hand'}; lazy={r.info.get('lazy')}")
            # A thin snapshot of the resumed VM chains on the archive and resumes exactly, the kernel and initrd
            # it now stores standing in for the ones given after "--".
            r.agent.cmd("rawwrite /dev/vda 16384 2 seed=3")   # C
            thin = os.path.join(d, "thin.vmsnap")
            res = vmtest.vmsnap("snap", "--qmp", r.qmp_path, "-o", thin, "--thin", "--json", json_out=True)
            log(f"thin: {res}")
        finally:
            r.close()
        t = Booted(thin, d, "thin")
        try:
            check(t.info["resumed"] and t.info["lazy"], f"the thin snapshot resumed, its RAM lazily: {t.info}")
            check(t.agent.wait_ready(60) == boot_id, "the same guest (boot id)")
            t.agent.cmd("verify")
            t.agent.cmd("rawverify /dev/vda 0 4 seed=1")
            t.agent.cmd("rawverify /dev/vda 16384 2 seed=3")
        finally:
            t.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
