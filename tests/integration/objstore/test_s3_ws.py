"""A working set on S3 (a real single-node Ceph RGW; QEMU 7.2 pass only: the store is under test, not QEMU).

A snapshot in the store is booted with --record-ws while the guest reads its pattern; `ws save` writes the thin
archive to the store (through the upload sink) and `info` reads the same ranges back from it; a boot of it from
the store on a "second host" (an empty block cache) has the whole working set in the page cache, read with range
GETs several at a time, and the pattern verifies."""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lazy"))
from vmsnaptest import Booted, boot_filled, check, log, snap, tmpdir, vmtest  # noqa: E402
from wstest import read_record, wait_report  # noqa: E402
import cephtest  # noqa: E402

B = "vmsnap-ws"


def test():
    vmtest.skip_on_qemu((8,), "the S3 tests run in the QEMU 7.2 pass: they test the store, not QEMU")
    d = tmpdir()
    vms = []
    try:
        with cephtest.Ceph() as c:
            os.environ.update(c.env())
            os.environ["VMSNAP_CACHE_DIR"] = os.path.join(d, "cache-1")   # never the user's own cache
            c.make_bucket(B)
            vm = boot_filled(d, "src", 16, 5, ram="128M")
            vms.append(vm)
            ua, uw = f"s3://{B}/vms/a.vmsnap", f"s3://{B}/vms/a-ws.vmsnap"
            snap(vm.qmp_path, ua)
            vm.close()

            rec = Booted(ua, d, "rec", args=["--record-ws", "4"])
            vms.append(rec)
            rec.agent.cmd("verify seed=5")
            recorded = wait_report(rec.info["rundir"], "recorded")["recorded"]
            _, entries = read_record(recorded["file"])
            saved = vmtest.vmsnap("ws", "save", "--qmp", rec.qmp_path, "-o", uw, "--json", json_out=True)
            log(f"recorded {recorded}; saved {saved}")
            check(saved["bytes"] == recorded["bytes"] >= 16 << 20, "the store's copy holds the recorded working set")
            rec.close()
            check(not c.uploads(B), "no multipart upload left open")
            ws = vmtest.vmsnap("info", uw, "--json", json_out=True)["working_set"]
            check([tuple(x) for x in ws["entries"]] == entries, "info reads the same ranges back from the store")

            os.environ["VMSNAP_CACHE_DIR"] = os.path.join(d, "cache-2")   # a second host: nothing cached
            v = Booted(uw, d, "ws")
            vms.append(v)
            pf = wait_report(v.info["rundir"], "prefetch")["prefetch"]
            log(f"working-set prefetch from the store: {pf}")
            check(pf["bytes"] == recorded["bytes"] and pf["requests"] > 0, f"all of it in the page cache: {pf}")
            check(pf.get("started", 0) < 0, f"fetched from the store while QEMU starts, not once the VM runs: {pf}")
            v.agent.cmd("verify seed=5")
            v.close()
    finally:
        for v in vms:
            v.close()
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
