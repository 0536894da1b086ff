#!/usr/bin/env python3
"""Files vmsnap writes that hold guest data follow the user's umask (they were forced to 0644, so a user with
umask 077 got world-readable archives of guest disks and RAM): pack and extract under umask 077 give 0600,
under 022 give 0644. Files that hold guest RAM (keys, passwords) are 0600 whatever the umask, like a dump:
archives with memory (pack --memory, commit --memory, mem pack) and extract --memory. No QEMU."""
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def run(umask, *args):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: os.umask(umask))
    if p.returncode != 0:
        raise SystemExit(f"vmsnap {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")


def expect_mode(path, want):
    got = stat.S_IMODE(os.stat(path).st_mode)
    ok = got == want
    print(("ok   " if ok else "FAIL ") + f"{os.path.basename(path)}: mode {got:o}, want {want:o}")
    if not ok:
        failures.append(path)


with tempfile.TemporaryDirectory() as d:
    img = os.path.join(d, "disk.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(65536))
    for umask, want in ((0o077, 0o600), (0o022, 0o644), (0o027, 0o640)):
        arc = os.path.join(d, f"a{umask:o}.vmsnap")
        out = os.path.join(d, f"x{umask:o}.raw")
        run(umask, "pack", img, "-o", arc, "--quiet")
        expect_mode(arc, want)
        run(umask, "extract", arc, "--disk", "0", "-o", out, "--quiet")
        expect_mode(out, want)
        if open(out, "rb").read() != open(img, "rb").read():
            failures.append("extract differs")

    # Guest RAM: 0600 even under umask 000. Any bytes do as an opaque memory stream.
    src = os.environ.get("VMSNAP_SRCDIR", ".")
    mig = os.path.join(src, "tests/fuzz/migstream/corpus/few-pages")
    mem = os.path.join(d, "mem.stream")
    with open(mem, "wb") as f:
        f.write(open(mig, "rb").read())
    for umask in (0o022, 0o000):
        arc = os.path.join(d, f"m{umask:o}.vmsnap")
        run(umask, "pack", img, "--memory", mem, "-o", arc, "--quiet")
        expect_mode(arc, 0o600)
        out = os.path.join(d, f"m{umask:o}.stream")
        run(umask, "extract", arc, "--memory", "-o", out, "--quiet")
        expect_mode(out, 0o600)
        run(umask, "extract", arc, "--disk", "0", "-o", out + ".disk", "--quiet")
        expect_mode(out + ".disk", 0o666 & ~umask)
    # commit --memory: an overlay made by serve (created empty, kept at exit).
    base = os.path.join(d, "a22.vmsnap")
    ovl = os.path.join(d, "ovl")
    sock = os.path.join(d, "nbd.sock")
    srv = subprocess.Popen([VMSNAP, "serve", base, "--socket", sock, "--overlay", ovl])
    for _ in range(500):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=30)
    arc = os.path.join(d, "commit.vmsnap")
    run(0o022, "commit", base, ovl, "--memory", mem, "--keep-overlay", "-o", arc)
    expect_mode(arc, 0o600)
    arc = os.path.join(d, "commit-nomem.vmsnap")
    run(0o022, "commit", base, ovl, "--keep-overlay", "-o", arc)
    expect_mode(arc, 0o644)
    # RAM as pages (mem split + mem pack): 0600 too.
    pages = os.path.join(d, "pages")
    run(0o022, "mem", "split", mig, "-o", pages)
    arc = os.path.join(d, "paged.vmsnap")
    run(0o022, "mem", "pack", pages, "-o", arc)
    expect_mode(arc, 0o600)

if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("PASS")
