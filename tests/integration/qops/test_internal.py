"""vmsnap internal save|load|delete|list on a real QEMU with a qcow2 disk: the guest's RAM pattern written before
a save verifies after the load, one written after the save is gone; errors name the tag or node (raw disk,
duplicate and missing tags); the VM runs afterwards if it ran before, stays paused if it was paused."""
import os
import tempfile
import time

from qopslib import check, log, vmsnap, vmtest


def snaps(S):
    """{node: [tags]} from internal list --json."""
    doc = vmsnap("internal", "list", "--qmp", S, "--json").json()
    return {d["node"]: d for d in doc["devices"]}


def check_resumed(r, by, before, after):
    """The run-state keys of --json, with the meanings snap --json gives them."""
    got = (r.get("resumed-by"), r.get("state-before"), r.get("state-after"))
    check(got == (by, before, after), f"{r.get('op')} report: resumed-by/state-before/state-after {got}, "
          f"expected {(by, before, after)}")


def test():
    with tempfile.TemporaryDirectory(prefix="vmsnap-qops-") as d:
        disk = vmtest.make_disk(os.path.join(d, "disk.qcow2"), "64M", "qcow2")
        raw = vmtest.make_disk(os.path.join(d, "data.raw"), "16M")
        with vmtest.VM(mem="128M", disks=[disk], name="internal") as vm:
            agent = vm.agent()
            S = vm.qmp_path
            agent.cmd("fill 16 seed=11")

            t0 = time.time()
            r = vmsnap("internal", "save", "--qmp", S, "snap1", "--json").json()
            check(r["method"] == "job" and r["devices"] == 1 and r["tag"] == "snap1", f"save report: {r}")
            check_resumed(r, "qemu", "running", "running")   # the job resumes the VM itself
            check(vm.qmp.status() == "running", "VM not running after save")
            agent.cmd("fill 16 seed=22")   # written after the save: must be gone after the load

            devs = snaps(S)
            qnode = r["vmstate"]
            check(qnode in devs, f"vmstate node {qnode} not listed: {devs}")
            s = devs[qnode]["snapshots"]
            check(len(s) == 1 and s[0]["tag"] == "snap1", f"list: {s}")
            check(s[0]["vmstate_size"] > 16 << 20, f"vmstate holds the 16 MiB pattern: {s[0]}")
            check(s[0]["vm_clock"] > 0, f"vm clock: {s[0]}")
            check(abs(s[0]["date"] - t0) < 120, f"date {s[0]['date']} vs now {t0}")
            human = vmsnap("internal", "list", "--qmp", S).out
            check("snap1" in human and qnode in human and "VM CLOCK" in human, f"human list: {human}")

            e = vmsnap("internal", "save", "--qmp", S, "snap1", rc=1).err
            check("'snap1' already exists" in e and qnode in e, f"duplicate tag message: {e}")
            e = vmsnap("internal", "load", "--qmp", S, "nope", rc=1).err
            check("no snapshot 'nope'" in e, f"missing tag (load) message: {e}")
            e = vmsnap("internal", "delete", "--qmp", S, "nope", rc=1).err
            check("no snapshot 'nope'" in e, f"missing tag (delete) message: {e}")
            vmsnap("internal", "load", "--qmp", S, rc=2)
            vmsnap("internal", "frobnicate", "--qmp", S, "x", rc=2)
            check(vm.qmp.status() == "running", "VM not running after refused commands")

            r = vmsnap("internal", "load", "--qmp", S, "snap1", "--json").json()
            check_resumed(r, "qemu", "running", "running")
            check(vm.qmp.status() == "running", "VM not running after load")
            agent.cmd("verify seed=11")
            after = agent.cmd("verify seed=22", check=False)
            check(not after.ok, f"pattern written after the save survived the load: {after}")
            log(f"after load: seed 11 verifies, seed 22 gone ({after.text})")

            # HMP path (what QEMUs without the jobs get).
            r = vmsnap("internal", "save", "--qmp", S, "snap2", "--hmp", "--json").json()
            check(r["method"] == "hmp", f"--hmp: {r}")
            check_resumed(r, "qemu", "running", "running")
            check([x["tag"] for x in snaps(S)[qnode]["snapshots"]] == ["snap1", "snap2"], "snap2 listed")
            e = vmsnap("internal", "save", "--qmp", S, "snap2", "--hmp", rc=1).err
            check("already exists" in e, f"HMP duplicate (HMP itself would overwrite): {e}")
            vmsnap("internal", "delete", "--qmp", S, "snap2", "--hmp")
            vmsnap("internal", "delete", "--qmp", S, "snap1")
            check(snaps(S)[qnode]["snapshots"] == [], "snapshots deleted")

            # A paused VM stays paused.
            vm.qmp.cmd("stop")
            r = vmsnap("internal", "save", "--qmp", S, "paused", "--json").json()
            check(vm.qmp.status() == "paused", f"paused VM was resumed: {vm.qmp.status()}")
            check_resumed(r, "left-paused-as-found", "paused", "paused")
            vm.qmp.cmd("cont")

            # A writable raw disk cannot hold snapshots: refused naming it, unless --devices leaves it out.
            vm.qmp.cmd("blockdev-add", driver="raw", **{"node-name": "rawdata"},
                       file={"driver": "file", "filename": raw})
            vm.qmp.cmd("device_add", driver="virtio-blk-pci", drive="rawdata", id="vdraw")
            e = vmsnap("internal", "save", "--qmp", S, "withraw", rc=1).err
            check("'rawdata'" in e and "raw" in e and "--devices" in e, f"raw disk message: {e}")
            e = vmsnap("internal", "save", "--qmp", S, "withraw", "--devices", f"{qnode},rawdata", rc=1).err
            check("'rawdata' is raw" in e, f"raw --devices message: {e}")
            e = vmsnap("internal", "save", "--qmp", S, "x", "--devices", qnode, "--vmstate", "rawdata", rc=1).err
            check("'rawdata'" in e, f"raw vmstate message: {e}")
            check(vm.qmp.status() == "running", "VM not running after raw refusals")
            agent.cmd("fill 8 seed=33")
            vmsnap("internal", "save", "--qmp", S, "qonly", "--devices", qnode, "--vmstate", qnode)
            agent.cmd("fill 8 seed=44")
            vmsnap("internal", "load", "--qmp", S, "qonly", "--devices", qnode)
            check(vm.qmp.status() == "running", "VM not running after --devices load")
            agent.cmd("verify seed=33")
            vmsnap("internal", "delete", "--qmp", S, "qonly", "--devices", qnode)
            vmsnap("internal", "delete", "--qmp", S, "paused", "--devices", qnode)


vmtest.main(test)
