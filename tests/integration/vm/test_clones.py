"""Clones: two VMs resumed side by side from one snapshot each get their own VM generation ID (QEMU's vmgenid device,
which vmsnap adds at a cold boot), different from the VM the snapshot was taken of, while being the same guest
(same boot id, RAM pattern intact, heartbeat continuing). A guest kernel with a vmgenid driver reseeds its RNG on it."""
import os

from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest


def genid(vm):
    return vm.qmp("query-vm-generation-id")["guid"]


def test():
    d = tmpdir()
    vms = []
    try:
        base = base_archive(d)
        src = Booted(base, d, "src", extra=guest_args(), args=["--ram", "128M"])
        vms.append(src)
        boot_id = src.agent.wait_ready(120)
        src.agent.cmd("fill 24 seed=11")
        g0 = src.info.get("generation-id")
        check(g0 and g0 == genid(src), f"boot reports the VM generation ID QEMU has: {g0}")
        out = os.path.join(d, "warm.vmsnap")
        snap(src.qmp_path, out)
        src.close()
        bits = vmtest.vmsnap("info", out, "--json", json_out=True)["incompat_features"]
        check(bits & 2, f"the archive of a VM with vmgenid has the VMGENID feature bit (incompatible bits {bits:#x})")

        a = Booted(out, d, "a")
        vms.append(a)
        b = Booted(out, d, "b")
        vms.append(b)
        ga, gb = genid(a), genid(b)
        log(f"generation IDs: source {g0}, clone a {ga}, clone b {gb}")
        check(a.info.get("generation-id") == ga and b.info.get("generation-id") == gb,
              "boot --json reports each clone's generation ID")
        check(len({g0, ga, gb}) == 3, "each clone has its own generation ID, unlike the source's")
        for name, vm in (("a", a), ("b", b)):
            r = vm.agent.cmd("status", timeout=60)
            check(r["boot"] == boot_id, f"clone {name} is the same guest (boot id {r['boot']})")
            vm.agent.cmd("verify seed=11", timeout=60)
            before = vm.agent.last_heartbeat()
            last = vm.agent.wait_heartbeats(5, timeout=30)
            check(before is None or last[1] > before[1], f"clone {name}'s heartbeat counter goes on ({before} -> {last})")
    finally:
        for vm in vms:
            vm.close()


vmtest.main(test)
