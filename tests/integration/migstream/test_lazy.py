#!/usr/bin/env python3
"""Lazy resume with real QEMU and the test guest (the building blocks snap and boot use, driven by hand).

A 256 MiB guest whose RAM is a named backend fills a 64 MiB pattern; a live background-snapshot goes through a pipe
into `vmsnap mem split -` (pages of block `mem` -> checksummed page image, the rest -> device stream); the source is
killed. Then:
  lazy:    `vmsnap mem serve` mounts the image over FUSE, a destination maps it privately as its RAM and loads only
           the device stream: the guest runs on (same boot id, heartbeat counter and uptime continue), the pattern
           verifies, RSS grows only when the pattern is touched;
  eager:   `vmsnap mem reassemble` rebuilds a full stream that a plain destination loads (same checks);
  corrupt: one pattern page damaged in the image: the read fails, QEMU dies of SIGBUS, the guest never reports the
           pattern good;
  fallback: a stream with compressed pages (QEMU's `compress` capability) is refused as unsupported, nothing left.
Numbers (restore-to-running, RSS, first/second pattern check) are logged."""
import json, os, signal, socket, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest
from vmtest import check, check_eq, log

MEM = os.environ.get("VMSNAP_LAZY_MEM", "256M")  # larger to see restore time not grow with RAM
FILL_MIB, SEED = 64, 7


def pat(seed, i):
    """The agent's pattern word i (tests/guest/agent.c)."""
    m = (1 << 64) - 1
    z = (seed * 0x9e3779b97f4a7c15 + i + 1) & m
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & m
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & m
    return z ^ (z >> 31)


def getfd(qmp, name, fd):
    qmp._id += 1
    msg = json.dumps({"execute": "getfd", "arguments": {"fdname": name}, "id": qmp._id}).encode() + b"\n"
    socket.send_fds(qmp.sock, [msg], [fd])
    while True:
        r = qmp._read()
        if r.get("id") == qmp._id:
            check("return" in r, f"getfd: {r}")
            return


