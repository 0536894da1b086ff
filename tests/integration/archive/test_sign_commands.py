#!/usr/bin/env python3
"""Signatures checked by every command that reads an archive (--trusted-keys or VMSNAP_TRUSTED_KEYS): extract,
commit, info, cp, mem load and verify refuse, in one line naming the archive, one signed only by an untrusted key,
a thin archive whose parent is, and one changed after signing (naming the chunk); with the signer trusted they
work, info names the signer and cp carries .sig and .sums along. Two `sign` run at once on one archive (each
held inside its read-modify-write window) both keep their line."""
import os
import shutil
import subprocess

from archivetest import VMSNAP, check, main, run


def refused(args, words, env=None):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, env=env)
    err = p.stderr.strip()
    good = p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err and all(w in err for w in words)
    check(good, f"{args[0]} refused naming {words}: rc {p.returncode} {err!r}")


def keygen(d, name):
    k = os.path.join(d, name)
    return k, run("keygen", "--sign", "-o", k).stdout.split()[3]


def test(d):
    disk = os.path.join(d, "disk.raw")
    with open(disk, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.truncate(4 << 20)
    arc, child = os.path.join(d, "a.vmsnap"), os.path.join(d, "child.vmsnap")
    run("pack", disk, "-o", arc, "--quiet")
    with open(disk, "r+b") as f:
        f.write(b"child" * 1000)
    run("pack", disk, "--parent", arc, "-o", child, "--quiet")
    team, tid = keygen(d, "team.key")
    other, oid = keygen(d, "other.key")
    pub = team + ".pub"
    out = os.path.join(d, "out.raw")

    # Signed by another key only: refused everywhere, naming the archive and both keys.
    run("sign", arc, "--key", other)
    why = [f"archive {arc} is not signed by a trusted key", oid, tid]
    refused(["extract", arc, "--disk", "0", "-o", out, "--trusted-keys", pub], why)
    check(not os.path.exists(out), "extract left no output")
    refused(["commit", arc, os.path.join(d, "none.ovl"), "-o", os.path.join(d, "m.vmsnap"), "--trusted-keys", pub],
            why)
    refused(["info", arc, "--trusted-keys", pub], why)
    refused(["cp", arc, os.path.join(d, "copy.vmsnap"), "--trusted-keys", pub], why)
    check(not os.path.exists(os.path.join(d, "copy.vmsnap")), "cp left no copy")
    refused(["mem", "load", "--qmp", os.path.join(d, "no.qmp"), arc, "--trusted-keys", pub], why)
    refused(["verify", arc], why, env=dict(os.environ, VMSNAP_TRUSTED_KEYS=pub))
    # A thin child signed by the team over that parent: refused naming the parent.
    run("sign", child, "--key", team)
    refused(["extract", child, "--disk", "0", "-o", out, "--trusted-keys", pub],
            [child, f"parent archive '{arc}'", f"archive {arc} is not signed by a trusted key"])

    # The team signs the parent too: the chain reads, info names both signers.
    run("sign", arc, "--key", team)
    run("extract", child, "--disk", "0", "-o", out, "--trusted-keys", pub)
    with open(out, "rb") as a, open(disk, "rb") as b:
        check(a.read() == b.read(), "extract through the chunk tables gives the disk back")
    info = run("info", child, "--trusted-keys", pub).stdout
    for a in (child, arc):
        check(f"signed:   {a} by key {tid} (trusted: {pub})" in info, f"info names {a}'s signer")
    copy = os.path.join(d, "copy.vmsnap")
    run("cp", arc, copy, "--trusted-keys", pub, "--quiet")
    check(os.path.exists(copy + ".sig") and os.path.exists(copy + ".sums"), "cp carries .sig and .sums")
    run("verify", copy, "--trusted-keys", pub, "--quiet")

    # Changed after signing (a byte in the middle, well inside the stored disk): the chunk is named.
    bad = os.path.join(d, "bad.vmsnap")
    for ext in ("", ".sig", ".sums"):
        shutil.copy(arc + ext, bad + ext)
    off = 600000
    with open(bad, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 1]))
    k = off // (256 << 10)
    chunk = f"chunk {k} (bytes {k << 18}..{(k + 1) << 18})"
    refused(["extract", bad, "--disk", "0", "-o", out + "2", "--trusted-keys", pub], [bad, chunk, tid])
    check(not os.path.exists(out + "2"), "extract left no output")
    refused(["cp", bad, os.path.join(d, "copy2.vmsnap"), "--trusted-keys", pub], [chunk])
    # A .sums that is not the one signed: refused at open, naming it.
    with open(bad + ".sums", "r+b") as f:
        f.seek(60)
        f.write(b"\0")
    refused(["info", bad, "--trusted-keys", pub], [f"chunk table {bad}.sums is not the one key {tid} signed"])

    # Two signers at once, both inside the window between reading .sig and replacing it: both lines stay.
    both = os.path.join(d, "both.vmsnap")
    shutil.copy(arc, both)
    env = dict(os.environ, VMSNAP_TEST_SIGN_DELAY_MS="300")
    ps = [subprocess.Popen([VMSNAP, "sign", both, "--key", k], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for k in (team, other)]
    rcs = [p.wait(60) for p in ps]
    with open(both + ".sig") as f:
        ids = sorted(line.split(" ")[1] for line in f.read().splitlines())
    check(rcs == [0, 0] and ids == sorted([tid, oid]), f"two signs at once keep both lines: {rcs} {ids}")


main(test)
