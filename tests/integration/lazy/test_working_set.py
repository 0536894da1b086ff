"""The recorded working set of a snapshot (256 MiB guest, 16 MiB pattern).

1. A snapshot without a working set resumes as before: no working set reported, the pattern verifies.
2. `boot --record-ws` of it, the guest reading its pattern during the recording: the run directory's record
   (written 0600 when the time is up; ws.json, status --json and the boot's log say so) covers at least the
   pattern's pages, each page once, page-aligned, within the RAM stream, and not much more: the pages the guest
   touched, not the 4 MiB the kernel reads around each fault of QEMU's RAM (that record was 78-80 MiB); --record-ws
   with --eager is refused.
3. `ws save --qmp` writes a small thin archive over the snapshot (no data copied, 0600) whose `info --json` shows the
   same ranges, in the same order, as the record.
4. Booting it prefetches the working set first, starting before the VM runs (ws.json's "started", seconds from
   the VM running, is negative): the report's bytes equal the recorded total, read in merged requests that stay a
   bounded multiple of it; the pattern verifies. With `--prefetch none` nothing is prefetched.
5. A damaged working-set stream: the boot says so in a note naming the archive and the stream, resumes without it,
   and the pattern verifies (no crash, no prefetch report of it).
6. An encrypted snapshot: `ws save` needs its key and seals the thin archive with it; booted with the key, the
   working set is prefetched.
7. QEMU's page map unreadable (fault injection: the server looks at /proc/0): the record keeps every page read and
   ws.json's note and the log say why."""
import os
import shutil
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, boot_filled, check, log, snap, tmpdir, vmtest  # noqa: E402
from wstest import PAGE, read_record, wait_report  # noqa: E402

FILL = 16
RAM = 256 << 20
RECORD_S = 5
# What the guest touches besides the pattern while it checks it (kernel, agent, QEMU's device state): 11 MiB
# measured; readahead would add tens of MiB.
ALLOWANCE = 32 << 20