def wait_migration(qmp, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        s = qmp.cmd("query-migrate")
        if s.get("status") in ("completed", "failed", "cancelled"):
            return s
        check(time.monotonic() < deadline, f"migration not finished after {timeout}s: {s}")
        time.sleep(0.05)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def capture(vm, workdir, caps, out, expect_ok=True):
    """Migrate vm into a pipe read by `vmsnap mem split -`; returns (split process result, query-migrate)."""
    q = vm.qmp
    q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in caps])
    q.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30})
    r, w = os.pipe()
    split = subprocess.Popen([vmtest.vmsnap_path(), "mem", "split", "-", "-o", out, "--json"], stdin=r,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(r)
    try:
        getfd(q, "snap", w)
    finally:
        os.close(w)  # QEMU holds its own copy; the splitter sees EOF when QEMU closes it
    t0 = time.monotonic()
    q.cmd("migrate", uri="fd:snap")
    st = wait_migration(q)
    so, se = split.communicate(timeout=120)
    log(f"capture {caps}: {st.get('status')} in {time.monotonic() - t0:.2f}s, downtime {st.get('downtime')} ms; "
        f"split exit {split.returncode}: {so.strip()} {se.strip()}")
    return split.returncode, so, se, st


class Server:
    """`vmsnap mem serve DIR MNT` in the background; stop() returns its JSON stats."""

    def __init__(self, image, mnt):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        self.p = subprocess.Popen([vmtest.vmsnap_path(), "mem", "serve", image, mnt], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        check(line.startswith("ready"), f"mem serve did not start: {line!r} {self.p.stderr.read() if not line else ''}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=30)
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)  # only if left behind
        log(f"serve: {out.strip()} {err.strip()}")
        return json.loads(out.strip().splitlines()[-1])


def restore(name, ram_args, stream):
    """A destination with -incoming defer; `vmsnap mem load` feeds stream. Returns (vm, load JSON, t_spawn)."""
    t_spawn = time.monotonic()
    vm = vmtest.VM(mem=MEM, name=name, extra=ram_args + ["-machine", "pc,memory-backend=mem", "-incoming", "defer"])
    res = vmtest.vmsnap("mem", "load", "--qmp", vm.qmp_path, stream, "--json", json_out=True, timeout=120)
    res["spawn_to_running_s"] = time.monotonic() - t_spawn
    return vm, res


def check_resumed(vm, before, what):
    agent = vm._agent
    agent.wait_heartbeats(5, timeout=30)
    st = agent.cmd("status")
    check_eq(st["boot"], before["boot"], f"{what}: boot id (the guest must not have rebooted)")
    check(st.int("hb") > before.int("hb"), f"{what}: heartbeat counter did not continue: {st} vs {before}")
    check(float(st["uptime"]) >= float(before["uptime"]), f"{what}: uptime went back: {st['uptime']}")
    check(float(st["uptime"]) < float(before["uptime"]) + 60, f"{what}: uptime jumped: {st['uptime']}")
    check_eq((st.int("fill_mib"), st.int("fill_seed")), (FILL_MIB, SEED), f"{what}: fill")
    return agent


def find_pattern_page(path, page_index):
    """Offset in path of pattern page page_index's first two words (unique; any alignment)."""
    i = page_index * 512
    word = pat(SEED, i).to_bytes(8, "little") + pat(SEED, i + 1).to_bytes(8, "little")
    with open(path, "rb") as f:
        base, prev = 0, b""
        while True:
            buf = f.read(1 << 22)
            if not buf:
                return None
            data = prev + buf
            k = data.find(word)
            if k >= 0:
                return base - len(prev) + k
            prev = data[-15:]
            base += len(buf)


def test():
    work = vmtest.tempfile.mkdtemp(prefix="vmsnap-test-lazy-")
    servers = []
    try:
        run(work, servers)
    finally:
        for s in servers:
            if s.p.poll() is None:
                s.p.kill()
                s.p.wait()
            subprocess.run(["fusermount3", "-u", "-z", s.mnt], stderr=subprocess.DEVNULL)
        vmtest.shutil.rmtree(work, ignore_errors=True)


def run(work, servers):
    vmtest.vmsnap_path()
    if not os.path.exists("/dev/fuse") or not vmtest.shutil.which("fusermount3"):
        vmtest.skip("no /dev/fuse or fusermount3")
    if "serve" not in vmtest.vmsnap("help", "mem", check=False).stdout:
        vmtest.skip("vmsnap built without 'mem'")
    image = os.path.join(work, "image")

    # ---- source: fill, live capture through the splitter, kill -------------------------------------------------
    with vmtest.VM(mem=MEM, name="lazy-src",
                   extra=["-object", f"memory-backend-ram,id=mem,size={MEM}", "-machine", "pc,memory-backend=mem"]) as src:
        agent = src.agent()
        agent.cmd(f"fill {FILL_MIB} seed={SEED}")
        snap_state = agent.cmd("status")  # just before the snapshot: the restored guest must be at or after it
        rc, so, se, st = capture(src, work, ["background-snapshot"], image)
        check_eq(st["status"], "completed", "background snapshot")
        check_eq(rc, 0, f"split of a 7.2 background-snapshot stream: {se}")
        summary = json.loads(so)
        check(summary["pages"] > FILL_MIB * 256, f"fewer pages than the pattern: {summary}")
        check(summary["device_bytes"] < 4 << 20, f"device stream too large: {summary}")

        # fallback: compressed pages are not understood; the splitter says so and leaves nothing behind
        has_compress = any(c["capability"] == "compress" for c in src.qmp.cmd("query-migrate-capabilities"))
        if not has_compress:
            log(f"SKIPPED the compressed-stream case: {vmtest.qemu_name()} has no 'compress' capability (gone in 9.1)")
        elif src.qmp.cmd("query-status")["status"] == "running":
            bad = os.path.join(work, "compressed")
            caps_off = [{"capability": "background-snapshot", "state": False}]
            src.qmp.cmd("migrate-set-capabilities", capabilities=caps_off)
            rc2, so2, se2, st2 = capture(src, work, ["compress"], bad)
            check(rc2 == 1 and "unsupported" in se2 and "COMPRESS" in se2,
                  f"a compressed stream was not refused as unsupported: exit {rc2}: {se2}")
            check(not os.path.exists(bad) and not any(n.startswith("compressed") for n in os.listdir(work)),
                  f"split left files behind: {os.listdir(work)}")
            if src.qmp.status() != "running":
                src.qmp.cmd("cont")
        src.kill()

    mnt = os.path.join(work, "mnt")
    backend = ["-object", f"memory-backend-file,id=mem,size={MEM},mem-path={mnt}/mem,share=off"]

    # ---- lazy, from the page image ------------------------------------------------------------------------------
    lazy_res = lazy_resume("lazy", image, os.path.join(image, "device.stream"), mnt, backend, snap_state, servers)

    # ---- lazy, from an archive (RAM stream per block, read through arc_pread) -----------------------------------
    arc = os.path.join(work, "ram.vmsnap")
    vmtest.vmsnap("mem", "pack", image, "-o", arc)
    vmtest.vmsnap("verify", arc)
    log(f"archive: {os.path.getsize(arc)} bytes")
    lazy_resume("lazy-arc", arc, arc, mnt, backend, snap_state, servers)

    # ---- eager: reassembled stream into plain RAM --------------------------------------------------------------
    full = os.path.join(work, "full.stream")
    vmtest.vmsnap("mem", "reassemble", image, "-o", full)
    vm, res = restore("eager", ["-object", f"memory-backend-ram,id=mem,size={MEM}"], full)
    with vm:
        agent = check_resumed(vm, snap_state, "eager")
        agent.cmd("verify")
        log(f"eager: load {res} ({os.path.getsize(full)} bytes); lazy/eager restore-to-running = "
            f"{lazy_res['running_s'] / res['running_s']:.3f}")
    os.unlink(full)

    # ---- damaged pages: in the page image, and in an uncompressed archive ---------------------------------------
    raw = os.path.join(work, "raw.vmsnap")
    vmtest.vmsnap("mem", "pack", image, "-o", raw, "--compress", "none")
    damaged("corrupt", os.path.join(image, "block0.img"), image, os.path.join(image, "device.stream"), mnt, backend,
            servers)
    check(vmtest.vmsnap("mem", "pack", image, "-o", os.path.join(work, "x.vmsnap"), check=False).returncode == 1,
          "pack accepted a damaged page image")
    damaged("corrupt-arc", raw, raw, raw, mnt, backend, servers, "block")


def lazy_resume(name, source, device, mnt, backend, snap_state, servers):
    srv = Server(source, mnt)
    servers.append(srv)
    vm, res = restore(name, backend, device)
    with vm:
        rss0 = rss_kib(vm.proc.pid)
        agent = check_resumed(vm, snap_state, name)
        rss1 = rss_kib(vm.proc.pid)
        v1 = agent.cmd("verify")
        rss2 = rss_kib(vm.proc.pid)
        v2 = agent.cmd("verify")
        log(f"{name}: load {res}; RSS {rss0} KiB at running, {rss1} KiB after status, {rss2} KiB after verify; "
            f"verify {v1.int('ms')} ms first, {v2.int('ms')} ms second")
        check(rss2 - rss1 >= FILL_MIB * 1024 * 3 // 4, f"RSS did not grow by the pattern when touched: {rss1} -> {rss2}")
        check(rss0 < vmtest._size(MEM) // 1024 - FILL_MIB * 1024 // 2,
              f"RSS {rss0} KiB right after resume: RAM was not left in the image")
    stats = srv.stop()
    check_eq(stats["errors"], 0, f"{name}: page read errors")
    check(stats["bytes"] >= FILL_MIB << 20, f"{name}: FUSE served less than the pattern: {stats}")
    return res


def damaged(name, path, source, device, mnt, backend, servers, what="checksum"):
    """Flip a byte inside a pattern page stored in path: the guest must not verify it; QEMU dies of SIGBUS."""
    off = find_pattern_page(path, FILL_MIB * 256 // 2)
    check(off is not None, f"pattern page not found in {path}")
    with open(path, "r+b") as f:
        f.seek(off + 100)
        b = f.read(1)
        f.seek(off + 100)
        f.write(bytes([b[0] ^ 0xff]))
    log(f"{name}: damaged byte 0x{off + 100:x} of {os.path.basename(path)}")
    srv = Server(source, mnt)
    servers.append(srv)
    vm, res = restore(name, backend, device)
    with vm:
        agent = vm._agent
        agent.wait_heartbeats(3, timeout=30)
        r = None
        try:
            r = agent.cmd("verify", timeout=60, check=False)
        except vmtest.TestFailure as e:
            log(f"{name}: verify: {e}")
        check(r is None or not r.ok, f"{name}: the guest verified its pattern from a damaged page: {r}")
        rc = vm.wait_exit(30)
        log(f"{name}: QEMU exit status {rc}")
        check_eq(rc, -signal.SIGBUS, f"{name}: QEMU's fate reading a damaged page")
    stats = srv.stop()
    check(stats["errors"] >= 1 and what in stats["first_error"], f"{name}: damage not reported: {stats}")

vmtest.main(test)
