"""`vmsnap boot` of a snapshot of a VM vmsnap did not start, with its captured disks: the VM is started the way a
management tool starts one (fleecelib: q35, a -blockdev qcow2 on virtio-blk-pci, a raw -blockdev on virtio-scsi, a
read-only IDE cdrom -drive). The guest writes record A, `snap --qmp` takes the snapshot, the guest writes B. Booting
the archive without --trust-archive (the test guest's kernel and initrd given after "--") resumes the guest with A
and not B, its RAM pattern intact and mapped lazily, each captured disk served by vmsnap under the device it had,
and the cdrom emptied; a thin snapshot of the resumed VM resumes with what the guest wrote since."""
import json
import os
import shutil
import subprocess

from fleecelib import SCSI_FILL, managed_vm
from vmsnaptest import Booted, check, log, tmpdir, vmtest

SCSI_LATER = b"written-after-the-snapshot\n" * 100   # the guest has no SCSI driver: the host writes the raw disk


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
        vm, qcow2, raw = managed_vm(d, "managed")
        with vm:
            a = vm.agent()
            boot_id = a.boot_id
            a.cmd("fill 16 seed=7")
            a.cmd("rawwrite /dev/vda 0 4 seed=1")           # A
            out = os.path.join(d, "snap.vmsnap")
            res = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", out, "--json", json_out=True)
            log(f"snap: {res}")
            check(res["disks"] == ["vda", "sdb"], f"both writable disks captured: {res['disks']}")
            a.cmd("rawwrite /dev/vda 0 4 seed=2")           # B
            with open(raw, "r+b") as f:
                f.seek(1 << 20)
                f.write(SCSI_LATER)
            vm.kill()
        g = vmtest.guest()
        r = Booted(out, d, "resumed", extra=["-kernel", g.kernel, "-initrd", g.initrd])
        try:
            log(f"boot: {r.info}")
            check(r.info["resumed"] and r.info["lazy"], f"resumed from the snapshot, its RAM lazily: {r.info}")
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
                check(f.read(len(SCSI_FILL)) == SCSI_FILL, "the SCSI disk as of the snapshot, not as written after it")
            blk = {b.get("qdev"): b for b in r.qmp("query-block")}
            cd = [b for b in blk.values() if b["device"] == "ide0-cd0"]
            check(len(cd) == 1 and "inserted" not in cd[0], f"the cdrom is there without medium: {cd}")
            check(r.status() == "running", "running")
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
