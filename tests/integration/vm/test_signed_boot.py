"""Signed archives through the CLI: `vmsnap sign` writes ARCHIVE.sig; with --trusted-keys (or VMSNAP_TRUSTED_KEYS)
boot, serve and verify refuse, before anything starts and in one line naming the archive, a thin chain whose parent
is signed only by an untrusted key, an unsigned archive, and a garbage .sig; verify names who signed; once every
archive of the chain carries a trusted signature the VM boots, and snapshots thin over the checked chain."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from vmsnaptest import Booted, check, check_failed_cleanly, guest_args, log, tmpdir, vmtest


def refused(args, words, out):
    p = vmtest.vmsnap(*args, check=False, timeout=120)
    return check_failed_cleanly(p, words, out)


def control(path, req):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(30)
        c.connect(path)
        c.sendall((json.dumps(req) + "\n").encode())
        return json.loads(c.makefile().readline())


def wait_for(path, proc):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        check(proc.poll() is None and time.monotonic() < deadline, f"{path} appears")
        time.sleep(0.05)


def test():
    d = tmpdir()
    vm = serve = None
    try:
        disk = vmtest.make_disk(os.path.join(d, "disk.raw"), "16M")
        base = os.path.join(d, "base.vmsnap")
        vmtest.vmsnap("pack", disk, "-o", base, "--quiet")
        with open(disk, "r+b") as f:
            f.seek(1 << 20)
            f.write(b"child data" * 100)
        child = os.path.join(d, "child.vmsnap")
        vmtest.vmsnap("pack", disk, "--parent", base, "-o", child, "--quiet")
        trusted_key, other_key = os.path.join(d, "team.key"), os.path.join(d, "other.key")
        tid = vmtest.vmsnap("keygen", "--sign", "-o", trusted_key).stdout.split()[3]
        oid = vmtest.vmsnap("keygen", "--sign", "-o", other_key).stdout.split()[3]
        keys = os.path.join(d, "trusted")
        os.mkdir(keys)
        shutil.copy(trusted_key + ".pub", keys)

        # An encrypted archive is signed as stored; sign takes its archive key from VMSNAP_KEY_FILE.
        akey = os.path.join(d, "archive.key")
        vmtest.vmsnap("keygen", "-o", akey)
        sealed = os.path.join(d, "sealed.vmsnap")
        vmtest.vmsnap("pack", disk, "-o", sealed, "--encrypt", akey, "--quiet")
        refused(["sign", sealed, "--key", trusted_key], ["is encrypted", "VMSNAP_KEY_FILE"], sealed + ".sig")
        os.environ["VMSNAP_KEY_FILE"] = akey
        try:
            vmtest.vmsnap("sign", sealed, "--key", trusted_key)
        finally:
            del os.environ["VMSNAP_KEY_FILE"]
        p = vmtest.vmsnap("verify", sealed, "--key", akey, "--trusted-keys", keys)
        check(f"signed by key {tid}" in p.stdout, f"an encrypted archive's signature checks out: {p.stdout!r}")

        # The child signed by the team, its parent only by another key: refused everywhere, naming the parent.
        vmtest.vmsnap("sign", base, "--key", other_key)
        p = vmtest.vmsnap("sign", child, "--key", trusted_key)
        check(f"signed by key {tid}" in p.stdout and os.path.exists(child + ".sig"), f"sign says so: {p.stdout!r}")
        why = [child, f"parent archive '{base}'", f"archive {base} is not signed by a trusted key", oid, tid]
        refused(["verify", child, "--trusted-keys", keys], why, os.path.join(d, "none"))
        sock = os.path.join(d, "nbd.sock")
        refused(["serve", child, "--socket", sock, "--trusted-keys", keys], why, sock)
        qmp, con = os.path.join(d, "vm.qmp"), os.path.join(d, "vm.con")
        boot = ["boot", child, "--detach", "--qmp", qmp, "--console", con, "--ram", "128M", "--trusted-keys", keys,
                "--", *guest_args()]
        refused(boot, why, qmp)
        check(not os.path.exists(con), "no QEMU was started (no console socket)")

        # An empty --trusted-keys (a script's unset variable) never turns the check off.
        refused(["verify", child, "--trusted-keys", ""], ["--trusted-keys", "empty name"], qmp)

        # No signature at all, trusted keys from the environment: refused, naming the missing .sig.
        plain = os.path.join(d, "plain.vmsnap")
        shutil.copy(base, plain)
        os.environ["VMSNAP_TRUSTED_KEYS"] = keys
        try:
            refused(["boot", plain, "--detach", "--qmp", qmp, "--console", con, "--", *guest_args()],
                    [f"archive {plain} is not signed (no {plain}.sig)"], qmp)
            refused(["verify", plain], [f"{plain} is not signed"], qmp)
        finally:
            del os.environ["VMSNAP_TRUSTED_KEYS"]

        # A .sig that is garbage: refused clearly, naming the file and the line.
        with open(plain + ".sig", "wb") as f:
            f.write(b"-----BEGIN PGP SIGNATURE-----\n\x00\xff\n")
        refused(["verify", plain, "--trusted-keys", keys],
                [f"signature file {plain}.sig line 1: expected \"vmsnap-signature-1 KEYID BASE64\""], qmp)
        p = vmtest.vmsnap("verify", plain)   # without trusted keys: another tool's .sig is noted, not fatal
        check("not checked as a signature" in p.stderr, f"verify notes the foreign .sig: {p.stderr!r}")

        # A changed child: its content no longer matches what the team signed.
        bad = os.path.join(d, "bad.vmsnap")
        shutil.copy(child, bad)
        shutil.copy(child + ".sig", bad + ".sig")
        p = vmtest.vmsnap("verify", bad, "--trusted-keys", trusted_key + ".pub", check=False)
        check(p.returncode == 1 and f"but {bad}.sums is missing" in p.stderr, f"no chunk table: {p.stderr!r}")
        shutil.copy(child + ".sums", bad + ".sums")
        with open(bad, "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 1]))
        p = vmtest.vmsnap("verify", bad, "--trusted-keys", trusted_key + ".pub", check=False)
        check(p.returncode == 1 and "chunk 0 (bytes 0.." in p.stderr and "does not match the chunk table" in p.stderr,
              f"a changed archive is refused: {p.stderr!r}")

        # The team signs the parent too: verify names both signers, and the VM boots from the chain.
        vmtest.vmsnap("sign", base, "--key", trusted_key)
        p = vmtest.vmsnap("verify", child, "--trusted-keys", keys)
        log(p.stdout.strip())
        pub = os.path.join(keys, "team.key.pub")
        for a in (child, base):
            check(f"{a}: signed by key {tid} (trusted: {pub})" in p.stdout, f"verify names {a}'s signer")

        # serve --control checks a rebase target the same way: one signed by another key is refused.
        rogue = os.path.join(d, "rogue.vmsnap")
        shutil.copy(base, rogue)
        vmtest.vmsnap("sign", rogue, "--key", other_key)
        ctl = os.path.join(d, "ctl.sock")
        serve = subprocess.Popen([vmtest.vmsnap_path(), "serve", child, "--socket", sock, "--control", ctl,
                                  "--trusted-keys", keys], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(ctl, serve)
        check(control(ctl, {"cmd": "freeze"})["ok"], "freeze")
        r = control(ctl, {"cmd": "rebase", "layer": 1, "archive": rogue})
        check(not r["ok"] and "is not signed by a trusted key" in r["error"] and rogue in r["error"],
              f"rebase onto an archive without a trusted signature refused: {r}")
        serve.send_signal(signal.SIGTERM)
        check(serve.wait(30) == 0, "serve ends cleanly")
        serve = None

        t0 = time.monotonic()
        vm = Booted(child, d, "ok", extra=guest_args(), args=["--ram", "128M", "--trusted-keys", keys])
        vm.agent.wait_ready(120)
        log(f"signed chain booted, guest ready in {time.monotonic() - t0:.1f} s")
        check(vm.status() == "running", "the VM runs")
        signers = [(x["archive"], x["key-id"], x["key-file"]) for x in vm.info.get("signed-by", [])]
        check(signers == [(child, tid, pub), (base, tid, pub)], f"boot --json says who signed the chain: {signers}")
        with open(f"/proc/{vm.pid}/cmdline", "rb") as f:
            check(b"-kernel" in f.read(), "QEMU started by the boot")
        # A thin snapshot over the checked chain reads its parent through the chunk tables, as the boot did; one
        # more thin over that (the host's own, unsigned) needs no signature.
        for i in (1, 2):
            t = os.path.join(d, f"thin{i}.vmsnap")
            vmtest.vmsnap("snap", "--qmp", vm.qmp_path, "-o", t, "--thin", "--quiet")
            check(vmtest.vmsnap("info", t, "--json", json_out=True)["parent"]["uuid"], f"thin snapshot {i} made")
    finally:
        if serve:
            serve.kill()
            serve.wait()
        if vm:
            vm.close()
        subprocess.run(["rm", "-rf", d])


vmtest.main(test)
