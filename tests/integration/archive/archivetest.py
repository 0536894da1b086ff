"""Shared helpers for the archive CLI tests (no QEMU; qemu-img as an independent peer): run vmsnap, record checks,
and the sample they pack: a real ext2 image, a memory file and a config. Python 3 stdlib only."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import types

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def run(*args, ok=(0,), **kw):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, **kw)
    if p.returncode not in ok:
        raise AssertionError(f"vmsnap {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def sample(d):
    """In d: files/ (3 MiB of random data, a text file in sub/), disk.raw (a 32 MiB ext2 image of them), mem.bin
    (random, zeroes, a repeated word), cfg.json, and a.vmsnap packed from all three (zstd:3, 2 threads).
    Returns their paths, the pack's CompletedProcess and the random generator for more data."""
    rnd = random.Random(4)
    files = os.path.join(d, "files")
    os.makedirs(os.path.join(files, "sub"))
    with open(os.path.join(files, "random.bin"), "wb") as f:
        f.write(rnd.randbytes(3 << 20))
    with open(os.path.join(files, "sub", "text.txt"), "w") as f:
        for i in range(60000):
            f.write(f"line {i}: the quick brown fox jumps over the lazy dog\n")
    img = os.path.join(d, "disk.raw")
    mkfs = shutil.which("mkfs.ext2") or "/usr/sbin/mkfs.ext2"
    subprocess.run([mkfs, "-q", "-F", "-d", files, img, "32M"], check=True, capture_output=True)
    mem = os.path.join(d, "mem.bin")
    with open(mem, "wb") as f:
        f.write(rnd.randbytes(1 << 20) + bytes(2 << 20) + b"page" * 100000)
    cfg = os.path.join(d, "cfg.json")
    with open(cfg, "w") as f:
        json.dump({"machine": "pc", "ram_mib": 256, "cpus": 1, "qemu_version": "7.2.0"}, f)
    arc = os.path.join(d, "a.vmsnap")
    p = run("pack", img, "--memory", mem, "--config", cfg, "-o", arc, "--compress", "zstd:3", "--threads", "2")
    return types.SimpleNamespace(files=files, img=img, mem=mem, cfg=cfg, arc=arc, pack=p, rnd=rnd)


def main(fn):
    """fn(d) in a fresh temp directory, removed after; exit 1 if any check failed."""
    d = tempfile.mkdtemp(prefix="vmsnap-arc-it-")
    try:
        fn(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
