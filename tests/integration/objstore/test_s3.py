"""Archives on S3 (a real single-node Ceph RGW, started once for this file), on QEMU 7.2 only: the store is under
test, not QEMU.

1. pack to s3://, info/verify/extract back: the same bytes; serve it, write through NBD, commit --thin to
   s3:// and extract: the bytes with the write; a public object verified over plain http (unsigned),
   an http URL refused as output; a local thin archive whose parent is in the store; wrong credentials: one
   line, exit 1; SIGTERM in the middle of an upload: the upload is aborted, nothing under the key. An encrypted
   archive on the store; `cp --encrypt --with-parents` of a local plain chain into the store, parents first.
2. the test guest booted from s3://, snapshotted live to s3:// (thick A, thin B); B boots lazily from s3:// on a
   "second host" (another run directory, an empty block cache) and its RAM pattern and disk records verify; a
   snapshot to the store pauses the guest for a small part of the time its (rate-limited) upload takes: the data
   goes out while the guest runs; the bytes the store sent until the VM ran (counted by a proxy, on the wire) are
   a small part of the chain; so they are for the chain signed with chunk tables and booted with --trusted-keys.
3. `cp --with-parents` brings the chain back local, where it verifies. Archives signed on the store (ARCHIVE.sig
   objects): verify --trusted-keys from s3://, an object signed by another key refused, cp --with-parents brings
   the .sig files and the local copy verifies against the trusted key.
4. an object replaced by bytes that differ in one block: verify names the key and the block; an object replaced
   by another archive under a running `serve`: reads of blocks it did not hold fail (EIO).
5. the gateway stopped in the middle of an upload: snap fails with one line, the VM runs, no object appears.
6. the store away while the lazily booted VM runs: back within the retry deadline (the proxy cuts it for a
   second: a restarted gateway takes a time a loaded host cannot bound), the guest's disk read completes and
   nothing is logged; the gateway stopped past the deadline, the guest sees a disk error (EIO) and runs on, and
   the boot host logs one line in the run directory's log (key, block, curl's words, retries, deadline). serve
   logs such a failure on stderr.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402
import cephtest  # noqa: E402

B = "vmsnap-test"
DEADLINE = 10   # VMSNAP_S3_DEADLINE of the lazily booted VM: the gateway restarts well within it


def cache_dir(d, name):
    p = os.path.join(d, name)
    os.makedirs(p, mode=0o700)
    return p


def one_line_failure(p, *words):
    err = p.stderr.strip()
    log(f"-> {p.returncode}: {err}")
    check(p.returncode == 1, f"exit status 1, got {p.returncode}")
    check(err.startswith("vmsnap: ") and "\n" not in err, f"one 'vmsnap: ' line: {err!r}")
    for w in words:
        check(w in err, f"message names {w!r}: {err!r}")


def round_trip(c, d):
    raw = os.path.join(d, "disk.raw")
    with open(raw, "wb") as f:
        f.write(os.urandom(12 << 20))   # more than the 8 MiB kept for part 1: a real multipart upload
        f.truncate(32 << 20)
    url = f"s3://{B}/packs/disk.vmsnap"
    vmtest.vmsnap("pack", raw, "-o", url, "--quiet")
    check(c.keys(B) == ["packs/disk.vmsnap"] and not c.uploads(B), f"one object, no upload left: {c.keys(B)}")
    info = vmtest.vmsnap("info", url, "--json", json_out=True)
    check(info["streams"][0]["size"] == 32 << 20, f"info from the store: {info['streams'][0]}")
    vmtest.vmsnap("verify", url)
    back = os.path.join(d, "back.raw")
    vmtest.vmsnap("extract", url, "--disk", "0", "-o", back)
    with open(raw, "rb") as f1, open(back, "rb") as f2:
        check(f1.read() == f2.read(), "extract from s3:// gives the packed bytes")
    os.unlink(back)
    # serve from the store, write through NBD into an overlay, commit that to the store (thin), read it back
    sock, ovl = os.path.join(d, "nbd.sock"), os.path.join(d, "ovl")
    srv = subprocess.Popen([vmtest.vmsnap_path(), "serve", url, "--socket", sock, "--overlay", ovl],
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and srv.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        nbd = f"nbd+unix:///?socket={sock}"
        served = os.path.join(d, "served.raw")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", nbd, served], check=True)
        with open(raw, "rb") as f1, open(served, "rb") as f2:
            check(f1.read() == f2.read(), "serve from s3:// gives the packed bytes")
        os.unlink(served)
        subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", nbd], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(30)
    committed = f"s3://{B}/packs/committed.vmsnap"
    vmtest.vmsnap("commit", url, ovl, "-o", committed, "--thin")
    back = os.path.join(d, "committed.raw")
    vmtest.vmsnap("extract", committed, "--disk", "0", "-o", back)
    with open(raw, "rb") as f1, open(back, "rb") as f2:
        want = bytearray(f1.read())
        want[1 << 20:(1 << 20) + 65536] = b"\x5a" * 65536
        check(f2.read() == bytes(want), "the committed overlay reads back from the store over its parent")
    os.unlink(back)

    # a reader that lives on (serve) and an object replaced under it by another archive's bytes: reads of blocks
    # it did not hold fail (the GETs are conditional on the ETag seen at open), they never return the new bytes
    victim, other = f"s3://{B}/packs/victim.vmsnap", os.path.join(d, "other.vmsnap")
    vmtest.vmsnap("cp", url, victim, "--quiet")
    small = os.path.join(d, "small.raw")
    with open(small, "wb") as f:
        f.write(os.urandom(1 << 20))
    vmtest.vmsnap("pack", small, "-o", other, "--quiet")
    sock2 = os.path.join(d, "nbd2.sock")
    srv = subprocess.Popen([vmtest.vmsnap_path(), "serve", victim, "--socket", sock2, "--read-only"],
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, VMSNAP_CACHE="off"))   # cp filled it
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock2) and srv.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        nbd2 = f"nbd+unix:///?socket={sock2}"
        qio = ["qemu-io", "-r", "-f", "raw"]
        subprocess.run(qio + ["-c", "read 0 64k", nbd2], check=True, stdout=subprocess.DEVNULL)
        c.put(B, "packs/victim.vmsnap", other)
        r = subprocess.run(qio + ["-c", "read 8M 64k", nbd2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        log(f"read after the object was replaced: {r.returncode}: {r.stdout.strip()}")
        check("Input/output error" in r.stdout, "a read of the replaced object fails")
        r = subprocess.run(qio + ["-c", "read 9M 64k", nbd2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        check("Input/output error" in r.stdout, "the next read fails too")
    finally:
        srv.send_signal(signal.SIGTERM)
        err = srv.communicate(timeout=30)[1]
    lines = [ln for ln in err.splitlines() if "disk read" in ln]
    log(f"serve's stderr: {lines}")
    check(len(lines) == 1 and lines[0].startswith("vmsnap: disk read failed") and victim in lines[0]
          and "block" in lines[0] and "replaced" in lines[0],
          "serve logs why on stderr: one line for the episode, naming the key, the block and the cause")
    os.unlink(other)

    # a public object read over plain http(s), unsigned, and refused as an output
    pub = os.path.join(d, "pub.vmsnap")
    vmtest.vmsnap("cp", url, pub, "--quiet")
    c.curl("PUT", f"{B}/public/pub.vmsnap", "-T", pub, "-H", "x-amz-acl: public-read")
    os.unlink(pub)
    purl = f"{c.endpoint}/{B}/public/pub.vmsnap"
    anon = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    vmtest.vmsnap("verify", purl, env_over=anon)
    p = vmtest.vmsnap("pack", raw, "-o", purl, check=False)
    one_line_failure(p, purl, "read-only")

    # a local thin archive whose parent is in the store: the hint is the parent's location
    loc = os.path.join(d, "local-thin.vmsnap")
    vmtest.vmsnap("pack", raw, "-o", loc, "--parent", url, "--quiet")
    check(vmtest.vmsnap("info", loc, "--json", json_out=True)["parent"]["hint"] == url, "hint is the parent's URL")
    vmtest.vmsnap("verify", loc)
    os.unlink(loc)
    p = vmtest.vmsnap("info", url, check=False, env_over={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    one_line_failure(p, url, "403")
    p = vmtest.vmsnap("pack", raw, "-o", f"s3://{B}/packs/denied.vmsnap", check=False,
                      env_over={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    one_line_failure(p, "s3://vmsnap-test/packs/denied.vmsnap", "SignatureDoesNotMatch")
    p = vmtest.vmsnap("info", f"s3://{B}/packs/missing.vmsnap", check=False)
    one_line_failure(p, "missing.vmsnap", "no such object")

    # SIGTERM in the middle of an upload (parts already sent): the upload is aborted, nothing under the key
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    p = subprocess.Popen([vmtest.vmsnap_path(), "pack", raw, "--memory", fifo, "-o", f"s3://{B}/packs/term.vmsnap"],
                         stderr=subprocess.PIPE, text=True)
    with open(fifo, "wb") as w:
        w.write(os.urandom(24 << 20))   # past the first 8 MiB part: parts 2.. are on the store
        w.flush()
        time.sleep(1)
        p.send_signal(signal.SIGTERM)
        try:
            w.write(b"x" * 65536)
        except BrokenPipeError:
            pass
    err = p.communicate(timeout=60)[1].strip()
    log(f"pack SIGTERM'ed mid-upload: {p.returncode}: {err}")
    check(p.returncode == 1 and "interrupted" in err, "pack stops on SIGTERM")
    check(sorted(c.keys(B)) == ["packs/committed.vmsnap", "packs/disk.vmsnap", "packs/victim.vmsnap",
                                "public/pub.vmsnap"]
          and not c.uploads(B),
          f"no object, no upload left: {c.keys(B)}")
    return url


def sealed_round_trip(d):
    """An encrypted archive packed to the store: the header alone without the key, every block read back with it."""
    raw = os.path.join(d, "sealed.raw")
    with open(raw, "wb") as f:
        f.write(os.urandom(3 << 20) + b"secret text " * 100000)
    key = os.path.join(d, "store.key")
    kid = vmtest.vmsnap("keygen", "-o", key).stdout.split()[-1]
    url = f"s3://{B}/packs/sealed.vmsnap"
    vmtest.vmsnap("pack", raw, "-o", url, "--quiet", "--encrypt", key)
    info = vmtest.vmsnap("info", url, "--json", json_out=True)
    check(info["encrypted"] and info["key_id"] == kid and info["streams"] == [], f"info without the key: {info}")
    one_line_failure(vmtest.vmsnap("verify", url, check=False), f"is encrypted with key {kid}; pass --key")
    vmtest.vmsnap("verify", url, "--key", key)
    back = os.path.join(d, "sealed.back")
    vmtest.vmsnap("extract", url, "--disk", "0", "-o", back, "--key", key)
    with open(raw, "rb") as f1, open(back, "rb") as f2:
        check(f1.read() == f2.read(), "an encrypted archive on the store reads back with its key")
    os.unlink(back)

    # cp --encrypt of a local plain thin chain into the store: the parent first, the child's hint leading to it
    small, small2 = os.path.join(d, "small.raw"), os.path.join(d, "small2.raw")
    with open(small, "wb") as f:
        f.write(b"plain base text " * 65536)
    with open(small2, "wb") as f:
        f.write(b"plain base text " * 32768 + b"the child's own " * 32768)
    pb, pc = os.path.join(d, "pbase.vmsnap"), os.path.join(d, "pchild.vmsnap")
    vmtest.vmsnap("pack", small, "-o", pb, "--quiet")
    vmtest.vmsnap("pack", small2, "--parent", pb, "-o", pc, "--quiet")
    enc = f"s3://{B}/enc/pchild.vmsnap"
    out = vmtest.vmsnap("cp", pc, enc, "--with-parents", "--encrypt", key, "--json", json_out=True)
    check([(x["dst"], x["key_id"]) for x in out["copied"]] == [(f"s3://{B}/enc/pbase.vmsnap", kid), (enc, kid)],
          f"cp --encrypt to the store: parent then child, sealed with the key: {out}")
    info = vmtest.vmsnap("info", enc, "--json", "--key", key, json_out=True)
    check(info["encrypted"] and info["parent"]["hint"] == "pbase.vmsnap", f"the child refers to its parent's copy: {info}")
    vmtest.vmsnap("extract", enc, "--disk", "0", "-o", back, "--key", key)
    with open(small2, "rb") as f1, open(back, "rb") as f2:
        check(f1.read() == f2.read(), "the encrypted chain on the store reads back as the plain one")
    os.unlink(back)


def signed_on_store(c, d, url):
    """Signatures of archives on the store: ARCHIVE.sig is an object beside each; verify --trusted-keys reads it
    through the store; cp --with-parents brings the .sig files along."""
    ours, theirs = os.path.join(d, "ours.key"), os.path.join(d, "theirs.key")
    kid = vmtest.vmsnap("keygen", "--sign", "-o", ours).stdout.split()[3]
    vmtest.vmsnap("keygen", "--sign", "-o", theirs)
    thin = f"s3://{B}/packs/committed.vmsnap"   # the thin archive of round_trip, over url
    for u in (url, thin):
        vmtest.vmsnap("sign", u, "--key", ours)
    keys = c.keys(B)
    check("packs/disk.vmsnap.sig" in keys and "packs/committed.vmsnap.sig" in keys and not c.uploads(B),
          f"the .sig objects beside the archives: {keys}")
    out = vmtest.vmsnap("verify", thin, "--trusted-keys", ours + ".pub").stdout
    check(kid in out, f"verify from s3:// reports the signer {kid}: {out!r}")
    # an object signed only by a key that is not trusted, then one with no .sig at all
    small = os.path.join(d, "small-signed.raw")
    with open(small, "wb") as f:
        f.write(os.urandom(64 << 10))
    other = f"s3://{B}/packs/theirs.vmsnap"
    vmtest.vmsnap("pack", small, "-o", other, "--quiet")
    os.unlink(small)
    one_line_failure(vmtest.vmsnap("verify", other, "--trusted-keys", ours + ".pub", check=False),
                     other, "is not signed", other + ".sig")
    vmtest.vmsnap("sign", other, "--key", theirs)
    one_line_failure(vmtest.vmsnap("verify", other, "--trusted-keys", ours + ".pub", check=False),
                     other, "not signed by a trusted key")
    # back local with its chain: the signatures come along and hold there
    back = os.path.join(d, "signed", "committed.vmsnap")
    os.makedirs(os.path.dirname(back))
    vmtest.vmsnap("cp", thin, back, "--with-parents", "--quiet")
    check(all(os.path.exists(os.path.join(d, "signed", n)) for n in ("committed.vmsnap.sig", "disk.vmsnap.sig")),
          f"cp brought the .sig files: {os.listdir(os.path.dirname(back))}")
    out = vmtest.vmsnap("verify", back, "--trusted-keys", ours + ".pub").stdout
    check(kid in out, f"the local copy verifies against the trusted key: {out!r}")
    shutil.rmtree(os.path.dirname(back))
    for k in ("packs/theirs.vmsnap", "packs/theirs.vmsnap.sig"):
        c.curl("DELETE", f"{B}/{k}")


def test():
    vmtest.skip_on_qemu((8,), "the S3 tests run in the QEMU 7.2 pass: they test the store, not QEMU")
    d = tmpdir()
    vm = run2 = None
    try:
        with cephtest.Ceph() as c:
            # a slow link (8 MB/s per part in flight) so that an upload is still running when the gateway stops
            os.environ.update(c.env(VMSNAP_S3_DEADLINE="3", VMSNAP_S3_MAX_RATE="8M"))
            os.environ["VMSNAP_CACHE_DIR"] = cache_dir(d, "cache-first-host")   # never the user's own cache
            c.make_bucket(B)
            base = round_trip(c, d)
            sealed_round_trip(d)
            signed_on_store(c, d, base)

            # 2. boot from the store, live snapshots to the store
            vm = Booted(base, d, "v", extra=guest_args(), args=["--ram", "128M"])
            a = vm.agent
            boot_id = a.wait_ready(120)
            a.cmd("fill 16 seed=7")
            a.cmd("rawwrite /dev/vda 0 16 seed=8")
            local = snap(vm.qmp_path, os.path.join(d, "local.vmsnap"))
            ua, ub = f"s3://{B}/vms/a.vmsnap", f"s3://{B}/vms/thin/b.vmsnap"
            ra = snap(vm.qmp_path, ua)
            a.cmd("fill 8 seed=9")
            a.cmd("rawwrite /dev/vda 1048576 16 seed=10")
            rb = snap(vm.qmp_path, ub, "--thin")
            log(f"pause: local {local['pause'] * 1000:.1f} ms, s3 A {ra['pause'] * 1000:.1f} ms "
                f"of {ra['total']:.2f} s, s3 B {rb['pause'] * 1000:.1f} ms of {rb['total']:.2f} s; "
                f"sizes A {ra['archive-bytes']} B {rb['archive-bytes']}")
            check(ra["archive-bytes"] > 0 and 0 < rb["archive-bytes"] < ra["archive-bytes"], "thin B smaller than A")
            # the upload is rate-limited (8 MB/s a part): were it in the pause, the pause would be most of the
            # snapshot's time; a single pause compared with another one (the local) is at the mercy of the load
            for name, r in (("A", ra), ("B", rb)):
                check(r["pause"] < 0.5 * r["total"],
                      f"snapshot {name} to the store: the guest runs while the data is uploaded")
            check(vm.status() == "running", "VM running after its snapshots")
            check(not c.uploads(B), "no multipart upload left open")
            info = vmtest.vmsnap("info", ub, "--json", json_out=True)
            check(info["parent"]["hint"] == "../a.vmsnap", f"B's parent hint is relative to its key: {info['parent']}")

            # 5. the gateway goes away in the middle of an upload: rate-limited so that it is still running
            uc = f"s3://{B}/vms/c.vmsnap"
            done = {}

            def run_snap():
                done["p"] = snap(vm.qmp_path, uc, check_ok=False)
            th = threading.Thread(target=run_snap)
            th.start()
            deadline = time.monotonic() + 60
            while not c.uploads(B) and th.is_alive() and time.monotonic() < deadline:   # in the middle of it
                time.sleep(0.05)
            check(th.is_alive(), "the snapshot to the store still running")
            c.stop_rgw()
            th.join(120)
            # the upload fails, or first a read of the VM's base (B, in the store since the VM moved onto it)
            one_line_failure(done["p"], "s3://vmsnap-test/vms/", "no answer from the store")
            check(vm.status() == "running", "VM running after the failed snapshot")
            a.cmd("verify seed=9")
            c.start_rgw()
            check(uc.split("/", 3)[3] not in c.keys(B), f"no object under the key: {c.keys(B)}")
            vm.close()
            vm = None

            # B boots lazily from the store on a "second host": another run directory
            # through a proxy that counts what the store sends, without prefetch: what running needs
            os.environ["XDG_RUNTIME_DIR"] = run2 = tmpdir()
            proxy = cephtest.CountingProxy(c.rgw_port)
            os.environ.update(AWS_ENDPOINT_URL=proxy.endpoint, VMSNAP_S3_DEADLINE=str(DEADLINE),
                              VMSNAP_CACHE_DIR=cache_dir(d, "cache-second-host"))   # an empty block cache
            try:
                v = Booted(ub, d, "second", args=["--prefetch", "none"])
            finally:
                os.environ.update(AWS_ENDPOINT_URL=c.endpoint, VMSNAP_S3_DEADLINE="3")
            fetched = proxy.fetched()   # now: the guest goes on faulting pages in while the test works
            # the start files (kernel, initrd) are copied whole into the run directory for QEMU: counted apart
            files = sum(st["stored"] for u in (ua, ub)
                        for st in vmtest.vmsnap("info", u, "--json", json_out=True)["streams"] if st["kind"] == "file")
            chain = ra["archive-bytes"] + rb["archive-bytes"]
            log(f"fetched from the store until the VM runs: {fetched} bytes of the {chain}-byte chain, of which "
                f"{files} are start files; the rest: {(fetched - files) / (chain - files) * 100:.1f}%")
            check(fetched - files < 0.25 * (chain - files), "a lazy boot from the store fetches a small part")
            check(v.info.get("lazy") is True, f"resumed lazily from the store: {v.info}")
            check(v.agent.wait_ready(60) == boot_id, "resumed, not rebooted")
            v.agent.cmd("verify seed=9")
            for j in range(2):
                v.agent.cmd(f"rawverify /dev/vda {j * 1048576} 16 seed={8 + 2 * j}")
            signed_lazy_boot(c, d, ua, ub, files, chain, fetched, boot_id)
            store_goes_away(c, proxy, v)
            v.close()

            # 3. the chain back local
            out = os.path.join(d, "back", "thin", "b.vmsnap")
            os.makedirs(os.path.dirname(out))
            r = vmtest.vmsnap("cp", ub, out, "--with-parents", "--json", json_out=True)
            log(f"cp: {r}")
            check(os.path.exists(os.path.join(d, "back", "a.vmsnap")), "the parent copied beside, by its hint")
            check(os.stat(out).st_mode & 0o777 == 0o600, "a copy holding guest memory is 0600")
            vmtest.vmsnap("verify", out)

            # 4. an object replaced by another archive's bytes (one block differs)
            bad = os.path.join(d, "bad.vmsnap")
            shutil.copy(os.path.join(d, "back", "a.vmsnap"), bad)
            off = damage_a_block(bad)
            c.put(B, "vms/bad.vmsnap", bad)
            p = vmtest.vmsnap("verify", f"s3://{B}/vms/bad.vmsnap", check=False)
            out_text = p.stdout + p.stderr
            log(f"verify of the replaced object (byte {off} flipped): {p.returncode}: {out_text.strip()[:300]}")
            check(p.returncode == 1 and "s3://vmsnap-test/vms/bad.vmsnap" in out_text and "block" in out_text,
                  "verify names the key and the block")
    finally:
        if vm:
            vm.close()
        shutil.rmtree(d, ignore_errors=True)
        if run2:
            shutil.rmtree(run2, ignore_errors=True)


def store_goes_away(c, proxy, v):
    """The store goes away while the lazily booted VM runs (it reads through proxy). Back within the retry
    deadline: a disk read that needed it completes. The gateway stopped past the deadline: the read fails with EIO,
    the guest sees a disk error and runs on. Reads are of disk blocks never fetched before (4 MiB and 6 MiB in: the
    packed random bytes, not records: mismatch)."""
    got = {}
    proxy.cut()
    th = threading.Thread(target=lambda: got.update(r=v.agent.cmd("rawverify /dev/vda 4194304 1", check=False),
                                                    t=time.monotonic()))
    t0 = time.monotonic()
    th.start()
    time.sleep(1)
    t_back = time.monotonic()
    proxy.restore()
    th.join(DEADLINE + 30)
    log(f"store back after {t_back - t0:.1f} s, the read done after {got.get('t', t0) - t0:.1f} s: {got.get('r')}")
    check("r" in got and "mismatch" in got["r"].text and got["t"] > t_back,
          "the read waited for the store and got the disk's bytes")
    check(not host_log_lines(v), "nothing logged when the retries succeeded")
    c.stop_rgw()
    t0 = time.monotonic()
    r = v.agent.cmd("rawverify /dev/vda 6291456 1", check=False, timeout=DEADLINE + 60)
    log(f"gateway away: {time.monotonic() - t0:.1f} s: {r}")
    check("Input/output error" in r.text, "past the deadline the guest sees a disk error")
    lines = host_log_lines(v)
    log(f"the boot host's log: {lines}")
    check(len(lines) == 1, "one line for the failure episode, whatever the guest's retries")
    check(all(w in lines[0] for w in ("s3://vmsnap-test/vms/", "block", "no answer from the store", "attempts",
                                      f"deadline {DEADLINE} s")),
          "the line names the key, the block, curl's words, the retries and the deadline")
    check(v.status() == "running", "the VM runs on after the disk error")
    v.agent.cmd("verify seed=9")
    c.start_rgw()


def signed_lazy_boot(c, d, ua, ub, files, chain, unsigned, boot_id):
    """The chain signed on the store (chunk tables) and booted with --trusted-keys on an empty cache through the
    counting proxy: the .sig and .sums objects and then a part of the chain under half (whole 256 KiB chunks where
    unsigned fetched stored blocks: more than the unsigned boot's `unsigned` bytes, not the whole chain)."""
    key = os.path.join(d, "chain.key")
    kid = vmtest.vmsnap("keygen", "--sign", "-o", key).stdout.split()[3]
    for u in (ua, ub):
        vmtest.vmsnap("sign", u, "--key", key)
    keys = c.keys(B)
    check(all(f"vms/{n}.vmsnap.{x}" in keys for n in ("a", "thin/b") for x in ("sig", "sums")),
          f"the .sig and .sums objects beside the archives: {keys}")
    proxy = cephtest.CountingProxy(c.rgw_port)
    os.environ.update(AWS_ENDPOINT_URL=proxy.endpoint, VMSNAP_S3_DEADLINE=str(DEADLINE),
                      VMSNAP_CACHE_DIR=cache_dir(d, "cache-signed"))
    try:
        v = Booted(ub, d, "signed", args=["--prefetch", "none", "--trusted-keys", key + ".pub"])
    finally:
        os.environ.update(AWS_ENDPOINT_URL=c.endpoint, VMSNAP_S3_DEADLINE="3")
    try:
        fetched = proxy.fetched()
        log(f"signed: fetched from the store until the VM runs: {fetched} bytes of the {chain}-byte chain; without "
            f"the start files {(fetched - files) / (chain - files) * 100:.1f}%, "
            f"{(fetched - files) / (unsigned - files):.2f}x the unsigned boot")
        check(fetched - files < 0.5 * (chain - files), "a lazy boot of the signed chain fetches under half of it")
        check([x["key-id"] for x in v.info.get("signed-by", [])] == [kid, kid], f"both signed: {v.info}")
        check(v.agent.wait_ready(60) == boot_id, "resumed, not rebooted")
        v.agent.cmd("verify seed=9")   # its pages through the proxy and the chunk tables
    finally:
        v.close()
        proxy.close()


def host_log_lines(v):
    """The boot host's lines about failed disk reads in the run directory's log (a detached boot)."""
    with open(os.path.join(v.info["rundir"], "qemu.log"), errors="replace") as f:
        return [ln for ln in f.read().splitlines() if ln.startswith("vmsnap: disk read")]


def damage_a_block(path):
    """Flip a byte in the middle of the first disk block stored (the disk records written by the guest)."""
    info = vmtest.vmsnap("info", path, "--json", json_out=True)
    check(info["streams"], "streams")
    size = os.path.getsize(path)
    off = size // 3
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
    return off


vmtest.main(test)
