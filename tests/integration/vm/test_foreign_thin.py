"""`snap --thin --parent PREV` of a QEMU vmsnap did not start: each capture leaves a dirty bitmap named after its
archive on the disks; the next thin capture reads only what it marks (a small archive, content exact through the
chain), and removes the stale one. Without the bitmap (removed here, as a restart would) it reads everything,
compares against the parent, says so, and is still small."""
import json
import os
import shutil

from fleecelib import check_untouched, graph, managed_vm, record_seed
from vmsnaptest import check, log, snap, tmpdir, vmtest


def vmsnap_bitmaps(vm):
    return {n["node-name"]: sorted(b.get("name", "") for b in n.get("dirty-bitmaps", [])
                                   if b.get("name", "").startswith("vmsnap-"))
            for n in vm.qmp.cmd("query-named-block-nodes", {"flat": True}) if n["node-name"] in ("vda-fmt", "sdb-fmt")}


def extract_seeds(archive, d, offs):
    x = os.path.join(d, "x.raw")
    vmtest.vmsnap("extract", archive, "--disk", "0", "-o", x, "--quiet")
    seeds = [record_seed(x, o) for o in offs]
    os.unlink(x)
    return seeds


def test():
    d = tmpdir()
    try:
        vm, _, _ = managed_vm(d, "thin")
        with vm:
            a = vm.agent()
            a.cmd("fill 16 seed=5")
            a.cmd("rawwrite /dev/vda 0 2048 seed=1")   # 8 MiB of records
            before = graph(vm)
            s1, s2, s3 = (os.path.join(d, f"s{i}.vmsnap") for i in (1, 2, 3))
            r1 = snap(vm.qmp_path, s1)
            check(not r1["disks-incremental"], "a full capture reads everything")
            bm1 = vmsnap_bitmaps(vm)
            log(f"bitmaps after s1: {bm1}")
            check(all(len(v) == 1 for v in bm1.values()) and len(bm1) == 2, f"one vmsnap bitmap per disk: {bm1}")

            a.cmd("rawwrite /dev/vda 4194304 4 seed=2")
            r2 = snap(vm.qmp_path, s2, "--thin", "--parent", s1)
            bm2 = vmsnap_bitmaps(vm)
            log(f"s2: incremental {r2['disks-incremental']}, bitmaps {bm2}")
            check(r2["disks-incremental"] and "disks-note" not in r2, f"read through the bitmap: {r2}")
            log(f"read from the views: full {r1['disks-read-bytes']}, thin {r2['disks-read-bytes']}")
            check(r1["disks-read-bytes"] >= 8 << 20 and r2["disks-read-bytes"] <= 1 << 20,
                  "only what the bitmap marks is read")
            check(all(len(v) == 1 for v in bm2.values()) and bm2 != bm1, f"the stale bitmap replaced: {bm2}")
            z1, z2 = os.path.getsize(s1), os.path.getsize(s2)
            log(f"sizes: full {z1}, thin {z2} ({z2 / z1:.3f})")
            check(z2 < 0.25 * z1, f"the thin archive holds only what changed: {z2} vs {z1}")
            check(extract_seeds(s2, d, [0, 4194304, 4194304 + 16384]) == [1, 2, 1],
                  "the thin chain reads the changed records and the old ones")

            # The bitmap is gone (as after a restart): everything is read and compared against the parent.
            for node in ("vda-fmt", "sdb-fmt"):
                vm.qmp.cmd("block-dirty-bitmap-remove", {"node": node, "name": bm2[node][0]})
            a.cmd("rawwrite /dev/vda 0 4 seed=3")
            p = vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", s3, "--json", "--thin", "--parent", s2)
            r3 = json.loads(p.stdout)
            log(f"s3: {r3['disks-incremental']} {r3.get('disks-note')}; stderr {p.stderr.strip()}")
            check(not r3["disks-incremental"] and "missing on disk(s) vda, sdb" in r3["disks-note"] and
                  "compared against the parent" in p.stderr, "the fallback is said")
            check(r3["disks-read-bytes"] >= 8 << 20, f"everything read: {r3['disks-read-bytes']}")
            z3 = os.path.getsize(s3)
            check(z3 < 0.25 * z1, f"compared against the parent, it is still small: {z3} vs {z1}")
            check(extract_seeds(s3, d, [0, 4194304, 16384]) == [3, 2, 1], "the fallback's content is exact")
            check(all(len(v) == 1 for v in vmsnap_bitmaps(vm).values()), "a new bitmap for the next one")
            check_untouched(vm, before, "after the thin snapshots")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