def damage_ws(src, dst):
    """A copy of src whose working-set block is damaged: its first bytes are stored as they are (LZ4 starts with
    literals), so the record's magic is found and one byte of it flipped."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"vmsnapws")
    check(at > 0 and data.find(b"vmsnapws", at + 1) < 0, "the working set's block found in the archive")
    data[at + 7] ^= 0x40
    with open(dst, "wb") as f:
        f.write(data)
    os.chmod(dst, 0o600)


def test():
    d = tmpdir()
    vms = []
    try:
        vm = boot_filled(d, "src", FILL, 3)
        arc = os.path.join(d, "A.vmsnap")
        snap(vm.qmp_path, arc)
        key = os.path.join(d, "k.key")
        vmtest.vmsnap("keygen", "-o", key)
        sealed = os.path.join(d, "E.vmsnap")
        snap(vm.qmp_path, sealed, "--encrypt", key)
        vm.close()

        # 1. no working set: as before
        v = Booted(arc, d, "plain")
        vms.append(v)
        check("working-set" not in v.info and "ws-note" not in v.info, f"no working set reported: {v.info}")
        v.agent.cmd("verify seed=3")
        v.close()

        p = vmtest.vmsnap("boot", arc, "--record-ws", "3", "--eager", check=False)
        check(p.returncode == 2 and "--record-ws" in p.stderr, f"--record-ws with --eager refused: {p.stderr}")

        # 2. record
        rec = Booted(arc, d, "rec", args=["--record-ws", str(RECORD_S)])
        vms.append(rec)
        rundir = rec.info["rundir"]
        check(rec.info.get("record-ws", {}).get("file") == os.path.join(rundir, "working-set"),
              f"boot --json says where the record goes: {rec.info}")
        check("own" in (rec.info.get("memory-note") or ""), f"a note says the server is its own: {rec.info}")
        early = os.path.join(d, "early.vmsnap")
        p = vmtest.vmsnap("ws", "save", rundir, "-o", early, check=False)
        check(p.returncode == 1 and "no working set recorded" in p.stderr and not os.path.exists(early),
              f"ws save before the time is up: {p.stderr}")
        rec.agent.cmd("verify seed=3")
        report = wait_report(rundir, "recorded")
        log(f"ws.json: {report}")
        recorded = report["recorded"]
        path = recorded["file"]
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "the record is 0600")
        streams, entries = read_record(path)
        check(streams == [("ram/mem", RAM)], f"the record names RAM stream ram/mem of the VM's size: {streams}")
        total = sum(ln for _, _, ln in entries)
        check(recorded["bytes"] == total and recorded["ranges"] == len(entries), "ws.json matches the record")
        check(total >= FILL << 20, f"the record covers at least the {FILL} MiB pattern the guest read: {total}")
        check(total <= (FILL << 20) + ALLOWANCE, f"and what the guest touched, not what readahead brought: {total} "
              f"bytes recorded of {recorded.get('read-bytes')} read")
        pages = set()
        for s, off, ln in entries:
            check(s == 0 and off % PAGE == 0 and ln > 0 and off + ln <= RAM, f"range {off}+{ln} in the stream")
            new = set(range(off // PAGE, (off + ln) // PAGE))
            check(not new & pages, f"range {off}+{ln} repeats no page")
            pages |= new
        st = vmtest.vmsnap("status", "--qmp", rec.qmp_path, "--json", json_out=True)
        check(st.get("working-set", {}).get("recorded", {}).get("bytes") == total, f"status --json: {st}")
        text = vmtest.vmsnap("status", "--qmp", rec.qmp_path).stdout
        check(f"working set: {total // PAGE} pages" in text, f"status says it too: {text}")
        with open(os.path.join(rundir, "qemu.log")) as f:
            check("working set recorded" in f.read(), "the boot's log says the working set was recorded")

        # 3. save
        out = os.path.join(d, "W.vmsnap")
        saved = vmtest.vmsnap("ws", "save", "--qmp", rec.qmp_path, "-o", out, "--json", json_out=True)
        check(saved["bytes"] == total and saved["ranges"] == len(entries), f"ws save --json: {saved}")
        log(f"ws save: {saved}, {os.path.getsize(out)} bytes")
        check(os.path.getsize(out) < (1 << 20), f"the thin archive copies no data: {os.path.getsize(out)} bytes")
        check(stat.S_IMODE(os.stat(out).st_mode) == 0o600, "it references guest memory: 0600")
        rec.close()
        own = os.path.join(os.path.dirname(rundir), "pages-")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and [n for n in os.listdir(os.path.dirname(rundir))
                                                if n.endswith(f"-rec{rec.info['boot-pid']}")]:
            time.sleep(0.1)
        check(not [n for n in os.listdir(os.path.dirname(rundir)) if n.endswith(f"-rec{rec.info['boot-pid']}")],
              f"the recording's own page server is gone with its VM ({own}*-rec{rec.info['boot-pid']})")
        info = vmtest.vmsnap("info", out, "--json", json_out=True)
        ws = info.get("working_set", {})
        check(ws.get("streams") == ["ram/mem"] and [tuple(x) for x in ws.get("entries", [])] == entries,
              "info --json shows the recorded ranges in their order")
        check(ws.get("bytes") == total and len(info["parent_chain"]) >= 1, f"over the snapshot: {info['parent_chain']}")

        # 4. boot it: the working set first; with --prefetch none, not at all (not even before the VM runs)
        v = Booted(out, d, "ws-none", args=["--prefetch=none"])
        vms.append(v)
        v.agent.cmd("verify seed=3")
        time.sleep(1)
        check(not os.path.exists(os.path.join(v.info["rundir"], "ws.json")), "--prefetch=none: no working-set prefetch")
        v.close()
        srv = v.info.get("page-server-pid")
        deadline = time.monotonic() + 15   # the next boot gets a server of its own, and nothing in the page cache
        while srv and os.path.exists(f"/proc/{srv}") and time.monotonic() < deadline:
            time.sleep(0.1)
        v = Booted(out, d, "ws")
        vms.append(v)
        check(v.info.get("working-set", {}).get("bytes") == total, f"boot --json reports the working set: {v.info}")
        pf = wait_report(v.info["rundir"], "prefetch")["prefetch"]
        log(f"working-set prefetch: {pf}")
        check(pf["bytes"] == total and pf["read-bytes"] > 0 and pf["seconds"] > 0, f"all of it in the page cache: {pf}")
        check(pf["read-bytes"] <= 2 * total + (8 << 20), f"merged reads, not the RAM between the ranges: {pf}")
        check(-60 < pf.get("started", 0) < 0, f"the working set's prefetch started before the VM ran (QEMU's start "
              f"and device-state load overlap it): {pf}")
        check(abs(pf.get("in-cache", 1) - pf.get("started", 0) - pf["seconds"]) < 0.01,
              f"in the page cache when that prefetch ended: {pf}")
        v.agent.cmd("verify seed=3")
        v.close()

        # 5. damaged
        bad = os.path.join(d, "bad.vmsnap")
        damage_ws(out, bad)
        v = Booted(bad, d, "bad")
        vms.append(v)
        note = v.info.get("ws-note") or ""
        check(bad in note and "working-set" in note, f"a note names the archive and the stream: {note!r}")
        check("working-set" not in v.info, "no working set used")
        v.agent.cmd("verify seed=3")
        time.sleep(1)
        ws_json = os.path.join(v.info["rundir"], "ws.json")
        check(not os.path.exists(ws_json), "nothing prefetched as a working set")
        v.close()

        # 6. encrypted
        rec = Booted(sealed, d, "erec", args=["--record-ws", "2", "--key", key])
        vms.append(rec)
        rec.agent.cmd("verify seed=3")
        recorded = wait_report(rec.info["rundir"], "recorded")["recorded"]
        eout = os.path.join(d, "EW.vmsnap")
        p = vmtest.vmsnap("ws", "save", "--qmp", rec.qmp_path, "-o", eout, check=False)
        check(p.returncode == 1 and "--key" in p.stderr and not os.path.exists(eout), f"needs the key: {p.stderr}")
        vmtest.vmsnap("ws", "save", "--qmp", rec.qmp_path, "-o", eout, "--key", key)
        rec.close()
        info = vmtest.vmsnap("info", eout, "--json", json_out=True)
        check(info["encrypted"] and info["sealed"] and "working_set" not in info, "sealed: nothing shown without key")
        v = Booted(eout, d, "ews", args=["--key", key])
        vms.append(v)
        pf = wait_report(v.info["rundir"], "prefetch")["prefetch"]
        check(pf["bytes"] == recorded["bytes"], f"the sealed working set prefetched: {pf}")
        v.agent.cmd("verify seed=3")
        v.close()

        # 7. the page map unreadable
        os.environ["VMSNAP_TEST_FAULT"] = "ws-pagemap"   # inherited by the recording's own page server
        try:
            rec = Booted(arc, d, "urec", args=["--record-ws", "2"])
        finally:
            del os.environ["VMSNAP_TEST_FAULT"]
        vms.append(rec)
        rec.agent.cmd("verify seed=3")
        report = wait_report(rec.info["rundir"], "recorded")
        log(f"ws.json without the page map: {report}")
        note = report.get("note") or ""
        check("readahead included" in note and "/proc/0/" in note, f"the note says why: {note!r}")
        got = report["recorded"]
        check(got["bytes"] == got["read-bytes"] >= FILL << 20, f"every page read is kept: {got}")
        with open(os.path.join(rec.info["rundir"], "qemu.log")) as f:
            check("readahead included" in f.read(), "the boot's log says it too")
        rec.close()
    finally:
        for v in vms:
            v.close()
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
