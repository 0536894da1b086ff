"""snap --libvirt DOMAIN with its disks, through libvirt's pull-mode backup API, against a real libvirtd and a TCG
domain (a qcow2 disk vda, a read-only raw disk vdb, a raw disk vdc). With vm.unprivileged_userfaultfd=0 (Debian's
default: precopy) a full snapshot of vda; with 1 (background-snapshot) a thin one of vda (through the checkpoint)
and vdc (raw: no bitmap, read in full). Each time: a record written
before is in the archive's disk, the one written after is not; the domain runs, its block list, snapshot list and
migration settings are as before, only vmsnap's newest checkpoint exists, no backup job or private directory is
left. boot --trust-archive resumes the thin archive: RAM and disks as of it, libvirt's master key dropped
and noted, its serial port the console. Then the failures: SIGTERM mid-capture, and libvirt refusing the backup
(a backup job of the user's runs); and a thin snapshot against an older archive, whose checkpoint is gone: read in full, said so."""
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lvtest  # noqa: E402
import vmtest  # noqa: E402
from vmtest import check, check_eq, log  # noqa: E402

REC_MAGIC = 0x4345524e53564d56
MiB = 1 << 20


def record_seed(path, off):
    """The seed of the agent's raw record at byte off of a disk image, None if there is none."""
    with open(path, "rb") as f:
        f.seek(off)
        magic, seed, at = struct.unpack("<3Q", f.read(24))
    return seed if magic == REC_MAGIC and at == off else None


class Checks:
    """What must be the same after every snapshot, failed or not."""

    def __init__(self, lv, dom, tmp):
        self.lv, self.dom, self.tmp = lv, dom, tmp
        self.blk = lv.virsh("domblklist", dom.name)
        self.snaps = lv.virsh("snapshot-list", "--name", dom.name)
        self.mig = self.migration()

    def migration(self):
        caps = {c["capability"]: c["state"] for c in self.dom.qmp("query-migrate-capabilities")}
        return caps, self.dom.qmp("query-migrate-parameters")

    def checkpoints(self):
        return self.lv.virsh("checkpoint-list", "--name", self.dom.name).split()

    def after(self, what, checkpoints):
        lv, dom = self.lv, self.dom
        check(dom.state().startswith("running"), f"{what}: domain running: {dom.state()!r}")
        hb0 = dom.agent().last_heartbeat()
        dom.agent().wait_heartbeats(3)
        check(dom.agent().last_heartbeat()[1] > hb0[1], f"{what}: the guest's heartbeat goes on")
        check_eq(lv.virsh("domblklist", dom.name), self.blk, f"{what}: domblklist")
        check_eq(lv.virsh("snapshot-list", "--name", dom.name), self.snaps, f"{what}: snapshot-list")
        check_eq(self.migration(), self.mig, f"{what}: migration capabilities and parameters")
        check_eq(self.checkpoints(), checkpoints, f"{what}: checkpoints")
        job = " ".join(lv.virsh("domjobinfo", dom.name).split())
        check("Job type: None" in job, f"{what}: no backup job left: {job!r}")
        check_eq(glob.glob(os.path.join(self.tmp, "vmsnap-backup-*")), [], f"{what}: private directory removed")


def snap(lv, dom, out, uffd, disks, *extra):
    res, err = lvtest.snap(lv, dom, out, uffd, *extra)
    log(f"disks: {res['disks-stats']}")
    check("disk vdb is read-only: not captured" in err, f"the read-only disk is noted: {err!r}")
    check_eq(res["disks"], disks, "captured disks")
    check_eq([x["name"] for x in res["disks-stats"]], res["disks"], "what was read of each")
    check(os.stat(out).st_mode & 0o777 == 0o600, "the archive holds guest memory: 0600")
    return res


def extract(out, n, path):
    vmtest.vmsnap("extract", out, "--disk", str(n), "-o", path)
    return path


def resume(archive, d, boot_id):
    """boot --trust-archive of the domain's thin archive: RAM and disks as of s2, with what only libvirt gave its
    QEMU (master key, fd chardevs) rewritten and named in replay-notes; its serial device is the console."""
    with lvtest.Booted(archive, d, "b", "--trust-archive") as b:
        check("secret masterKey0" in b.notes and "dropped" in b.notes, f"the master key's drop is noted: {b.notes!r}")
        agent = b.agent
        check_eq(agent.wait_ready(120), boot_id, "resumed the domain's guest (same boot id)")
        agent.cmd("verify")                                   # the RAM pattern of fill seed=11
        agent.cmd("rawverify /dev/vda 0 4 seed=2")            # B: as of s2
        agent.cmd(f"rawverify /dev/vda {4 * MiB} 1024 seed=5")  # through s2's parent
        agent.cmd("rawverify /dev/vdc 65536 4 seed=6")


def test():
    d = tempfile.mkdtemp(prefix="vmsnap-lvdisk-")
    try:
        os.chmod(d, 0o711)   # QEMU (libvirt-qemu) reaches its files and vmsnap's private directory below
        tmp = os.path.join(d, "tmp")
        os.mkdir(tmp, 0o711)
        os.environ["TMPDIR"] = tmp   # where vmsnap makes its private directory (checked empty afterwards)
        vda, vdb, vdc = (os.path.join(d, n) for n in ("vda.qcow2", "vdb.raw", "vdc.raw"))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vda, "64M"], check=True)
        for p in (vdb, vdc):
            with open(p, "wb") as f:
                f.truncate(MiB)
        for p in (vda, vdb, vdc):
            os.chown(p, *lvtest._qemu_ids())
        with lvtest.Libvirtd() as lv:
            dom = lv.domain(f"vmsnap-disks-{os.getpid()}", disks=[(vda, "qcow2", "vda", False),
                                                                  (vdb, "raw", "vdb", True),
                                                                  (vdc, "raw", "vdc", False)])
            agent = dom.agent()
            agent.cmd("fill 16 seed=11")
            agent.cmd(f"rawwrite /dev/vda {4 * MiB} 1024 seed=5")   # 4 MiB the thin snapshot must not read again
            agent.cmd("rawwrite /dev/vda 0 4 seed=1")              # A
            c = Checks(lv, dom, tmp)
            check_eq(c.checkpoints(), [], "no checkpoint before")

            bad = os.path.join(d, "bad.vmsnap")
            for disks, want in (("vdx", "no disk 'vdx'"), ("vdb", "disk vdb is read-only")):
                p = vmtest.vmsnap("snap", "--libvirt", dom.name, "-c", lv.uri, "-o", bad, "--disks", disks,
                                  check=False)
                check(p.returncode == 1 and want in p.stderr, f"--disks {disks} refused: {p.stderr.strip()!r}")
            check(not os.path.exists(bad), "no archive for a refused --disks")

            s1 = os.path.join(d, "s1.vmsnap")
            r1 = snap(lv, dom, s1, 0, ["vda"], "--disks", "vda")
            agent.cmd("rawwrite /dev/vda 0 4 seed=2")              # B, after s1
            agent.cmd(f"rawwrite /dev/vda {MiB} 4 seed=3")
            check_eq(record_seed(extract(s1, 0, os.path.join(d, "s1.vda")), 0), 1, "s1 holds A, not B")
            check_eq(record_seed(os.path.join(d, "s1.vda"), 4 * MiB), 5, "s1 holds the 4 MiB written before")
            c.after("s1", [r1["checkpoint"]])
            cfg_path = os.path.join(d, "s1.json")
            vmtest.vmsnap("extract", s1, "--config", "-o", cfg_path)
            with open(cfg_path) as f:
                cfg = json.load(f)
            check(cfg["foreign"] and cfg["cmdline"], "the config is the domain's command line")
            disk = dict(cfg["disks"][0])
            node = disk.pop("node", "")
            check_eq(disk, {"name": "vda", "stream": "disk-vda", "size": 64 * MiB, "format": "raw",
                            "interface": "virtio-blk-pci", "device": "virtio-disk0"}, "the config's disk")
            check(len(cfg["disks"]) == 1 and node.startswith("libvirt-") and node.endswith("-format"),
                  f"one disk, on libvirt's format node: {cfg['disks']}")
            # libvirt's command line names the domain's kernel and initrd, host files the archive does not store:
            # unless the user gives them, boot refuses in one line, starting nothing (docs/LIBVIRT.md, "Resuming").
            p = vmtest.vmsnap("boot", s1, "--detach", "--qmp", os.path.join(d, "r.qmp"), "--console",
                              os.path.join(d, "r.con"), check=False, timeout=180)
            err = p.stderr.strip()
            check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err and "--trust-archive" in err
                  and "'-kernel " in err, f"boot of a libvirt domain's archive: one clear line: {err!r}")
            check(not os.path.exists(os.path.join(d, "r.qmp")), "no QEMU was started")

            s2 = os.path.join(d, "s2.vmsnap")
            agent.cmd("rawwrite /dev/vdc 65536 4 seed=6")
            r2 = snap(lv, dom, s2, 1, ["vda", "vdc"], "--thin", "--parent", s1)
            agent.cmd("rawwrite /dev/vda 0 4 seed=4")              # after s2
            agent.cmd("rawwrite /dev/vdc 65536 4 seed=7")
            check(r2["disks-stats"][0]["incremental"], "s2 read vda through the checkpoint's bitmap")
            check(not r2["disks-stats"][1]["incremental"] and "disk vdc has no checkpoint bitmap" in r2["disks-note"],
                  f"the raw vdc read in full, and said so: {r2['disks-note']!r}")
            check_eq(record_seed(extract(s2, 1, os.path.join(d, "s2.vdc")), 65536), 6, "s2's vdc as of s2")
            v2 = extract(s2, 0, os.path.join(d, "s2.vda"))
            check_eq((record_seed(v2, 0), record_seed(v2, MiB), record_seed(v2, 4 * MiB)), (2, 3, 5),
                     "s2 holds B and the record after s1, and s1's 4 MiB through its parent")
            read1, read2 = r1["disks-stats"][0]["data-bytes"], r2["disks-stats"][0]["data-bytes"]
            log(f"vda read: full {read1} bytes, thin {read2} bytes; archives {r1['archive-bytes']} and "
                f"{r2['archive-bytes']} bytes")
            check(read1 >= 4 * MiB and read2 * 8 < read1, f"the thin capture read only what changed: {read2}, {read1}")
            check(r2["archive-bytes"] * 2 < r1["archive-bytes"], "the thin archive is much smaller than the full one")
            c.after("s2", [r2["checkpoint"]])   # s1's checkpoint removed as the chain moved on
            resume(s2, d, dom.agent().boot_id)

            # SIGTERM mid-capture: the backup job runs (held by a test fault point until the signal comes).
            s3 = os.path.join(d, "s3.vmsnap")
            env = dict(os.environ, VMSNAP_TEST_FAULT="lvdisk-hold")
            p = subprocess.Popen([vmtest.vmsnap_path(), "snap", "--libvirt", dom.name, "-c", lv.uri, "-o", s3,
                                  "--thin", "--parent", s2], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 60
                while not glob.glob(os.path.join(tmp, "vmsnap-backup-*", "nbd.sock")):
                    check(p.poll() is None and time.monotonic() < deadline, "the capture reaches the backup job")
                    time.sleep(0.02)
                check(len(c.checkpoints()) == 2, "the capture's checkpoint exists while it runs")
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            check(p.returncode == 1 and "interrupted by signal 15" in err, f"SIGTERM: one line: {err.strip()!r}")
            check(not os.path.exists(s3), "no archive after SIGTERM")
            c.after("SIGTERM", [r2["checkpoint"]])

            # libvirt refuses: a backup job of someone else's runs. It is left alone.
            other = os.path.join(d, "other")
            os.mkdir(other, 0o700)
            os.chown(other, *lvtest._qemu_ids())
            bx = os.path.join(d, "other.xml")
            with open(bx, "w") as f:
                f.write(f"<domainbackup mode='pull'><server transport='unix' socket='{other}/nbd.sock'/><disks>"
                        f"<disk name='vda' backup='yes' type='file'><scratch file='{other}/vda.scratch'/></disk>"
                        f"<disk name='vdb' backup='no'/><disk name='vdc' backup='no'/></disks></domainbackup>")
            lv.virsh("backup-begin", dom.name, bx)
            p = vmtest.vmsnap("snap", "--libvirt", dom.name, "-c", lv.uri, "-o", s3, check=False)
            err = p.stderr.strip()
            check(p.returncode == 1 and "libvirt refused the backup" in err and "\n" not in err,
                  f"libvirt's refusal, in one line: {err!r}")
            check(not os.path.exists(s3), "no archive when libvirt refuses")
            check(os.path.exists(os.path.join(other, "nbd.sock")), "the user's backup job still runs")
            lv.virsh("domjobabort", dom.name)
            time.sleep(0.5)
            c.after("refused", [r2["checkpoint"]])

            # Thin against an older archive, whose checkpoint went when s2 was taken: read in full, said so.
            s4 = os.path.join(d, "s4.vmsnap")
            r4 = snap(lv, dom, s4, 1, ["vda", "vdc"], "--thin", "--parent", s1)
            check(not any(x["incremental"] for x in r4["disks-stats"]) and
                  f"no checkpoint {r1['checkpoint']}" in r4["disks-note"], f"full reads, noted: {r4['disks-note']!r}")
            check_eq(record_seed(extract(s4, 0, os.path.join(d, "s4.vda")), 0), 4, "s4 holds the record after s2")
            c.after("thin against an older parent", [r4["checkpoint"]])
            check(agent.cmd("verify seed=11"), "the guest's RAM pattern is intact")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    vmtest.main(test)
